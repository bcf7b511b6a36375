"""The functional API (``import scratchgen.functional as F``), PyTorch's names where it has them.

Primitives (forward and VJP side by side) live in ``scratchgen.ops``; what is defined here is
composed from them and needs no backward code.
"""
from scratchgen import backend
from scratchgen.autograd.tensor import Tensor
from scratchgen.ops.elementwise import (add, sub, mul, div, neg, pow, exp, log, sqrt, abs, maximum,
                                        minimum, where, clip, sigmoid, tanh, softplus, log_sigmoid)
from scratchgen.ops.elementwise import relu as _relu, leaky_relu as _leaky_relu
from scratchgen.ops.reduction import (sum, mean, var, max, min, amax, amin, argmax, argmin,
                                      logsumexp, softmax, log_softmax)
from scratchgen.ops.shape import (reshape, permute, transpose, broadcast_to, sum_to, cat, stack,
                                  index, normalize_pad)
from scratchgen.ops import shape as _shape
from scratchgen.ops.linalg import matmul, linear
from scratchgen.ops.conv import conv2d, conv_transpose2d, conv2d_weight_grad
from scratchgen.ops.pool import max_pool2d, avg_pool2d
from scratchgen.ops import loss as _loss

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


def _reduction(size_average, reduce, reduction):
    """PyTorch's legacy ``size_average``/``reduce`` flags, when given, decide the reduction."""
    if size_average is None and reduce is None:
        return reduction
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


def _check_same_shape(a, b, name):
    sa = a.shape
    sb = b.shape if hasattr(b, "shape") else ()
    if sb != () and sa != sb:
        raise ValueError(f"{name}: input has shape {sa} but target has shape {sb}")


def _weighted(loss, weight):
    return loss if weight is None else mul(loss, weight)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    """BCE on probabilities x in [0, 1]: -w [y log x + (1 - y) log(1 - x)], each log clamped
    at -100 as PyTorch does (finite at x = 0 or 1); gradient (x - y) / max(x (1 - x), 1e-12).
    Prefer :func:`binary_cross_entropy_with_logits` on logits: no clamp, no lost digits."""
    name = "binary_cross_entropy"
    _check_same_shape(input, target, name)
    x = input.array
    if not bool(((x >= 0) & (x <= 1)).all()):              # NaN too, as PyTorch
        raise ValueError(f"{name}: input values must lie in [0, 1] (probabilities; for logits "
                         "use binary_cross_entropy_with_logits)")
    loss = _weighted(_loss.binary_cross_entropy(input, target), weight)
    return _reduce(loss, _reduction(size_average, reduce, reduction), name)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction="mean", pos_weight=None):
    """BCE on logits l with targets t in [0, 1]:  softplus(l) - t l,

    the stable form of -[t log s(l) + (1-t) log(1-s(l))]; finite and exact at |l| = 1e4.
    d/dl = sigmoid(l) - t. With ``pos_weight`` p (broadcast along the last axis, one per
    class): (1 - t) l + (1 + (p - 1) t) softplus(-l); ``weight`` scales each element.
    """
    name = "binary_cross_entropy_with_logits"
    _check_same_shape(input, target, name)
    if pos_weight is None:
        loss = sub(softplus(input), mul(target, input))
    else:
        loss = add(mul(sub(1.0, target), input),
                   mul(add(mul(sub(pos_weight, 1.0), target), 1.0), softplus(neg(input))))
    return _reduce(_weighted(loss, weight), _reduction(size_average, reduce, reduction), name)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """(input - target)^2, reduced; d/dinput = 2 (input - target) [/ n for 'mean']."""
    _check_same_shape(input, target, "mse_loss")
    d = sub(input, target)
    return _reduce(mul(d, d), _reduction(size_average, reduce, reduction), "mse_loss")


def _class_axis(input):
    return 0 if input.ndim == 1 else 1


def _classes_last(input, name):
    """input (C,), (N, C) or (N, C, d1, ...) as (M, C) rows, and the shape of one loss per row."""
    if input.ndim == 0:
        raise ValueError(f"{name}: input must have a class dimension, got a 0-d tensor")
    if input.ndim == 1:
        return reshape(input, (1, -1)), ()
    if input.ndim == 2:
        return input, input.shape[:1]
    perm = (0,) + tuple(range(2, input.ndim)) + (1,)
    rows = (input.shape[0],) + input.shape[2:]
    return reshape(permute(input, perm), (-1, input.shape[1])), rows


def _class_indices(target, rows, n_classes, ignore_index, name):
    """Integer targets as a flat raw array, after PyTorch's checks: the shape matches the
    input's rows; each index is in [0, C) or is ``ignore_index`` (no wrap-around of -1).
    Returns (t, keep mask or None when nothing is ignored)."""
    t = target.array if isinstance(target, Tensor) else backend.asarray(target)
    if t.dtype.kind not in "iu" or t.shape != rows:
        raise ValueError(f"{name}: target must hold integer class indices of shape {rows}, got "
                         f"{t.dtype} {t.shape}")
    t = t.reshape(-1).astype(backend.xp.int64, copy=False)   # uint8 labels meet -100 too
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= n_classes))
    flags = backend.to_numpy(backend.xp.stack([bad.any(), ~keep.all()]))  # one fetch
    if flags[0]:
        v = int(backend.to_numpy(t[bad])[0])
        raise ValueError(f"{name}: target {v} is out of bounds for {n_classes} classes "
                         f"(valid: 0..{n_classes - 1}, or ignore_index={ignore_index})")
    return t, (keep if flags[1] else None)


def _raw(w):
    return None if w is None else (w.array if isinstance(w, Tensor) else backend.asarray(w))


def _row_weights(t, keep, weight, dt):
    """(safe targets, w): ignored rows' targets set to 0, and w[t_m] per row (1 without
    ``weight``) zeroed where the row is ignored; w is None when every row weighs 1."""
    xp = backend.xp
    safe = t if keep is None else xp.where(keep, t, 0)
    if weight is None and keep is None:
        return safe, None
    w = xp.ones(t.shape, dt) if weight is None else _raw(weight)[safe].astype(dt)
    return safe, (w if keep is None else w * keep)


def _per_row(loss, w, reduction, rows, name):
    """Row losses reduced as PyTorch reduces nll_loss: 'mean' divides by the total weight of
    the counted rows (nan when every row is ignored)."""
    if w is None:
        return _reduce(reshape(loss, rows), reduction, name)
    if reduction == "mean":
        with backend.errstate(invalid="ignore", divide="ignore"):
            return div(sum(loss), w.sum())
    return _reduce(reshape(loss, rows), reduction, name)


def _nll_rows(logp, t, keep, weight, reduction, rows, name):
    """-w[t_m] logp[m, t_m] per row m, reduced; also returns w (see _row_weights)."""
    safe, w = _row_weights(t, keep, weight, logp.dtype)
    loss = neg(index(logp, (backend.xp.arange(t.shape[0]), safe)))
    return _per_row(loss if w is None else mul(loss, w), w, reduction, rows, name), w


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """-w[t] input[n, t] for log-probabilities input (N, C) (or (C,), or (N, C, d1, ...)) and
    class indices t; rows whose target is ``ignore_index`` count nothing. 'mean' divides by
    the total weight of the counted rows (their number without ``weight``)."""
    name = "nll_loss"
    logp, rows = _classes_last(input, name)
    t, keep = _class_indices(target, rows, input.shape[_class_axis(input)], ignore_index,
                             name)
    return _nll_rows(logp, t, keep, weight, _reduction(size_average, reduce, reduction), rows,
                     name)[0]


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of logits input (N, C) (or (C,), or (N, C, d1, ...)).

    Class-index targets: nll_loss(log_softmax(input, dim=1), target, weight, ignore_index) =
    logsumexp_c input[n, c] - input[n, t_n]; d/dinput = softmax(input) - onehot(target)
    [/ N for 'mean']. Probability targets (a float tensor of input's shape):
    -sum_c w_c t_c log_softmax(input)_c, 'mean' over the N (d1 ...) positions.
    ``label_smoothing`` e mixes the target with the uniform distribution:
    (1 - e) onehot + e / C, as PyTorch does.
    """
    name = "cross_entropy"
    reduction = _reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {label_smoothing}")
    cax = _class_axis(input)
    n_classes = input.shape[cax]
    logp = log_softmax(input, axis=cax)
    if getattr(getattr(target, "dtype", None), "kind", None) == "f":
        return _soft_cross_entropy(logp, target, weight, reduction, label_smoothing, cax, name)
    logp_rows, rows = _classes_last(logp, name)
    t, keep = _class_indices(target, rows, n_classes, ignore_index, name)
    nll, w = _nll_rows(logp_rows, t, keep, weight, reduction, rows, name)
    if not label_smoothing:
        return nll
    # PyTorch: (1 - e) nll + e / C * sum_c -w_c logp_c, with ignored rows zeroed and 'mean'
    # divided by nll's total weight
    wlp = logp_rows if weight is None else mul(logp_rows, _raw(weight).astype(logp.dtype))
    smooth = neg(sum(wlp, axis=1))
    if keep is not None:
        smooth = mul(smooth, keep.astype(logp.dtype))
    smooth = _per_row(smooth, w, reduction, rows, name)
    return add(mul(nll, 1.0 - label_smoothing), mul(smooth, label_smoothing / n_classes))


def _soft_cross_entropy(logp, target, weight, reduction, label_smoothing, cax, name):
    if tuple(target.shape) != tuple(logp.shape):
        raise ValueError(f"{name}: probability targets must have the input's shape "
                         f"{tuple(logp.shape)}, got {tuple(target.shape)}")
    n_classes = logp.shape[cax]
    if label_smoothing:
        target = add(mul(target, 1.0 - label_smoothing), label_smoothing / n_classes)
    prod = mul(logp, target)
    if weight is not None:
        shape = (-1,) + (1,) * (logp.ndim - cax - 1)
        prod = mul(prod, _raw(weight).astype(logp.dtype).reshape(shape))
    return _reduce(neg(sum(prod, axis=cax)), reduction, name)


# ---- activations, pooling, dropout ----------------------------------------------------
# ``inplace=`` is accepted for PyTorch's signatures; nothing is done in place: the result is a
# new tensor (an in-place write would break the graph that backward needs).
def relu(input, inplace=False):
    """max(x, 0); ``inplace`` is accepted and ignored (a new tensor is returned)."""
    return _relu(input)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """max(x, 0) + negative_slope min(x, 0); ``inplace`` accepted and ignored."""
    return _leaky_relu(input, negative_slope)


def _dropout_mask(shape, p, dtype, generator):
    """keep / (1 - p), keep ~ Bernoulli(1 - p) drawn on the host from ``generator`` (the
    global one that ``sg.manual_seed`` seeds by default)."""
    from scratchgen.nn.init import default_generator       # nn.init owns the global seed
    rng = default_generator() if generator is None else generator
    keep = rng.random(shape) >= p
    return backend.asarray(keep.astype(dtype) * (1.0 / (1.0 - p)))


def _check_p(p, name):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: dropout probability must be in [0, 1], got {p}")


def dropout(input, p=0.5, training=True, inplace=False, *, generator=None):
    """Inverted dropout: in training zero each element with probability p and scale the rest
    by 1/(1 - p) (the gradient carries the same mask); the identity when not ``training``.
    ``generator`` (a NumPy Generator, scratchgen's addition) draws the mask; ``inplace`` is
    accepted and ignored."""
    _check_p(p, "dropout")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return mul(input, 0.0)
    return mul(input, _dropout_mask(input.shape, p, input.dtype, generator))


def dropout2d(input, p=0.5, training=True, inplace=False, *, generator=None):
    """Channel-wise dropout of (N, C, H, W) (or (C, H, W)) input: each whole channel is zeroed
    with probability p, the rest scaled by 1/(1 - p); the identity when not ``training``."""
    _check_p(p, "dropout2d")
    if input.ndim not in (3, 4):
        raise ValueError(f"dropout2d: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got "
                         f"shape {tuple(input.shape)}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return mul(input, 0.0)
    shape = input.shape[:-2] + (1, 1)
    return mul(input, _dropout_mask(shape, p, input.dtype, generator))
