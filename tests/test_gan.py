"""GAN / WGAN / WGAN-GP models and tasks: W2's DCGAN shapes, weight clipping, the gradient
penalty on nn critics, evaluation on hand-made generators, short training smoke runs."""
import json

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import metrics, nn
from scratchgen.losses import adversarial as A
from scratchgen.models import gan as G
from scratchgen.data import DataSource
from scratchgen import trainer
from scratchgen.tasks import get_task
from scratchgen.trainer import take_step


def toy_task(name, dataset="8gaussians", seed=0, **config):
    cls = get_task(name)
    sg.manual_seed(seed)
    hp = cls.spec.build({"width": 16, "depth": 2, "batch_size": 32, **config}, dataset)
    return cls(hp, DataSource(dataset, hp.batch_size, seed=seed))


def train_steps(task, steps, rng):
    """``steps`` steps as the harness runs them: each gets the data's next
    ``batches_per_step`` batches. Returns (logs per step, batches used)."""
    logs, index = [], 0
    for s in range(steps):
        entry, index = take_step(task, task.data, int(rng.integers(1 << 30)), s, index)
        logs.append(entry)
    return logs, index


# ---- networks ---------------------------------------------------------------------------------
def kinds(net):
    return [type(m).__name__ for m in net]


def test_dcgan_shapes_with_batchnorm():
    g, d = G.DCGANGenerator(), G.DCGANDiscriminator()  # z 64, C 64, batch normalisation
    assert [(n, p.shape) for n, p in g.named_parameters()] == [
        ("0.weight", (6272, 64)), ("2.weight", (128,)), ("2.bias", (128,)),
        ("4.weight", (128, 64, 4, 4)), ("5.weight", (64,)), ("5.bias", (64,)),
        ("7.weight", (64, 1, 4, 4)), ("7.bias", (1,))]
    assert [n for n, _ in g.named_buffers()] == [
        f"{i}.{b}" for i in (2, 5) for b in ("running_mean", "running_var",
                                              "num_batches_tracked")]
    assert kinds(g) == ["Linear", "Unflatten", "BatchNorm2d", "ReLU", "ConvTranspose2d",
                        "BatchNorm2d", "ReLU", "ConvTranspose2d", "Tanh"]
    assert [(n, p.shape) for n, p in d.named_parameters()] == [
        ("0.weight", (64, 1, 4, 4)), ("0.bias", (64,)), ("2.weight", (128, 64, 4, 4)),
        ("3.weight", (128,)), ("3.bias", (128,)), ("6.weight", (1, 6272)), ("6.bias", (1,))]
    assert kinds(d) == ["Conv2d", "LeakyReLU", "Conv2d", "BatchNorm2d", "LeakyReLU", "Flatten",
                        "Linear"]
    assert sum(p.size for p in g.parameters()) == 6272 * 64 + 2 * 128 + 128 * 64 * 16 \
        + 2 * 64 + 64 * 16 + 1 == 533_889
    assert sum(p.size for p in d.parameters()) == 64 * 16 + 64 + 128 * 64 * 16 + 2 * 128 \
        + 6272 + 1 == 138_689
    assert d[1].negative_slope == d[4].negative_slope == 0.2
    for conv in (g[4], g[7], d[0], d[2]):
        assert conv.stride == (2, 2) and conv.padding == (1, 1)
    z = sg.tensor(np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32))
    assert g[:3](z).shape == (3, 128, 7, 7) and g[:6](z).shape == (3, 64, 14, 14)
    x = g(z)
    assert x.shape == (3, 1, 28, 28) and x.dtype == np.float32
    assert np.all(np.abs(x.numpy()) < 1)
    assert d[:5](x).shape == (3, 128, 7, 7) and d(x).shape == (3, 1)


def test_dcgan_without_batchnorm_is_w2():
    """batchnorm=False: the pair W2 benchmarks (and MNIST runs before batch normalisation)."""
    g, d = G.DCGANGenerator(batchnorm=False), G.DCGANDiscriminator(batchnorm=False)
    assert [(n, p.shape) for n, p in g.named_parameters()] == [
        ("0.weight", (6272, 64)), ("0.bias", (6272,)),
        ("3.weight", (128, 64, 4, 4)), ("3.bias", (64,)),
        ("5.weight", (64, 1, 4, 4)), ("5.bias", (1,))]
    assert [(n, p.shape) for n, p in d.named_parameters()] == [
        ("0.weight", (64, 1, 4, 4)), ("0.bias", (64,)),
        ("2.weight", (128, 64, 4, 4)), ("2.bias", (128,)),
        ("5.weight", (1, 6272)), ("5.bias", (1,))]
    assert "BatchNorm2d" not in kinds(g) + kinds(d)
    small = G.DCGANGenerator(16, channels=8)
    assert small[0].weight.shape == (16 * 7 * 7, 16) and small[4].weight.shape == (16, 8, 4, 4)
    assert G.DCGANDiscriminator(channels=8)[-1].weight.shape == (1, 16 * 7 * 7)


def test_toy_mlps_default_to_three_hidden_layers_of_512():
    g, c = G.toy_generator(), G.toy_critic()
    assert [p.shape for p in g.parameters()][::2] == [(512, 2), (512, 512), (512, 512), (2, 512)]
    assert [p.shape for p in c.parameters()][::2] == [(512, 2), (512, 512), (512, 512), (1, 512)]
    assert [type(m).__name__ for m in c].count("ReLU") == 3
    assert type(c[-1]).__name__ == "Linear"  # nothing after the last layer


def test_wgan_critic_schedule():
    assert [G.wgan_critic_iters(s, 5) for s in (0, 24, 25, 500)] == [5, 5, 5, 5]
    assert [G.wgan_critic_iters(s, 5, burst=True) for s in (0, 24, 25, 499, 500, 1000)] == \
        [100, 100, 5, 5, 100, 100]


# ---- clipping and the penalty on nn critics ---------------------------------------------------
def test_weight_clipping_after_every_critic_step():
    task = toy_task("wgan", lr=5e-2, clip=0.01, n_critic=2)  # lr >> c: updates overshoot
    before = [p.numpy().copy() for p in task.D.parameters()]
    logs = train_steps(task, 1, np.random.default_rng(0))[0][0]
    ps = [p.numpy() for p in task.D.parameters()]
    assert all(np.all(np.abs(p) <= 0.01) for p in ps)
    assert any(np.any(np.abs(p) == np.float32(0.01)) for p in ps)  # clipping was active
    assert any(not np.array_equal(a, b) for a, b in zip(before, ps))
    assert np.isfinite(logs["w1_estimate"]) and "n_critic" not in logs  # logged for bursts


def test_gradient_penalty_param_gradients_match_finite_differences_nn_critics():
    rng = np.random.default_rng(0)
    sg.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2, 8, dtype="float64"), nn.ReLU(),
                        nn.Linear(8, 8, dtype="float64"), nn.ReLU(),
                        nn.Linear(8, 1, dtype="float64"))
    conv = nn.Sequential(nn.Conv2d(1, 2, 4, 2, 1, dtype="float64"), nn.LeakyReLU(0.2),
                         nn.Flatten(), nn.Linear(2 * 4 * 4, 1, dtype="float64"))
    for critic, shape in ((mlp, (6, 2)), (conv, (3, 1, 8, 8))):
        real, fake = (sg.tensor(rng.standard_normal(shape)) for _ in range(2))
        alpha = rng.random(shape[0])
        params = list(critic.parameters())
        assert sg.gradcheck(lambda *ps: A.gradient_penalty(critic, real, fake, alpha=alpha,
                                                           lam=10.0), params, rtol=1e-4)


def test_gradient_penalty_zero_weight_nn_critic_is_finite():
    critic = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    for p in critic.parameters():
        p.array[...] = 0
    x = sg.tensor(np.ones((5, 2), np.float32))
    pen = A.gradient_penalty(critic, x, 2 * x, rng=np.random.default_rng(0), lam=10.0)
    assert pen.item() == pytest.approx(10.0, rel=1e-5)
    pen.backward()
    for p in critic.parameters():
        assert p.grad is None or np.all(np.isfinite(p.grad.numpy()))


def test_batchnorm_critic_refused():
    critic = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1))
    x = sg.tensor(np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match="BatchNorm1d.*batch normalisation"):
        A.gradient_penalty(critic, x, x, rng=np.random.default_rng(0))
    bn2 = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    with pytest.raises(ValueError, match="BatchNorm2d"):
        A.check_no_batchnorm(bn2)
    A.check_no_batchnorm(G.DCGANDiscriminator(batchnorm=False))  # no normalisation: accepted
    with pytest.raises(ValueError, match="BatchNorm2d"):
        A.check_no_batchnorm(G.DCGANDiscriminator())


# ---- evaluation on hand-made generators -------------------------------------------------------
class ModeGenerator(nn.Module):
    """Puts each noise vector exactly on one of ``modes`` (by the angle of z), or all on
    ``modes[0]`` when ``collapse``."""

    def __init__(self, modes, collapse=False):
        super().__init__()
        self.modes, self.collapse = np.asarray(modes, np.float32), collapse

    def forward(self, z):
        z = z.numpy()
        k = len(self.modes)
        idx = (np.floor((np.arctan2(z[:, 1], z[:, 0]) + np.pi) / (2 * np.pi) * k).astype(int)
               % k)
        return sg.tensor(self.modes[0 * idx if self.collapse else idx])


def test_toy_evaluate_on_hand_made_generators():
    task = toy_task("wgan-gp", eval_samples=500)
    modes = task.dist.modes
    rng = lambda: np.random.default_rng(5)
    task.G = ModeGenerator(modes)
    good = task.evaluate(rng())
    assert good["modes"] == 8 and good["high_quality"] == 1.0
    assert good["w1"] < 0.2
    assert np.isfinite(good["critic_w1"])
    task.G = ModeGenerator(modes, collapse=True)
    collapsed = task.evaluate(rng())
    assert collapsed["modes"] == 1 and collapsed["high_quality"] == 1.0
    assert collapsed["w1"] > 1.0
    task.G = ModeGenerator(np.zeros((1, 2)))
    centre = task.evaluate(rng())
    assert centre["modes"] == 0 and centre["high_quality"] == 0.0
    assert centre["w1"] == pytest.approx(np.linalg.norm(modes[0]), abs=0.05)
    # no modes on a continuous toy: W1 only
    ring = toy_task("gan", dataset="ring", eval_samples=200)
    out = ring.evaluate(rng())
    assert set(out) == {"w1", "loss_d", "jsd_estimate"}


# ---- short training runs ------------------------------------------------------------------------
@pytest.mark.parametrize("name,config", [
    ("gan", {}), ("gan", {"loss": "minimax"}), ("wgan", {"critic_burst": True}),
    ("wgan-gp", {})])
def test_short_toy_training_runs(name, config):
    task = toy_task(name, **config)
    before = {k: [p.numpy().copy() for p in m.parameters()] for k, m in task.modules().items()}
    rng = np.random.default_rng(1)
    logs, _ = train_steps(task, 4, rng)
    for entry in logs:
        assert entry and all(np.isfinite(v) for v in entry.values())
    assert logs[0]["loss_g"] != logs[-1]["loss_g"]
    for k, m in task.modules().items():
        assert any(not np.array_equal(a, p.numpy()) for a, p in zip(before[k], m.parameters()))
    assert all(p.requires_grad for p in task.D.parameters())  # unfrozen after the G update
    if name == "wgan-gp":
        assert task.lam == 0.1 and "gp" in logs[0]
    if name == "wgan":
        assert logs[0]["n_critic"] == 100  # the burst schedule's first steps
    samples = task.sample(7, np.random.default_rng(0))
    assert samples.shape == (7, 2) and np.all(np.isfinite(samples))


def test_gan_rejects_unknown_loss():
    with pytest.raises(ValueError, match="nonsaturating.*minimax"):
        toy_task("gan", loss="wasserstein")


def test_tasks_registered():
    for name in ("gan", "wgan", "wgan-gp"):
        cls = get_task(name)
        assert cls.name == name and "8gaussians" in cls.datasets and "mnist" in cls.datasets


# ---- MNIST (the real test split) ----------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_data(mnist_dir):
    return DataSource("mnist", 8, split="test", holdout=8000, data_dir=mnist_dir)


def mnist_task(name, data, **config):
    cls = get_task(name)
    sg.manual_seed(0)
    return cls({"batch_size": 8, "eval_samples": 100, **config}, data)


@pytest.mark.parametrize("name,config", [("gan", {}), ("wgan-gp", {"n_critic": 2})])
def test_short_mnist_training_runs(mnist_data, name, config):
    task = mnist_task(name, mnist_data, **config)
    assert task.z_dim == 64 and isinstance(task.G, G.DCGANGenerator)
    if name == "wgan-gp":
        assert task.lam == 10.0
    g0 = task.G[0].weight.numpy().copy()
    rng = np.random.default_rng(0)
    logs, used = train_steps(task, 2, rng)
    assert all(np.isfinite(v) for entry in logs for v in entry.values())
    assert not np.array_equal(g0, task.G[0].weight.numpy())
    assert used == 2 * config.get("n_critic", 1)  # each critic update: a new batch
    x = task.sample(3, rng)
    assert x.shape == (3, 1, 28, 28) and np.all(np.abs(x) <= 1)


def test_mnist_recipes_batchnorm_where_it_belongs(mnist_data):
    """G normalised in all three; the GAN's D too (DCGAN); the clipped WGAN critic only when
    asked (the WGAN paper's); never the WGAN-GP critic. Points keep the plain MLPs."""
    has_bn = lambda net: any("BatchNorm" in k for k in kinds(net))
    assert has_bn(mnist_task("wgan", mnist_data, channels=4, d_batchnorm=True).D)
    for name, d_bn in (("gan", True), ("wgan", False), ("wgan-gp", False)):
        task = mnist_task(name, mnist_data, channels=4)
        assert has_bn(task.G) and has_bn(task.D) == d_bn, name
        assert not has_bn(toy_task(name).G) and not has_bn(toy_task(name).D)
    assert "d_batchnorm" not in get_task("wgan-gp").spec
    count = lambda net: sum(p.size for p in net.parameters())
    gan, gp = mnist_task("gan", mnist_data), mnist_task("wgan-gp", mnist_data)  # C = 32
    assert count(gan.G) == count(gp.G) == 64 * 3136 + 2 * 64 + 64 * 32 * 16 + 2 * 32 + 32 * 16 + 1 \
        == 234_177
    assert count(gan.D) == 32 * 16 + 32 + 32 * 64 * 16 + 2 * 64 + 3136 + 1 == 36_577
    assert count(gp.D) == 32 * 16 + 32 + 32 * 64 * 16 + 64 + 3136 + 1 == 36_513
    assert not has_bn(mnist_task("gan", mnist_data, g_batchnorm=False, d_batchnorm=False).G)


STEPS = {"gan": 12000, "wgan": 12000, "wgan-gp": 4000}  # about 10 minutes or less on 2 cores


def test_mnist_samples_use_the_running_statistics(mnist_data):
    task = mnist_task("gan", mnist_data, channels=4)
    train_steps(task, 2, np.random.default_rng(0))
    buffers = {k: b.numpy().copy() for k, b in task.G.named_buffers()}
    z = task.noise(6, np.random.default_rng(1))
    x = task.generate(z)
    assert np.allclose(task.generate(z[:2]), x[:2], atol=1e-6)  # each sample its own
    assert all(np.array_equal(b.numpy(), buffers[k]) for k, b in task.G.named_buffers())
    assert task.G.training  # back in training mode
    np.testing.assert_array_equal(task.sample(6, np.random.default_rng(1)), x)


def test_mnist_defaults_in_the_spec():
    for name in ("gan", "wgan", "wgan-gp"):
        cls = get_task(name)
        mnist, toy = cls.spec.defaults("mnist"), cls.spec.defaults("8gaussians")
        assert mnist["g_batchnorm"] and mnist["z_dim"] == 64 and mnist["batch_size"] == 64
        assert (toy["width"], toy["depth"], toy["z_dim"]) == (512, 3, 2)  # the toy MLPs
        assert cls.default_steps("mnist") == STEPS[name] and cls.default_steps("8gaussians") \
            == 2000
        config = trainer.new_config(name, dataset="mnist")
        assert config.steps == cls.default_steps("mnist")
        assert trainer.new_config(name, dataset="mnist", steps=7).steps == 7
        assert (mnist["lr_schedule"], toy["lr_schedule"]) == ("cosine", "constant")
    gan = get_task("gan").spec
    assert (gan.defaults("mnist")["lr"], gan.defaults("8gaussians")["lr"]) == (1e-3, 2e-4)
    assert gan.defaults("mnist")["channels"] == 32
    wgan = get_task("wgan").spec  # one critic update per step on MNIST (measured), 5 elsewhere
    assert (wgan.defaults("mnist")["n_critic"], wgan.defaults("8gaussians")["n_critic"]) == (1, 5)
    assert (wgan.defaults("mnist")["lr"], wgan.defaults("8gaussians")["lr"]) == (1e-3, 5e-5)
    assert (wgan.defaults("mnist")["clip"], wgan.defaults("8gaussians")["clip"]) == (0.05, 0.01)
    gp = get_task("wgan-gp").spec
    assert (gp.defaults("mnist")["lr"], gp.defaults("8gaussians")["lr"]) == (2e-3, 1e-4)


@pytest.mark.parametrize("name", ["gan", "wgan", "wgan-gp"])
def test_few_step_mnist_runs_through_the_harness(tmp_path, name, mnist_dir):
    d = trainer.run(name, dataset="mnist", split="test", holdout=100, data_dir=mnist_dir,
                    steps=2, eval_every=1, out=tmp_path / name, progress=False,
                    final_plots=False, overrides={"batch_size": 8, "channels": 4,
                                                  "n_critic": 2, "eval_samples": 50})
    evals = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["kind"] == "eval"]
    assert [e["step"] for e in evals] == [1, 2]
    for e in evals:
        assert len(e) > 2 and all(np.isfinite(v) for v in e.values() if not isinstance(v, str))


def test_checkpoint_without_batchnorm_is_refused_in_one_line(tmp_path, capsys, mnist_dir):
    """An MNIST run saved before the batch-normalised recipes: a one-line error saying how to
    load it, which works."""
    from scratchgen.cli import main
    d = tmp_path / "old"
    trainer.run("gan", dataset="mnist", split="test", holdout=100, data_dir=mnist_dir,
                steps=1, out=d, progress=False, final_plots=False,
                overrides={"batch_size": 8, "g_batchnorm": False, "d_batchnorm": False,
                           "eval_samples": 50})
    cfg = json.loads((d / "config.json").read_text())
    for key in ("channels", "g_batchnorm", "d_batchnorm"):  # as the older version wrote it
        del cfg["hyperparameters"][key]
    (d / "config.json").write_text(json.dumps(cfg))
    for argv in (["eval", str(d), "--no-plots"], ["train", "--resume", str(d), "--steps", "2"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "no batch normalisation" in err
        assert '"g_batchnorm": false, "d_batchnorm": false' in err
    cfg["hyperparameters"].update(g_batchnorm=False, d_batchnorm=False)
    (d / "config.json").write_text(json.dumps(cfg))
    assert main(["eval", str(d), "--no-plots"]) == 0


class Replay(nn.Module):
    """A 'generator' that returns fixed images."""

    def __init__(self, images):
        super().__init__()
        self.images = np.asarray(images, np.float32)

    def forward(self, z):
        return sg.tensor(self.images[:z.shape[0]])


def test_mnist_evaluate_on_hand_made_generators(mnist_data, digit_cache):
    task = mnist_task("gan", mnist_data)
    real = np.concatenate([mnist_data.batch_at(s) for s in range(13)])  # training images
    task.G = Replay(real)
    good = task.evaluate(np.random.default_rng(0))
    task.G = Replay(-np.ones_like(real))  # blank images
    blank = task.evaluate(np.random.default_rng(0))
    assert 0 < good["fd"] < blank["fd"] / 4 and good["fd_floor"] == blank["fd_floor"]
    assert good["fd"] < 3 * good["fd_floor"]  # 100 samples each: FD's bias is large
    assert good["coverage"] == 10 and blank["coverage"] == 1 and blank["mnist_score"] < 1.01
    assert good["mnist_score"] > 5 and good["classifier_accuracy"] > 0.7
    assert "sliced_w1" not in good
    f = task.digit_metrics.real_features  # the floor: two held-out halves of eval_samples each
    assert good["fd_floor"] == metrics.frechet_distance(f[:200:2], f[1:200:2])
    task.G = Replay(mnist_data.training_set()[0][:100, None] / 127.5 - 1)  # the same digits
    assert task.evaluate(np.random.default_rng(0))["fd"] == pytest.approx(good["fd_train"])


def test_unlabelled_images_keep_the_sliced_w1(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (300, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    data = DataSource(str(tmp_path / "x.npy"), 8, holdout=100)
    ev = mnist_task("gan", data).evaluate(np.random.default_rng(0))
    assert ev["sliced_w1"] > 0 and "fd" not in ev
