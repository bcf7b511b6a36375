"""The harness: the run specification, determinism, resume equality, non-finite stops,
checkpoints, the data contract."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import trainer
from scratchgen.rundir import RunDirError
from scratchgen.runconfig import RunConfig
from scratchgen.spec import Param, Spec, SpecError
from scratchgen.tasks import get_task

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
from harness import checkpoint_state, checkpoints, metric_lines, run_toy  # noqa: E402

@pytest.fixture(autouse=True)
def toy_task(monkeypatch):
    monkeypatch.setenv("SCRATCHGEN_PLUGINS", "toytask")


# ---- the run specification ----------------------------------------------------------------------
def test_set_values_are_parsed_by_their_declaration():
    hp = get_task("wgan").spec.build({"critic_burst": "false", "width": "128", "lr": "1e-4"})
    assert hp.critic_burst is False and hp.width == 128 and hp.lr == 1e-4
    assert get_task("wgan").spec.build({"critic_burst": "True"}).critic_burst is True
    assert get_task("vae").spec.build({"hidden": "[32, 16]"}).hidden == [32, 16]
    assert get_task("gan").spec.build({}, "mnist").batch_size == 64  # per-dataset default
    for model, key, value, allowed in [
            ("wgan-gp", "width", "abc", "an integer >= 1"), ("wgan-gp", "width", "0", ">= 1"),
            ("wgan-gp", "z_dim", "0", ">= 1"), ("wgan", "n_critic", "0", ">= 1"),
            ("wgan-gp", "batch_size", "abc", "an integer"), ("wgan", "critic_burst", "2", "true"),
            ("gan", "loss", "wasserstein", "nonsaturating, minimax"),
            ("wgan-gp", "lr", "nan", "> 0"), ("wgan-gp", "lr", "-1", "> 0"),
            ("wgan-gp", "betas", "[0.5, 1]", "< 1"), ("vae", "hidden", "[0]", ">= 1")]:
        with pytest.raises(SpecError) as e:
            get_task(model).spec.build({key: value})
        msg = str(e.value)
        assert f"{key}={value}" in msg and allowed in msg and "\n" not in msg, msg
    with pytest.raises(SpecError, match="no such hyperparameter.*width"):
        get_task("toy-regression").spec.build({"depth": 3})


def test_hyperparameters_are_read_only_and_replace_is_checked():
    hp = Spec(Param("k", int, 1, low=1)).build()
    with pytest.raises(AttributeError):
        hp.k = 2
    assert hp.replace(k="3").k == 3 and hp.k == 1
    with pytest.raises(SpecError, match="k=0"):
        hp.replace(k=0)


@pytest.mark.parametrize("option,value", [
    ("batch_size", "0"), ("batch_size", "-3"), ("batch_size", "abc"), ("seed", "-1"),
    ("lr", "nan"), ("lr", "inf"), ("lr", "0"), ("steps", "0"), ("steps", "-5"),
    ("holdout", "-1"), ("ckpt_every", "0")])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, option, value):
    flag = "--" + option.replace("_", "-")
    with pytest.raises(SpecError, match=f"{flag} {value}: .*allowed"):
        trainer.run("toy-regression", out=tmp_path / "r", **{option: value})
    assert not (tmp_path / "r").exists()


def test_config_json_round_trips_exactly(tmp_path):
    d = run_toy(tmp_path / "r", 3, overrides={"width": "8"})
    stored = json.loads((d / "config.json").read_text())
    cfg = RunConfig.from_json(stored)
    assert cfg.hyperparameters.width == 8 and cfg.to_json() == stored
    assert RunConfig.from_json(cfg.to_json()) == cfg
    stored["hyperparameters"]["width"] = "eight"
    with pytest.raises(SpecError, match="width=eight"):
        RunConfig.from_json(stored)


# ---- determinism and resume ------------------------------------------------------------------------
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


def test_several_batches_per_step_come_from_the_harness_and_resume_exactly(tmp_path):
    """WGAN-GP with 2 critic updates: the harness hands each step 2 batches of a finite
    array and keeps their index in the checkpoint; resume repeats the run bit for bit."""
    pts = np.random.default_rng(0).standard_normal((40, 2)).astype(np.float32)
    np.save(tmp_path / "pts.npy", pts)
    kw = dict(dataset=str(tmp_path / "pts.npy"), batch_size=8, ckpt_every=3, eval_every=100,
              final_plots=False, progress=False, log_every=1,
              overrides={"width": 8, "depth": 1, "n_critic": 2, "eval_samples": 20})
    full = trainer.run("wgan-gp", steps=6, out=tmp_path / "full", **kw)
    part = trainer.run("wgan-gp", steps=3, out=tmp_path / "part", **kw)
    assert sg.load(checkpoints(part)[-1])["batch"] == 6
    trainer.run(resume=part, steps=6, final_plots=False, progress=False)
    a, b = (sg.load(checkpoints(d)[-1]) for d in (full, part))
    assert a["batch"] == b["batch"] == 12 and a["task"] == {}
    for k, v in a["modules"]["generator"].items():
        np.testing.assert_array_equal(sg.backend.to_numpy(v),
                                      sg.backend.to_numpy(b["modules"]["generator"][k]))
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


def test_resuming_a_finished_run_adds_no_evaluation(tmp_path):
    d = run_toy(tmp_path / "r", 4)
    before = metric_lines(d)
    trainer.run(resume=d, final_plots=False, progress=False)
    trainer.run(resume=d, final_plots=False, progress=False)
    assert metric_lines(d) == before and [r["kind"] for r in before].count("eval") == 1


def test_resume_may_lower_the_learning_rate_recorded_in_history(tmp_path):
    d = run_toy(tmp_path / "r", 5)
    with pytest.raises(trainer.UsageError, match="only lower"):
        trainer.run(resume=d, steps=8, lr=0.1)
    trainer.run(resume=d, steps=10, lr="1e-3", final_plots=False, progress=False)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["hyperparameters"]["lr"] == 1e-3 and cfg["history"] == [{"step": 5, "lr": 1e-3}]
    state = sg.load(checkpoints(d)[-1])
    assert state["step"] == 10 and state["optimizers"]["adam"]["param_groups"][0]["lr"] == 1e-3


def test_run_directory_contents_and_keep_last_k(tmp_path):
    d = trainer.run("toy-regression", steps=12, out=tmp_path / "r", ckpt_every=2,
                    keep_checkpoints=2, seed=0, progress=False)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model"] == "toy-regression" and cfg["seed"] == 0
    assert cfg["backend"] == sg.backend.name and cfg["version"] == sg.__version__
    assert cfg["hyperparameters"]["lr"] == 1e-2 and cfg["steps"] == 12
    assert cfg["schedule"] == {"log_every": 1, "eval_every": 12, "ckpt_every": 2,
                               "keep_checkpoints": 2}  # a short run evaluates at its end
    assert [p.name for p in checkpoints(d)] == ["ckpt-00000010.npz", "ckpt-00000012.npz"]
    lines = metric_lines(d)
    assert [r["step"] for r in lines if r["kind"] == "train"] == list(range(1, 13))
    assert [r["step"] for r in lines if r["kind"] == "eval"] == [12]
    assert "held_out_mse" in lines[-1]
    assert json.loads((d / "eval.json").read_text())["step"] == 12
    assert (d / "curves.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(RunDirError, match="--resume"):
        trainer.run("toy-regression", steps=2, out=d)


def test_figures_are_drawn_at_every_evaluation_so_a_stopped_run_has_them(tmp_path):
    with pytest.raises(trainer.TrainingStopped):
        run_toy(tmp_path / "n", 20, overrides={"nan_at": 7}, eval_every=3, final_plots=True)
    assert (tmp_path / "n" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "n" / "eval.json").read_text())["step"] == 6


def test_non_finite_loss_stops_naming_step_and_term_keeping_last_good(tmp_path):
    with pytest.raises(trainer.TrainingStopped) as e:
        run_toy(tmp_path / "n", 20, overrides={"nan_at": 7}, ckpt_every=5)
    msg = str(e.value)
    assert "'mse'" in msg and "nan" in msg and "step 8" in msg and "ckpt-00000005.npz" in msg
    assert e.value.exit_code == 3
    assert [p.name for p in checkpoints(tmp_path / "n")] == ["ckpt-00000005.npz"]
    step, params, _, _ = checkpoint_state(tmp_path / "n")
    assert step == 5 and all(np.all(np.isfinite(p)) for p in params.values())
    with pytest.raises(trainer.TrainingStopped, match="no checkpoint was written"):
        run_toy(tmp_path / "n0", 20, overrides={"nan_at": 2}, ckpt_every=5)


def test_non_finite_weights_are_never_checkpointed(tmp_path, monkeypatch):
    """A step that leaves NaN weights behind a finite loss stops before the checkpoint."""
    from toytask import ToyRegression
    step = ToyRegression.train_step

    def poisoned(self, k, batches, rng):
        logs = step(self, k, batches, rng)
        if k == 6:
            self.net[0].weight.array[0, 0] = np.nan
        return logs

    monkeypatch.setattr(ToyRegression, "train_step", poisoned)
    with pytest.raises(trainer.TrainingStopped) as e:
        run_toy(tmp_path / "w", 20, ckpt_every=7)
    assert e.value.exit_code == 3 and "0.weight" in str(e.value) and "after step 7" in str(e.value)
    assert [p.name for p in checkpoints(tmp_path / "w")] == []


def test_resume_cannot_go_back_and_starts_over_without_a_checkpoint(tmp_path):
    d = run_toy(tmp_path / "r", 6)
    with pytest.raises(trainer.UsageError, match="step 6"):
        trainer.run(resume=d, steps=3)
    with pytest.raises(trainer.UsageError, match="--seed cannot change"):
        trainer.run(resume=d, seed=3)
    for p in checkpoints(d):
        p.unlink()
    with pytest.raises(RunDirError, match="no checkpoint.*--resume.*from step 0"):
        trainer.load_run(d)
    trainer.run(resume=d, progress=False, final_plots=False)  # trained again from step 0
    assert checkpoints(d)[-1].name == "ckpt-00000006.npz"
    with pytest.raises(RunDirError, match="config.json"):
        trainer.run(resume=tmp_path)


def test_checkpoint_of_another_architecture_names_the_parameter(tmp_path):
    d = run_toy(tmp_path / "w", 2, overrides={"width": 8})
    cfg = json.loads((d / "config.json").read_text())
    cfg["hyperparameters"]["width"] = 9
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(trainer.UsageError, match=r"0\.weight"):
        trainer.load_run(d)


def test_a_checkpoint_of_the_first_format_still_loads_and_continues(tmp_path, capsys):
    """Format 1 (no batch index; tasks counted their batches): one batch per step, so a
    one-batch task continues exactly as the uninterrupted run."""
    full = run_toy(tmp_path / "full", 8)
    d = run_toy(tmp_path / "old", 5)
    state = sg.load(checkpoints(d)[-1])
    del state["batch"], state["format"]
    sg.save(state, checkpoints(d)[-1])
    cfg = json.loads((d / "config.json").read_text())
    cfg["version"] = "0.0.9"
    cfg["hyperparameters"]["seed"] = 0  # older runs copied the seed in
    (d / "config.json").write_text(json.dumps(cfg))
    assert trainer.load_run(d)[3] == 5
    trainer.run(resume=d, steps=8, final_plots=False, progress=False)
    assert "checkpoint format 1 (scratchgen 0.0.9)" in capsys.readouterr().err
    np.testing.assert_array_equal(checkpoint_state(full)[1]["0.weight"],
                                  checkpoint_state(d)[1]["0.weight"])


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


def test_logged_scalars_are_fetched_together():
    t = sg.tensor(np.float32(1.5))
    out = trainer.fetch_scalars({"a": t, "b": t.array * 2, "c": 0.25, "d": np.float64(4)})
    assert out == {"a": 1.5, "b": 3.0, "c": 0.25, "d": 4.0}
    assert all(type(v) is float for v in out.values())


# ---- data ----------------------------------------------------------------------------------------
def test_epochs_of_a_finite_array_and_not_of_a_toy(tmp_path):
    pts = np.random.default_rng(0).standard_normal((100, 2)).astype(np.float32)
    np.save(tmp_path / "pts.npy", pts)
    d = trainer.run("toy-regression", dataset=str(tmp_path / "pts.npy"), epochs=2,
                    out=tmp_path / "a", final_plots=False, progress=False)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["steps"] == 2 * (100 // 32) and cfg["data"]["kind"] == "points"
    with pytest.raises(trainer.UsageError, match="--steps"):
        trainer.run("toy-regression", dataset="ring", epochs=1, out=tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_data_paths_are_stored_absolute_and_can_be_relocated(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    np.save(tmp_path / "here" / "pts.npy",
            np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32))
    monkeypatch.chdir(tmp_path / "here")
    d = run_toy("run", 2, dataset="pts.npy")
    assert json.loads((d / "config.json").read_text())["dataset"] == \
        str(tmp_path / "here" / "pts.npy")
    monkeypatch.chdir(tmp_path)
    assert trainer.load_run(d)[3] == 2
    (tmp_path / "moved").mkdir()
    (tmp_path / "here" / "pts.npy").rename(tmp_path / "moved" / "pts.npy")
    with pytest.raises(FileNotFoundError, match="pts.npy"):
        trainer.load_run(d)
    assert trainer.load_run(d, data_dir=tmp_path / "moved")[3] == 2


def test_points_of_the_wrong_dimension_are_refused_before_training(tmp_path):
    np.save(tmp_path / "p3.npy", np.zeros((300, 3), np.float32))
    for model in ("wgan-gp", "toy-regression"):
        with pytest.raises(trainer.UsageError, match=r"p3.npy.*\(3,\)"):
            trainer.run(model, dataset=str(tmp_path / "p3.npy"), out=tmp_path / model)
        assert not (tmp_path / model).exists()


def test_unknown_names_list_the_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'nope'.*toy-regression"):
        trainer.run("nope", steps=1, out=tmp_path / "a")
    with pytest.raises(trainer.UsageError, match="8gaussians, ring"):
        trainer.run("toy-regression", dataset="mnist", steps=1, out=tmp_path / "b")
    with pytest.raises(sg.data.DatasetError, match="unknown dataset 'nope'.*swissroll.*mnist"):
        trainer.DataSource("nope", 8)
    with pytest.raises(SpecError, match="depth: no such hyperparameter.*width"):
        trainer.run("toy-regression", steps=1, overrides={"depth": 3}, out=tmp_path / "c")


def test_held_out_is_one_kind_of_object_preprocessed_like_the_batches(mnist_dir):
    data = trainer.DataSource("mnist", 64, split="test", holdout=1000, data_dir=mnist_dir,
                              preprocess="unit")
    images, labels = sg.data.load_mnist(mnist_dir, split="test")
    assert data.batches_per_epoch == 9000 // 64 and data.kind == "images"
    assert isinstance(data.held_out, sg.data.HeldOut) and data.shape == (1, 28, 28)
    np.testing.assert_array_equal(data.held_out.x, images[-1000:, None] / np.float32(255))
    np.testing.assert_array_equal(data.held_out.labels, labels[-1000:])
    assert data.batch_at(0).shape == (64, 1, 28, 28)
    with pytest.raises(sg.data.DatasetError, match="holdout"):
        trainer.DataSource("mnist", 64, split="test", holdout=10000, data_dir=mnist_dir)
    # --data-dir may also name the folder holding mnist/
    sym = trainer.DataSource("mnist", 64, split="test", holdout=1000, data_dir=mnist_dir.parent)
    assert sym.preprocess == "symmetric" and sym.held_out.x.min() == -1.0
    binary = trainer.DataSource("mnist", 64, split="test", holdout=1000, data_dir=mnist_dir,
                                preprocess="binarize-dynamic", seed=3)
    assert set(np.unique(binary.held_out.x)) == {0.0, 1.0}
    toy = trainer.DataSource("ring", 16, holdout=10)
    assert toy.held_out.labels is None and toy.held_out.x.shape == (1000, 2)
    assert toy.held_out.x.dtype == np.float32


def test_optimizer_and_lr_schedule_from_the_spec_resume_bit_for_bit(tmp_path):
    """--set optimizer=adamw --set lr_schedule=cosine: the rate follows the closed form over
    the run's steps, and a run resumed from a mid-run checkpoint repeats the uninterrupted
    one (the schedule's base rate travels in the optimiser's checkpointed state)."""
    import math
    import shutil
    kw = dict(dataset="8gaussians", steps=20, ckpt_every=5, eval_every=1000, log_every=1,
              final_plots=False, progress=False,
              overrides={"optimizer": "adamw", "lr_schedule": "cosine", "width": 16,
                         "batch_size": 32})
    full = trainer.run("wgan-gp", out=tmp_path / "full", **kw)
    part = tmp_path / "part"
    shutil.copytree(full, part)
    for p in checkpoints(part):
        if int(p.stem.split("-")[1]) > 10:
            p.unlink()
    trainer.run(resume=part, final_plots=False, progress=False)
    a, b = sg.load(checkpoints(full)[-1]), sg.load(checkpoints(part)[-1])
    assert a["step"] == b["step"] == 20
    for k, v in a["modules"]["critic"].items():
        np.testing.assert_array_equal(sg.backend.to_numpy(v),
                                      sg.backend.to_numpy(b["modules"]["critic"][k]))
    group = a["optimizers"]["critic"]["param_groups"][0]
    assert "weight_decay" in group and group["weight_decay"] == 0.01  # AdamW's default
    base = group["initial_lr"]
    assert math.isclose(group["lr"], base * (1 + math.cos(math.pi * 20 / 20)) / 2, abs_tol=1e-15)
    assert metric_lines(full, "train") == metric_lines(part, "train")


def test_unknown_optimizer_or_schedule_is_refused_naming_the_choices():
    from scratchgen.spec import SpecError
    for key, value, choice in (("optimizer", "lbfgs", "adamw"), ("lr_schedule", "warmup", "cosine")):
        with pytest.raises(SpecError, match=f"{key}={value}: not a choice; allowed: .*{choice}"):
            trainer.new_config("wgan-gp", {key: value}, dataset="8gaussians")
