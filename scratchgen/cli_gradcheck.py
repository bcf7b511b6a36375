"""``scratchgen gradcheck``: the gradient-check table (:mod:`scratchgen.gradcases`) on the
active backend, one seeded configuration per case, first and second order.

Errors are over all input elements, with the same random projections ``v`` as
:func:`scratchgen.gradcheck`: ``abs = max_j |a_j - n_j|`` and ``rel = abs / max_j |n_j|``
(analytic a, central difference n); the verdict is ``sg.gradcheck`` / ``sg.gradgradcheck``'s.
"""
import sys
import time
import zlib

import numpy as np

import scratchgen as sg
from scratchgen import backend
from scratchgen.gradcases import CASES, Draw, instance

EPS = 1e-6


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _errors(fn, inputs, seed):
    """(abs, rel) error of the VJPs of ``fn`` against central differences."""
    outs = _as_tuple(fn(*inputs))
    rng = np.random.default_rng(seed)
    vs = [rng.standard_normal(o.shape) for o in outs]
    diff = [k for k, o in enumerate(outs) if o.requires_grad]
    gs = sg.grad([outs[k] for k in diff], inputs,
                 grad_outputs=[sg.tensor(backend.asarray(vs[k], outs[k].dtype)) for k in diff],
                 allow_unused=True) if diff else [None] * len(inputs)

    def inner():
        return sum(float((backend.to_numpy(o.data) * v).sum())
                   for o, v in zip(_as_tuple(fn(*inputs)), vs))

    err = scale = 0.0
    for x, g in zip(inputs, gs):
        a = np.zeros(x.size) if g is None else backend.to_numpy(g.data).reshape(-1)
        flat = x.data.reshape(-1)
        for j in range(x.size):
            orig = flat[j].item()
            flat[j] = orig + EPS
            fp = inner()
            flat[j] = orig - EPS
            fm = inner()
            flat[j] = orig
            n = (fp - fm) / (2 * EPS)
            err, scale = max(err, abs(float(a[j]) - n)), max(scale, abs(n))
    return err, (err / scale if scale > 0 else (0.0 if err == 0 else float("inf")))


def _vjp_map(fn, n_inputs):
    """(inputs, v) -> d<v, fn(inputs)>/d inputs, differentiable: its derivatives are fn's
    second derivatives (what sg.gradgradcheck checks)."""
    def vjp(*args):
        xs, v = args[:n_inputs], args[n_inputs:]
        outs = _as_tuple(fn(*xs))
        pairs = [(o, vv) for o, vv in zip(outs, v) if o.requires_grad]
        gs = sg.grad([o for o, _ in pairs], xs, grad_outputs=[vv for _, vv in pairs],
                     create_graph=True, allow_unused=True)
        return tuple(sg.tensor(backend.xp.zeros(x.shape, x.dtype)) if g is None else g
                     for x, g in zip(xs, gs))
    return vjp


def _second_order_inputs(fn, inputs, seed):
    rng = np.random.default_rng(seed + 1)  # sg.gradgradcheck's v
    return inputs + tuple(sg.tensor(backend.asarray(rng.standard_normal(o.shape), o.dtype),
                                    requires_grad=True) for o in _as_tuple(fn(*inputs)))


def _shapes(inputs):
    return " ".join("(" + ",".join(str(s) for s in x.shape) + ")" for x in inputs)


def run_gradcheck_table(out=None, backend_note=True, seed=0, names=None):
    """Check every case (or those in ``names``) once; print a table to ``out`` (default
    ``sys.stdout``) and return one dict per case: ``name, shapes, first_abs, first_rel,
    second_abs, second_rel, ok, error`` (``error``: the failing check's message, or None)."""
    out = sys.stdout if out is None else out
    cases = [CASES[n] for n in names] if names else list(CASES.values())
    if backend_note:
        print(f"backend {backend.name}, float64, central differences (eps {EPS:g}), one "
              f"configuration per case (seed {seed})", file=out)
    head = f"{'case':34} {'inputs':26} {'1st abs':>8} {'1st rel':>8} {'2nd abs':>8} {'2nd rel':>8}"
    print(head + "  ok", file=out)
    rows = []
    t0 = time.perf_counter()
    for case in cases:
        rng = np.random.default_rng([seed, zlib.crc32(case.name.encode())])
        fn, inputs = instance(case, Draw(rng))
        row = dict(name=case.name, shapes=[tuple(x.shape) for x in inputs], ok=True, error=None)
        try:
            row["first_abs"], row["first_rel"] = _errors(fn, inputs, seed)
            ins2 = _second_order_inputs(fn, inputs, seed)
            row["second_abs"], row["second_rel"] = _errors(_vjp_map(fn, len(inputs)), ins2,
                                                           seed + 2)  # gradgradcheck's seeds
            sg.gradcheck(fn, inputs, seed=seed)
            sg.gradgradcheck(fn, inputs, seed=seed)
        except Exception as e:  # a failed check, or a case that raises: report, go on
            row["ok"], row["error"] = False, f"{type(e).__name__}: {e}"
        rows.append(row)
        nums = " ".join(f"{row.get(k, float('nan')):8.1e}"
                        for k in ("first_abs", "first_rel", "second_abs", "second_rel"))
        shapes = _shapes(inputs)
        shapes = shapes if len(shapes) <= 26 else shapes[:23] + "..."
        print(f"{case.name:34} {shapes:26} {nums}  {'ok' if row['ok'] else 'FAIL'}", file=out)
        if row["error"]:
            print(f"    {row['error']}", file=out)
    bad = sum(not r["ok"] for r in rows)
    print(f"{len(rows)} cases, {len(rows) - bad} ok, {bad} failed "
          f"({time.perf_counter() - t0:.1f} s)", file=out)
    return rows
