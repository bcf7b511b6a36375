"""Finite-difference checks of first and second derivatives, for users and for the tests.

For a function f of tensors, draw a fixed random v over its outputs and compare, for each
input x and each element j, the VJP d<v, f>/dx_j with the central difference

    (<v, f(x + eps e_j)> - <v, f(x - eps e_j)>) / (2 eps),

in float64. ``gradgradcheck`` applies the same test to the map
(inputs, v) -> VJP(inputs, v), whose derivatives are the second derivatives of f.
"""
import numpy

from scratchgen import backend
from scratchgen.autograd.graph import grad
from scratchgen.autograd.tensor import Tensor


class GradcheckError(AssertionError):
    """Analytic and numerical derivatives disagree."""


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _inner(outputs, vs):
    total = 0.0
    for o, v in zip(outputs, vs):
        total += float((backend.to_numpy(o.data).astype(numpy.float64) * v).sum())
    return total


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, _order="first"):
    """Check ``fn``'s VJPs against central differences.

    ``inputs``: a tensor or a sequence of tensors; those with ``requires_grad`` are checked
    and should be float64. Returns True, or raises :class:`GradcheckError` naming the input,
    the worst element and both values.

    >>> import scratchgen as sg, numpy as np
    >>> x = sg.tensor(np.array([0.3, -0.7]), requires_grad=True)
    >>> sg.gradcheck(lambda t: sg.functional.tanh(t) * t, x)
    True
    """
    inputs = _as_tuple(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != numpy.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; use float64 "
                            "(finite differences in float32 are too coarse)")
    outputs = _as_tuple(fn(*inputs))
    rng = numpy.random.default_rng(seed)
    vs = [rng.standard_normal(o.shape) for o in outputs]
    diff_outs = [k for k, o in enumerate(outputs) if o.requires_grad]
    if diff_outs:
        analytic = grad([outputs[k] for k in diff_outs],
                        [inputs[i] for i in checked],
                        grad_outputs=[Tensor(backend.asarray(vs[k], dtype=outputs[k].dtype))
                                      for k in diff_outs],
                        allow_unused=True)
    else:
        analytic = [None] * len(checked)
    for i, ga in zip(checked, analytic):
        x = inputs[i]
        ga = numpy.zeros(x.shape) if ga is None else backend.to_numpy(ga.data)
        flat = x.data.reshape(-1)
        num = numpy.empty(x.size)
        for j in range(x.size):  # with grad on: fn may itself differentiate (gradgradcheck)
            orig = flat[j].item()
            flat[j] = orig + eps
            fp = _inner(_as_tuple(fn(*inputs)), vs)
            flat[j] = orig - eps
            fm = _inner(_as_tuple(fn(*inputs)), vs)
            flat[j] = orig
            num[j] = (fp - fm) / (2 * eps)
        ga = ga.reshape(-1)
        err = numpy.abs(ga - num)
        tol = atol + rtol * numpy.abs(num)
        if not numpy.all(err <= tol):
            j = int(numpy.argmax(err - tol))
            idx = numpy.unravel_index(j, x.shape)
            raise GradcheckError(
                f"{_order}-order gradient of input {i} (shape {x.shape}) is wrong at element "
                f"{tuple(int(k) for k in idx)}: analytic {ga[j]:.10g}, numerical {num[j]:.10g} "
                f"(|diff| {err[j]:.3g} > atol {atol} + rtol {rtol} * |numerical|)")
    return True


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check second derivatives: gradcheck of (inputs, v) -> d<v, fn(inputs)>/d inputs,
    built with ``create_graph=True``. Returns True or raises :class:`GradcheckError`."""
    inputs = _as_tuple(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    outputs = _as_tuple(fn(*inputs))
    rng = numpy.random.default_rng(seed + 1)
    vs = tuple(Tensor(backend.asarray(rng.standard_normal(o.shape), dtype=o.dtype),
                      requires_grad=True) for o in outputs)
    n = len(inputs)

    def vjp_fn(*args):
        xs, v = args[:n], args[n:]
        outs = _as_tuple(fn(*xs))
        pairs = [(o, vv) for o, vv in zip(outs, v) if o.requires_grad]
        gs = grad([o for o, _ in pairs], [xs[i] for i in checked],
                  grad_outputs=[vv for _, vv in pairs], create_graph=True, allow_unused=True)
        res = []
        for i, gi in zip(checked, gs):
            if gi is None:
                gi = Tensor(backend.xp.zeros(xs[i].shape, dtype=xs[i].dtype))
            res.append(gi)
        return tuple(res)

    return gradcheck(vjp_fn, inputs + vs, eps=eps, atol=atol, rtol=rtol, seed=seed + 2,
                     _order="second")
