"""Reductions. ``axis`` is None, an int or a tuple of ints (negative allowed)."""
import builtins

from scratchgen import backend
from scratchgen.autograd.graph import primitive
from scratchgen.autograd.tensor import Tensor
from scratchgen.ops.elementwise import mul, div, sub, exp, _data
from scratchgen.ops.shape import reshape, broadcast_to



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


def mean(x, axis=None, keepdims=False):
    """Arithmetic mean: sum / n."""
    shape = _data(x).shape
    n = 1
    for a in _axes(axis, len(shape)):
        n *= shape[a]
    return mul(sum(x, axis=axis, keepdims=keepdims), 1.0 / builtins.max(n, 1))


def var(x, axis=None, keepdims=False, unbiased=False):
    """Variance mean((x - mean x)^2), divided by n - 1 when ``unbiased``."""
    shape = _data(x).shape
    n = 1
    for a in _axes(axis, len(shape)):
        n *= shape[a]
    d = sub(x, mean(x, axis=axis, keepdims=True))
    return mul(sum(mul(d, d), axis=axis, keepdims=keepdims), 1.0 / builtins.max(n - int(unbiased), 1))


@primitive
def max(x, axis=None, keepdims=False):
    """Maximum. Ties share the gradient equally: each of k tied maxima gets g/k."""
    return backend.xp.max(x, axis=axis, keepdims=keepdims)


def _max_vjp(g, ans, x, axis=None, keepdims=False):
    xd = _data(x)
    a = ans.data if keepdims else ans.data.reshape(_keep_shape(xd.shape, axis))
    m = (xd == a).astype(xd.dtype)
    m /= m.sum(axis=_axes(axis, xd.ndim), keepdims=True)
    return mul(_expand(g, x, axis, keepdims), m)


max.defvjp(_max_vjp)


def min(x, axis=None, keepdims=False):
    from scratchgen.ops.elementwise import neg
    return neg(max(neg(x), axis=axis, keepdims=keepdims))


@primitive
def logsumexp(x, axis=None, keepdims=False):
    """log sum exp x, computed as m + log sum exp(x - m) with m = max x (finite for large x;
    -inf when every term is -inf). d/dx = softmax(x) = exp(x - lse)."""
    m = backend.xp.max(x, axis=axis, keepdims=True)
    m = backend.xp.where(backend.xp.isfinite(m), m, 0)
    out = backend.xp.log(backend.xp.sum(backend.xp.exp(x - m), axis=axis, keepdims=True)) + m
    if not keepdims:
        out = out.reshape(_reduced_shape(x.shape, axis))
    return out


def _reduced_shape(shape, axis):
    ax = _axes(axis, len(shape))
    return tuple(s for i, s in enumerate(shape) if i not in ax)


def _lse_vjp(g, ans, x, axis=None, keepdims=False):
    a = ans if keepdims else reshape(ans, _keep_shape(_data(x).shape, axis))
    return mul(_expand(g, x, axis, keepdims), exp(sub(x, a)))


logsumexp.defvjp(_lse_vjp)
