"""Winograd convolutions F(m x m, r x r) on the input's polyphase components.

A stride-``s`` convolution with a ``k x k`` kernel is a stride-1 convolution with an
``r x r`` kernel, r = ceil(k / s), of the ``s*s`` polyphase components of the (padded) input
``x_ab[u, v] = x_pad[s*u + a, s*v + b]`` taken as ``C*s*s`` channels, with the kernel's
components ``g_ab[p, q] = w[s*p + a, s*q + b]`` (zero past k). Its adjoint in x (the
transposed convolution) is the stride-1 correlation of gy with the flipped components,
written back interleaved: ``gx_pad[s*u + a, s*v + b] = phase (a, b) of the output``. So
forward, input grad and weight grad of a 3x3/s1 conv (s = 1, r = 3) and of a 4x4/s2 conv
(s = 2, r = 2) are one stride-1 Winograd algorithm each, with no col2im scatter and no
products with inserted zeros.

Winograd F(m, r) in 2-D (alpha = m + r - 1, tiles of m x m outputs from alpha x alpha inputs
that overlap by r - 1):

    Y_tile = A^T [ (G g G^T) (.) (B^T D B^T^T) ] A        (.) = elementwise

summed over input channels, which makes the elementwise product alpha^2 independent GEMMs
``M[e] (O, T) = U[e] (O, C) @ V[e] (C, T)`` over all tiles T: m^2 r^2 / alpha^2 fewer
multiply-adds than the direct convolution (2.25x for F(2, 3), 1.78x for F(2, 2)). The weight
gradient runs the same algebra backwards: dU[e] = sum over tiles of (A dY A^T)[e] (outer)
V[e], dg = G^T dU G. The matrices come from Cook-Toom with points 0, 1, -1, 2, -2, 1/2 and
infinity (``matrices``).

Tile transforms are numba loops (one (channel, sample) plane at a time): generic ones for any
F(m, r) and stride (the tests' reference for the unrolled ones), and unrolled ones for
F(2x2, 3x3) at stride 1, faster (``_x_tiles_f23``, ``_gy_tiles_f23``, ``_out_f23``,
``_filter_f23``), the route for 3x3/s1 outputs of 1-2 pixels a side. Larger 3x3/s1 outputs
run F(4x4, 3x3) and stride 2 F(2x2, 2x2) or F(4x4, 2x2), each in a channel-last module
(``winograd_f43.py``, ``winograd_s2.py``). The GEMMs are NumPy's batched ``matmul``
(OpenBLAS), one call per chunk of samples, run on both cores (``parallel_chunks``).

``forward``, ``input_grad`` and ``weight_grad`` are the ``winograd`` algorithm of the route
table (``routes.py``): any square kernel and stride, any output tile m (``route.tile``).
"""
import math

import numpy as np
from numba import njit, uint64

from . import routes
from .parallel import parallel_chunks

_JIT = dict(cache=True, nogil=True, boundscheck=False)

_POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)
_MATS = {}


def planes(k, rows, cols, dt):
    """An uninitialised (k, rows, cols) array whose planes are es = rows*cols + PLANE_PAD
    (``routes.py``) elements apart (each plane C-contiguous, so BLAS takes it as is), its flat
    buffer, and es."""
    es = rows * cols + routes.PLANE_PAD
    buf = np.empty(k * es, dt)
    return buf.reshape(k, es)[:, :rows * cols].reshape(k, rows, cols), buf, es


def matrices(m, r):
    """(A^T (m, alpha), G (alpha, r), B^T (alpha, alpha)) of Winograd F(m, r), float64, with
    y_i = sum_k g_k d_{i+k} = (A^T [(G g) (.) (B^T d)])_i for every g (r) and d (alpha)."""
    key = (m, r)
    if key in _MATS:
        return _MATS[key]
    al = m + r - 1
    if al - 1 > len(_POINTS):
        raise ValueError(f"winograd F({m}, {r}) needs more than {len(_POINTS)} points")
    pts = _POINTS[: al - 1]
    at = np.zeros((m, al))
    g = np.zeros((al, r))
    for j, p in enumerate(pts):
        f = math.prod(p - q for q in pts if q != p)
        at[:, j] = [p ** i for i in range(m)]
        g[j] = [p ** k / f for k in range(r)]
    at[m - 1, al - 1] = 1.0
    g[al - 1, r - 1] = 1.0
    # B^T from the bilinear identity: sum_j AT[i,j] G[j,k] BT[j,l] = [l == i + k]
    lhs = np.einsum("ij,jk->ikj", at, g).reshape(m * r, al)
    rhs = np.zeros((m * r, al))
    for i in range(m):
        for k in range(r):
            rhs[i * r + k, i + k] = 1.0
    bt, *_ = np.linalg.lstsq(lhs, rhs, rcond=None)
    bt[np.abs(bt) < 1e-12] = 0.0
    if not np.allclose(lhs @ bt, rhs, atol=1e-12):
        raise AssertionError(f"winograd F({m}, {r}): no exact B^T")
    _MATS[key] = (at, g, bt)
    return _MATS[key]


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


@njit(cache=True, inline="always")
def _combine(dst, d0, mat, row, src, s0, step, length):
    """dst[d0 + q] = sum_k mat[row, k] * src[s0 + k*step + q], q < length (zero terms skipped):
    one row of a transform applied to whole rows of tiles at once."""
    for q in range(length):
        dst[uint64(d0 + q)] = 0
    for k in range(mat.shape[1]):
        cf = mat[row, k]
        if cf != 0:
            b = s0 + k * step
            for q in range(length):
                dst[uint64(d0 + q)] += cf * src[uint64(b + q)]


@njit(**_JIT)
def _tile_transform(x, n0, n1, c_, h, w, s, pt, pl, th, tw, m, bt, v):
    """v[e, c', (n - n0)*T + ti*tw + tj] = (bt D bt^T)[u, vv], e = u*alpha + vv, for samples
    n0 <= n < n1, with D[k, l] = x[n, c, s*(m*ti + k) + a - pt, s*(m*tj + l) + b - pl]
    (0 outside x), k, l < kappa, c' = (c*s + a)*s + b, T = th*tw.

    bt: (alpha, kappa); B^T (kappa = alpha) for input tiles, A (kappa = m) for gy tiles.
    x: flat C-order (N, C, H, W); v: flat (alpha^2, C*s*s, (n1 - n0)*T).
    Per (c', n): copy the padded plane, transform its rows (vectorised along the row),
    gather the tiles' columns into a (alpha, kappa, cols) buffer; per c': transform the
    columns over all the chunk's tiles at once (long unit-stride loops)."""
    al, kap = bt.shape
    hp = m * (th - 1) + kap
    wp = m * (tw - 1) + kap
    cp = c_ * s * s
    t_ = th * tw
    ncol = (n1 - n0) * t_
    buf = np.empty(hp * wp, x.dtype)
    rb = np.empty(al * th * wp, x.dtype)
    gb = np.empty(al * kap * ncol, x.dtype)
    acc = np.empty(ncol, x.dtype)
    for c in range(c_):
        for a in range(s):
            ilo, ihi = _valid_range(a, pt, s, h, hp)
            for b in range(s):
                jlo, jhi = _valid_range(b, pl, s, w, wp)
                cc = (c * s + a) * s + b
                for n in range(n0, n1):
                    xb = (n * c_ + c) * h * w
                    for r in range(hp):
                        o = uint64(r * wp)
                        if r < ilo or r >= ihi:
                            for j in range(wp):
                                buf[o + uint64(j)] = 0
                            continue
                        xr = xb + (s * r + a - pt) * w + b - pl
                        for j in range(jlo):
                            buf[o + uint64(j)] = 0
                        if s == 1:
                            for j in range(jlo, jhi):
                                buf[o + uint64(j)] = x[uint64(xr + j)]
                        else:
                            for j in range(jlo, jhi):
                                buf[o + uint64(j)] = x[uint64(xr + s * j)]
                        for j in range(jhi, wp):
                            buf[o + uint64(j)] = 0
                    for u in range(al):
                        for ti in range(th):
                            _combine(rb, (u * th + ti) * wp, bt, u, buf, m * ti * wp, wp, wp)
                    col0 = (n - n0) * t_
                    for u in range(al):
                        for ti in range(th):
                            ib = (u * th + ti) * wp
                            for l in range(kap):
                                o = uint64((u * kap + l) * ncol + col0 + ti * tw)
                                for tj in range(tw):
                                    gb[o + uint64(tj)] = rb[uint64(ib + m * tj + l)]
                for u in range(al):
                    for vv in range(al):
                        _combine(acc, 0, bt, vv, gb, u * kap * ncol, ncol, ncol)
                        o = uint64(((u * al + vv) * cp + cc) * ncol)
                        for q in range(ncol):
                            v[o + uint64(q)] = acc[q]


@njit(**_JIT)
def _out_transform(mm, n0, n1, o_, s, th, tw, at, y, hy, wy, qt, ql):
    """y[n, o, s*(m*ti + i) + a - qt, s*(m*tj + j) + b - ql] = (at M at^T)[i, j] where it
    is inside y, M[u, vv] = mm[u*alpha + vv, o', (n - n0)*T + ti*tw + tj], o' = (o*s + a)*s + b.

    mm: flat (alpha^2, O*s*s, (n1 - n0)*T); y: flat C-order (N, O, Hy, Wy), every element
    of samples n0..n1 written exactly once when the tiles cover y. Per o': both transforms
    over all the chunk's tiles at once, then one scatter of the m x m outputs."""
    m, al = at.shape
    op = o_ * s * s
    t_ = th * tw
    ncol = (n1 - n0) * t_
    z = np.empty(al * m * ncol, mm.dtype)
    yt = np.empty(m * m * ncol, mm.dtype)
    for o in range(o_):
        for a in range(s):
            for b in range(s):
                oc = (o * s + a) * s + b
                for u in range(al):
                    for j in range(m):
                        _combine(z, (u * m + j) * ncol, at, j, mm, (u * al * op + oc) * ncol,
                                 op * ncol, ncol)
                for i in range(m):
                    for j in range(m):
                        _combine(yt, (i * m + j) * ncol, at, i, z, j * ncol, m * ncol, ncol)
                for n in range(n0, n1):
                    yb = (n * o_ + o) * hy * wy
                    col0 = (n - n0) * t_
                    for ti in range(th):
                        for i in range(m):
                            yr = s * (m * ti + i) + a - qt
                            if yr < 0 or yr >= hy:
                                continue
                            for j in range(m):
                                lo, hi = _valid_range(s * j + b, ql, s * m, wy, tw)
                                yo = yb + yr * wy + s * j + b - ql
                                src = (i * m + j) * ncol + col0 + ti * tw
                                for tj in range(lo, hi):
                                    y[uint64(yo + s * m * tj)] = yt[uint64(src + tj)]


# ------------------------------------------- F(2x2, 3x3), stride 1: the transforms unrolled
#
# With ``matrices(2, 3)`` (checked in the tests):
#   B^T d = (d2 - d0, d1 + d2, d2 - d1, d3 - d1),  A g = (g0, g0 + g1, g0 - g1, g1),
#   A^T M = (M0 + M1 + M2, M1 - M2 + M3).
# A tile's columns 2tj..2tj+3 are the even/odd columns tj, tj+1 of its plane, and its rows
# 2ti..2ti+3 the even/odd rows ti, ti+1: splitting planes by parity turns every pass into a
# unit-stride loop (over a row of tiles, then over all th*tw tiles of a plane) that LLVM
# vectorises, where the generic loops above do not (benchmarks/PROFILE.md).


@njit(cache=True, inline="always")
def _f23_1d(a0, a1, a2, a3, is_gy):
    """B^T (a0..a3), or A (a0, a1) with ``is_gy`` (a2, a3 unused)."""
    if is_gy:
        return a0, a0 + a1, a0 - a1, a1
    return a2 - a0, a1 + a2, a2 - a1, a3 - a1


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _tiles_f23(x, n0, n1, c_, h, w, pt, pl, th, tw, is_gy, v, es):
    """v[e, c, (n - n0)*T + ti*tw + tj] = (X D X^T)[u, l], e = 4u + l, T = th*tw, for samples
    n0 <= n < n1: X = B^T and D the 4x4 tile at x_pad rows 2ti - pt + (0..3), columns
    2tj - pl + (0..3) (an input's tiles); or, with ``is_gy``, X = A and D the 2x2 tile at rows
    2ti + (0, 1), columns 2tj + (0, 1) (pt = pl = 0: a gradient's tiles). 0 outside x.
    x: flat C-order (N, C, H, W); v: flat (16, C, (n1 - n0)*T), planes es elements apart."""
    t_ = th * tw
    ncol = (n1 - n0) * t_
    kap = 2 if is_gy else 4
    hp = 2 * th + kap - 2       # padded rows the tiles read
    wh = tw + kap // 2 - 1      # padded columns of each parity the tiles read
    half = (th + kap // 2 - 1) * tw
    # +1 / +tw: the A pass (is_gy) loads, then ignores, the B^T pass's last two operands
    ev = np.zeros(hp * wh + 1, x.dtype)
    od = np.zeros(hp * wh + 1, x.dtype)
    rb = np.zeros(8 * half + tw, x.dtype)  # rb[l, parity, i, tj]: row pass of row 2i + parity
    ilo, ihi = pt, min(hp, h + pt)
    # padded column 2jj (+1) is x column 2jj - pl (+1): the jj inside x, per parity; the rest
    # of ev / od stays 0
    elo, ehi = min((pl + 1) // 2, wh), min((w - 1 + pl) // 2 + 1, wh)
    olo, ohi = min(pl // 2, wh), min((w - 2 + pl) // 2 + 1, wh)
    one, utw = uint64(1), uint64(tw)
    for c in range(c_):
        for n in range(n0, n1):
            xb = (n * c_ + c) * h * w
            for r in range(ilo, ihi):
                o = uint64(r * wh)
                # wraps below 0 when pl > 0; every index read (jj >= elo, olo) is inside x
                xr = uint64(xb + (r - pt) * w - pl)
                for jj in range(elo, ehi):
                    ev[o + uint64(jj)] = x[xr + uint64(2 * jj)]
                for jj in range(olo, ohi):
                    od[o + uint64(jj)] = x[xr + uint64(2 * jj + 1)]
            for r in range(hp):
                o = uint64(r * wh)
                d = uint64(((r & 1) * (half // tw) + (r >> 1)) * tw)
                for tj in range(tw):
                    q = uint64(tj)
                    r0, r1, r2, r3 = _f23_1d(ev[o + q], od[o + q], ev[o + q + one],
                                             od[o + q + one], is_gy)
                    rb[d + q] = r0
                    rb[uint64(2 * half) + d + q] = r1
                    rb[uint64(4 * half) + d + q] = r2
                    rb[uint64(6 * half) + d + q] = r3
            col0 = c * ncol + (n - n0) * t_
            for l in range(4):
                se = uint64(2 * l * half)
                so = se + uint64(half)
                b0 = uint64(l * es + col0)
                b1 = b0 + uint64(4 * es)
                b2 = b1 + uint64(4 * es)
                b3 = b2 + uint64(4 * es)
                for q0 in range(t_):
                    q = uint64(q0)
                    r0, r1, r2, r3 = _f23_1d(rb[se + q], rb[so + q], rb[se + q + utw],
                                             rb[so + q + utw], is_gy)
                    v[b0 + q] = r0
                    v[b1 + q] = r1
                    v[b2 + q] = r2
                    v[b3 + q] = r3


@njit(**_JIT)
def _x_tiles_f23(x, n0, n1, c_, h, w, pt, pl, th, tw, v, es):
    """``_tiles_f23`` of an input (B^T), compiled with the branch folded away."""
    _tiles_f23(x, n0, n1, c_, h, w, pt, pl, th, tw, False, v, es)


@njit(**_JIT)
def _gy_tiles_f23(gy, n0, n1, o_, ho, wo, th, tw, v, es):
    """``_tiles_f23`` of a gradient (A)."""
    _tiles_f23(gy, n0, n1, o_, ho, wo, 0, 0, th, tw, True, v, es)


@njit(**_JIT)
def _out_f23(mm, es, n0, n1, o_, th, tw, y, hy, wy):
    """y[n, o, 2ti + i, 2tj + j] = (A^T M A)[i, j] where inside y, M[u, l] = mm[4u + l, o,
    (n - n0)*T + ti*tw + tj]. mm: flat (16, O, (n1 - n0)*T), planes es elements apart; y: flat
    C-order (N, O, Hy, Wy).
    Per o: the four outputs of every tile of the chunk into (4, cols), then interleaved."""
    t_ = th * tw
    ncol = (n1 - n0) * t_
    es = uint64(es)
    e2 = es + es
    e3 = e2 + es
    e4 = e2 + e2
    yt = np.empty(4 * ncol, mm.dtype)
    for o in range(o_):
        for q0 in range(ncol):
            p = uint64(o * ncol + q0)
            m00, m01, m02, m03 = mm[p], mm[p + es], mm[p + e2], mm[p + e3]
            p += e4
            m10, m11, m12, m13 = mm[p], mm[p + es], mm[p + e2], mm[p + e3]
            p += e4
            m20, m21, m22, m23 = mm[p], mm[p + es], mm[p + e2], mm[p + e3]
            p += e4
            m30, m31, m32, m33 = mm[p], mm[p + es], mm[p + e2], mm[p + e3]
            z0, z1 = m00 + m10 + m20, m01 + m11 + m21
            z2, z3 = m02 + m12 + m22, m03 + m13 + m23
            z4, z5 = m10 - m20 + m30, m11 - m21 + m31
            z6, z7 = m12 - m22 + m32, m13 - m23 + m33
            q = uint64(q0)
            yt[q] = z0 + z1 + z2
            yt[uint64(ncol) + q] = z1 - z2 + z3
            yt[uint64(2 * ncol) + q] = z4 + z5 + z6
            yt[uint64(3 * ncol) + q] = z5 - z6 + z7
        for n in range(n0, n1):
            yb = (n * o_ + o) * hy * wy
            for ti in range(th):
                for i in range(2):
                    yr = 2 * ti + i
                    if yr >= hy:
                        continue
                    yo = uint64(yb + yr * wy)
                    s0 = uint64((2 * i) * ncol + (n - n0) * t_ + ti * tw)
                    s1 = s0 + uint64(ncol)
                    for tj in range(tw):
                        y[yo + uint64(2 * tj)] = yt[s0 + uint64(tj)]
                    for tj in range(min(tw, wy - tw)):
                        y[yo + uint64(2 * tj + 1)] = yt[s1 + uint64(tj)]


# ---------------------------------------------------------------- drivers


def phase_filters(w, s, r):
    """g'[o, (c*s + a)*s + b, p, q] = w[o, c, s*p + a, s*q + b] (0 past the kernel)."""
    o, c, kh, kw = w.shape
    wp = np.zeros((o, c, s * r, s * r), w.dtype)
    wp[:, :, :kh, :kw] = w
    return wp.reshape(o, c, r, s, r, s).transpose(0, 1, 3, 5, 2, 4).reshape(o, c * s * s, r, r)


def filter_transform(g, m, r, dt):
    """U[e, o, c] = (G g[o, c] G^T)[u, vv], e = u*alpha + vv, computed in float64."""
    if (m, r) == (2, 3):
        u = np.empty((16, g.shape[0], g.shape[1]), dt)
        _filter_f23(np.ascontiguousarray(g).reshape(-1), u.reshape(-1))
        return u
    _, gm, _ = matrices(m, r)
    al = gm.shape[0]
    u = np.einsum("ap,ocpq,bq->aboc", gm, g.astype(np.float64), gm, optimize=True)
    return np.ascontiguousarray(u.reshape(al * al, g.shape[0], g.shape[1]), dtype=dt)


@njit(**_JIT)
def _filter_f23(g, u):
    """``filter_transform`` for F(2x2, 3x3) (G g = (-g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2)):
    g flat (O*C, 3, 3) in any float dtype, u flat (16, O*C); arithmetic in float64 (the
    einsum route took longer than a chunk's tile transforms)."""
    oc = g.size // 9
    t = np.empty((4, 3))
    for k in range(oc):
        for q in range(3):
            g0, g1, g2 = np.float64(g[9 * k + q]), np.float64(g[9 * k + 3 + q]), np.float64(g[9 * k + 6 + q])
            t[0, q], t[1, q], t[2, q], t[3, q] = -g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2
        for a in range(4):
            g0, g1, g2 = t[a, 0], t[a, 1], t[a, 2]
            e = a * 4 * oc + k
            u[e], u[e + oc] = -g0, 0.5 * (g0 + g1 + g2)
            u[e + 2 * oc], u[e + 3 * oc] = 0.5 * (g0 - g1 + g2), g2


def _correlate(x, u, s, pt, pl, th, tw, m, r, y, s_out, qt, ql, route):
    """Stride-1 Winograd F(m, r) convolution of x's s*s polyphase components with U
    (alpha^2, O*s_out^2, C*s^2), written into y (N, O, Hy, Wy) through ``_out_transform``
    (phase-interleaved when s_out > 1); F(2x2, 3x3) at stride 1 through the unrolled
    ``_tiles_f23`` / ``_out_f23``."""
    at, _, bt = matrices(m, r)
    dt = x.dtype
    at, bt = at.astype(dt), bt.astype(dt)
    n, c = x.shape[:2]
    t_ = th * tw
    xf, yf = x.reshape(-1), y.reshape(-1)
    o_ = y.shape[1]
    f23 = (m, r, s) == (2, 3, 1)

    def run(n0, n1):
        k = (n1 - n0) * t_
        if f23:
            v, vf, ve = planes(u.shape[0], u.shape[2], k, dt)
            _x_tiles_f23(xf, n0, n1, c, x.shape[2], x.shape[3], pt, pl, th, tw, vf, ve)
        else:
            v = np.empty((u.shape[0], u.shape[2], k), dt)
            _tile_transform(xf, n0, n1, c, x.shape[2], x.shape[3], s, pt, pl, th, tw, m, bt,
                            v.reshape(-1))
        if f23 and s_out == 1 and qt == ql == 0:
            mm, mf, me = planes(u.shape[0], o_, k, dt)
            np.matmul(u, v, out=mm)
            _out_f23(mf, me, n0, n1, o_, th, tw, yf, y.shape[2], y.shape[3])
        else:
            _out_transform(np.matmul(u, v).reshape(-1), n0, n1, o_, s_out, th, tw, at, yf,
                           y.shape[2], y.shape[3], qt, ql)

    parallel_chunks(run, route.chunks(n, t_))
    return y


def _phase_weight_grad(x, gy, s, pt, pl, th, tw, m, r, route):
    """dg' (O, C*s*s, r, r) of the polyphase convolution: G^T [sum over chunks of
    (A gy A^T)[e] @ V[e]^T] G, the chunks' products summed in float64."""
    at, gm, bt = matrices(m, r)
    dt = x.dtype
    a_, bt = np.ascontiguousarray(at.T, dtype=dt), bt.astype(dt)
    n, c, h, w = x.shape
    _, o, ho, wo = gy.shape
    al = m + r - 1
    t_ = th * tw
    xf, gf = x.reshape(-1), gy.reshape(-1)
    chunks = route.chunks(n, t_)
    # per chunk, summed in chunk order whichever thread finished first: deterministic
    parts = np.empty((len(chunks), al * al, o, c * s * s), dt)
    index = {n0: i for i, (n0, _) in enumerate(chunks)}

    def run(n0, n1):
        k = (n1 - n0) * t_
        if (m, r, s) == (2, 3, 1):
            v, vf, ve = planes(16, c, k, dt)
            gt, gtf, ge = planes(16, o, k, dt)
            _x_tiles_f23(xf, n0, n1, c, h, w, pt, pl, th, tw, vf, ve)
            _gy_tiles_f23(gf, n0, n1, o, ho, wo, th, tw, gtf, ge)
        else:
            v = np.empty((al * al, c * s * s, k), dt)
            gt = np.empty((al * al, o, k), dt)
            _tile_transform(xf, n0, n1, c, h, w, s, pt, pl, th, tw, m, bt, v.reshape(-1))
            _tile_transform(gf, n0, n1, o, ho, wo, 1, 0, 0, th, tw, m, a_, gt.reshape(-1))
        np.matmul(gt, v.transpose(0, 2, 1), out=parts[index[n0]])

    parallel_chunks(run, chunks)
    if (m, r) == (2, 3):
        dg = np.empty((o, c * s * s, 3, 3))
        _filter_grad_f23(parts.reshape(len(chunks), -1), dg.reshape(-1))
        return dg
    du = parts.sum(axis=0, dtype=np.float64).reshape(al, al, o, c * s * s)
    return np.einsum("ap,aboc,bq->ocpq", gm, du, gm, optimize=True)


@njit(**_JIT)
def _filter_grad_f23(parts, dg):
    """dg[oc] = G^T (sum_k parts[k, :, oc] as 4x4) G for F(2x2, 3x3), in float64: the adjoint
    of ``_filter_f23`` (G^T d = (-d0 + (d1+d2)/2, (d1-d2)/2, (d1+d2)/2 + d3)).
    parts: (chunks, 16*O*C); dg: flat (O*C, 3, 3) float64."""
    oc = parts.shape[1] // 16
    acc = np.zeros(16 * oc)
    for k in range(parts.shape[0]):
        for i in range(16 * oc):
            acc[i] += parts[k, i]
    t = np.empty((3, 4))
    for j in range(oc):
        for b in range(4):
            d0, d1, d2, d3 = acc[b * oc + j], acc[(4 + b) * oc + j], acc[(8 + b) * oc + j], acc[(12 + b) * oc + j]
            t[0, b], t[1, b], t[2, b] = -d0 + 0.5 * (d1 + d2), 0.5 * (d1 - d2), 0.5 * (d1 + d2) + d3
        for p in range(3):
            d0, d1, d2, d3 = t[p, 0], t[p, 1], t[p, 2], t[p, 3]
            dg[9 * j + 3 * p] = -d0 + 0.5 * (d1 + d2)
            dg[9 * j + 3 * p + 1] = 0.5 * (d1 - d2)
            dg[9 * j + 3 * p + 2] = 0.5 * (d1 + d2) + d3


# ---------------------------------------------------------------- the three passes


def forward(x, w, g, route):
    """y = x (*) w -> (N, O, Ho, Wo) with F(m x m, r x r), m = ``route.tile``."""
    s, m = g.stride[0], route.tile
    r = -(-g.kh // s)
    u = filter_transform(phase_filters(w, s, r), m, r, x.dtype)
    y = np.empty((g.n, g.o, g.ho, g.wo), x.dtype)
    return _correlate(x, u, s, g.padding[0], g.padding[1], -(-g.ho // m), -(-g.wo // m), m, r,
                      y, 1, 0, 0, route)


def input_grad(gy, w, g, route):
    """dL/dx -> (N, C, H, W): the stride-1 correlation of gy with the flipped kernel
    components, its s*s output phases interleaved into gx; output row u' is gx_pad row
    s*(u0 + u') + a."""
    s, m = g.stride[0], route.tile
    (ph, pw), h, wd = g.padding, g.h, g.w
    r = -(-g.kh // s)
    u = filter_transform(phase_filters(w, s, r)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), m, r,
                         gy.dtype)
    u0h, u0w = ph // s, pw // s
    th = -(-((h - 1 + ph) // s + 1 - u0h) // m)
    tw = -(-((wd - 1 + pw) // s + 1 - u0w) // m)
    gx = np.empty((g.n, g.c, h, wd), gy.dtype)
    return _correlate(gy, u, 1, r - 1 - u0h, r - 1 - u0w, th, tw, m, r, gx, s, ph - s * u0h,
                      pw - s * u0w, route)


def weight_grad(x, gy, g, route):
    """dL/dw -> (O, C, kh, kw): the phase filters' gradient, interleaved back and cropped."""
    s, m = g.stride[0], route.tile
    r = -(-g.kh // s)
    d = _phase_weight_grad(x, gy, s, g.padding[0], g.padding[1], -(-g.ho // m), -(-g.wo // m),
                           m, r, route)
    d = d.reshape(g.o, g.c, s, s, r, r).transpose(0, 1, 4, 2, 5, 3)
    return np.ascontiguousarray(d.reshape(g.o, g.c, s * r, s * r)[:, :, :g.kh, :g.kw],
                                dtype=x.dtype)
