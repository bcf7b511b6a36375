"""CUDA kernels (CuPy arrays): the ``reference`` interface on the GPU.

Convolution = CUDA C im2col / col2im (``conv.cu``) + one cuBLAS GEMM through ``cupy.matmul``
per batch chunk. ``cols`` is always laid out ``(C*kh*kw, N*Ho*Wo)``, so every GEMM is 2-D
(no batched pointer-array path, no broadcast of the weight over the batch):

* ``conv2d``: ``y = w.reshape(O, R) @ cols`` is ``(O, N*L)``, transposed once to NCHW;
* ``conv2d_input_grad``: ``cols = w.reshape(O, R).T @ gy_t`` with ``gy_t`` the ``(O, N*L)``
  transpose of ``gy``, then a col2im *gather* (each thread owns one input pixel and sums
  the windows covering it: no atomics, deterministic, uncovered pixels get 0);
* ``conv2d_weight_grad``: ``gw = gy_t @ cols.T`` (the batch sum is inside the GEMM).

im2col/col2im use 32-bit index arithmetic when every index fits (``_fits_int32``), else
64-bit. Batches whose ``cols`` would exceed ``MAX_COLS_BYTES`` are processed in chunks.
``adam_update`` is the fused Adam step of ``optim.cu`` (one pass, no temporaries).

float32 and float64 (the result has the inputs' common dtype). Importing this module
needs neither CuPy nor a GPU: CuPy is imported, and the ``.cu`` sources compiled by NVRTC
(``cupy.RawModule``), on first use. Compiled kernels are cached per (source, name, dtype,
device); CuPy also keeps them on disk (``~/.cupy/kernel_cache``), so only a machine's very
first run pays the NVRTC compile (``tools/gpu_check.sh`` logs how long it takes).
"""
import math
import os
import threading
import time

import numpy as np

from ..reference import adam_arrays, channel_bias, channel_sum, relu_grad  # array methods only

__all__ = [
    "out_size", "conv2d", "conv2d_input_grad", "conv2d_weight_grad", "matmul", "adam_update",
    "relu", "leaky_relu", "relu_grad", "channel_bias", "channel_sum", "self_test", "SOURCE_DIR",
    "CU_SOURCES", "MAX_COLS_BYTES",
]

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
CU_SOURCES = ("conv.cu", "optim.cu")
NVRTC_OPTIONS = ("-std=c++17",)
MAX_COLS_BYTES = 1 << 30  # im2col buffers above this are built batch-chunk by batch-chunk

_BLOCK = 256
_MAX_BLOCKS = 65535 * 8  # grid-stride loops cover the rest
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}

_lock = threading.Lock()
_modules = {}  # (source, device) -> cupy.RawModule
_kernels = {}  # (source, name, dtype, device) -> compiled kernel


def _cupy():
    import cupy
    return cupy


def _kernel(source, name, dtype):
    """The compiled kernel ``name_<f32|f64>`` of ``source``, built once per device."""
    cp = _cupy()
    dev = cp.cuda.Device().id
    key = (source, name, np.dtype(dtype), dev)
    kern = _kernels.get(key)
    if kern is None:
        with _lock:
            mod = _modules.get((source, dev))
            if mod is None:
                with open(os.path.join(SOURCE_DIR, source)) as f:
                    mod = _modules[(source, dev)] = cp.RawModule(code=f.read(),
                                                                 options=NVRTC_OPTIONS)
            kern = _kernels[key] = mod.get_function(f"{name}_{_SUFFIX[np.dtype(dtype)]}")
    return kern


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


def _pair(v):
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def matmul(a, b):
    """``a @ b`` (cuBLAS through CuPy)."""
    return _cupy().matmul(a, b)


def relu(a):
    """max(a, 0) (CuPy's elementwise kernel)."""
    return _cupy().maximum(a, 0)


def leaky_relu(a, slope):
    """max(a, s a) for 0 <= s <= 1."""
    y = a * slope
    return _cupy().maximum(a, y, out=y)


def out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def _geometry(hw, k_hw, stride, padding):
    (h, w), (kh, kw) = hw, k_hw
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
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


def _fits_int32(*sizes):
    """True when indices up to max(sizes), plus one grid stride, fit in a C int."""
    return max(sizes) + _MAX_BLOCKS * _BLOCK < 2**31


def _index_args(name, sizes, geometry):
    """(kernel name, scalar args): the 32-bit variant when every index fits."""
    if _fits_int32(*sizes):
        return name + "32", tuple(np.int32(v) for v in geometry)
    return name, tuple(np.int64(v) for v in geometry)


def _im2col(x, kh, kw, sh, sw, ph, pw, ho, wo):
    """x (N,C,H,W) C-contiguous -> cols (C*kh*kw, N*Ho*Wo)."""
    cp = _cupy()
    n, c, h, w = x.shape
    cols = cp.empty((c * kh * kw, n * ho * wo), dtype=x.dtype)
    name, geo = _index_args("im2col", (x.size, cols.size),
                            (n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo))
    _launch(_kernel("conv.cu", name, x.dtype), cols.size, (x, cols) + geo)
    return cols


def _col2im(cols, n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo):
    """cols (C*kh*kw, N*Ho*Wo) C-contiguous -> gx (N,C,H,W), by gather."""
    cp = _cupy()
    gx = cp.empty((n, c, h, w), dtype=cols.dtype)
    name, geo = _index_args("col2im", (cols.size, gx.size),
                            (n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo))
    _launch(_kernel("conv.cu", name, cols.dtype), gx.size, (cols, gx) + geo)
    return gx


def _to_channel_major(a):
    """(m, O, Ho, Wo) -> C-contiguous (O, m*Ho*Wo)."""
    m, o = a.shape[:2]
    return _cupy().ascontiguousarray(a.reshape(m, o, -1).transpose(1, 0, 2)).reshape(o, -1)


def _to_batch_major(a2, m, hw):
    """(O, m*Ho*Wo) -> C-contiguous (m, O, Ho, Wo)."""
    o = a2.shape[0]
    out = a2.reshape(o, m, -1).transpose(1, 0, 2)
    return _cupy().ascontiguousarray(out).reshape((m, o) + tuple(hw))


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
    step = _chunk(n, c * kh * kw * ho * wo * dt.itemsize)
    y = cp.empty((n, o, ho, wo), dtype=dt) if step < n else None
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        cols = _im2col(x[n0:n1], kh, kw, sh, sw, ph, pw, ho, wo)
        part = _to_batch_major(cp.matmul(w2, cols), n1 - n0, (ho, wo))
        if y is None:
            return part
        y[n0:n1] = part
    return y if y is not None else cp.empty((0, o, ho, wo), dtype=dt)


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
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    if sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(f"bad stride {(sh, sw)} / padding {(ph, pw)}")
    w2t = w.reshape(o, c * kh * kw).T  # (R, O)
    step = _chunk(n, c * kh * kw * ho * wo * dt.itemsize)
    gx = cp.empty((n, c, h, wd), dtype=dt) if step < n else None
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        cols = cp.matmul(w2t, _to_channel_major(gy[n0:n1]))  # (R, m*L)
        part = _col2im(cols, n1 - n0, c, h, wd, kh, kw, sh, sw, ph, pw, ho, wo)
        if gx is None:
            return part
        gx[n0:n1] = part
    return gx if gx is not None else cp.zeros((0, c, h, wd), dtype=dt)


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
    gw = None
    step = _chunk(n, c * kh * kw * ho * wo * dt.itemsize)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        cols = _im2col(x[n0:n1], kh, kw, sh, sw, ph, pw, ho, wo)  # (R, m*L)
        part = cp.matmul(_to_channel_major(gy[n0:n1]), cols.T)  # (O, R)
        gw = part if gw is None else gw + part
    if gw is None:  # empty batch
        gw = cp.zeros((o, c * kh * kw), dtype=dt)
    return cp.ascontiguousarray(gw).reshape(o, c, kh, kw)


def adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2, v_max=None):
    """In place: g' = g + wd p;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;
    (v_max = max(v_max, v), used for v below, when given);
    p -= lr/bc1 * m / (sqrt(v) * (1/sqrt(bc2)) + eps).

    p, g, m, v (, v_max): C-contiguous device arrays of one float dtype and shape; the
    scalars are rounded to that dtype first, as in the cpu kernel."""
    adam_arrays(p, g, m, v, v_max)
    dt = p.dtype
    f = dt.type
    _launch(_kernel("optim.cu", "adam", dt), p.size,
            (p, g, m, v, v if v_max is None else v_max, np.int64(p.size),
             np.int32(v_max is not None), np.int32(weight_decay != 0),
             f(beta1), f(1 - beta1), f(beta2), f(1 - beta2), f(1 / math.sqrt(bc2)), f(eps),
             f(lr / bc1), f(weight_decay)))


def self_test():
    """Compile every kernel and run a tiny conv, an elementwise op and a GEMM on the current
    device; raise on any failure or wrong result. Returns the seconds it took (the first
    compile of a fresh machine dominates). ``backend.use('cuda')`` calls it, so a broken
    CuPy install fails at start, in one line, not mid-run."""
    cp = _cupy()
    t0 = time.perf_counter()
    for dt in _SUFFIX:
        for name in ("im2col", "im2col32", "col2im", "col2im32"):
            _kernel("conv.cu", name, dt)
        _kernel("optim.cu", "adam", dt)
    x = cp.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    y = conv2d(x, cp.ones((1, 1, 2, 2), dtype=np.float32), (2, 2), (0, 0))
    want = np.array([[10.0, 18.0], [42.0, 50.0]], dtype=np.float32)
    got = cp.asnumpy(y.reshape(2, 2) * 2 - y.reshape(2, 2) + cp.matmul(
        cp.eye(2, dtype=np.float32), cp.zeros((2, 2), dtype=np.float32)))
    cp.cuda.Device().synchronize()
    if not np.array_equal(got, want):
        raise RuntimeError(f"the CUDA self-test computed {got.tolist()}, expected {want.tolist()}")
    return time.perf_counter() - t0
