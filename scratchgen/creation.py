"""Tensor constructors with torch's names: float32 unless ``dtype=`` says otherwise; random
ones draw from the default generator that ``sg.manual_seed`` reseeds, or from ``generator=``.
``device=`` is checked against the process's backend (see :mod:`scratchgen.devices`).

>>> import scratchgen as sg
>>> sg.zeros(2, 3).shape, sg.ones((2,)).dtype, sg.arange(3).tolist()
((2, 3), dtype('float32'), [0.0, 1.0, 2.0])
>>> sg.full_like(sg.zeros(2), 7).tolist(), sg.LongTensor([1, 2]).dtype
([7.0, 7.0], dtype('int64'))
"""
import numpy

from scratchgen import backend, devices as _device
from scratchgen.autograd.tensor import Tensor
from scratchgen.nn import init
from scratchgen.nn.init import Generator  # noqa: F401  (sg.Generator)


def _shape(size):
    return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else size


def _new(host, dtype, requires_grad, device=None):
    _device.check(device)
    return Tensor(backend.asarray(host, dtype=backend.xp.dtype(dtype or "float32")),
                  requires_grad=requires_grad)


def full(size, fill_value, dtype=None, requires_grad=False, device=None):
    return _new(numpy.full(tuple(size), fill_value), dtype, requires_grad, device)


def zeros(*size, dtype=None, requires_grad=False, device=None):
    return full(_shape(size), 0.0, dtype, requires_grad, device)


def ones(*size, dtype=None, requires_grad=False, device=None):
    return full(_shape(size), 1.0, dtype, requires_grad, device)


def empty(*size, dtype=None, requires_grad=False, device=None):
    """Zeros (scratchgen never hands out uninitialised memory)."""
    return zeros(*size, dtype=dtype, requires_grad=requires_grad, device=device)


def full_like(t, fill_value, dtype=None, requires_grad=False, device=None):
    return full(t.shape, fill_value, dtype or t.dtype, requires_grad, device)


def zeros_like(t, dtype=None, requires_grad=False, device=None):
    return full_like(t, 0.0, dtype, requires_grad, device)


def ones_like(t, dtype=None, requires_grad=False, device=None):
    return full_like(t, 1.0, dtype, requires_grad, device)


empty_like = zeros_like


def arange(start, end=None, step=1, dtype=None, requires_grad=False, device=None):
    return _new(numpy.arange(start, end, step) if end is not None else numpy.arange(start),
                dtype, requires_grad, device)


def randn(*size, dtype=None, requires_grad=False, generator=None, device=None):
    """Standard normal draws."""
    g = generator or init.default_generator()
    return _new(g.standard_normal(_shape(size)), dtype, requires_grad, device)


def randint(low, high=None, size=None, generator=None, dtype=None, device=None):
    """Integers drawn uniformly from [low, high), int64 (torch.randint; ``randint(high,
    size)`` draws from [0, high))."""
    if size is None:
        low, high, size = 0, low, high
    g = generator or init.default_generator()
    return _new(g.integers(low, high, tuple(size), dtype=numpy.int64), dtype or "int64",
                False, device)


def rand(*size, dtype=None, requires_grad=False, generator=None, device=None):
    """Uniform draws on [0, 1)."""
    g = generator or init.default_generator()
    return _new(g.random(_shape(size)), dtype, requires_grad, device)


def randn_like(t, dtype=None, requires_grad=False, generator=None, device=None):
    return randn(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad,
                 generator=generator, device=device)


def rand_like(t, dtype=None, requires_grad=False, generator=None, device=None):
    return rand(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad,
                generator=generator, device=device)


def _typed(dtype, name):
    def make(*data):
        """``torch.%s``: from data (a list, array or Tensor) or from a shape (zeros)."""
        if len(data) == 1 and not isinstance(data[0], int):
            src = data[0].array if isinstance(data[0], Tensor) else data[0]
            return Tensor(src, dtype=dtype)
        return zeros(*data, dtype=dtype)
    make.__name__ = make.__qualname__ = name
    make.__doc__ = make.__doc__ % name
    return make


FloatTensor = _typed("float32", "FloatTensor")
DoubleTensor = _typed("float64", "DoubleTensor")
LongTensor = _typed("int64", "LongTensor")
