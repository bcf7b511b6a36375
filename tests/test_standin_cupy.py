"""The test-only CuPy stand-in (``tools/standin/cupy``) is as strict as CuPy, and a training
step on it (``SCRATCHGEN_BACKEND=cuda``) moves nothing between host and device.

The strictness tests load the stand-in by path, whatever the backend; CI also runs the whole
suite with ``PYTHONPATH=tools/standin SCRATCHGEN_BACKEND=cuda`` (see ``.ci/run``).
"""
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from scratchgen.kernels.cuda import _host_build

STANDIN = Path(__file__).resolve().parents[1] / "tools" / "standin"


@pytest.fixture(scope="module")
def cp():
    spec = importlib.util.spec_from_file_location("sg_standin_cupy",
                                                  STANDIN / "cupy" / "__init__.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_implicit_conversion_to_numpy_raises_like_cupy(cp):
    x = cp.asarray(np.arange(6.0).reshape(2, 3))
    for convert in (np.asarray, np.array, lambda a: a.__array__(),
                    lambda a: np.testing.assert_allclose(a, np.zeros((2, 3)))):
        with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
            convert(x)
    assert isinstance(x.get(), np.ndarray) and isinstance(cp.asnumpy(x), np.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(x), np.arange(6.0).reshape(2, 3))
    assert float(x[1, 2]) == 5.0 and int(x[0, 1]) == 1 and x.sum().item() == 15.0
    assert format(x.max(), ".1f") == "5.0"


def test_host_arrays_do_not_mix_with_device_arrays(cp):
    x, host = cp.ones(3), np.ones(3)
    for op in (lambda: x + host, lambda: host + x, lambda: cp.maximum(x, host),
               lambda: cp.concatenate([x, host])):
        with pytest.raises(TypeError, match="Unsupported type"):
            op()
    with pytest.raises(TypeError, match="Unsupported type"):
        x[:2] = host[:2]  # CuPy refuses assignment from CPU arrays into a slice
    x[np.array([0, 2])] = 5.0  # NumPy arrays may index
    assert x.tolist() == [5.0, 1.0, 5.0]
    assert (x * np.float32(2)).dtype == np.float64  # NumPy scalars mix
    with pytest.raises(TypeError, match="incorrect type"):
        cp.ascontiguousarray(host)


def test_results_stay_on_the_device(cp):
    x = cp.asarray(np.array([[1.0, -2.0], [3.0, 4.0]]))
    for r in (x.sum(), x[0, 0], np.exp(x), np.sum(x), x.max(axis=0), cp.where(x > 0, x, 0)):
        assert isinstance(r, cp.ndarray)
    assert x.sum().shape == ()
    assert cp.asarray(x) is x and cp.ascontiguousarray(x) is x
    assert not x.T.flags.c_contiguous
    with np.errstate(all="raise"):
        cp.exp(cp.asarray([1e4]))  # CuPy reports no floating-point errors
    cp.add.at(x, (np.array([0, 0]), np.array([1, 1])), 1.0)
    assert x[0, 1].item() == 0.0


def test_unsupported_dtypes_are_refused_like_cupy(cp):
    from fractions import Fraction
    for make in (lambda: cp.asarray(np.array([Fraction(1, 2)])), lambda: cp.array(["a", "b"]),
                 lambda: cp.zeros(2, dtype=object), lambda: cp.ones(2).astype(np.longdouble),
                 lambda: cp.asarray(np.array(["2026-01-01"], dtype="datetime64[D]"))):
        with pytest.raises(ValueError, match="Unsupported dtype"):
            make()
    for dtype in (np.bool_, np.int8, np.uint64, np.float16, np.float32, np.complex128):
        assert cp.asarray(np.zeros(2, dtype)).dtype == dtype


def test_ufunc_operands_and_keywords_are_cupys(cp):
    x = cp.arange(4.0)
    with pytest.raises(TypeError, match="Unsupported type <class 'list'>"):
        cp.add(x, [1.0, 2.0, 3.0, 4.0])
    for op in (lambda: x + [1.0] * 4, lambda: [1.0] * 4 * x, lambda: x < (1, 2, 3, 4),
               lambda: np.add(x, [1.0] * 4), lambda: x * __import__("fractions").Fraction(1)):
        with pytest.raises(TypeError, match="NotImplemented"):
            op()
    with pytest.raises(TypeError, match="Wrong arguments.*where"):
        cp.add(x, x, where=x > 1)
    with pytest.raises(TypeError, match="Wrong arguments.*order"):
        np.multiply(x, 2.0, order="C")
    for reduce in (lambda: x.sum(where=x > 1), lambda: np.max(x, initial=0.0),
                   lambda: cp.add.reduce(x, initial=0.0)):
        with pytest.raises(TypeError, match="initial|where"):
            reduce()
    # what CuPy accepts still works: scalars of every kind, out=/dtype=, NumPy scalars
    y = cp.add(x, np.float32(1), out=cp.empty(4), dtype=np.float64) * 2 + True
    assert y.tolist() == [3.0, 5.0, 7.0, 9.0] and (x == None).tolist() == [False] * 4  # noqa: E711
    # several boolean index arrays: CuPy >= 11 takes them (its tests' "multiple masks")
    m = cp.asarray(np.array([True, False, True, True]))
    assert cp.arange(16.0).reshape(4, 4)[m, m].tolist() == [0.0, 10.0, 15.0]


def test_copies_are_counted(cp):
    before = dict(cp.transfers)
    x = cp.asarray(np.zeros(4))
    s = (x + 1).sum()
    assert cp.asarray([x, x]).shape == (2, 4)  # stacked on the device
    x.get()
    assert cp.transfers == {"to_device": before["to_device"] + 1,
                            "to_host": before["to_host"] + 1}
    if s > 0:  # deciding a branch on a device value copies it back
        pass
    assert cp.transfers["to_host"] == before["to_host"] + 2
    with pytest.raises(TypeError, match="Unsupported type"):
        cp.asarray([x, np.zeros(4)])


@pytest.mark.skipif(_host_build.find_cxx() is None, reason="no C++ compiler for the kernels")
def test_raw_kernels_run_the_cu_source_and_refuse_host_arrays(cp):
    from scratchgen.kernels import cuda
    mod = cp.RawModule(code=(Path(cuda.SOURCE_DIR) / "conv.cu").read_text())
    k = mod.get_function("im2col32_f32")
    x = cp.asarray(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    cols = cp.empty((4, 4), dtype=np.float32)
    geo = tuple(np.int32(v) for v in (1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 2, 2))
    k((1,), (32,), (x, cols) + geo)
    assert cols.get()[:, 0].tolist() == [0.0, 1.0, 4.0, 5.0]
    with pytest.raises(TypeError, match="Unsupported type"):
        k((1,), (32,), (x.get(), cols) + geo)


STEP_SCRIPT = textwrap.dedent("""
    import cupy, numpy as np, scratchgen as sg
    from scratchgen import nn
    assert sg.backend.name == "cuda" and cupy.__standin__
    sg.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                        nn.Flatten(), nn.Linear(4 * 3 * 3, 1))
    opt = sg.optim.Adam(net.parameters(), lr=1e-3)
    x = sg.tensor(np.random.default_rng(0).normal(size=(8, 1, 6, 6)).astype(np.float32),
                  requires_grad=True)

    def step():  # a WGAN-GP-like critic step: gradient penalty = double backward
        y = net(x)
        (g,) = sg.grad(y.sum(), [x], create_graph=True)
        loss = y.mean() + ((g * g).sum() - 1.0) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    step()
    before = dict(cupy.transfers)
    for _ in range(3):
        loss = step()
    assert cupy.transfers == before, (before, cupy.transfers)
    assert {k[1] for k in sg.backend.kernels._kernels} >= {"im2col32", "col2im32", "adam"}
    print("ok", loss.item())
""")


@pytest.mark.skipif(_host_build.find_cxx() is None, reason="no C++ compiler for the kernels")
def test_a_training_step_on_the_standin_makes_no_host_device_copy():
    env = dict(os.environ, SCRATCHGEN_BACKEND="cuda", PYTHONPATH=os.pathsep.join(
        [str(STANDIN), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-c", STEP_SCRIPT], env=env, capture_output=True,
                         text=True)
    assert res.returncode == 0 and res.stdout.startswith("ok"), res.stdout + res.stderr
