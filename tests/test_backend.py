"""The backend switch: one variable, read once; clear errors for bad values and mixed arrays."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import scratchgen as sg


def _import_with(value):
    env = dict(os.environ, SCRATCHGEN_BACKEND=value)
    return subprocess.run([sys.executable, "-c", "import scratchgen as sg; print(sg.backend.name)"],
                          env=env, capture_output=True, text=True)


def test_bogus_backend_names_variable_value_and_choices():
    r = _import_with("bogus")
    assert r.returncode != 0
    assert "SCRATCHGEN_BACKEND='bogus'" in r.stderr
    for choice in ("cpu", "numpy", "cuda"):
        assert choice in r.stderr.splitlines()[-1]


def test_cuda_without_cupy_is_a_clear_error(tmp_path):
    """CuPy hidden (an importable 'cupy' that raises ImportError), so this runs the same on a
    GPU machine: one BackendError line naming the variable and what is missing."""
    hidden = tmp_path / "cupy"
    hidden.mkdir()
    (hidden / "__init__.py").write_text("raise ImportError('CuPy hidden by the test')\n")
    env = dict(os.environ, SCRATCHGEN_BACKEND="cuda", PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", "import scratchgen as sg; sg.tensor([1.0])"],
                       env=env, capture_output=True, text=True)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "SCRATCHGEN_BACKEND=cuda needs CuPy" in last and "pip install" in last, r.stderr


@pytest.mark.parametrize("value", ["numpy", "cpu"])
def test_cpu_backends_import(value):
    r = _import_with(value)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == value


def test_xp_is_the_array_module():
    a = sg.tensor([1.0, 2.0])
    assert isinstance(a.array, sg.backend.ndarray)
    assert sg.backend.xp.asarray(a.array) is a.array


class _ForeignArray:
    """Stands in for an array of the other library (only its module name matters)."""
    shape = (2,)


def test_mixing_arrays_of_another_backend_is_a_clear_error():
    other = "numpy" if sg.backend.on_gpu else "cupy"
    _ForeignArray.__module__ = f"{other}._core"
    x = sg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match=f"{other} array.*SCRATCHGEN_BACKEND={sg.backend.name}"):
        sg.functional.mul(x, _ForeignArray())


def test_host_data_of_a_dtype_no_array_holds_is_refused_before_any_copy():
    """Checked on the host: CuPy would raise its own ``ValueError: Unsupported dtype``."""
    from fractions import Fraction
    for data, dtype in (([Fraction(1, 2)], "object"), (["a", "b"], "<U1"),
                        ([np.datetime64("2026-01-01")], "datetime64[D]")):
        with pytest.raises(TypeError, match=re.escape(
                f"cannot make a {sg.backend.name} array of dtype {dtype}: arrays hold bool")):
            sg.backend.asarray(data)
    with pytest.raises(TypeError, match=r"the data is an object array \(object\)"):
        sg.tensor([Fraction(1, 2)])  # the engine's own one-line error on every backend
    assert sg.backend.asarray([1, 2], dtype=np.float32).dtype == np.float32


def test_host_numpy_input_is_moved_to_the_backend():
    t = sg.tensor(np.arange(3.0))
    assert isinstance(t.array, sg.backend.ndarray)
    assert t.dtype == np.float64
    np.testing.assert_array_equal(t.numpy(), [0.0, 1.0, 2.0])


def test_import_never_fails_the_backend_is_chosen_on_first_use():
    env = dict(os.environ, SCRATCHGEN_BACKEND="bogus")
    code = ("import scratchgen as sg\n"
            "sg.backend.use('numpy')\n"
            "print(sg.backend.name, type(sg.tensor([1.0]).array).__module__)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["numpy", "numpy"]


def test_use_of_a_second_backend_is_refused():
    other = "numpy" if sg.backend.name != "numpy" else "cpu"
    sg.tensor([1.0])
    with pytest.raises(sg.backend.BackendError, match=f"{sg.backend.name} backend is already in use"):
        sg.backend.use(other)


def test_every_kernel_module_offers_the_reference_interface():
    """What ``kernels.reference`` defines (its helper ``adam_arrays`` aside) the cpu and cuda
    kernel modules export too, so the engine may call any of them on any backend."""
    from scratchgen.kernels import cpu, cuda, reference
    names = {n for n, v in vars(reference).items() if callable(v) and not n.startswith("_")
             and getattr(v, "__module__", "") == reference.__name__} - {"adam_arrays"}
    assert {"relu", "leaky_relu", "relu_grad", "channel_bias", "channel_sum"} <= names
    for mod in (cpu, cuda):
        assert names <= set(mod.__all__), mod.__name__
        assert all(callable(getattr(mod, n)) for n in names)
