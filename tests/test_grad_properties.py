"""First and second derivatives of every primitive against central differences (float64, the
active backend), over configurations drawn by hypothesis from the one case table."""
import numpy as np
import pytest
from hypothesis import given, note, settings, strategies as st

import scratchgen as sg
from scratchgen.autograd import graph
from scratchgen.autograd.graph import Primitive
from scratchgen.gradcases import CASES, Draw, instance


class HypothesisDraw(Draw):
    """Structure (shapes, axes, strides, indices) drawn by hypothesis, so it shrinks;
    values from a Generator seeded by hypothesis."""

    def __init__(self, data):
        super().__init__(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), "seed")))
        self._data = data

    def int(self, lo, hi):
        return self._data.draw(st.integers(lo, hi))


def _check_case(case, check, dtype=np.float64, examples=None):
    @given(st.data())
    def run(data):
        fn, inputs = instance(case, HypothesisDraw(data), dtype)
        note(f"{case.name}: input shapes {[x.shape for x in inputs]}")
        assert check(fn, inputs)

    examples = case.examples or examples
    if examples is not None:
        run = settings(max_examples=examples)(run)
    run()


CASE_LIST = list(CASES.values())


# hypothesis examples per case and order: the full suite's (the file ~70 s on 2 cores) and the
# fast tier's (pytest -m "not slow": every case still drawn, ~10 s)
EXAMPLES = 60
QUICK = 6
TIERS = [pytest.param(QUICK, id="quick"),
         pytest.param(EXAMPLES, id="full", marks=pytest.mark.slow)]


@pytest.mark.parametrize("examples", TIERS)
@pytest.mark.parametrize("case", CASE_LIST, ids=lambda c: c.name)
def test_first_order(case, examples):
    _check_case(case, sg.gradcheck, examples=examples)


@pytest.mark.parametrize("examples", TIERS)
@pytest.mark.parametrize("case", CASE_LIST, ids=lambda c: c.name)
def test_second_order(case, examples):
    _check_case(case, sg.gradgradcheck, examples=examples)


def _keeps_float32(fn, inputs):
    """Outputs and first and second derivatives of float32 inputs stay float32."""
    out = fn(*inputs)
    assert out.dtype == np.float32, out.dtype
    ones = sg.tensor(np.ones(out.shape, np.float32))
    gs = sg.grad(out, inputs, grad_outputs=ones, create_graph=True, allow_unused=True)
    gs = [g for g in gs if g is not None]
    assert all(g.dtype == np.float32 for g in gs), [g.dtype for g in gs]
    gs = [g for g in gs if g.requires_grad]
    if gs:
        vs = [sg.tensor(np.ones(g.shape, np.float32)) for g in gs]
        ggs = sg.grad(gs, inputs, grad_outputs=vs, allow_unused=True)
        assert all(g.dtype == np.float32 for g in ggs if g is not None)
    return True


@pytest.mark.parametrize("case", CASE_LIST, ids=lambda c: c.name)
def test_float32_stays_float32(case):
    _check_case(case, _keeps_float32, np.float32, examples=10)


def _all_primitives():
    import importlib
    import pkgutil

    import scratchgen.ops
    found = {}
    for info in pkgutil.iter_modules(scratchgen.ops.__path__):  # every ops module, new ones too
        mod = importlib.import_module(f"scratchgen.ops.{info.name}")
        for v in vars(mod).values():
            if isinstance(v, Primitive):
                found[v.name] = v
    return found


def test_table_covers_every_primitive(monkeypatch):
    """Every primitive in scratchgen.ops is the forward of some case (so its VJP is checked to
    first and second order); a new primitive without a case fails here."""
    seen = set()
    real_apply = graph.apply

    def recording_apply(prim, args, params):
        seen.add(prim.name)
        return real_apply(prim, args, params)

    for case in CASE_LIST:
        for seed in range(3):
            fn, inputs = instance(case, Draw(np.random.default_rng(seed)))
            with monkeypatch.context() as m:
                m.setattr(graph, "apply", recording_apply)
                fn(*inputs)
    # index_scatter is getitem's VJP (checked by getitem's second order); cast is exact only as
    # an identity in float64 and is tested in test_engine.py.
    missing = set(_all_primitives()) - seen - {"index_scatter", "cast"}
    assert not missing, f"primitives without a gradient-check case: {sorted(missing)}"


def test_gradcheck_table_reports_every_case_and_failures(monkeypatch):
    import io

    from scratchgen.cli_gradcheck import run_gradcheck_table
    from scratchgen.gradcases import Case

    buf = io.StringIO()
    rows = run_gradcheck_table(out=buf, names=["mul", "getitem_fancy", "conv2d"])
    text = buf.getvalue()
    assert [r["name"] for r in rows] == ["mul", "getitem_fancy", "conv2d"]
    assert all(r["ok"] and r["error"] is None for r in rows), rows
    assert all(0 <= r[k] < 1e-6 for r in rows
               for k in ("first_abs", "first_rel", "second_abs", "second_rel"))
    assert "backend " + sg.backend.name in text and "3 cases, 3 ok, 0 failed" in text

    bad = sg.primitive(lambda a: a * a)
    bad.defvjp(lambda g, ans, a: g * a * 3.0)             # should be 2a
    monkeypatch.setitem(CASES, "wrong_vjp",
                        Case("wrong_vjp", lambda d: (bad, [d.normal((3,))])))
    buf = io.StringIO()
    (row,) = run_gradcheck_table(out=buf, backend_note=False, names=["wrong_vjp"])
    assert not row["ok"] and "GradcheckError" in row["error"]
    assert row["first_rel"] > 0.1
    assert "FAIL" in buf.getvalue() and "backend" not in buf.getvalue()
