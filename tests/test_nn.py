"""nn: Module bookkeeping, layers against hand-computed and NumPy-loop references, PyTorch's
initialisation formulas, state dicts, and gradients through every layer (float64 gradcheck)."""
import math

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import nn
from scratchgen.nn import init


def T(a, requires_grad=False):
    return sg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def set_params(module, **values):
    for name, v in values.items():
        getattr(module, name).array[...] = sg.backend.asarray(np.asarray(v))


# ---- NumPy loop references -----------------------------------------------------------
def conv2d_loops(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, o, ho, wo))
    for a in range(n):
        for q in range(o):
            for i in range(ho):
                for j in range(wo):
                    y[a, q, i, j] = b[q] + np.sum(
                        xp[a, :, i * stride:i * stride + kh, j * stride:j * stride + kw] * w[q])
    return y


def conv_transpose2d_loops(x, w, b, stride, padding, output_padding):
    """Scatter: y[n, o, i s + p - pad, j s + q - pad] += x[n, c, i, j] w[c, o, p, q]."""
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    ho = (h - 1) * stride - 2 * padding + kh + output_padding
    wo = (wd - 1) * stride - 2 * padding + kw + output_padding
    full = np.zeros((n, o, ho + 2 * padding + kh, wo + 2 * padding + kw))
    for a in range(n):
        for ci in range(c):
            for i in range(h):
                for j in range(wd):
                    for p in range(kh):
                        for q in range(kw):
                            full[a, :, i * stride + p, j * stride + q] += (
                                x[a, ci, i, j] * w[ci, :, p, q])
    y = full[:, :, padding:padding + ho, padding:padding + wo]
    return y + b.reshape(1, -1, 1, 1)


# ---- Module bookkeeping ---------------------------------------------------------------
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))
        self.register_buffer("counter", np.zeros(2))
        self.register_buffer("cache", np.zeros(1), persistent=False)

    def forward(self, x):
        return self.bn(self.fc(x)) * self.scale


def test_registration_and_traversal():
    b = Block()
    assert [n for n, _ in b.named_parameters()] == ["scale", "fc.weight", "fc.bias", "bn.weight",
                                                    "bn.bias"]
    assert [n for n, _ in b.named_buffers()] == ["counter", "cache", "bn.running_mean",
                                                 "bn.running_var", "bn.num_batches_tracked"]
    assert list(b.state_dict()) == ["scale", "counter", "fc.weight", "fc.bias", "bn.weight",
                                    "bn.bias", "bn.running_mean", "bn.running_var",
                                    "bn.num_batches_tracked"]
    assert [n for n, _ in b.named_modules()] == ["", "fc", "bn"]
    assert list(b.children()) == [b.fc, b.bn]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in b.parameters())
    assert b.state_dict()["fc.weight"] is b.fc.weight.array  # shares storage, like PyTorch


def test_shared_parameter_listed_once_and_reassignment():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    b = Block()
    b.fc = nn.Tanh()  # a module replaces a module
    assert "fc.weight" not in b.state_dict()
    with pytest.raises(TypeError, match="parameter 'scale'"):
        b.scale = sg.tensor([1.0])
    b.scale = None
    assert b.scale is None and "scale" not in b.state_dict()
    b.counter = np.ones(2)  # buffers accept arrays (wrapped as Tensors)
    assert isinstance(b.counter, sg.Tensor) and b.counter.tolist() == [1.0, 1.0]
    del b.bn
    assert not hasattr(b, "bn") and [n for n, _ in b.named_modules()] == ["", "fc"]


def test_parameter_before_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter([1.0])

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Bad()


def test_train_eval_zero_grad_requires_grad_apply():
    b = Block()
    assert b.training and b.bn.training
    assert b.eval() is b and not b.training and not b.bn.training and not b.fc.training
    b.train()
    assert b.bn.training
    out = b(sg.tensor(np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)))
    out.sum().backward()
    assert all(p.grad is not None for p in b.parameters())
    b.zero_grad()
    assert all(p.grad is None for p in b.parameters())
    b.requires_grad_(False)
    assert not any(p.requires_grad for p in b.parameters())
    seen = []
    b.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "BatchNorm1d", "Block"]


def test_dtype_casts_in_place():
    b = Block()
    w = b.fc.weight
    assert w.dtype == np.float32 and b.bn.running_var.dtype == np.float32
    b.double()
    assert b.fc.weight is w and w.dtype == np.float64 and b.bn.running_mean.dtype == np.float64
    assert b.bn.num_batches_tracked.dtype == np.int64  # integer buffers are left alone
    b.to("float32")
    assert w.dtype == np.float32
    with pytest.raises(TypeError, match="floating-point"):
        b.to("int32")
    assert nn.Linear(2, 2, dtype="float64").weight.dtype == np.float64
    assert nn.Parameter([1.0, 2.0]).dtype == np.float32


def test_repr_is_pytorch_like():
    net = nn.Sequential(nn.Conv2d(1, 8, 4, stride=2, padding=1), nn.BatchNorm2d(8),
                        nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(8, 1, bias=False),
                        nn.Sequential(nn.Dropout(0.25), nn.Sigmoid()))
    assert repr(net) == """Sequential(
  (0): Conv2d(1, 8, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))
  (1): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
  (2): LeakyReLU(negative_slope=0.2)
  (3): Flatten(start_dim=1, end_dim=-1)
  (4): Linear(in_features=8, out_features=1, bias=False)
  (5): Sequential(
    (0): Dropout(p=0.25)
    (1): Sigmoid()
  )
)"""
    assert repr(nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1)) == (
        "ConvTranspose2d(4, 2, kernel_size=(3, 3), stride=(2, 2), output_padding=(1, 1))")


def test_sequential_indexing_and_pytorch_keys():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.BatchNorm1d(3), nn.Linear(3, 2))
    assert len(net) == 4 and isinstance(net[0], nn.Linear) and net[-1] is net[3]
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "BatchNorm1d", "Linear"]
    tail = net[2:]
    assert isinstance(tail, nn.Sequential) and list(tail.state_dict())[0] == "2.weight"
    with pytest.raises(IndexError, match="out of range"):
        net[4]
    # exactly PyTorch's keys for the same nn.Sequential
    assert list(net.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias",
                                      "2.running_mean", "2.running_var",
                                      "2.num_batches_tracked", "3.weight", "3.bias"]
    x = T(np.random.default_rng(0).normal(size=(5, 4)))
    net.double()
    y = net(x)
    ref = net[3](net[2](net[1](net[0](x))))
    np.testing.assert_array_equal(y.numpy(), ref.numpy())
    named = nn.Sequential({"enc": nn.Linear(2, 2), "act": nn.Tanh()})
    assert list(named.state_dict()) == ["enc.weight", "enc.bias"]
    ml = nn.ModuleList([nn.Linear(1, 1), nn.Linear(1, 1)])
    assert len(ml) == 2 and list(ml.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


# ---- layers against references --------------------------------------------------------
def test_linear_hand_computed():
    lin = nn.Linear(2, 3, dtype="float64")
    set_params(lin, weight=[[1, 2], [3, 4], [5, 6]], bias=[0.5, -1, 0])
    y = lin(T([[1, -1], [2, 0.5]]))
    np.testing.assert_allclose(y.numpy(), [[-0.5, -2, -1], [3.5, 7, 13]])
    nobias = nn.Linear(2, 3, bias=False, dtype="float64")
    assert nobias.bias is None and list(nobias.state_dict()) == ["weight"]
    set_params(nobias, weight=[[1, 2], [3, 4], [5, 6]])
    np.testing.assert_allclose(nobias(T([[1, 1]])).numpy(), [[3, 7, 11]])


def test_conv2d_hand_computed_and_loops():
    conv = nn.Conv2d(1, 1, 2, dtype="float64")
    set_params(conv, weight=np.ones((1, 1, 2, 2)), bias=[1.0])
    y = conv(T(np.arange(9.0).reshape(1, 1, 3, 3)))
    np.testing.assert_allclose(y.numpy(), [[[[9, 13], [21, 25]]]])
    rng = np.random.default_rng(1)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype="float64")
    x = rng.normal(size=(2, 3, 7, 6))
    ref = conv2d_loops(x, conv.weight.numpy(), conv.bias.numpy(), 2, 1)
    out = conv(T(x))
    assert out.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_conv_transpose2d_hand_computed_and_loops():
    ct = nn.ConvTranspose2d(1, 1, 2, stride=2, dtype="float64")
    set_params(ct, weight=np.ones((1, 1, 2, 2)), bias=[0.0])
    y = ct(T([[[[1, 2], [3, 4]]]]))
    np.testing.assert_allclose(y.numpy()[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4],
                                                 [3, 3, 4, 4]])
    rng = np.random.default_rng(2)
    ct = nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1, output_padding=1, dtype="float64")
    assert ct.weight.shape == (3, 2, 4, 4)
    x = rng.normal(size=(2, 3, 3, 4))
    ref = conv_transpose2d_loops(x, ct.weight.numpy(), ct.bias.numpy(), 2, 1, 1)
    out = ct(T(x))
    assert out.shape == (2, 2, 7, 9)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm1d, (5, 3, 4)),
                                       (nn.BatchNorm2d, (4, 3, 2, 5))])
def test_batchnorm_train_and_eval_match_the_formulas(cls, shape):
    rng = np.random.default_rng(3)
    bn = cls(3, momentum=0.1, dtype="float64")
    w, b = rng.normal(size=3), rng.normal(size=3)
    set_params(bn, weight=w, bias=b)
    axes = (0,) + tuple(range(2, len(shape)))
    bshape = (1, 3) + (1,) * (len(shape) - 2)
    rm, rv = np.zeros(3), np.ones(3)
    for _ in range(2):
        x = rng.normal(size=shape) * 3 + 2
        y = bn(T(x)).numpy()
        mu, var = x.mean(axis=axes), x.var(axis=axes)
        expect = (x - mu.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-5)
        np.testing.assert_allclose(y, expect * w.reshape(bshape) + b.reshape(bshape), rtol=1e-10)
        n = x.size // 3
        rm = 0.9 * rm + 0.1 * mu
        rv = 0.9 * rv + 0.1 * var * n / (n - 1)  # the running variance is unbiased
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), rv, rtol=1e-12)
    assert bn.num_batches_tracked.item() == 2
    bn.eval()
    x = rng.normal(size=shape)
    before = bn.running_mean.numpy().copy()
    y = bn(T(x)).numpy()
    expect = (x - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-5)
    np.testing.assert_allclose(y, expect * w.reshape(bshape) + b.reshape(bshape), rtol=1e-10)
    np.testing.assert_array_equal(bn.running_mean.numpy(), before)  # eval does not update


def test_batchnorm_cumulative_average_no_affine_and_errors():
    rng = np.random.default_rng(4)
    bn = nn.BatchNorm1d(2, momentum=None, affine=False, dtype="float64")
    assert list(bn.state_dict()) == ["running_mean", "running_var", "num_batches_tracked"]
    xs = [rng.normal(size=(4, 2)) for _ in range(3)]
    for x in xs:
        y = bn(T(x)).numpy()
        np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-10)
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean([x.mean(0) for x in xs], 0))
    np.testing.assert_allclose(bn.running_var.numpy(), np.mean([x.var(0, ddof=1) for x in xs], 0))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(T(np.ones((1, 2))))
    with pytest.raises(ValueError, match=r"2 channels on axis 1; got shape \(4, 3\)"):
        bn(T(np.ones((4, 3))))
    with pytest.raises(ValueError, match="4-D"):
        nn.BatchNorm2d(2)(T(np.ones((4, 2))))
    nostats = nn.BatchNorm1d(2, track_running_stats=False, dtype="float64").eval()
    x = rng.normal(size=(4, 2))  # without running stats, eval uses the batch's statistics
    np.testing.assert_allclose(nostats(T(x)).numpy(), (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5),
                               rtol=1e-10)


def test_dropout_train_eval_and_scaling():
    x = T(np.full((200, 500), 2.0), requires_grad=True)
    drop = nn.Dropout(0.3, seed=0)
    y = drop(x)
    v = y.numpy()
    kept = v != 0
    np.testing.assert_allclose(v[kept], 2.0 / 0.7)
    assert abs(1 - kept.mean() - 0.3) < 0.01
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept / 0.7)  # gradient carries the same mask
    drop.eval()
    assert drop(x) is x
    drop.train()
    assert nn.Dropout(0.0)(x) is x
    assert not nn.Dropout(1.0)(x).numpy().any()
    with pytest.raises(ValueError, match="probability"):
        nn.Dropout(1.5)


def test_dropout_seeding():
    x = T(np.ones((50, 50)))
    a, b = nn.Dropout(0.5, seed=7), nn.Dropout(0.5, seed=7)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    assert not np.array_equal(a(x).numpy(), a(x).numpy())  # the generator advances
    sg.manual_seed(11)
    c = nn.Dropout(0.5)
    sg.manual_seed(11)
    d = nn.Dropout(0.5)
    np.testing.assert_array_equal(c(x).numpy(), d(x).numpy())
    m1 = a(x, rng=np.random.default_rng(3)).numpy()
    m2 = b(x, rng=np.random.default_rng(3)).numpy()
    np.testing.assert_array_equal(m1, m2)


def test_flatten_unflatten_and_activations():
    x = T(np.arange(24.0).reshape(2, 3, 4))
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)
    assert nn.Unflatten(1, (3, 4))(nn.Flatten()(x)).shape == (2, 3, 4)
    assert nn.Unflatten(1, (1, 2, 2))(T(np.zeros((5, 4)))).shape == (5, 1, 2, 2)
    with pytest.raises(ValueError, match="not the product"):
        nn.Unflatten(1, (5, 5))(x)
    v = np.array([-2.0, -0.5, 0.0, 1.5])
    np.testing.assert_allclose(nn.ReLU()(T(v)).numpy(), [0, 0, 0, 1.5])
    np.testing.assert_allclose(nn.LeakyReLU(0.2)(T(v)).numpy(), [-0.4, -0.1, 0, 1.5])
    np.testing.assert_allclose(nn.LeakyReLU()(T(v)).numpy(), [-0.02, -0.005, 0, 1.5])
    np.testing.assert_allclose(nn.Sigmoid()(T(v)).numpy(), 1 / (1 + np.exp(-v)))
    np.testing.assert_allclose(nn.Tanh()(T(v)).numpy(), np.tanh(v))
    assert nn.Identity()(x) is x


# ---- initialisation -------------------------------------------------------------------
@pytest.mark.parametrize("layer,fan_in", [
    (lambda: nn.Linear(1000, 300), 1000),
    (lambda: nn.Conv2d(32, 64, 3), 32 * 9),
    # PyTorch's fan_in for a (in, out, kh, kw) transposed-conv weight is out * kh * kw
    (lambda: nn.ConvTranspose2d(64, 8, 3), 8 * 9),
])
def test_default_init_is_pytorchs(layer, fan_in):
    sg.manual_seed(0)
    m = layer()
    bound = 1 / math.sqrt(fan_in)
    w, b = m.weight.numpy(), m.bias.numpy()
    assert w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.03
    assert np.abs(b).max() <= bound and np.abs(b).max() > 0.8 * bound


def test_init_functions():
    big = lambda *s: nn.Parameter(np.empty(s))  # noqa: E731
    g = np.random.default_rng(0)
    w = big(400, 300)
    assert init.normal_(w, 1.0, 0.5, generator=g) is w
    assert abs(w.numpy().mean() - 1) < 0.01 and abs(w.numpy().std() - 0.5) < 0.01
    init.uniform_(w, -2, 3, generator=g)
    assert w.numpy().min() >= -2 and w.numpy().max() < 3 and abs(w.numpy().mean() - 0.5) < 0.02
    init.xavier_uniform_(w, gain=2.0, generator=g)
    a = 2.0 * math.sqrt(6 / 700)
    assert np.abs(w.numpy()).max() <= a and np.abs(w.numpy()).max() > 0.99 * a
    init.xavier_normal_(w, generator=g)
    assert abs(w.numpy().std() / math.sqrt(2 / 700) - 1) < 0.02
    c = big(64, 16, 3, 3)  # fan_in 144, fan_out 576
    init.kaiming_normal_(c, mode="fan_out", nonlinearity="relu", generator=g)
    assert abs(c.numpy().std() / math.sqrt(2 / 576) - 1) < 0.02
    init.kaiming_uniform_(c, nonlinearity="relu", generator=g)
    bound = math.sqrt(2) * math.sqrt(3 / 144)
    assert np.abs(c.numpy()).max() <= bound and np.abs(c.numpy()).max() > 0.99 * bound
    init.kaiming_normal_(c, a=0.2, generator=g)  # leaky_relu gain sqrt(2 / (1 + 0.04))
    assert abs(c.numpy().std() / (math.sqrt(2 / 1.04) / 12) - 1) < 0.02
    data = w.array
    init.zeros_(w)
    assert w.array is data and not w.numpy().any()
    init.ones_(w)
    assert (w.numpy() == 1).all()
    init.constant_(w, 0.25)
    assert (w.numpy() == 0.25).all()
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / 1.0001))
    assert init.calculate_gain("sigmoid") == 1.0
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(big(5))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_uniform_(w, mode="fan_avg")


def test_manual_seed_and_generator_reproduce_init():
    sg.manual_seed(5)
    a = nn.Linear(8, 4)
    sg.manual_seed(5)
    b = nn.Linear(8, 4)
    c = nn.Linear(8, 4)
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    assert not np.array_equal(a.weight.numpy(), c.weight.numpy())
    d = nn.Conv2d(2, 3, 3, generator=np.random.default_rng(9))
    e = nn.Conv2d(2, 3, 3, generator=np.random.default_rng(9))
    np.testing.assert_array_equal(d.weight.numpy(), e.weight.numpy())
    np.testing.assert_array_equal(d.bias.numpy(), e.bias.numpy())


# ---- state dicts -------------------------------------------------------------------
def make_net(seed):
    sg.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def test_state_dict_round_trip_through_checkpoint(tmp_path):
    rng = np.random.default_rng(6)
    x = sg.tensor(rng.normal(size=(5, 1, 4, 4)).astype(np.float32))
    src = make_net(0)
    src(x)  # moves the running statistics away from their initial values
    src(x * 2.0)
    src.eval()
    sg.save(src.state_dict(), tmp_path / "net.npz")
    dst = make_net(1).eval()
    assert not np.array_equal(dst(x).numpy(), src(x).numpy())
    w = dst[0].weight
    missing, unexpected = dst.load_state_dict(sg.load(tmp_path / "net.npz"))
    assert missing == [] and unexpected == []
    assert dst[0].weight is w  # copied in place: optimisers keep their references
    np.testing.assert_array_equal(dst(x).numpy(), src(x).numpy())
    assert dst[1].num_batches_tracked.item() == 2
    # Tensors, NumPy arrays and float64 values are accepted and cast
    sd = {k: (sg.tensor(v) if i % 2 else sg.backend.to_numpy(v).astype(np.float64))
          for i, (k, v) in enumerate(src.state_dict().items())}
    make_net(2).load_state_dict(sd)


def test_load_state_dict_names_every_problem_and_copies_nothing():
    net = make_net(0)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    sd = {k: v.copy() * 0 + 7 for k, v in net.state_dict().items()}
    del sd["0.bias"], sd["1.running_var"]
    sd["4.weight"] = np.zeros((3, 5))
    sd["1.running_mean"] = np.zeros(3)
    sd["extra.weight"] = np.zeros(1)
    with pytest.raises(RuntimeError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    for part in ["missing keys: '0.bias', '1.running_var'", "unexpected keys: 'extra.weight'",
                 "'4.weight': checkpoint has shape (3, 5), model has (3, 32)",
                 "'1.running_mean': checkpoint has shape (3,), model has (2,)"]:
        assert part in msg
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(sg.backend.to_numpy(v), sg.backend.to_numpy(before[k]))
    good = {k: v for k, v in sd.items() if k not in ("4.weight", "1.running_mean")}
    missing, unexpected = net.load_state_dict(good, strict=False)
    assert missing == ["0.bias", "1.running_mean", "1.running_var", "4.weight"]
    assert unexpected == ["extra.weight"]
    assert (net[0].weight.numpy() == 7).all()


# ---- gradients through every layer ----------------------------------------------------
def check_layer(layer, x_shape, seed=0, **kw):
    rng = np.random.default_rng(seed)
    x = T(rng.normal(size=x_shape) + 0.1, requires_grad=True)
    params = list(layer.parameters())
    assert sg.gradcheck(lambda x, *ps: layer(x, **kw), [x] + params)


@pytest.mark.parametrize("make,shape", [
    (lambda: nn.Linear(3, 2, dtype="float64"), (4, 3)),
    (lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1, dtype="float64"), (2, 2, 4, 5)),
    (lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1,
                                dtype="float64"), (2, 2, 3, 2)),
    (lambda: nn.BatchNorm1d(3, dtype="float64"), (5, 3)),
    (lambda: nn.BatchNorm1d(2, dtype="float64").eval(), (4, 2, 3)),
    (lambda: nn.BatchNorm2d(2, dtype="float64"), (3, 2, 2, 2)),
    (lambda: nn.LeakyReLU(0.2), (3, 4)),
    (lambda: nn.Sigmoid(), (3, 4)),
    (lambda: nn.Tanh(), (3, 4)),
    (lambda: nn.Sequential(nn.Flatten(), nn.Unflatten(1, (2, 3)), nn.ReLU()), (2, 6)),
])
def test_gradients_through_layers(make, shape):
    layer = make()
    if isinstance(layer, nn.BatchNorm1d) or isinstance(layer, nn.BatchNorm2d):
        rng = np.random.default_rng(1)
        set_params(layer, weight=rng.normal(size=layer.num_features),
                   bias=rng.normal(size=layer.num_features))
        if not layer.training:
            f = layer.num_features
            layer.running_mean.array[...] = sg.backend.asarray(rng.normal(size=f))
            layer.running_var.array[...] = sg.backend.asarray(rng.uniform(0.5, 2, size=f))
    check_layer(layer, shape)


def test_gradients_through_dropout_and_batchnorm_second_order():
    drop = nn.Dropout(0.4)
    x = T(np.random.default_rng(0).normal(size=(4, 5)), requires_grad=True)
    assert sg.gradcheck(lambda x: drop(x, rng=np.random.default_rng(1)), x)
    bn = nn.BatchNorm1d(2, dtype="float64")
    assert sg.gradgradcheck(lambda x, w: bn(x) * w, [T(np.random.default_rng(2).normal(
        size=(4, 2)), requires_grad=True), bn.weight])


# ---- dilation and groups: PyTorch's definitions, transcribed -----------------------------
def conv2d_torch_def(x, w, b, stride, padding, dilation, groups):
    """out[n, j] = b[j] + sum_{k < C/G} w[j, k] * x_pad[n, g C/G + k] with g = j // (O/G),
    sampled at (i s_h + p d_h, l s_w + q d_w)  (torch.nn.Conv2d's documentation)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, o, ho, wo))
    for a in range(n):
        for j in range(o):
            g = j // (o // groups)
            for i in range(ho):
                for m in range(wo):
                    for k in range(cg):
                        for p in range(kh):
                            for q in range(kw):
                                y[a, j, i, m] += w[j, k, p, q] * xp[a, g * cg + k, i * sh + p * dh,
                                                                    m * sw + q * dw]
    return y + (0 if b is None else b.reshape(1, -1, 1, 1))


def conv_transpose2d_torch_def(x, w, b, stride, padding, output_padding, groups, dilation):
    """Each x[n, c, i, l] scatters x * w[c, k] into out[n, g O/G + k] at
    (i s_h + p d_h - pad_h, l s_w + q d_w - pad_w), g = c // (C/G);
    H_out = (H - 1) s - 2 pad + d (k - 1) + output_padding + 1."""
    (sh, sw), (ph, pw), (dh, dw), (oph, opw) = stride, padding, dilation, output_padding
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wo = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((n, og * groups, ho + 2 * ph + 1, wo + 2 * pw + 1))
    for a in range(n):
        for ci in range(c):
            g = ci // (c // groups)
            for i in range(h):
                for m in range(wd):
                    for p in range(kh):
                        for q in range(kw):
                            r, s = i * sh + p * dh, m * sw + q * dw
                            if r < full.shape[2] and s < full.shape[3]:
                                full[a, g * og:(g + 1) * og, r, s] += x[a, ci, i, m] * w[ci, :, p, q]
    y = full[:, :, ph:ph + ho, pw:pw + wo]
    return y + (0 if b is None else b.reshape(1, -1, 1, 1))


@pytest.mark.parametrize("seed", range(12))
def test_conv_dilation_groups_forward_matches_pytorch_definition(seed):
    rng = np.random.default_rng(seed)
    g = int(rng.integers(1, 4))
    c, o = g * int(rng.integers(1, 3)), g * int(rng.integers(1, 3))
    k = tuple(int(v) for v in rng.integers(1, 4, 2))
    s, p, d = (tuple(int(v) for v in rng.integers(lo, hi, 2)) for lo, hi in ((1, 3), (0, 3), (1, 4)))
    hw = tuple(max(1, d[i] * (k[i] - 1) + 1 - 2 * p[i]) + int(rng.integers(0, 4)) for i in (0, 1))
    x, w, b = rng.normal(size=(2, c) + hw), rng.normal(size=(o, c // g) + k), rng.normal(size=o)
    conv = nn.Conv2d(c, o, k, s, p, d, g, dtype="float64")
    set_params(conv, weight=w, bias=b)
    assert conv.weight.shape == (o, c // g) + k
    np.testing.assert_allclose(conv(T(x)).numpy(), conv2d_torch_def(x, w, b, s, p, d, g),
                               rtol=1e-10, atol=1e-12)
    op = tuple(int(rng.integers(0, max(s[i], d[i]))) for i in (0, 1))
    xt = rng.normal(size=(2, c) + tuple(int(v) for v in rng.integers(1 + max(p), 5, 2)))
    wt = rng.normal(size=(c, o // g) + k)
    ct = nn.ConvTranspose2d(c, o, k, s, p, op, g, False, d, dtype="float64")
    set_params(ct, weight=wt)
    assert ct.weight.shape == (c, o // g) + k
    np.testing.assert_allclose(ct(T(xt)).numpy(),
                               conv_transpose2d_torch_def(xt, wt, None, s, p, op, g, d),
                               rtol=1e-10, atol=1e-12)


def test_conv_dilation_groups_init_repr_and_errors():
    conv = nn.Conv2d(4, 6, 3, dilation=2, groups=2)
    assert repr(conv) == "Conv2d(4, 6, kernel_size=(3, 3), stride=(1, 1), dilation=(2, 2), groups=2)"
    assert np.abs(conv.weight.numpy()).max() <= 1 / np.sqrt(2 * 9)     # fan_in = (4 / 2) * 9
    assert nn.ConvTranspose2d(4, 6, 3, groups=2).weight.shape == (4, 3, 3, 3)
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2d(4, 6, 3, groups=4)
    x = T(np.ones((1, 4, 5, 5)))
    with pytest.raises(ValueError, match="divisible by groups"):
        sg.functional.conv2d(x, T(np.ones((3, 2, 3, 3))), groups=2)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        sg.functional.conv2d(x, T(np.ones((2, 4, 3, 3))), dilation=3)
    with pytest.raises(ValueError, match="output_padding"):
        sg.functional.conv_transpose2d(x, T(np.ones((4, 1, 3, 3))), stride=2, dilation=2, output_padding=2)
