"""The numba/BLAS ``cpu`` conv kernels agree with the pure-NumPy ``reference`` kernels.

Tolerance: ``rtol=1e-5`` and ``atol=1e-5 * scale`` (float64) with ``scale`` the largest
|reference value|. float32 uses ``3e-5``: both sides sum up to C*kh*kw (forward, input
grad) or N*Ho*Wo (weight grad) float32 products in different orders (BLAS blocking vs
tensordot), so their rounding differs by a few ulps of the largest partial sums; the
absolute term relative to ``scale`` is what makes cancellation-heavy entries comparable.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scratchgen.kernels import cpu, reference

TOL = {np.float32: 3e-5, np.float64: 1e-5}


def close(got, want, dtype):
    assert got.shape == want.shape
    assert got.dtype == np.dtype(dtype)
    scale = max(float(np.abs(want).max()) if want.size else 0.0, 1e-30)
    tol = TOL[dtype]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


def non_contiguous(a, how):
    """The same values in a non-C-contiguous array: 0 as is, 1 strided, 2 Fortran order."""
    if how == 1:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if how == 2:
        return np.asfortranarray(a)
    return a


@st.composite
def conv_case(draw):
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 4))
    o = draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    # only valid shapes: H + 2p >= k
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    layout = draw(st.integers(0, 2))
    seed = draw(st.integers(0, 2**32 - 1))
    return n, c, o, h, w, (kh, kw), (sh, sw), (ph, pw), dtype, layout, seed


def run_all(n, c, o, h, w, k, s, p, dtype, layout=0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c) + tuple(k)).astype(dtype)
    y = reference.conv2d(x, wt, s, p)
    gy = rng.standard_normal(y.shape).astype(dtype)
    xn, wn, gyn = (non_contiguous(a, layout) for a in (x, wt, gy))

    close(cpu.conv2d(xn, wn, s, p), y, dtype)
    close(cpu.conv2d_input_grad(gyn, wn, (h, w), s, p),
          reference.conv2d_input_grad(gy, wt, (h, w), s, p), dtype)
    close(cpu.conv2d_weight_grad(xn, gyn, k, s, p),
          reference.conv2d_weight_grad(x, gy, k, s, p), dtype)


def test_exports():
    for name in ("conv2d", "conv2d_input_grad", "conv2d_weight_grad", "out_size", "matmul"):
        assert callable(getattr(cpu, name))
    for args in [(14, 3, 1, 1), (28, 4, 2, 1), (7, 4, 2, 1), (5, 5, 3, 2)]:
        assert cpu.out_size(*args) == reference.out_size(*args)


@settings(deadline=None, max_examples=60)
@given(conv_case())
def test_matches_reference(case):
    run_all(*case)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_and_large_padding(dtype):
    run_all(2, 3, 4, 5, 6, (1, 1), (1, 1), (0, 0), dtype)  # 1x1 fast path
    run_all(2, 3, 4, 5, 6, (1, 1), (2, 1), (0, 0), dtype)  # 1x1 strided
    run_all(1, 2, 3, 4, 3, (7, 6), (1, 2), (4, 3), dtype)  # padding > kernel / 2
    run_all(1, 1, 1, 1, 1, (1, 1), (3, 3), (0, 0), dtype)


def test_uncovered_positions_get_zero():
    # H=8, k=3, s=3, p=0 -> Ho=2 windows cover rows 0..5; rows 6, 7 get zero gradient
    rng = np.random.default_rng(1)
    gy = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    gx = cpu.conv2d_input_grad(gy, w, (8, 8), (3, 3), (0, 0))
    assert gx.shape == (2, 2, 8, 8)
    assert not gx[:, :, 6:].any() and not gx[:, :, :, 6:].any()
    close(gx, reference.conv2d_input_grad(gy, w, (8, 8), (3, 3), (0, 0)), np.float32)


def test_dtype_and_contiguity_of_outputs():
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    y = cpu.conv2d(x, w, (1, 1), (1, 1))
    assert y.dtype == np.float32 and y.flags.c_contiguous
    gx = cpu.conv2d_input_grad(y, w, (5, 5), (1, 1), (1, 1))
    assert gx.dtype == np.float32 and gx.flags.c_contiguous
    gw = cpu.conv2d_weight_grad(x, y, (3, 3), (1, 1), (1, 1))
    assert gw.dtype == np.float32 and gw.shape == w.shape


# The workloads the backend is tuned for (float32, batch 64), once each.
WORKLOADS = {
    "W4 conv 64->128 3x3 s1 p1": (64, 64, 128, 14, 14, (3, 3), (1, 1), (1, 1)),
    "W2 D1 / G2 conv 1->64 4x4 s2 p1": (64, 1, 64, 28, 28, (4, 4), (2, 2), (1, 1)),
    "W2 D2 / G1 conv 64->128 4x4 s2 p1": (64, 64, 128, 14, 14, (4, 4), (2, 2), (1, 1)),
}


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workload_shapes(name):
    run_all(*WORKLOADS[name], np.float32, layout=0, seed=2)


def test_conv_transpose_usage_w2():
    """G1: ConvTranspose2d(128->64, 4, 2, 1) on (64,128,7,7), written with the kernels."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 128, 7, 7)).astype(np.float32)
    w = rng.standard_normal((128, 64, 4, 4)).astype(np.float32)
    s, p = (2, 2), (1, 1)
    y = cpu.conv2d_input_grad(x, w, (14, 14), s, p)
    close(y, reference.conv2d_input_grad(x, w, (14, 14), s, p), np.float32)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    close(cpu.conv2d(gy, w, s, p), reference.conv2d(gy, w, s, p), np.float32)
    close(cpu.conv2d_weight_grad(gy, x, (4, 4), s, p),
          reference.conv2d_weight_grad(gy, x, (4, 4), s, p), np.float32)


@settings(deadline=None, max_examples=40)
@given(conv_case())
def test_im2col_row_kernels_copy_exactly(case):
    """Both im2col variants (row loop, per-tap table), in both layouts ((K, N*P) and per
    sample (N, K, P)), equal the reference's window view bit for bit: they are copies, only
    the loop order differs."""
    from scratchgen.kernels.cpu import im2col
    n, c, _, h, w, (kh, kw), (sh, sw), (ph, pw), dtype, _, seed = case
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype)
    win = reference._windows(x, (kh, kw), (sh, sw), (ph, pw))  # (N, C, Ho, Wo, kh, kw)
    ho, wo = win.shape[2:4]
    k, p = c * kh * kw, ho * wo
    joint = win.transpose(1, 4, 5, 0, 2, 3).reshape(k, n * p)
    per_sample = win.transpose(0, 1, 4, 5, 2, 3).reshape(n, k, p)
    for want, rs, ns in ((joint, n * p, p), (per_sample, p, k * p)):
        for fn in (im2col._im2col_rows, im2col._im2col_rows_table):
            got = np.full(want.shape, np.nan, dtype)
            fn(x.reshape(-1), n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo, got.reshape(-1),
               rs, ns, 0, k)
            np.testing.assert_array_equal(got, want)


@settings(deadline=None, max_examples=40)
@given(conv_case())
def test_both_im2col_layouts_match_reference(case):
    """The forward and weight gradient through the per-sample (N, K, P) layout and through
    the joint (K, N*P) one, each forced on every geometry (the route picks by ``SMALL_K``)."""
    from scratchgen.kernels.cpu import routes
    for per_sample in (False, True):
        with routes.force("im2col", per_sample=per_sample):
            run_all(*case)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wd, amsgrad", [(0.0, False), (0.1, False), (0.01, True)])
def test_adam_update_matches_reference(dtype, wd, amsgrad):
    """Fused Adam == the NumPy reference over several steps (same operations, same order)."""
    rng = np.random.default_rng(3)
    shape = (37, 53)  # odd sizes: no whole-vector tail assumptions
    lr, b1, b2, eps = 1e-2, 0.5, 0.9, 1e-8
    p0 = rng.standard_normal(shape).astype(dtype)
    state = {name: [p0.copy()] + [np.zeros(shape, dtype) for _ in range(3)]
             for name in ("cpu", "ref")}
    for t in range(1, 6):
        g = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 2, shape)).astype(dtype)
        for name, kern in (("cpu", cpu), ("ref", reference)):
            p, m, v, vmax = state[name]
            kern.adam_update(p, g, m, v, lr, b1, b2, eps, wd, 1 - b1 ** t, 1 - b2 ** t,
                             v_max=vmax if amsgrad else None)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    for got, want in zip(state["cpu"], state["ref"]):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=0)
    assert not np.allclose(state["cpu"][0], p0)  # the parameters did move
    g = np.zeros(shape, dtype)
    with pytest.raises(ValueError, match="v must be C-contiguous"):
        cpu.adam_update(p0, g, g.copy(), np.zeros((53, 37), dtype).T, lr, b1, b2, eps, wd, 1, 1)


@pytest.mark.parametrize("algorithm, tile, c, o, k, s, hw, n, dtype", [
    ("im2col", 0, 1, 64, 4, 2, 28, 64, np.float32),  # K = 16 <= SMALL_K: per-sample layout
    ("im2col", 0, 8, 16, 3, 1, 14, 16, np.float32),  # joint (K, N*P) GEMM
    ("winograd_f43", 4, 16, 16, 3, 1, 14, 16, np.float64),
    ("winograd_s2", 2, 16, 16, 4, 2, 14, 64, np.float64)])
def test_weight_grad_sums_chunks_in_chunk_order_when_they_finish_out_of_order(
        algorithm, tile, c, o, k, s, hw, n, dtype):
    """The batch's first chunk is held back until every other chunk has finished (two
    threads, >= 3 chunks), and the weight gradient is still the in-order sum's bits:
    (p0 + p1) + p2 != (p1 + p2) + p0 in floating point, so a sum in completion order fails."""
    import threading
    from unittest import mock
    from scratchgen.kernels.cpu import parallel, routes
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, hw, hw)).astype(dtype)
    ho = (hw + 2 - k) // s + 1
    gy = rng.standard_normal((n, o, ho, ho)).astype(dtype)
    module = routes.algorithm(algorithm)
    orders = []  # per parallel_chunks call: the chunks' starts in the order they finished

    def in_order(fn, chunks):  # the reference: chunk after chunk, BLAS on one thread as split
        with parallel.one_blas_thread():
            for ch in chunks:
                fn(*ch)

    def first_last(fn, chunks):
        finished, rest_done = [], threading.Event()
        orders.append(finished)

        def held(n0, n1):
            if n0 == chunks[0][0]:
                assert rest_done.wait(60), "the other chunks never finished"
            fn(n0, n1)
            finished.append(n0)
            if len(finished) == len(chunks) - 1:
                rest_done.set()
        parallel.parallel_chunks(held, chunks)

    with mock.patch.object(parallel, "n_threads", lambda: 2), routes.force(algorithm, tile):
        with mock.patch.object(module, "parallel_chunks", in_order):
            want = cpu.conv2d_weight_grad(x, gy, (k, k), s, 1)
        with mock.patch.object(module, "parallel_chunks", first_last):
            got = cpu.conv2d_weight_grad(x, gy, (k, k), s, 1)
    assert len(orders[0]) >= 3 and orders[0][-1] == 0 and orders[0] != sorted(orders[0])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shapes", [((5, 3), (3, 4)), ((256, 128), (128, 128)),
                                    ((512, 512), (512, 128)), ((2, 7, 3), (3, 5)),
                                    ((4, 1, 6, 2), (3, 2, 7)), ((6, 0), (0, 2)),
                                    ((3, 256, 300), (300, 200)),
                                    ((2, 1, 200, 300), (4, 300, 100))])
def test_matmul_runs_every_gemm_on_one_blas_thread(shapes):
    """Below ``SPLIT_FLOPS`` one GEMM, above it one per core in row or column blocks
    (``linalg.blocks``), each with OpenBLAS at one thread (restored after). The bits are those
    of one-thread GEMMs over the blocks the shape fixes (what the code promises, whatever the
    load or OPENBLAS_NUM_THREADS); against NumPy's own product only float32's error bound
    (another kernel, another summation order)."""
    from unittest import mock
    from threadpoolctl import threadpool_limits
    from scratchgen.kernels.cpu import linalg, parallel
    # the BLAS libraries loaded when the kernels first ran, NumPy's among them (numba may
    # load SciPy's later, at its first compilation; NumPy never calls that one)
    blas = lambda: [lc.num_threads for lc in parallel._blas().lib_controllers]
    before = blas()
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in shapes)
    real, seen = np.matmul, []
    with mock.patch.object(linalg.np, "matmul",
                           side_effect=lambda *x, **kw: (seen.append(blas()), real(*x, **kw))[1]):
        got = linalg.matmul(a, b)
    m, k = a.shape[-2], a.shape[-1]
    want = np.matmul(a, b)
    assert got.shape == want.shape and got.dtype == want.dtype
    bound = 2 * k * np.finfo(np.float32).eps * np.matmul(abs(a), abs(b), dtype=np.float64)
    assert np.all(abs(got.astype(np.float64) - want) <= bound)
    axis, blocks = linalg.blocks(a, b)
    split = (2 * want.size * k >= linalg.SPLIT_FLOPS and parallel.n_threads() >= 2
             and max(m, b.shape[-1]) >= 2 * linalg.MIN_BLOCK)
    assert (blocks is not None) == split
    blocks = blocks or [(0, m)]
    with threadpool_limits(1, user_api="blas"):
        ref = np.concatenate([np.matmul(a[..., r0:r1, :], b) if axis == -2 else
                              np.matmul(a, b[..., r0:r1]) for r0, r1 in blocks], axis=axis)
    np.testing.assert_array_equal(got, ref)
    assert len(seen) == len(blocks)
    assert seen == [[1] * len(before)] * len(seen)
    assert blas() == before


@pytest.mark.parametrize("shapes", [((64, 1), (1, 6272)), ((3, 5, 1), (1, 4)),
                                    ((2, 1, 7, 1), (3, 1, 2)), ((4, 1), (2, 1, 3)),
                                    ((0, 1), (1, 3))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_outer_products_are_numpys_bits(shapes, dtype):
    """K = 1 products (a broadcast multiply, not OpenBLAS's slow GEMM) keep matmul's shapes,
    batch broadcasting, dtype and bits."""
    from scratchgen.kernels.cpu import linalg
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal(s).astype(dtype) for s in shapes)
    got, want = linalg.matmul(a, b), np.matmul(a, b)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_malloc_keeps_freed_memory_unless_the_user_tuned_it():
    """Loading the cpu kernels sets glibc's thresholds (``memory.py``); a ``MALLOC_*_``
    variable in the environment, or another libc, leaves malloc alone."""
    import os
    import platform
    from scratchgen.kernels.cpu import memory
    assert memory.keep_freed_memory({"MALLOC_TOP_PAD_": "0"}) == {}
    assert memory._glibc() == (platform.libc_ver()[0] == "glibc")
    if memory._glibc() and not any(v in os.environ for v in memory._USER_VARS):
        assert memory.APPLIED == {"mmap_threshold": memory.MMAP_THRESHOLD,
                                  "trim_threshold": memory.TRIM, "top_pad": memory.TOP_PAD}
    else:
        assert memory.APPLIED == {}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_copies_zero_and_negative_stride_operands_for_blas(dtype):
    """NumPy sends a matrix with a zero or negative stride to its own loop, not BLAS (a
    broadcast gradient's 1 x 256 @ 256 x 512 took 209 us against 9 us copied): the kernel
    copies such operands, and the values stay matmul's."""
    from unittest import mock
    from scratchgen.kernels.cpu import linalg
    rng = np.random.default_rng(2)
    h = rng.standard_normal((256, 512)).astype(dtype)
    cases = [(np.broadcast_to(dtype(0.5), (1, 256)), h),                  # zero strides
             (rng.standard_normal((300, 256)).astype(dtype)[::-1], h),    # negative row stride
             (h.T, np.broadcast_to(rng.standard_normal(1).astype(dtype), (256, 3))),
             (np.broadcast_to(h[:4], (3, 4, 512)), h.T)]                  # batch broadcast only
    real = np.matmul
    for a, b in cases:
        seen = []
        with mock.patch.object(linalg.np, "matmul",
                               side_effect=lambda *x, **kw: (seen.append(x), real(*x, **kw))[1]):
            got = linalg.matmul(a, b)
        assert all(min(m.strides[-2:]) > 0 for m in seen[0])
        want = real(np.ascontiguousarray(a), np.ascontiguousarray(b))
        close(got, want, dtype)


def _bits(a):
    a = np.asarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.integers(1, 6), min_size=0, max_size=3), st.sampled_from([np.float32, np.float64]),
       st.integers(0, 2), st.sampled_from([0.0, 0.01, 0.2, 1 / 3, 1.0]), st.integers(0, 2**32 - 1))
def test_relu_kernels_are_the_references_bits(shape, dtype, layout, slope, seed):
    """cpu.relu / leaky_relu / relu_grad against reference's NumPy expressions, bit for bit (the
    sign of zero included), with NaN, +-inf and -0 in every operand, any layout, 0-d too."""
    rng = np.random.default_rng(seed)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-30, -1e-30], dtype)

    def draw():
        a = rng.standard_normal(shape).astype(dtype)
        if a.ndim:
            a.flat[rng.integers(0, a.size, 3)] = rng.choice(special, 3)
        return non_contiguous(a, layout) if a.ndim else a

    a, g = draw(), draw()
    with np.errstate(invalid="ignore"):  # inf * 0
        for name, args in (("relu", (a,)), ("leaky_relu", (a, slope)),
                           ("relu_grad", (g, reference.relu(a))), ("relu_grad", (g, a, slope))):
            got, want = getattr(cpu, name)(*args), getattr(reference, name)(*args)
            assert got.dtype == want.dtype and got.shape == want.shape, name
            np.testing.assert_array_equal(_bits(got), _bits(want), err_msg=name)


@settings(deadline=None, max_examples=40)
@given(st.tuples(st.integers(1, 5), st.integers(1, 9), st.integers(1, 8), st.integers(1, 8)),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2), st.integers(0, 2**32 - 1))
def test_conv_bias_kernels_match_the_reference(shape, dtype, layout, seed):
    """channel_bias is NumPy's broadcast add, bit for bit; channel_sum (a matrix-vector product
    then a sum over N) agrees with NumPy's reduction to float rounding; any layout."""
    rng = np.random.default_rng(seed)
    y = non_contiguous(rng.standard_normal(shape).astype(dtype), layout)
    b = rng.standard_normal(shape[1]).astype(dtype)
    got, want = cpu.channel_bias(y, b), reference.channel_bias(y, b)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    got, want = cpu.channel_sum(y), reference.channel_sum(np.asarray(y, np.float64))
    assert got.dtype == np.dtype(dtype) and got.shape == (shape[1],)
    close(got, want.astype(dtype), dtype)
