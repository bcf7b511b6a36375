"""The gradient-check table: every primitive, declared once as a :class:`Case`.

A case's ``make(d)`` uses a :class:`Draw` ``d`` to choose a configuration (shapes, axes,
strides, indices) and float64 values away from the function's kinks, and returns
``(fn, arrays)``: ``fn`` takes one tensor per array and every array is checked. The tests
(``tests/test_grad_properties.py``) drive the choices with hypothesis; ``scratchgen gradcheck``
(``scratchgen.cli_gradcheck``) with a seeded NumPy Generator. Inputs stay small (<= ~60
elements; conv inputs tiny): the checks take O(numel) forward evaluations per input.

>>> import numpy as np, scratchgen as sg
>>> from scratchgen.gradcases import CASES, Draw
>>> fn, arrays = CASES["mul"].make(Draw(np.random.default_rng(0)))
>>> sg.gradgradcheck(fn, [sg.tensor(a, requires_grad=True) for a in arrays])
True
"""
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

import scratchgen as sg
import scratchgen.functional as F
from scratchgen.ops.conv import _channel_sum
from scratchgen.ops.elementwise import _relu_mask

MARGIN = 1e-3  # distance kept from kinks and ties; the checks perturb by eps = 1e-6


class Draw:
    """Choices for one case instance. Structure comes from :meth:`int` (hypothesis overrides
    it, so shrinking works on shapes and parameters); values come from ``self.rng``."""

    def __init__(self, rng):
        self.rng = rng

    def int(self, lo, hi):
        """An integer in [lo, hi]."""
        return int(self.rng.integers(lo, hi + 1))

    def choice(self, options):
        return options[self.int(0, len(options) - 1)]

    def bool(self):
        return self.int(0, 1) == 1

    # ---- shapes --------------------------------------------------------------------
    def shape(self, min_rank=0, max_rank=3, max_side=4, max_size=60):
        r = self.int(min_rank, max_rank)
        shape = []
        for _ in range(r):
            room = max(1, min(max_side, max_size // max(1, int(np.prod(shape, dtype=int)))))
            shape.append(self.int(1, room))
        return tuple(shape)

    def broadcast_shapes(self, n=2, max_rank=3):
        """``n`` shapes that broadcast together: some leading dims dropped (rank
        differences) and some dims set to 1."""
        out = self.shape(0, max_rank, max_side=4, max_size=36)
        shapes = []
        for _ in range(n):
            s = list(out[self.int(0, len(out)):] if out and self.int(0, 2) == 0 else out)
            for i in range(len(s)):
                if self.int(0, 2) == 0:
                    s[i] = 1
            shapes.append(tuple(s))
        return shapes

    # ---- values --------------------------------------------------------------------
    def normal(self, shape, scale=1.0):
        return scale * self.rng.standard_normal(shape)

    def uniform(self, shape, lo, hi):
        return self.rng.uniform(lo, hi, shape)

    def away(self, shape, points=(0.0,), scale=1.0, margin=MARGIN):
        """Normal values at least ``margin`` from each of ``points`` (kinks)."""
        x = np.asarray(self.normal(shape, scale))
        for _ in range(100):
            bad = np.zeros(x.shape, bool)
            for p in points:
                bad |= np.abs(x - p) <= margin
            if not bad.any():
                return x
            x[bad] = self.normal(int(bad.sum()), scale)
        raise RuntimeError("could not draw values away from the kinks")

    def distinct(self, shape, spacing=0.25):
        """Values in random order with gaps >= spacing/2 (no ties, for max)."""
        n = int(np.prod(shape, dtype=int))
        v = (self.rng.permutation(n) - n / 2) * spacing + self.rng.uniform(0, spacing / 2, n)
        return v.reshape(shape)

    def signed(self, shape, lo=0.5, hi=2.0):
        """|x| in [lo, hi] with a random sign (e.g. a divisor)."""
        return self.uniform(shape, lo, hi) * self.rng.choice([-1.0, 1.0], size=shape)

    def axis(self, ndim):
        """None, an int (maybe negative) or a tuple of axes of an ``ndim``-D tensor."""
        kind = self.int(0, 2) if ndim else 0
        if kind == 0:
            return None
        if kind == 1:
            return self.int(-ndim, ndim - 1)
        return tuple(a for a in range(ndim) if self.bool()) or (self.int(0, ndim - 1),)


@dataclass(frozen=True)
class Case:
    """One gradient check: ``make(d) -> (fn, arrays)``; ``examples`` overrides the number of
    hypothesis examples (None: the profile's)."""
    name: str
    make: Callable
    examples: Optional[int] = None


_CASES = []


def case(name, examples=None):
    def register(make):
        _CASES.append(Case(name, make, examples))
        return make
    return register


# ---- elementwise ----------------------------------------------------------------------
def _binary(name, op, lhs=Draw.normal, rhs=Draw.normal):
    @case(name)
    def make(d):
        sa, sb = d.broadcast_shapes(2)
        return op, [lhs(d, sa), rhs(d, sb)]


_binary("add", F.add)
_binary("sub", F.sub)
_binary("mul", F.mul)
_binary("div", F.div, rhs=Draw.signed)
_binary("pow", F.pow, lhs=lambda d, s: d.uniform(s, 0.5, 2.0), rhs=lambda d, s: d.uniform(s, -2, 2))
_binary("operators", lambda a, b: (a + b) * a / (b * b + 1.0) - a ** 2)


@case("pow_scalar")
def _(d):
    p = d.choice([2, 3, -1, 0.5, 2.5, -1.5])
    x = d.signed(d.shape()) if isinstance(p, int) else d.uniform(d.shape(), 0.5, 2.0)
    return (lambda a: F.pow(a, p)), [x]


@case("pow_at_zero")  # 0 * inf in b a^(b-1): x ** 0 and x ** 1 must stay exact at x = 0
def _(d):
    s = d.shape(1, 3)
    x = np.where(d.rng.random(s) < 0.5, 0.0, d.normal(s))
    x.flat[0] = 0.0
    if d.bool():
        p = d.choice([0, 1, 0.0, 1.0])
        return (lambda a: F.pow(a, p)), [x]
    b = (d.rng.random(s) < 0.5).astype(np.float64)  # a tensor exponent of zeros and ones
    return (lambda a: F.pow(a, sg.tensor(b, dtype=a.dtype))), [x]


@case("rpow")  # number ** tensor
def _(d):
    base = d.choice([0.5, 2.0, 3.0])
    return (lambda a: base ** a), [d.uniform(d.shape(), -2, 2)]


def _unary(name, fn, values=lambda d, s: d.normal(s)):
    @case(name)
    def make(d):
        return fn, [values(d, d.shape())]


_unary("neg", F.neg)
_unary("clone", lambda a: a.clone() * a)
_unary("exp", F.exp, lambda d, s: d.uniform(s, -2, 2))
_unary("log", F.log, lambda d, s: d.uniform(s, 0.2, 3))
_unary("sqrt", F.sqrt, lambda d, s: d.uniform(s, 0.2, 3))
_unary("abs", F.abs, lambda d, s: d.away(s))
_unary("sigmoid", F.sigmoid, lambda d, s: d.normal(s, 3))
_unary("tanh", F.tanh, lambda d, s: d.normal(s, 2))
_unary("relu", F.relu, lambda d, s: d.away(s))
_unary("softplus", F.softplus, lambda d, s: d.normal(s, 3))
_unary("log_sigmoid", F.log_sigmoid, lambda d, s: d.normal(s, 3))
_unary("square", F.square)


@case("relu_mask")  # the VJP of relu and leaky_relu as a function of the upstream gradient
def _(d):
    s, slope = d.shape(), d.choice([0.0, 0.01, 0.2])
    a = d.away(s)
    return (lambda g: _relu_mask(g, sg.tensor(a, dtype=g.dtype), slope)), [d.normal(s)]


@case("leaky_relu")
def _(d):
    slope = d.choice([0.01, 0.2, 0.5])
    return (lambda a: F.leaky_relu(a, slope)), [d.away(d.shape())]


def _apart(d, sa, sb):
    """Two broadcastable arrays whose broadcast elements differ by more than MARGIN."""
    for _ in range(100):
        a, b = d.normal(sa), d.normal(sb)
        if np.all(np.abs(np.subtract(a, b)) > MARGIN):
            return a, b
    raise RuntimeError("could not draw distinct values")


for _name, _op in (("maximum", F.maximum), ("minimum", F.minimum)):
    @case(_name)
    def _(d, op=_op):
        sa, sb = d.broadcast_shapes(2)
        return op, list(_apart(d, sa, sb))


@case("where")
def _(d):
    sc, sa, sb = d.broadcast_shapes(3)
    cond = sg.tensor(d.rng.random(sc) < 0.5)
    return (lambda a, b: F.where(cond, a, b)), [d.normal(sa), d.normal(sb)]


@case("clip")
def _(d):
    lo, hi = d.choice([(-0.5, 0.7), (None, 0.3), (-0.2, None), (0.1, 0.2)])
    pts = [p for p in (lo, hi) if p is not None]
    return (lambda a: F.clip(a, lo, hi)), [d.away(d.shape(), pts)]


# ---- reductions -----------------------------------------------------------------------
def _reduction(name, fn, values=lambda d, s: d.normal(s), **extra):
    @case(name)
    def make(d):
        x = values(d, d.shape(1, 3))
        axis, keepdims = d.axis(x.ndim), d.bool()
        kw = {k: d.choice(v) for k, v in extra.items()}
        return (lambda a: fn(a, axis=axis, keepdims=keepdims, **kw)), [x]


_reduction("sum", F.sum)
_reduction("mean", F.mean)


@case("var")
def _(d):
    x = d.normal(d.shape(1, 3))
    axis, keepdims = d.axis(x.ndim), d.bool()
    n = int(np.prod([x.shape[a] for a in ((axis,) if isinstance(axis, int) else
                                          axis or range(x.ndim))]))
    unbiased = d.bool() and n > 1             # n - 1 = 0 degrees of freedom gives nan
    return (lambda a: F.var(a, axis=axis, keepdims=keepdims, unbiased=unbiased)), [x]


_reduction("max", F.max, lambda d, s: d.distinct(s))
_reduction("min", F.min, lambda d, s: d.distinct(s))
_reduction("logsumexp", F.logsumexp, lambda d, s: d.normal(s, 3))


@case("softmax")
def _(d):
    x = d.normal(d.shape(1, 3), 2)
    ax = d.int(-x.ndim, x.ndim - 1)
    return (lambda a: F.softmax(a, ax) * F.log_softmax(a, ax)), [x]


# ---- shape ----------------------------------------------------------------------------
@case("reshape")
def _(d):
    x = d.normal(d.shape(0, 3))
    n = x.size
    new = []
    while n > 1 and len(new) < 3:
        f = d.choice([k for k in range(1, n + 1) if n % k == 0])
        new.append(f)
        n //= f
    new.append(n)
    if d.bool():
        new[d.int(0, len(new) - 1)] = -1
    shape = tuple(int(v) for v in d.rng.permutation(new))
    return (lambda a: F.reshape(a, shape)), [x]


@case("permute")
def _(d):
    x = d.normal(d.shape(1, 4, max_side=3))
    axes = tuple(int(a) for a in d.rng.permutation(x.ndim))
    return (lambda a: F.permute(a, axes)), [x]


@case("transpose")
def _(d):
    x = d.normal(d.shape(2, 3))
    i, j = d.int(-x.ndim, x.ndim - 1), d.int(-x.ndim, x.ndim - 1)
    return (lambda a: F.transpose(a, i, j)), [x]


@case("broadcast_to")
def _(d):
    small, = d.broadcast_shapes(1)
    lead = tuple(d.int(1, 3) for _ in range(d.int(0, 2)))
    big = lead + tuple(s if s != 1 else d.int(1, 3) for s in small)
    return (lambda a: F.broadcast_to(a, big)), [d.normal(small)]


@case("sum_to")
def _(d):
    small, big = d.broadcast_shapes(2)
    big = tuple(np.broadcast_shapes(small, big))
    return (lambda a: F.sum_to(a, small)), [d.normal(big)]


@case("concatenate")
def _(d):
    base = list(d.shape(1, 3, max_size=12))
    axis = d.int(-len(base), len(base) - 1)
    shapes = []
    for _ in range(d.int(1, 3)):
        s = list(base)
        s[axis] = d.int(1, 3)
        shapes.append(tuple(s))
    return (lambda *xs: F.cat(xs, axis=axis)), [d.normal(s) for s in shapes]


@case("stack")
def _(d):
    s = d.shape(0, 3, max_size=15)
    axis = d.int(-len(s) - 1, len(s))
    return (lambda *xs: F.stack(xs, axis=axis)), [d.normal(s) for _ in range(d.int(1, 3))]


def _basic_index(d, shape):
    """ints (maybe negative), up to two Nones, slices with steps +-1/2, maybe an Ellipsis."""
    idx, dims, nones = [], 0, 0
    while dims < len(shape):
        n = shape[dims]
        kind = d.int(0, 4) if nones < 2 else d.choice([0, 2, 3, 4])
        if kind == 0:
            idx.append(d.int(-n, n - 1))
        elif kind == 1:
            idx.append(None)
            nones += 1
            continue
        elif kind == 2:
            idx.append(slice(None))
        else:
            step = d.choice([1, 2, -1, -2])
            a, b = d.int(-n, n), d.int(-n - 1, n)
            idx.append(slice(a, b, step) if kind == 3 else slice(None, None, step))
        dims += 1
    full = [k for k, i in enumerate(idx) if i == slice(None)]
    if full and d.bool():
        idx[full[0]] = Ellipsis
    return tuple(idx)


@case("getitem_basic")
def _(d):
    x = d.normal(d.shape(1, 3, max_side=5))
    idx = _basic_index(d, x.shape)
    return (lambda a: a[idx]), [x]


@case("getitem_fancy")
def _(d):
    x = d.normal(d.shape(1, 3, max_side=4))
    ax = d.int(0, x.ndim - 1)
    n = x.shape[ax]
    picks = [d.int(-n, n - 1) for _ in range(d.int(1, 6))]  # repeats accumulate
    if d.bool():
        picks = [picks[0]] + picks  # a guaranteed repeat
    idx = (slice(None),) * ax + (picks,)
    if x.ndim > ax + 1 and d.bool():
        m = x.shape[ax + 1]
        idx += ([d.int(0, m - 1) for _ in picks],)  # two arrays broadcast together
    return (lambda a: a[idx]), [x]


@case("getitem_mask")
def _(d):
    x = d.normal(d.shape(1, 3))
    mask = (d.rng.random(x.shape) < 0.5).tolist()
    return (lambda a: a[sg.tensor(np.array(mask, dtype=bool))]), [x]


@case("pad")
def _(d):
    x = d.normal(d.shape(1, 3, max_size=24))
    kind = d.int(0, 2)
    if kind == 0:
        pw = d.int(0, 2)
    elif kind == 1:
        pw = (d.int(0, 2), d.int(0, 2))
    else:
        pw = tuple((d.int(0, 2), d.int(0, 2)) for _ in range(x.ndim))
    value = d.choice([0.0, -1.5])
    return (lambda a: F.pad(a, pw, value=value) ** 2), [x]


# ---- linear algebra ------------------------------------------------------------------
@case("matmul")
def _(d):
    m, k, n = d.int(1, 4), d.int(1, 4), d.int(1, 4)
    kind = d.int(0, 6)
    if kind == 0:
        sa, sb = (m, k), (k, n)
    elif kind == 1:
        b = d.int(1, 3)
        sa, sb = (b, m, k), (b, k, n)
    elif kind == 2:  # broadcast batch dims, different ranks
        ba, bb = d.broadcast_shapes(2, max_rank=2)
        sa, sb = ba + (m, k), bb + (k, n)
    elif kind == 3:
        sa, sb = (k,), d.shape(0, 1, max_side=2) + (k, n)
    elif kind == 4:
        sa, sb = d.shape(0, 1, max_side=2) + (m, k), (k,)
    elif kind == 5:
        sa, sb = (k,), (k,)
    else:
        sa, sb = (1, m, k), (2, k, n)
    return F.matmul, [d.normal(sa), d.normal(sb)]


@case("linear")
def _(d):
    i, o = d.int(1, 4), d.int(1, 4)
    lead = d.choice([(), (d.int(1, 3),), (d.int(1, 3), d.int(1, 3))])
    arrays = [d.normal(lead + (i,)), d.normal((o, i))]
    if d.bool():
        arrays.append(d.normal((o,)))
    return F.linear, arrays


# ---- convolution (tiny: every element is perturbed) -----------------------------------
def _conv_geometry(d):
    k = (d.int(1, 5), d.int(1, 5))
    s = (d.int(1, 3), d.int(1, 3))
    p = (d.int(0, 2), d.int(0, 2))
    return k, s, p


def _batch_channels(d, hw, limit=60):
    """(n, c) with n * c * h * w kept near ``limit``."""
    n, c = d.int(1, 2), d.int(1, 2)
    while n * c * hw[0] * hw[1] > limit and n * c > 1:
        n, c = (1, c) if n > 1 else (n, 1)
    return n, c


def _conv_input_hw(d, k, p):
    return tuple(max(1, k[i] - 2 * p[i]) + d.int(0, 2) for i in (0, 1))


@case("conv2d")
def _(d):
    k, s, p = _conv_geometry(d)
    hw = _conv_input_hw(d, k, p)
    (n, c), o = _batch_channels(d, hw), d.int(1, 2)
    arrays = [d.normal((n, c) + hw), d.normal((o, c) + k)]
    bias = d.bool()
    if bias:
        arrays.append(d.normal((o,)))
    return (lambda x, w, *b: F.conv2d(x, w, b[0] if b else None, stride=s, padding=p)), arrays


def _conv_t_geometry(d):
    k, s, p = _conv_geometry(d)
    op = (d.int(0, s[0] - 1), d.int(0, s[1] - 1))
    hw = []
    for i in (0, 1):
        h = d.int(1, 3)
        while (h - 1) * s[i] - 2 * p[i] + k[i] + op[i] < 1:
            h += 1
        hw.append(h)
    return k, s, p, op, tuple(hw)


@case("conv_transpose2d")
def _(d):
    k, s, p, op, hw = _conv_t_geometry(d)
    (n, c), o = _batch_channels(d, hw), d.int(1, 2)
    arrays = [d.normal((n, c) + hw), d.normal((c, o) + k)]
    if d.bool():
        arrays.append(d.normal((o,)))
    return (lambda x, w, *b: F.conv_transpose2d(x, w, b[0] if b else None, stride=s, padding=p,
                                                output_padding=op)), arrays


@case("conv2d_weight_grad")
def _(d):
    k, s, p = _conv_geometry(d)
    hw = _conv_input_hw(d, k, p)
    (n, c), o = _batch_channels(d, hw), d.int(1, 2)
    out = tuple((hw[i] + 2 * p[i] - k[i]) // s[i] + 1 for i in (0, 1))
    return (lambda x, gy: F.conv2d_weight_grad(x, gy, k, s, p)), \
        [d.normal((n, c) + hw), d.normal((n, o) + out)]


@case("conv_bias_grad")  # the bias's VJP (sum over n, i, j) as a function of g
def _(d):
    return _channel_sum, [d.normal((d.int(1, 3), d.int(1, 3)) + d.shape(2, 2))]


def _dilation_groups(d):
    """(dilation, groups, channels in, channels out) for the dilated/grouped cases."""
    dil = (d.int(1, 3), d.int(1, 3))
    g = d.int(1, 3)
    return dil, g, g * d.int(1, 2), g * d.int(1, 2)


@case("conv2d_dilation_groups")
def _(d):
    k = (d.int(1, 3), d.int(1, 3))
    s, p = (d.int(1, 2), d.int(1, 2)), (d.int(0, 2), d.int(0, 2))
    dil, g, c, o = _dilation_groups(d)
    hw = tuple(max(1, dil[i] * (k[i] - 1) + 1 - 2 * p[i]) + d.int(0, 2) for i in (0, 1))
    arrays = [d.normal((1, c) + hw), d.normal((o, c // g) + k)]
    if d.bool():
        arrays.append(d.normal((o,)))
    return (lambda x, w, *b: F.conv2d(x, w, b[0] if b else None, s, p, dil, g)), arrays


@case("conv_transpose2d_dilation_groups")
def _(d):
    k = (d.int(1, 3), d.int(1, 3))
    s, p = (d.int(1, 2), d.int(1, 2)), (d.int(0, 2), d.int(0, 2))
    dil, g, c, o = _dilation_groups(d)
    op = tuple(d.int(0, max(s[i], dil[i]) - 1) for i in (0, 1))
    hw = []
    for i in (0, 1):
        h = d.int(1, 3)
        while (h - 1) * s[i] - 2 * p[i] + dil[i] * (k[i] - 1) + 1 + op[i] < 1:
            h += 1
        hw.append(h)
    arrays = [d.normal((1, c) + tuple(hw)), d.normal((c, o // g) + k)]
    if d.bool():
        arrays.append(d.normal((o,)))
    return (lambda x, w, *b: F.conv_transpose2d(x, w, b[0] if b else None, s, p, op, g, dil)), \
        arrays


# ---- losses --------------------------------------------------------------------------
@case("binary_cross_entropy_with_logits")
def _(d):
    s = d.shape(0, 3)
    red = d.choice(["mean", "sum", "none"])
    kw = {}
    if s and d.bool():
        kw["pos_weight"] = d.uniform(s[-1:], 0.5, 3.0)
    if d.bool():
        kw["weight"] = d.uniform(s, 0.5, 2.0)
    return (lambda l, t: F.binary_cross_entropy_with_logits(
        l, t, reduction=red, **{k: sg.tensor(v, dtype=l.dtype) for k, v in kw.items()})), \
        [d.normal(s, 3), d.uniform(s, 0, 1)]


@case("binary_cross_entropy")
def _(d):
    s = d.shape(0, 3)
    red = d.choice(["mean", "sum", "none"])
    w = d.uniform(s, 0.5, 2.0) if d.bool() else None
    return (lambda x, t: F.binary_cross_entropy(x, t, w if w is None else
                                                sg.tensor(w, dtype=x.dtype), reduction=red)), \
        [d.uniform(s, 0.05, 0.95), d.uniform(s, 0, 1)]


def _class_problem(d):
    """(input shape, target indices, class count): (C,), (N, C) or (N, C, L)."""
    c = d.int(1, 4)
    kind = d.int(0, 2)
    rows = () if kind == 0 else (d.int(1, 3),) if kind == 1 else (d.int(1, 2), d.int(1, 3))
    shape = rows[:1] + (c,) + rows[1:] if rows else (c,)
    t = np.array([d.int(0, c - 1) for _ in range(int(np.prod(rows, dtype=int)))],
                 dtype=np.int64).reshape(rows)
    return shape, t, c


def _class_options(d, c, t):
    """weight, ignore_index (with some targets set to it) and a reduction."""
    kw = {"reduction": d.choice(["mean", "sum", "none"])}
    if d.bool():
        kw["weight"] = sg.tensor(d.uniform((c,), 0.5, 2.0))
    if t.size > 1 and d.bool():
        t = t.copy()
        t.flat[d.int(0, t.size - 1)] = kw["ignore_index"] = d.choice([-100, -1, c])
    return kw, t


@case("cross_entropy")
def _(d):
    shape, t, c = _class_problem(d)
    kw, t = _class_options(d, c, t)
    if d.bool():
        kw["label_smoothing"] = d.choice([0.1, 0.3])
    target = sg.tensor(t)
    if d.int(0, 2) == 0:  # probabilities as targets (weight and smoothing apply, indices not)
        kw.pop("ignore_index", None)
        p = d.uniform(shape, 0.1, 1.0)
        return (lambda x, q: F.cross_entropy(x, q / q.sum(axis=min(1, len(shape) - 1),
                                                           keepdims=True), **kw)), \
            [d.normal(shape, 2), p]
    return (lambda x: F.cross_entropy(x, target, **kw)), [d.normal(shape, 2)]


@case("nll_loss")
def _(d):
    shape, t, c = _class_problem(d)
    kw, t = _class_options(d, c, t)
    target = sg.tensor(t)
    return (lambda x: F.nll_loss(x, target, **kw)), [d.normal(shape)]


@case("mse_loss")
def _(d):
    s = d.shape(0, 3)
    red = d.choice(["mean", "sum", "none"])
    return (lambda x, t: F.mse_loss(x, t, reduction=red)), [d.normal(s), d.normal(s)]


# ---- pooling and dropout ------------------------------------------------------------
def _pool_geometry(d, dilation=True):
    """(input shape, kernel, stride, padding, dilation, ceil_mode): windows that each hold at
    least one input element."""
    k = (d.int(1, 3), d.int(1, 3))
    s = (d.int(1, 3), d.int(1, 3))
    p = (d.int(0, k[0] // 2), d.int(0, k[1] // 2))
    dil = (d.int(1, 2), d.int(1, 2)) if dilation else (1, 1)
    hw = tuple(max(1, dil[i] * (k[i] - 1) + 1 - 2 * p[i]) + d.int(0, 3) for i in (0, 1))
    shape = (d.int(1, 2), d.int(1, 2)) + hw if d.bool() else (d.int(1, 2),) + hw
    if dil != (1, 1):  # a dilated window may fall wholly in the padding: then use dilation 1
        x = sg.tensor(np.zeros(shape))
        if not np.isfinite(F.max_pool2d(x, k, s, p, dil, True).numpy()).all() or \
                not np.isfinite(F.max_pool2d(x, k, s, p, dil, False).numpy()).all():
            dil = (1, 1)
    return shape, k, s, p, dil, d.bool()


@case("max_pool2d")
def _(d):
    shape, k, s, p, dil, ceil = _pool_geometry(d)
    return (lambda x: F.max_pool2d(x, k, s, p, dil, ceil)), [d.distinct(shape)]


@case("pool_windows")  # the window primitives behind the pools' VJPs, as functions of g
def _(d):
    from scratchgen.ops import pool
    shape, k, s, p, dil, ceil = _pool_geometry(d)
    x = d.distinct(shape)
    win = pool.geometry(x, k, s, p, dil, ceil, "case")
    idx = pool._argmax(sg.tensor(x).array, win)
    return (lambda a, g: pool._window_place(g + pool._window_pick(a, idx, win), idx, win)
            + pool._window_spread(g, win) * a), [x, d.normal(shape[:-2] + win.out)]


@case("avg_pool2d")
def _(d):
    shape, k, s, p, _, ceil = _pool_geometry(d, dilation=False)
    include, override = d.bool(), d.choice([None, None, 3])
    return (lambda x: F.avg_pool2d(x, k, s, p, ceil, include, override) ** 2), [d.normal(shape)]


@case("dropout")
def _(d):
    seed, p, two_d = d.int(0, 99), d.choice([0.2, 0.5]), d.bool()
    shape = d.shape(3, 4, max_side=3) if two_d else d.shape(0, 3)
    drop = F.dropout2d if two_d else F.dropout
    return (lambda x: drop(x, p, generator=np.random.default_rng(seed)) * x), [d.normal(shape)]


@case("norm")  # a composite (tensor_methods.norm): |x|'s kink at 0 kept away
def _(d):
    shape = d.shape(1, 3)
    p, dim, keep = d.choice([2, 1, 3, "fro"]), d.axis(len(shape)), d.bool()
    return (lambda x: sg.norm(x, p, dim, keep)), [d.away(shape)]


CASES = {c.name: c for c in _CASES}


def instance(case, d, dtype=np.float64):
    """``(fn, inputs)``: the case's function and fresh leaf tensors requiring grad."""
    fn, arrays = case.make(d)
    return fn, tuple(sg.tensor(np.array(a, dtype=dtype, order="C"), requires_grad=True)
                     for a in arrays)
