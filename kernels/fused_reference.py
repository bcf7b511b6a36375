"""Pure-NumPy reference for the fused kernels: bias + activation and the losses' reductions.

Like ``reference`` (conv), this module defines the interface; every backend's kernel
module (``cuda``, and ``cpu`` where it adds its own) must agree with it to float tolerance.

* ``bias_act(y, b, act, slope=0.01)``: ``act(y + b)`` with ``b`` broadcast over axis 1
  (``y`` is ``(N, F)`` or ``(N, C, *spatial)``; ``b`` has ``F``/``C`` entries or is None).
  Returns a new array of ``y``'s dtype.
* ``bias_act_grad(gout, out, act, slope=0.01)``: the gradient wrt the pre-activation
  ``y + b``, computed from the activation's OUTPUT ``out``:
  relu ``gout*(out>0)``; leaky_relu ``gout*where(out>0, 1, slope)``; tanh
  ``gout*(1-out**2)``; sigmoid ``gout*out*(1-out)``; none ``gout``. (The bias gradient is
  then the sum of this over every axis but 1.)
* ``bce_with_logits_sum(logits, target)``: ``sum(max(x,0) - x*t + log1p(exp(-|x|)))``,
  the binary cross entropy of ``sigmoid(x)`` against ``t``, summed; stable for any ``x``.
  Returns a 0-d array of the logits' dtype.
* ``logsumexp(a, axis=None, keepdims=False)``: ``log(sum(exp(a), axis))`` computed
  stably (shifted by the max; all ``-inf`` gives ``-inf``).
"""
import numpy as np

ACTIVATIONS = ("none", "relu", "leaky_relu", "tanh", "sigmoid")


def check_act(act):
    """The canonical activation name (``None`` means ``'none'``); ValueError if unknown."""
    if act is None:
        return "none"
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; choose one of {', '.join(ACTIVATIONS)}")
    return act


def bias_shape(ndim):
    """Shape that broadcasts a per-channel bias ``(C,)`` against an array of ``ndim`` dims."""
    if ndim < 2:
        raise ValueError(f"bias_act needs a batch of at least 2 dims (N, F, ...), got {ndim}")
    return (1, -1) + (1,) * (ndim - 2)


def sigmoid(z):
    """Stable logistic function (never exponentiates a positive number)."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def bias_act(y, b, act, slope=0.01):
    act = check_act(act)
    y = np.asarray(y)
    if b is not None:
        b = np.asarray(b, dtype=y.dtype)
        if b.size != y.shape[1]:
            raise ValueError(f"bias has {b.size} entries but y has {y.shape[1]} channels")
        z = y + b.reshape(bias_shape(y.ndim))
    else:
        bias_shape(y.ndim)
        z = y.copy()
    if act == "relu":
        return np.maximum(z, 0)
    if act == "leaky_relu":
        return np.where(z > 0, z, z * y.dtype.type(slope))
    if act == "tanh":
        return np.tanh(z)
    if act == "sigmoid":
        return sigmoid(z)
    return z


def bias_act_grad(gout, out, act, slope=0.01):
    act = check_act(act)
    gout = np.asarray(gout)
    out = np.asarray(out)
    dt = np.result_type(gout, out)
    one = dt.type(1)
    if act == "relu":
        return (gout * (out > 0)).astype(dt, copy=False)
    if act == "leaky_relu":
        return (gout * np.where(out > 0, one, dt.type(slope))).astype(dt, copy=False)
    if act == "tanh":
        return (gout * (one - out * out)).astype(dt, copy=False)
    if act == "sigmoid":
        return (gout * (out * (one - out))).astype(dt, copy=False)
    return np.array(gout, dtype=dt, copy=True)


def bce_with_logits_sum(logits, target):
    x = np.asarray(logits)
    t = np.broadcast_to(np.asarray(target, dtype=x.dtype), x.shape)
    terms = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    return np.asarray(terms.sum(dtype=np.float64), dtype=x.dtype)


def logsumexp(a, axis=None, keepdims=False):
    a = np.asarray(a)
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(a.dtype, copy=False)
    with np.errstate(divide="ignore"):  # log(0) = -inf when every entry is -inf
        out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    if not keepdims:
        out = np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
    return out
