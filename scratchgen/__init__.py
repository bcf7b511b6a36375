"""scratchgen: deep generative models from scratch, with an autodiff engine you can read.

>>> import scratchgen as sg
>>> x = sg.tensor([0.5, -1.0], requires_grad=True)
>>> sg.functional.softplus(x).sum().backward()
>>> [round(v, 4) for v in x.grad.tolist()]
[0.6225, 0.2689]
"""
__version__ = "0.1.0"

from scratchgen import _interrupt  # noqa: F401  (first: Ctrl-C while the command starts)

from scratchgen import backend
from scratchgen.autograd import (Tensor, tensor, grad, no_grad, enable_grad, is_grad_enabled,
                                 Primitive, primitive)
from scratchgen import functional
from scratchgen import tensor_methods as _methods  # noqa: F401  (binds operators, methods)
from scratchgen.autograd.gradcheck import (gradcheck, gradgradcheck, GradcheckError,
                                          numeric_grad)
from scratchgen import nn, optim
from scratchgen.io import save, load, CheckpointError
from scratchgen.nn.init import manual_seed
# torch-style top level: sg.exp(x), sg.cat([a, b], dim=0), sg.zeros(2, 3), ...
from scratchgen.functional import (add, sub, mul, div, neg, pow, exp, log, sqrt, abs, square,
                                   sigmoid, tanh, relu, maximum, minimum, where, clamp, clip,
                                   sum, mean, var, max, min, amax, amin, argmax, argmin,
                                   logsumexp, softmax, log_softmax, reshape, permute, transpose,
                                   cat, concatenate, stack, matmul)
from scratchgen.creation import (zeros, ones, full, empty, zeros_like, ones_like, full_like,
                                 empty_like, randn_like, rand_like, arange, randn, rand,
                                 randint, FloatTensor, LongTensor, Generator)
from scratchgen.tensor_methods import norm
from scratchgen.devices import device, cuda, accelerator
from scratchgen import autograd, utils
from numpy import float32, float64, int64, int32, bool_ as bool  # dtype names, as torch.float32
float = float32
double = float64
long = int64


def flatten(x, start_dim=0, end_dim=-1):
    """torch.flatten: merge dims start_dim..end_dim (all of them by default)."""
    return functional.flatten(x, start_dim, end_dim)
