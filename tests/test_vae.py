"""The VAE model, its evaluation (IWAE, active units), a short real-MNIST run, the figures."""

import matplotlib.image
import numpy as np
import pytest

import scratchgen as sg
from scratchgen.losses.elbo import elbo, kl_normal_std
from scratchgen.models.vae import VAE, active_units
from scratchgen.models import vae_plots

def f32(a):
    return sg.tensor(np.asarray(a, dtype=np.float32))


def binary(rng, shape, p=0.3):
    return (rng.random(shape) < p).astype(np.float32)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood,var", [("bernoulli", "fixed"), ("gaussian", "fixed"),
                                             ("gaussian", "learned")])
def test_shapes_and_loss_terms(arch, likelihood, var):
    rng = np.random.default_rng(0)
    vae = VAE(784, hidden=(16,), z_dim=3, arch=arch, likelihood=likelihood, gaussian_var=var,
              fixed_var=0.5, generator=rng)
    x = binary(rng, (4, 1, 28, 28))
    mu, logvar = vae.encode(f32(x))
    assert mu.shape == logvar.shape == (4, 3)
    eps = rng.standard_normal((4, 3))
    out, _, _ = vae(f32(x), f32(eps))
    assert out.shape == (4, 784)
    loss, terms = vae.loss(f32(x), f32(eps))
    np.testing.assert_allclose(loss.item(), terms["recon"].item() + terms["kl"].item(), rtol=1e-5)
    np.testing.assert_allclose(terms["kl"].item(), kl_normal_std(mu, logvar).numpy().mean(),
                               rtol=1e-5)
    loss.backward()
    names = {n for n, p in vae.named_parameters() if p.grad is not None}
    assert names == {n for n, _ in vae.named_parameters()}
    assert ("x_logvar" in names) == (var == "learned" and likelihood == "gaussian")
    if likelihood == "gaussian" and var == "fixed":
        np.testing.assert_allclose(vae.x_logvar.numpy(), np.log(0.5), rtol=1e-6)
        assert "x_logvar" in vae.state_dict()


def test_model_gradients_match_finite_differences_float64():
    rng = np.random.default_rng(1)
    vae = VAE(6, hidden=(5,), z_dim=2, activation="tanh", likelihood="gaussian",
              gaussian_var="learned", generator=rng).double()
    x = sg.tensor(rng.normal(size=(3, 6)))
    eps = sg.tensor(rng.normal(size=(3, 2)))
    params = dict(vae.named_parameters())
    auto = dict(zip(params, sg.grad(vae.loss(x, eps)[0], list(params.values()))))
    originals = [p.data for p in params.values()]

    def loss(*values):  # the model's loss as a function of its parameters' values
        for p, v in zip(params.values(), values):
            p.data = v.data
        return vae.loss(x, eps)[0]

    numeric = sg.numeric_grad(loss, list(params.values()))
    for p, data in zip(params.values(), originals):
        p.data = data
    for (name, g), fd in zip(auto.items(), numeric):
        np.testing.assert_allclose(fd, g.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_iwae_of_the_model_chunked_k1_and_monotone():
    rng = np.random.default_rng(2)
    vae = VAE(20, hidden=(8,), z_dim=2, generator=rng)
    x = f32(binary(rng, (5, 20), 0.5))
    a = vae.iwae(x, 30, np.random.default_rng(7)).numpy()
    b = vae.iwae(x, 30, np.random.default_rng(7), chunk=4).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5)
    # k = 1 with the same noise is the one-sample ELBO (KL by Monte Carlo)
    eps = np.random.default_rng(8).standard_normal((1, 5, 2))
    k1 = vae.iwae(x, 1, np.random.default_rng(8)).numpy()
    mu, logvar = vae.encode(x)
    z = mu + sg.functional.exp(logvar * 0.5) * f32(eps[0])
    from scratchgen.losses.elbo import log_normal, log_standard_normal, bernoulli_nll
    one = (-bernoulli_nll(vae.decode(z), x) + log_standard_normal(z)
           - log_normal(z, mu, logvar)).numpy()
    np.testing.assert_allclose(k1, one, rtol=1e-5)
    # averaged over draws, IWAE_50 is above the ELBO (monotonicity in k: tests/test_elbo.py)
    eps = f32(np.random.default_rng(9).standard_normal((5, 2)))
    means = [np.mean([vae.iwae(x, k, np.random.default_rng(100 * k + r)).numpy()
                      for r in range(20)], 0) for k in (1, 50)]
    assert np.all(means[1] > means[0])
    out, mu, logvar = vae(x, eps)
    assert np.all(np.isfinite(elbo(x, out, mu, logvar, reduction="none").numpy()))


def test_active_units():
    rng = np.random.default_rng(3)
    means = np.zeros((500, 4))
    means[:, 0] = rng.normal(size=500)                 # variance ~1: active
    means[:, 1] = 0.2 * rng.normal(size=500)           # variance ~0.04: active
    means[:, 2] = 0.05 * rng.normal(size=500)          # variance ~0.0025: inactive
    count, a = active_units(means)
    assert count == 2 and a.shape == (4,) and a[3] == 0


def test_pca_recovers_the_principal_axis():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, 3)) * [3.0, 1.0, 0.1] + [1.0, 2.0, 3.0]
    mean, axes, sd = vae_plots.pca(x, 2)
    np.testing.assert_allclose(mean, [1, 2, 3], atol=0.2)
    np.testing.assert_allclose(np.abs(axes[0]), [1, 0, 0], atol=0.02)
    np.testing.assert_allclose(sd, [3.0, 1.0], rtol=0.05)


# ---- the task on real MNIST, through the harness ----------------------------------------------
@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory, mnist_dir):
    """100 steps on the first 512 test images (the rest held out; 256 of them evaluated)."""
    import json
    from scratchgen import trainer
    out = tmp_path_factory.mktemp("vae") / "run"
    trainer.run("vae", dataset="mnist", split="test", holdout=10000 - 512, steps=100,
                batch_size=64, data_dir=mnist_dir, out=out, progress=False, eval_every=50,
                overrides={"hidden": [32], "z_dim": 4, "iwae_k": 8, "eval_examples": 256})
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    return out, lines


def test_short_mnist_run_learns(mnist_run):
    out, lines = mnist_run
    train = [r for r in lines if r["kind"] == "train"]
    evals = [r for r in lines if r["kind"] == "eval"]
    loss = np.array([r["loss"] for r in train])
    assert len(loss) >= 50 and np.all(np.isfinite(loss))
    assert {"loss", "elbo", "recon", "kl"} <= set(train[0])
    assert loss[-10:].mean() < 0.6 * loss[:10].mean()
    assert [r["step"] for r in evals] == [50, 100]
    last = evals[-1]
    assert {"elbo", "recon", "kl", "iwae", "active_units"} <= set(last)
    assert last["elbo"] > evals[0]["elbo"]
    assert last["elbo"] <= last["iwae"] < 0
    np.testing.assert_allclose(-last["elbo"], last["recon"] + last["kl"], rtol=1e-4)
    assert 1 <= last["active_units"] <= 4


def test_eval_with_more_importance_samples_tightens_the_bound(mnist_run):
    from scratchgen import trainer
    task, _, config, step = trainer.load_run(mnist_run[0])
    assert step == 100
    ev = {}
    task.hp = task.hp.replace(iwae_k=1)
    ev[1] = task.evaluate(np.random.default_rng(0))["iwae"]
    task.hp = task.hp.replace(iwae_k=64)
    ev[64] = task.evaluate(np.random.default_rng(0))["iwae"]
    assert ev[1] < ev[64]


def expected_grid_px(n, nrow, title, h=28):
    from scratchgen import plots
    rows = -(-n // nrow)
    gh, gw = rows * (h + 2) + 2, nrow * (h + 2) + 2
    s = max(1, -(-400 // gw))
    return gh * s + (plots.TITLE_PX if title else 0), gw * s


def test_plots_are_written_with_their_sizes(mnist_run):
    out = mnist_run[0]
    names = ["curves.png", "vae_samples.png", "vae_reconstructions.png", "vae_manifold.png",
             "vae_traversals.png", "vae_latent.png"]
    size = {n: matplotlib.image.imread(out / n).shape[:2] for n in names}
    assert size["vae_samples.png"] == expected_grid_px(100, 10, True)
    assert size["vae_reconstructions.png"] == expected_grid_px(60, 10, True)
    assert size["vae_manifold.png"] == expected_grid_px(15 * 15, 15, True)
    assert size["vae_traversals.png"] == expected_grid_px(4 * 11, 11, True)
    assert size["vae_latent.png"] == (600, 600)


def test_samples_of_a_run():
    from types import SimpleNamespace
    from scratchgen.models.vae import VAETask
    data = SimpleNamespace(held_out=None, shape=(1, 28, 28), name="mnist", seed=0,
                           batches_per_epoch=0)
    task = VAETask({"hidden": [8], "z_dim": 3}, data)
    s = task.sample(5, np.random.default_rng(1))
    assert s.shape == (5, 1, 28, 28) and s.min() >= 0 and s.max() <= 1
    assert task.evaluate(np.random.default_rng(0)) == {}


def test_manifold_of_a_2d_latent_uses_the_gaussian_grid(tmp_path):
    seen = []

    def decode(z):
        seen.append(z)
        return np.zeros((len(z), 1, 28, 28))

    vae_plots.manifold(decode, 2, tmp_path / "m.png", n=5)
    z = seen[0]
    assert z.shape == (25, 2)
    from scipy.stats import norm
    np.testing.assert_allclose(np.unique(z[:, 0]), norm.ppf([0.05, 0.275, 0.5, 0.725, 0.95]),
                               atol=1e-9)
    np.testing.assert_allclose(np.unique(z[:, 1]), np.unique(z[:, 0]))


def test_burda_learning_rate_schedule():
    from scratchgen.models.vae import burda_lr
    # stage i lasts 3^i passes: epochs 0 | 1-3 | 4-12 | 13-39 | ... | 1093-3279, then stays
    for epoch, i in [(0, 0), (1, 1), (3, 1), (4, 2), (12, 2), (13, 3), (1092, 6), (1093, 7),
                     (3279, 7), (10 ** 6, 7)]:
        np.testing.assert_allclose(burda_lr(1e-3, epoch), 1e-3 * 10 ** (-i / 7), rtol=1e-12)


def test_held_out_elbo_does_not_depend_on_iwae_k(mnist_run):
    from scratchgen import trainer
    task = trainer.load_run(mnist_run[0])[0]
    task.hp = task.hp.replace(iwae_k=2)
    a = task.evaluate(np.random.default_rng(5))
    task.hp = task.hp.replace(iwae_k=3)
    b = task.evaluate(np.random.default_rng(5))
    assert a["elbo"] == b["elbo"] and a["iwae"] != b["iwae"]
    assert (a["iwae_k"], b["iwae_k"]) == (2, 3)
    import json
    assert json.loads((mnist_run[0] / "eval.json").read_text())["iwae_k"] == 8
