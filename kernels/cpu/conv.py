"""Numba + BLAS convolution kernels for the ``cpu`` backend.

Same interface and semantics as :mod:`scratchgen.kernels.reference` (NCHW, ``stride`` and
``padding`` as ``(h, w)`` int pairs, no bias). Strategy (see ``benchmarks/NOTES.md`` for the
measurements behind each choice):

* ``conv2d``: im2col (numba loop) into a ``(C*kh*kw, N*Ho*Wo)`` buffer, one GEMM
  ``W(O, K) @ cols`` (NumPy ``@`` -> OpenBLAS), then a cheap transpose to NCHW.
* ``conv2d_input_grad``: batched GEMM ``W^T @ gy[n]`` -> ``(N, K, Ho*Wo)``, then a numba
  col2im (scatter-add) one ``(n, c)`` plane at a time, so a split never races.
* ``conv2d_weight_grad``: im2col into ``(K, N*P)`` and ``gw^T = cols @ gy^T`` as one GEMM
  over the joint ``(n, p)`` axis (this orientation avoids an OpenBLAS stall on skinny
  outputs).

1x1 / stride-1 / no-padding convolutions skip im2col and call BLAS directly.

The padded border is never materialised: loops compute, per kernel tap, the range of output
columns whose input column is in bounds, and zero-fill (or skip) the rest.

All numba functions use ``cache=True``, so they compile once per machine and per dtype
(float32 / float64); later processes load the machine code from ``__pycache__``.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit, prange, uint64


def out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


# ---------------------------------------------------------------- numba loops
#
# All loops index flat (1-D) arrays with unsigned offsets: with signed indices numba must
# emit a negative-index wraparound check per access, which blocks vectorisation (measured
# 3-4x slower, see benchmarks/NOTES.md). They are deliberately *serial* (no
# ``parallel=True``): numba's worker threads keep spinning after a parallel region and
# steal a core from the OpenBLAS GEMM that always follows or precedes these loops; on the
# 2-core target machine a serial im2col + threaded GEMM beat parallel im2col + GEMM
# (12.4 ms vs 18-20 ms for the W4 forward). ``prange`` is kept so that switching back is a
# one-word change.

_JIT = dict(cache=True, nogil=True, boundscheck=False)


@njit(cache=True, inline="always")
def _valid_range(q, pad, stride, n_in, n_out):
    """Output indices j in [lo, hi) with 0 <= j*stride + q - pad < n_in."""
    off = q - pad
    lo = 0 if off >= 0 else (-off + stride - 1) // stride
    top = n_in - 1 - off
    hi = 0 if top < 0 else top // stride + 1
    hi = min(hi, n_out)
    lo = min(lo, hi)
    return lo, hi


@njit(**_JIT)
def _im2col_flat(x, n_, c_, h, w, kh, kw, sh, sw, ph, pw, ho, wo, cols, rs, ns, t0, t1):
    """cols[r*rs + n*ns + i*wo + j] = x_pad[n, c, i*sh + p, j*sw + q], r = (c*kh + p)*kw + q.

    x: flat C-order (N, C, H, W); cols: flat. (rs, ns) = (P, K*P) lays cols out as
    (N, K, P), (rs, ns) = (N*P, P) as (K, N*P); P = ho*wo, K = C*kh*kw. Does rows
    t0 <= t < t1 of the N*K (row, sample) pairs, in the order cols is laid out."""
    k = c_ * kh * kw
    for t in prange(t0, t1):
        if rs <= ns:  # (N, K, P): n outer
            n = t // k
            r = t - n * k
        else:  # (K, N*P): r outer, so writes stay sequential
            r = t // n_
            n = t - r * n_
        c = r // (kh * kw)
        pq = r - c * (kh * kw)
        p = pq // kw
        q = pq - p * kw
        jlo, jhi = _valid_range(q, pw, sw, w, wo)
        ilo, ihi = _valid_range(p, ph, sh, h, ho)
        ob = uint64(r * rs + n * ns)
        xb = (n * c_ + c) * h * w
        for i in range(ho):
            base = ob + uint64(i * wo)
            if i < ilo or i >= ihi:
                for j in range(wo):
                    cols[base + uint64(j)] = 0
                continue
            # may wrap below 0 (q < pw); unsigned arithmetic is mod 2**64, so xr + j for
            # j >= jlo is the right in-bounds offset again
            xr = uint64(xb + (i * sh + p - ph) * w + q - pw)
            for j in range(jlo):
                cols[base + uint64(j)] = 0
            if sw == 1:
                for j in range(jlo, jhi):
                    cols[base + uint64(j)] = x[xr + uint64(j)]
            else:
                for j in range(jlo, jhi):
                    cols[base + uint64(j)] = x[xr + uint64(j * sw)]
            for j in range(jhi, wo):
                cols[base + uint64(j)] = 0


@njit(**_JIT)
def _im2col_rows(x, n_, c_, h, w, kh, kw, sh, sw, ph, pw, ho, wo, cols, r0, r1):
    """``_im2col_flat`` for the (K, N*P) layout, rows r0 <= r < r1 of K, each row whole.

    r outer, n inner: the tap's valid ranges are computed once per row instead of once per
    (r, n) pair, and the writes run along a row of N*P. 1.8-2x faster than
    ``_im2col_flat`` on short output rows (D2: wo = 7), 1.3x on W4."""
    p_ = ho * wo
    hw = h * w
    np_ = n_ * p_
    for r in range(r0, r1):
        c = r // (kh * kw)
        pq = r - c * (kh * kw)
        p = pq // kw
        q = pq - p * kw
        jlo, jhi = _valid_range(q, pw, sw, w, wo)
        ilo, ihi = _valid_range(p, ph, sh, h, ho)
        for n in range(n_):
            ob = uint64(r * np_ + n * p_)
            xb = (n * c_ + c) * hw
            for i in range(ho):
                base = ob + uint64(i * wo)
                if i < ilo or i >= ihi:
                    for j in range(wo):
                        cols[base + uint64(j)] = 0
                    continue
                xr = uint64(xb + (i * sh + p - ph) * w + q - pw)  # mod 2**64, as above
                for j in range(jlo):
                    cols[base + uint64(j)] = 0
                if sw == 1:
                    for j in range(jlo, jhi):
                        cols[base + uint64(j)] = x[xr + uint64(j)]
                else:
                    for j in range(jlo, jhi):
                        cols[base + uint64(j)] = x[xr + uint64(j * sw)]
                for j in range(jhi, wo):
                    cols[base + uint64(j)] = 0


@njit(**_JIT)
def _im2col_rows_table(x, n_, c_, h, w, kh, kw, sh, sw, ph, pw, ho, wo, cols, r0, r1):
    """``_im2col_rows`` through a per-tap table: off[a] = in-plane offset of output a
    (a = i*wo + j), ok[a] = whether it is inside x. One flat loop of P per (r, n) instead of
    ho short strided rows; faster when rows are short and strided (D2: 1.4 vs 1.8 ms)."""
    p_ = ho * wo
    hw = h * w
    np_ = n_ * p_
    off = np.empty(p_, np.uint64)
    ok = np.empty(p_, np.bool_)
    for r in range(r0, r1):
        c = r // (kh * kw)
        pq = r - c * (kh * kw)
        p = pq // kw
        q = pq - p * kw
        for i in range(ho):
            ii = i * sh + p - ph
            for j in range(wo):
                jj = j * sw + q - pw
                inside = ii >= 0 and ii < h and jj >= 0 and jj < w
                ok[i * wo + j] = inside
                off[i * wo + j] = uint64(ii * w + jj) if inside else uint64(0)
        for n in range(n_):
            ob = uint64(r * np_ + n * p_)
            xb = uint64((n * c_ + c) * hw)
            for a in range(p_):
                v = x[xb + off[a]]
                cols[ob + uint64(a)] = v if ok[a] else 0


@njit(**_JIT)
def _col2im_flat(cols, rs, ns, n_, c_, h, w, kh, kw, sh, sw, ph, pw, ho, wo, gx, t0, t1):
    """gx[n, c, i*sh + p - ph, j*sw + q - pw] = sum of cols[r*rs + n*ns + i*wo + j].

    The adjoint of ``_im2col_flat`` (same layouts); out-of-bounds taps are dropped.
    gx: flat C-order (N, C, H, W), overwritten. One (n, c) plane per iteration, so a
    parallel loop would never write the same element from two threads. Does planes
    t0 <= t < t1 of the N*C."""
    hw = h * w
    for t in prange(t0, t1):
        n = t // c_
        c = t - n * c_
        gb = uint64(t * hw)
        for a in range(hw):
            gx[gb + uint64(a)] = 0
        for p in range(kh):
            ilo, ihi = _valid_range(p, ph, sh, h, ho)
            for q in range(kw):
                jlo, jhi = _valid_range(q, pw, sw, w, wo)
                r = (c * kh + p) * kw + q
                ob = r * rs + n * ns
                for i in range(ilo, ihi):
                    src = uint64(ob + i * wo)
                    dst = uint64(t * hw + (i * sh + p - ph) * w + q - pw)  # mod 2**64
                    if sw == 1:
                        for j in range(jlo, jhi):
                            gx[dst + uint64(j)] += cols[src + uint64(j)]
                    else:
                        for j in range(jlo, jhi):
                            gx[dst + uint64(j * sw)] += cols[src + uint64(j)]


# ---------------------------------------------------------------- helpers


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
    return [np.ascontiguousarray(a, dtype=dt) for a in arrays], dt


def _is_pointwise(kh, kw, sh, sw, ph, pw):
    return kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0


# Work splitting: the numba loops release the GIL (nogil=True), so big calls are cut into
# one contiguous chunk per core, run on a plain thread pool (idle workers sleep on a
# futex, so unlike numba's pool they leave the cores to OpenBLAS between calls).
# Off by default (SCRATCHGEN_CPU_THREADS unset or 1): in isolation a 2-way split halves
# im2col (2.9 -> 1.5 ms, W4), but right after a GEMM the OpenBLAS worker is still spinning
# on the other core and the split half crawls, so fwd = im2col + GEMM measured the same
# (12.56 vs 12.57 ms). Set SCRATCHGEN_CPU_THREADS=2 to try it elsewhere.
_NTHREADS = max(1, min(int(os.environ.get("SCRATCHGEN_CPU_THREADS", "1") or 1), 64))
_MIN_SPLIT = 1 << 16  # elements moved below which threading costs more than it saves
_pool = None
_pool_lock = threading.Lock()


def _get_pool():
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(_NTHREADS - 1, thread_name_prefix="scratchgen-cpu")
    return _pool


def _split(fn, total, work, *args):
    """fn(*args, t0, t1) over 0 <= t < total, split across cores when work is large."""
    parts = min(_NTHREADS, total)
    if parts <= 1 or work < _MIN_SPLIT:
        fn(*args, 0, total)
        return
    bounds = [total * i // parts for i in range(parts + 1)]
    pool = _get_pool()
    futs = [pool.submit(fn, *args, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    fn(*args, bounds[0], bounds[1])
    for f in futs:
        f.result()


def _im2col(x, kh, kw, sh, sw, ph, pw, ho, wo, layout):
    """layout 'nkp' -> (N, K, P); 'knp' -> (K, N*P)."""
    n, c = x.shape[:2]
    k, p = c * kh * kw, ho * wo
    if layout == "nkp":
        cols = np.empty((n, k, p), dtype=x.dtype)
        rs, ns = p, k * p
    else:
        cols = np.empty((k, n * p), dtype=x.dtype)
        fn = _im2col_rows_table if sw > 1 and wo <= 8 else _im2col_rows
        _split(fn, k, n * k * p,
               x.reshape(-1), n, c, x.shape[2], x.shape[3], kh, kw, sh, sw, ph, pw, ho, wo,
               cols.reshape(-1))
        return cols
    _split(_im2col_flat, n * k, n * k * p,
           x.reshape(-1), n, c, x.shape[2], x.shape[3], kh, kw, sh, sw, ph, pw, ho, wo,
           cols.reshape(-1), rs, ns)
    return cols


# ---------------------------------------------------------------- public kernels

# cols layout per kernel, measured (benchmarks/NOTES.md): one big GEMM + a cheap output
# transpose beats 64 per-sample GEMMs for forward and weight grad; for the input grad the
# batched GEMM feeding col2im directly won on W4 (10.7 vs 12.7 ms).
LAYOUT = {"fwd": "knp", "dx": "nkp", "dw": "knp"}


def conv2d(x, w, stride, padding):
    """y = x (*) w, without bias. x (N,C,H,W), w (O,C,kh,kw) -> (N,O,Ho,Wo)."""
    (x, w), dt = _prep(x, w)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = out_size(h, kh, sh, ph)
    wo = out_size(wd, kw, sw, pw)
    p = ho * wo
    w2 = w.reshape(o, c * kh * kw)
    if _is_pointwise(kh, kw, sh, sw, ph, pw):
        y = np.matmul(w2, x.reshape(n, c, p))
    elif LAYOUT["fwd"] == "nkp":
        y = np.matmul(w2, _im2col(x, kh, kw, sh, sw, ph, pw, ho, wo, "nkp"))
    else:
        y2 = w2 @ _im2col(x, kh, kw, sh, sw, ph, pw, ho, wo, "knp")
        y = np.ascontiguousarray(y2.reshape(o, n, p).transpose(1, 0, 2))
    return y.reshape(n, o, ho, wo)


def conv2d_input_grad(gy, w, in_hw, stride, padding):
    """dL/dx: col2im of w^T gy -> (N,C,H,W); positions no window covers get 0."""
    (gy, w), dt = _prep(gy, w)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    h, wd = _pair(in_hw)
    n, o, ho, wo = gy.shape
    _, c, kh, kw = w.shape
    k, p = c * kh * kw, ho * wo
    w2t = w.reshape(o, k).T  # (K, O), F-ordered view: BLAS takes it transposed
    g3 = gy.reshape(n, o, p)
    if _is_pointwise(kh, kw, sh, sw, ph, pw) and ho == h and wo == wd:
        return np.matmul(w2t, g3).reshape(n, c, h, wd)
    gx = np.empty((n, c, h, wd), dtype=dt)
    if LAYOUT["dx"] == "nkp":
        dcols = np.matmul(w2t, g3)  # (N, K, P)
        rs, ns = p, k * p
    else:
        gyt = np.ascontiguousarray(g3.transpose(1, 0, 2)).reshape(o, n * p)
        dcols = w2t @ gyt  # (K, N*P)
        rs, ns = n * p, p
    _split(_col2im_flat, n * c, n * k * p,
           dcols.reshape(-1), rs, ns, n, c, h, wd, kh, kw, sh, sw, ph, pw, ho, wo, gx.reshape(-1))
    return gx


def conv2d_weight_grad(x, gy, k_hw, stride, padding):
    """dL/dw = sum_{n,i,j} gy[n,o,i,j] * x_pad[n,c,i*sh+p,j*sw+q] -> (O,C,kh,kw)."""
    (x, gy), dt = _prep(x, gy)
    kh, kw = _pair(k_hw)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    n, c, h, wd = x.shape
    _, o, ho, wo = gy.shape
    k, p = c * kh * kw, ho * wo
    g3 = gy.reshape(n, o, p)
    if LAYOUT["dw"] == "knp":
        # one GEMM over the joint (n, p) axis. Computed as gw^T = cols(K, NP) @ gy^T(NP, O):
        # OpenBLAS (2 threads) stalls on the other orientation when O*K is skinny
        # (D1: 8.0 ms vs 0.29 ms; D2: 84 vs 8 ms under load; W4 no worse).
        if n == 1 and _is_pointwise(kh, kw, sh, sw, ph, pw):
            cols = x.reshape(k, p)
        else:
            cols = _im2col(x, kh, kw, sh, sw, ph, pw, ho, wo, "knp")
        gyt = np.ascontiguousarray(g3.transpose(1, 0, 2)).reshape(o, n * p)
        gw = np.ascontiguousarray((cols @ gyt.T).T)
    else:
        if _is_pointwise(kh, kw, sh, sw, ph, pw):
            cols = x.reshape(n, k, p)
        else:
            cols = _im2col(x, kh, kw, sh, sw, ph, pw, ho, wo, "nkp")
        gw = np.matmul(g3, cols.transpose(0, 2, 1)).sum(0)
    return gw.reshape(o, c, kh, kw)
