"""Stride-2 convolutions with kernels up to 4x4 as Winograd F(2x2, 2x2) or F(4x4, 2x2) on the
input's four polyphase components, tiles stored channel-last.

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
F(4, 2) (alpha = 5, below) spends 25 products on 4x4 outputs: 1.44x fewer again on 7x7 or
8x8 outputs, for most of a float32 digit. ``m`` (2 or 4) picks one; the route picks per call
the one whose GEMMs do less work (``routes.winograd_tile``: 4 on D2's 7x7 outputs,
benchmarks/PROFILE.md).

Layout: each sample's plane is first copied channel-last, into a zero-bordered (rows,
columns, C) buffer, so that every transform's inner loop runs over C contiguous channels
(vectorised) and tiles are rows of V (T, 4C). Outputs go through the same kind of buffer back
to NCHW. Samples are split into chunks on both cores (``parallel_chunks``), each with
single-threaded GEMMs.
"""
import numpy as np
from numba import njit, uint64

from .parallel import halves, parallel_chunks, parallel_chunks_after
from .winograd import planes

_JIT = dict(cache=True, nogil=True, boundscheck=False)


@njit(**_JIT)
def _to_hwc(x, n, c_, h, w, ro, co, hp, wp, buf):
    """buf[(i + ro)*wp + j + co, c] = x[n, c, i, j] inside (hp, wp), 0 elsewhere (ro, co may
    be negative: x cropped). x: flat C-order (N, C, H, W); buf: flat (hp, wp, C)."""
    for a in range(hp * wp * c_):
        buf[uint64(a)] = 0
    for i in range(max(0, -ro), min(h, hp - ro)):
        for j in range(max(0, -co), min(w, wp - co)):
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


@njit(cache=True, inline="always")
def _tile_at(col0, ti, tj, tw, a, b, nph, tstep, wb, c_):
    """Offsets of tile (ti, tj)'s phase (a, b): of its C channels in a row of a tile array
    (column col0 + ti*tw + tj, nph^2 C wide), and of its top-left entry in a channel-last
    (rows, wb, C) buffer (row tstep*ti + a, column tstep*tj + b). The index map every tile
    transform and its adjoint share."""
    col = col0 + ti * tw + tj
    return (uint64((col * nph * nph + nph * a + b) * c_),
            uint64(((tstep * ti + a) * wb + tstep * tj + b) * c_))


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _b_tiles(buf, c_, wp, th, tw, nph, tstep, estep, col0, es, v):
    """v[3k' + l', col0 + ti*tw + tj, (nph*a + b)*C + c] = (B^T D B)[k', l'] with
    D[k, l] = buf[tstep*ti + estep*k + a, tstep*tj + estep*l + b, c], phases a, b < nph;
    v's planes e are es elements apart."""
    dc = uint64(estep * c_)
    dr = uint64(estep * wp * c_)
    for ti in range(th):
        for tj in range(tw):
            for a in range(nph):
                for b in range(nph):
                    t0, r0 = _tile_at(col0, ti, tj, tw, a, b, nph, tstep, wp, c_)
                    o, o1, o2, o3, o4, o5, o6, o7, o8 = _nine(t0, es)
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
    dc = uint64(estep * c_)
    dr = uint64(estep * wq * c_)
    for ti in range(th):
        for tj in range(tw):
            for a in range(nph):
                for b in range(nph):
                    t0, o = _tile_at(col0, ti, tj, tw, a, b, nph, tstep, wq, c_)
                    p0, p1, p2, p3, p4, p5, p6, p7, p8 = _nine(t0, es)
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


# ---------------------------------------------------------------- F(4x4, 2x2)
#
# alpha = 5, points 0, 1, -1, 2, infinity (``matrices(4, 2)``; the tests check these):
#
#     B^T d = (2(d0 - d2) + d3 - d1, d3 - d2 - 2 d1, d3 - d2 + 2(d1 - d2), d3 - d1,
#              d4 - d2 - 2(d3 - d1))
#     A^T M = (M0 + M1 + M2 + M3, M1 - M2 + 2 M3, M1 + M2 + 4 M3, M1 - M2 + 8 M3 + M4)
#     A g   = (g0, g0 + g1 + g2 + g3, g0 - g1 + g2 - g3, g0 + 2 g1 + 4 g2 + 8 g3, g3)
#     G g   = (g0 / 2, -(g0 + g1) / 2, (g1 - g0) / 6, (g0 + 2 g1) / 6, g1)
#
# A 4x4 output tile costs 25 channel products where F(2x2, 2x2) spends 4 * 9 = 36: on D2's
# 7x7 outputs 4 tiles cover 8x8, 100 products per sample against 144. Coefficients up to 8
# and 1/6 cost float32 digits (the tests state the error). Products by 2, 4, 8 are written as
# sums, which keeps float32 tiles in float32 (numba widens float32 * literal to float64).
# The 1-D transforms take and return tuples; a 2-D one is a pass over rows, then columns.

@njit(cache=True, inline="always")
def _load5(a, p, step):
    s2 = step + step
    return a[p], a[p + step], a[p + s2], a[p + s2 + step], a[p + s2 + s2]


@njit(cache=True, inline="always")
def _put5(a, p, step, t):
    s2 = step + step
    a[p], a[p + step], a[p + s2], a[p + s2 + step], a[p + s2 + s2] = t[0], t[1], t[2], t[3], t[4]


@njit(cache=True, inline="always")
def _bt5(d):
    p, q, e = d[3] - d[2], d[3] - d[1], d[1] - d[2]
    return d[0] - d[2] + d[0] - d[2] + q, p - d[1] - d[1], p + e + e, q, d[4] - d[2] - q - q


@njit(cache=True, inline="always")
def _at5(m):
    s, t, m3_2 = m[1] + m[2], m[1] - m[2], m[3] + m[3]
    m3_4 = m3_2 + m3_2
    return s + m[0] + m[3], t + m3_2, s + m3_4, t + m3_4 + m3_4 + m[4]


@njit(cache=True, inline="always")
def _a4(g):
    e, o = g[0] + g[2], g[1] + g[3]
    g2_4 = g[2] + g[2] + g[2] + g[2]
    g3_4 = g[3] + g[3] + g[3] + g[3]
    return g[0], e + o, e - o, g[0] + g[1] + g[1] + g2_4 + g3_4 + g3_4, g[3]


_SIXTH = 1.0 / 6.0  # a product: float64 divisions were most of the filter transforms' time


@njit(cache=True, inline="always")
def _g2(g):
    return 0.5 * g[0], -0.5 * (g[0] + g[1]), (g[1] - g[0]) * _SIXTH, (g[0] + 2.0 * g[1]) * _SIXTH, g[1]


@njit(cache=True, inline="always")
def _gt5(d):
    """G^T d in float64, the adjoint of ``_g2``."""
    d0, d1, d2, d3, d4 = (np.float64(d[0]), np.float64(d[1]), np.float64(d[2]),
                          np.float64(d[3]), np.float64(d[4]))
    return 0.5 * (d0 - d1) + (d3 - d2) * _SIXTH, -0.5 * d1 + (d2 + 2.0 * d3) * _SIXTH + d4


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _b_tiles4(buf, c_, wp, th, tw, nph, tstep, estep, col0, es, v, t):
    """``_b_tiles`` for F(4x4, 2x2): 5x5 tiles D, planes e = 5k' + l'. t: scratch of 25C."""
    dc = uint64(estep * c_)
    dr = uint64(estep * wp * c_)
    e1 = uint64(es)
    e5 = e1 * uint64(5)
    cu = uint64(c_)
    c5 = cu * uint64(5)
    for ti in range(th):
        for tj in range(tw):
            for a in range(nph):
                for b in range(nph):
                    o, r = _tile_at(col0, ti, tj, tw, a, b, nph, tstep, wp, c_)
                    for k in range(5):  # rows: t[k, l'] = B^T D[k, :]
                        tk = uint64(5 * k) * cu
                        for c in range(c_):
                            _put5(t, tk + uint64(c), cu, _bt5(_load5(buf, r + uint64(c), dc)))
                        r += dr
                    for l in range(5):  # columns: v[5k' + l] = B^T t[:, l]
                        tl = uint64(l) * cu
                        ol = o + uint64(l) * e1
                        for c in range(c_):
                            _put5(v, ol + uint64(c), e5, _bt5(_load5(t, tl + uint64(c), c5)))


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _a_tiles4(buf, c_, wp, th, tw, col0, es, v, t):
    """``_a_tiles`` for F(4x4, 2x2): D = gy's 4x4 output tile at rows 4ti + k, k < 4."""
    dr = uint64(wp * c_)
    dc = uint64(c_)
    e1 = uint64(es)
    e5 = e1 * uint64(5)
    cu = uint64(c_)
    s5 = cu * uint64(5)
    for ti in range(th):
        for tj in range(tw):
            o = uint64((col0 + ti * tw + tj) * c_)
            r = uint64((4 * ti * wp + 4 * tj) * c_)
            for k in range(4):
                tk = uint64(5 * k) * cu
                for c in range(c_):
                    q = r + uint64(c)
                    _put5(t, tk + uint64(c), cu, _a4((buf[q], buf[q + dc], buf[q + dc + dc], buf[q + dc + dc + dc])))
                r += dr
            for l in range(5):
                tl = uint64(l) * cu
                ol = o + uint64(l) * e1
                for c in range(c_):
                    q = tl + uint64(c)
                    _put5(v, ol + uint64(c), e5, _a4((t[q], t[q + s5], t[q + s5 + s5], t[q + s5 + s5 + s5])))


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _untile4(mm, c_, th, tw, nph, tstep, estep, col0, es, wq, buf, t):
    """``_untile`` for F(4x4, 2x2): outputs at tstep*ti + estep*i + a, i < 4."""
    dc = uint64(estep * c_)
    dr = uint64(estep * wq * c_)
    e1 = uint64(es)
    e5 = e1 * uint64(5)
    cu = uint64(c_)
    c4 = cu * uint64(4)
    for ti in range(th):
        for tj in range(tw):
            for a in range(nph):
                for b in range(nph):
                    p, o = _tile_at(col0, ti, tj, tw, a, b, nph, tstep, wq, c_)
                    for k in range(5):  # rows: t[k, j] = A^T M[k, :]
                        tk = uint64(4 * k) * cu
                        for c in range(c_):
                            y = _at5(_load5(mm, p + uint64(c), e1))
                            q = tk + uint64(c)
                            t[q], t[q + cu], t[q + cu + cu], t[q + cu + cu + cu] = y
                        p += e5
                    for j in range(4):  # columns: out[i, j] = A^T t[:, j]
                        tj4 = uint64(j) * cu
                        for c in range(c_):
                            y = _at5(_load5(t, tj4 + uint64(c), c4))
                            q = o + uint64(c)
                            buf[q], buf[q + dr], buf[q + dr + dr], buf[q + dr + dr + dr] = y
                        o += dc


@njit(**_JIT)
def _filters4(w, o_, c_, flip, tr, u, es):
    """``_filters`` for F(4x4, 2x2): u[e, o, (2a + b)*C + c] = (G g G^T)[e], 25 planes, or
    with ``tr`` u[e, (2a + b)*C + c, o] (the forward's B operand: BLAS is slower on the
    transposed view, benchmarks/PROFILE.md). The vector loop runs along u's rows: over c, or
    over o with ``tr``."""
    nx, ny, sx, sy, bx, bp = o_, c_, 16 * c_, 16, 4 * c_, c_
    if tr:
        nx, ny, sx, sy, bx, bp = c_, o_, 16, 16 * c_, o_, c_ * o_
    e1 = uint64(es)
    e5 = e1 * uint64(5)
    yu = uint64(ny)
    wt = np.empty(16 * ny)  # the 16 taps of w at x, for every y, float64
    t = np.empty(10 * ny)   # G g, (5, 2, ny)
    for x in range(nx):
        for y in range(ny):
            for j in range(16):
                wt[j * ny + y] = w[x * sx + y * sy + j]
        for a in range(2):
            for b in range(2):
                k = uint64(x * bx + (2 * a + b) * bp)
                i00, i01 = uint64(4 * a + b) * yu, uint64(4 * a + b + 2) * yu
                i10, i11 = uint64(4 * a + b + 8) * yu, uint64(4 * a + b + 10) * yu
                if flip:
                    i00, i01, i10, i11 = i11, i10, i01, i00
                for q, (j0, j1) in enumerate(((i00, i10), (i01, i11))):  # G g down column q
                    for y0 in range(ny):
                        y = uint64(y0)
                        _put5(t, uint64(q) * yu + y, yu + yu, _g2((wt[j0 + y], wt[j1 + y])))
                for i in range(5):  # row k' of G g G^T -> planes 5k' + l'
                    p = k + uint64(i) * e5
                    for y0 in range(ny):
                        y = uint64(y0)
                        _put5(u, p + y, e1, _g2((t[uint64(2 * i) * yu + y], t[uint64(2 * i + 1) * yu + y])))


@njit(**_JIT)
def _filter_grad4(parts, nparts, o_, c_, es, gw, o0, o1):
    """``_filter_grad`` for F(4x4, 2x2): gw[o, 4*(2p + a) + 2q + b, c] = sum over k of
    (G^T dU_k G)[p, q], dU_k = planes 25k..25k + 24 of parts; float64; rows o0 <= o < o1."""
    cp = 4 * c_
    e1 = uint64(es)
    e5 = e1 * uint64(5)
    cu = uint64(c_)
    t = np.empty(10 * c_)  # dU G, (5, 2, C)
    for i in range(16 * c_ * o0, 16 * c_ * o1):
        gw[i] = 0.0
    for k in range(nparts):
        for o in range(o0, o1):
            for a in range(2):
                for b in range(2):
                    p = uint64(25 * k * es + o * cp + (2 * a + b) * c_)
                    for i in range(5):  # rows k': t[k', q] = G^T dU[k', :]
                        ti = uint64(2 * i) * cu
                        for c in range(c_):
                            g = _gt5(_load5(parts, p + uint64(c), e1))
                            t[ti + uint64(c)], t[ti + cu + uint64(c)] = g
                        p += e5
                    w0 = uint64((o * 16 + 4 * a + b) * c_)
                    for q in range(2):  # column q: gw[p', q] += G^T t[:, q]
                        wq = w0 + uint64(2 * q) * cu
                        tq = uint64(q) * cu
                        for c in range(c_):
                            g = _gt5(_load5(t, tq + uint64(c), cu + cu))
                            gw[wq + uint64(c)] += g[0]
                            gw[wq + uint64(8) * cu + uint64(c)] += g[1]


@njit(**_JIT)
def _x_tiles(x, n0, n1, c_, h, w, pt, pl, th, tw, m, v, es):
    """Input tiles of samples n0..n1 for the forward and the weight gradient: V (alpha^2,
    cols, 4C), D = the alpha x alpha tile of x_ab at rows m*ti + k, columns m*tj + l (x_pad
    offset by pt, pl); m = 2 or 4."""
    hp, wp = 2 * m * th + 2, 2 * m * tw + 2
    buf = np.empty(hp * wp * c_, x.dtype)
    t = np.empty(25 * c_, buf.dtype)  # F(4x4, 2x2)'s row pass
    t_ = th * tw
    for n in range(n0, n1):
        _to_hwc(x, n, c_, h, w, pt, pl, hp, wp, buf)
        if m == 2:
            _b_tiles(buf, c_, wp, th, tw, 2, 4, 2, (n - n0) * t_, es, v)
        else:
            _b_tiles4(buf, c_, wp, th, tw, 2, 8, 2, (n - n0) * t_, es, v, t)


@njit(**_JIT)
def _gy_tiles_b(gy, n0, n1, o_, ho, wo, th, tw, m, v, es):
    """Gradient tiles for the input gradient (B^T, one zero row and column on top and left):
    V (alpha^2, cols, O), D[k, l] = gy[m*ti - 1 + k, m*tj - 1 + l]."""
    hp, wp = m * th + 1, m * tw + 1
    buf = np.empty(hp * wp * o_, gy.dtype)
    t = np.empty(25 * o_, buf.dtype)  # F(4x4, 2x2)'s row pass
    t_ = th * tw
    for n in range(n0, n1):
        _to_hwc(gy, n, o_, ho, wo, 1, 1, hp, wp, buf)
        if m == 2:
            _b_tiles(buf, o_, wp, th, tw, 1, 2, 1, (n - n0) * t_, es, v)
        else:
            _b_tiles4(buf, o_, wp, th, tw, 1, 4, 1, (n - n0) * t_, es, v, t)


@njit(**_JIT)
def _gy_tiles_a(gy, n0, n1, o_, ho, wo, th, tw, m, v, es):
    """Gradient tiles for the weight gradient (A): V (alpha^2, cols, O), D = gy's m x m
    output tile."""
    hp, wp = m * th, m * tw
    buf = np.empty(hp * wp * o_, gy.dtype)
    t = np.empty(25 * o_, buf.dtype)  # F(4x4, 2x2)'s row pass
    t_ = th * tw
    for n in range(n0, n1):
        _to_hwc(gy, n, o_, ho, wo, 0, 0, hp, wp, buf)
        if m == 2:
            _a_tiles(buf, o_, wp, th, tw, (n - n0) * t_, es, v)
        else:
            _a_tiles4(buf, o_, wp, th, tw, (n - n0) * t_, es, v, t)


@njit(**_JIT)
def _out_y(mm, es, n0, n1, o_, th, tw, m, y, hy, wy):
    """y[n, o, m*ti + i, m*tj + j] = (A^T M A)[i, j] inside y; mm (alpha^2, cols, O)."""
    wq = m * tw
    buf = np.empty(m * th * wq * o_, mm.dtype)
    t = np.empty(25 * o_, buf.dtype)  # F(4x4, 2x2)'s row pass
    t_ = th * tw
    for n in range(n0, n1):
        if m == 2:
            _untile(mm, o_, th, tw, 1, 2, 1, (n - n0) * t_, es, wq, buf)
        else:
            _untile4(mm, o_, th, tw, 1, 4, 1, (n - n0) * t_, es, wq, buf, t)
        _from_hwc(buf, wq, 0, 0, o_, hy, wy, n, y)


@njit(**_JIT)
def _out_gx(mm, es, n0, n1, c_, th, tw, m, pt, pl, gx, h, w):
    """gx[n, c, i, j] = gx_pad[i + pt, j + pl, c], gx_pad's phases from mm (alpha^2, cols,
    4C)."""
    wq = 2 * m * tw
    buf = np.empty(2 * m * th * wq * c_, mm.dtype)
    t = np.empty(25 * c_, buf.dtype)  # F(4x4, 2x2)'s row pass
    t_ = th * tw
    for n in range(n0, n1):
        if m == 2:
            _untile(mm, c_, th, tw, 2, 4, 2, (n - n0) * t_, es, wq, buf)
        else:
            _untile4(mm, c_, th, tw, 2, 8, 2, (n - n0) * t_, es, wq, buf, t)
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


def _tiles_for(size, m):
    return -(-size // m)


def _transformed_filters(w, m, flip):
    """U (alpha^2, O, 4C) of w's phase filters (flipped for the input gradient); for the
    forward (not flip) U^T (alpha^2, 4C, O), as the GEMMs' B operand."""
    o, c = w.shape[:2]
    wf = _padded4(w).reshape(-1)
    if m == 2:
        u, uf, ue = planes(9, o, 4 * c, w.dtype)
        _filters(wf, o, c, flip, uf, ue)
        return u if flip else u.transpose(0, 2, 1)  # F-ordered: BLAS takes it transposed
    u, uf, ue = planes(25, 4 * c, o, w.dtype) if not flip else planes(25, o, 4 * c, w.dtype)
    _filters4(wf, o, c, flip, not flip, uf, ue)
    return u


def forward(x, w, g, route):
    """y = x (*) w at stride 2: x (N, C, H, W), w (O, C, kh, kw), kh, kw <= 4 -> (N, O, Ho, Wo);
    output tiles m x m, m = ``route.tile`` (2 or 4)."""
    (pt, pl), ho, wo, m = g.padding, g.ho, g.wo, route.tile
    n, c, h, wd = x.shape
    o = w.shape[0]
    dt = x.dtype
    e = (m + 1) ** 2
    th, tw = _tiles_for(ho, m), _tiles_for(wo, m)
    t_ = th * tw
    y = np.empty((n, o, ho, wo), dt)
    xf, yf = x.reshape(-1), y.reshape(-1)

    def run(n0, n1, ut):  # ut() = U^T (e, 4C, O)
        v, vf, ve = planes(e, (n1 - n0) * t_, 4 * c, dt)
        mm, mf, me = planes(e, (n1 - n0) * t_, o, dt)
        _x_tiles(xf, n0, n1, c, h, wd, pt, pl, th, tw, m, vf, ve)
        np.matmul(v, ut(), out=mm)
        _out_y(mf, me, n0, n1, o, th, tw, m, yf, ho, wo)

    parallel_chunks_after(lambda: _transformed_filters(w, m, False), run, route.chunks(n, t_))
    return y


def input_grad(gy, w, g, route):
    """dL/dx (N, C, H, W) of ``forward``: the stride-1 correlation of gy with the flipped
    phase filters, its 4C outputs the phases of gx_pad."""
    (pt, pl), h, wd, m = g.padding, g.h, g.w, route.tile
    n, o, ho, wo = gy.shape
    c = w.shape[1]
    dt = gy.dtype
    e = (m + 1) ** 2
    th, tw = _tiles_for(_tiles_for(h + pt, 2), m), _tiles_for(_tiles_for(wd + pl, 2), m)
    t_ = th * tw
    gx = np.empty((n, c, h, wd), dt)
    gf, gxf = gy.reshape(-1), gx.reshape(-1)

    def run(n0, n1, u):
        v, vf, ve = planes(e, (n1 - n0) * t_, o, dt)
        mm, mf, me = planes(e, (n1 - n0) * t_, 4 * c, dt)
        _gy_tiles_b(gf, n0, n1, o, ho, wo, th, tw, m, vf, ve)
        np.matmul(v, u(), out=mm)
        _out_gx(mf, me, n0, n1, c, th, tw, m, pt, pl, gxf, h, wd)

    parallel_chunks_after(lambda: _transformed_filters(w, m, True), run, route.chunks(n, t_))
    return gx


def weight_grad(x, gy, g, route):
    """dL/dw (O, C, kh, kw) of ``forward``: G^T [sum over tiles (A gy A^T)[e] (outer) V[e]] G,
    the chunks' products summed in float64 in chunk order."""
    (pt, pl), kh, kw, m = g.padding, g.kh, g.kw, route.tile
    n, c, h, wd = x.shape
    _, o, ho, wo = gy.shape
    dt = x.dtype
    e = (m + 1) ** 2
    th, tw = _tiles_for(ho, m), _tiles_for(wo, m)
    t_ = th * tw
    xf, gf = x.reshape(-1), gy.reshape(-1)
    chunks = route.chunks(n, t_)
    parts, pf, pe = planes(e * len(chunks), o, 4 * c, dt)  # chunk i: planes e*i..e*i + e - 1
    index = {n0: i for i, (n0, _) in enumerate(chunks)}

    def run(n0, n1):
        k = (n1 - n0) * t_
        v, vf, ve = planes(e, k, 4 * c, dt)
        g, gbuf, ge = planes(e, k, o, dt)
        _x_tiles(xf, n0, n1, c, h, wd, pt, pl, th, tw, m, vf, ve)
        _gy_tiles_a(gf, n0, n1, o, ho, wo, th, tw, m, gbuf, ge)
        i = e * index[n0]
        np.matmul(g.transpose(0, 2, 1), v, out=parts[i:i + e])

    parallel_chunks(run, chunks)
    gw = np.empty((o, 4, 4, c))
    gwf = gw.reshape(-1)
    if m == 2:
        _filter_grad(pf, len(chunks), o, c, pe, gwf)
    else:  # rows of gw on both cores (benchmarks/PROFILE.md)
        parallel_chunks(lambda o0, o1: _filter_grad4(pf, len(chunks), o, c, pe, gwf, o0, o1),
                        halves(o))
    return np.ascontiguousarray(gw[:, :kh, :kw].transpose(0, 3, 1, 2), dtype=dt)
