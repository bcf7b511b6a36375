"""Stride-2 convolutions with kernels up to 4x4 as Winograd F(2x2, 2x2) on the input's four
polyphase components, tiles stored channel-last.

With x_ab[u, v] = x_pad[2u + a, 2v + b] and g_ab[p, q] = w[2p + a, 2q + b] (0 past the
kernel), a stride-2 conv is ``y[i, j] = sum_{a,b,p,q} g_ab[p, q] x_ab[i + p, j + q]``: a
stride-1 2x2 correlation over 4C channels (``winograd.py`` has the general algebra). Its
adjoint in x, the transposed convolution, is the stride-1 correlation of gy, padded by one
row and column on the top and left, with the flipped components, whose 4C output channels
are the phases of gx_pad: ``gx_pad[2u + a, 2v + b, c] = out[u, v, (2a + b)*C + c]``.

F(2, 2) (alpha = 3, points 0, 1, infinity; the tests check them against ``matrices(2, 2)``):

    B^T d = (d1 - d0, d1, d2 - d1),   G g = (-g0, g0 + g1, g1),
    A^T M = (M0 + M1, M1 + M2),       A g = (g0, g0 + g1, g1)      (gradient tiles)

so a tile of 2x2 outputs costs 9 channel products instead of 16: the 9 GEMMs
``M[e] (T, O) = V[e] (T, 4C) @ U[e]^T (4C, O)`` over all tiles T do 1.36x fewer
multiply-adds than im2col's on a 7x7 output (16 tiles cover 8x8) and 1.78x fewer on 8x8.

Layout: each sample's plane is first copied channel-last, into a zero-bordered (rows,
columns, C) buffer, so that every transform's inner loop runs over C contiguous channels
(vectorised) and tiles are rows of V (T, 4C). Outputs go through the same kind of buffer back
to NCHW. Samples are split into chunks on both cores (``parallel_chunks``), each with
single-threaded GEMMs.
"""
import numpy as np
from numba import njit, uint64

from .parallel import batch_chunks, parallel_chunks
from .winograd import planes

_JIT = dict(cache=True, nogil=True, boundscheck=False)

CHUNK_COLS = 256  # tiles per chunk (16 samples of a 7x7 output); 128 and 512 measured no faster


@njit(**_JIT)
def _to_hwc(x, n, c_, h, w, ro, co, hp, wp, buf):
    """buf[(i + ro)*wp + j + co, c] = x[n, c, i, j] inside (hp, wp), 0 elsewhere.
    x: flat C-order (N, C, H, W); buf: flat (hp, wp, C)."""
    for a in range(hp * wp * c_):
        buf[uint64(a)] = 0
    ih = min(h, hp - ro)
    jw = min(w, wp - co)
    for i in range(ih):
        for j in range(jw):
            d = uint64(((i + ro) * wp + j + co) * c_)
            s = uint64((n * c_ * h + i) * w + j)
            hw = uint64(h * w)
            for c in range(c_):
                buf[d + uint64(c)] = x[s + uint64(c) * hw]


@njit(**_JIT)
def _from_hwc(buf, wp, ro, co, c_, h, w, n, y):
    """y[n, c, i, j] = buf[(i + ro)*wp + j + co, c] for i < h, j < w (the inverse copy)."""
    hw = uint64(h * w)
    for i in range(h):
        for j in range(w):
            s = uint64(((i + ro) * wp + j + co) * c_)
            d = uint64((n * c_ * h + i) * w + j)
            for c in range(c_):
                y[d + uint64(c) * hw] = buf[s + uint64(c)]


@njit(cache=True, inline="always")
def _nine(o, es):
    """The offsets o + e*es of the 9 planes e of a tile or product array (uint64)."""
    e1 = uint64(es)
    e2 = e1 + e1
    e3 = e2 + e1
    e4 = e2 + e2
    return o, o + e1, o + e2, o + e3, o + e4, o + e4 + e1, o + e4 + e2, o + e4 + e3, o + e4 + e4


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _b_tiles(buf, c_, wp, th, tw, nph, tstep, estep, col0, es, v):
    """v[3k' + l', col0 + ti*tw + tj, (nph*a + b)*C + c] = (B^T D B)[k', l'] with
    D[k, l] = buf[tstep*ti + estep*k + a, tstep*tj + estep*l + b, c], phases a, b < nph;
    v's planes e are es elements apart."""
    cp = nph * nph * c_
    dc = uint64(estep * c_)
    dr = uint64(estep * wp * c_)
    for ti in range(th):
        for tj in range(tw):
            col = col0 + ti * tw + tj
            for a in range(nph):
                for b in range(nph):
                    o, o1, o2, o3, o4, o5, o6, o7, o8 = _nine(
                        uint64(col * cp + (nph * a + b) * c_), es)
                    r0 = uint64(((tstep * ti + a) * wp + tstep * tj + b) * c_)
                    r1 = r0 + dr
                    r2 = r1 + dr
                    for c0 in range(c_):
                        c = uint64(c0)
                        d00, d01, d02 = buf[r0 + c], buf[r0 + dc + c], buf[r0 + dc + dc + c]
                        d10, d11, d12 = buf[r1 + c], buf[r1 + dc + c], buf[r1 + dc + dc + c]
                        d20, d21, d22 = buf[r2 + c], buf[r2 + dc + c], buf[r2 + dc + dc + c]
                        t00, t01, t02 = d10 - d00, d11 - d01, d12 - d02
                        t20, t21, t22 = d20 - d10, d21 - d11, d22 - d12
                        v[o + c] = t01 - t00
                        v[o1 + c] = t01
                        v[o2 + c] = t02 - t01
                        v[o3 + c] = d11 - d10
                        v[o4 + c] = d11
                        v[o5 + c] = d12 - d11
                        v[o6 + c] = t21 - t20
                        v[o7 + c] = t21
                        v[o8 + c] = t22 - t21


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _a_tiles(buf, c_, wp, th, tw, col0, es, v):
    """v[3k' + l', col0 + ti*tw + tj, c] = (A D A^T)[k', l'], D[k, l] = buf[2ti + k, 2tj + l, c]
    (k, l < 2): a gradient's tiles, for the weight gradient."""
    dr = uint64(wp * c_)
    dc = uint64(c_)
    for ti in range(th):
        for tj in range(tw):
            o, o1, o2, o3, o4, o5, o6, o7, o8 = _nine(uint64((col0 + ti * tw + tj) * c_), es)
            r0 = uint64((2 * ti * wp + 2 * tj) * c_)
            r1 = r0 + dr
            for c0 in range(c_):
                c = uint64(c0)
                d00, d01 = buf[r0 + c], buf[r0 + dc + c]
                d10, d11 = buf[r1 + c], buf[r1 + dc + c]
                s0, s1 = d00 + d01, d10 + d11
                v[o + c] = d00
                v[o1 + c] = s0
                v[o2 + c] = d01
                v[o3 + c] = d00 + d10
                v[o4 + c] = s0 + s1
                v[o5 + c] = d01 + d11
                v[o6 + c] = d10
                v[o7 + c] = s1
                v[o8 + c] = d11


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _untile(mm, c_, th, tw, nph, tstep, estep, col0, es, wq, buf):
    """buf[tstep*ti + estep*i + a, tstep*tj + estep*j + b, c] = (A^T M A)[i, j] with
    M[e] = mm[e, col0 + ti*tw + tj, (nph*a + b)*C + c], i, j < 2: every position of buf that
    a tile covers is written once; mm's planes e are es elements apart."""
    cp = nph * nph * c_
    dc = uint64(estep * c_)
    dr = uint64(estep * wq * c_)
    for ti in range(th):
        for tj in range(tw):
            col = col0 + ti * tw + tj
            for a in range(nph):
                for b in range(nph):
                    p0, p1, p2, p3, p4, p5, p6, p7, p8 = _nine(
                        uint64(col * cp + (nph * a + b) * c_), es)
                    o = uint64(((tstep * ti + a) * wq + tstep * tj + b) * c_)
                    o1 = o + dc
                    o2 = o + dr
                    o3 = o2 + dc
                    for c0 in range(c_):
                        c = uint64(c0)
                        m0, m1, m2 = mm[p0 + c], mm[p1 + c], mm[p2 + c]
                        m3, m4, m5 = mm[p3 + c], mm[p4 + c], mm[p5 + c]
                        m6, m7, m8 = mm[p6 + c], mm[p7 + c], mm[p8 + c]
                        z0, z1, z2 = m0 + m3, m1 + m4, m2 + m5
                        z3, z4, z5 = m3 + m6, m4 + m7, m5 + m8
                        buf[o + c] = z0 + z1
                        buf[o1 + c] = z1 + z2
                        buf[o2 + c] = z3 + z4
                        buf[o3 + c] = z4 + z5


@njit(**_JIT)
def _x_tiles(x, n0, n1, c_, h, w, pt, pl, th, tw, v, es):
    """Input tiles of samples n0..n1 for the forward and the weight gradient: V (9, cols, 4C),
    D = the 3x3 tile of x_ab at rows 2ti + k, columns 2tj + l (x_pad offset by pt, pl)."""
    hp, wp = 4 * th + 2, 4 * tw + 2
    buf = np.empty(hp * wp * c_, x.dtype)
    t_ = th * tw
    for n in range(n0, n1):
        _to_hwc(x, n, c_, h, w, pt, pl, hp, wp, buf)
        _b_tiles(buf, c_, wp, th, tw, 2, 4, 2, (n - n0) * t_, es, v)


@njit(**_JIT)
def _gy_tiles_b(gy, n0, n1, o_, ho, wo, th, tw, v, es):
    """Gradient tiles for the input gradient (B^T, one zero row and column on top and left):
    V (9, cols, O), D[k, l] = gy[2ti - 1 + k, 2tj - 1 + l]."""
    hp, wp = 2 * th + 1, 2 * tw + 1
    buf = np.empty(hp * wp * o_, gy.dtype)
    t_ = th * tw
    for n in range(n0, n1):
        _to_hwc(gy, n, o_, ho, wo, 1, 1, hp, wp, buf)
        _b_tiles(buf, o_, wp, th, tw, 1, 2, 1, (n - n0) * t_, es, v)


@njit(**_JIT)
def _gy_tiles_a(gy, n0, n1, o_, ho, wo, th, tw, v, es):
    """Gradient tiles for the weight gradient (A): V (9, cols, O), D = gy's 2x2 output tile."""
    hp, wp = 2 * th, 2 * tw
    buf = np.empty(hp * wp * o_, gy.dtype)
    t_ = th * tw
    for n in range(n0, n1):
        _to_hwc(gy, n, o_, ho, wo, 0, 0, hp, wp, buf)
        _a_tiles(buf, o_, wp, th, tw, (n - n0) * t_, es, v)


@njit(**_JIT)
def _out_y(mm, es, n0, n1, o_, th, tw, y, hy, wy):
    """y[n, o, 2ti + i, 2tj + j] = (A^T M A)[i, j] inside y; mm (9, cols, O)."""
    wq = 2 * tw
    buf = np.empty(2 * th * wq * o_, mm.dtype)
    t_ = th * tw
    for n in range(n0, n1):
        _untile(mm, o_, th, tw, 1, 2, 1, (n - n0) * t_, es, wq, buf)
        _from_hwc(buf, wq, 0, 0, o_, hy, wy, n, y)


@njit(**_JIT)
def _out_gx(mm, es, n0, n1, c_, th, tw, pt, pl, gx, h, w):
    """gx[n, c, i, j] = gx_pad[i + pt, j + pl, c], gx_pad's phases from mm (9, cols, 4C)."""
    wq = 4 * tw
    buf = np.empty(4 * th * wq * c_, mm.dtype)
    t_ = th * tw
    for n in range(n0, n1):
        _untile(mm, c_, th, tw, 2, 4, 2, (n - n0) * t_, es, wq, buf)
        _from_hwc(buf, wq, pt, pl, c_, h, w, n, gx)


@njit(**_JIT)
def _filters(w, o_, c_, flip, u, es):
    """u[e, o, (2a + b)*C + c] = (G g G^T)[e] with g[p, q] = w[o, c, 2p + a, 2q + b], or
    g[1 - p, 1 - q] with ``flip``; float64 arithmetic. w: flat (O, C, 4, 4) (zero-padded
    kernel); u: flat (9, O, 4C), planes es elements apart."""
    cp = 4 * c_
    wt = np.empty(16 * c_)  # w[o] as (16 taps, C), float64: unit-stride loops over c
    for o in range(o_):
        for c in range(c_):
            for t in range(16):
                wt[t * c_ + c] = w[(o * c_ + c) * 16 + t]
        for a in range(2):
            for b in range(2):
                k0, k1, k2, k3, k4, k5, k6, k7, k8 = _nine(uint64(o * cp + (2 * a + b) * c_), es)
                # g[p, q] = w[2p + a, 2q + b], or w[2(1 - p) + a, 2(1 - q) + b] flipped
                i00, i01 = uint64((4 * a + b) * c_), uint64((4 * a + b + 2) * c_)
                i10, i11 = uint64((4 * a + b + 8) * c_), uint64((4 * a + b + 10) * c_)
                if flip:
                    i00, i01, i10, i11 = i11, i10, i01, i00
                for c0 in range(c_):
                    c = uint64(c0)
                    g00, g01, g10, g11 = wt[i00 + c], wt[i01 + c], wt[i10 + c], wt[i11 + c]
                    t00, t01 = -g00, -g01          # G g, row by row
                    t10, t11 = g00 + g10, g01 + g11
                    u[k0 + c], u[k1 + c], u[k2 + c] = -t00, t00 + t01, t01
                    u[k3 + c], u[k4 + c], u[k5 + c] = -t10, t10 + t11, t11
                    u[k6 + c], u[k7 + c], u[k8 + c] = -g10, g10 + g11, g11


@njit(**_JIT)
def _filter_grad(parts, nparts, o_, c_, es, gw):
    """gw[o, c, 2p + a, 2q + b] = sum over k < nparts of (G^T dU_k G)[p, q], in float64
    (G^T d = (d1 - d0, d1 + d2)): the adjoint of ``_filters`` without flip. dU_k (9, O, 4C)
    = planes 9k..9k + 8 of parts, es elements apart; gw: flat (O, 16, C) float64, tap
    t = 4*(2p + a) + 2q + b, overwritten."""
    cp = 4 * c_
    for i in range(gw.size):
        gw[i] = 0.0
    for k in range(nparts):
        for o in range(o_):
            for a in range(2):
                for b in range(2):
                    d0, d1, d2, d3, d4, d5, d6, d7, d8 = _nine(
                        uint64(9 * k * es + o * cp + (2 * a + b) * c_), es)
                    w00 = uint64((o * 16 + 4 * a + b) * c_)
                    w01, w10, w11 = w00 + uint64(2 * c_), w00 + uint64(8 * c_), w00 + uint64(10 * c_)
                    for c0 in range(c_):
                        c = uint64(c0)
                        m0, m1, m2 = np.float64(parts[d0 + c]), np.float64(parts[d1 + c]), np.float64(parts[d2 + c])
                        m3, m4, m5 = np.float64(parts[d3 + c]), np.float64(parts[d4 + c]), np.float64(parts[d5 + c])
                        m6, m7, m8 = np.float64(parts[d6 + c]), np.float64(parts[d7 + c]), np.float64(parts[d8 + c])
                        t00, t01, t02 = m3 - m0, m4 - m1, m5 - m2   # G^T dU, row by row
                        t10, t11, t12 = m3 + m6, m4 + m7, m5 + m8
                        gw[w00 + c] += t01 - t00
                        gw[w01 + c] += t01 + t02
                        gw[w10 + c] += t11 - t10
                        gw[w11 + c] += t11 + t12


def _padded4(w):
    """w (O, C, kh, kw) zero-padded to 4x4, C-contiguous."""
    if w.shape[2:] == (4, 4):
        return np.ascontiguousarray(w)
    wp = np.zeros(w.shape[:2] + (4, 4), w.dtype)
    wp[:, :, :w.shape[2], :w.shape[3]] = w
    return wp


def _tiles_for(size):
    return -(-size // 2)


def conv(x, w, pt, pl, ho, wo):
    """y = x (*) w at stride 2, padding (pt, pl): x (N, C, H, W), w (O, C, kh, kw), kh, kw <= 4."""
    n, c, h, wd = x.shape
    o = w.shape[0]
    dt = x.dtype
    u, uf, ue = planes(9, o, 4 * c, dt)
    _filters(_padded4(w).reshape(-1), o, c, False, uf, ue)
    ut = u.transpose(0, 2, 1)  # (9, 4C, O), each matrix F-ordered: BLAS takes it transposed
    th, tw = _tiles_for(ho), _tiles_for(wo)
    t_ = th * tw
    y = np.empty((n, o, ho, wo), dt)
    xf, yf = x.reshape(-1), y.reshape(-1)

    def run(n0, n1):
        v, vf, ve = planes(9, (n1 - n0) * t_, 4 * c, dt)
        mm, mf, me = planes(9, (n1 - n0) * t_, o, dt)
        _x_tiles(xf, n0, n1, c, h, wd, pt, pl, th, tw, vf, ve)
        np.matmul(v, ut, out=mm)
        _out_y(mf, me, n0, n1, o, th, tw, yf, ho, wo)

    parallel_chunks(run, batch_chunks(n, t_, CHUNK_COLS))
    return y


def input_grad(gy, w, h, wd, pt, pl):
    """dL/dx (N, C, H, W) of ``conv``: the stride-1 correlation of gy with the flipped phase
    filters, its 4C outputs the phases of gx_pad."""
    n, o, ho, wo = gy.shape
    c = w.shape[1]
    dt = gy.dtype
    u, uf, ue = planes(9, o, 4 * c, dt)
    _filters(_padded4(w).reshape(-1), o, c, True, uf, ue)
    th, tw = _tiles_for(_tiles_for(h + pt)), _tiles_for(_tiles_for(wd + pl))
    t_ = th * tw
    gx = np.empty((n, c, h, wd), dt)
    gf, gxf = gy.reshape(-1), gx.reshape(-1)

    def run(n0, n1):
        v, vf, ve = planes(9, (n1 - n0) * t_, o, dt)
        mm, mf, me = planes(9, (n1 - n0) * t_, 4 * c, dt)
        _gy_tiles_b(gf, n0, n1, o, ho, wo, th, tw, vf, ve)
        np.matmul(v, u, out=mm)
        _out_gx(mf, me, n0, n1, c, th, tw, pt, pl, gxf, h, wd)

    parallel_chunks(run, batch_chunks(n, t_, CHUNK_COLS))
    return gx


def weight_grad(x, gy, kh, kw, pt, pl):
    """dL/dw (O, C, kh, kw) of ``conv``: G^T [sum over tiles (A gy A^T)[e] (outer) V[e]] G,
    the chunks' products summed in float64 in chunk order."""
    n, c, h, wd = x.shape
    _, o, ho, wo = gy.shape
    dt = x.dtype
    th, tw = _tiles_for(ho), _tiles_for(wo)
    t_ = th * tw
    xf, gf = x.reshape(-1), gy.reshape(-1)
    chunks = batch_chunks(n, t_, CHUNK_COLS)
    parts, pf, pe = planes(9 * len(chunks), o, 4 * c, dt)  # chunk i: planes 9i..9i + 8
    index = {n0: i for i, (n0, _) in enumerate(chunks)}

    def run(n0, n1):
        k = (n1 - n0) * t_
        v, vf, ve = planes(9, k, 4 * c, dt)
        g, gbuf, ge = planes(9, k, o, dt)
        _x_tiles(xf, n0, n1, c, h, wd, pt, pl, th, tw, vf, ve)
        _gy_tiles_a(gf, n0, n1, o, ho, wo, th, tw, gbuf, ge)
        i = 9 * index[n0]
        np.matmul(g.transpose(0, 2, 1), v, out=parts[i:i + 9])

    parallel_chunks(run, chunks)
    gw = np.empty((o, 4, 4, c))
    _filter_grad(pf, len(chunks), o, c, pe, gw.reshape(-1))
    return np.ascontiguousarray(gw[:, :kh, :kw].transpose(0, 3, 1, 2), dtype=dt)
