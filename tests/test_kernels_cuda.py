"""Tests of the CUDA kernels (scratchgen.kernels.cuda).

Two tiers:

* always (CPU only): the ``.cu`` sources compile with nvcc (``tools/check_cuda_sources.sh``;
  skipped only where nvcc is absent and ``CI`` is unset), the module imports without
  CuPy, and the whole ``kernels/cuda`` orchestration run on NumPy through ``_emulator``:
  with the kernels as Python transliterations, and with the ``.cu`` sources compiled for
  the host by a C++ compiler (skipped without one) -- both against ``kernels/reference.py``;
* GPU (skipped, with the reason, where CuPy or a CUDA device is missing): the real kernels
  against the references. CuPy compiles each new elementwise/reduction kernel (per op,
  dtype and rank) with NVRTC on first use -- about a second each on a fresh machine, by the
  review of CuPy 14, then cached on disk -- so this tier's grid is kept small (10 examples
  per property, a few fixed shapes); ``tools/gpu_check.sh`` logs what the first run costs.
  Under the CuPy stand-in (``PYTHONPATH=tools/standin``) this tier runs too, on the
  host-compiled kernels: that checks its device/host plumbing, not the GPU.
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
cuda = _load("cuda", "cuda/__init__.py")
emulator = _load("cuda._emulator", "cuda/_emulator.py")
host_build = _load("cuda._host_build", "cuda/_host_build.py")

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
    want = {f"{b}_{s}" for b in ("im2col", "col2im", "im2col32", "col2im32", "adam")
            for s in ("f32", "f64")}
    assert want <= exported


def test_cuda_module_imports_without_cupy():
    """CI collects on CPU-only machines: the module must not import cupy at import time."""
    code = (
        "import sys\n"
        "sys.modules['cupy'] = None\n"  # any `import cupy` now raises ImportError
        "import scratchgen.kernels.cuda as m\n"
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
    cp = emulator.install(mp, cuda, libs)
    if block is not None:
        mp.setattr(cuda, "_BLOCK", block)
    if max_blocks is not None:
        mp.setattr(cuda, "_MAX_BLOCKS", max_blocks)
    if max_cols is not None:
        mp.setattr(cuda, "MAX_COLS_BYTES", max_cols)
    return cp


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


ADAM_CASES = [  # (weight_decay, amsgrad)
    (0.0, False), (0.01, False), (0.0, True), (0.05, True)]


def run_adam(update, dtype, wd, amsgrad, steps=4, to_dev=np.asarray, to_host=np.asarray):
    """`steps` Adam updates of a small parameter with `update`; returns (p, m, v, vmax)."""
    rng = np.random.default_rng(13)
    p, m, v = rng.standard_normal(37).astype(dtype), np.zeros(37, dtype), np.zeros(37, dtype)
    vmax = np.zeros(37, dtype) if amsgrad else None
    arrays = [to_dev(a) for a in (p, m, v)] + ([to_dev(vmax)] if amsgrad else [None])
    b1, b2 = 0.9, 0.99
    for t in range(1, steps + 1):
        g = to_dev(rng.standard_normal(37).astype(dtype))
        update(arrays[0], g, arrays[1], arrays[2], 1e-2, b1, b2, 1e-8, wd, 1 - b1**t,
               1 - b2**t, v_max=arrays[3])
    return [None if a is None else to_host(a) for a in arrays]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wd,amsgrad", ADAM_CASES)
def test_adam_emulated_matches_reference(host_libs, dtype, wd, amsgrad):
    """The fused kernel, as Python and as the host-compiled optim.cu, against reference.py."""
    want = run_adam(ref.adam_update, dtype, wd, amsgrad)
    for libs in (None, host_libs):
        with pytest.MonkeyPatch.context() as mp:
            _emulated(mp, libs, block=8, max_blocks=2)
            got = run_adam(cuda.adam_update, dtype, wd, amsgrad)
        for g, w in zip(got, want):
            if w is not None:
                assert_close(g, w, dtype)


@pytest.mark.parametrize("fits", [True, False])
def test_im2col_32_and_64_bit_index_variants(host_libs, fits):
    """The 32-bit kernels are used when every index fits, the 64-bit ones otherwise; both
    compute the same convolution."""
    with pytest.MonkeyPatch.context() as mp:
        _emulated(mp, host_libs, block=16, max_blocks=3)
        mp.setattr(cuda, "_fits_int32", lambda *sizes: fits)
        check_conv_against_reference(cuda, (2, 3, 2, 6, 5, 3, 2, 2, 1, 1, 0, 4), np.float32)
        used = {key[1] for key in cuda._kernels}
    assert used == ({"im2col32", "col2im32"} if fits else {"im2col", "col2im"})


def test_fits_int32_bound():
    stride = cuda._MAX_BLOCKS * cuda._BLOCK
    assert cuda._fits_int32(10, 2**31 - 1 - stride)
    assert not cuda._fits_int32(10, 2**31 - stride)


def test_self_test_emulated(host_libs):
    with pytest.MonkeyPatch.context() as mp:
        _emulated(mp, host_libs)
        assert cuda.self_test() >= 0
        assert {(k[0], k[1]) for k in cuda._kernels} == {
            ("conv.cu", n) for n in ("im2col", "im2col32", "col2im", "col2im32")} | {
            ("optim.cu", "adam")}


def test_kernels_are_compiled_once_per_source_name_and_dtype():
    with pytest.MonkeyPatch.context() as mp:
        cp = _emulated(mp)
        made = []
        base = cp.RawModule
        mp.setattr(cp, "RawModule", lambda **kw: made.append(kw) or base(**kw))
        for _ in range(3):
            cuda.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), (1, 1), (0, 0))
        assert len(made) == 1 and len(cuda._kernels) == 1
        k = cuda._kernel("conv.cu", "im2col32", np.float64)
        assert cuda._kernel("conv.cu", "im2col32", np.float64) is k



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
        p = np.zeros(3, np.float32)
        with pytest.raises(ValueError, match="adam_update: g must be C-contiguous float32"):
            cuda.adam_update(p, np.zeros(3), p.copy(), p.copy(), 1e-3, 0.9, 0.999, 1e-8, 0,
                             0.1, 0.001)


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


GPU_SETTINGS = settings(max_examples=10, deadline=None,
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
    # cp.asarray of a strided host array copies to C order: build the strided views on the device
    dx = cp.asarray(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    dw = cp.asarray(np.ascontiguousarray(wt.transpose(1, 0, 2, 3))).transpose(1, 0, 2, 3)
    assert not dx.flags.c_contiguous and not dw.flags.c_contiguous
    y = cuda.conv2d(dx, dw, (1, 2), (1, 1))
    assert_close(cp.asnumpy(y), ref.conv2d(x, wt, (1, 2), (1, 1)), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    dgy = cp.asarray(np.ascontiguousarray(gy.T)).T
    assert not dgy.flags.c_contiguous
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_adam_matches_reference(cp, dtype):
    for wd, amsgrad in ADAM_CASES:
        want = run_adam(ref.adam_update, dtype, wd, amsgrad)
        got = run_adam(cuda.adam_update, dtype, wd, amsgrad, to_dev=cp.asarray,
                       to_host=cp.asnumpy)
        for g, w in zip(got, want):
            if w is not None:
                assert_close(g, w, dtype)


def test_gpu_self_test(cp):
    assert cuda.self_test() >= 0



def test_cuda_backend_selection_fails_in_one_line_when_the_self_test_fails(monkeypatch):
    """A CuPy that imports and sees a GPU but cannot compile (e.g. no CUDA headers on a
    driver-only machine) is a one-line BackendError when the backend is chosen."""
    from scratchgen import backend
    fake = type(sys)("cupy")
    fake.cuda = type(sys)("cupy.cuda")
    fake.cuda.runtime = type(sys)("cupy.cuda.runtime")
    fake.cuda.runtime.getDeviceCount = lambda: 1
    fake.ndarray = np.ndarray
    monkeypatch.setitem(sys.modules, "cupy", fake)
    import scratchgen.kernels.cuda as kcuda

    def broken():
        raise RuntimeError("Failed to find CUDA headers\n(search paths: ...)")

    monkeypatch.setattr(kcuda, "self_test", broken)
    with pytest.raises(backend.BackendError) as e:
        backend._select("cuda", "--backend")
    msg = str(e.value)
    assert "\n" not in msg and "Failed to find CUDA headers" in msg
    assert "pip install -e '.[cuda]'" in msg and "--backend=cpu" in msg
