"""Elementwise primitives. Binary ones broadcast like NumPy; the engine sums each gradient
back to its input's shape. Masks in VJPs (relu, clip, max ties) are constants, so a double
backward sends nothing through them: no zero-filled products reach the matmuls."""
from scratchgen import backend
from scratchgen.autograd.graph import primitive
from scratchgen.autograd.tensor import Tensor



def _data(a):
    return a.array if isinstance(a, Tensor) else a


# ---- arithmetic -----------------------------------------------------------------------
@primitive
def add(a, b):
    return a + b


add.defvjp(lambda g, ans, a, b: g, lambda g, ans, a, b: g)


@primitive
def sub(a, b):
    return a - b


sub.defvjp(lambda g, ans, a, b: g, lambda g, ans, a, b: neg(g))


@primitive
def mul(a, b):
    return a * b


mul.defvjp(lambda g, ans, a, b: mul(g, b), lambda g, ans, a, b: mul(g, a))


@primitive
def div(a, b):
    return a / b


# d(a/b)/db = -a/b^2 = -(a/b)/b
div.defvjp(lambda g, ans, a, b: div(g, b), lambda g, ans, a, b: neg(div(mul(g, ans), b)))


@primitive
def neg(a):
    return -a


neg.defvjp(lambda g, ans, a: neg(g))


@primitive
def pos(a):
    """Copy (identity with a graph edge)."""
    return a.copy()


pos.defvjp(lambda g, ans, a: g)


@primitive
def cast(a, dtype):
    return a.astype(dtype)


cast.defvjp(lambda g, ans, a, dtype: cast(g, dtype=_data(a).dtype))


@primitive
def pow(a, b):
    """a ** b; d/da = b a^(b-1), d/db = a^b log a (b may be a tensor or a number).

    Exact where the formulas read 0 * inf, as their limits: d/da = 0 where b = 0 (also at
    a = 0), so x**0 and x**1 have exact first and second derivatives at 0; d/db = 0 where a = 0
    and b >= 0. Elsewhere the formulas stand, e.g. d/db d/da a^b = 1/a at b = 0.
    """
    return a ** b


def _number(v):
    return not isinstance(v, Tensor) and getattr(v, "ndim", 0) == 0


def _pow_vjp_a(g, ans, a, b):
    if _number(b):
        if b == 0:
            return mul(g, 0.0)
        return g if b == 1 else mul(g, mul(b, pow(a, b - 1)))
    at0 = (_data(b) == 0) & (_data(a) == 0)        # 0 * 0^-1: the limit is 0
    if not at0.any():
        return mul(g, mul(b, pow(a, sub(b, 1))))
    safe_a = where(at0, 1.0, a)                     # keeps the masked branch finite in backward
    return mul(g, where(at0, 0.0, mul(b, pow(safe_a, sub(b, 1)))))


def _pow_vjp_b(g, ans, a, b):
    if _number(a):  # a Python float log keeps ans's dtype (a NumPy scalar would not)
        return mul(g, mul(ans, float(backend.xp.log(a))))
    at0 = (_data(a) == 0) & (_data(b) >= 0)         # 0^b log 0: the limit is 0
    if not at0.any():
        return mul(g, mul(ans, log(a)))
    return mul(g, where(at0, 0.0, mul(ans, log(where(at0, 1.0, a)))))


pow.defvjp(_pow_vjp_a, _pow_vjp_b)


# ---- transcendental -----------------------------------------------------------------
@primitive
def exp(a):
    return backend.xp.exp(a)


exp.defvjp(lambda g, ans, a: mul(g, ans))


@primitive
def log(a):
    return backend.xp.log(a)


log.defvjp(lambda g, ans, a: div(g, a))


@primitive
def sqrt(a):
    return backend.xp.sqrt(a)


sqrt.defvjp(lambda g, ans, a: div(mul(g, 0.5), ans))


@primitive
def abs(a):
    """|a|; the gradient at 0 is 0 (sign)."""
    return backend.xp.abs(a)


abs.defvjp(lambda g, ans, a: mul(g, backend.xp.sign(_data(a))))


@primitive
def sigmoid(a):
    """1/(1+e^-a); d/da = s(1-s). Where e^-a overflows to inf the result is the exact limit 0,
    and for very negative a it keeps full relative precision (no 1 - e^a cancellation)."""
    with backend.errstate(over="ignore"):
        r = backend.xp.asarray(backend.xp.exp(-a))
    r += 1
    return backend.xp.reciprocal(r, out=r)


sigmoid.defvjp(lambda g, ans, a: mul(g, mul(ans, sub(1, ans))))


@primitive
def tanh(a):
    return backend.xp.tanh(a)


tanh.defvjp(lambda g, ans, a: mul(g, sub(1, mul(ans, ans))))


@primitive
def softplus(a):
    """log(1+e^a) = max(a,0) + log1p(e^-|a|) (exact for large |a|); d/da = sigmoid(a)."""
    return backend.xp.maximum(a, 0) + backend.xp.log1p(backend.xp.exp(-backend.xp.abs(a)))


softplus.defvjp(lambda g, ans, a: mul(g, sigmoid(a)))


@primitive
def log_sigmoid(a):
    """log sigmoid(a) = min(a,0) - log1p(e^-|a|); d/da = sigmoid(-a)."""
    return backend.xp.minimum(a, 0) - backend.xp.log1p(backend.xp.exp(-backend.xp.abs(a)))


log_sigmoid.defvjp(lambda g, ans, a: mul(g, sigmoid(neg(a))))


# ---- piecewise-linear: constant masks --------------------------------------------------
@primitive
def relu(a):
    return backend.kernels.relu(a)


@primitive
def _relu_mask(g, a, negative_slope=0.0):
    """g * m in one pass, m = 1 where a > 0, else the slope: the VJP of relu and leaky_relu, a
    (their input, or relu's output) a constant. Linear in g, so its own VJP is itself."""
    return backend.kernels.relu_grad(g, a, negative_slope)


_relu_mask.defvjp(lambda gg, ans, g, a, negative_slope=0.0: _relu_mask(gg, a, negative_slope))
relu.defvjp(lambda g, ans, a: _relu_mask(g, _data(ans)))


@primitive
def leaky_relu(a, negative_slope=0.01):
    """max(a, s a) for 0 <= s <= 1 (a branch-free form of where(a > 0, a, s a))."""
    if 0 <= negative_slope <= 1:
        return backend.kernels.leaky_relu(a, negative_slope)
    return backend.xp.where(a > 0, a, a * negative_slope)


leaky_relu.defvjp(lambda g, ans, a, negative_slope=0.01: _relu_mask(g, _data(a), negative_slope))


@primitive
def maximum(a, b):
    """Elementwise max; at ties each side gets half the gradient."""
    return backend.xp.maximum(a, b)


@primitive
def minimum(a, b):
    """Elementwise min; at ties each side gets half the gradient."""
    return backend.xp.minimum(a, b)


def _pick(g, a, b, first):
    a, b = _data(a), _data(b)
    dt = g.array.dtype
    m = (a > b) if first else (a < b)
    return mul(g, m.astype(dt) + 0.5 * (a == b).astype(dt))


maximum.defvjp(lambda g, ans, a, b: _pick(g, a, b, True), lambda g, ans, a, b: _pick(g, a, b, False))
minimum.defvjp(lambda g, ans, a, b: _pick(g, a, b, False), lambda g, ans, a, b: _pick(g, a, b, True))


@primitive
def where(cond, a, b):
    """a where cond else b; cond is not differentiable."""
    return backend.xp.where(cond, a, b)


def _where_vjp(g, cond, first):
    c = _data(cond).astype(bool)
    return mul(g, (c if first else ~c).astype(g.array.dtype))


where.defvjp(None, lambda g, ans, c, a, b: _where_vjp(g, c, True),
             lambda g, ans, c, a, b: _where_vjp(g, c, False))


@primitive
def clip(a, min=None, max=None):
    """Clamp to [min, max]; the gradient passes where min <= a <= max."""
    return backend.xp.clip(a, min, max)


def _clip_vjp(g, ans, a, min=None, max=None):
    a = _data(a)
    m = backend.xp.ones(a.shape, dtype=bool)
    if min is not None:
        m &= a >= min
    if max is not None:
        m &= a <= max
    return mul(g, m.astype(a.dtype))


clip.defvjp(_clip_vjp)
