"""Tensor constructors with torch's names: float32 unless ``dtype=`` says otherwise; random
ones draw from the default generator that ``sg.manual_seed`` reseeds.

>>> import scratchgen as sg
>>> sg.zeros(2, 3).shape, sg.ones((2,)).dtype, sg.arange(3).tolist()
((2, 3), dtype('float32'), [0.0, 1.0, 2.0])
"""
import numpy

from scratchgen import backend
from scratchgen.autograd.tensor import Tensor
from scratchgen.nn import init


def _shape(size):
    return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else size


def _new(host, dtype, requires_grad):
    return Tensor(backend.asarray(host, dtype=backend.xp.dtype(dtype or "float32")),
                  requires_grad=requires_grad)


def full(size, fill_value, dtype=None, requires_grad=False):
    return _new(numpy.full(tuple(size), fill_value), dtype, requires_grad)


def zeros(*size, dtype=None, requires_grad=False):
    return full(_shape(size), 0.0, dtype, requires_grad)


def ones(*size, dtype=None, requires_grad=False):
    return full(_shape(size), 1.0, dtype, requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return full(t.shape, 0.0, dtype or t.dtype, requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return full(t.shape, 1.0, dtype or t.dtype, requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad=False):
    return _new(numpy.arange(start, end, step) if end is not None else numpy.arange(start),
                dtype, requires_grad)


def randn(*size, dtype=None, requires_grad=False, generator=None):
    """Standard normal draws."""
    g = generator or init.default_generator()
    return _new(g.standard_normal(_shape(size)), dtype, requires_grad)


def rand(*size, dtype=None, requires_grad=False, generator=None):
    """Uniform draws on [0, 1)."""
    g = generator or init.default_generator()
    return _new(g.random(_shape(size)), dtype, requires_grad)
