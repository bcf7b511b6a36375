"""Finite-difference checks of first and second derivatives, for users, tests and the CLI.

One core, :func:`central_differences`, perturbs each element of some tensors in place and
differentiates a scalar by (f(x + eps e_j) - f(x - eps e_j)) / (2 eps). Everything else reads
from it:

* :func:`compare_gradients` draws a fixed random v over the outputs of f and returns, per
  checked input, the analytic VJP d<v, f>/dx and its central difference (``order=2``: the same
  for the map (inputs, v') -> d<v', f>/d inputs, whose derivatives are f's second
  derivatives);
* :func:`gradcheck` / :func:`gradgradcheck` raise :class:`GradcheckError` from that comparison;
* :func:`numeric_grad` is the gradient of a scalar function, for notebooks and examples.
"""
import numpy

from scratchgen import backend
from scratchgen.autograd.graph import grad
from scratchgen.autograd.tensor import Tensor


class GradcheckError(AssertionError):
    """Analytic and numerical derivatives disagree."""


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def central_differences(scalar, tensors, eps=1e-6):
    """d scalar() / d t for each tensor t, by central differences, as host float64 arrays.

    ``scalar()`` reads the tensors (their data is perturbed in place, one element at a time,
    and restored) and returns a float. It runs with grad enabled, so it may differentiate.
    """
    out = []
    for x in tensors:
        if not x.array.flags.c_contiguous:
            raise ValueError(f"finite differences perturb tensors in place: a tensor of shape "
                             f"{x.shape} is not C-contiguous (make it with .clone())")
        flat = x.array.reshape(-1)
        num = numpy.empty(x.size)
        for j in range(x.size):
            orig = flat[j].item()
            flat[j] = orig + eps
            fp = scalar()
            flat[j] = orig - eps
            fm = scalar()
            flat[j] = orig
            num[j] = (fp - fm) / (2 * eps)
        out.append(num.reshape(x.shape))
    return tuple(out)


def numeric_grad(fn, inputs, eps=1e-6):
    """Central-difference gradient of a scalar ``fn(*inputs)`` w.r.t. each input, as host float64
    NumPy arrays; ``fn`` is evaluated on float64 copies (the inputs are not touched).

    >>> import scratchgen as sg
    >>> x = sg.tensor([1.0, 2.0])
    >>> sg.numeric_grad(lambda t: (t ** 3).sum(), x)[0].round(6).tolist()
    [3.0, 12.0]
    """
    inputs = _as_tuple(inputs)
    copies = tuple(Tensor(backend.asarray(numpy.array(backend.to_numpy(
        x.array if isinstance(x, Tensor) else x), dtype=numpy.float64))) for x in inputs)

    def scalar():
        y = fn(*copies)
        size = y.size if isinstance(y, Tensor) else numpy.size(y)
        if size != 1:
            raise ValueError(f"numeric_grad needs a scalar function; fn returned shape "
                             f"{getattr(y, 'shape', ())}")
        return float(y.item() if isinstance(y, Tensor) else y)

    return central_differences(scalar, copies, eps)


class Comparison:
    """Analytic and numerical derivatives of one check, as host float64 arrays.

    ``positions``: the indices of the checked inputs; ``analytic[k]`` and ``numerical[k]``
    belong to input ``positions[k]``; ``order``: 'first' or 'second'.
    """

    def __init__(self, order, positions, analytic, numerical):
        self.order, self.positions = order, tuple(positions)
        self.analytic, self.numerical = tuple(analytic), tuple(numerical)

    def errors(self):
        """(abs, rel): max_j |a_j - n_j| over all elements, and that over max_j |n_j|."""
        err = scale = 0.0
        for a, n in zip(self.analytic, self.numerical):
            if a.size:
                err = max(err, float(numpy.abs(a - n).max()))
                scale = max(scale, float(numpy.abs(n).max()))
        return err, (err / scale if scale > 0 else (0.0 if err == 0 else float("inf")))

    def check(self, atol=1e-5, rtol=1e-3):
        """Raise :class:`GradcheckError` naming the input, the worst element and both values
        unless |a - n| <= atol + rtol |n| everywhere."""
        for i, a, n in zip(self.positions, self.analytic, self.numerical):
            err = numpy.abs(a - n).reshape(-1)
            tol = atol + rtol * numpy.abs(n).reshape(-1)
            if not numpy.all(err <= tol):
                j = int(numpy.argmax(err - tol))
                idx = tuple(int(k) for k in numpy.unravel_index(j, a.shape))
                raise GradcheckError(
                    f"{self.order}-order gradient of input {i} (shape {a.shape}) is wrong at "
                    f"element {idx}: analytic {a.reshape(-1)[j]:.10g}, numerical "
                    f"{n.reshape(-1)[j]:.10g} (|diff| {err[j]:.3g} > atol {atol} + rtol {rtol}"
                    f" * |numerical|)")
        return True


def _checked(inputs):
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != numpy.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; use float64 "
                            "(finite differences in float32 are too coarse)")
    return checked


def _first(fn, inputs, eps, seed, order):
    checked = _checked(inputs)
    outputs = _as_tuple(fn(*inputs))
    rng = numpy.random.default_rng(seed)
    vs = [rng.standard_normal(o.shape) for o in outputs]
    diff_outs = [k for k, o in enumerate(outputs) if o.requires_grad]
    analytic = [None] * len(checked)
    if diff_outs:
        analytic = grad([outputs[k] for k in diff_outs], [inputs[i] for i in checked],
                        grad_outputs=[Tensor(backend.asarray(vs[k], dtype=outputs[k].dtype))
                                      for k in diff_outs], allow_unused=True)
    analytic = [numpy.zeros(inputs[i].shape) if g is None else
                backend.to_numpy(g.array).astype(numpy.float64)
                for i, g in zip(checked, analytic)]

    def inner():
        return sum(float((backend.to_numpy(o.array).astype(numpy.float64) * v).sum())
                   for o, v in zip(_as_tuple(fn(*inputs)), vs))

    numerical = central_differences(inner, [inputs[i] for i in checked], eps)
    return Comparison(order, checked, analytic, numerical)


def _vjp_map(fn, inputs, seed):
    """(inputs, v) -> d<v, fn(inputs)>/d (checked inputs), built with create_graph=True, and
    its arguments with a fixed random v requiring grad."""
    checked = _checked(inputs)
    outputs = _as_tuple(fn(*inputs))
    rng = numpy.random.default_rng(seed)
    vs = tuple(Tensor(backend.asarray(rng.standard_normal(o.shape), dtype=o.dtype),
                      requires_grad=True) for o in outputs)
    n = len(inputs)

    def vjp_fn(*args):
        xs, v = args[:n], args[n:]
        pairs = [(o, vv) for o, vv in zip(_as_tuple(fn(*xs)), v) if o.requires_grad]
        gs = grad([o for o, _ in pairs], [xs[i] for i in checked],
                  grad_outputs=[vv for _, vv in pairs], create_graph=True, allow_unused=True)
        return tuple(Tensor(backend.xp.zeros(xs[i].shape, dtype=xs[i].dtype)) if g is None
                     else g for i, g in zip(checked, gs))

    return vjp_fn, inputs + vs


def compare_gradients(fn, inputs, eps=1e-6, seed=0, order=1):
    """The :class:`Comparison` of ``fn``'s VJPs (``order=1``) or of its second derivatives
    (``order=2``) with central differences, for every input that requires grad.

    >>> import scratchgen as sg, numpy as np
    >>> x = sg.tensor(np.array([0.3, -0.7]), requires_grad=True)
    >>> c = compare_gradients(lambda t: t * t, x)
    >>> bool(np.allclose(c.analytic[0], c.numerical[0])), c.errors()[1] < 1e-8
    (True, True)
    """
    inputs = _as_tuple(inputs)
    if order == 1:
        return _first(fn, inputs, eps, seed, "first")
    if order == 2:
        vjp_fn, args = _vjp_map(fn, inputs, seed + 1)
        return _first(vjp_fn, args, eps, seed + 2, "second")
    raise ValueError(f"order must be 1 or 2, got {order!r}")


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check ``fn``'s VJPs against central differences.

    ``inputs``: a tensor or a sequence of tensors; those with ``requires_grad`` are checked
    and should be float64. Returns True, or raises :class:`GradcheckError` naming the input,
    the worst element and both values.

    >>> import scratchgen as sg, numpy as np
    >>> x = sg.tensor(np.array([0.3, -0.7]), requires_grad=True)
    >>> sg.gradcheck(lambda t: sg.functional.tanh(t) * t, x)
    True
    """
    return compare_gradients(fn, inputs, eps, seed, order=1).check(atol, rtol)


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check second derivatives: gradcheck of (inputs, v) -> d<v, fn(inputs)>/d inputs,
    built with ``create_graph=True``. Returns True or raises :class:`GradcheckError`."""
    return compare_gradients(fn, inputs, eps, seed, order=2).check(atol, rtol)
