"""CUDA kernels (CuPy arrays): the ``reference`` / ``fused_reference`` interface on the GPU.

Convolution = CUDA C im2col / col2im (``conv.cu``) + cuBLAS GEMM through ``cupy.matmul``:

* ``conv2d``: ``cols`` is ``(N, C*kh*kw, Ho*Wo)`` and ``y = w.reshape(O, -1) @ cols``
  (one batched GEMM whose output is already NCHW);
* ``conv2d_input_grad``: ``cols = w.reshape(O, -1).T @ gy`` then a col2im *gather* (each
  thread owns one input pixel and sums the windows covering it: no atomics,
  deterministic, uncovered pixels get 0);
* ``conv2d_weight_grad``: ``cols`` is laid out ``(C*kh*kw, N*Ho*Wo)`` so that the batch sum
  is one GEMM ``gy_t (O, N*Ho*Wo) @ cols.T`` (only ``gy``, the small operand, is transposed).

Batches whose ``cols`` would exceed ``MAX_COLS_BYTES`` are processed in chunks.

Fused: ``bias_act`` / ``bias_act_grad`` (``bias_act.cu``), and the losses' reductions
``bce_with_logits_sum`` and ``logsumexp`` (CuPy ``ReductionKernel``).

float32 and float64 (the result has the inputs' common dtype). Importing this module
needs neither CuPy nor a GPU: CuPy is imported, and the ``.cu`` sources compiled by
NVRTC (``cupy.RawModule``), on first use; the compiled modules are cached.
"""
import os
import threading

import numpy as np

__all__ = [
    "out_size", "conv2d", "conv2d_input_grad", "conv2d_weight_grad",
    "bias_act", "bias_act_grad", "bce_with_logits_sum", "logsumexp",
    "SOURCE_DIR", "CU_SOURCES", "MAX_COLS_BYTES",
]

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
CU_SOURCES = ("conv.cu", "bias_act.cu")
NVRTC_OPTIONS = ("-std=c++17",)
MAX_COLS_BYTES = 1 << 30  # im2col buffers above this are built batch-chunk by batch-chunk

_BLOCK = 256
_MAX_BLOCKS = 65535 * 8  # grid-stride loops cover the rest
_ACT_CODES = {"none": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4}

_lock = threading.Lock()
_modules = {}
_elementwise = {}


def _cupy():
    import cupy
    return cupy


def _module(source):
    """The cupy.RawModule for ``source`` (one of CU_SOURCES), built once per device."""
    cp = _cupy()
    key = (source, cp.cuda.Device().id)
    mod = _modules.get(key)
    if mod is None:
        with _lock:
            mod = _modules.get(key)
            if mod is None:
                with open(os.path.join(SOURCE_DIR, source)) as f:
                    code = f.read()
                mod = cp.RawModule(code=code, options=NVRTC_OPTIONS)
                _modules[key] = mod
    return mod


def _kernel(source, name, dtype):
    suffix = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}[np.dtype(dtype)]
    return _module(source).get_function(f"{name}_{suffix}")


def _launch(kern, total, args):
    if total <= 0:
        return
    blocks = min((total + _BLOCK - 1) // _BLOCK, _MAX_BLOCKS)
    kern((blocks,), (_BLOCK,), args)


def _float_dtype(*arrays):
    dt = np.result_type(*[a.dtype for a in arrays])
    if dt not in (np.float32, np.float64):
        raise TypeError(f"CUDA kernels support float32 and float64 arrays, got {dt}")
    return dt


def _prep(a, dt):
    """C-contiguous cupy array of dtype dt (no copy when it already is one)."""
    cp = _cupy()
    return cp.ascontiguousarray(cp.asarray(a, dtype=dt))


def _pair(v, what):
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def _i64(*vals):
    return tuple(np.int64(v) for v in vals)


def out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def _geometry(hw, k_hw, stride, padding):
    (h, w), (kh, kw) = hw, k_hw
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be positive, got {(sh, sw)}")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be non-negative, got {(ph, pw)}")
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError(
            f"kernel {(kh, kw)} is larger than the padded input {(h + 2 * ph, w + 2 * pw)}")
    return sh, sw, ph, pw, out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)


def _chunk(n, bytes_per_sample):
    """Batch-chunk size so that one chunk's cols stays under MAX_COLS_BYTES."""
    return max(1, min(n, MAX_COLS_BYTES // max(1, bytes_per_sample)))


def _im2col(x, kh, kw, sh, sw, ph, pw, ho, wo, batch_major):
    """x (N,C,H,W) C-contiguous -> cols (N, C*kh*kw, Ho*Wo) or (C*kh*kw, N*Ho*Wo)."""
    cp = _cupy()
    n, c, h, w = x.shape
    r, l = c * kh * kw, ho * wo
    cols = cp.empty((n, r, l) if batch_major else (r, n * l), dtype=x.dtype)
    _launch(_kernel("conv.cu", "im2col", x.dtype), n * r * l,
            (x, cols) + _i64(n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo)
            + (np.int32(1 if batch_major else 0),))
    return cols


def _col2im(cols, n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo):
    """cols (N, C*kh*kw, Ho*Wo) C-contiguous -> gx (N,C,H,W), by gather."""
    cp = _cupy()
    gx = cp.empty((n, c, h, w), dtype=cols.dtype)
    _launch(_kernel("conv.cu", "col2im", cols.dtype), n * c * h * w,
            (cols, gx) + _i64(n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo) + (np.int32(1),))
    return gx


def _is_pointwise(kh, kw, sh, sw, ph, pw):
    return kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0


def conv2d(x, w, stride, padding):
    """y = x (*) w, without bias. x (N,C,H,W), w (O,C,kh,kw) -> (N,O,Ho,Wo)."""
    cp = _cupy()
    dt = _float_dtype(x, w)
    x, w = _prep(x, dt), _prep(w, dt)
    n, c, h, wd = x.shape
    o, cw, kh, kw = w.shape
    if cw != c:
        raise ValueError(f"conv2d: x has {c} channels but w expects {cw}")
    sh, sw, ph, pw, ho, wo = _geometry((h, wd), (kh, kw), stride, padding)
    w2 = w.reshape(o, c * kh * kw)
    if _is_pointwise(kh, kw, sh, sw, ph, pw):
        return cp.ascontiguousarray(cp.matmul(w2, x.reshape(n, c, h * wd))).reshape(n, o, ho, wo)
    step = _chunk(n, c * kh * kw * ho * wo * dt.itemsize)
    if step >= n:
        cols = _im2col(x, kh, kw, sh, sw, ph, pw, ho, wo, batch_major=True)
        return cp.ascontiguousarray(cp.matmul(w2, cols)).reshape(n, o, ho, wo)
    y = cp.empty((n, o, ho * wo), dtype=dt)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        cols = _im2col(x[n0:n1], kh, kw, sh, sw, ph, pw, ho, wo, batch_major=True)
        y[n0:n1] = cp.matmul(w2, cols)
    return y.reshape(n, o, ho, wo)


def conv2d_input_grad(gy, w, in_hw, stride, padding):
    """dL/dx of conv2d: (w^T gy) folded back by a col2im gather -> (N,C,H,W)."""
    cp = _cupy()
    dt = _float_dtype(gy, w)
    gy, w = _prep(gy, dt), _prep(w, dt)
    n, og, ho, wo = gy.shape
    o, c, kh, kw = w.shape
    if og != o:
        raise ValueError(f"conv2d_input_grad: gy has {og} channels but w has {o} filters")
    h, wd = (int(v) for v in in_hw)
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    if sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(f"bad stride {(sh, sw)} / padding {(ph, pw)}")
    w2t = w.reshape(o, c * kh * kw).T  # (R, O)
    gy3 = gy.reshape(n, o, ho * wo)
    if _is_pointwise(kh, kw, sh, sw, ph, pw) and (ho, wo) == (h, wd):
        return cp.ascontiguousarray(cp.matmul(w2t, gy3)).reshape(n, c, h, wd)
    step = _chunk(n, c * kh * kw * ho * wo * dt.itemsize)
    if step >= n:
        cols = cp.ascontiguousarray(cp.matmul(w2t, gy3))  # (N, R, L)
        return _col2im(cols, n, c, h, wd, kh, kw, sh, sw, ph, pw, ho, wo)
    gx = cp.empty((n, c, h, wd), dtype=dt)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        cols = cp.ascontiguousarray(cp.matmul(w2t, gy3[n0:n1]))  # (n1-n0, R, L)
        gx[n0:n1] = _col2im(cols, n1 - n0, c, h, wd, kh, kw, sh, sw, ph, pw, ho, wo)
    return gx


def conv2d_weight_grad(x, gy, k_hw, stride, padding):
    """dL/dw of conv2d, summed over the batch in one GEMM per chunk -> (O,C,kh,kw)."""
    cp = _cupy()
    dt = _float_dtype(x, gy)
    x, gy = _prep(x, dt), _prep(gy, dt)
    n, c, h, wd = x.shape
    n2, o, ho, wo = gy.shape
    kh, kw = (int(v) for v in k_hw)
    if n2 != n:
        raise ValueError(f"conv2d_weight_grad: x has batch {n} but gy has {n2}")
    sh, sw, ph, pw, ho_, wo_ = _geometry((h, wd), (kh, kw), stride, padding)
    if (ho_, wo_) != (ho, wo):
        raise ValueError(f"conv2d_weight_grad: gy is {ho}x{wo} but the conv gives {ho_}x{wo_}")
    r, l = c * kh * kw, ho * wo
    if _is_pointwise(kh, kw, sh, sw, ph, pw):
        # cols = x itself: gw[o, c] = sum_n gy[n] @ x[n].T
        gw = cp.matmul(gy.reshape(n, o, l), x.reshape(n, c, l).transpose(0, 2, 1)).sum(axis=0)
        return cp.ascontiguousarray(gw, dtype=dt).reshape(o, c, kh, kw)
    gw = None
    step = _chunk(n, r * l * dt.itemsize)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        cols = _im2col(x[n0:n1], kh, kw, sh, sw, ph, pw, ho, wo, batch_major=False)  # (R, m*L)
        gyt = gy[n0:n1].reshape(n1 - n0, o, l).transpose(1, 0, 2).reshape(o, (n1 - n0) * l)
        part = cp.matmul(gyt, cols.T)  # (O, R)
        gw = part if gw is None else gw + part
    if gw is None:  # empty batch
        gw = cp.zeros((o, r), dtype=dt)
    return cp.ascontiguousarray(gw, dtype=dt).reshape(o, c, kh, kw)


# ----------------------------------------------------------------- fused bias + activation

def _act_code(act):
    if act is None:
        return 0
    try:
        return _ACT_CODES[act]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {act!r}; choose one of {', '.join(_ACT_CODES)}") from None


def bias_act(y, b, act, slope=0.01):
    """act(y + b), b per channel (axis 1) of y (N,F) or (N,C,...); a new array."""
    cp = _cupy()
    code = _act_code(act)
    dt = _float_dtype(y)
    y = _prep(y, dt)
    if y.ndim < 2:
        raise ValueError(f"bias_act needs a batch of at least 2 dims (N, F, ...), got {y.ndim}")
    ch = y.shape[1]
    inner = int(np.prod(y.shape[2:], dtype=np.int64)) if y.ndim > 2 else 1
    if b is not None:
        b = _prep(b, dt).reshape(-1)
        if b.size != ch:
            raise ValueError(f"bias has {b.size} entries but y has {ch} channels")
    out = cp.empty_like(y)
    _launch(_kernel("bias_act.cu", "bias_act", dt), y.size,
            (y, y if b is None else b, out) + _i64(y.size, max(ch, 1), max(inner, 1))
            + (np.int32(0 if b is None else 1), np.int32(code), dt.type(slope)))
    return out


def bias_act_grad(gout, out, act, slope=0.01):
    """Gradient wrt the pre-activation, from the activation's output (see fused_reference)."""
    cp = _cupy()
    code = _act_code(act)
    dt = _float_dtype(gout, out)
    gout, out = _prep(gout, dt), _prep(out, dt)
    if gout.shape != out.shape:
        gout, out = (cp.ascontiguousarray(a) for a in cp.broadcast_arrays(gout, out))
    gin = cp.empty(out.shape, dtype=dt)
    _launch(_kernel("bias_act.cu", "bias_act_grad", dt), gin.size,
            (gout, out, gin) + _i64(gin.size) + (np.int32(code), dt.type(slope)))
    return gin


# ---------------------------------------------------------------------- loss reductions

# Explicit float/double overloads: no reliance on which math overloads NVRTC provides.
_REDUCTION_PREAMBLE = r"""
__device__ __forceinline__ float sg_exp(float v) { return expf(v); }
__device__ __forceinline__ double sg_exp(double v) { return exp(v); }
__device__ __forceinline__ float sg_bce(float x, float t) {
    return (x > 0.0f ? x : 0.0f) - x * t + log1pf(expf(-fabsf(x)));
}
__device__ __forceinline__ double sg_bce(double x, double t) {
    return (x > 0.0 ? x : 0.0) - x * t + log1p(exp(-fabs(x)));
}
"""


def _reduction(name):
    k = _elementwise.get(name)
    if k is not None:
        return k
    cp = _cupy()
    with _lock:
        k = _elementwise.get(name)
        if k is None:
            if name == "bce":
                # Per-element term in T, accumulated in double, stored back as T.
                k = cp.ReductionKernel(
                    "T x, T t", "T y", "sg_bce(x, t)", "a + b", "y = (T)a", "0",
                    "sg_bce_with_logits_sum", reduce_type="double",
                    preamble=_REDUCTION_PREAMBLE)
            elif name == "sumexp":
                # sum(exp(a - m)) with m (the max, keepdims) broadcast against a.
                k = cp.ReductionKernel(
                    "T v, T m", "T y", "sg_exp(v - m)", "a + b", "y = (T)a", "0",
                    "sg_sum_exp_shifted", reduce_type="double",
                    preamble=_REDUCTION_PREAMBLE)
            else:  # pragma: no cover
                raise KeyError(name)
            _elementwise[name] = k
    return k


def bce_with_logits_sum(logits, target):
    """sum(max(x,0) - x*t + log1p(exp(-|x|))): 0-d array of the logits' dtype."""
    cp = _cupy()
    dt = _float_dtype(logits)
    x = _prep(logits, dt)
    t = cp.broadcast_to(cp.asarray(target, dtype=dt), x.shape)
    if x.size == 0:
        return cp.zeros((), dtype=dt)
    return _reduction("bce")(x, t)


def logsumexp(a, axis=None, keepdims=False):
    """log(sum(exp(a), axis)), shifted by the max for stability."""
    cp = _cupy()
    dt = _float_dtype(a)
    a = _prep(a, dt)
    m = a.max(axis=axis, keepdims=True)
    m = cp.where(cp.isfinite(m), m, cp.zeros((), dtype=dt))
    s = _reduction("sumexp")(a, m, axis=axis, keepdims=True)
    out = cp.log(s) + m
    if not keepdims:
        out = cp.squeeze(out, axis=axis) if axis is not None else out.reshape(())
    return out
