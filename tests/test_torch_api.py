"""PyTorch's spellings beyond the ops (#26): module paths, devices as checked no-ops, size(),
norm, in-place initialisation rules, typed constructors, Generator, utils.data."""
import math
import subprocess
import sys

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import nn


def test_functional_has_two_names_and_one_module():
    import scratchgen.nn.functional as F1
    from scratchgen.nn import functional as F2
    assert F1 is F2 is sg.functional is sg.nn.functional
    r = subprocess.run([sys.executable, "-c", "import scratchgen.nn.functional as F; "
                        "import scratchgen; assert F is scratchgen.functional; "
                        "from scratchgen.utils.data import DataLoader, TensorDataset, Dataset; "
                        "from scratchgen.autograd import Variable, grad"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_variable_is_the_tensor_and_grad_takes_only_inputs():
    from scratchgen.autograd import Variable
    t = sg.tensor([1.0, 2.0])
    v = Variable(t, requires_grad=True)
    assert v is t and v.requires_grad
    (g,) = sg.autograd.grad((v * v).sum(), v, only_inputs=True)
    assert g.tolist() == [2.0, 4.0]


def test_devices_are_checked_no_ops():
    here = "cuda" if sg.backend.name == "cuda" else "cpu"
    other = "cpu" if here == "cuda" else "cuda"
    assert sg.cuda.is_available() == (here == "cuda") == sg.accelerator.is_available()
    assert (sg.accelerator.current_accelerator() is None) == (here == "cpu")
    dev = sg.device(here)
    assert sg.device(f"{here}:0") == dev == here and str(dev) == here
    t = sg.ones(2, 3, device=dev)
    assert t.device == dev and t.is_cuda == (here == "cuda")
    assert t.to(dev) is t and getattr(t, here)() is t
    d = t.to(dev, sg.float64)
    assert d.dtype == np.float64 and t.to(d).dtype == np.float64
    net = nn.Linear(2, 2)
    w = net.weight
    assert net.to(dev) is net and net.weight is w
    with pytest.raises(RuntimeError, match=f"cannot move a tensor to {other}.*SCRATCHGEN_BACKEND"):
        t.to(other)
    with pytest.raises(RuntimeError, match="module.*SCRATCHGEN_BACKEND"):
        net.to(sg.device(other))
    with pytest.raises(RuntimeError, match="SCRATCHGEN_BACKEND"):
        sg.zeros(2, device=other)
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        sg.device("tpu")


def test_size_is_numpys_count_and_pytorchs_method():
    t = sg.zeros(2, 3, 4)
    assert t.size == 24 == t.numel() and t.size() == (2, 3, 4)
    assert t.size(1) == 3 and t.size(-1) == 4 and t.size() == tuple(t.shape)
    with pytest.raises(IndexError):
        t.size(3)
    assert t.view_as(sg.zeros(6, 4)).shape == (6, 4)


def test_comparison_methods():
    a, b = sg.tensor([1.0, 2.0, 3.0]), sg.tensor([2.0, 2.0, 2.0])
    assert a.eq(b).tolist() == [False, True, False] and a.ne(b).tolist() == [True, False, True]
    assert a.lt(b).tolist() == [True, False, False] and a.le(2).tolist() == [True, True, False]
    assert a.gt(b).tolist() == [False, False, True] and a.ge(b).tolist() == [False, True, True]
    assert a.eq(b).sum().item() == 1


@pytest.mark.parametrize("p,dim,keepdim", [(2, None, False), ("fro", 1, True), (1, 0, False),
                                           (3, (1, 2), False), (math.inf, 1, False),
                                           (-math.inf, None, False), (0, 2, False)])
def test_norm_matches_torch_with_gradients(p, dim, keepdim):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    x[0, 1] = 0.0                                  # a zero row: the subgradient case
    ours = sg.tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    n, m = ours.norm(p, dim, keepdim), torch.norm(theirs, p, dim, keepdim)
    np.testing.assert_allclose(n.numpy(), m.detach().numpy(), rtol=1e-12)
    if p == 0:
        return
    (n * n).sum().backward() if p == 1 else n.sum().backward()
    ((m * m).sum() if p == 1 else m.sum()).backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_norm_gradient_at_zero_is_zero_to_second_order():
    """The gradient penalty's trap: ||0||'s gradient is 0 (PyTorch's), not NaN; its second
    derivative there is 0 too, where PyTorch's is NaN."""
    torch = pytest.importorskip("torch")
    x = np.array([[0.0, 0.0], [3.0, 4.0]])
    ours = sg.tensor(x, requires_grad=True)
    (g,) = sg.grad(((ours * ours).norm(2, dim=1) - 1).pow(2).sum(), ours, create_graph=True)
    g.sum().backward()
    theirs = torch.tensor(x, requires_grad=True)
    (h,) = torch.autograd.grad(((theirs * theirs).norm(2, dim=1) - 1).pow(2).sum(), theirs,
                               create_graph=True)
    h.sum().backward()
    np.testing.assert_allclose(g.numpy(), h.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.grad.numpy()[1], theirs.grad.numpy()[1], rtol=1e-12)
    assert np.isnan(theirs.grad.numpy()[0]).all() and ours.grad.numpy()[0].tolist() == [0, 0]


def test_like_constructors_typed_tensors_and_generator():
    t = sg.zeros(2, 3, dtype="float64")
    for f in (sg.zeros_like, sg.ones_like, sg.empty_like, sg.randn_like, sg.rand_like):
        u = f(t)
        assert u.shape == (2, 3) and u.dtype == np.float64, f.__name__
    assert sg.full_like(t, 2.5).tolist() == [[2.5] * 3] * 2
    assert sg.ones_like(t).sum().item() == 6 and sg.zeros_like(t).sum().item() == 0
    assert sg.FloatTensor([1, 2]).dtype == np.float32 and sg.FloatTensor(2, 3).shape == (2, 3)
    assert sg.LongTensor([1, 2]).dtype == np.int64 and sg.LongTensor([1, 2]).tolist() == [1, 2]
    g = sg.Generator().manual_seed(3)
    a = sg.randn(4, generator=g).tolist()
    g.manual_seed(3)
    assert sg.randn(4, generator=g).tolist() == a and g.initial_seed() == 3
    sg.manual_seed(5)
    b = sg.rand(3).tolist()
    sg.manual_seed(5)
    assert sg.rand(3).tolist() == b


def test_in_place_follows_pytorchs_autograd_rules():
    w = nn.Parameter(sg.zeros(2, 3))
    for call in (lambda: w.fill_(1), lambda: w.zero_(), lambda: w.normal_(0, 0.02),
                 lambda: w.uniform_(-1, 1), lambda: w.copy_(sg.ones(2, 3)),
                 lambda: w.clamp_(0, 1)):
        with pytest.raises(RuntimeError, match="leaf tensor that requires grad.*no_grad"):
            call()
    y = w * 2
    with pytest.raises(RuntimeError, match="part of a graph"):
        y.fill_(0)
    with sg.no_grad():
        arr = w.array
        assert w.fill_(3) is w and w.array is arr and w.tolist() == [[3.0] * 3] * 2
        w.copy_(sg.tensor([1.0, -2.0, 0.5]))            # broadcast, in place
        w.clamp_(-1, 0.75)
        assert w.tolist() == [[0.75, -1.0, 0.5]] * 2
        w.normal_(0, 0.02, generator=sg.Generator().manual_seed(0))
        assert abs(w.numpy()).max() < 0.1
        w.uniform_(2, 3)
        assert (w.numpy() >= 2).all() and (w.numpy() < 3).all()
        w.zero_()
    assert w.numpy().sum() == 0 and w.dtype == np.float32
    t = sg.zeros(3)                                     # no grad: allowed anywhere
    assert t.fill_(2).tolist() == [2.0] * 3


def test_data_is_a_detached_tensor_sharing_storage():
    m = nn.Linear(3, 2)
    p = m.bias
    d = p.data
    assert isinstance(d, sg.Tensor) and not d.requires_grad and d.is_leaf
    assert d.array is p.array and sg.is_grad_enabled()
    m.weight.data.fill_(1)                              # grad mode on: .data is not tracked
    p.data.normal_(0, 0.02, generator=sg.Generator().manual_seed(0))
    assert m.weight.tolist() == [[1.0] * 3] * 2 and 0 < abs(p.numpy()).max() < 0.1
    assert m.weight.requires_grad and m.weight.is_leaf and m.weight.grad is None
    x = sg.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    y = m(x)
    y.data.zero_()                                      # a non-leaf's .data: also untracked
    assert y.tolist() == [[0.0, 0.0]] and not y.is_leaf
    y.sum().backward()                                  # the graph is the one recorded
    assert x.grad.tolist() == [[2.0, 2.0, 2.0]] and m.weight.grad.tolist() == [[1, 2, 3]] * 2


def test_data_assignment_replaces_the_array():
    w = nn.Parameter(sg.zeros(2, 3))
    src = sg.ones(4)
    w.data = src                                        # any shape, as in PyTorch; shared
    assert w.shape == (4,) and w.array is src.array and w.requires_grad and w.is_leaf
    w.data = np.full((2,), 3.0, np.float64)             # an array too; its dtype kept
    assert w.dtype == np.float64 and w.tolist() == [3.0, 3.0]
    (w * w).sum().backward()
    assert w.grad.tolist() == [6.0, 6.0]
    with pytest.raises(TypeError, match="requires grad.*floating point"):
        w.data = np.arange(3)
    assert w.tolist() == [3.0, 3.0]


@pytest.mark.parametrize("name,kw", [("xavier_uniform_", {}), ("xavier_normal_", {"gain": 2}),
                                     ("kaiming_uniform_", {"a": 0.1}),
                                     ("kaiming_normal_", {"mode": "fan_out",
                                                          "nonlinearity": "relu"}),
                                     ("uniform_", {"a": -0.3, "b": 0.1}),
                                     ("normal_", {"mean": 1.0, "std": 0.02})])
def test_init_distributions_match_torch(name, kw):
    """Same fans and gains as torch.nn.init: the moments of 40,000 draws agree."""
    torch = pytest.importorskip("torch")
    shape = (100, 25, 4, 4)
    ours = getattr(nn.init, name)(nn.Parameter(sg.zeros(*shape)), generator=sg.Generator()
                                  .manual_seed(0), **kw).numpy()
    theirs = getattr(torch.nn.init, name)(torch.empty(*shape), **kw).numpy()
    assert abs(ours.mean() - theirs.mean()) < 0.05 * theirs.std() + 1e-3
    assert abs(ours.std() / theirs.std() - 1) < 0.03
    if "uniform" in name:
        assert abs(ours.max() / theirs.max() - 1) < 0.01


def test_dataloader_batches_shuffles_reproducibly_and_collates():
    from scratchgen.utils.data import DataLoader, Dataset, TensorDataset
    x = sg.arange(20).reshape(10, 2)
    y = sg.tensor(np.arange(10), dtype="int64")
    ds = TensorDataset(x, y)
    assert len(ds) == 10 and ds[3][1].item() == 3
    plain = list(DataLoader(ds, batch_size=4))
    assert [b[0].shape for b in plain] == [(4, 2), (4, 2), (2, 2)]
    assert len(DataLoader(ds, batch_size=4, drop_last=True)) == 2
    order = lambda s: [v for _, b in DataLoader(ds, 3, shuffle=True,  # noqa: E731
                                                generator=sg.Generator().manual_seed(s),
                                                num_workers=2) for v in b.tolist()]
    assert order(1) == order(1) != order(2) and sorted(order(1)) == list(range(10))
    loader = DataLoader(ds, 5, shuffle=True, generator=sg.Generator().manual_seed(0))
    assert [b.tolist() for _, b in loader] != [b.tolist() for _, b in loader]  # per epoch

    class Pairs(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"img": np.full((2, 2), i, np.float32), "label": i, "w": 0.5 * i}

    (b0, b1) = list(DataLoader(Pairs(), batch_size=3))
    assert b0["img"].shape == (3, 2, 2) and b0["label"].dtype == np.int64
    assert b0["label"].tolist() == [0, 1, 2] and b1["w"].dtype == np.float32
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="first dimension"):
        TensorDataset(x, y[:3])
