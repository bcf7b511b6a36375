"""3x3 stride-1 convolutions as Winograd F(4x4, 3x3), tiles stored channel-last.

alpha = 6, points 0, 1, -1, 2, -2 and infinity (``winograd.matrices(4, 3)``; the tests check
the unrolled 1-D transforms below against it):

    B^T d = (4(d0 - d2) + d4 - d2, d4 - 4 d2 + d3 - 4 d1, d4 - 4 d2 - d3 + 4 d1,
             d4 - d2 + 2(d3 - d1), d4 - d2 - 2(d3 - d1), d5 - d3 - 4(d3 - d1))
    A^T M = (M0 + M1 + M2 + M3 + M4, M1 - M2 + 2(M3 - M4), M1 + M2 + 4(M3 + M4),
             M1 - M2 + 8(M3 - M4) + M5)
    A g   = (g0, g0 + g1 + g2 + g3, g0 - g1 + g2 - g3, g0 + 2 g1 + 4 g2 + 8 g3,
             g0 - 2 g1 + 4 g2 - 8 g3, g3)
    G g   = (g0 / 4, -(g0 + g1 + g2) / 6, -(g0 - g1 + g2) / 6, (g0 + 2 g1 + 4 g2) / 24,
             (g0 - 2 g1 + 4 g2) / 24, g2)

A 4x4 output tile costs 36 channel products where F(2x2, 3x3) spends 4 * 16 = 64: on W4's
14x14 outputs 16 tiles (covering 16x16) against 49, 576 products per sample against 784, so
the 36 GEMMs do 0.73x the multiply-adds (3x fewer than im2col's). Coefficients up to 8 and 1/24
cost most of a float32 digit (the tests state it). The stride-1 algebra is ``winograd.py``'s;
the layout is ``winograd_s2.py``'s: each sample is copied into a zero-bordered channel-last
(rows, columns, C) buffer, every transform is two passes (rows, then columns) whose inner loop
runs over C contiguous channels, and a tile is a row of V (T, C).

    forward       M[e] (T, O) = V_x[e] (T, C) @ U[e]^T (C, O),      y = A^T M A
    input grad    the forward of gy (padded by 2 - p) with the flipped, transposed kernel
    weight grad   dU[e] (O, C) = sum over tiles (A gy A^T)[e]^T (O, T) @ V_x[e] (T, C),
                  dw = G^T dU G (float64)
"""
import numpy as np
from numba import njit, uint64

from .parallel import parallel_chunks, parallel_chunks_after
from .winograd import planes
from .winograd_s2 import _SIXTH, _from_hwc, _to_hwc

_JIT = dict(cache=True, nogil=True, boundscheck=False)


@njit(cache=True, inline="always")
def _load6(a, p, step):
    s2 = step + step
    s4 = s2 + s2
    return a[p], a[p + step], a[p + s2], a[p + s2 + step], a[p + s4], a[p + s4 + step]


@njit(cache=True, inline="always")
def _put6(a, p, step, t):
    s2 = step + step
    s4 = s2 + s2
    a[p], a[p + step], a[p + s2], a[p + s2 + step] = t[0], t[1], t[2], t[3]
    a[p + s4], a[p + s4 + step] = t[4], t[5]


# products by 2, 4, 8 as sums: numba widens float32 * literal to float64

@njit(cache=True, inline="always")
def _bt6(d):
    a, b = d[4] - d[2], d[3] - d[1]
    f = d[0] - d[2]
    f2, b2, d1_2, d2_2 = f + f, b + b, d[1] + d[1], d[2] + d[2]
    c, e = d[4] - d2_2 - d2_2, d[3] - d1_2 - d1_2
    return f2 + f2 + a, c + e, c - e, a + b2, a - b2, d[5] - d[3] - b2 - b2


@njit(cache=True, inline="always")
def _at6(m):
    s, t, p, q = m[1] + m[2], m[1] - m[2], m[3] + m[4], m[3] - m[4]
    p2, q2 = p + p, q + q
    q4 = q2 + q2
    return m[0] + s + p, t + q2, s + p2 + p2, t + q4 + q4 + m[5]


@njit(cache=True, inline="always")
def _a6(g):
    e, o = g[0] + g[2], g[1] + g[3]
    g2_2, g3_2 = g[2] + g[2], g[3] + g[3]
    e2 = g[0] + g2_2 + g2_2
    h = g[1] + g3_2 + g3_2
    return g[0], e + o, e - o, e2 + h + h, e2 - h - h, g[3]


_24TH = 1.0 / 24.0


@njit(cache=True, inline="always")
def _g3(g):
    """G g in float64."""
    s, e = g[0] + g[2], g[0] + 4.0 * g[2]
    return (0.25 * g[0], -(s + g[1]) * _SIXTH, (g[1] - s) * _SIXTH, (e + 2.0 * g[1]) * _24TH,
            (e - 2.0 * g[1]) * _24TH, g[2])


@njit(cache=True, inline="always")
def _gt6(d):
    """G^T d in float64, the adjoint of ``_g3``."""
    s, t = d[1] + d[2], d[3] + d[4]
    return (0.25 * d[0] - s * _SIXTH + t * _24TH,
            (d[2] - d[1]) * _SIXTH + (d[3] - d[4]) * 0.5 * _SIXTH,
            (t - s) * _SIXTH + d[5])


# ---------------------------------------------------------------- tiles


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _tiles(x, n0, n1, c_, h, w, pt, pl, th, tw, is_gy, v, es):
    """V[6k' + l', (n - n0)*T + ti*tw + tj, c] = (X D X^T)[k', l'], T = th*tw: X = B^T and
    D[k, l] = x_pad[n, c, 4ti + k, 4tj + l], k, l < 6, x_pad = x offset by (pt, pl) (negative:
    cropped), 0 outside x (an input's tiles); or, with ``is_gy``, X = A and D x[n, c]'s 4x4
    output tile (ti, tj) (a gradient's tiles, for the weight gradient).
    x: flat C-order (N, C, H, W); v: flat (36, cols, C), planes es elements apart."""
    kap = 4 if is_gy else 6
    hp, wp = 4 * th + kap - 4, 4 * tw + kap - 4
    buf = np.empty(hp * wp * c_, x.dtype)
    t = np.empty(6 * kap * c_, x.dtype)  # the row pass, (kap rows k, 6 l', C)
    cu = uint64(c_)
    dr, e1 = uint64(wp * c_), uint64(es)
    e6, c6 = uint64(6) * e1, uint64(6) * cu
    for n in range(n0, n1):
        _to_hwc(x, n, c_, h, w, pt, pl, hp, wp, buf)
        for ti in range(th):
            for tj in range(tw):
                o = uint64(((n - n0) * th * tw + ti * tw + tj) * c_)
                r = uint64((4 * ti * wp + 4 * tj) * c_)
                for k in range(kap):
                    tk = uint64(6 * k) * cu
                    for c0 in range(c_):
                        c = uint64(c0)
                        if is_gy:
                            q = r + c
                            z = _a6((buf[q], buf[q + cu], buf[q + cu + cu], buf[q + cu + cu + cu]))
                        else:
                            z = _bt6(_load6(buf, r + c, cu))
                        _put6(t, tk + c, cu, z)
                    r += dr
                for l in range(6):
                    tl, ol = uint64(l) * cu, o + uint64(l) * e1
                    for c0 in range(c_):
                        c = uint64(c0)
                        if is_gy:
                            q = tl + c
                            z = _a6((t[q], t[q + c6], t[q + c6 + c6], t[q + c6 + c6 + c6]))
                        else:
                            z = _bt6(_load6(t, tl + c, c6))
                        _put6(v, ol + c, e6, z)


@njit(**_JIT)
def _b_tiles(x, n0, n1, c_, h, w, pt, pl, th, tw, v, es):
    """``_tiles`` of an input (B^T), compiled with the branch folded away."""
    _tiles(x, n0, n1, c_, h, w, pt, pl, th, tw, False, v, es)


@njit(**_JIT)
def _a_tiles(gy, n0, n1, o_, ho, wo, th, tw, v, es):
    """``_tiles`` of a gradient (A)."""
    _tiles(gy, n0, n1, o_, ho, wo, 0, 0, th, tw, True, v, es)


@njit(**_JIT)
def _untile(mm, es, n0, n1, o_, th, tw, y, hy, wy):
    """y[n, o, 4ti + i, 4tj + j] = (A^T M A)[i, j] inside y, M[e] = mm[e, (n - n0)*T + ti*tw
    + tj, o]; mm: flat (36, cols, O), planes es elements apart."""
    wq = 4 * tw
    buf = np.empty(4 * th * wq * o_, mm.dtype)
    t = np.empty(24 * o_, mm.dtype)  # (6 rows k, 4 j, O)
    cu = uint64(o_)
    dr, e1 = uint64(wq * o_), uint64(es)
    e6, c4 = uint64(6) * e1, uint64(4) * cu
    for n in range(n0, n1):
        for ti in range(th):
            for tj in range(tw):
                p = uint64(((n - n0) * th * tw + ti * tw + tj) * o_)
                o = uint64((4 * ti * wq + 4 * tj) * o_)
                for k in range(6):  # rows: t[k, j] = A^T M[k, :]
                    tk = uint64(4 * k) * cu
                    for c in range(o_):
                        z = _at6(_load6(mm, p + uint64(c), e1))
                        q = tk + uint64(c)
                        t[q], t[q + cu], t[q + cu + cu], t[q + cu + cu + cu] = z
                    p += e6
                for j in range(4):  # columns: out[i, j] = A^T t[:, j]
                    tj4 = uint64(j) * cu
                    for c in range(o_):
                        z = _at6(_load6(t, tj4 + uint64(c), c4))
                        q = o + uint64(c)
                        buf[q], buf[q + dr], buf[q + dr + dr], buf[q + dr + dr + dr] = z
                    o += cu
        _from_hwc(buf, wq, 0, 0, o_, hy, wy, n, y)


# ---------------------------------------------------------------- filters


@njit(**_JIT)
def _filters(w, o_, c_, flip, tr, u, es):
    """u[e, o, c] = (G g G^T)[e] with g = w[o, c] (3x3), or g[p, q] = w[o, c, 2 - p, 2 - q]
    with ``flip``; with ``tr`` u[e, c, o] (the forward's B operand). float64 arithmetic; the
    vector loop runs along u's rows. w: flat (O, C, 3, 3); u: flat, planes es elements apart."""
    nx, ny, sx, sy = o_, c_, 9 * c_, 9
    if tr:
        nx, ny, sx, sy = c_, o_, 9, 9 * c_
    e1 = uint64(es)
    e6 = uint64(6) * e1
    yu = uint64(ny)
    wt = np.empty(9 * ny)  # the 9 taps of w at x, for every y, float64
    t = np.empty(18 * ny)  # G g, (6, 3, ny)
    for x in range(nx):
        for y in range(ny):
            for j in range(9):
                wt[(8 - j if flip else j) * ny + y] = w[x * sx + y * sy + j]
        for q in range(3):  # G g down column q
            tq = uint64(q) * yu
            for y0 in range(ny):
                y = uint64(y0)
                _put6(t, tq + y, uint64(3) * yu,
                      _g3((wt[tq + y], wt[tq + uint64(3) * yu + y], wt[tq + uint64(6) * yu + y])))
        for i in range(6):  # row i of G g G^T -> planes 6i + l
            p = uint64(x * ny) + uint64(i) * e6
            ti = uint64(3 * i) * yu
            for y0 in range(ny):
                y = uint64(y0)
                _put6(u, p + y, e1, _g3((t[ti + y], t[ti + yu + y], t[ti + yu + yu + y])))


@njit(**_JIT)
def _filter_grad(parts, o_, c_, gw):
    """gw[o, 3p + q, c] = (G^T dU G)[p, q], dU[e, o, c] = sum over k of parts[k, e*O*C + o*C
    + c], summed and transformed in float64: the adjoint of ``_filters`` without flip or
    ``tr``. parts: (chunks, 36*O*C); gw: flat (O, 9, C) float64."""
    du = np.zeros(parts.shape[1])
    for k in range(parts.shape[0]):  # in chunk order: deterministic
        for i in range(parts.shape[1]):
            du[i] += parts[k, i]
    e1 = uint64(o_ * c_)
    e6 = uint64(6) * e1
    cu = uint64(c_)
    t = np.empty(18 * c_)  # G^T dU, (6, 3, C)
    for o in range(o_):
        p = uint64(o * c_)
        for i in range(6):  # rows: t[i, q] = G^T dU[i, :]
            ti = uint64(3 * i) * cu
            for c in range(c_):
                g = _gt6(_load6(du, p + uint64(c), e1))
                t[ti + uint64(c)], t[ti + cu + uint64(c)], t[ti + cu + cu + uint64(c)] = g
            p += e6
        w0 = uint64(9 * o) * cu
        for q in range(3):  # column q: gw[:, q] = G^T t[:, q]
            tq = uint64(q) * cu
            for c in range(c_):
                g = _gt6(_load6(t, tq + uint64(c), uint64(3) * cu))
                wq = w0 + uint64(q) * cu + uint64(c)
                gw[wq], gw[wq + uint64(3) * cu], gw[wq + uint64(6) * cu] = g


def _transformed(w, flip, tr):
    o, c = w.shape[:2]
    u, uf, ue = planes(36, c, o, w.dtype) if tr else planes(36, o, c, w.dtype)
    _filters(np.ascontiguousarray(w).reshape(-1), o, c, flip, tr, uf, ue)
    return u


# ---------------------------------------------------------------- drivers


def _forward(x, filters, pt, pl, y, route):
    """y (N, O, Hy, Wy) = the stride-1 correlation of x offset by (pt, pl) with the filters
    whose transform (36, C, O) ``filters()`` returns (run beside the first chunk's tiles)."""
    n, c, h, wd = x.shape
    o, hy, wy = y.shape[1:]
    th, tw = -(-hy // 4), -(-wy // 4)
    t_ = th * tw
    xf, yf = x.reshape(-1), y.reshape(-1)

    def run(n0, n1, u):
        v, vf, ve = planes(36, (n1 - n0) * t_, c, x.dtype)
        mm, mf, me = planes(36, (n1 - n0) * t_, o, x.dtype)
        _b_tiles(xf, n0, n1, c, h, wd, pt, pl, th, tw, vf, ve)
        np.matmul(v, u(), out=mm)
        _untile(mf, me, n0, n1, o, th, tw, yf, hy, wy)

    parallel_chunks_after(filters, run, route.chunks(n, t_))
    return y


def forward(x, w, g, route):
    """y = x (*) w, 3x3, stride 1: x (N, C, H, W), w (O, C, 3, 3) -> (N, O, Ho, Wo)."""
    y = np.empty((g.n, g.o, g.ho, g.wo), x.dtype)
    return _forward(x, lambda: _transformed(w, False, True), *g.padding, y, route)


def input_grad(gy, w, g, route):
    """dL/dx (N, C, H, W) of ``forward``: gy padded by 2 - p correlated with w flipped, its
    channel axes swapped."""
    gx = np.empty((g.n, g.c, g.h, g.w), gy.dtype)
    ph, pw = g.padding
    return _forward(gy, lambda: _transformed(w, True, False), 2 - ph, 2 - pw, gx, route)


def weight_grad(x, gy, g, route):
    """dL/dw (O, C, 3, 3) of ``forward``: G^T [sum over tiles (A gy A^T)[e]^T V[e]] G, the
    chunks' products summed in float64 in chunk order."""
    ph, pw = g.padding
    n, c, h, wd = x.shape
    _, o, ho, wo = gy.shape
    dt = x.dtype
    th, tw = -(-ho // 4), -(-wo // 4)
    t_ = th * tw
    xf, gf = x.reshape(-1), gy.reshape(-1)
    chunks = route.chunks(n, t_)
    parts = np.empty((len(chunks), 36, o, c), dt)
    index = {n0: i for i, (n0, _) in enumerate(chunks)}

    def run(n0, n1):
        k = (n1 - n0) * t_
        v, vf, ve = planes(36, k, c, dt)
        g, gbuf, ge = planes(36, k, o, dt)
        _b_tiles(xf, n0, n1, c, h, wd, ph, pw, th, tw, vf, ve)
        _a_tiles(gf, n0, n1, o, ho, wo, th, tw, gbuf, ge)
        np.matmul(g.transpose(0, 2, 1), v, out=parts[index[n0]])

    parallel_chunks(run, chunks)
    gw = np.empty((o, 9, c))
    _filter_grad(parts.reshape(len(chunks), -1), o, c, gw.reshape(-1))
    return np.ascontiguousarray(gw.reshape(o, 3, 3, c).transpose(0, 3, 1, 2), dtype=dt)
