"""Image metrics: the Fréchet distance, class statistics, the cached digit classifier and
what an MNIST GAN run reports with them."""
import json
import os

import numpy as np
import pytest

from scratchgen import backend, metrics
from scratchgen.data import DataSource
from scratchgen.models import classifier as C

QUICK = dict(C.RECIPE, epochs=1)  # one epoch: enough for the bounds below, fast


# ---- Fréchet distance -----------------------------------------------------------------------
def test_fd_of_identical_features_is_zero_and_symmetric(rng):
    a = rng.standard_normal((500, 8)) @ rng.standard_normal((8, 8))
    b = rng.standard_normal((400, 8)) * 2 + 1
    assert metrics.frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    assert metrics.frechet_distance(a, b) == pytest.approx(metrics.frechet_distance(b, a),
                                                           rel=1e-10)
    assert metrics.frechet_distance(a, b) > 1


def _gaussian(rng, mean, cov, n):
    """n points with exactly this sample mean and (unbiased) covariance."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # whitened exactly
    return mean + z @ np.linalg.cholesky(cov).T


def test_fd_matches_the_closed_form_for_diagonal_covariances(rng):
    mu_a, mu_b = np.array([0., 1., 2.]), np.array([1., -1., 2.])
    va, vb = np.array([1., 4., 0.25]), np.array([9., 1., 0.25])
    a, b = _gaussian(rng, mu_a, np.diag(va), 300), _gaussian(rng, mu_b, np.diag(vb), 200)
    # commuting covariances: tr(Sa + Sb - 2 (Sa Sb)^1/2) = sum (sqrt va - sqrt vb)^2
    want = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(va) - np.sqrt(vb)) ** 2)
    assert metrics.frechet_distance(a, b) == pytest.approx(want, rel=1e-9)  # 5 + 4 + 1


def test_fd_is_invariant_to_a_rotation_of_both_sets(rng):
    a = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6))
    b = rng.standard_normal((300, 6)) + 0.5
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert metrics.frechet_distance(a @ q, b @ q) == pytest.approx(
        metrics.frechet_distance(a, b), rel=1e-8)


def test_fd_of_rank_deficient_features_is_real_and_not_negative(rng):
    a = np.zeros((50, 10))
    a[:, :2] = rng.standard_normal((50, 2))  # 8 dead features, as ReLU units give
    assert 0 <= metrics.frechet_distance(a, a.copy()) < 1e-9
    assert np.isfinite(metrics.frechet_distance(a, rng.standard_normal((60, 10))))


def test_fd_refuses_bad_input(rng):
    with pytest.raises(ValueError, match="same d"):
        metrics.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))


# ---- class statistics -------------------------------------------------------------------------
def test_confident_evenly_spread_samples_score_ten():
    p = np.eye(10)[np.arange(1000) % 10]
    s = metrics.class_statistics(p)
    assert s == pytest.approx({"coverage": 10, "confidence": 1.0, "mnist_score": 10.0})


def test_one_class_scores_one():
    s = metrics.class_statistics(np.eye(10)[np.full(500, 3)])
    assert s == pytest.approx({"coverage": 1, "confidence": 1.0, "mnist_score": 1.0})


def test_ambiguous_samples_score_one_and_stray_samples_do_not_cover():
    s = metrics.class_statistics(np.full((100, 10), 0.1))
    assert s["mnist_score"] == pytest.approx(1.0) and s["confidence"] == pytest.approx(0.1)
    labels = np.r_[np.zeros(990, int), np.arange(1, 11) % 10]  # 1 sample each of 1..9
    assert metrics.class_statistics(np.eye(10)[labels])["coverage"] == 1  # < 2 % each
    labels = np.r_[np.zeros(820, int), np.repeat(np.arange(1, 10), 20)]  # 2 % each
    assert metrics.class_statistics(np.eye(10)[labels])["coverage"] == 10


def test_class_statistics_refuses_non_probabilities():
    with pytest.raises(ValueError, match="summing to 1"):
        metrics.class_statistics(np.ones((4, 10)))


# ---- the digit classifier and its cache --------------------------------------------------------
@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return DataSource("mnist", 8, split="test", holdout=1000, data_dir=mnist_dir)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "scratchgen" / "classifiers"


def _quiet(messages):
    return dict(warn=messages.append, log=messages.append)


def test_training_set_holds_no_held_out_example(mnist, tmp_path, mnist_dir):
    x, y = mnist.training_set()
    assert x.dtype == np.uint8 and x.shape == (9000, 28, 28) and y.shape == (9000,)
    for name in mnist_dir.glob("t10k-*"):  # only the test split: no other to hold out
        (tmp_path / name.name).symlink_to(name)
    one_split = DataSource("mnist", 8, split="test", data_dir=tmp_path, eval_size=300)
    x1, y1 = one_split.training_set()  # held out: the first 300 training examples
    assert len(x1) == 9700 and np.array_equal(x1[:8700], x[300:])
    assert np.array_equal(y1[:8700], y[300:])
    assert DataSource("8gaussians", 8).training_set() is None


def test_mnist_defaults_train_on_60000_and_hold_out_the_10000_test_digits(mnist_dir):
    data = DataSource("mnist", 8, data_dir=mnist_dir)  # no split, no holdout given
    x, y = data.training_set()
    assert x.shape == (60000, 28, 28) and len(data.held_out.labels) == 10000
    assert data.held_out.labels[:5].tolist() == [7, 2, 1, 0, 4]  # the test split, in order


@pytest.mark.slow
def test_classifier_recipe_reaches_99_percent_on_the_test_split(cache, mnist_dir):
    """The recipe as shipped, trained on the 60,000 training digits (~30 s)."""
    data = DataSource("mnist", 8, data_dir=mnist_dir)
    clf = C.digit_classifier(*data.training_set(), held_out=tuple(data.held_out),
                             **_quiet([]))
    assert clf.accuracy >= 0.99


def test_classifier_is_cached_by_data_and_recipe(mnist, cache):
    x, y = mnist.training_set()
    recipe = dict(QUICK, max_images=256)
    held = (mnist.held_out.x[:100], mnist.held_out.labels[:100])
    log = []
    first = C.digit_classifier(x[:300], y[:300], held_out=held, recipe=recipe, **_quiet(log))
    assert len(log) == 1 and log[0].startswith("training the digit classifier once (256 images")
    x, y = x[:256], y[:256]  # the recipe's max_images: the rest are not used
    assert first.path == C.cache_path(x, y, recipe) and first.path.parent == cache
    assert first.path.exists()
    again = C.digit_classifier(x, y, held_out=held, recipe=recipe, **_quiet(log))
    assert len(log) == 1 and again.path == first.path  # loaded, not retrained
    for k, v in first.net.state_dict().items():
        assert np.array_equal(backend.to_numpy(v), backend.to_numpy(again.net.state_dict()[k]))
    assert again.accuracy == first.accuracy
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % 10
    x2 = x.copy()
    x2[0, 0, 0] ^= 1
    paths = {first.path, C.cache_path(x, y2, recipe), C.cache_path(x2, y, recipe),
             C.cache_path(x, y, dict(recipe, seed=1)), C.cache_path(x, y, dict(recipe, lr=2e-3))}
    assert len(paths) == 5


def test_training_is_deterministic(mnist):
    x, y = mnist.training_set()
    x = C._symmetric(x[:128])
    a, b = (C.train_classifier(x, y[:128], QUICK).state_dict() for _ in range(2))
    assert all(np.array_equal(backend.to_numpy(a[k]), backend.to_numpy(b[k])) for k in a)


def test_corrupt_cache_file_is_retrained_with_a_warning(mnist, cache):
    x, y = mnist.training_set()
    x, y = x[:128], y[:128]
    log = []
    first = C.digit_classifier(x, y, recipe=QUICK, **_quiet(log))
    first.path.write_bytes(first.path.read_bytes()[:200])  # truncated
    again = C.digit_classifier(x, y, recipe=QUICK, **_quiet(log))
    assert [m.split(" ")[0] for m in log] == ["training", "warning:", "training"]
    assert "unreadable" in log[1] and str(first.path) in log[1]
    C.digit_classifier(x, y, recipe=QUICK, **_quiet(log))  # rewritten: loads now
    assert len(log) == 3 and again.path.exists()


def test_unwritable_cache_folder_keeps_the_classifier_in_memory(mnist, cache):
    x, y = mnist.training_set()
    cache.parent.parent.mkdir(parents=True)
    cache.parent.write_text("")  # a file where the folder should be: nothing can be made there
    log = []
    clf = C.digit_classifier(x[:64], y[:64], recipe=QUICK, **_quiet(log))
    assert clf.path is None and clf.features(np.zeros((3, 1, 28, 28))).shape == (3, 128)
    assert len(log) == 2 and log[1].startswith("warning: cannot cache the digit classifier")


def test_classifier_learns_digits(mnist, digit_cache):
    x, y = mnist.training_set()
    held = (mnist.held_out.x, mnist.held_out.labels)
    clf = C.digit_classifier(x[:2000], y[:2000], held_out=held)  # the GAN tests' data
    assert clf.path.parent == digit_cache
    assert clf.accuracy > 0.75  # one epoch (31 steps) on 2,000 digits: 0.8; chance: 0.1
    p = clf.probabilities(held[0][:50])
    assert p.shape == (50, 10) and np.allclose(p.sum(1), 1)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        clf.features(np.zeros((2, 784)))


# ---- an MNIST GAN run reports them --------------------------------------------------------------
KEYS = ("fd", "fd_floor", "fd_train", "coverage", "confidence", "mnist_score",
        "classifier_accuracy")


@pytest.mark.slow
def test_mnist_gan_run_reports_the_image_metrics(tmp_path, digit_cache, capsys, mnist_dir):
    from scratchgen import trainer
    from scratchgen.cli import main
    out = trainer.run("gan", dataset="mnist", split="test", holdout=8000, data_dir=mnist_dir,
                      steps=2, eval_every=1, batch_size=8, out=tmp_path / "run",
                      overrides={"eval_samples": "100"}, progress=False)
    evals = [e for e in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
             if e["kind"] == "eval"]
    assert [e["step"] for e in evals] == [1, 2]
    for e in evals + [json.loads((out / "eval.json").read_text())]:
        assert set(KEYS) <= set(e) and "sliced_w1" not in e
        assert 1 <= e["coverage"] <= 10 and 1 <= e["mnist_score"] <= 10 and e["fd"] > 0
    assert evals[0]["fd_floor"] == evals[1]["fd_floor"] and evals[0]["fd"] > e["fd_train"]
    capsys.readouterr()
    assert main(["eval", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert all(f" {k}  " in printed for k in KEYS) and "fd_floor" in printed
    assert json.loads((out / "eval.json").read_text())["fd"] == pytest.approx(evals[1]["fd"])


# ---- pictures while it trains ----------------------------------------------------------------
def _gan_run(mnist_dir, out, steps, **kw):
    from scratchgen import trainer
    return trainer.run("gan", dataset="mnist", split="test", holdout=8000, data_dir=mnist_dir,
                       steps=steps, eval_every=2, batch_size=8, out=out, progress=False,
                       overrides={"eval_samples": "100"}, **kw)


def _progress(run):
    with np.load(run / "progress.npz") as f:
        return f["steps"].tolist(), f["images"]


def test_fixed_noise_is_the_same_at_every_evaluation(mnist, tmp_path):
    import scratchgen as sg
    from scratchgen.tasks import get_task
    seen = []

    class Recorder(sg.nn.Module):
        def forward(self, z):
            seen.append(z.numpy().copy())
            return sg.tensor(np.tanh(np.resize(z.numpy(), (z.shape[0], 1, 28, 28))))

    task = get_task("gan")({"batch_size": 8}, mnist)
    task.G = Recorder()
    task.plots(tmp_path, np.random.default_rng(1), step=1)
    task.plots(tmp_path, np.random.default_rng(2), step=2)
    assert len(seen) == 2 and seen[0].shape == (64, 64) and np.array_equal(seen[0], seen[1])
    assert task.noise(64, np.random.default_rng(1)).numpy().tolist() != seen[0].tolist()
    assert _progress(tmp_path)[0] == [1, 2]
    task.plots(tmp_path, np.random.default_rng(3), step=2)  # again at step 2: replaced
    steps, rows = _progress(tmp_path)
    assert steps == [1, 2] and rows.shape == (2, 10, 28, 28, 1)
    assert np.array_equal(rows[0], rows[1])  # same z, same 'generator'


@pytest.mark.slow
def test_progress_survives_an_interrupted_run_and_resume_repeats_it(tmp_path, digit_cache,
                                                                  monkeypatch, mnist_dir):
    import signal

    from scratchgen import trainer
    from scratchgen.models.gan import GANTask
    whole = _gan_run(mnist_dir, tmp_path / "whole", 4)
    steps, rows = _progress(whole)
    assert steps == [2, 4] and not np.array_equal(rows[0], rows[1])  # it trained
    train_step = GANTask.train_step

    def interrupted(self, step, batches, rng):
        if step == 2:  # during the third step: it finishes, saves and stops
            os.kill(os.getpid(), signal.SIGINT)
        return train_step(self, step, batches, rng)

    monkeypatch.setattr(GANTask, "train_step", interrupted)
    with pytest.raises(trainer.TrainingStopped):
        _gan_run(mnist_dir, tmp_path / "cut", 4)
    monkeypatch.setattr(GANTask, "train_step", train_step)
    cut = tmp_path / "cut"
    assert (cut / "progress.png").read_bytes()[:4] == b"\x89PNG" and _progress(cut)[0] == [2]
    trainer.run(resume=cut, progress=False)
    steps2, rows2 = _progress(cut)
    assert steps2 == [2, 4] and np.array_equal(rows2, rows)  # the same z, the same samples
