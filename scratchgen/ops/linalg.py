"""Matrix products. Batched matmul broadcasts leading dims (undone centrally)."""
from scratchgen import backend
from scratchgen.autograd.graph import primitive
from scratchgen.ops.elementwise import _data
from scratchgen.ops.shape import reshape, transpose
from scratchgen.ops.reduction import sum



def _check(a, b):
    if a.ndim < 1 or b.ndim < 1:
        raise ValueError(f"matmul needs tensors with at least 1 dimension, got shapes "
                         f"{a.shape} and {b.shape}")
    ka = a.shape[-1]
    kb = b.shape[-2] if b.ndim >= 2 else b.shape[0]
    if ka != kb:
        raise ValueError(f"matmul shape mismatch: {a.shape} @ {b.shape} "
                         f"(inner dimensions {ka} and {kb} differ)")


@primitive
def _matmul(a, b):
    """a @ b for a.ndim >= 2 and b.ndim >= 2; dA = g b^T, dB = a^T g."""
    return backend.kernels.matmul(a, b)


_matmul.defvjp(lambda g, ans, a, b: _matmul(g, transpose(b)),
               lambda g, ans, a, b: _matmul(transpose(a), g))


def matmul(a, b):
    """NumPy's matmul, differentiable; 1-D operands are promoted and the axis dropped."""
    da, db = _data(a), _data(b)
    _check(da, db)
    if da.ndim >= 2 and db.ndim >= 2:
        return _matmul(a, b)
    a2 = reshape(a, (1,) + da.shape) if da.ndim == 1 else a
    b2 = reshape(b, db.shape + (1,)) if db.ndim == 1 else b
    out = _matmul(a2, b2)
    shape = out.shape
    if da.ndim == 1:
        shape = shape[:-2] + shape[-1:]
    if db.ndim == 1:
        shape = shape[:-1]
    return reshape(out, shape)


@primitive
def linear(x, w, b=None):
    """y = x w^T + b with x (..., in), w (out, in), b (out,).

    dL/dx = g w,  dL/dw = g^T x (leading dims flattened),  dL/db = sum of g over leading dims.
    """
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: input has shape {x.shape} but weight has shape {w.shape} "
                         f"(expected input (..., {w.shape[1]}))")
    y = backend.kernels.matmul(x, w.T)
    if b is not None:
        y += b
    return y


def _linear_w(g, ans, x, w, b=None):
    xd = _data(x)
    if xd.ndim != 2:
        g = reshape(g, (-1, g.shape[-1]))
        x = reshape(x, (-1, xd.shape[-1]))
    return _matmul(transpose(g), x)


linear.defvjp(lambda g, ans, x, w, b=None: matmul(g, w), _linear_w,
              lambda g, ans, x, w, b=None: g)
