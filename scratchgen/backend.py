"""The one place that decides which array library runs.

The backend is chosen on first use (the first array made, or the first look at ``name``,
``xp``, ``kernels`` or ``ndarray``), from :func:`use` if it was called, else from
``SCRATCHGEN_BACKEND``:

* ``cpu`` (default): NumPy arrays, numba kernels from ``scratchgen.kernels.cpu``;
* ``numpy``: NumPy arrays, the pure-NumPy reference kernels (no numba);
* ``cuda``: CuPy arrays, CUDA kernels from ``scratchgen.kernels.cuda`` (im2col/col2im,
  fused Adam); choosing it compiles them and runs a tiny self-test.

Importing scratchgen therefore never fails on a bad backend; the first use raises one
:class:`BackendError` naming the value, the choices and what is missing. Once chosen, the
backend is fixed for the process (``use`` of another one raises).

Everything else in scratchgen reads ``backend.xp`` (the array module), ``backend.kernels``
(the hot-path kernels) and the helpers below at call time, never numpy-vs-cupy itself.

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


def _select(value, origin):
    if value not in CHOICES:
        raise BackendError(
            f"{origin}={value!r} is not a backend; choose one of {', '.join(CHOICES)}")
    if value == "numpy":
        from scratchgen.kernels import reference as k
        return numpy, k, numpy.ndarray
    if value == "cpu":
        try:
            from scratchgen.kernels import cpu as k
        except ImportError as e:  # numba missing or broken
            raise BackendError(
                f"{origin}=cpu needs numba ({e}); install it, or set {ENV_VAR}=numpy") from e
        return numpy, k, numpy.ndarray
    try:
        import cupy
    except ImportError as e:
        raise BackendError(
            f"{origin}=cuda needs CuPy, which is not installed ({e}); "
            f"install it with `pip install -e '.[cuda]'`, or use {origin}=cpu") from e
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, no device
        raise BackendError(f"{origin}=cuda but no usable CUDA GPU was found ({e}); "
                           f"use {origin}=cpu") from e
    if count == 0:
        raise BackendError(f"{origin}=cuda but no CUDA GPU was found; use {origin}=cpu")
    from scratchgen.kernels import cuda as k
    try:  # compile the kernels, run an elementwise op and a GEMM: fail here, not mid-run
        k.self_test()
    except Exception as e:
        msg = (str(e).strip().splitlines() or [""])[0]
        raise BackendError(
            f"{origin}=cuda: CuPy cannot compile or run kernels on this GPU "
            f"({type(e).__name__}: {msg}); on a driver-only machine install CuPy's CUDA "
            f"components with `pip install -e '.[cuda]'`, or use {origin}=cpu") from e
    return cupy, k, cupy.ndarray


_CHOSEN = ("name", "xp", "kernels", "ndarray", "on_gpu")
_ready = False


def requested():
    """The backend ``SCRATCHGEN_BACKEND`` asks for (``cpu`` when unset or empty)."""
    return os.environ.get(ENV_VAR, "").strip().lower() or "cpu"


def use(value=None, origin=None):
    """Choose the backend now: ``value``, else ``SCRATCHGEN_BACKEND``. Returns its name.
    ``origin`` names where ``value`` came from in error messages (e.g. ``'--backend'``).

    Raises :class:`BackendError` for an unknown or unavailable backend, or when another one
    is already in use in this process (arrays of both cannot mix)."""
    global _ready, name, xp, kernels, ndarray, on_gpu
    if value is None:
        value, origin = requested(), ENV_VAR
    value, origin = str(value).strip().lower(), origin or "backend"
    if _ready:
        if value != name:
            raise BackendError(f"the {name} backend is already in use in this process; "
                               f"choose {value} before scratchgen makes its first array")
        return name
    xp, kernels, ndarray = _select(value, origin)
    name, on_gpu, _ready = value, value == "cuda", True
    return name


def __getattr__(attr):  # module attribute: choose on first look, then plain globals
    if attr in _CHOSEN:
        use()
        return globals()[attr]
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


# what CuPy can hold (cupy/_core/_dtype.pyx: '?bhilqBHILQefdFD'); the CPU backends take
# any bool, integer, float or complex dtype
_DEVICE_TYPES = frozenset(numpy.dtype(c).type for c in "?bhilqBHILQefdFD")


def asarray(x, dtype=None):
    """Array of this backend from anything array-like (host data is copied to the device).

    Host data whose dtype an array cannot hold (object, string, datetime; on the GPU also
    long double) is a one-line TypeError, raised on the host before any copy."""
    _ready or use()
    if isinstance(x, ndarray):
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)
    if on_gpu and hasattr(x, "__cuda_array_interface__"):
        return xp.asarray(x, dtype=dtype)
    host = numpy.asarray(x, dtype=dtype)
    if host.dtype.kind not in "biufc" or (on_gpu and host.dtype.type not in _DEVICE_TYPES):
        raise TypeError(f"cannot make a {name} array of dtype {host.dtype}: arrays hold "
                        f"bool, integer, float or complex numbers")
    return xp.asarray(host)


def to_numpy(a):
    """A host NumPy array (device arrays are copied back)."""
    _ready or use()
    if on_gpu and isinstance(a, ndarray):
        return a.get()
    return numpy.asarray(a)


def check_array(a, what="array"):
    """Raise a clear error for an array of another backend."""
    _ready or use()
    if isinstance(a, ndarray):
        return a
    mod = type(a).__module__.split(".")[0]
    if mod in ("numpy", "cupy"):
        raise TypeError(
            f"{what} is a {mod} array but {ENV_VAR}={name} runs on "
            f"{ndarray.__module__.split('.')[0]} arrays; convert it with sg.tensor(...) first")
    return a


def is_array(a):
    _ready or use()
    return isinstance(a, ndarray)


def is_foreign_array(a):
    _ready or use()
    # NumPy scalars (what NumPy ufuncs return for 0-d inputs) mix with either backend's arrays.
    return (not isinstance(a, (ndarray, numpy.generic))
            and type(a).__module__.split(".")[0] in ("numpy", "cupy"))


def errstate(**kw):
    """Floating-point warning control (NumPy's errstate; CuPy does not warn)."""
    _ready or use()
    if on_gpu:
        import contextlib
        return contextlib.nullcontext()
    return numpy.errstate(**kw)


def synchronize():
    """Wait for queued device work (a no-op on the CPU backends); for timing."""
    _ready or use()
    if on_gpu:
        xp.cuda.Device().synchronize()
