"""Shape primitives: views and copies that move elements without arithmetic."""
from scratchgen import backend
from scratchgen.autograd.graph import primitive
from scratchgen.autograd.tensor import Tensor



def _data(a):
    return a.array if isinstance(a, Tensor) else a


@primitive
def reshape(x, shape):
    return x.reshape(shape)


reshape.defvjp(lambda g, ans, x, shape: reshape(g, _data(x).shape))


@primitive
def permute(x, axes):
    return x.transpose(axes)


def _inverse(axes):
    inv = [0] * len(axes)
    for i, a in enumerate(axes):
        inv[a] = i
    return tuple(inv)


permute.defvjp(lambda g, ans, x, axes: permute(g, _inverse(axes)))


def _dim_or_axis(name, dim, axis):
    if dim is None:
        return axis
    if axis != 0:
        raise TypeError(f"{name}() got both dim= and axis= (the same argument)")
    return dim


def transpose(x, dim0=-2, dim1=-1):
    """Swap two axes (PyTorch's ``transpose``)."""
    n = _data(x).ndim
    axes = list(range(n))
    axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
    return permute(x, tuple(axes))


@primitive
def broadcast_to(x, shape):
    return backend.xp.broadcast_to(x, shape)


broadcast_to.defvjp(lambda g, ans, x, shape: sum_to(g, _data(x).shape))


@primitive
def sum_to(x, shape):
    """Sum a broadcast array down to ``shape`` (the adjoint of broadcast_to)."""
    shape = tuple(shape)
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and x.shape[i + lead] != 1)
    y = x.sum(axis=axes, keepdims=True) if axes else x
    if lead:
        y = y.reshape(y.shape[lead:])
    return y


sum_to.defvjp(lambda g, ans, x, shape: broadcast_to(g, _data(x).shape))


@primitive
def concatenate(*xs, axis=0):
    return backend.xp.concatenate(xs, axis=axis)


def _concat_vjp(i, g, ans, *xs, axis=0):
    start = 0
    for x in xs[:i]:
        start += _data(x).shape[axis]
    stop = start + _data(xs[i]).shape[axis]
    idx = [slice(None)] * g.ndim
    idx[axis] = slice(start, stop)
    return getitem(g, tuple(idx))


concatenate.defvjp_argnum(_concat_vjp)


def cat(tensors, axis=0, *, dim=None):
    """Concatenate a sequence of tensors along ``axis`` (or PyTorch's ``dim``)."""
    axis = _dim_or_axis("cat", dim, axis)
    tensors = list(tensors)
    _same_shapes(f"concatenate along axis {axis}", tensors, except_axis=axis)
    return concatenate(*tensors, axis=axis)


def _same_shapes(what, tensors, except_axis=None):
    """Tensor 0's shape, after checking every tensor has it (but for ``except_axis``)."""
    if not tensors:
        raise ValueError(f"{what} needs at least one tensor")
    s0 = _data(tensors[0]).shape
    skip = None if except_axis is None else except_axis % max(len(s0), 1)
    for k, t in enumerate(tensors):
        sk = _data(t).shape
        if len(sk) != len(s0) or any(a != b for j, (a, b) in enumerate(zip(s0, sk)) if j != skip):
            raise ValueError(f"{what}: tensor {k} has shape {sk}, incompatible with tensor 0's "
                             f"{s0}")
    return s0


def stack(tensors, axis=0, *, dim=None):
    """Stack along a new axis (``axis`` or PyTorch's ``dim``): reshape each (a size-1 axis) and
    concatenate."""
    axis = _dim_or_axis("stack", dim, axis)
    tensors = list(tensors)
    shape = _same_shapes("stack", tensors)
    ax = axis % (len(shape) + 1)
    new = shape[:ax] + (1,) + shape[ax:]
    return concatenate(*[reshape(t, new) for t in tensors], axis=ax)


def _raw_index(idx):
    if isinstance(idx, tuple):
        return tuple(_raw_index(i) for i in idx)
    if isinstance(idx, Tensor):
        return idx.array
    if isinstance(idx, list):
        return backend.asarray(idx)
    return idx


def _is_basic(idx):
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in items)


@primitive
def getitem(x, idx):
    return x[idx]


getitem.defvjp(lambda g, ans, x, idx: index_scatter(g, _data(x).shape, idx))


@primitive
def index_scatter(g, shape, idx):
    """Zeros of ``shape`` with ``g`` added at ``x[idx]`` (repeated indices accumulate)."""
    out = backend.xp.zeros(shape, dtype=g.dtype)
    if _is_basic(idx):
        out[idx] = g
    else:
        backend.xp.add.at(out, idx, g)
    return out


index_scatter.defvjp(lambda g, ans, x, shape, idx: getitem(g, idx))


def index(x, idx):
    """``x[idx]`` with NumPy semantics (ints, slices, None, Ellipsis, integer/bool arrays)."""
    return getitem(x, _raw_index(idx))


@primitive
def pad(x, pad_width, value=0.0):
    """Constant padding; ``pad_width`` is NumPy's ((before, after), ...) per axis."""
    return backend.xp.pad(x, pad_width, mode="constant", constant_values=value)


def _pad_vjp(g, ans, x, pad_width, value=0.0):
    idx = tuple(slice(b, b + n) for (b, _), n in zip(pad_width, _data(x).shape))
    return getitem(g, idx)


pad.defvjp(_pad_vjp, None)


def normalize_pad(pad_width, ndim):
    """Accept an int, a (before, after) pair, or one pair per axis."""
    if isinstance(pad_width, int):
        return tuple((pad_width, pad_width) for _ in range(ndim))
    pw = tuple(pad_width)
    if len(pw) == 2 and all(isinstance(p, int) for p in pw):
        return tuple(pw for _ in range(ndim))
    if len(pw) != ndim:
        raise ValueError(f"pad_width has {len(pw)} pairs for a tensor with {ndim} dimensions")
    return tuple((int(a), int(b)) for a, b in pw)
