"""Tensor: an array of the active backend, and its place in the graph."""
import numpy

from scratchgen import backend
from scratchgen.autograd import graph

_FLOAT_KINDS = "f"


def _to_array(x, dtype=None):
    """Array of the active backend. Python numbers (and lists of them) become float32;
    NumPy/CuPy arrays keep their dtype."""
    if isinstance(x, Tensor):
        x = x.array
    graph.check_operand(x, "the data", other_backend_ok=True)
    if dtype is not None:
        return backend.asarray(x, dtype=backend.xp.dtype(dtype))
    if backend.is_array(x) or hasattr(x, "dtype"):
        return backend.asarray(x)
    host = numpy.asarray(x)  # checked before the copy to the device (CuPy has its own error)
    graph.check_operand(host, "the data", other_backend_ok=True)  # e.g. complex, Fractions
    arr = backend.asarray(host)
    if arr.dtype.kind in "iuf":
        arr = arr.astype(backend.xp.float32)
    return arr


class Tensor:
    """An n-dimensional array with reverse-mode autodiff.

    ``.array`` is the backend's ndarray (NumPy or CuPy); ``.data`` is PyTorch's: this tensor
    outside the graph, sharing that array; ``.grad`` is filled by :meth:`backward`.

    >>> import scratchgen as sg
    >>> x = sg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad.numpy().tolist()
    [[2.0, 4.0], [6.0, 8.0]]
    """

    __slots__ = ("array", "grad", "requires_grad", "_node", "__weakref__")
    __array_priority__ = 1000  # numpy_array + tensor -> Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None):
        self.array = _to_array(data, dtype)
        self.grad = None
        self._node = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, arr):
        t = cls.__new__(cls)
        t.array = arr
        t.grad = None
        t.requires_grad = False
        t._node = None
        return t

    # ---- attributes ---------------------------------------------------------------
    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)
    ndim = property(lambda self: self.array.ndim)
    size = property(lambda self: self.array.size)
    is_leaf = property(lambda self: self._node is None)

    @property
    def data(self):
        """PyTorch's ``.data``: a tensor outside the graph (no grad, no grad_fn) sharing this
        tensor's array, so in-place methods on it change this tensor and are never refused
        or recorded (``p.data.normal_(0, 0.02)``). ``t.data = x`` gives ``t`` the array of
        ``x`` (a tensor or an array, any shape, shared) and keeps its grad and graph place.

        >>> import scratchgen as sg
        >>> w = sg.nn.Parameter(sg.zeros(2))
        >>> _ = w.data.fill_(1.0)
        >>> w.tolist(), w.data.requires_grad, w.data.array is w.array
        ([1.0, 1.0], False, True)
        """
        return Tensor._wrap(self.array)

    @data.setter
    def data(self, value):
        arr = _to_array(value)
        if self.requires_grad and arr.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f".data = an array of {arr.dtype} on a tensor that requires grad "
                            "(it must be floating point)")
        self.array = arr

    def __len__(self):
        return len(self.array)

    def requires_grad_(self, flag=True):
        if flag and self.array.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"only floating-point tensors can require grad; this one is "
                            f"{self.array.dtype} (convert with .float() or .double())")
        if not flag and self._node is not None:
            raise RuntimeError("requires_grad_(False) on a non-leaf; use .detach()")
        self.requires_grad = bool(flag)
        return self

    def numpy(self):
        """A host NumPy copy-free view (CPU) or copy (GPU); detached from the graph."""
        return backend.to_numpy(self.array)

    def item(self):
        if self.array.size != 1:
            raise ValueError(f"item() needs a single element; shape is {self.shape}")
        return self.array.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def detach(self):
        """The same data, outside the graph."""
        return Tensor._wrap(self.array)

    def clone(self):
        from scratchgen.ops import elementwise as E
        return E.pos(self)

    def astype(self, dtype):
        from scratchgen.ops import elementwise as E
        return E.cast(self, dtype=backend.xp.dtype(dtype))

    def float(self):
        return self.astype("float32")

    def double(self):
        return self.astype("float64")

    def zero_grad(self):
        self.grad = None

    def backward(self, grad=None, retain_graph=None, create_graph=False):
        """Accumulate this tensor's gradient into every leaf that requires grad.

        ``grad`` may be omitted only for a single-element tensor (then it is 1).
        """
        graph.backward(self, grad, retain_graph, create_graph)

    def __repr__(self):
        import numpy
        a = self.numpy()
        body = numpy.array2string(a, separator=", ", prefix="tensor(")
        extra = "" if a.dtype == numpy.float32 else f", dtype={a.dtype}"
        extra += ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({body}{extra})"

    def __bool__(self):
        if self.array.size != 1:
            raise ValueError(f"truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.array)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    __hash__ = object.__hash__


def tensor(x, requires_grad=False, dtype=None):
    """A new leaf tensor on the active backend.

    Python floats and ints become float32; arrays keep their dtype (float64 stays float64).
    """
    return Tensor(x, requires_grad=requires_grad, dtype=dtype)


graph._Tensor = Tensor
