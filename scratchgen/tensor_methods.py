"""Operators and PyTorch-style methods on Tensor, bound to the primitives.

Bound here, above the ops, so the engine (:mod:`scratchgen.autograd`) imports no layer above
it. ``t.size`` is NumPy's element count and PyTorch's method at once: an ``int`` that is also
callable, so ``t.size == t.numel()`` and ``t.size() == t.shape``, ``t.size(1) == t.shape[1]``.

In-place methods (``fill_``, ``zero_``, ``normal_``, ``uniform_``, ``copy_``, ``clamp_``)
write the tensor's array and follow PyTorch's rule: a tensor that requires grad may be
modified in place only under ``sg.no_grad()``. There is no version counter: a tensor saved by
a graph and then modified in place under ``no_grad`` gives that graph's backward the new
values, silently (PyTorch raises).

>>> import scratchgen as sg
>>> t = sg.zeros(2, 3)
>>> t.size, t.size(), t.size(-1), t.numel()
(6, (2, 3), 3, 6)
>>> w = sg.nn.Parameter(sg.zeros(3))
>>> with sg.no_grad():
...     _ = w.fill_(0.5)
>>> w.tolist()
[0.5, 0.5, 0.5]
"""
import math

from scratchgen import backend, devices as D
from scratchgen.autograd import graph
from scratchgen.autograd.tensor import Tensor
from scratchgen import functional as F
from scratchgen.ops import elementwise as E, shape as S


def _cmp(op):
    def f(self, other):
        o = other.array if isinstance(other, Tensor) else other
        return Tensor._wrap(op(self.array, o))
    return f


def _shape_args(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape


def _squeeze(self, dim=None):
    if dim is None:
        return F.reshape(self, tuple(s for s in self.shape if s != 1))
    shape = list(self.shape)
    if shape[dim] != 1:
        return self
    del shape[dim]
    return F.reshape(self, tuple(shape))


def _unsqueeze(self, dim):
    shape = list(self.shape)
    shape.insert(dim % (len(shape) + 1), 1)
    return F.reshape(self, tuple(shape))


class _Size(int):
    """The element count (an int, as NumPy's ``size``) that is also ``torch.Tensor.size``."""

    def __new__(cls, shape):
        self = int.__new__(cls, math.prod(shape))
        self.shape = tuple(shape)
        return self

    def __call__(self, dim=None):
        if dim is None:
            return self.shape
        n = len(self.shape)
        if not -n <= dim < n:
            raise IndexError(f"size(dim={dim}) of a {n}-dimensional tensor")
        return self.shape[dim]


def norm(input, p="fro", dim=None, keepdim=False):
    """``torch.norm`` / ``torch.linalg.vector_norm``: (sum |x|^p)^(1/p) over ``dim`` (all
    elements by default); p may be inf or -inf. Its gradient at 0 is 0 (PyTorch's subgradient):
    the root is taken of ``where(s > 0, s, 1)``, so no 0 * inf ever forms, to any order.

    >>> import scratchgen as sg
    >>> x = sg.tensor([[3.0, 4.0], [0.0, 0.0]], requires_grad=True)
    >>> n = x.norm(dim=1)
    >>> n.tolist()
    [5.0, 0.0]
    >>> n.sum().backward(); x.grad.tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    if p in ("fro", None):
        p = 2
    if isinstance(p, str):
        raise ValueError(f"norm: p={p!r} is not supported (use a number, inf or 'fro')")
    if isinstance(dim, list):
        dim = tuple(dim)
    if p == math.inf:
        return F.amax(E.abs(input), dim, keepdim)
    if p == -math.inf:
        return F.amin(E.abs(input), dim, keepdim)
    if p == 0:
        return Tensor._wrap(backend.xp.sum(input.array != 0, axis=dim, keepdims=keepdim)
                            .astype(input.dtype))
    if p == 1:
        return F.sum(E.abs(input), dim, keepdim)
    s = F.sum(E.mul(input, input) if p == 2 else E.pow(E.abs(input), p), dim, keepdim)
    pos = s.array > 0
    root = E.sqrt(E.where(pos, s, 1.0)) if p == 2 else E.pow(E.where(pos, s, 1.0), 1.0 / p)
    return E.where(pos, root, 0.0)


def _inplace(name):
    def check(t):
        if t.requires_grad and graph.is_grad_enabled():
            where = ("a leaf tensor that requires grad" if t.is_leaf else
                     "a tensor that is part of a graph")
            raise RuntimeError(f"{name}: {where} cannot be modified in place while grad mode "
                               "is on; do it under `with sg.no_grad():` or with nn.init.*")
        return t.array
    return check



def _random_(name, draw):
    def f(self, *args, generator=None):
        from scratchgen.nn import init
        arr = _inplace(name)(self)
        values = draw(init._gen(generator), arr.shape, *args)
        arr[...] = backend.asarray(values, dtype=arr.dtype)
        return self
    f.__name__ = name
    return f


def _fill_(self, value):
    _inplace("fill_")(self)[...] = value.item() if isinstance(value, Tensor) else value
    return self


def _copy_(self, src, non_blocking=False):
    arr = _inplace("copy_")(self)
    arr[...] = src.array if isinstance(src, Tensor) else backend.asarray(src)
    return self


def _clamp_(self, min=None, max=None):
    arr = _inplace("clamp_")(self)
    backend.xp.clip(arr, min, max, out=arr)
    return self


def _to(self, *args, **kwargs):
    """``Tensor.to(device)``, ``.to(dtype)``, ``.to(other)``, ``.to(device, dtype)``: the
    device is checked (see :mod:`scratchgen.devices`), a new dtype is a differentiable cast."""
    _, dtype = D.parse_to(args, kwargs, "tensor")
    if dtype is None or backend.xp.dtype(dtype) == self.dtype:
        return self
    return self.astype(dtype)


def _cuda(self, device=None, non_blocking=False):
    D.check("cuda" if device is None else device)
    return self


def _cpu(self):
    D.check("cpu")
    return self


_METHODS = dict(
    __add__=lambda s, o: E.add(s, o), __radd__=lambda s, o: E.add(o, s),
    __sub__=lambda s, o: E.sub(s, o), __rsub__=lambda s, o: E.sub(o, s),
    __mul__=lambda s, o: E.mul(s, o), __rmul__=lambda s, o: E.mul(o, s),
    __truediv__=lambda s, o: E.div(s, o), __rtruediv__=lambda s, o: E.div(o, s),
    __pow__=lambda s, o: E.pow(s, o), __rpow__=lambda s, o: E.pow(o, s),
    __matmul__=lambda s, o: F.matmul(s, o), __rmatmul__=lambda s, o: F.matmul(o, s),
    __neg__=lambda s: E.neg(s), __pos__=lambda s: s, __abs__=lambda s: E.abs(s),
    __getitem__=lambda s, idx: F.index(s, idx),
    __lt__=_cmp(lambda a, b: a < b), __le__=_cmp(lambda a, b: a <= b),
    __gt__=_cmp(lambda a, b: a > b), __ge__=_cmp(lambda a, b: a >= b),
    __eq__=_cmp(lambda a, b: a == b), __ne__=_cmp(lambda a, b: a != b),
    sum=F.sum, mean=F.mean, var=F.var, max=F.max, min=F.min, amax=F.amax, amin=F.amin,
    argmax=F.argmax, argmin=F.argmin, logsumexp=F.logsumexp, softmax=F.softmax,
    log_softmax=F.log_softmax,
    add=lambda s, o: E.add(s, o), sub=lambda s, o: E.sub(s, o), mul=lambda s, o: E.mul(s, o),
    div=lambda s, o: E.div(s, o), neg=lambda s: E.neg(s), square=lambda s: E.mul(s, s),
    dim=lambda s: s.array.ndim, numel=lambda s: s.array.size,
    mT=property(lambda s: F.transpose(s, -2, -1)),
    exp=lambda s: E.exp(s), log=lambda s: E.log(s), sqrt=lambda s: E.sqrt(s),
    abs=lambda s: E.abs(s), sigmoid=lambda s: E.sigmoid(s), tanh=lambda s: E.tanh(s),
    relu=lambda s: E.relu(s), softplus=lambda s: E.softplus(s),
    pow=lambda s, o: E.pow(s, o),
    clamp=lambda s, min=None, max=None: E.clip(s, min=min, max=max),
    clip=lambda s, min=None, max=None: E.clip(s, min=min, max=max),
    reshape=lambda s, *shape: F.reshape(s, _shape_args(shape)),
    view=lambda s, *shape: F.reshape(s, _shape_args(shape)),
    permute=lambda s, *axes: F.permute(s, _shape_args(axes)),
    transpose=lambda s, dim0=-2, dim1=-1: F.transpose(s, dim0, dim1),
    T=property(lambda s: F.permute(s, tuple(range(s.ndim))[::-1])),
    broadcast_to=lambda s, *shape: F.broadcast_to(s, _shape_args(shape)),
    expand=lambda s, *shape: F.broadcast_to(s, _shape_args(shape)),
    flatten=lambda s, start_dim=0, end_dim=-1: F.flatten(s, start_dim, end_dim),
    squeeze=_squeeze, unsqueeze=_unsqueeze,
    matmul=lambda s, o: F.matmul(s, o),
    size=property(lambda s: _Size(s.array.shape)),
    view_as=lambda s, other: F.reshape(s, tuple(other.shape)),
    reshape_as=lambda s, other: F.reshape(s, tuple(other.shape)),
    expand_as=lambda s, other: F.broadcast_to(s, tuple(other.shape)),
    type_as=lambda s, other: s.astype(other.dtype) if s.dtype != other.dtype else s,
    eq=_cmp(lambda a, b: a == b), ne=_cmp(lambda a, b: a != b), lt=_cmp(lambda a, b: a < b),
    le=_cmp(lambda a, b: a <= b), gt=_cmp(lambda a, b: a > b), ge=_cmp(lambda a, b: a >= b),
    norm=norm,
    all=lambda s, dim=None, keepdim=False: Tensor._wrap(
        backend.xp.all(s.array, axis=dim, keepdims=keepdim)),
    any=lambda s, dim=None, keepdim=False: Tensor._wrap(
        backend.xp.any(s.array, axis=dim, keepdims=keepdim)),
    long=lambda s: s.astype("int64"), int=lambda s: s.astype("int32"),
    bool=lambda s: Tensor._wrap(s.array.astype(bool)),
    fill_=_fill_, zero_=lambda s: _fill_(s, 0), copy_=_copy_, clamp_=_clamp_,
    normal_=_random_("normal_", lambda g, shape, mean=0.0, std=1.0: g.normal(mean, std, shape)),
    uniform_=_random_("uniform_", lambda g, shape, a=0.0, b=1.0: g.uniform(a, b, shape)),
    to=_to, cuda=_cuda, cpu=_cpu,
    device=property(lambda s: D.current()),
    is_cuda=property(lambda s: backend.name == "cuda"),
)

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)
