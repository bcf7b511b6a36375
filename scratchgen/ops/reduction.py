"""Reductions. ``axis`` is None, an int or a tuple of ints (negative allowed).

Every public reduction takes NumPy's ``axis=``/``keepdims=`` and PyTorch's ``dim=``/``keepdim=``
(:func:`torch_dims`). ``max``/``min`` follow whichever library the call is spelled for:
``max(x)`` and ``max(x, axis=1)`` are values (NumPy), ``max(x, 1)`` and ``max(x, dim=1)`` are
``(values, indices)`` (PyTorch), ``max(x, y)`` with a tensor ``y`` is ``maximum(x, y)``.
"""
import builtins
import collections
import functools
import math
import warnings

from scratchgen import backend
from scratchgen.autograd.graph import primitive
from scratchgen.autograd.tensor import Tensor
from scratchgen.ops.elementwise import mul, sub, exp, neg, maximum, minimum, _data
from scratchgen.ops.shape import reshape, broadcast_to



def torch_dims(f):
    """``f(x, axis=None, keepdims=False, ...)`` that also accepts PyTorch's ``dim=`` and
    ``keepdim=`` (either spelling, not both)."""
    name = getattr(f, "name", None) or f.__name__

    @functools.wraps(f)
    def g(x, *args, **kw):
        for torch_name, np_name, pos in (("dim", "axis", 0), ("keepdim", "keepdims", 1)):
            if torch_name in kw:
                if np_name in kw or len(args) > pos:
                    raise TypeError(f"{name}() got both {torch_name}= and {np_name}= "
                                    "(the same argument, PyTorch's and NumPy's spelling)")
                kw[np_name] = kw.pop(torch_name)
        return f(x, *args, **kw)
    return g


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    out = []
    for a in axis:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(a % builtins.max(ndim, 1))
    return tuple(sorted(set(out)))


def _keep_shape(shape, axis):
    """The reduced shape with size-1 dims kept (what keepdims=True gives)."""
    ax = _axes(axis, len(shape))
    return tuple(1 if i in ax else s for i, s in enumerate(shape))


def _expand(g, x, axis, keepdims):
    """Broadcast a reduced gradient back to x's shape."""
    shape = _data(x).shape
    if not keepdims:
        g = reshape(g, _keep_shape(shape, axis))
    return broadcast_to(g, shape)


@primitive
def sum(x, axis=None, keepdims=False):
    return backend.xp.sum(x, axis=axis, keepdims=keepdims)


sum.defvjp(lambda g, ans, x, axis=None, keepdims=False: _expand(g, x, axis, keepdims))
_sum, sum = sum, torch_dims(sum)


def _count(x, axis):
    """How many elements each reduction over ``axis`` sees."""
    shape = _data(x).shape
    n = 1
    for a in _axes(axis, len(shape)):
        n *= shape[a]
    return n


@torch_dims
def mean(x, axis=None, keepdims=False):
    """Arithmetic mean: sum / n; nan over no elements (NumPy's and PyTorch's value)."""
    n = _count(x, axis)
    return mul(sum(x, axis=axis, keepdims=keepdims), 1.0 / n if n else math.nan)


@torch_dims
def var(x, axis=None, keepdims=False, unbiased=False):
    """Variance sum((x - mean x)^2) / (n - 1 if ``unbiased`` else n); with no degrees of
    freedom left (n - unbiased <= 0) nan and a warning, as PyTorch."""
    dof = _count(x, axis) - int(unbiased)
    if dof <= 0:
        warnings.warn(f"var(): degrees of freedom is <= 0 ({dof}) for shape "
                      f"{tuple(_data(x).shape)} over axis {axis}; the result is nan",
                      UserWarning, stacklevel=3)
    d = sub(x, mean(x, axis=axis, keepdims=True))
    return mul(sum(mul(d, d), axis=axis, keepdims=keepdims), 1.0 / dof if dof > 0 else math.nan)


@primitive
def amax(x, axis=None, keepdims=False):
    """Maximum values. Ties share the gradient equally: each of k tied maxima gets g/k."""
    if _count(x, axis) == 0:
        raise ValueError(f"max/min of an empty tensor (shape {tuple(x.shape)}) over axis "
                         f"{axis}: there is no identity to return")
    return backend.xp.max(x, axis=axis, keepdims=keepdims)


def _max_vjp(g, ans, x, axis=None, keepdims=False):
    xd = _data(x)
    a = ans.array if keepdims else ans.array.reshape(_keep_shape(xd.shape, axis))
    m = (xd == a).astype(xd.dtype)
    m /= m.sum(axis=_axes(axis, xd.ndim), keepdims=True)
    return mul(_expand(g, x, axis, keepdims), m)


amax.defvjp(_max_vjp)
_amax, amax = amax, torch_dims(amax)


@torch_dims
def amin(x, axis=None, keepdims=False):
    """Minimum values: -amax(-x)."""
    return neg(amax(neg(x), axis=axis, keepdims=keepdims))


def _arg(pick, x, dim, keepdim):
    xd = _data(x)
    if dim is None:
        return Tensor._wrap(pick(xd.reshape(-1)).reshape((1,) * xd.ndim if keepdim else ()))
    return Tensor._wrap(pick(xd, axis=dim, keepdims=keepdim))


@torch_dims
def argmax(x, axis=None, keepdims=False):
    """Index of the (first) maximum along ``axis`` (over the flattened x for None); int64."""
    return _arg(backend.xp.argmax, x, axis, keepdims)


@torch_dims
def argmin(x, axis=None, keepdims=False):
    return _arg(backend.xp.argmin, x, axis, keepdims)


ValuesIndices = collections.namedtuple("ValuesIndices", "values indices")


def _torch_or_numpy(name, reduce, arg, pair):
    def f(x, dim=None, keepdim=False, *, axis=None, keepdims=False):
        if isinstance(dim, Tensor):
            return pair(x, dim)
        if dim is None:
            return reduce(x, axis=axis, keepdims=keepdims or keepdim)
        if axis is not None:
            raise TypeError(f"{name}() got both dim and axis")
        keep = keepdim or keepdims
        return ValuesIndices(reduce(x, axis=dim, keepdims=keep), arg(x, axis=dim, keepdims=keep))
    f.__name__ = f.__qualname__ = name
    f.__doc__ = (f"{name}(x) or {name}(x, axis=, keepdims=): values, as NumPy. {name}(x, dim) or "
                 f"{name}(x, dim=, keepdim=): (values, indices), as PyTorch. {name}(x, other "
                 f"tensor): the elementwise {name}imum.")
    return f


max = _torch_or_numpy("max", amax, argmax, maximum)
min = _torch_or_numpy("min", amin, argmin, minimum)


@primitive
def logsumexp(x, axis=None, keepdims=False):
    """log sum exp x, computed as m + log sum exp(x - m) with m = max x (finite for large x;
    -inf when every term is -inf or there is none). d/dx = softmax(x), itself computed from
    x - m."""
    m = _finite_max(x, axis)
    with backend.errstate(divide="ignore"):
        out = backend.xp.log(backend.xp.sum(backend.xp.exp(x - m), axis=axis, keepdims=True))
    out = out + m
    if not keepdims:
        out = out.reshape(_reduced_shape(x.shape, axis))
    return out


def _finite_max(x, axis):
    """max x over ``axis`` (kept as size-1 dims) as a raw array, 0 where it is not finite or
    where the reduction sees no elements."""
    xd = _data(x)
    if _count(xd, axis) == 0:
        return backend.xp.zeros(_keep_shape(xd.shape, axis), dtype=xd.dtype)
    m = backend.xp.max(xd, axis=axis, keepdims=True)
    return backend.xp.where(backend.xp.isfinite(m), m, 0)


def _reduced_shape(shape, axis):
    ax = _axes(axis, len(shape))
    return tuple(s for i, s in enumerate(shape) if i not in ax)


@torch_dims
def log_softmax(x, axis=-1):
    """z - logsumexp(z) with z = x - max x, the max held constant (the result does not depend
    on it, so the gradient is exact): no cancellation between x and logsumexp(x) at large x
    (f32 log_softmax([1e5, 1e5 + 1]) = [-1.31326, -0.31326])."""
    z = sub(x, _finite_max(x, axis))
    return sub(z, logsumexp(z, axis=axis, keepdims=True))


@torch_dims
def softmax(x, axis=-1):
    """exp(log_softmax(x)): f32 softmax([1e8, 1e8]) = [0.5, 0.5]."""
    return exp(log_softmax(x, axis))


logsumexp.defvjp(lambda g, ans, x, axis=None, keepdims=False:
                 mul(_expand(g, x, axis, keepdims), softmax(x, axis)))
_logsumexp, logsumexp = logsumexp, torch_dims(logsumexp)
