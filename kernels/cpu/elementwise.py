"""ReLU, leaky ReLU, their VJP and a conv's per-channel bias, one pass each (``cpu`` backend).

``np.maximum(a, 0)`` costs several multiplies' time, and the VJP's mask made three passes
before its product (the bool mask, its float copy, then the slope's multiply and add for
leaky_relu); measurements in ``benchmarks/PROFILE.md``. The loops give the same
values as :mod:`reference`'s NumPy expressions, bit for bit: max(a, 0) is +0 for -0 and NaN
for NaN; the VJP multiplies g by the mask's two possible values, computed as NumPy computes
them, so NaN and inf in g still give NaN where the mask is 0.
"""
import numpy as np
from numba import njit

from .. import reference
from .linalg import matmul


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def _relu_flat(a, out, zero):
    for i in range(a.size):
        v = a[i]
        out[i] = zero if v <= zero else v


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def _leaky_flat(a, out, s):
    for i in range(a.size):
        v = a[i]
        w = v * s
        out[i] = v if v > w else w


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def _mask_flat(g, a, out, zero, m_pos, m_neg):
    for i in range(g.size):
        out[i] = g[i] * (m_pos if a[i] > zero else m_neg)


def _fast(*arrays):
    """NumPy arrays of one float32/float64 dtype and one shape, C-contiguous, at least 1-D."""
    a = arrays[0]
    return (all(isinstance(b, np.ndarray) and b.dtype == a.dtype and b.shape == a.shape
                and b.flags.c_contiguous for b in arrays)
            and a.dtype in (np.float32, np.float64) and a.ndim > 0)


def _flat(loop, arrays, *scalars):
    """loop(*flat arrays, flat out, *scalars) into a new array like arrays[0]."""
    out = np.empty_like(arrays[0])
    loop(*(x.reshape(-1) for x in arrays), out.reshape(-1), *scalars)
    return out


def relu(a):
    """max(a, 0)."""
    if not _fast(a):
        return reference.relu(a)
    return _flat(_relu_flat, (a,), a.dtype.type(0))


def leaky_relu(a, slope):
    """max(a, s a) for 0 <= s <= 1, s rounded to a's dtype first."""
    if not _fast(a):
        return reference.leaky_relu(a, slope)
    return _flat(_leaky_flat, (a,), a.dtype.type(slope))


def relu_grad(g, a, slope=0.0):
    """g * m with m = 1 where a > 0, else the slope, computed as reference's mask
    ((a > 0) * (1 - s) + s in a's dtype): the VJP of relu (a its input or output) and of
    leaky_relu."""
    if not _fast(g, a):
        return reference.relu_grad(g, a, slope)
    f = a.dtype.type
    m_pos = f(1) * f(1 - slope) + f(slope)
    m_neg = f(0) * f(1 - slope) + f(slope)
    return _flat(_mask_flat, (g, a), f(0), m_pos, m_neg)


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def _channel_bias(y, b, out):
    n, c, p = y.shape
    for i in range(n):
        for j in range(c):
            bj = b[j]
            for k in range(p):
                out[i, j, k] = y[i, j, k] + bj


def channel_bias(y, b):
    """y + b[None, :, None, None] for y (N, C, H, W), b (C,) in one pass: NumPy's broadcast add
    runs an inner loop per H*W row, ~3x a copy's time on small planes."""
    if not (_fast(y) and y.ndim == 4 and y.size and isinstance(b, np.ndarray)
            and b.dtype == y.dtype and b.shape == y.shape[1:2]):
        return reference.channel_bias(y, b)
    n, c = y.shape[:2]
    out = np.empty(y.shape, y.dtype)
    _channel_bias(y.reshape(n, c, -1), np.ascontiguousarray(b), out.reshape(n, c, -1))
    return out


def channel_sum(g):
    """g summed over N, H, W -> (C,): a conv bias's gradient. One matrix-vector product over the
    H*W rows, then a sum over N (NumPy's reduction over axes (0, 2, 3) is several times slower
    on small planes, benchmarks/PROFILE.md)."""
    if not (isinstance(g, np.ndarray) and g.ndim == 4 and g.size
            and g.dtype in (np.float32, np.float64)):
        return reference.channel_sum(g)
    n, c, h, w = g.shape
    g = np.ascontiguousarray(g)
    rows = matmul(g.reshape(n * c, h * w), np.ones((h * w, 1), g.dtype))
    return rows.reshape(n, c).sum(axis=0)
