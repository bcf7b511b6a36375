"""im2col + GEMM convolutions: the ``im2col`` algorithm of the route table (``routes.py``),
any geometry.

    forward       im2col of each chunk of samples into (K, n*P) columns, K = C*kh*kw, one GEMM
                  ``W (O, K) @ cols``, a cheap transpose into y (N, O, P); with
                  ``route.per_sample`` columns (n, K, P) and one product per sample straight
                  into y
    input grad    batched GEMM ``W^T @ gy[n]`` -> (n, K, P) feeding col2im (a scatter-add, one
                  (n, c) plane at a time, so chunks never write the same element)
    weight grad   im2col into (K, n*P) and ``gw^T = cols @ gy^T`` as one GEMM over the joint
                  (n, p) axis (OpenBLAS stalls on the other orientation when O*K is skinny);
                  per sample ``gw = sum_n gy[n] @ cols[n]^T``; the chunks' partial sums added
                  in chunk order, whichever thread finished first, so the bits never depend
                  on timing

1x1 / stride-1 / unpadded convolutions skip im2col and call BLAS directly. The padded border
is never materialised: loops compute, per kernel tap, the range of output columns whose input
column is in bounds, and zero-fill (or skip) the rest.

The numba loops index flat (1-D) arrays with unsigned offsets: with signed indices numba emits
a negative-index wraparound check per access, which blocks vectorisation. They are serial (no
``parallel=True``): numba's worker threads keep spinning after a parallel region and steal a
core from the GEMM that follows; the batch is split over the cores by ``parallel_chunks``
instead (``prange`` is kept so that switching back is a one-word change). All use
``cache=True``: compiled once per machine and dtype. Measurements: ``benchmarks/PROFILE.md``.
"""
import numpy as np
from numba import njit, prange, uint64

from . import routes
from .linalg import matmul
from .parallel import parallel_chunks
from .winograd import _valid_range

_JIT = dict(cache=True, nogil=True, boundscheck=False)


@njit(**_JIT)
def _im2col_rows(x, n_, c_, h, w, kh, kw, sh, sw, ph, pw, ho, wo, cols, rs, ns, r0, r1):
    """cols[r*rs + n*ns + i*wo + j] = x_pad[n, c, i*sh + p, j*sw + q], r = (c*kh + p)*kw + q,
    for rows r0 <= r < r1 of K = C*kh*kw; x, cols flat, P = ho*wo. Strides (rs, ns) per
    (row, sample): (N*P, P) lays cols out as (K, N*P), (P, K*P) as (N, K, P).

    r outer, n inner: the tap's valid ranges are computed once per row, and the writes run
    along a row of N*P (faster than one (r, n) pair per iteration, most on short output
    rows)."""
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
    ho short strided rows; faster when rows are short and strided (``TABLE_IM2COL_MAX_WO``)."""
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



# ---------------------------------------------------------------- the three passes


def _im2col(x, g, per_sample=False):
    """(K, n*P) columns of the samples x (n, C, H, W): cols[r, n*P + a] = x_pad[n, c, i*sh + p,
    j*sw + q]; with ``per_sample`` (n, K, P): cols[n, r, a]."""
    n, c = x.shape[:2]
    (sh, sw), (ph, pw), ho, wo = g.stride, g.padding, g.ho, g.wo
    k, p = c * g.kh * g.kw, ho * wo
    cols = np.empty((n, k, p) if per_sample else (k, n * p), dtype=x.dtype)
    rs, ns = (p, k * p) if per_sample else (n * p, p)
    fn = _im2col_rows_table if sw > 1 and wo <= routes.TABLE_IM2COL_MAX_WO else _im2col_rows
    fn(x.reshape(-1), n, c, x.shape[2], x.shape[3], g.kh, g.kw, sh, sw, ph, pw, ho, wo,
       cols.reshape(-1), rs, ns, 0, k)
    return cols


def forward(x, w, g, route):
    """y = x (*) w -> (N, O, Ho, Wo)."""
    n, o, p = g.n, g.o, g.p
    w2 = w.reshape(o, g.k)
    if g.pointwise:
        y = matmul(w2, x.reshape(n, g.c, p))
    elif route.per_sample:
        y = np.empty((n, o, p), x.dtype)

        def run(n0, n1):
            np.matmul(w2, _im2col(x[n0:n1], g, per_sample=True), out=y[n0:n1])

        parallel_chunks(run, route.chunks(n, p))
    else:
        y = np.empty((n, o, p), x.dtype)

        def run(n0, n1):
            y2 = w2 @ _im2col(x[n0:n1], g)
            y[n0:n1] = y2.reshape(o, n1 - n0, p).transpose(1, 0, 2)

        parallel_chunks(run, route.chunks(n, p))
    return y.reshape(n, o, g.ho, g.wo)


def input_grad(gy, w, g, route):
    """dL/dx -> (N, C, H, W): col2im of w^T gy; positions no window covers get 0."""
    n, c, h, wd = g.n, g.c, g.h, g.w
    (sh, sw), (ph, pw) = g.stride, g.padding
    k, p = g.k, g.p
    w2t = w.reshape(g.o, k).T  # (K, O), F-ordered view: BLAS takes it transposed
    g3 = gy.reshape(n, g.o, p)
    if g.pointwise and (g.ho, g.wo) == (h, wd):
        return matmul(w2t, g3).reshape(n, c, h, wd)
    gx = np.empty((n, c, h, wd), dtype=gy.dtype)

    def run(n0, n1):
        dcols = np.matmul(w2t, g3[n0:n1])  # (n, K, P), straight into col2im
        _col2im_flat(dcols.reshape(-1), p, k * p, n1 - n0, c, h, wd, g.kh, g.kw, sh, sw, ph,
                     pw, g.ho, g.wo, gx[n0:n1].reshape(-1), 0, (n1 - n0) * c)

    parallel_chunks(run, route.chunks(n, p))
    return gx


def weight_grad(x, gy, g, route):
    """dL/dw = sum_{n,i,j} gy[n,o,i,j] * x_pad[n,c,i*sh+p,j*sw+q] -> (O, C, kh, kw)."""
    n, o, k, p = g.n, g.o, g.k, g.p
    g3 = gy.reshape(n, o, p)
    parts = {}  # by chunk start: summed in chunk order, whichever thread finished first
    if route.per_sample:
        # per sample gy[n] (O, P) @ cols[n]^T (P, K), summed over the chunk: parts are gw (O, K)
        def run(n0, n1):
            cols = _im2col(x[n0:n1], g, per_sample=True)
            parts[n0] = np.matmul(g3[n0:n1], cols.transpose(0, 2, 1)).sum(axis=0)
    else:
        # one GEMM over the joint (n, p) axis, parts gw^T = cols (K, nP) @ gy^T (nP, O)
        def run(n0, n1):
            if n1 - n0 == 1 and g.pointwise:
                cols = x[n0].reshape(k, p)
            else:
                cols = _im2col(x[n0:n1], g)
            gyt = np.ascontiguousarray(g3[n0:n1].transpose(1, 0, 2)).reshape(o, (n1 - n0) * p)
            parts[n0] = cols @ gyt.T

    parallel_chunks(run, route.chunks(n, p))
    gw = np.sum([parts[i] for i in sorted(parts)], axis=0)
    return np.ascontiguousarray(gw if route.per_sample else gw.T,
                                dtype=x.dtype).reshape(o, g.c, g.kh, g.kw)
