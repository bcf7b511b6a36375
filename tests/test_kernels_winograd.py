"""The Winograd / polyphase route of the ``cpu`` conv kernels against the float64 reference.

The route is forced on (any channel count, every F(m, r) the code offers) so that hypothesis
can draw small random geometries: batch, channels, odd sizes, padding 0..2, stride 1 (3x3 and
other k) and stride 2 (4x4, odd k: kernel components zero-padded).

float32 error against the float64 reference on W4's geometry (64 -> 128 channels, 3x3, pad 1,
14x14, batch 8, N(0,1) data), as (max |error| / the scale in ``rel_err``; / max |reference|)
for forward, input grad, weight grad:

    im2col + GEMM      1.3e-7, 6.0e-8, 7.6e-8;  5.7e-7, 3.4e-7, 5.2e-7
    F(2x2,3x3)         1.0e-7, 7.6e-8, 9.7e-8;  4.4e-7, 4.3e-7, 6.7e-7
    F(4x4,3x3)         2.0e-6, 1.5e-6, 6.6e-7;  8.5e-6, 8.8e-6, 4.6e-6   (used for 3x3/s1)

and on D2's (W2: 64 -> 128 channels, 4x4 stride 2, pad 1, 14x14, batch 8):

    im2col + GEMM      9.6e-8, 7.7e-8, 1.4e-7;  5.8e-7, 3.5e-7, 4.9e-7
    F(2x2,2x2) phases  1.5e-7, 1.7e-7, 1.1e-7;  8.9e-7, 7.6e-7, 3.9e-7
    F(4x4,2x2) phases  8.8e-7, 1.0e-6, 2.5e-7;  5.3e-6, 4.6e-6, 8.6e-7   (used for 4x4/s2)

so F(2x2,3x3) and F(2x2,2x2) are as accurate as im2col, and F(4x4,3x3) and F(4x4,2x2) lose
most of a digit (still ~40-75 float32 ulps of the largest output): the price of their 1.36x
and 1.44x fewer multiply-adds, paid where the route picks them (``routes.winograd_tile``). The bounds in
``TOL32`` hold these with a margin; float64 agrees to ~1e-15 for every F(m, r).
"""
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scratchgen.kernels import cpu, reference
from scratchgen.kernels.cpu import routes, winograd

# max |error| / max |reference|: float32 per tile size alpha = m + r - 1 (the transforms'
# points: 0, +-1 up to alpha = 4, then +-2 too, which costs about a digit), float64 for all
TOL32 = {2: 2e-6, 3: 2e-6, 4: 2e-6, 5: 2e-5, 6: 2e-5}
TOL64 = 1e-12


def route(k, s, m):
    """Force the Winograd route with output tile m for (k, s), whatever the channel count: the
    most specialised module that runs it."""
    return routes.force(routes.winograd_algorithm(k, s, m), tile=m)


def geometry(x, w, gy, s, p):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    return routes.ConvGeometry(n, c, h, wd, o, kh, kw, *gy.shape[2:], (s, s), (p, p))


def rel_err(got, want, scale, ab):
    """max |got - want| / max(max scale, ab); scale = the same kernel on |inputs| (the size of
    the rounded sums, so cancellation in want does not inflate the error), ab = the product
    of the two inputs' largest entries (Winograd's transforms mix a tile's entries, so a
    lone small product is rounded on that scale)."""
    assert got.shape == want.shape
    return float(np.abs(got - want).max() / max(float(scale.max()), ab, 1e-300))


def three(kern, x, w, gy, k, s, p, hw):
    return (kern.conv2d(x, w, (s, s), (p, p)),
            kern.conv2d_input_grad(gy, w, hw, (s, s), (p, p)),
            kern.conv2d_weight_grad(x, gy, (k, k), (s, s), (p, p)))


def check(n, c, o, h, wd, k, s, p, m, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd))
    w = rng.standard_normal((o, c, k, k))
    gy = rng.standard_normal(reference.conv2d(x, w, (s, s), (p, p)).shape)
    want = three(reference, x, w, gy, k, s, p, (h, wd))
    scale = three(reference, abs(x), abs(w), abs(gy), k, s, p, (h, wd))
    with route(k, s, m):
        for pass_ in routes.PASSES:
            assert routes.route(geometry(x, w, gy, s, p), pass_).tile == m
        got = three(cpu, x.astype(dtype), w.astype(dtype), gy.astype(dtype), k, s, p, (h, wd))
    tol = TOL32[m + -(-k // s) - 1] if dtype == np.float32 else TOL64
    mx, mw, mg = (float(abs(a).max()) for a in (x, w, gy))
    for g, wv, sc, ab in zip(got, want, scale, (mx * mw, mg * mw, mx * mg)):
        assert g.dtype == np.dtype(dtype) and g.flags.c_contiguous
        assert rel_err(g, wv, sc, ab) < tol


@st.composite
def wino_case(draw):
    s, k, m = draw(st.sampled_from([(1, 3, 2), (1, 3, 4), (1, 2, 2), (1, 5, 2), (2, 4, 2),
                                    (2, 4, 3), (2, 4, 4), (2, 3, 2), (2, 3, 4), (2, 5, 2)]))
    p = draw(st.integers(0, 2))
    h = draw(st.integers(max(1, k - 2 * p), 11))
    wd = draw(st.integers(max(1, k - 2 * p), 11))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), h, wd,
            k, s, p, m, draw(st.sampled_from([np.float32, np.float64])),
            draw(st.integers(0, 2**32 - 1)))


@settings(deadline=None, max_examples=80)
@given(wino_case())
def test_winograd_route_matches_reference(case):
    check(*case)


@pytest.mark.parametrize("m, r", [(2, 3), (4, 3), (2, 2), (3, 2)])
def test_matrices_compute_a_correlation(m, r):
    """A^T [(G g) (.) (B^T d)] = the valid correlation of d (alpha) with g (r), float64, to the
    error bound: B^T comes from lstsq (its last bits are LAPACK's and the BLAS kernel's), so
    the identity sum_j A^T_ij G_jk B^T_jl = [l == i + k] holds up to a residual R_ikl,
    within the 1e-12 ``matrices`` promises, that moves y_i by sum_kl |g_k| |R_ikl| |d_l|; on
    top, each side's sums of at most n = 2 alpha + r terms round by n eps of the sums of their
    terms' magnitudes."""
    at, g, bt = winograd.matrices(m, r)
    al = m + r - 1
    i, k, l = np.ogrid[:m, :r, :al]
    resid = abs(np.einsum("ij,jk,jl->ikl", at, g, bt) - (l == i + k))
    assert resid.max() <= 1e-12
    eps, n = np.finfo(float).eps, 2 * al + r
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(5):
        gv, d = rng.standard_normal(r), rng.standard_normal(al)
        want = np.array([d[i:i + r] @ gv for i in range(m)])
        sums = abs(at) @ ((abs(g) @ abs(gv)) * (abs(bt) @ abs(d))) + \
            np.array([abs(d[i:i + r]) @ abs(gv) for i in range(m)])
        bound = np.einsum("k,ikl,l->i", abs(gv), resid, abs(d)) + 2 * n * eps * sums
        assert np.all(abs(at @ ((g @ gv) * (bt @ d)) - want) <= bound)


@pytest.mark.parametrize("m", [2, 4])
def test_w4_float32_error(m):
    """The float32 error stated in the module docstring, on W4's geometry (batch 8)."""
    check(8, 64, 128, 14, 14, 3, 1, 1, m, np.float32, seed=5)


@pytest.mark.parametrize("m", [2, 4])
def test_d2_float32_error(m):
    """The same on D2's geometry (W2's 4x4/s2 conv, batch 8), through ``winograd_s2``."""
    check(8, 64, 128, 14, 14, 4, 2, 1, m, np.float32, seed=5)


def test_f22_unrolled_transforms_are_matrices_2_2():
    """``winograd_s2``'s hard-coded transforms (its docstring) are ``matrices(2, 2)``'s."""
    at, g, bt = winograd.matrices(2, 2)
    for got, want in ((bt, [[-1, 1, 0], [0, 1, 0], [0, -1, 1]]), (g, [[-1, 0], [1, 1], [0, 1]]),
                      (at, [[1, 1, 0], [0, 1, 1]])):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)  # B^T from lstsq


def test_f42_unrolled_transforms_are_matrices_4_2():
    """``winograd_s2``'s F(4x4, 2x2) transforms (the comment above ``_bt5``) apply
    ``matrices(4, 2)``: B^T, A^T, A (gradient tiles), G and G^T (weight gradient)."""
    from scratchgen.kernels.cpu import winograd_s2 as s2
    at, g, bt = winograd.matrices(4, 2)
    rng = np.random.default_rng(42)
    for fn, mat in ((s2._bt5, bt), (s2._at5, at), (s2._a4, at.T), (s2._g2, g), (s2._gt5, g.T)):
        d = rng.standard_normal(mat.shape[1])
        np.testing.assert_allclose(fn(tuple(d)), mat @ d, rtol=0, atol=1e-13)


def test_f43_unrolled_transforms_are_matrices_4_3():
    """``winograd_f43``'s transforms (its docstring) apply ``matrices(4, 3)``: B^T, A^T, A
    (gradient tiles), G and G^T (weight gradient)."""
    from scratchgen.kernels.cpu import winograd_f43 as f43
    at, g, bt = winograd.matrices(4, 3)
    rng = np.random.default_rng(43)
    for fn, mat in ((f43._bt6, bt), (f43._at6, at), (f43._a6, at.T), (f43._g3, g),
                    (f43._gt6, g.T)):
        d = rng.standard_normal(mat.shape[1])
        np.testing.assert_allclose(fn(tuple(d)), mat @ d, rtol=0, atol=1e-13)


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 3), st.integers(1, 20), st.integers(1, 20), st.integers(1, 9),
       st.integers(1, 9), st.sampled_from([(3, 2, 2), (4, 2, 2), (3, 2, 4), (4, 2, 4),
                                           (3, 1, 4)]),
       st.integers(0, 3), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**32 - 1))
def test_channel_last_routes_with_many_channels(n, c, o, h, wd, ksm, p, dtype, seed):
    """The channel-last kernels (``winograd_s2``: F(2x2, 2x2) and F(4x4, 2x2);
    ``winograd_f43``: F(4x4, 3x3)) on channel counts past a vector's width (the transforms'
    inner loops run over channels, or over O for the forward's filters) and padding up to 3
    (past k - 1 for 3x3: the input gradient's gy is cropped)."""
    k, s, m = ksm
    if h + 2 * p < k or wd + 2 * p < k:
        return
    check(n, c, o, h, wd, k, s, p, m, dtype, seed)


def test_routes_by_geometry():
    def picks(c, o, k, s, hw, pass_="forward"):
        ho = (hw + 2 - k) // s + 1
        r = routes.route(routes.ConvGeometry(64, c, hw, hw, o, k, k, ho, ho, (s, s), (1, 1)),
                         pass_)
        return r.algorithm, r.tile
    for pass_ in routes.PASSES:                                    # one table for all three
        assert picks(64, 128, 3, 1, 14, pass_) == ("winograd_f43", 4)  # W4: 16 x 36 < 49 x 16
        assert picks(64, 128, 4, 2, 14, pass_) == ("winograd_s2", 4)   # D2: 4 x 25 < 16 x 9
    assert picks(64, 128, 3, 1, 2) == ("winograd", 2)      # 2x2 outputs: 1 x 16 < 1 x 36
    assert picks(64, 128, 3, 1, 5) == ("winograd", 2)      # 9 x 16 = 4 x 36: the more accurate
    assert picks(64, 128, 4, 2, 12) == ("winograd_s2", 2)  # 6x6 outputs: 9 x 9 < 4 x 25
    assert picks(1, 64, 4, 2, 28) == ("im2col", 0)         # D1: too few channels
    assert picks(15, 64, 3, 1, 14) == ("im2col", 0)
    assert picks(64, 128, 3, 2, 14) == ("im2col", 0)       # not in the table
    g = routes.ConvGeometry(64, 64, 14, 12, 128, 3, 5, 14, 10, (1, 1), (1, 1))
    assert routes.route(g, "forward").algorithm == "im2col"  # non-square
    assert routes.winograd_algorithm(3, 1, 4) == "winograd_f43"
    assert routes.winograd_algorithm(3, 1, 2) == "winograd"
    assert routes.winograd_algorithm(4, 2, 2) == routes.winograd_algorithm(3, 2, 4) == \
        "winograd_s2"
    assert routes.winograd_algorithm(4, 2, 3) == "winograd"  # generic loops


def test_im2col_layout_and_chunks_by_geometry():
    def route(c, k, s, hw, pass_):
        ho = (hw + 2 - k) // s + 1
        return routes.route(routes.ConvGeometry(64, c, hw, hw, 64, k, k, ho, ho, (s, s),
                                                (1, 1)), pass_)
    d1 = route(1, 4, 2, 28, "forward")                  # K = 16 <= SMALL_K: per sample
    assert d1.per_sample and len(d1.chunks(64, 196)) > 1
    assert route(1, 4, 2, 28, "weight_grad").per_sample
    assert not route(1, 4, 2, 28, "input_grad").per_sample  # its columns are per sample anyway
    d2 = route(8, 4, 2, 14, "forward")                  # K = 128: joint, split too (under load)
    assert not d2.per_sample and len(d2.chunks(64, 49)) > 1
    with mock.patch.object(routes, "SPLIT_MAX_K", 127):
        assert route(8, 4, 2, 14, "forward").chunks(64, 49) == [(0, 64)]


def test_force_is_checked_scoped_and_restored():
    g = routes.ConvGeometry(8, 64, 14, 14, 128, 3, 3, 14, 14, (1, 1), (1, 1))
    with routes.force("im2col", passes=("weight_grad",)):
        assert [routes.route(g, p).algorithm for p in routes.PASSES] == \
            ["winograd_f43", "winograd_f43", "im2col"]
        with routes.force("winograd", tile=3):
            assert {routes.route(g, p).tile for p in routes.PASSES} == {3}
        assert routes.route(g, "weight_grad").algorithm == "im2col"
    assert routes.route(g, "weight_grad").algorithm == "winograd_f43"
    with routes.force("winograd_s2", tile=4), pytest.raises(ValueError, match="cannot run"):
        routes.route(g, "forward")  # a 3x3 stride-1 conv
    for bad in (lambda: routes.force("fft"), lambda: routes.force("winograd"),
                lambda: routes.force("im2col", passes=("backward",))):
        with pytest.raises(ValueError):
            with bad():
                pass


def test_blas_thread_count_is_restored():
    """The kernels set OpenBLAS to one thread only while they run."""
    from threadpoolctl import threadpool_info
    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    x = np.ones((4, 16, 6, 6), np.float32)
    cpu.conv2d(x, np.ones((16, 16, 3, 3), np.float32), (1, 1), (1, 1))
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == before


def test_shared_work_item_runs_once_before_its_users():
    """``parallel_chunks_after``: prep runs once, every chunk runs once and sees its result;
    a failing prep raises its own error in the caller, without a hang."""
    import threading
    from scratchgen.kernels.cpu.parallel import parallel_chunks_after
    calls, seen, lock = [], [], threading.Lock()

    def prep():
        calls.append(1)
        return "U"

    def fn(n0, n1, get):
        with lock:
            seen.append((n0, n1, get()))

    chunks = [(0, 3), (3, 5), (5, 8), (8, 9)]
    parallel_chunks_after(prep, fn, chunks)
    assert calls == [1] and sorted(seen) == [(a, b, "U") for a, b in chunks]

    def bad():
        raise ValueError("filter transform failed")

    with pytest.raises(ValueError, match="filter transform failed"):
        parallel_chunks_after(bad, fn, chunks)


def test_chunks_cover_the_batch_once():
    from scratchgen.kernels.cpu.parallel import batch_chunks, n_threads
    for n, t, target in [(1, 49, 512), (64, 49, 512), (64, 49, 1024), (7, 1000, 512),
                         (5, 1, 512)]:
        ch = batch_chunks(n, t, target)
        assert ch[0][0] == 0 and ch[-1][1] == n
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(ch, ch[1:]))
        sizes = [b - a for a, b in ch]
        assert max(sizes) - min(sizes) <= 1
        assert len(ch) == n or len(ch) % n_threads() == 0
    from scratchgen.kernels.cpu.parallel import halves
    for n in (1, 2, 5, 128):
        hv = halves(n)
        assert hv[0][0] == 0 and hv[-1][1] == n and len(hv) == min(n, n_threads())
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(hv, hv[1:]))


@st.composite
def f23_case(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    h, wd = draw(st.integers(1, 13)), draw(st.integers(1, 13))
    pt, pl = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    th, tw = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    return n, c, h, wd, pt, pl, th, tw, draw(st.sampled_from([np.float32, np.float64])), \
        draw(st.integers(0, 2**32 - 1))


@settings(deadline=None, max_examples=60)
@given(f23_case())
def test_unrolled_f23_transforms_match_the_generic_ones(case):
    """``_x_tiles_f23`` (input tiles, padded), ``_gy_tiles_f23`` and ``_out_f23`` compute the
    generic transforms with ``matrices(2, 3)`` on any geometry, tiles past the plane included."""
    n, c, h, wd, pt, pl, th, tw, dt, seed = case
    at, _, bt = (a.astype(dt) for a in winograd.matrices(2, 3))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + 1, c, h, wd)).astype(dt)
    n0, n1, k = 1, n + 1, n * th * tw  # a chunk that does not start at sample 0
    tol = 1e-5 if dt == np.float32 else 1e-13
    xf = x.reshape(-1)
    tiles = {False: lambda *v: winograd._x_tiles_f23(xf, n0, n1, c, h, wd, pt, pl, th, tw, *v),
             True: lambda *v: winograd._gy_tiles_f23(xf, n0, n1, c, h, wd, th, tw, *v)}
    for is_gy, (p, q), mat in ((False, (pt, pl), bt), (True, (0, 0), np.ascontiguousarray(at.T))):
        want = np.full((16, c, k), np.nan, dt)
        got, buf, es = winograd.planes(16, c, k, dt)  # planes padded apart, as in the route
        got[:] = np.nan
        winograd._tile_transform(xf, n0, n1, c, h, wd, 1, p, q, th, tw, 2, mat, want.reshape(-1))
        tiles[is_gy](buf, es)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    mm, buf, es = winograd.planes(16, c, k, dt)
    mm[:] = rng.standard_normal((16, c, k))
    hy, wy = 2 * th - (seed % 2), 2 * tw - (seed // 2 % 2)  # odd sizes: the last tile cut
    want, got = np.full((2, n + 1, c, hy, wy), np.nan, dt)
    winograd._out_transform(np.ascontiguousarray(mm).reshape(-1), n0, n1, c, 1, th, tw, at,
                            want.reshape(-1), hy, wy, 0, 0)
    winograd._out_f23(buf, es, n0, n1, c, th, tw, got.reshape(-1), hy, wy)
    np.testing.assert_allclose(got[n0:], want[n0:], rtol=tol, atol=tol)
    assert np.isnan(got[0]).all()  # nothing outside the chunk written


@pytest.mark.parametrize("k, s, m", [(3, 1, 4), (3, 1, 2), (4, 2, 4), (4, 2, 2)])
@pytest.mark.slow
def test_gradchecks_through_the_winograd_routes(k, s, m):
    """conv2d's and conv_transpose2d's first and second derivatives against central
    differences (float64), the route forced to F(m x m, .): on the cpu backend the VJPs (and
    their VJPs) run through the Winograd kernels, which is asserted."""
    import scratchgen as sg
    from scratchgen import backend as B
    import scratchgen.functional as F
    rng = np.random.default_rng(k * 10 + m)
    x = sg.tensor(rng.standard_normal((2, 3, 6, 5)), requires_grad=True)
    w = sg.tensor(rng.standard_normal((2, 3, k, k)), requires_grad=True)
    wt = sg.tensor(rng.standard_normal((3, 2, k, k)), requires_grad=True)
    b = sg.tensor(rng.standard_normal(2), requires_grad=True)
    spied = routes.algorithm(routes.winograd_algorithm(k, s, m))
    calls, planes = [], winograd.planes
    with route(k, s, m), mock.patch.object(spied, "planes", side_effect=lambda *a: (
            calls.append(a), planes(*a))[1]):
        assert sg.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=s, padding=1), (x, w, b))
        assert sg.gradgradcheck(lambda x, w: F.conv2d(x, w, stride=s, padding=1), (x, w))
        assert sg.gradgradcheck(lambda x, w: F.conv_transpose2d(x, w, stride=s, padding=1),
                                (x, wt))
    assert bool(calls) == (B.name == "cpu")
