"""The ``cpu`` backend's convolutions: the three public kernels, each a geometry, a route and a
call.

Same interface and semantics as :mod:`scratchgen.kernels.reference` (NCHW, ``stride`` and
``padding`` as ``(h, w)`` int pairs, no bias). Each call prepares its arrays (C-contiguous,
float32 or float64), describes itself by a ``routes.ConvGeometry``, and runs the algorithm
``routes.route`` picks for its pass: im2col + GEMM (``im2col.py``) or a Winograd module
(``winograd.py``, ``winograd_f43.py``, ``winograd_s2.py``). ``routes.py`` has the table, its
tuning constants and ``routes.force``.
"""
import numpy as np

from . import routes


def out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def _pair(v):
    if isinstance(v, (tuple, list)):
        a, b = v
        return int(a), int(b)
    return int(v), int(v)


def _prep(*arrays):
    """C-contiguous copies/views in one common float dtype (float32 or float64)."""
    dt = np.result_type(*arrays)
    if dt != np.float32 and dt != np.float64:
        dt = np.float64
    return [np.ascontiguousarray(a, dtype=dt) for a in arrays]


def _run(pass_, g, a, b):
    r = routes.route(g, pass_)
    return getattr(routes.algorithm(r.algorithm), pass_)(a, b, g, r)


def conv2d(x, w, stride, padding):
    """y = x (*) w, without bias. x (N,C,H,W), w (O,C,kh,kw) -> (N,O,Ho,Wo)."""
    x, w = _prep(x, w)
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    g = routes.ConvGeometry(n, c, h, wd, o, kh, kw, out_size(h, kh, sh, ph),
                            out_size(wd, kw, sw, pw), (sh, sw), (ph, pw))
    return _run("forward", g, x, w)


def conv2d_input_grad(gy, w, in_hw, stride, padding):
    """dL/dx: the adjoint of ``conv2d`` in x -> (N,C,H,W); positions no window covers get 0."""
    gy, w = _prep(gy, w)
    n, o, ho, wo = gy.shape
    _, c, kh, kw = w.shape
    g = routes.ConvGeometry(n, c, *_pair(in_hw), o, kh, kw, ho, wo, _pair(stride),
                            _pair(padding))
    return _run("input_grad", g, gy, w)


def conv2d_weight_grad(x, gy, k_hw, stride, padding):
    """dL/dw = sum_{n,i,j} gy[n,o,i,j] * x_pad[n,c,i*sh+p,j*sw+q] -> (O,C,kh,kw)."""
    x, gy = _prep(x, gy)
    n, c, h, wd = x.shape
    _, o, ho, wo = gy.shape
    g = routes.ConvGeometry(n, c, h, wd, o, *_pair(k_hw), ho, wo, _pair(stride),
                            _pair(padding))
    return _run("weight_grad", g, x, gy)
