"""The functional API (``import scratchgen.functional as F``), PyTorch's names where it has them.

Primitives (forward and VJP side by side) live in ``scratchgen.ops``; what is defined here is
composed from them and needs no backward code.
"""
from scratchgen.autograd.tensor import Tensor
from scratchgen.ops.elementwise import (add, sub, mul, div, neg, pow, exp, log, sqrt, abs, maximum,
                                        minimum, where, clip, sigmoid, tanh, relu, leaky_relu,
                                        softplus, log_sigmoid)
from scratchgen.ops.reduction import (sum, mean, var, max, min, amax, amin, argmax, argmin,
                                      logsumexp, softmax, log_softmax)
from scratchgen.ops.shape import (reshape, permute, transpose, broadcast_to, sum_to, cat, stack,
                                  index, normalize_pad)
from scratchgen.ops import shape as _shape
from scratchgen.ops.linalg import matmul, linear
from scratchgen.ops.conv import conv2d, conv_transpose2d, conv2d_weight_grad

clamp = clip
logsigmoid = log_sigmoid
concatenate = cat
getitem = index


def pad(x, pad_width, value=0.0):
    """Constant padding: an int, a (before, after) pair for every axis, or one pair per axis."""
    return _shape.pad(x, normalize_pad(pad_width, x.ndim), value=value)


def square(x):
    return mul(x, x)


def flatten(x, start_dim=1, end_dim=-1):
    """Merge dims start_dim..end_dim into one (default: all but the batch dim, like
    ``nn.Flatten``; ``sg.flatten`` / ``Tensor.flatten`` start at 0 like ``torch.flatten``)."""
    shape = x.shape
    if not shape:
        return reshape(x, (1,))
    a, b = start_dim % len(shape), end_dim % len(shape)
    return reshape(x, shape[:a] + (-1,) + shape[b + 1:])


def _reduce(loss, reduction, name):
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_same_shape(a, b, name):
    sa = a.shape
    sb = b.shape if hasattr(b, "shape") else ()
    if sb != () and sa != sb:
        raise ValueError(f"{name}: input has shape {sa} but target has shape {sb}")


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """BCE on logits l with targets t in [0, 1]:  softplus(l) - t l,

    the stable form of -[t log s(l) + (1-t) log(1-s(l))]; finite and exact at |l| = 1e4.
    d/dl = sigmoid(l) - t.
    """
    _check_same_shape(logits, target, "binary_cross_entropy_with_logits")
    return _reduce(sub(softplus(logits), mul(target, logits)), reduction,
                   "binary_cross_entropy_with_logits")


def mse_loss(input, target, reduction="mean"):
    """(input - target)^2, reduced; d/dinput = 2 (input - target) [/ n for 'mean']."""
    _check_same_shape(input, target, "mse_loss")
    d = sub(input, target)
    return _reduce(mul(d, d), reduction, "mse_loss")
