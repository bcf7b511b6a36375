"""Numba + BLAS convolution kernels for the ``cpu`` backend.

Same interface and semantics as :mod:`scratchgen.kernels.reference` (NCHW, ``stride`` and
``padding`` as ``(h, w)`` int pairs, no bias). Routes, chosen per call by geometry (see
``benchmarks/NOTES.md`` for the measurements behind each choice):

* Winograd where ``WINOGRAD_M`` has the (kernel, stride) pair and both channel counts are
  >= ``WINOGRAD_MIN_CHANNELS``, for all three kernels, with the output tile whose GEMMs do
  the least work on this output size: 3x3 stride 1 with F(4x4, 3x3), tiles stored
  channel-last (``winograd_f43.py``), or F(2x2, 3x3) (``winograd.py``, outputs of 1-2
  pixels); 4x4 stride 2 with F(4x4, 2x2) or F(2x2, 2x2) on the input's four phases, tiles
  channel-last (``winograd_s2.py``); the batch is split into chunks run on both cores with
  single-threaded GEMMs.
* Otherwise im2col:
  ``conv2d``: im2col (numba loop) into a ``(C*kh*kw, N*Ho*Wo)`` buffer, one GEMM
  ``W(O, K) @ cols`` (NumPy ``@`` -> OpenBLAS), then a cheap transpose to NCHW;
  ``conv2d_input_grad``: batched GEMM ``W^T @ gy[n]`` -> ``(N, K, Ho*Wo)``, then a numba
  col2im (scatter-add) one ``(n, c)`` plane at a time, so a split never races;
  ``conv2d_weight_grad``: im2col into ``(K, N*P)`` and ``gw^T = cols @ gy^T`` as one GEMM
  over the joint ``(n, p)`` axis (this orientation avoids an OpenBLAS stall on skinny
  outputs). Up to K = C*kh*kw = ``SMALL_K`` (a first layer on a few channels) the forward
  and the weight gradient lay columns out per sample, ``(N, K, P)``, and multiply each
  sample on its own (``y[n] = W @ cols[n]``, ``gw = sum_n gy[n] @ cols[n]^T``). 1x1 /
  stride-1 / no-padding convolutions skip im2col and call BLAS directly.

The padded border is never materialised: loops compute, per kernel tap, the range of output
columns whose input column is in bounds, and zero-fill (or skip) the rest.

All numba functions use ``cache=True``, so they compile once per machine and per dtype
(float32 / float64); later processes load the machine code from the cache.
"""
import numpy as np
from numba import njit, prange, uint64

from . import winograd, winograd_f43, winograd_s2
from .linalg import matmul
from .parallel import batch_chunks, parallel_chunks
from .winograd import _valid_range


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


@njit(**_JIT)
def _im2col_rows(x, n_, c_, h, w, kh, kw, sh, sw, ph, pw, ho, wo, cols, rs, ns, r0, r1):
    """cols[r*rs + n*ns + i*wo + j] = x_pad[n, c, i*sh + p, j*sw + q], r = (c*kh + p)*kw + q,
    for rows r0 <= r < r1 of K = C*kh*kw; x, cols flat, P = ho*wo. Strides (rs, ns) per
    (row, sample): (N*P, P) lays cols out as (K, N*P), (P, K*P) as (N, K, P).

    r outer, n inner: the tap's valid ranges are computed once per row, and the writes run
    along a row of N*P (1.8-2x faster than one (r, n) pair per iteration on short output
    rows, D2: wo = 7; 1.3x on W4)."""
    hw = h * w
    for r in range(r0, r1):
        c = r // (kh * kw)
        pq = r - c * (kh * kw)
        p = pq // kw
        q = pq - p * kw
        jlo, jhi = _valid_range(q, pw, sw, w, wo)
        ilo, ihi = _valid_range(p, ph, sh, h, ho)
        for n in range(n_):
            ob = uint64(r * rs + n * ns)
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
def _im2col_rows_table(x, n_, c_, h, w, kh, kw, sh, sw, ph, pw, ho, wo, cols, rs, ns, r0, r1):
    """``_im2col_rows`` through a per-tap table: off[a] = in-plane offset of output a
    (a = i*wo + j), ok[a] = whether it is inside x. One flat loop of P per (r, n) instead of
    ho short strided rows; faster when rows are short and strided (D2: 1.4 vs 1.8 ms)."""
    p_ = ho * wo
    hw = h * w
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
            ob = uint64(r * rs + n * ns)
            xb = uint64((n * c_ + c) * hw)
            for a in range(p_):
                v = x[xb + off[a]]
                cols[ob + uint64(a)] = v if ok[a] else 0


@njit(**_JIT)
def _col2im_flat(cols, rs, ns, n_, c_, h, w, kh, kw, sh, sw, ph, pw, ho, wo, gx, t0, t1):
    """gx[n, c, i*sh + p - ph, j*sw + q - pw] = sum of cols[r*rs + n*ns + i*wo + j].

    The adjoint of im2col for cols laid out with strides (rs, ns) per (row, sample):
    (P, K*P) is (N, K, P); out-of-bounds taps are dropped.
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


def _im2col(x, kh, kw, sh, sw, ph, pw, ho, wo, per_sample=False):
    """(K, N*P) columns: cols[r, n*P + a] = x_pad[n, c, i*sh + p, j*sw + q]; with
    ``per_sample`` (N, K, P): cols[n, r, a]."""
    n, c = x.shape[:2]
    k, p = c * kh * kw, ho * wo
    cols = np.empty((n, k, p) if per_sample else (k, n * p), dtype=x.dtype)
    rs, ns = (p, k * p) if per_sample else (n * p, p)
    fn = _im2col_rows_table if sw > 1 and wo <= 8 else _im2col_rows
    fn(x.reshape(-1), n, c, x.shape[2], x.shape[3], kh, kw, sh, sw, ph, pw, ho, wo,
       cols.reshape(-1), rs, ns, 0, k)
    return cols


# ---------------------------------------------------------------- public kernels

# Winograd F(m, r) on polyphase components by geometry: (k, s) -> the output tile sizes m on
# offer, only where they measured faster than im2col + GEMM (benchmarks/PROFILE.md). 3x3/s1:
# F(2x2, 3x3) (``winograd.py``) or F(4x4, 3x3) (``winograd_f43.py``: W4's 3 kernels 0.74x of
# F(2x2, 3x3)'s time); 4x4/s2: F(2x2, 2x2) or F(4x4, 2x2) on the phases (``winograd_s2.py``: D2
# of W2, 3 kernels 43 -> 33 ms on one core with F(2x2, 2x2), then 20.9 -> 19.2 ms on two with
# F(4x4, 2x2)). Per call ``_winograd_m`` takes the m with the fewest GEMM multiply-adds. Tiny
# channel counts stay on im2col, where the transforms dominate.
WINOGRAD_M = {(3, 1): (2, 4), (4, 2): (2, 4)}
# im2col route: chunks of about CHUNK_COLS GEMM columns (samples * Ho*Wo) on both cores with
# 1-thread GEMMs when K = C*kh*kw <= SPLIT_MAX_K, else one chunk (im2col on one core,
# OpenBLAS's own threads for the GEMM). Measured (benchmarks/NOTES.md): on a quiet machine
# one chunk is faster for GEMM-bound D2 (K = 1024: 21.7 vs 25.4 ms; W2 1.89 vs 2.19 x torch),
# split is faster for copy-bound D1 (2.0 vs 3.6 ms); beside another busy process, split keeps
# W2 at 1.1x its quiet time where one chunk grows 2.9x (OpenBLAS workers spin-waiting for a
# core). Robustness wins: split everywhere (lower SPLIT_MAX_K to 256 for quiet-machine speed).
CHUNK_COLS = 1024
SPLIT_MAX_K = 1 << 30
# K = C*kh*kw up to which the forward and the weight gradient lay columns out per sample,
# (N, K, P), and multiply each sample on its own: the joint (K, N*P) layout's GEMM is skinny
# there and its output needs a transposed copy (into y, or of gy). Chunks of about
# SAMPLE_CHUNK_COLS columns. Measured on 2 cores, 64 samples (ms, joint -> per sample):
# 1->64 4x4/s2 on 28x28 (W2's D1) fwd 0.68 -> 0.36, weight grad 0.76 -> 0.36; 3->64 3x3 on
# 32x32 4.7 -> 3.4, 4.4 -> 4.0; 8->64 3x3 on 16x16 (K = 72) 2.1 -> 1.5, 2.3 -> 2.2; K = 200
# and 288 the weight grad 1.4 -> 2.2 and 1.5 -> 2.0 (benchmarks/PROFILE.md, seventh round).
SMALL_K = 64
SAMPLE_CHUNK_COLS = 4096


def _im2col_chunks(n, p, k):
    return batch_chunks(n, p, CHUNK_COLS) if k <= SPLIT_MAX_K else [(0, n)]
WINOGRAD_MIN_CHANNELS = 16


def _winograd_m(c, o, kh, kw, sh, sw, ho, wo):
    """Output tile size m of the Winograd route for this geometry (output ho x wo), or 0 for
    im2col: of ``WINOGRAD_M``'s, the m whose GEMMs do the fewest multiply-adds, alpha^2 per
    tile (alpha = m + r - 1), the smaller m (more accurate) on a tie. 14x14 outputs: F(4x4,
    3x3) 16 tiles x 36 against F(2x2, 3x3) 49 x 16; 2x2 outputs: 1 x 36 against 1 x 16."""
    if kh != kw or sh != sw or min(c, o) < WINOGRAD_MIN_CHANNELS:
        return 0
    r = -(-kh // sh)
    return min(WINOGRAD_M.get((kh, sh), ()), default=0,
               key=lambda m: ((m + r - 1) ** 2 * -(-ho // m) * -(-wo // m), m))


def _f43(m, k, s):
    """Whether the route is F(4x4, 3x3) for a 3x3/s1 conv (``winograd_f43.py``)."""
    return m == 4 and k == 3 and s == 1


def _polyphase_s2(m, k, s):
    """Whether the route is F(2x2, 2x2) or F(4x4, 2x2) on the four phases of a stride-2 conv
    (k = 3 or 4), which have their own channel-last kernels (``winograd_s2.py``)."""
    return m in (2, 4) and s == 2 and 2 < k <= 4


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
    m = _winograd_m(c, o, kh, kw, sh, sw, ho, wo)
    if _polyphase_s2(m, kh, sh):
        return winograd_s2.conv(x, w, ph, pw, ho, wo, m)
    if _f43(m, kh, sh):
        return winograd_f43.conv(x, w, ph, pw, ho, wo)
    if m:
        r = -(-kh // sh)
        u = winograd.filter_transform(winograd.phase_filters(w, sh, r), m, r, dt)
        y = np.empty((n, o, ho, wo), dt)
        return winograd.conv(x, u, sh, ph, pw, -(-ho // m), -(-wo // m), m, r, y, 1, 0, 0)
    k = c * kh * kw
    w2 = w.reshape(o, k)
    if _is_pointwise(kh, kw, sh, sw, ph, pw):
        y = matmul(w2, x.reshape(n, c, p))
    elif k <= SMALL_K:
        # per chunk: (N, K, P) columns and one product per sample straight into y
        y = np.empty((n, o, p), dt)

        def run(n0, n1):
            np.matmul(w2, _im2col(x[n0:n1], kh, kw, sh, sw, ph, pw, ho, wo, per_sample=True),
                      out=y[n0:n1])

        parallel_chunks(run, batch_chunks(n, p, SAMPLE_CHUNK_COLS))
    else:
        # per chunk of samples: im2col, one GEMM, a cheap transpose into y (NOTES.md)
        y = np.empty((n, o, p), dt)

        def run(n0, n1):
            y2 = w2 @ _im2col(x[n0:n1], kh, kw, sh, sw, ph, pw, ho, wo)
            y[n0:n1] = y2.reshape(o, n1 - n0, p).transpose(1, 0, 2)

        parallel_chunks(run, _im2col_chunks(n, p, c * kh * kw))
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
    m = _winograd_m(c, o, kh, kw, sh, sw, ho, wo)
    if _polyphase_s2(m, kh, sh):
        return winograd_s2.input_grad(gy, w, h, wd, ph, pw, m)
    if _f43(m, kh, sh):
        return winograd_f43.input_grad(gy, w, h, wd, ph, pw)
    if m:
        # the stride-1 correlation of gy with the flipped kernel components, its s*s output
        # phases interleaved into gx; output row u' is gx_pad row s*(u0 + u') + a
        r = -(-kh // sh)
        g = winograd.phase_filters(w, sh, r)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        u = winograd.filter_transform(g, m, r, dt)
        u0h, u0w = ph // sh, pw // sw
        th = -(-((h - 1 + ph) // sh + 1 - u0h) // m)
        tw = -(-((wd - 1 + pw) // sw + 1 - u0w) // m)
        gx = np.empty((n, c, h, wd), dt)
        return winograd.conv(gy, u, 1, r - 1 - u0h, r - 1 - u0w, th, tw, m, r, gx, sh,
                             ph - sh * u0h, pw - sw * u0w)
    w2t = w.reshape(o, k).T  # (K, O), F-ordered view: BLAS takes it transposed
    g3 = gy.reshape(n, o, p)
    if _is_pointwise(kh, kw, sh, sw, ph, pw) and ho == h and wo == wd:
        return matmul(w2t, g3).reshape(n, c, h, wd)
    gx = np.empty((n, c, h, wd), dtype=dt)

    def run(n0, n1):
        # batched GEMM (N, K, P) feeding col2im directly: 10.4 vs 13.0 ms for one big GEMM
        dcols = np.matmul(w2t, g3[n0:n1])
        _col2im_flat(dcols.reshape(-1), p, k * p, n1 - n0, c, h, wd, kh, kw, sh, sw, ph, pw,
                     ho, wo, gx[n0:n1].reshape(-1), 0, (n1 - n0) * c)

    parallel_chunks(run, _im2col_chunks(n, p, c * kh * kw))
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
    m = _winograd_m(c, o, kh, kw, sh, sw, ho, wo)
    if _polyphase_s2(m, kh, sh):
        return winograd_s2.weight_grad(x, gy, kh, kw, ph, pw, m)
    if _f43(m, kh, sh):
        return winograd_f43.weight_grad(x, gy, ph, pw)
    if m:
        r = -(-kh // sh)
        d = winograd.weight_grad(x, gy, sh, ph, pw, -(-ho // m), -(-wo // m), m, r)
        d = d.reshape(o, c, sh, sh, r, r).transpose(0, 1, 4, 2, 5, 3)
        return np.ascontiguousarray(d.reshape(o, c, sh * r, sh * r)[:, :, :kh, :kw], dtype=dt)
    g3 = gy.reshape(n, o, p)
    parts = {}  # by chunk start: summed in chunk order, whichever thread finished first
    small = k <= SMALL_K
    if small:
        # per sample gy[n] (O, P) @ cols[n]^T (P, K), summed over the chunk: no transposed
        # copy of gy (see SMALL_K); parts are gw (O, K)
        def run(n0, n1):
            cols = _im2col(x[n0:n1], kh, kw, sh, sw, ph, pw, ho, wo, per_sample=True)
            parts[n0] = np.matmul(g3[n0:n1], cols.transpose(0, 2, 1)).sum(axis=0)

        chunks = batch_chunks(n, p, SAMPLE_CHUNK_COLS)
    else:
        # one GEMM over the joint (n, p) axis, parts gw^T = cols(K, NP) @ gy^T(NP, O):
        # OpenBLAS (2 threads) stalls on the other orientation when O*K is skinny
        # (D1: 8.0 ms vs 0.29 ms; D2: 84 vs 8 ms under load; W4 no worse).
        def run(n0, n1):
            if n1 - n0 == 1 and _is_pointwise(kh, kw, sh, sw, ph, pw):
                cols = x[n0].reshape(k, p)
            else:
                cols = _im2col(x[n0:n1], kh, kw, sh, sw, ph, pw, ho, wo)
            gyt = np.ascontiguousarray(g3[n0:n1].transpose(1, 0, 2)).reshape(o, (n1 - n0) * p)
            parts[n0] = cols @ gyt.T

        chunks = _im2col_chunks(n, p, k)
    parallel_chunks(run, chunks)
    gw = np.sum([parts[i] for i in sorted(parts)], axis=0)
    return np.ascontiguousarray(gw if small else gw.T, dtype=dt).reshape(o, c, kh, kw)
