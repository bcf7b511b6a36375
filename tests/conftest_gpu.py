"""The GPU tier of the suite (issue 32), hooked into pytest by ``tests/conftest.py``.

* ``gpu`` marker: what ``tools/gpu_check.sh`` runs on a GPU (``-m gpu``). Every test of the
  modules that exercise the array backend on a device (:data:`GPU_MODULES`) gets it, except
  in ``test_kernels_cuda.py``, where only the tests of the real kernels (the ``cp`` fixture)
  do: its other tiers (nvcc, the host-compiled ``.cu``, the emulator) prove nothing there.
* ``SCRATCHGEN_REQUIRE_REAL_CUPY=1`` (set by gpu_check): the run stops before any test if
  ``import cupy`` finds the test stand-in (``tools/standin``, marked ``__standin__``), which
  would make every in-process GPU test pass on NumPy.
"""
import os

import pytest

GPU_MODULES = {"test_kernels_cuda", "test_backend", "test_engine", "test_optim", "test_nn",
               "test_trainer", "test_cli"}
REQUIRE_REAL_CUPY = "SCRATCHGEN_REQUIRE_REAL_CUPY"


def standin_refusal():
    """Why this run must stop (a one-line message), or None."""
    if os.environ.get(REQUIRE_REAL_CUPY, "") != "1":
        return None
    try:
        import cupy
    except ImportError as e:
        return f"{REQUIRE_REAL_CUPY}=1 but CuPy is not importable ({e})"
    if getattr(cupy, "__standin__", False):
        return (f"{REQUIRE_REAL_CUPY}=1 but `import cupy` found the test stand-in "
                f"({cupy.__file__}), not CuPy: take tools/standin off PYTHONPATH")
    return None


def pytest_sessionstart(session):
    why = standin_refusal()
    if why:
        raise pytest.UsageError(why)


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = getattr(item, "module", None)
        name = module.__name__.rpartition(".")[2] if module is not None else ""
        if name not in GPU_MODULES:
            continue
        if name == "test_kernels_cuda" and "cp" not in getattr(item, "fixturenames", ()):
            continue
        item.add_marker(pytest.mark.gpu)
