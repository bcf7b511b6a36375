"""Operators and PyTorch-style methods on Tensor, bound to the primitives."""
from scratchgen.autograd.tensor import Tensor
from scratchgen import functional as F
from scratchgen.ops import elementwise as E, shape as S


def _cmp(op):
    def f(self, other):
        o = other.data if isinstance(other, Tensor) else other
        return Tensor._wrap(op(self.data, o))
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
    dim=lambda s: s.data.ndim, numel=lambda s: s.data.size,
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
)

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)
