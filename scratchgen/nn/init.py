"""Parameter initialisation, in place, with PyTorch's formulas (``torch.nn.init``).

Draws come from a NumPy ``Generator`` on the host and are copied into the tensor's array (its
identity is kept, so optimisers holding the parameter see the new values). Every function takes
``generator=``; without one it uses the global default generator, which
:func:`manual_seed` (also ``sg.manual_seed``) resets. Layers draw their initial weights, and
Dropout its seed, from the same default generator.

Fans of a weight of shape (d0, d1, k...): fan_in = d1 * prod(k), fan_out = d0 * prod(k).

>>> import scratchgen as sg
>>> sg.manual_seed(0)
>>> w = sg.nn.Parameter(sg.backend.xp.empty((256, 64), dtype='float32'))
>>> _ = sg.nn.init.kaiming_uniform_(w, nonlinearity='relu')
>>> bool(abs(w.numpy()).max() <= (6 / 64) ** 0.5)
True
"""
import math

import numpy

from scratchgen import backend
from scratchgen.autograd.tensor import Tensor

_default_generator = numpy.random.default_rng()


def manual_seed(seed):
    """Reseed the global default generator (initialisation and unseeded Dropout layers)."""
    global _default_generator
    _default_generator = numpy.random.default_rng(seed)


class Generator(numpy.random.Generator):
    """``torch.Generator``: a NumPy ``Generator`` (PCG64) with ``manual_seed``; pass it as
    ``generator=`` to random creation, ``nn.init``, dropout or a ``DataLoader``.

    >>> import scratchgen as sg
    >>> g = sg.Generator().manual_seed(1)
    >>> a = sg.randn(3, generator=g); _ = g.manual_seed(1)
    >>> bool((sg.randn(3, generator=g) == a).all())
    True
    """

    def __init__(self, device="cpu"):
        super().__init__(numpy.random.PCG64())
        self._seed = None

    def manual_seed(self, seed):
        self.bit_generator.state = numpy.random.PCG64(int(seed)).state
        self._seed = int(seed)
        return self

    def initial_seed(self):
        return self._seed


def default_generator():
    return _default_generator


def _gen(generator):
    return _default_generator if generator is None else generator


def _fill(tensor, values):
    """Copy host values into the tensor's array in place; returns the tensor."""
    arr = tensor.array if isinstance(tensor, Tensor) else tensor
    arr[...] = backend.asarray(numpy.asarray(values), dtype=arr.dtype)
    return tensor


def _shape(tensor):
    return tuple((tensor.array if isinstance(tensor, Tensor) else tensor).shape)


def calculate_gain(nonlinearity, param=None):
    """The gain PyTorch recommends for a nonlinearity: 1 for linear/conv/sigmoid, 5/3 tanh,
    sqrt(2) relu, sqrt(2 / (1 + slope^2)) leaky_relu (slope ``param``, default 0.01), 3/4 selu."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"negative_slope {slope!r} is not a number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor):
    shape = _shape(tensor)
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dimensions; "
                         f"got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """U(a, b)."""
    return _fill(tensor, _gen(generator).uniform(a, b, _shape(tensor)))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """N(mean, std^2)."""
    return _fill(tensor, _gen(generator).normal(mean, std, _shape(tensor)))


def constant_(tensor, val):
    return _fill(tensor, numpy.full(_shape(tensor), val))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """U(-a, a), a = gain sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    a = math.sqrt(3.0) * gain * math.sqrt(2.0 / (fan_in + fan_out))
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """N(0, std^2), std = gain sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """U(-bound, bound), bound = gain sqrt(3 / fan), gain = calculate_gain(nonlinearity, a)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """N(0, std^2), std = gain / sqrt(fan)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std, generator)
