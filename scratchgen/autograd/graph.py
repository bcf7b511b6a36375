"""The define-by-run graph: primitives, recording, and reverse-mode differentiation.

A *primitive* holds a forward on raw arrays and, beside it, one VJP per argument written in
differentiable primitives: ``vjp(g, ans, *args, **params) -> gradient for that argument``,
where ``ans`` is the output Tensor. Because VJPs record like any other op when
``create_graph=True``, higher derivatives are exact; otherwise they run under ``no_grad`` and
build nothing. Each output keeps ``(primitive, args, params)``: its inputs, and itself as
``ans``. Gradients are summed back to each input's shape in one place (``_accumulate``).
"""
import contextlib
import numbers
import threading

import numpy

from scratchgen import backend

_tls = threading.local()


def is_grad_enabled():
    return getattr(_tls, "enabled", True)


def _set_grad_enabled(flag):
    prev = is_grad_enabled()
    _tls.enabled = flag
    return prev


@contextlib.contextmanager
def no_grad():
    """Context (and decorator) in which no op records a graph."""
    prev = _set_grad_enabled(False)
    try:
        yield
    finally:
        _tls.enabled = prev


@contextlib.contextmanager
def enable_grad():
    prev = _set_grad_enabled(True)
    try:
        yield
    finally:
        _tls.enabled = prev


class Primitive:
    """An op with a forward on raw arrays and per-argument VJPs beside it."""

    def __init__(self, fwd, name=None):
        self.name = name or fwd.__name__
        self.fwd = fwd
        self.vjps = None
        self.__doc__ = fwd.__doc__

    def defvjp(self, *vjps):
        """Register ``vjp_i(g, ans, *args, **params)`` for argument i (None: not differentiable)."""
        self.vjps = vjps
        return self

    def defvjp_argnum(self, vjp):
        """Register one ``vjp(i, g, ans, *args, **params)`` for a variadic primitive."""
        self.vjps = vjp
        return self

    def vjp(self, i, g, ans, args, params):
        vjps = self.vjps
        if callable(vjps):
            return vjps(i, g, ans, *args, **params)
        f = vjps[i] if i < len(vjps) else None
        if f is None:
            raise RuntimeError(f"{self.name}: argument {i} is not differentiable")
        return f(g, ans, *args, **params)

    def __call__(self, *args, **params):
        return apply(self, args, params)

    def __repr__(self):
        return f"<primitive {self.name}>"


def primitive(fwd):
    """Decorator: turn a forward on raw arrays into a :class:`Primitive`."""
    return Primitive(fwd)


class Node:
    """What an output keeps for backward: its primitive, inputs (args) and params."""

    __slots__ = ("prim", "args", "params")

    def __init__(self, prim, args, params):
        self.prim = prim
        self.args = args
        self.params = params


_Tensor = None  # set by tensor.py (avoids an import cycle)
_scalar_types = (int, float, bool)
_KINDS = {"c": "complex", "O": "object", "U": "string", "S": "bytes", "M": "datetime",
          "m": "timedelta", "V": "structured"}


def check_operand(a, what, other_backend_ok=False):
    """Refuse what a tensor cannot hold or meet, with one line naming the kind: complex,
    object, string or masked arrays, non-float numbers (complex, Fraction, Decimal), and
    (unless ``other_backend_ok``: data that sg.tensor copies over) arrays of another backend.
    Real arrays, Python/NumPy reals and non-numbers (shapes, slices) pass."""
    if not other_backend_ok and backend.is_foreign_array(a):
        backend.check_array(a, what)
    dtype = getattr(a, "dtype", None)
    if dtype is not None:
        if isinstance(a, numpy.ma.MaskedArray):
            raise TypeError(f"{what} is a masked array; tensors have no mask: pass "
                            "a.filled(value) or the selected elements instead")
        if dtype.kind not in "biuf":
            kind = _KINDS.get(dtype.kind, str(dtype))
            raise TypeError(f"{what} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} "
                            f"{'array' if getattr(a, 'ndim', 0) else 'number'} ({dtype}); "
                            "tensors hold real numbers (bool, int, float)")
    elif isinstance(a, numbers.Number) and not isinstance(a, _scalar_types):
        raise TypeError(f"{what} is a {type(a).__name__} ({a!r}); tensors hold real numbers: "
                        "convert it with float(...)")


def apply(prim, args, params):
    """Run ``prim`` forward on the raw data of ``args``; record a node if a gradient may flow."""
    T = _Tensor
    raw = []
    needs = False
    for a in args:
        if isinstance(a, T):
            raw.append(a.array)
            if a.requires_grad:
                needs = True
        else:
            if a is not None and not isinstance(a, _scalar_types):
                check_operand(a, f"an argument of {prim.name}")
            raw.append(a)
    out = prim.fwd(*raw, **params)
    t = T.__new__(T)
    t.array = out
    t.grad = None
    if needs and getattr(_tls, "enabled", True):
        t.requires_grad = True
        t._node = Node(prim, args, params)
    else:
        t.requires_grad = False
        t._node = None
    return t


def _toposort(roots):
    """Tensors reachable from ``roots`` through recorded nodes, inputs before outputs.

    Iterative depth-first post-order, so graph depth is bounded by memory, not recursion.
    """
    T = _Tensor
    order, seen = [], set()
    stack = [(r, False) for r in roots]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        node = t._node
        if node is not None:
            if node.args is None:
                raise RuntimeError(
                    "Trying to backward through the graph a second time: its saved tensors were "
                    "freed by the first backward. Pass retain_graph=True to the first call.")
            for a in node.args:
                if isinstance(a, T) and a.requires_grad and id(a) not in seen:
                    stack.append((a, False))
    return order


def _sum_to(g, shape):
    """Sum a broadcast gradient back to ``shape`` (the one place broadcasting is undone)."""
    if g.shape == shape:
        return g
    from scratchgen.ops.shape import sum_to
    return sum_to(g, shape)


def _own(g, owned):
    """A detached gradient that no other leaf shares and that is not a broadcast view, so
    in-place edits of ``.grad`` (clipping, scaling) touch only that leaf."""
    d = g.array
    if id(d) in owned or 0 in d.strides:
        d = d.copy()
    owned.add(id(d))
    return _Tensor._wrap(d)


def _backprop(outputs, grad_outputs, targets, create_graph, retain_graph, accumulate_leaves):
    """Reverse sweep. Returns {id(target): grad Tensor} for ``targets`` (may be None: all leaves)."""
    T = _Tensor
    order = _toposort(outputs)
    # Keep only tensors from which a target is reachable, so no unwanted gradient is computed.
    if targets is None:
        relevant = None
    else:
        relevant = set(id(t) for t in targets)
        for t in order:
            node = t._node
            if node is not None and id(t) not in relevant:
                for a in node.args:
                    if isinstance(a, T) and id(a) in relevant:
                        relevant.add(id(t))
                        break
    grads = {}
    for o, go in zip(outputs, grad_outputs):
        grads[id(o)] = go if id(o) not in grads else grads[id(o)] + go
    result = {}
    owned = set()
    target_ids = None if targets is None else set(id(t) for t in targets)
    prev = _set_grad_enabled(create_graph)
    try:
        for t in reversed(order):
            tid = id(t)
            g = grads.pop(tid, None)
            node = t._node
            if target_ids is not None and tid in target_ids:
                result[tid] = g
            if g is None:
                continue
            if node is None:
                if accumulate_leaves:
                    if t.grad is None:
                        t.grad = g if create_graph else _own(g, owned)
                    else:
                        t.grad = t.grad + g
                continue
            if relevant is not None and tid not in relevant:
                continue
            args, params, prim = node.args, node.params, node.prim
            vjps = prim.vjps
            for i, a in enumerate(args):
                if not (isinstance(a, T) and a.requires_grad):
                    continue
                if relevant is not None and id(a) not in relevant:
                    continue
                if type(vjps) is tuple and i < len(vjps) and vjps[i] is not None:
                    gi = vjps[i](g, t, *args, **params) if params else vjps[i](g, t, *args)
                else:  # a variadic primitive's VJP, or the error for a missing one
                    gi = prim.vjp(i, g, t, args, params)
                if gi is None:
                    continue
                shape = a.array.shape
                if gi.array.shape != shape:
                    gi = _sum_to(gi, shape)
                aid = id(a)
                prev_g = grads.get(aid)
                if prev_g is None:
                    grads[aid] = gi
                elif create_graph:
                    grads[aid] = prev_g + gi
                else:  # nothing records: the arrays' sum, without an op's bookkeeping
                    grads[aid] = T._wrap(prev_g.array + gi.array)
            if not retain_graph:
                node.args = None
                node.params = None
    finally:
        _tls.enabled = prev
    return result


def _as_tensor_grad(g, like):
    T = _Tensor
    if g is None:
        return T._wrap(backend.xp.ones_like(like.array))
    if isinstance(g, T):
        if g.shape != like.shape:
            raise ValueError(f"grad has shape {g.shape} but the output has shape {like.shape}")
        return g
    g = T._wrap(backend.asarray(g, dtype=like.dtype))
    if g.shape != like.shape:
        raise ValueError(f"grad has shape {g.shape} but the output has shape {like.shape}")
    return g


def backward(t, grad=None, retain_graph=None, create_graph=False):
    """Accumulate d t / d leaf into each leaf's ``.grad`` (see :meth:`Tensor.backward`)."""
    if not t.requires_grad:
        raise RuntimeError("backward() on a tensor that does not require grad and has no graph")
    if grad is None and t.array.size != 1:
        raise RuntimeError(
            f"backward() without a gradient needs a scalar output; got shape {t.shape}. "
            "Pass grad= (a tensor of that shape), or reduce first (e.g. .sum()).")
    if retain_graph is None:
        retain_graph = create_graph
    _backprop([t], [_as_tensor_grad(grad, t)], None, create_graph, retain_graph, True)


def grad(outputs, inputs, grad_outputs=None, create_graph=False, retain_graph=None,
         allow_unused=False, only_inputs=True):
    """Gradients of ``outputs`` w.r.t. ``inputs`` as a tuple, like ``torch.autograd.grad``.

    ``only_inputs`` is accepted for old PyTorch code and ignored (as in PyTorch, where it is
    deprecated): no other leaf's ``.grad`` is ever touched.

    ``grad_outputs`` weights each output (the v in v^T J); None means ones for scalars.
    With ``create_graph=True`` the returned gradients are themselves differentiable.

    >>> import scratchgen as sg
    >>> x = sg.tensor([1.0, 2.0], requires_grad=True)
    >>> (g,) = sg.grad((x ** 3).sum(), x, create_graph=True)
    >>> g.numpy().tolist(), sg.grad(g.sum(), x)[0].numpy().tolist()
    ([3.0, 12.0], [6.0, 12.0])
    """
    T = _Tensor
    single_out = isinstance(outputs, T)
    outputs = [outputs] if single_out else list(outputs)
    inputs = [inputs] if isinstance(inputs, T) else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, T) or not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for i, o in enumerate(outputs):
        if not o.requires_grad:
            raise RuntimeError(f"output {i} does not require grad and has no graph")
        if grad_outputs[i] is None and o.array.size != 1:
            raise RuntimeError(f"output {i} has shape {o.shape}: grad_outputs is needed for a "
                               "non-scalar output")
    for i, x in enumerate(inputs):
        if not x.requires_grad:
            raise RuntimeError(f"input {i} does not require grad")
    if retain_graph is None:
        retain_graph = create_graph
    gos = [_as_tensor_grad(g, o) for g, o in zip(grad_outputs, outputs)]
    res = _backprop(outputs, gos, inputs, create_graph, retain_graph, False)
    out = []
    for i, x in enumerate(inputs):
        g = res.get(id(x))
        if g is None and not allow_unused:
            raise RuntimeError(f"input {i} (shape {x.shape}) was not used to compute the outputs;"
                               " pass allow_unused=True to get None for it")
        if g is not None and not create_graph:
            g = g.detach()
        out.append(g)
    return tuple(out)
