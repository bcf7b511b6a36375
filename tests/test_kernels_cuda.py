"""Tests of the CUDA kernels (scratchgen.kernels.cuda) and of kernels/fused_reference.py.

Three tiers:

* always (CPU only): the ``.cu`` sources compile with nvcc (``tools/check_cuda_sources.sh``;
  skipped only where nvcc is absent and ``CI`` is unset), the module imports without
  CuPy, ``fused_reference`` against hand-computed values and finite differences, and the
  whole ``kernels/cuda`` orchestration run on NumPy through ``_emulator``: with the kernels
  as Python transliterations, and with the ``.cu`` sources compiled for the host by a C++
  compiler (skipped without one) -- both against ``kernels/reference.py``;
* GPU (skipped, with the reason, where CuPy or a CUDA device is missing): hypothesis
  property tests of the real kernels against the references.
"""
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
CUDA_DIR = KERNELS / "cuda"
CHECK_SCRIPT = ROOT / "tools" / "check_cuda_sources.sh"


def _load(dotted, relpath):
    """scratchgen.kernels.<dotted> if installed, else the file itself (a bare checkout)."""
    try:
        return importlib.import_module(f"scratchgen.kernels.{dotted}")
    except ImportError:
        pass
    name = "_sg_test_kernels_" + dotted.replace(".", "_")
    if name in sys.modules:
        return sys.modules[name]
    path = KERNELS / relpath
    kw = {"submodule_search_locations": [str(path.parent)]} if path.name == "__init__.py" else {}
    spec = importlib.util.spec_from_file_location(name, path, **kw)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


ref = _load("reference", "reference.py")
fref = _load("fused_reference", "fused_reference.py")
cuda = _load("cuda", "cuda/__init__.py")
emulator = _load("cuda._emulator", "cuda/_emulator.py")
host_build = _load("cuda._host_build", "cuda/_host_build.py")

ACTS = ("none", "relu", "leaky_relu", "tanh", "sigmoid")
RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def assert_close(got, want, dtype):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    rtol = RTOL[dtype]
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


# ------------------------------------------------------------------- conv case strategy

@st.composite
def conv_cases(draw):
    """Shapes over N 1-3, C 1-4, O 1-4, H/W 1-9, kernel 1-5, stride 1-3, padding 0-2."""
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)
    seed = draw(st.integers(0, 2**31 - 1))
    return (n, c, o, h, w, kh, kw, sh, sw, ph, pw, seed)


def make_conv_data(case, dtype):
    n, c, o, h, w, kh, kw, sh, sw, ph, pw, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c, kh, kw)).astype(dtype)
    ho, wo = ref.out_size(h, kh, sh, ph), ref.out_size(w, kw, sw, pw)
    gy = rng.standard_normal((n, o, ho, wo)).astype(dtype)
    return x, wt, gy, (sh, sw), (ph, pw)


def check_conv_against_reference(k, case, dtype, to_host=np.asarray, to_dev=np.asarray):
    """k: a kernels module (cuda, possibly emulated). Every result vs reference.py."""
    x, wt, gy, stride, padding = make_conv_data(case, dtype)
    kh, kw = wt.shape[2:]
    h, w = x.shape[2:]
    dx, dw, dgy = to_dev(x), to_dev(wt), to_dev(gy)
    y = k.conv2d(dx, dw, stride, padding)
    assert y.dtype == dtype
    assert_close(to_host(y), ref.conv2d(x, wt, stride, padding), dtype)
    gx = k.conv2d_input_grad(dgy, dw, (h, w), stride, padding)
    assert gx.dtype == dtype
    assert_close(to_host(gx), ref.conv2d_input_grad(gy, wt, (h, w), stride, padding), dtype)
    gw = k.conv2d_weight_grad(dx, dgy, (kh, kw), stride, padding)
    assert gw.dtype == dtype
    assert_close(to_host(gw), ref.conv2d_weight_grad(x, gy, (kh, kw), stride, padding), dtype)


# ======================================================================= always: sources

def test_cu_sources_compile_with_nvcc():
    """Every kernels/cuda/*.cu compiles with nvcc (no GPU needed)."""
    if shutil.which(os.environ.get("NVCC", "nvcc")) is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but nvcc is not on PATH: the CUDA sources cannot be checked")
        pytest.skip("nvcc not on PATH (and CI unset): cannot compile-check the CUDA sources")
    res = subprocess.run(["bash", str(CHECK_SCRIPT)], capture_output=True, text=True)
    assert res.returncode == 0, f"{CHECK_SCRIPT} failed:\n{res.stdout}\n{res.stderr}"
    for src in cuda.CU_SOURCES:
        assert f"ok   kernels/cuda/{src}" in res.stdout, res.stdout


def test_cu_sources_are_self_contained_and_export_every_kernel():
    names = sorted(p.name for p in CUDA_DIR.glob("*.cu"))
    assert names == sorted(cuda.CU_SOURCES)
    exported = set()
    for src in cuda.CU_SOURCES:
        text = (CUDA_DIR / src).read_text()
        assert not re.search(r"^\s*#\s*include", text, re.M), f"{src} has an #include"
        sigs = emulator.parse_signatures(str(CUDA_DIR / src))
        for ctype, suffix in (("float", "f32"), ("double", "f64")):
            assert re.search(rf"SG_\w+_INSTANTIATE\({ctype}, {suffix}\)", text)
            exported |= {f"{base}_{suffix}" for base in sigs}
    want = {f"{b}_{s}" for b in ("im2col", "col2im", "bias_act", "bias_act_grad")
            for s in ("f32", "f64")}
    assert want <= exported


def test_cuda_module_imports_without_cupy():
    """CI collects on CPU-only machines: the module must not import cupy at import time."""
    code = (
        "import sys, importlib.util\n"
        "sys.modules['cupy'] = None\n"  # any `import cupy` now raises ImportError
        f"spec = importlib.util.spec_from_file_location('sgcuda', {str(CUDA_DIR / '__init__.py')!r},"
        f" submodule_search_locations=[{str(CUDA_DIR)!r}])\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "assert m.out_size(7, 3, 2, 1) == 4\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


def test_out_size_matches_reference():
    for size in range(1, 10):
        for k in range(1, 6):
            for s in range(1, 4):
                for p in range(3):
                    assert cuda.out_size(size, k, s, p) == ref.out_size(size, k, s, p)


# ============================================================ always: fused_reference

def test_bias_act_hand_computed():
    y = np.array([[-2.0, 0.5]])
    b = np.array([1.0, -1.0])  # z = [[-1, -0.5]]
    np.testing.assert_allclose(fref.bias_act(y, b, "none"), [[-1.0, -0.5]])
    np.testing.assert_allclose(fref.bias_act(y, b, None), [[-1.0, -0.5]])
    np.testing.assert_allclose(fref.bias_act(y, b, "relu"), [[0.0, 0.0]])
    np.testing.assert_allclose(fref.bias_act(y, b, "leaky_relu", 0.1), [[-0.1, -0.05]])
    np.testing.assert_allclose(fref.bias_act(y, b, "leaky_relu"), [[-0.01, -0.005]])
    np.testing.assert_allclose(fref.bias_act(y, b, "tanh"), [[np.tanh(-1.0), np.tanh(-0.5)]])
    np.testing.assert_allclose(fref.bias_act(y, b, "sigmoid"),
                               [[1 / (1 + np.e), 1 / (1 + np.exp(0.5))]])
    y2 = np.array([[3.0, -0.25]])
    np.testing.assert_allclose(fref.bias_act(y2, None, "relu"), [[3.0, 0.0]])
    np.testing.assert_allclose(fref.bias_act(y2, None, "leaky_relu", 0.2), [[3.0, -0.05]])
    # NCHW: the bias is per channel (axis 1)
    out = fref.bias_act(np.zeros((2, 3, 2, 2)), np.array([1.0, 2.0, 3.0]), "none")
    for c in range(3):
        assert np.all(out[:, c] == c + 1)
    # extreme sigmoid inputs stay finite and exact-ish
    s = fref.bias_act(np.array([[-800.0, 800.0, -30.0]]), None, "sigmoid")
    np.testing.assert_allclose(s, [[0.0, 1.0, np.exp(-30.0) / (1 + np.exp(-30.0))]], rtol=1e-12)


def test_bias_act_keeps_dtype_and_returns_new_array():
    y = np.ones((2, 3), dtype=np.float32)
    for act in ACTS:
        out = fref.bias_act(y, np.zeros(3, dtype=np.float32), act)
        assert out.dtype == np.float32 and out is not y
        out2 = fref.bias_act(y, None, act)
        assert not np.shares_memory(out2, y)
    with pytest.raises(ValueError):
        fref.bias_act(y, np.zeros(3), "gelu")
    with pytest.raises(ValueError):
        fref.bias_act(y, np.zeros(4), "relu")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4, 3)])
def test_bias_act_grad_matches_finite_differences(act, shape):
    rng = np.random.default_rng(42)
    y = rng.standard_normal(shape)
    y = np.where(np.abs(y) < 0.05, 0.3, y)  # keep away from relu kinks (b = 0 below)
    b = np.zeros(shape[1])
    g = rng.standard_normal(shape)
    slope = 0.07

    def loss(yy, bb):
        return float(np.sum(g * fref.bias_act(yy, bb, act, slope)))

    out = fref.bias_act(y, b, act, slope)
    gin = fref.bias_act_grad(g, out, act, slope)
    eps = 1e-6
    num = np.zeros_like(y)
    for idx in np.ndindex(*shape):
        yp, ym = y.copy(), y.copy()
        yp[idx] += eps
        ym[idx] -= eps
        num[idx] = (loss(yp, b) - loss(ym, b)) / (2 * eps)
    np.testing.assert_allclose(gin, num, rtol=1e-6, atol=1e-8)
    # the bias gradient is the pre-activation gradient summed over all axes but 1
    axes = (0,) + tuple(range(2, len(shape)))
    numb = np.array([(loss(y, b + eps * e) - loss(y, b - eps * e)) / (2 * eps)
                     for e in np.eye(shape[1])])
    np.testing.assert_allclose(gin.sum(axis=axes), numb, rtol=1e-6, atol=1e-8)


def test_bias_act_grad_from_output_formulas():
    out = np.array([-0.5, 0.0, 0.25, 0.9])
    g = np.array([2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(fref.bias_act_grad(g, out, "relu"), [0, 0, 4, 5])
    np.testing.assert_allclose(fref.bias_act_grad(g, out, "leaky_relu", 0.1), [0.2, 0.3, 4, 5])
    np.testing.assert_allclose(fref.bias_act_grad(g, out, "tanh"), g * (1 - out**2))
    np.testing.assert_allclose(fref.bias_act_grad(g, out, "sigmoid"), g * out * (1 - out))
    np.testing.assert_allclose(fref.bias_act_grad(g, out, "none"), g)


def test_bce_with_logits_sum_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 7)) * 3
    t = rng.random((5, 7))
    p = 1 / (1 + np.exp(-x))
    naive = -np.sum(t * np.log(p) + (1 - t) * np.log(1 - p))
    np.testing.assert_allclose(fref.bce_with_logits_sum(x, t), naive, rtol=1e-10)
    # stable where the naive formula overflows / loses everything
    big = np.array([1000.0, -1000.0, 40.0])
    np.testing.assert_allclose(fref.bce_with_logits_sum(big, np.array([1.0, 0.0, 0.0])),
                               40.0 + np.log1p(np.exp(-40.0)), rtol=1e-12)
    np.testing.assert_allclose(fref.bce_with_logits_sum(np.array([-1000.0]), 1.0), 1000.0)
    assert fref.bce_with_logits_sum(x.astype(np.float32), t).dtype == np.float32
    # gradient wrt the logits is sigmoid(x) - t
    eps = 1e-6
    i = (2, 3)
    xp_, xm = x.copy(), x.copy()
    xp_[i] += eps
    xm[i] -= eps
    fd = (fref.bce_with_logits_sum(xp_, t) - fref.bce_with_logits_sum(xm, t)) / (2 * eps)
    np.testing.assert_allclose(fd, p[i] - t[i], rtol=1e-6)


def test_logsumexp_reference():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 4, 5))
    for axis in (None, 0, 1, -1, (0, 2)):
        want = np.log(np.sum(np.exp(a), axis=axis))
        np.testing.assert_allclose(fref.logsumexp(a, axis), want, rtol=1e-12)
        assert fref.logsumexp(a, axis, keepdims=True).shape == np.sum(
            a, axis=axis, keepdims=True).shape
    big = np.array([[1000.0, 1000.0], [-1000.0, -np.inf]])
    np.testing.assert_allclose(fref.logsumexp(big, 1), [1000.0 + np.log(2.0), -1000.0])
    assert fref.logsumexp(np.full((2, 3), -np.inf), 1).tolist() == [-np.inf, -np.inf]
    assert fref.logsumexp(a.astype(np.float32), 1).dtype == np.float32


# ============================================ always: cuda orchestration, emulated on NumPy

@pytest.fixture(scope="module")
def host_libs():
    """{source text: ctypes lib} of the .cu sources compiled for the host, or skip."""
    if host_build.find_cxx() is None:
        pytest.skip("no C++ compiler on PATH: cannot run the .cu sources on the host")
    src_dir = Path(cuda.SOURCE_DIR)  # the sources the module under test loads
    return {(src_dir / s).read_text(): host_build.build(str(src_dir / s))
            for s in cuda.CU_SOURCES}


def _emulated(mp, libs=None, block=None, max_blocks=None, max_cols=None):
    emulator.install(mp, cuda, libs)
    if block is not None:
        mp.setattr(cuda, "_BLOCK", block)
    if max_blocks is not None:
        mp.setattr(cuda, "_MAX_BLOCKS", max_blocks)
    if max_cols is not None:
        mp.setattr(cuda, "MAX_COLS_BYTES", max_cols)


def test_col2im_gather_index_map_python_simulation():
    """The gather's window ranges (i_lo..i_hi, p = hp - i*sh) against reference.py's
    scatter, exhaustively on small geometries, with the Python transliteration."""
    rng = np.random.default_rng(3)
    with pytest.MonkeyPatch.context() as mp:
        _emulated(mp)
        for h in range(1, 7):
            for k in range(1, 5):
                for s in range(1, 4):
                    for p in range(3):
                        if h + 2 * p < k:
                            continue
                        ho = ref.out_size(h, k, s, p)
                        wt = rng.standard_normal((2, 1, k, k))
                        gy = rng.standard_normal((1, 2, ho, ho))
                        got = cuda.conv2d_input_grad(gy, wt, (h, h), (s, s), (p, p))
                        want = ref.conv2d_input_grad(gy, wt, (h, h), (s, s), (p, p))
                        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(case=conv_cases(), dtype=st.sampled_from([np.float32, np.float64]))
def test_conv_emulated_python_matches_reference(case, dtype):
    with pytest.MonkeyPatch.context() as mp:
        _emulated(mp)
        check_conv_against_reference(cuda, case, dtype)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_cases(), dtype=st.sampled_from([np.float32, np.float64]))
def test_conv_host_compiled_cu_matches_reference(host_libs, case, dtype):
    # tiny launches so that the grid-stride loops take several turns
    with pytest.MonkeyPatch.context() as mp:
        _emulated(mp, host_libs, block=8, max_blocks=3)
        check_conv_against_reference(cuda, case, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_host_compiled_chunked_and_noncontiguous(host_libs, dtype):
    """Batch chunking (tiny MAX_COLS_BYTES), the 1x1 fast path and non-contiguous inputs."""
    rng = np.random.default_rng(5)
    with pytest.MonkeyPatch.context() as mp:
        _emulated(mp, host_libs, block=16, max_blocks=4, max_cols=300)
        for case in [(3, 2, 3, 6, 5, 3, 2, 2, 1, 1, 0, 1), (4, 3, 2, 5, 5, 1, 1, 1, 1, 0, 0, 2),
                     (2, 2, 2, 4, 7, 1, 1, 2, 1, 1, 0, 3)]:
            check_conv_against_reference(cuda, case, dtype)
        x = rng.standard_normal((3, 5, 6, 2)).astype(dtype).transpose(0, 3, 1, 2)  # (3,2,5,6)
        wt = rng.standard_normal((2, 3, 3, 2)).astype(dtype).transpose(1, 0, 2, 3)  # (3,2,3,2)
        assert not x.flags.c_contiguous and not wt.flags.c_contiguous
        y = cuda.conv2d(x, wt, (1, 2), (1, 1))
        assert_close(y, ref.conv2d(x, wt, (1, 2), (1, 1)), dtype)
        gy = rng.standard_normal(y.shape[::-1]).astype(dtype).T
        assert_close(cuda.conv2d_input_grad(gy, wt, (5, 6), (1, 2), (1, 1)),
                     ref.conv2d_input_grad(gy, wt, (5, 6), (1, 2), (1, 1)), dtype)
        assert_close(cuda.conv2d_weight_grad(x, gy, (3, 2), (1, 2), (1, 1)),
                     ref.conv2d_weight_grad(x, gy, (3, 2), (1, 2), (1, 1)), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ACTS)
def test_bias_act_host_compiled_matches_fused_reference(host_libs, dtype, act):
    rng = np.random.default_rng(7)
    with pytest.MonkeyPatch.context() as mp:
        _emulated(mp, host_libs, block=8, max_blocks=2)
        for shape in [(5, 3), (2, 3, 4, 5), (3, 2, 4)]:
            y = (rng.standard_normal(shape) * 4).astype(dtype)
            b = rng.standard_normal(shape[1]).astype(dtype)
            for bias in (b, None):
                out = cuda.bias_act(y, bias, act, 0.2)
                assert out.dtype == dtype
                assert_close(out, fref.bias_act(y, bias, act, 0.2), dtype)
            g = rng.standard_normal(shape).astype(dtype)
            gin = cuda.bias_act_grad(g, out, act, 0.2)
            assert gin.dtype == dtype
            assert_close(gin, fref.bias_act_grad(g, out, act, 0.2), dtype)


def test_reductions_emulated_match_fused_reference():
    rng = np.random.default_rng(9)
    with pytest.MonkeyPatch.context() as mp:
        _emulated(mp)
        for dtype in (np.float32, np.float64):
            x = (rng.standard_normal((4, 6)) * 20).astype(dtype)
            t = rng.random((4, 6)).astype(dtype)
            assert_close(cuda.bce_with_logits_sum(x, t), fref.bce_with_logits_sum(x, t), dtype)
            assert_close(cuda.bce_with_logits_sum(x, 1.0), fref.bce_with_logits_sum(x, 1.0),
                         dtype)
            for axis in (None, 0, 1, -1, (0, 1)):
                for keepdims in (False, True):
                    assert_close(cuda.logsumexp(x, axis, keepdims),
                                 fref.logsumexp(x, axis, keepdims), dtype)


def test_bad_arguments_raise_clear_errors():
    with pytest.MonkeyPatch.context() as mp:
        _emulated(mp)
        x = np.zeros((1, 2, 3, 3))
        with pytest.raises(ValueError, match="larger than the padded input"):
            cuda.conv2d(x, np.zeros((1, 2, 5, 5)), (1, 1), (0, 0))
        with pytest.raises(ValueError, match="channels"):
            cuda.conv2d(x, np.zeros((1, 3, 1, 1)), (1, 1), (0, 0))
        with pytest.raises(TypeError, match="float32 and float64"):
            cuda.conv2d(x.astype(np.int64), np.zeros((1, 2, 1, 1), np.int64), (1, 1), (0, 0))
        with pytest.raises(ValueError, match="unknown activation"):
            cuda.bias_act(np.zeros((2, 2)), None, "gelu")


# ================================================================== GPU: the real kernels

@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed: GPU kernel tests skipped")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver / no device
        pytest.skip(f"no usable CUDA GPU ({type(e).__name__}: {e}): GPU kernel tests skipped")
    if count == 0:
        pytest.skip("no CUDA GPU: GPU kernel tests skipped")
    return cupy


GPU_SETTINGS = settings(max_examples=30, deadline=None,
                        suppress_health_check=[HealthCheck.function_scoped_fixture])


@GPU_SETTINGS
@given(case=conv_cases(), dtype=st.sampled_from([np.float32, np.float64]))
def test_gpu_conv_matches_reference(cp, case, dtype):
    check_conv_against_reference(cuda, case, dtype, to_host=cp.asnumpy, to_dev=cp.asarray)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_conv_chunked_noncontiguous_and_deterministic(cp, dtype, monkeypatch):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 5, 6, 2)).astype(dtype).transpose(0, 3, 1, 2)
    wt = rng.standard_normal((2, 3, 3, 2)).astype(dtype).transpose(1, 0, 2, 3)
    dx, dw = cp.asarray(x), cp.asarray(wt)  # cp.asarray keeps the non-contiguous strides
    y = cuda.conv2d(dx, dw, (1, 2), (1, 1))
    assert_close(cp.asnumpy(y), ref.conv2d(x, wt, (1, 2), (1, 1)), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    dgy = cp.asarray(gy)
    gx1 = cuda.conv2d_input_grad(dgy, dw, (5, 6), (1, 2), (1, 1))
    gx2 = cuda.conv2d_input_grad(dgy, dw, (5, 6), (1, 2), (1, 1))
    assert cp.array_equal(gx1, gx2)  # the gather is deterministic
    assert_close(cp.asnumpy(gx1), ref.conv2d_input_grad(gy, wt, (5, 6), (1, 2), (1, 1)), dtype)
    monkeypatch.setattr(cuda, "MAX_COLS_BYTES", 300)  # force batch chunking
    assert_close(cp.asnumpy(cuda.conv2d(dx, dw, (1, 2), (1, 1))),
                 ref.conv2d(x, wt, (1, 2), (1, 1)), dtype)
    assert_close(cp.asnumpy(cuda.conv2d_input_grad(dgy, dw, (5, 6), (1, 2), (1, 1))),
                 ref.conv2d_input_grad(gy, wt, (5, 6), (1, 2), (1, 1)), dtype)
    assert_close(cp.asnumpy(cuda.conv2d_weight_grad(dx, dgy, (3, 2), (1, 2), (1, 1))),
                 ref.conv2d_weight_grad(x, gy, (3, 2), (1, 2), (1, 1)), dtype)


@GPU_SETTINGS
@given(shape=st.sampled_from([(1, 1), (7, 5), (3, 4, 5, 6), (2, 3, 1, 9), (4, 2, 3)]),
       act=st.sampled_from(ACTS + (None,)), use_bias=st.booleans(),
       slope=st.floats(0.0, 0.5), scale=st.sampled_from([1.0, 10.0, 100.0]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31 - 1))
def test_gpu_bias_act_matches_fused_reference(cp, shape, act, use_bias, slope, scale, dtype,
                                              seed):
    rng = np.random.default_rng(seed)
    y = (rng.standard_normal(shape) * scale).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype) if use_bias else None
    out = cuda.bias_act(cp.asarray(y), None if b is None else cp.asarray(b), act, slope)
    assert out.dtype == dtype and out.shape == y.shape
    want = fref.bias_act(y, b, act, slope)
    assert_close(cp.asnumpy(out), want, dtype)
    g = rng.standard_normal(shape).astype(dtype)
    gin = cuda.bias_act_grad(cp.asarray(g), cp.asarray(want), act, slope)
    assert gin.dtype == dtype
    assert_close(cp.asnumpy(gin), fref.bias_act_grad(g, want, act, slope), dtype)


@GPU_SETTINGS
@given(shape=st.sampled_from([(1,), (8,), (4, 6), (3, 5, 7), (257, 3)]),
       scale=st.sampled_from([1.0, 10.0, 200.0]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31 - 1))
def test_gpu_losses_reductions_match_fused_reference(cp, shape, scale, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    t = rng.random(shape).astype(dtype)
    got = cuda.bce_with_logits_sum(cp.asarray(x), cp.asarray(t))
    assert got.dtype == dtype and got.shape == ()
    assert_close(cp.asnumpy(got), fref.bce_with_logits_sum(x, t), dtype)
    assert_close(cp.asnumpy(cuda.bce_with_logits_sum(cp.asarray(x), 1.0)),
                 fref.bce_with_logits_sum(x, 1.0), dtype)
    axes = [None] + list(range(len(shape))) + [-1]
    for axis in axes:
        for keepdims in (False, True):
            got = cuda.logsumexp(cp.asarray(x), axis, keepdims)
            assert got.dtype == dtype
            assert_close(cp.asnumpy(got), fref.logsumexp(x, axis, keepdims), dtype)


def test_gpu_logsumexp_infinities(cp):
    a = np.array([[1000.0, 1000.0], [-1000.0, -np.inf], [-np.inf, -np.inf]])
    got = cp.asnumpy(cuda.logsumexp(cp.asarray(a), 1))
    np.testing.assert_allclose(got, fref.logsumexp(a, 1))
