"""The harness: determinism, resume equality, non-finite stops, checkpoints, data sources."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import trainer

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
from harness import checkpoint_state, metric_lines, run_toy  # noqa: E402

MNIST = Path(os.environ.get("SCRATCHGEN_MNIST_DIR",
                            Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))


@pytest.fixture(autouse=True)
def toy_task(monkeypatch):
    monkeypatch.setenv("SCRATCHGEN_PLUGINS", "toytask")


def test_same_seed_same_parameters_other_seed_differs(tmp_path):
    a = checkpoint_state(run_toy(tmp_path / "a", 6, seed=1))
    b = checkpoint_state(run_toy(tmp_path / "b", 6, seed=1))
    c = checkpoint_state(run_toy(tmp_path / "c", 6, seed=2))
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k])
    assert any(not np.array_equal(a[1][k], c[1][k]) for k in a[1])
    assert metric_lines(tmp_path / "a") == metric_lines(tmp_path / "b")


def test_resume_ends_bit_for_bit_equal_to_uninterrupted(tmp_path):
    full = run_toy(tmp_path / "full", 20, seed=3, log_every=1)
    part = run_toy(tmp_path / "part", 10, seed=3, log_every=1)
    trainer.run(resume=part, steps=20, final_plots=False, progress=False)
    s1, p1, m1, t1 = checkpoint_state(full)
    s2, p2, m2, t2 = checkpoint_state(part)
    assert s1 == s2 == 20 and t1 == t2
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    assert m1 and m1.keys() == m2.keys()
    for k in m1:
        np.testing.assert_array_equal(m1[k], m2[k])
    assert metric_lines(full, "train") == metric_lines(part, "train")


def test_resume_drops_metric_lines_after_the_checkpoint(tmp_path):
    """A run killed after its last checkpoint leaves lines from steps that are redone."""
    full = run_toy(tmp_path / "full", 10, seed=4, log_every=1, eval_every=3)
    cut = run_toy(tmp_path / "cut", 10, seed=4, log_every=1, eval_every=3)
    (cut / "ckpt-00000010.npz").unlink()  # as if killed between steps 5 and 10
    with (cut / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "train", "step": 11, "ms')  # and torn mid-line
    trainer.run(resume=cut, final_plots=False, progress=False)
    assert metric_lines(full) == metric_lines(cut)
    assert json.loads((cut / "config.json").read_text())["schedule"] == \
        {"log_every": 1, "eval_every": 3, "ckpt_every": 5, "keep_checkpoints": 3}
    np.testing.assert_array_equal(checkpoint_state(full)[1]["0.weight"],
                                  checkpoint_state(cut)[1]["0.weight"])


def test_run_directory_contents_and_keep_last_k(tmp_path):
    d = trainer.run("toy-regression", steps=12, out=tmp_path / "r", ckpt_every=2,
                    keep_checkpoints=2, seed=0, progress=False)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model"] == "toy-regression" and cfg["seed"] == 0
    assert cfg["backend"] == sg.backend.name and cfg["version"] == sg.__version__
    assert cfg["hyperparameters"]["lr"] == 1e-2 and cfg["steps"] == 12
    assert cfg["schedule"] == {"log_every": 1, "eval_every": 2, "ckpt_every": 2,
                               "keep_checkpoints": 2}
    assert [p.name for p in trainer.checkpoints(d)] == ["ckpt-00000010.npz", "ckpt-00000012.npz"]
    lines = metric_lines(d)
    assert [r["step"] for r in lines if r["kind"] == "train"] == list(range(1, 13))
    assert [r["step"] for r in lines if r["kind"] == "eval"] == [2, 4, 6, 8, 10, 12]
    assert "held_out_mse" in lines[-1]
    assert json.loads((d / "eval.json").read_text())["step"] == 12
    assert (d / "curves.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(trainer.UsageError, match="--resume"):
        trainer.run("toy-regression", steps=2, out=d)


def test_non_finite_loss_stops_naming_step_and_term_keeping_last_good(tmp_path):
    with pytest.raises(trainer.TrainingStopped) as e:
        run_toy(tmp_path / "n", 20, overrides={"nan_at": 7}, ckpt_every=5)
    msg = str(e.value)
    assert "'mse'" in msg and "nan" in msg and "step 8" in msg and "ckpt-00000005.npz" in msg
    assert e.value.exit_code == 3
    assert [p.name for p in trainer.checkpoints(tmp_path / "n")] == ["ckpt-00000005.npz"]
    step, params, _, _ = checkpoint_state(tmp_path / "n")
    assert step == 5 and all(np.all(np.isfinite(p)) for p in params.values())
    with pytest.raises(trainer.TrainingStopped, match="no checkpoint was written"):
        run_toy(tmp_path / "n0", 20, overrides={"nan_at": 2}, ckpt_every=5)


def test_resume_cannot_go_back_and_needs_a_checkpoint(tmp_path):
    d = run_toy(tmp_path / "r", 6)
    with pytest.raises(trainer.UsageError, match="step 6"):
        trainer.run(resume=d, steps=3)
    for p in trainer.checkpoints(d):
        p.unlink()
    with pytest.raises(trainer.UsageError, match="no checkpoint"):
        trainer.run(resume=d)
    with pytest.raises(trainer.UsageError, match="config.json"):
        trainer.run(resume=tmp_path)


def test_checkpoint_of_another_architecture_names_the_parameter(tmp_path):
    d = run_toy(tmp_path / "w", 2, overrides={"width": 8})
    cfg = json.loads((d / "config.json").read_text())
    cfg["hyperparameters"]["width"] = 9
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(trainer.UsageError, match=r"0\.weight"):
        trainer.load_run(d)


def test_step_streams_are_distinct_from_the_data_layers_seeds():
    """``default_rng([s, k, 1])`` would equal the loader's binarisation stream
    ``default_rng([s, k, 1, 0])`` (SeedSequence pads with zeros); the harness's must not."""
    draw = lambda g: g.random(4)
    a = draw(trainer.step_rng(3, 5, 1))
    np.testing.assert_array_equal(a, draw(trainer.step_rng(3, 5, 1)))
    for other in ([3, 5, 1], [3, 5, 1, 0], [3, 5], [3, 5, 0], [3, 5, 1, 1]):
        assert not np.array_equal(a, draw(np.random.default_rng(other)))
    assert not np.array_equal(a, draw(trainer.step_rng(3, 5, 2)))
    assert not np.array_equal(a, draw(trainer.step_rng(3, 6, 1)))


def test_epochs_of_a_finite_array_and_not_of_a_toy(tmp_path):
    pts = np.random.default_rng(0).standard_normal((100, 2)).astype(np.float32)
    np.save(tmp_path / "pts.npy", pts)
    d = trainer.run("toy-regression", dataset=str(tmp_path / "pts.npy"), epochs=2,
                    out=tmp_path / "a", final_plots=False, progress=False)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["steps"] == 2 * (100 // 32) and cfg["data"]["kind"] == "points"
    with pytest.raises(trainer.UsageError, match="--steps"):
        trainer.run("toy-regression", dataset="ring", epochs=1, out=tmp_path / "b")


def test_unknown_names_list_the_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'nope'.*toy-regression"):
        trainer.run("nope", steps=1, out=tmp_path / "a")
    with pytest.raises(trainer.UsageError, match="8gaussians, ring"):
        trainer.run("toy-regression", dataset="mnist", steps=1, out=tmp_path / "b")
    with pytest.raises(trainer.UsageError, match="unknown dataset 'nope'.*swissroll.*mnist"):
        trainer.DataSource("nope", 8)
    with pytest.raises(trainer.UsageError, match="no hyperparameter 'depth'.*width"):
        trainer.run("toy-regression", steps=1, overrides={"depth": 3}, out=tmp_path / "c")


def test_holdout_keeps_the_last_examples_out_of_training():
    data = trainer.DataSource("mnist", 64, split="test", holdout=1000, data_dir=MNIST,
                              preprocess="binarize-dynamic")
    images, labels = sg.data.load_mnist(MNIST, split="test")
    assert data.batches_per_epoch == 9000 // 64 and data.kind == "images"
    np.testing.assert_array_equal(data.held_out[0], images[-1000:])
    np.testing.assert_array_equal(data.held_out[1], labels[-1000:])
    assert data.batch_at(0).shape == (64, 1, 28, 28)
    with pytest.raises(trainer.UsageError, match="holdout"):
        trainer.DataSource("mnist", 64, split="test", holdout=10000, data_dir=MNIST)
    # --data-dir may also name the folder holding mnist/
    sym = trainer.DataSource("mnist", 64, split="test", holdout=1000, data_dir=MNIST.parent)
    assert sym.preprocess == "symmetric" and sym.held_out[0].min() == -1.0
    np.testing.assert_array_equal(sym.held_out[1], labels[-1000:])
