"""Optimisers against straightforward NumPy transcriptions of PyTorch's documented algorithms
(float64, several steps), hand-computed first steps, param groups and state-dict round trips."""
import numpy as np
import pytest

import scratchgen as sg
from scratchgen import nn, optim


# ---- reference updates (PyTorch's docs, written out plainly) ---------------------------
def ref_sgd(ps, grads, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    ps = [p.copy() for p in ps]
    bufs = [None] * len(ps)
    for gs in grads:
        for i, g in enumerate(gs):
            g = g + weight_decay * ps[i]
            if momentum:
                bufs[i] = g.copy() if bufs[i] is None else momentum * bufs[i] + (1 - dampening) * g
                g = g + momentum * bufs[i] if nesterov else bufs[i]
            ps[i] = ps[i] - lr * g
    return ps


def ref_adam(ps, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
    b1, b2 = betas
    ps = [p.copy() for p in ps]
    m = [np.zeros_like(p) for p in ps]
    v = [np.zeros_like(p) for p in ps]
    vmax = [np.zeros_like(p) for p in ps]
    for t, gs in enumerate(grads, start=1):
        for i, g in enumerate(gs):
            g = g + weight_decay * ps[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1 ** t)
            if amsgrad:
                vmax[i] = np.maximum(vmax[i], v[i])
                v_hat = vmax[i] / (1 - b2 ** t)
            else:
                v_hat = v[i] / (1 - b2 ** t)
            ps[i] = ps[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return ps


def ref_rmsprop(ps, grads, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                centered=False):
    ps = [p.copy() for p in ps]
    sq = [np.zeros_like(p) for p in ps]
    ga = [np.zeros_like(p) for p in ps]
    buf = [np.zeros_like(p) for p in ps]
    for gs in grads:
        for i, g in enumerate(gs):
            g = g + weight_decay * ps[i]
            sq[i] = alpha * sq[i] + (1 - alpha) * g * g
            s = sq[i]
            if centered:
                ga[i] = alpha * ga[i] + (1 - alpha) * g
                s = s - ga[i] ** 2
            step = g / (np.sqrt(s) + eps)
            if momentum > 0:
                buf[i] = momentum * buf[i] + step
                step = buf[i]
            ps[i] = ps[i] - lr * step
    return ps


CASES = [
    (optim.SGD, ref_sgd, dict(lr=0.1)),
    (optim.SGD, ref_sgd, dict(lr=0.1, momentum=0.9)),
    (optim.SGD, ref_sgd, dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    (optim.SGD, ref_sgd, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    (optim.Adam, ref_adam, dict(lr=0.01)),
    (optim.Adam, ref_adam, dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.1)),
    (optim.Adam, ref_adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01, eps=1e-3)),
    (optim.RMSprop, ref_rmsprop, dict(lr=0.01)),
    (optim.RMSprop, ref_rmsprop, dict(lr=0.01, centered=True)),
    (optim.RMSprop, ref_rmsprop, dict(lr=0.01, momentum=0.9, weight_decay=0.1)),
    (optim.RMSprop, ref_rmsprop, dict(lr=0.01, alpha=0.9, eps=1e-3, momentum=0.5,
                                      centered=True)),
]


def problem(seed, steps=6):
    rng = np.random.default_rng(seed)
    p0 = [rng.normal(size=(3, 4)), rng.normal(size=(5,))]
    # gradients of varying scale, so that the amsgrad maximum actually switches
    grads = [[rng.normal(size=p.shape) * (1 + 2 * (t % 3 == 1)) for p in p0]
             for t in range(steps)]
    return p0, grads


def run(cls, p0, grads, **kw):
    ps = [nn.Parameter(p.copy()) for p in p0]
    opt = cls(ps, **kw)
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = sg.tensor(g)
        opt.step()
    return ps, opt


@pytest.mark.parametrize("cls,ref,kw", CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_matches_reference_formulas(cls, ref, kw):
    p0, grads = problem(0)
    ps, _ = run(cls, p0, grads, **kw)
    for p, r in zip(ps, ref(p0, grads, **kw)):
        assert p.dtype == np.float64
        np.testing.assert_allclose(p.numpy(), r, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("cls,ref,kw", [
    (optim.Adam, ref_adam, dict(lr=0.01, eps=1e-3)),
    (optim.RMSprop, ref_rmsprop, dict(lr=0.01, eps=1e-3)),
    (optim.RMSprop, ref_rmsprop, dict(lr=0.01, alpha=0.9, eps=1e-3, momentum=0.5,
                                      centered=True)),
], ids=["Adam", "RMSprop", "RMSprop-centered"])
def test_eps_is_added_after_the_square_root(cls, ref, kw):
    """Gradients ~1e-4 make sqrt(s) ~ 1e-4 << eps = 1e-3: the update divides by about eps,
    while sqrt(s + eps) would be ~3e-2, a 30-fold smaller step. The displacement p - p0 is
    compared, so a misplaced eps misses by over an order of magnitude, not by 1e-6."""
    p0, grads = problem(4)
    grads = [[g * 1e-4 for g in gs] for gs in grads]
    ps, _ = run(cls, p0, grads, **kw)
    for p, r, q in zip(ps, ref(p0, grads, **kw), p0):
        np.testing.assert_allclose(p.numpy() - q, r - q, rtol=1e-9, atol=0)


def test_hand_computed_steps():
    def steps(cls, grads, **kw):
        p = nn.Parameter(np.array([1.0]))
        opt = cls([p], **kw)
        out = []
        for g in grads:
            p.grad = sg.tensor(np.array([g], dtype=np.float64))
            opt.step()
            out.append(p.item())
        return out

    assert steps(optim.SGD, [1, 1], lr=0.1) == pytest.approx([0.9, 0.8])
    # buf: 1, 1.9 -> p: 0.9, 0.71
    assert steps(optim.SGD, [1, 1], lr=0.1, momentum=0.9) == pytest.approx([0.9, 0.71])
    # nesterov: d = g + 0.9 buf: 1.9, 2.71 -> p: 0.81, 0.539
    assert steps(optim.SGD, [1, 1], lr=0.1, momentum=0.9, nesterov=True) == pytest.approx(
        [0.81, 0.539])
    # weight decay: d = 1 + 0.5 * 1 = 1.5 -> 0.85
    assert steps(optim.SGD, [1], lr=0.1, weight_decay=0.5) == pytest.approx([0.85])
    # Adam's first step is lr * g / (|g| + eps) whatever the betas
    assert steps(optim.Adam, [0.5], lr=0.1) == pytest.approx([1 - 0.1 * 0.5 / (0.5 + 1e-8)],
                                                             rel=1e-12)
    # second step, g = 0.5 then -1: m = 0.1*... by hand
    m = 0.9 * 0.05 + 0.1 * -1  # -0.055
    v = 0.999 * 0.00025 + 0.001 * 1  # 0.00124975
    p2 = (1 - 0.1 * 0.5 / (0.5 + 1e-8)) - 0.1 * (m / 0.19) / (np.sqrt(v / (1 - 0.999 ** 2)) + 1e-8)
    assert steps(optim.Adam, [0.5, -1], lr=0.1)[1] == pytest.approx(p2, rel=1e-12)
    # RMSprop: s = 0.01 * 4 = 0.04, p = 1 - 0.01 * 2 / (0.2 + 1e-8)
    assert steps(optim.RMSprop, [2], lr=0.01) == pytest.approx([1 - 0.02 / (0.2 + 1e-8)],
                                                               rel=1e-12)
    # centered: a = 0.02, s - a^2 = 0.0396
    assert steps(optim.RMSprop, [2], lr=0.01, centered=True) == pytest.approx(
        [1 - 0.02 / (np.sqrt(0.0396) + 1e-8)], rel=1e-12)


def test_grads_none_are_skipped_and_grads_untouched():
    a, b = nn.Parameter(np.ones(3)), nn.Parameter(np.ones(2))
    opt = optim.Adam([a, b], lr=0.1, weight_decay=0.5)
    g = np.array([1.0, -2.0, 3.0])
    a.grad = sg.tensor(g.copy())
    opt.step()
    assert (b.numpy() == 1).all() and b not in opt.state and a in opt.state
    np.testing.assert_array_equal(a.grad.numpy(), g)  # weight decay made a new array
    opt.zero_grad()
    assert a.grad is None
    a.grad = sg.tensor(g.copy())
    opt.zero_grad(set_to_none=False)
    assert (a.grad.numpy() == 0).all()


def test_float32_parameters_stay_float32_and_in_place():
    lin = nn.Linear(4, 3)
    w = lin.weight.array
    for cls in (optim.SGD, optim.Adam, optim.RMSprop):
        opt = cls(lin.parameters(), lr=0.01)
        lin(sg.tensor(np.ones((2, 4), dtype=np.float32))).sum().backward()
        opt.step()
        lin.zero_grad()
        assert lin.weight.array is w and w.dtype == np.float32


def test_param_groups_have_their_own_options():
    p0, grads = problem(1, steps=3)
    a, b = nn.Parameter(p0[0].copy()), nn.Parameter(p0[1].copy())
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.01, "momentum": 0.5}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0.0
    assert opt.param_groups[1]["lr"] == 0.01
    for gs in grads:
        a.grad, b.grad = sg.tensor(gs[0]), sg.tensor(gs[1])
        opt.step()
    np.testing.assert_allclose(a.numpy(), ref_sgd([p0[0]], [[g[0]] for g in grads], lr=0.1)[0])
    np.testing.assert_allclose(b.numpy(), ref_sgd([p0[1]], [[g[1]] for g in grads], lr=0.01,
                                                  momentum=0.5)[0])
    opt.param_groups[0]["lr"] = 0.0  # schedules edit the groups
    a.grad = sg.tensor(np.ones_like(p0[0]))
    before = a.numpy().copy()
    opt.step()
    np.testing.assert_array_equal(a.numpy(), before)


def test_bad_arguments():
    p = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam([p], lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="more than one place"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="unknown option"):
        optim.SGD([{"params": [p], "betas": (0.9, 0.99)}], lr=0.1)
    with pytest.raises(ValueError, match="not a leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="not a Tensor"):
        optim.SGD([np.ones(2)], lr=0.1)


@pytest.mark.parametrize("cls,ref,kw", [CASES[3], CASES[6], CASES[10]],
                         ids=["SGD", "Adam", "RMSprop"])
def test_state_dict_round_trip_continues_exactly(cls, ref, kw, tmp_path):
    p0, grads = problem(2, steps=6)
    full, _ = run(cls, p0, grads, **kw)
    half, opt = run(cls, p0, grads[:3], **kw)
    sg.save({"params": [p.array for p in half], "opt": opt.state_dict()}, tmp_path / "ck.npz")
    ck = sg.load(tmp_path / "ck.npz")
    ps = [nn.Parameter(np.zeros_like(p)) for p in p0]
    for p, v in zip(ps, ck["params"]):
        p.array[...] = v
    opt2 = cls(ps, lr=123.0)  # options come back from the checkpoint
    opt2.load_state_dict(ck["opt"])
    assert opt2.param_groups[0]["lr"] == kw["lr"]
    sd = opt2.state_dict()
    assert list(sd["state"]) == [0, 1] and sd["param_groups"][0]["params"] == [0, 1]
    for gs in grads[3:]:
        for p, g in zip(ps, gs):
            p.grad = sg.tensor(g)
        opt2.step()
    for p, q in zip(ps, full):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_loaded_state_is_a_copy():
    p0, grads = problem(3, steps=4)
    ps, opt = run(optim.Adam, p0, grads[:2], lr=0.01)
    twin = [nn.Parameter(p.numpy().copy()) for p in ps]
    opt2 = optim.Adam(twin, lr=0.01)
    opt2.load_state_dict(opt.state_dict())  # in memory, no file in between
    for gs in grads[2:]:
        for p, q, g in zip(ps, twin, gs):
            p.grad, q.grad = sg.tensor(g), sg.tensor(g)
        opt.step()
        opt2.step()
    for p, q in zip(ps, twin):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_load_state_dict_mismatch_errors():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))
    opt = optim.Adam([a, b])
    a.grad, b.grad = sg.tensor(np.ones(2)), sg.tensor(np.ones(3))
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="group 0 has 2 parameters in the checkpoint and 1"):
        optim.Adam([a]).load_state_dict(sd)
    with pytest.raises(ValueError, match="1 parameter groups, this optimiser 2"):
        optim.Adam([{"params": [a]}, {"params": [b]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"'exp_avg' of parameter 0 has shape \(2,\), the "
                                         r"parameter \(3,\)"):
        optim.Adam([b, a]).load_state_dict(sd)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [dict(lr=0.01), dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.1),
                                dict(lr=0.01, amsgrad=True, weight_decay=0.01, eps=1e-3)])
def test_adam_fused_kernel_equals_generic_path(dtype, kw, monkeypatch):
    """The backend's fused ``adam_update`` (where it has one) and the generic array-op path
    give the same parameters and state; a non-contiguous gradient takes the generic path."""
    from types import SimpleNamespace
    rng = np.random.default_rng(7)
    p0 = [rng.standard_normal((5, 7)).astype(dtype), rng.standard_normal(9).astype(dtype)]
    grads = [[rng.standard_normal(p.shape).astype(dtype) for p in p0] for _ in range(4)]
    fused_ps, fused = run(optim.Adam, p0, grads, **kw)
    monkeypatch.setattr(sg.backend, "kernels", SimpleNamespace())  # no adam_update
    plain_ps, plain = run(optim.Adam, p0, grads, **kw)
    monkeypatch.undo()
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    for a, b in zip(fused_ps, plain_ps):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=0)
    for sa, sb in zip(fused.state.values(), plain.state.values()):
        assert sa["step"] == sb["step"] == 4
        for k in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(sg.backend.to_numpy(sa[k]), sg.backend.to_numpy(sb[k]),
                                       rtol=rtol, atol=0)
    # a strided (non-contiguous) gradient is accepted and gives the same step
    p = nn.Parameter(p0[0].copy())
    opt = optim.Adam([p], **kw)
    wide = np.zeros((5, 14), dtype)
    wide[:, ::2] = grads[0][0]
    p.grad = sg.tensor(wide)[:, ::2]
    opt.step()
    q, _ = run(optim.Adam, [p0[0]], [[grads[0][0]]], **kw)
    np.testing.assert_allclose(p.numpy(), q[0].numpy(), rtol=rtol, atol=0)


# ---- AdamW and learning-rate schedules (PyTorch's documented formulas) -------------------
def ref_adamw(ps, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
              amsgrad=False):
    """torch.optim.AdamW: theta_t = theta_{t-1} - lr wd theta_{t-1}, then Adam's step on the
    undecayed gradient."""
    b1, b2 = betas
    ps = [p.copy() for p in ps]
    m, v, vmax = ([np.zeros_like(p) for p in ps] for _ in range(3))
    for t, gs in enumerate(grads, start=1):
        for i, g in enumerate(gs):
            ps[i] = ps[i] - lr * weight_decay * ps[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            vmax[i] = np.maximum(vmax[i], v[i]) if amsgrad else v[i]
            ps[i] = ps[i] - lr * (m[i] / (1 - b1 ** t)) / (np.sqrt(vmax[i] / (1 - b2 ** t)) + eps)
    return ps


@pytest.mark.parametrize("kw", [dict(lr=0.01), dict(lr=0.05, weight_decay=0.3, betas=(0.5, 0.9)),
                                dict(lr=0.01, amsgrad=True, weight_decay=0.1, eps=1e-3)])
def test_adamw_matches_the_reference_and_differs_from_adam_with_decay(kw):
    p0, grads = problem(5)
    ps, opt = run(optim.AdamW, p0, grads, **kw)
    for p, r in zip(ps, ref_adamw(p0, grads, **kw)):
        np.testing.assert_allclose(p.numpy(), r, rtol=1e-6, atol=1e-12)
    assert opt.param_groups[0]["weight_decay"] == kw.get("weight_decay", 1e-2)
    adam, _ = run(optim.Adam, p0, grads, **{"weight_decay": 1e-2, **kw})
    assert not np.allclose(adam[0].numpy(), ps[0].numpy(), rtol=1e-6)


SCHEDULES = [  # (class, kwargs, lr at step t for base rate b)
    (optim.lr_scheduler.StepLR, dict(step_size=3, gamma=0.5), lambda b, t: b * 0.5 ** (t // 3)),
    (optim.lr_scheduler.ExponentialLR, dict(gamma=0.9), lambda b, t: b * 0.9 ** t),
    (optim.lr_scheduler.CosineAnnealingLR, dict(T_max=7, eta_min=0.01),
     lambda b, t: 0.01 + (b - 0.01) * (1 + np.cos(np.pi * t / 7)) / 2),
    (optim.lr_scheduler.LambdaLR, dict(lr_lambda=lambda t: 1 / (1 + t)), lambda b, t: b / (1 + t)),
    (optim.lr_scheduler.LinearLR, dict(start_factor=0.25, end_factor=1.0, total_iters=4),
     lambda b, t: b * (0.25 + 0.75 * min(t, 4) / 4)),
    (optim.lr_scheduler.LinearLR, dict(), lambda b, t: b * (1 / 3 + (2 / 3) * min(t, 5) / 5)),
]


def _two_groups(lr=0.1):
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))
    return optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.02}], lr=lr), (a, b)


@pytest.mark.parametrize("cls,kw,formula", SCHEDULES, ids=lambda c: getattr(c, "__name__", ""))
def test_schedules_follow_the_documented_formulas_per_group(cls, kw, formula, tmp_path):
    opt, (a, b) = _two_groups()
    sched = cls(opt, **kw)
    seen = [sched.get_last_lr()]
    for t in range(1, 12):
        for p in (a, b):
            p.grad = sg.tensor(np.ones(p.shape))
        opt.step()
        sched.step()
        seen.append(sched.get_last_lr())
        if t == 5:
            sg.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, tmp_path / "c.npz")
    for t, lrs in enumerate(seen):
        np.testing.assert_allclose(lrs, [formula(0.1, t), formula(0.02, t)], rtol=1e-12)
        assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.02]
    # resume at t = 5 in a fresh optimiser and schedule: the same rates, exactly
    ck = sg.load(tmp_path / "c.npz")
    opt2, _ = _two_groups(lr=99.0)
    opt2.load_state_dict(ck["opt"])
    sched2 = cls(opt2, **kw, last_epoch=ck["sched"]["last_epoch"])
    sched2.load_state_dict(ck["sched"])
    assert sched2.last_epoch == 5 and sched2.get_last_lr() == seen[5]
    for t in range(6, 12):
        opt2.step()
        sched2.step()
        assert sched2.get_last_lr() == seen[t]
    assert ("lr_lambdas" in sched.state_dict()) is False


def test_scheduler_arguments_and_factories():
    opt, _ = _two_groups()
    with pytest.raises(ValueError, match="step_size"):
        optim.lr_scheduler.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="2 parameter groups"):
        optim.lr_scheduler.LambdaLR(opt, [lambda t: 1.0])
    with pytest.raises(KeyError, match="initial_lr"):
        optim.lr_scheduler.ExponentialLR(_two_groups()[0], gamma=0.5, last_epoch=3)
    for name, cls in optim.OPTIMIZERS.items():
        assert type(optim.build_optimizer(name, [nn.Parameter(np.ones(2))], lr=0.1)) is cls
    with pytest.raises(ValueError, match="unknown optimizer 'adamax'.*adamw"):
        optim.build_optimizer("adamax", [nn.Parameter(np.ones(2))])
    with pytest.raises(ValueError, match="optimizer 'sgd':.*betas"):
        optim.build_optimizer("sgd", [nn.Parameter(np.ones(2))], betas=(0.9, 0.9))
    expected = {"constant": lambda t: 0.1, "step": lambda t: 0.1 * 0.1 ** (t // 3),
                "exponential": lambda t: 0.1 * 0.01 ** (t / 10),
                "cosine": lambda t: 0.05 * (1 + np.cos(np.pi * t / 10)),
                "linear": lambda t: 0.1 * (1 - t / 10)}
    for name, f in expected.items():
        o = optim.SGD([nn.Parameter(np.ones(1))], lr=0.1)
        s = optim.build_scheduler(name, o, total_steps=10)
        for t in range(1, 11):
            o.step()
            s.step()
        assert s.get_last_lr()[0] == pytest.approx(f(10), abs=1e-15), name
    with pytest.raises(ValueError, match="unknown lr schedule 'poly'.*cosine"):
        optim.build_scheduler("poly", o, 10)
    assert optim.build_scheduler("step", o, 10, gamma=0.5).gamma == 0.5


# ---- Adadelta and Adagrad against torch.optim itself -----------------------------------
@pytest.mark.parametrize("name,kw", [
    ("Adadelta", {}), ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1)),
    ("Adagrad", {}), ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1,
                                      initial_accumulator_value=0.3, eps=1e-8)),
])
def test_adadelta_adagrad_step_for_step_with_torch(name, kw, tmp_path):
    torch = pytest.importorskip("torch")
    p0, grads = problem(3, steps=6)
    ours = [nn.Parameter(sg.tensor(p.copy())) for p in p0]
    theirs = [torch.nn.Parameter(torch.tensor(p.copy())) for p in p0]
    opt, topt = getattr(optim, name)(ours, **kw), getattr(torch.optim, name)(theirs, **kw)
    for k, gs in enumerate(grads):
        for p, q, g in zip(ours, theirs, gs):
            p.grad, q.grad = sg.tensor(g), torch.tensor(g)
        opt.step(), topt.step()
        for p, q in zip(ours, theirs):
            np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-12, atol=1e-14)
        if k == 2:  # a checkpoint mid-run continues exactly
            sg.save(opt.state_dict(), tmp_path / "o.npz")
            opt = getattr(optim, name)(ours, **kw)
            opt.load_state_dict(sg.load(tmp_path / "o.npz"))
    assert set(opt.state_dict()["state"][0]) == set(topt.state_dict()["state"][0])


def test_adadelta_adagrad_defaults_are_pytorchs():
    torch = pytest.importorskip("torch")
    for name in ("Adadelta", "Adagrad"):
        ours = getattr(optim, name)([nn.Parameter(sg.zeros(1))]).defaults
        theirs = getattr(torch.optim, name)([torch.nn.Parameter(torch.zeros(1))]).defaults
        assert all(theirs[k] == v for k, v in ours.items()), (name, ours)
    with pytest.raises(ValueError, match="rho"):
        optim.Adadelta([nn.Parameter(sg.zeros(1))], rho=1.5)


def test_zero_grad_sets_none_by_default_like_pytorch_2():
    lin = nn.Linear(2, 1)
    opt = optim.Adagrad(lin.parameters())
    lin(sg.ones(1, 2)).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in lin.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in lin.parameters())
    lin(sg.ones(1, 2)).sum().backward()
    lin.zero_grad()
    assert all(p.grad is None for p in lin.parameters())
