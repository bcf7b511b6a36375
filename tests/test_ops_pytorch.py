"""The PyTorch-named layers and losses against PyTorch itself (skipped where torch is absent):
values, first and second derivatives in float64, module spellings and reprs."""
import numpy as np
import pytest

import scratchgen as sg
import scratchgen.functional as F
from scratchgen import nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _pair(np_arrays, grad=True):
    """The same float64 leaves for scratchgen and torch."""
    ours = [sg.tensor(a, requires_grad=grad) for a in np_arrays]
    theirs = [torch.tensor(a, requires_grad=grad) for a in np_arrays]
    return ours, theirs


def _t(a):
    return a.numpy() if isinstance(a, sg.Tensor) else a.detach().numpy()


def assert_same(fn_ours, fn_torch, arrays, rng, second=True, rtol=1e-10, atol=1e-12):
    """Outputs, v^T J (first order) and the gradient of <u, v^T J> (second order) agree."""
    ours, theirs = _pair(arrays)
    yo, yt = fn_ours(*ours), fn_torch(*theirs)
    np.testing.assert_allclose(_t(yo), _t(yt), rtol=rtol, atol=atol)
    v = rng.standard_normal(tuple(yt.shape))
    go = sg.grad(yo, ours, sg.tensor(v), create_graph=second, allow_unused=True)
    gt = torch.autograd.grad(yt, theirs, torch.tensor(v), create_graph=second, allow_unused=True)
    for a, b in zip(go, gt):
        if b is None:
            assert a is None or not np.any(_t(a))
            continue
        np.testing.assert_allclose(_t(a), _t(b), rtol=rtol, atol=atol)
    if not second:
        return
    pick = [i for i, b in enumerate(gt) if b is not None and b.requires_grad]
    if not pick:
        return
    us = [rng.standard_normal(tuple(gt[i].shape)) for i in pick]
    st = torch.autograd.grad(sum((gt[i] * torch.tensor(u)).sum() for i, u in zip(pick, us)),
                             theirs, allow_unused=True)
    inner = [(go[i] * sg.tensor(u)).sum() for i, u in zip(pick, us) if go[i].requires_grad]
    if not inner:            # our first derivative is constant in the inputs: PyTorch's too
        assert all(b is None or not b.detach().numpy().any() for b in st)
        return
    so = sg.grad(sum(inner[1:], inner[0]), ours, allow_unused=True)
    for a, b in zip(so, st):
        if b is not None:
            if a is None:
                assert not b.detach().numpy().any()
            else:
                np.testing.assert_allclose(_t(a), _t(b), rtol=rtol, atol=atol)


def _geometries(rng, n, dilation=True):
    out = []
    while len(out) < n:
        k = tuple(int(v) for v in rng.integers(1, 4, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        p = tuple(int(rng.integers(0, k[i] // 2 + 1)) for i in (0, 1))
        d = tuple(int(v) for v in rng.integers(1, 3, 2)) if dilation else (1, 1)
        hw = tuple(int(v) for v in rng.integers(1, 8, 2))
        out.append((k, s, p, d, bool(rng.integers(2)), hw))
    return out


def test_max_pool2d_matches_torch_values_indices_first_and_second_order():
    rng = np.random.default_rng(0)
    checked = 0
    for k, s, p, d, ceil, hw in _geometries(rng, 30):
        x = rng.permutation(2 * 3 * hw[0] * hw[1]).reshape((2, 3) + hw) * 0.1  # no ties
        try:
            ref, ref_i = TF.max_pool2d(torch.tensor(x), k, s, p, d, ceil, True)
        except RuntimeError:
            with pytest.raises(ValueError, match="max_pool2d"):
                F.max_pool2d(sg.tensor(x), k, s, p, d, ceil)
            continue
        if torch.isinf(ref).any():   # a window wholly in the padding: PyTorch's index is moot
            continue
        y, i = F.max_pool2d(sg.tensor(x), k, s, p, d, ceil, return_indices=True)
        np.testing.assert_array_equal(i.numpy(), ref_i.numpy())
        assert_same(lambda a: F.max_pool2d(a, k, s, p, d, ceil),
                    lambda a: TF.max_pool2d(a, k, s, p, d, ceil), [x], rng)
        checked += 1
    assert checked > 15


def test_max_pool2d_ties_follow_torch_and_nan_propagates():
    x = np.array([[[[1.0, 1.0, 0.0], [1.0, 0.5, 2.0], [0.0, 2.0, 2.0]]]])
    for k, s in ((2, 1), (3, 1), (2, 2)):
        assert_same(lambda a: F.max_pool2d(a, k, s, ceil_mode=True),
                    lambda a: TF.max_pool2d(a, k, s, ceil_mode=True), [x],
                    np.random.default_rng(1), second=False)
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = np.nan
    t = sg.tensor(x, requires_grad=True)
    y = F.max_pool2d(t, 2, 1)
    np.testing.assert_array_equal(np.isnan(y.numpy()), np.ones((1, 1, 2, 2), bool))
    y.sum().backward()                    # each window's gradient at its first NaN
    np.testing.assert_array_equal(t.grad.numpy()[0, 0], [[0, 0, 0], [0, 4, 0], [0, 0, 0]])


def test_avg_pool2d_matches_torch():
    rng = np.random.default_rng(2)
    checked = 0
    for k, s, p, _, ceil, hw in _geometries(rng, 30, dilation=False):
        include, override = bool(rng.integers(2)), [None, None, 5][rng.integers(3)]
        x = rng.standard_normal((2, 2) + hw)
        try:
            TF.avg_pool2d(torch.tensor(x), k, s, p, ceil, include, override)
        except RuntimeError:
            with pytest.raises(ValueError, match="avg_pool2d"):
                F.avg_pool2d(sg.tensor(x), k, s, p, ceil, include, override)
            continue
        assert_same(lambda a: F.avg_pool2d(a, k, s, p, ceil, include, override) ** 2,
                    lambda a: TF.avg_pool2d(a, k, s, p, ceil, include, override) ** 2, [x], rng)
        checked += 1
    assert checked > 15


def test_pool_modules_spell_and_print_as_torch():
    x = np.random.default_rng(3).standard_normal((1, 2, 5, 5))
    for ours, theirs in ((nn.MaxPool2d(2), torch.nn.MaxPool2d(2)),
                         (nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                          torch.nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)),
                         (nn.AvgPool2d(2), torch.nn.AvgPool2d(2)),
                         (nn.AvgPool2d((3, 2), stride=1, padding=1),
                          torch.nn.AvgPool2d((3, 2), stride=1, padding=1))):
        assert repr(ours) == repr(theirs)
        np.testing.assert_allclose(ours(sg.tensor(x)).numpy(), theirs(torch.tensor(x)).numpy())


def test_bad_pool_arguments_are_one_line_errors():
    x = sg.tensor(np.zeros((1, 1, 4, 4)))
    for call, msg in ((lambda: F.max_pool2d(x, 2, padding=2), "at most half"),
                      (lambda: F.max_pool2d(x, 5), "too small"),
                      (lambda: F.avg_pool2d(sg.tensor(np.zeros((4, 4))), 2), "3-D"),
                      (lambda: F.max_pool2d(x, (2, 2, 2)), "pair"),
                      (lambda: F.avg_pool2d(x, 2, divisor_override=0), "divisor_override")):
        with pytest.raises(ValueError, match=msg) as e:
            call()
        assert "\n" not in str(e.value)


# ---- losses ---------------------------------------------------------------------------
def test_binary_cross_entropy_matches_torch_including_the_clamp():
    rng = np.random.default_rng(4)
    x = rng.uniform(0.02, 0.98, (3, 4))
    y = rng.uniform(0, 1, (3, 4))
    w = rng.uniform(0.5, 2, (3, 4))
    for red in ("mean", "sum", "none"):
        assert_same(lambda a, b: F.binary_cross_entropy(a, b, sg.tensor(w), reduction=red),
                    lambda a, b: TF.binary_cross_entropy(a, b, torch.tensor(w), reduction=red),
                    [x, y], rng, rtol=1e-8)     # PyTorch's second order adds 1e-12 to x, 1 - x
    # at 0 and 1 the logs are clamped at -100 and the input's gradient stays finite, as in
    # PyTorch; the target's is the clamped slope (+-100 there), where PyTorch's is +-inf
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.5])
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.3])
    assert_same(lambda a: F.binary_cross_entropy(a, sg.tensor(y), reduction="none"),
                lambda a: TF.binary_cross_entropy(a, torch.tensor(y), reduction="none"), [x],
                rng, second=False)
    t = sg.tensor(y, requires_grad=True)
    (gy,) = sg.grad(F.binary_cross_entropy(sg.tensor(x), t, reduction="sum"), t)
    np.testing.assert_allclose(gy.numpy()[:4], [100.0, -100.0, 100.0, -100.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.binary_cross_entropy(sg.tensor([1.5]), sg.tensor([1.0]))


def test_bce_with_logits_pos_weight_and_weight_match_torch():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((4, 3)) * 3, rng.uniform(0, 1, (4, 3))
    pw, w = rng.uniform(0.5, 3, (3,)), rng.uniform(0.5, 2, (4, 3))
    for red in ("mean", "sum", "none"):
        assert_same(lambda a, b: F.binary_cross_entropy_with_logits(
                        a, b, sg.tensor(w), reduction=red, pos_weight=sg.tensor(pw)),
                    lambda a, b: TF.binary_cross_entropy_with_logits(
                        a, b, torch.tensor(w), reduction=red, pos_weight=torch.tensor(pw)),
                    [x, y], rng)
    ours = nn.BCEWithLogitsLoss(pos_weight=sg.tensor(pw))(sg.tensor(x), sg.tensor(y))
    ref = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pw))(torch.tensor(x), torch.tensor(y))
    np.testing.assert_allclose(ours.item(), ref.item(), rtol=1e-12)


def test_mse_and_legacy_reduction_flags_match_torch():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    assert_same(lambda a, b: F.mse_loss(a, b), lambda a, b: TF.mse_loss(a, b), [x, y], rng)
    for sa, r in ((False, None), (None, False), (True, True)):
        ours = F.mse_loss(sg.tensor(x), sg.tensor(y), sa, r)
        ref = TF.mse_loss(torch.tensor(x), torch.tensor(y), sa, r)
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-12)


def _class_cases(rng):
    """(input shape, target) for (C,), (N, C) and (N, C, L, M) inputs."""
    return [((4,), np.array(2)), ((5, 4), rng.integers(0, 4, 5)),
            ((2, 4, 3, 2), rng.integers(0, 4, (2, 3, 2)))]


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("red", ["mean", "sum", "none"])
def test_cross_entropy_and_nll_match_torch(red, weighted, smoothing):
    rng = np.random.default_rng(7)
    w = rng.uniform(0.5, 2, 4) if weighted else None
    wo, wt = (sg.tensor(w), torch.tensor(w)) if weighted else (None, None)
    for shape, t in _class_cases(rng):
        t = t.copy()
        if t.ndim and t.size > 2:
            t.flat[1] = -100                        # ignored rows count nothing
        to, tt = sg.tensor(t), torch.tensor(t)
        x = rng.standard_normal(shape)
        assert_same(lambda a: F.cross_entropy(a, to, wo, reduction=red,
                                              label_smoothing=smoothing),
                    lambda a: TF.cross_entropy(a, tt, wt, reduction=red,
                                               label_smoothing=smoothing), [x], rng)
        assert_same(lambda a: F.nll_loss(a, to, wo, reduction=red),
                    lambda a: TF.nll_loss(a, tt, wt, reduction=red), [x], rng)
        q = rng.uniform(0.1, 1, shape)
        q /= q.sum(axis=min(1, len(shape) - 1), keepdims=True)
        assert_same(lambda a, b: F.cross_entropy(a, b, wo, reduction=red,
                                                 label_smoothing=smoothing),
                    lambda a, b: TF.cross_entropy(a, b, wt, reduction=red,
                                                  label_smoothing=smoothing), [x, q], rng)


def test_loss_modules_match_torch_and_carry_their_weights():
    rng = np.random.default_rng(8)
    x, t = rng.standard_normal((6, 3)), rng.integers(0, 3, 6)
    t[0] = 1 - 2                                          # -1, ignored below
    w = rng.uniform(0.5, 2, 3)
    pairs = [(nn.CrossEntropyLoss(weight=sg.tensor(w), ignore_index=-1, label_smoothing=0.1),
              torch.nn.CrossEntropyLoss(weight=torch.tensor(w), ignore_index=-1,
                                        label_smoothing=0.1)),
             (nn.NLLLoss(ignore_index=-1, reduction="sum"),
              torch.nn.NLLLoss(ignore_index=-1, reduction="sum"))]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours(sg.tensor(x), sg.tensor(t)).numpy(),
                                   theirs(torch.tensor(x), torch.tensor(t)).numpy(), rtol=1e-12)
    assert "weight" in pairs[0][0].state_dict() and "weight" in pairs[0][1].state_dict()
    p, y = 1 / (1 + np.exp(-x)), rng.uniform(0, 1, (6, 3))
    for ours, theirs, args in ((nn.BCELoss(), torch.nn.BCELoss(), (p, y)),
                               (nn.MSELoss(reduction="sum"), torch.nn.MSELoss(reduction="sum"),
                                (x, y))):
        np.testing.assert_allclose(ours(*map(sg.tensor, args)).numpy(),
                                   theirs(*map(torch.tensor, args)).numpy(), rtol=1e-12)


def test_all_rows_ignored_gives_nan_as_torch():
    x, t = np.zeros((2, 3)), np.array([-100, -100])
    ours = F.cross_entropy(sg.tensor(x), sg.tensor(t)).item()
    assert np.isnan(ours) and np.isnan(TF.cross_entropy(torch.tensor(x), torch.tensor(t)).item())


# ---- activations and dropout ----------------------------------------------------------
def test_softmax_modules_match_torch():
    x = np.random.default_rng(10).standard_normal((2, 3, 4))
    for dim in (0, 1, -1, None):
        for ours, theirs in ((nn.Softmax(dim), torch.nn.Softmax(dim)),
                             (nn.LogSoftmax(dim=dim), torch.nn.LogSoftmax(dim=dim))):
            assert repr(ours) == repr(theirs)
            np.testing.assert_allclose(ours(sg.tensor(x)).numpy(),
                                       theirs(torch.tensor(x)).numpy(), rtol=1e-12)


def test_inplace_is_accepted_and_changes_nothing():
    x = sg.tensor([-1.0, 2.0])
    for y in (F.relu(x, inplace=True), nn.ReLU(inplace=True)(x),
              F.leaky_relu(x, 0.1, inplace=True), nn.LeakyReLU(0.1, inplace=True)(x),
              F.dropout(x, 0.5, training=False, inplace=True)):
        assert y is not x or y.tolist() == [-1.0, 2.0]
    assert x.tolist() == [-1.0, 2.0]
    assert repr(nn.ReLU(inplace=True)) == repr(torch.nn.ReLU(inplace=True))
    assert repr(nn.LeakyReLU(0.2)) == repr(torch.nn.LeakyReLU(0.2))


def test_dropout_and_dropout2d_semantics_as_torch():
    x = sg.tensor(np.ones((20, 30, 4, 5)), requires_grad=True)
    sg.manual_seed(0)
    y = F.dropout2d(x, 0.3)                               # training=True by default, as torch's
    v = y.numpy()
    per_channel = v.reshape(20, 30, -1)
    assert np.all(per_channel.min(-1) == per_channel.max(-1))   # whole channels kept or zeroed
    kept = per_channel[..., 0] != 0
    np.testing.assert_allclose(per_channel[kept], 1 / 0.7)
    assert abs(kept.mean() - 0.7) < 0.05
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), v)           # the gradient carries the mask
    sg.manual_seed(0)
    np.testing.assert_array_equal(F.dropout2d(x, 0.3).numpy(), v)   # sg.manual_seed decides it
    assert F.dropout(x, 0.3, training=False) is x and F.dropout2d(x, 0.3, False) is x
    m = nn.Sequential(nn.Dropout2d(0.5), nn.Dropout(0.5))
    m.eval()
    assert m(x) is x
    m.train()
    assert not np.array_equal(m(x).numpy(), x.numpy())
    assert repr(nn.Dropout2d(0.25)) == "Dropout2d(p=0.25)"
    with pytest.raises(ValueError, match="3-D"):
        F.dropout2d(sg.tensor(np.ones((2, 3))))
    with pytest.raises(ValueError, match="probability"):
        F.dropout(x, 1.5)


# ---- whole networks as PyTorch's examples write them ----------------------------------
def _mnist_nets(lib, F_):
    """pytorch/examples' MNIST Net, in either library."""
    class Net(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = lib.nn.Conv2d(1, 4, 3, 1)
            self.conv2 = lib.nn.Conv2d(4, 8, 3, 1)
            self.dropout1 = lib.nn.Dropout2d(0.25)
            self.dropout2 = lib.nn.Dropout(0.5)
            self.fc1 = lib.nn.Linear(8 * 4 * 4, 16)
            self.fc2 = lib.nn.Linear(16, 10)
            self.pool = lib.nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False)

        def forward(self, x):
            x = F_.relu(self.conv1(x), inplace=True)
            x = self.pool(x)[..., :-1, :-1]
            x = F_.relu(self.conv2(x))
            x = F_.max_pool2d(x, 2, ceil_mode=True)
            x = self.dropout1(x)
            x = lib.flatten(x, 1)
            x = F_.relu(self.fc1(x))
            x = self.dropout2(x)
            return F_.log_softmax(self.fc2(x), dim=1)
    return Net()


def test_mnist_example_network_matches_torch_loss_gradients_and_penalty():
    """Same weights, same batch: the loss, every parameter's gradient and the gradient of a
    gradient penalty (double backward through both pools) agree with PyTorch."""
    ours, theirs = _mnist_nets(sg, F), _mnist_nets(torch, TF)
    ours.double(), theirs.double()
    theirs.load_state_dict({k: torch.tensor(sg.backend.to_numpy(getattr(v, "data", v)))
                            for k, v in ours.state_dict().items()})
    ours.eval(), theirs.eval()                                 # dropout off in both
    rng = np.random.default_rng(9)
    x, t = rng.standard_normal((3, 1, 12, 12)), rng.integers(0, 10, 3)
    xo, xt = sg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    lo = F.nll_loss(ours(xo), sg.tensor(t), reduction="sum")
    lt = TF.nll_loss(theirs(xt), torch.tensor(t), reduction="sum")
    (go,) = sg.grad(lo, xo, create_graph=True)
    (gt,) = torch.autograd.grad(lt, xt, create_graph=True)
    po, pt = lo + (go * go).sum(), lt + (gt * gt).sum()
    po.backward()
    pt.backward()
    np.testing.assert_allclose(po.item(), pt.item(), rtol=1e-10)
    named = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), named[name].grad.numpy(), rtol=1e-8,
                                   atol=1e-12, err_msg=name)
    ours.train()
    assert not np.array_equal(ours(xo).numpy(), ours(xo).numpy())   # dropout on in training
