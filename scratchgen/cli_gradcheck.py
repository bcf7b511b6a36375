"""``scratchgen gradcheck``: the gradient-check table (:mod:`scratchgen.gradcases`) on the
active backend, one seeded configuration per case, first and second order.

Errors are over all input elements, from the comparison ``sg.gradcheck`` /
``sg.gradgradcheck`` raise from (:func:`scratchgen.autograd.gradcheck.compare_gradients`):
``abs = max_j |a_j - n_j|`` and ``rel = abs / max_j |n_j|`` (analytic a, central difference
n); the verdict is theirs.
"""
import sys
import time
import zlib

import numpy as np

from scratchgen import backend
from scratchgen.autograd.gradcheck import compare_gradients
from scratchgen.gradcases import CASES, Draw, instance

EPS = 1e-6


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
            comparisons = [compare_gradients(fn, inputs, EPS, seed, order) for order in (1, 2)]
            for c in comparisons:
                row[c.order + "_abs"], row[c.order + "_rel"] = c.errors()
            for c in comparisons:
                c.check()
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
