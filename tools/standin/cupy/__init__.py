"""Test-only stand-in for CuPy: NumPy underneath, CuPy's strictness on top.

Put ``tools/standin`` first on ``PYTHONPATH`` and ``SCRATCHGEN_BACKEND=cuda`` runs the whole
engine on it, so host<->device mistakes show on a CPU-only machine. It lives outside the test
folders so that pytest never imports it as ``cupy`` by accident; ``__standin__`` marks it
(``SCRATCHGEN_REQUIRE_REAL_CUPY=1`` makes the test run refuse it). Like CuPy 14.2
(``cupy/_core/core.pyx``, ``_routines_indexing.pyx``, ``_kernel.pyx``, ``_dtype.pyx``):

* a device array is not a ``numpy.ndarray``; ``np.asarray(x)``, ``x.__array__()`` and so
  anything that silently converts (``np.savez``, matplotlib, SciPy routines) raise
  ``TypeError: Implicit conversion to a NumPy array is not allowed``; ``x.get()`` and
  ``cupy.asnumpy(x)`` are the ways out (``float(x)``, ``int(x)``, ``x.item()``, ``x.tolist()``,
  ``format`` copy one value or list back, as CuPy's do);
* NumPy ufuncs and array functions applied to device arrays dispatch to this module
  (``__array_ufunc__`` / ``__array_function__``) or raise ``TypeError`` when CuPy has no
  such function; a ``numpy.ndarray`` operand of a device op raises ``TypeError: Unsupported
  type`` (only ``asarray``/``array`` copy host data in; NumPy arrays may index);
* assigning a host array into a slice of a device array raises (CuPy gh-2079);
* only bool, integer, float16/32/64 and complex64/128 arrays exist: anything that would
  make an object, string, datetime or long-double array raises ``ValueError: Unsupported
  dtype ...`` (``cupy.asarray(np.array([Fraction(1, 2)]))`` included);
* ufunc operands are device arrays or scalars: a list (or other object) is ``TypeError:
  Unsupported type``, and as an operator's operand NumPy's "operand type(s) all returned
  NotImplemented"; ufuncs take ``out``/``dtype``/``casting`` only (``where=``, ``order=``:
  ``TypeError: Wrong arguments``), reductions no ``where=``/``initial=``;
* reductions and scalar indexing return 0-d device arrays, not NumPy scalars;
* ``RawModule`` compiles the ``.cu`` source for the host (``kernels/cuda/_host_build``) and
  launches the real C through ``kernels/cuda/_emulator`` (signatures, dtypes, contiguity
  and scalar types checked per launch).

``transfers`` counts copies each way (``to_device``, ``to_host``), for tests that a step
stays on the device. Only the surface scratchgen uses is here; anything else is an
AttributeError, as a missing CuPy function would be.
"""
import builtins
import functools
import sys
import time

import numpy as _np

__version__ = "14.2.0+standin"
__standin__ = True

transfers = {"to_device": 0, "to_host": 0}

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` to construct a NumPy array explicitly.")


# ----------------------------------------------------------------------- wrapping helpers

# cupy/_core/_dtype.pyx: all_type_chars '?bhilqBHILQefdFD'
_SUPPORTED = frozenset(_np.dtype(c).type for c in "?bhilqBHILQefdFD")
# cupy/_core/_scalar.pyx: scalar_type_set (exact types, as CuPy's __array_ufunc__ checks)
_SCALARS = frozenset({int, float, bool, complex}) | _SUPPORTED
_NOT_HANDLED = object()


def _check_dtype(dtype):
    if dtype.type not in _SUPPORTED:
        raise ValueError(f"Unsupported dtype {dtype}")


def _is_scalar(x):
    return isinstance(x, (int, float, complex, _np.generic)) and type(x) not in (
        _np.object_, _np.str_, _np.bytes_, _np.void)


def _defers(other):
    """CuPy's _should_use_rop: let ``other``'s reflected operator run."""
    uf = getattr(other, "__array_ufunc__", _NOT_HANDLED)
    if uf is not _NOT_HANDLED:
        return uf is None
    return 0 < getattr(other, "__array_priority__", 0)


def _wrap(r):
    if isinstance(r, _np.ndarray):
        return ndarray._of(r)
    if isinstance(r, _np.generic):
        return ndarray._of(_np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, list):
        return [_wrap(v) for v in r]
    return r


def _dev(x):
    """The NumPy array under a device operand; host arrays are refused as CuPy does."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _np.ndarray):
        raise TypeError(f"Unsupported type {type(x)}")
    if isinstance(x, (list, tuple)):
        return type(x)(_dev(v) for v in x)
    return x


def _dev_kw(kw):
    return {k: _dev(v) for k, v in kw.items()}


def _index(key):
    """Indices may be device arrays, NumPy arrays (copied in), slices, ints, lists."""
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    return key


def _is_basic(key):
    keys = key if isinstance(key, tuple) else (key,)
    # (this module defines cupy.all, cupy.any, cupy.sum...: use the builtins explicitly)
    return builtins.all(k is None or k is Ellipsis or isinstance(k, (slice, int, _np.integer))
               for k in keys)


def _quiet():
    return _np.errstate(all="ignore")  # CuPy reports no floating-point errors


_REDUCTIONS = {"sum", "prod", "mean", "var", "std", "max", "min", "amax", "amin", "all", "any",
               "nansum"}


def _no_numpy_only_kw(name, kw):
    if name in _REDUCTIONS and ("where" in kw or "initial" in kw):
        bad = "where" if "where" in kw else "initial"
        raise TypeError(f"{name}() got an unexpected keyword argument '{bad}'")


def _device_function(np_func, name=None):
    fname = name or np_func.__name__

    @functools.wraps(np_func)
    def f(*args, **kw):
        _no_numpy_only_kw(fname, kw)
        with _quiet():
            return _wrap(np_func(*_dev(args), **_dev_kw(kw)))
    if name:
        f.__name__ = name
    return f


# ----------------------------------------------------------------------------- ndarray

class ndarray:
    """A device array (a NumPy array that refuses to leave implicitly)."""
    __slots__ = ("_a",)
    __hash__ = None

    def __init__(self, shape, dtype=float, order="C"):
        _check_dtype(_np.dtype(dtype))
        self._a = _np.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _of(cls, a):
        if a.dtype.type not in _SUPPORTED:
            _check_dtype(a.dtype)
        self = object.__new__(cls)
        self._a = a
        return self

    # -- the ways out
    def get(self, stream=None, order="C", out=None):
        transfers["to_host"] += 1
        host = _np.array(self._a, order=order)
        if out is not None:
            out[...] = host
            return out
        return host

    def set(self, arr, stream=None):
        transfers["to_device"] += 1
        self._a[...] = arr

    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def item(self):
        if self._a.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self.get().item()

    def tolist(self):
        return self.get().tolist()

    def __float__(self):
        return float(self.get())

    def __int__(self):
        return int(self.get())

    def __complex__(self):
        return complex(self.get())

    def __bool__(self):
        transfers["to_host"] += 1  # CuPy copies the value back to decide
        return bool(self._a)

    def __repr__(self):
        return repr(self.get())

    def __str__(self):
        return str(self.get())

    def __format__(self, spec):
        return format(self.get(), spec)

    def __reduce__(self):
        return array, (self.get(),)

    # -- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray._of(self._a.T))
    real = property(lambda self: ndarray._of(self._a.real))
    base = property(lambda self: None if self._a.base is None else ndarray._of(self._a.base))

    @shape.setter
    def shape(self, value):
        self._a.shape = value

    # -- container
    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, _np.ndarray) and _is_basic(key):
            # cupy/_core/_routines_indexing.pyx: "Refuse assignment from CPU arrays"
            raise TypeError(f"Unsupported type {type(value)}")
        if isinstance(value, _np.ndarray):
            transfers["to_device"] += 1
        self._a[_index(key)] = value._a if isinstance(value, ndarray) else value

    # -- NumPy interoperability, as CuPy's
    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        func = globals().get(ufunc.__name__)
        if not isinstance(func, _Ufunc):
            return NotImplemented
        if method != "__call__":
            func = getattr(func, method, None)
            if func is None:
                return NotImplemented
        if "out" in kw:
            kw["out"] = kw["out"][0]
        if not builtins.all(type(x) in _SCALARS or isinstance(x, (ndarray, _np.ndarray))
                            for x in inputs + ((kw["out"],) if "out" in kw else ())):
            return NotImplemented
        return func(*inputs, **kw)

    def __array_function__(self, func, types, args, kwargs):
        module = _this
        for part in func.__module__.split(".")[1:]:
            module = getattr(module, part, None)
        ours = getattr(module, func.__name__, None) if module is not None else None
        if ours is None or not builtins.all(issubclass(t, (ndarray, _np.ndarray))
                                            for t in types):
            return NotImplemented
        return ours(*args, **kwargs)


def _method(name):
    def m(self, *args, **kw):
        _no_numpy_only_kw(name, kw)
        with _quiet():
            r = getattr(self._a, name)(*_dev(args), **_dev_kw(kw))
        return self if r is self._a else _wrap(r)
    m.__name__ = name
    return m


for _name in ("reshape", "transpose", "astype", "copy", "ravel", "flatten", "squeeze", "sum",
              "mean", "var", "std", "max", "min", "argmax", "argmin", "prod", "cumsum", "all",
              "any", "clip", "dot", "take", "repeat", "swapaxes", "round", "fill", "view",
              "nonzero", "conj", "sort", "argsort"):
    setattr(ndarray, _name, _method(_name))


def _binary(name):
    def op(self, other):
        if not isinstance(other, (ndarray, _np.ndarray)) and type(other) not in _SCALARS:
            if _defers(other):
                return NotImplemented
            if not (name in ("__eq__", "__ne__") and type(other).__eq__ is object.__eq__):
                raise TypeError(f"operand type(s) all returned NotImplemented from "
                                f"__array_ufunc__ ({name} of a cupy.ndarray and a "
                                f"{type(other).__name__})")
        with _quiet():
            r = getattr(self._a, name)(_dev(other))
        return self if r is self._a else _wrap(r)
    op.__name__ = name
    return op


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
              "xor", "lshift", "rshift"):
    for _form in ("__{}__", "__r{}__", "__i{}__"):
        setattr(ndarray, _form.format(_name), _binary(_form.format(_name)))
for _name in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
    setattr(ndarray, _name, _binary(_name))
for _name in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(ndarray, _name, _method(_name))


# ------------------------------------------------------------------------------ ufuncs

class _Ufunc:
    """cupy.ufunc: device operands or scalars only, ``out``/``dtype``/``casting`` only;
    ``at``/``reduce``/``outer``/``accumulate``."""

    _KW = {"__call__": {"out", "dtype", "casting"}, "outer": {"out", "dtype", "casting"},
           "reduce": {"axis", "dtype", "out", "keepdims"},
           "accumulate": {"axis", "dtype", "out"}}

    def __init__(self, uf):
        self._uf = uf
        self.__name__ = uf.__name__
        self.nin, self.nout = uf.nin, uf.nout

    def _check(self, args, kw, method="__call__"):
        extra = {k: v for k, v in kw.items() if k not in self._KW[method]}
        if extra:  # cupy/_core/_kernel.pyx: ufunc.__call__ pops out, dtype, casting
            raise TypeError(f"Wrong arguments {extra}")
        if self.__name__ in ("greater", "greater_equal", "less", "less_equal", "equal",
                             "not_equal"):  # CuPy's workaround for numpy/numpy#12142
            args = tuple(a.item() if isinstance(a, _np.ndarray) and a.ndim == 0 else a
                         for a in args)
        n = 1 if method in ("reduce", "accumulate") else len(args)
        for a in args[:n]:
            if not isinstance(a, (ndarray, _np.ndarray)) and not _is_scalar(a):
                raise TypeError(f"Unsupported type {type(a)}")  # CScalar(list)
        return _dev(args), _dev_kw(kw)

    def __call__(self, *args, **kw):
        args, kw = self._check(args, kw)
        with _quiet():
            return _wrap(self._uf(*args, **kw))

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise TypeError(f"Unsupported type {type(a)}")
        args = (_index(indices),) + (() if b is None else (_dev(b),))
        with _quiet():
            self._uf.at(a._a, *args)

    def reduce(self, *args, **kw):
        args, kw = self._check(args, kw, "reduce")
        with _quiet():
            return _wrap(self._uf.reduce(*args, **kw))

    def accumulate(self, *args, **kw):
        args, kw = self._check(args, kw, "accumulate")
        with _quiet():
            return _wrap(self._uf.accumulate(*args, **kw))

    def outer(self, *args, **kw):
        args, kw = self._check(args, kw, "outer")
        with _quiet():
            return _wrap(self._uf.outer(*args, **kw))


_NOT_IN_CUPY = {"matmul", "isnat", "matvec", "spacing", "vecdot", "vecmat"}
for _name in dir(_np):
    if isinstance(getattr(_np, _name), _np.ufunc) and _name not in _NOT_IN_CUPY:
        globals()[_name] = _Ufunc(getattr(_np, _name))
abs = globals()["absolute"]


# ------------------------------------------------------------------ array creation (host in)

def _has_device(obj):
    if isinstance(obj, ndarray):
        return True
    return isinstance(obj, (list, tuple)) and builtins.any(_has_device(v) for v in obj)


def _from(obj):
    """Host data as an array, device data unwrapped: a list of device arrays is stacked on
    the device, a list mixing host arrays in is refused, as by cupy.array."""
    if _has_device(obj):
        return _np.array(_dev(obj))
    transfers["to_device"] += 1
    return obj


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(obj, ndarray):
        return ndarray._of(_np.array(obj._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    return ndarray._of(_np.array(_from(obj), dtype=dtype, order=order, ndmin=ndmin))


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        r = _np.asarray(a._a, dtype=dtype, order=order)
        return a if r is a._a else ndarray._of(r)
    return ndarray._of(_np.array(_from(a), dtype=dtype, order=order))


asanyarray = asarray


def asnumpy(a, stream=None, order="C", out=None):
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return _np.asarray(a, order=order)


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise TypeError(f"Argument 'a' has incorrect type (expected cupy.ndarray, got "
                        f"{type(a).__name__})")
    r = _np.ascontiguousarray(a._a, dtype=dtype)
    return a if r is a._a else ndarray._of(r)


def get_array_module(*args):
    return _this if builtins.any(isinstance(a, ndarray) for a in args) else _np


for _name in ("zeros", "ones", "empty", "full", "arange", "linspace", "eye", "identity",
              "zeros_like", "ones_like", "empty_like", "full_like"):
    globals()[_name] = _device_function(getattr(_np, _name))

# ----------------------------------------------------------------- other device functions

for _name in ("reshape", "transpose", "concatenate", "stack", "vstack", "hstack", "split",
              "where", "clip", "sum", "mean", "var", "std", "max", "min", "amax", "amin",
              "argmax", "argmin", "prod", "cumsum", "all", "any", "dot", "matmul", "tensordot",
              "einsum", "outer", "pad", "broadcast_to", "broadcast_arrays", "expand_dims",
              "squeeze", "moveaxis", "swapaxes", "flip", "roll", "tile", "repeat", "take",
              "take_along_axis", "sort", "argsort", "ravel", "diag", "tril", "triu", "trace",
              "allclose", "isclose", "array_equal", "count_nonzero", "nonzero", "unique",
              "around", "round", "nansum",
              "atleast_1d", "atleast_2d", "cross", "diff", "meshgrid", "searchsorted",
              "histogram", "nan_to_num", "copy", "shape", "ndim", "size", "copyto"):
    if hasattr(_np, _name):
        globals()[_name] = _device_function(getattr(_np, _name), _name)

for _name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
              "uint32", "uint64", "bool_", "complex64", "complex128", "dtype", "finfo", "iinfo",
              "result_type", "promote_types", "can_cast", "newaxis", "inf", "nan", "pi", "e",
              "isscalar", "integer", "floating", "number", "generic"):
    globals()[_name] = getattr(_np, _name)


class linalg:
    norm = staticmethod(_device_function(_np.linalg.norm, "norm"))
    svd = staticmethod(_device_function(_np.linalg.svd, "svd"))
    qr = staticmethod(_device_function(_np.linalg.qr, "qr"))
    inv = staticmethod(_device_function(_np.linalg.inv, "inv"))
    solve = staticmethod(_device_function(_np.linalg.solve, "solve"))
    det = staticmethod(_device_function(_np.linalg.det, "det"))
    slogdet = staticmethod(_device_function(_np.linalg.slogdet, "slogdet"))
    cholesky = staticmethod(_device_function(_np.linalg.cholesky, "cholesky"))
    eigh = staticmethod(_device_function(_np.linalg.eigh, "eigh"))


class random:
    """cupy.random's samplers that scratchgen's benchmarks use (NumPy's PCG64 here)."""
    _gen = _np.random.default_rng(0)

    @staticmethod
    def seed(seed=None):
        random._gen = _np.random.default_rng(seed)

    @staticmethod
    def standard_normal(size=None, dtype=float):
        return _wrap(random._gen.standard_normal(size, dtype=dtype))

    @staticmethod
    def random_sample(size=None, dtype=float):
        return _wrap(random._gen.random(size, dtype=dtype))


# ---------------------------------------------------------------------------- CUDA side

class _Device:
    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        self.compute_capability = "00"

    def synchronize(self):
        pass

    def use(self):
        return self

    __enter__ = use

    def __exit__(self, *exc):
        pass


class _Event:
    def __init__(self, *args, **kw):
        self.t = None

    def record(self, stream=None):
        self.t = time.perf_counter()

    def synchronize(self):
        pass


class _runtime:
    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def runtimeGetVersion():
        return 13000

    @staticmethod
    def driverGetVersion():
        return 13000

    @staticmethod
    def getDeviceProperties(device):
        return {"name": b"CuPy stand-in (NumPy)", "major": 0, "minor": 0,
                "totalGlobalMem": 0}


class _MemoryPool:
    def free_all_blocks(self):
        pass

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0


_pool = _MemoryPool()


class cuda:
    Device = _Device
    Event = _Event
    runtime = _runtime

    @staticmethod
    def get_elapsed_time(start, end):
        return (end.t - start.t) * 1e3

    @staticmethod
    def get_current_stream():
        return _Stream


class _Stream:
    @staticmethod
    def synchronize():
        pass


def get_default_memory_pool():
    return _pool


# --------------------------------------------------------------------------- kernels

def _emulator():
    from scratchgen.kernels.cuda import _emulator
    return _emulator


class RawModule:
    """cupy.RawModule: the source compiled for the host, each launch the real C."""
    _cls = None

    def __init__(self, code=None, options=(), **kw):
        if RawModule._cls is None:
            RawModule._cls = _emulator().raw_module_class(build_host=True, collapse=True)
        self._mod = RawModule._cls(code=code, options=options)

    def get_function(self, name):
        return RawKernel._of(self._mod.get_function(name))


class RawKernel:
    def __init__(self, code, name, options=(), **kw):
        self._k = RawModule(code=code, options=options).get_function(name)._k

    @classmethod
    def _of(cls, k):
        self = object.__new__(cls)
        self._k = k
        return self

    def __call__(self, grid, block, args, **kw):
        grid = tuple(grid) if isinstance(grid, tuple) else (grid,)
        block = tuple(block) if isinstance(block, tuple) else (block,)
        self._k(grid, block, tuple(_dev(a) for a in args))


_this = sys.modules[__name__]
del _name, _form
