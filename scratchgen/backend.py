"""The one place that decides which array library runs.

``SCRATCHGEN_BACKEND`` is read once, at import:

* ``cpu`` (default): NumPy arrays, numba kernels from ``scratchgen.kernels.cpu``;
* ``numpy``: NumPy arrays, the pure-NumPy reference kernels (no numba);
* ``cuda``: CuPy arrays, CUDA kernels from ``scratchgen.kernels.cuda``.

Everything else in scratchgen uses ``xp`` (the array module), ``kernels`` (the hot-path
kernels: conv and fused bias/activation) and the helpers below, never numpy-vs-cupy itself.

>>> import scratchgen as sg
>>> sg.backend.name in ('cpu', 'numpy', 'cuda')
True
"""
import os

import numpy

ENV_VAR = "SCRATCHGEN_BACKEND"
CHOICES = ("cpu", "numpy", "cuda")


class BackendError(RuntimeError):
    """The requested backend is unknown or cannot run on this machine."""


def _select(value):
    if value not in CHOICES:
        raise BackendError(
            f"{ENV_VAR}={value!r} is not a backend; choose one of {', '.join(CHOICES)}")
    if value == "numpy":
        from scratchgen.kernels import reference as k
        return numpy, k, numpy.ndarray
    if value == "cpu":
        try:
            from scratchgen.kernels import cpu as k
        except ImportError as e:  # numba missing or broken
            raise BackendError(
                f"{ENV_VAR}=cpu needs numba ({e}); install it, or set {ENV_VAR}=numpy") from e
        return numpy, k, numpy.ndarray
    try:
        import cupy
    except ImportError as e:
        raise BackendError(
            f"{ENV_VAR}=cuda needs CuPy, which is not installed ({e}); "
            f"install it with `pip install -e .[cuda]`, or use {ENV_VAR}=cpu") from e
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, no device
        raise BackendError(f"{ENV_VAR}=cuda but no usable CUDA GPU was found ({e}); "
                           f"use {ENV_VAR}=cpu") from e
    if count == 0:
        raise BackendError(f"{ENV_VAR}=cuda but no CUDA GPU was found; use {ENV_VAR}=cpu")
    from scratchgen.kernels import cuda as k
    return cupy, k, cupy.ndarray


name = os.environ.get(ENV_VAR, "cpu").strip().lower() or "cpu"
xp, kernels, ndarray = _select(name)
on_gpu = name == "cuda"


def asarray(x, dtype=None):
    """Array of this backend from anything array-like (host data is copied to the device)."""
    if isinstance(x, ndarray):
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)
    if on_gpu and hasattr(x, "__cuda_array_interface__"):
        return xp.asarray(x, dtype=dtype)
    return xp.asarray(numpy.asarray(x, dtype=dtype))


def to_numpy(a):
    """A host NumPy array (device arrays are copied back)."""
    if on_gpu and isinstance(a, ndarray):
        return a.get()
    return numpy.asarray(a)


def check_array(a, what="array"):
    """Raise a clear error for an array of another backend."""
    if isinstance(a, ndarray):
        return a
    mod = type(a).__module__.split(".")[0]
    if mod in ("numpy", "cupy"):
        raise TypeError(
            f"{what} is a {mod} array but {ENV_VAR}={name} runs on "
            f"{ndarray.__module__.split('.')[0]} arrays; convert it with sg.tensor(...) first")
    return a


def is_array(a):
    return isinstance(a, ndarray)


def is_foreign_array(a):
    # NumPy scalars (what NumPy ufuncs return for 0-d inputs) mix with either backend's arrays.
    return (not isinstance(a, (ndarray, numpy.generic))
            and type(a).__module__.split(".")[0] in ("numpy", "cupy"))


def errstate(**kw):
    """Floating-point warning control (NumPy's errstate; CuPy does not warn)."""
    if on_gpu:
        import contextlib
        return contextlib.nullcontext()
    return numpy.errstate(**kw)


def synchronize():
    """Wait for queued device work (a no-op on the CPU backends); for timing."""
    if on_gpu:
        xp.cuda.Device().synchronize()
