"""Results you can trust (issue 31): the settings recorded are the settings used, no dead ends,
nothing of the user's touched, and every mistake one line. Each case is driven as a user meets
it: through the ``scratchgen`` command (in process, or a subprocess for signals and pipes) or
``trainer.run``."""
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import trainer
from scratchgen.cli import main
from scratchgen.rundir import RunDir, RunDirError

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
from harness import PLUGINS, checkpoints, cli_process, metric_lines, run_toy  # noqa: E402


@pytest.fixture(autouse=True)
def toy_task(monkeypatch):
    monkeypatch.setenv("SCRATCHGEN_PLUGINS", "toytask")


def error_of(capsys, argv, *words, code=2):
    """``scratchgen ARGV`` fails with ``code`` and one ``error:`` line holding ``words``."""
    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    return err


def lr_in(run_dir):
    """The learning rate of the optimiser state in a run's newest checkpoint."""
    state = sg.load(checkpoints(run_dir)[-1])
    return state["optimizers"]["adam"]["param_groups"][0]["lr"]


def config(run_dir):
    return json.loads((Path(run_dir) / "config.json").read_text())


def edit_config(run_dir, **changes):
    cfg = config(run_dir)
    cfg.update(changes)
    (Path(run_dir) / "config.json").write_text(json.dumps(cfg))
    return cfg


def killed_before_checkpoint(monkeypatch, **kw):
    """``trainer.run(**kw)`` killed after it opened the run, before any step or checkpoint."""
    def killed(*a, **k):
        raise SystemExit(137)
    with monkeypatch.context() as m:
        m.setattr(trainer, "train", killed)
        with pytest.raises(SystemExit):
            trainer.run(progress=False, final_plots=False, **kw)


# ---- one source of truth for a run's settings ------------------------------------------------
def test_a_lowered_lr_on_a_finished_run_reaches_the_next_steps(tmp_path):
    d = run_toy(tmp_path / "r", 5)
    trainer.run(resume=d, lr="1e-3", progress=False, final_plots=False)  # finished: no steps
    trainer.run(resume=d, steps=8, progress=False, final_plots=False)
    assert config(d)["hyperparameters"]["lr"] == 1e-3 and lr_in(d) == pytest.approx(1e-3)


def test_a_lowered_lr_on_a_run_killed_before_its_first_checkpoint(tmp_path, monkeypatch, capsys):
    d = tmp_path / "r"
    killed_before_checkpoint(monkeypatch, model="toy-regression", steps=6, ckpt_every=5,
                             out=d)
    assert (d / "config.json").exists() and not checkpoints(d)
    trainer.run(resume=d, lr="1e-3", progress=False, final_plots=False)
    assert "from step 0" in capsys.readouterr().err
    assert lr_in(d) == pytest.approx(1e-3)
    assert [r["step"] for r in metric_lines(d, "train")] == list(range(1, 7))


def test_a_second_lowering_after_a_killed_resume_is_the_one_used(tmp_path, monkeypatch):
    d = run_toy(tmp_path / "r", 5)
    killed_before_checkpoint(monkeypatch, resume=d, lr="5e-3", steps=10)
    assert config(d)["hyperparameters"]["lr"] == 5e-3
    trainer.run(resume=d, lr="2.5e-3", progress=False, final_plots=False)
    assert lr_in(d) == pytest.approx(2.5e-3)
    assert config(d)["history"] == [{"step": 5, "lr": 5e-3}, {"step": 5, "lr": 2.5e-3}]


def test_reapplying_the_same_lr_adds_no_history_entry(tmp_path):
    d = run_toy(tmp_path / "r", 5)
    trainer.run(resume=d, lr="5e-3", steps=6, progress=False, final_plots=False)
    trainer.run(resume=d, lr="5e-3", steps=7, progress=False, final_plots=False)
    assert config(d)["history"] == [{"step": 5, "lr": 5e-3}]
    assert lr_in(d) == pytest.approx(5e-3)


def test_a_hand_edited_lr_is_applied(tmp_path):
    d = run_toy(tmp_path / "r", 5)
    cfg = config(d)
    edit_config(d, hyperparameters={**cfg["hyperparameters"], "lr": 1e-3})
    trainer.run(resume=d, steps=8, progress=False, final_plots=False)
    assert lr_in(d) == pytest.approx(1e-3) and config(d)["hyperparameters"]["lr"] == 1e-3


def test_a_hand_edited_setting_the_checkpoint_holds_is_refused(tmp_path, capsys):
    d = tmp_path / "g"
    trainer.run("wgan-gp", steps=2, batch_size=16, overrides={"width": 32}, out=d,
                progress=False, final_plots=False, eval_every=100)
    cfg = config(d)
    edit_config(d, hyperparameters={**cfg["hyperparameters"], "betas": [0.9, 0.99]})
    error_of(capsys, ["train", "--resume", d, "--steps", 3], "betas", "config.json")
    assert checkpoints(d)[-1].name == "ckpt-00000002.npz"  # nothing trained


def test_a_config_without_steps_is_refused_not_trained_to_2000(tmp_path, capsys):
    d = run_toy(tmp_path / "r", 3)
    cfg = config(d)
    del cfg["steps"]
    (d / "config.json").write_text(json.dumps(cfg))
    error_of(capsys, ["train", "--resume", d], "steps", "--steps")
    assert "steps" not in config(d)
    trainer.run(resume=d, steps=4, progress=False, final_plots=False)  # --steps says
    assert config(d)["steps"] == 4


def test_a_checkpoint_of_another_model_is_refused(tmp_path, capsys):
    kw = dict(steps=2, batch_size=16, overrides={"width": 32}, progress=False,
              final_plots=False, eval_every=100)
    gan = trainer.run("gan", out=tmp_path / "gan", **kw)
    wgp = trainer.run("wgan-gp", out=tmp_path / "wgp", **kw)
    state = sg.load(checkpoints(gan)[-1])
    state["step"] = 3
    sg.save(state, wgp / "ckpt-00000003.npz")
    for argv in (["train", "--resume", wgp, "--steps", 4], ["eval", wgp]):
        error_of(capsys, argv, "gan", "wgan-gp", "ckpt-00000003.npz")


# ---- no dead ends, no collateral damage --------------------------------------------------------
def test_out_on_a_run_without_checkpoint_gives_advice_that_works(tmp_path, monkeypatch, capsys):
    d = tmp_path / "r"
    killed_before_checkpoint(monkeypatch, model="toy-regression", steps=3, out=d)
    err = error_of(capsys, ["train", "toy-regression", "--steps", 3, "--out", d], "--resume")
    assert main(["train", "--resume", str(d)]) == 0
    assert "from step 0" in capsys.readouterr().err and checkpoints(d)[-1].name.endswith(
        "00000003.npz"), err


@pytest.mark.parametrize("case", ["new folder", "resumed run", "killed before config"])
def test_a_lock_symlink_is_never_written_through(tmp_path, case):
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's words\n")
    d = tmp_path / "r"
    if case == "resumed run":
        run_toy(d, 2)
        (d / ".lock").unlink()
    else:
        d.mkdir()
    (d / ".lock").symlink_to(precious)
    with pytest.raises(RunDirError, match="symbolic link"):
        if case == "resumed run":
            trainer.run(resume=d, steps=3, progress=False)
        else:
            run_toy(d, 2)
    assert precious.read_text() == "the user's words\n" and (d / ".lock").is_symlink()


def test_resume_removes_only_its_own_temporaries(tmp_path):
    d = run_toy(tmp_path / "r", 2)
    (d / "analysis.tmp").write_text("mine")
    (d / ".notes.tmp").write_text("mine too")
    (d / ".scratchgen-ckpt-00000009.npz.x1y2.tmp").write_bytes(b"half a checkpoint")
    trainer.run(resume=d, steps=3, progress=False, final_plots=False)
    assert (d / "analysis.tmp").read_text() == "mine" and (d / ".notes.tmp").exists()
    assert not list(d.glob(".scratchgen-*.tmp"))


@pytest.mark.parametrize("command", [["eval", "--no-plots"], ["sample", "-o", "s.npy"]])
def test_eval_and_sample_refuse_while_the_run_trains(tmp_path, capsys, command, monkeypatch):
    d = run_toy(tmp_path / "r", 2)
    monkeypatch.chdir(tmp_path)
    with RunDir.open(d):  # a training holds the run
        error_of(capsys, [command[0], d] + command[1:], "in use by process")
    assert main([command[0], str(d)] + command[1:]) == 0


def test_a_closed_stdout_never_stops_training(tmp_path):
    d = tmp_path / "r"
    p = cli_process(["train", "toy-regression", "--steps", "300", "--log-every", "1",
                     "--out", str(d)])
    first = p.stdout.readline()
    assert first.startswith("step 1/300")
    p.stdout.close()  # scratchgen train ... | head -1
    p.stderr.close()
    assert p.wait(timeout=120) == 0
    assert checkpoints(d)[-1].name == "ckpt-00000300.npz"
    assert metric_lines(d, "train")[-1]["step"] == 300


@pytest.mark.parametrize("loaded", ["numpy", "late"])
def test_ctrl_c_while_the_command_starts_is_one_line(loaded):
    """SIGINT once ``loaded``'s shared library is mapped: while scratchgen's imports run
    ("late": numba's on the cpu backend, SciPy's on the others, which never load numba)."""
    if loaded == "late":
        loaded = "numba" if sg.backend.name == "cpu" else "scipy"
    p = cli_process(["train", "toy-regression", "--steps", "5"])
    maps = Path(f"/proc/{p.pid}/maps")
    for _ in range(2000):
        if loaded in maps.read_text():
            break
        time.sleep(0.002)
    assert p.poll() is None, f"{loaded} was never mapped while the command started"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert p.returncode in (130, -signal.SIGINT), (p.returncode, err)


# ---- tracebacks become one line ----------------------------------------------------------------
@pytest.mark.parametrize("changes,words", [
    ({"hyperparameters": None}, ["hyperparameters", "null"]),
    ({"hyperparameters": [1, 2]}, ["hyperparameters", "list"]),
    ({"history": 5}, ["history"]),
    ({"schedule": "often"}, ["schedule"]),
    ({"model": 7}, ["model"]),
])
def test_a_malformed_config_json_is_one_line(tmp_path, capsys, changes, words):
    d = run_toy(tmp_path / "r", 2)
    edit_config(d, **changes)
    error_of(capsys, ["train", "--resume", d, "--steps", 3], "config.json", *words)
    error_of(capsys, ["eval", d], "config.json", *words)


@pytest.mark.parametrize("line", [
    {"kind": "train", "step": "3", "time": 1.0, "mse": 0.1},
    {"kind": "train", "step": None, "time": 1.0, "mse": 0.1},
    {"kind": "eval", "held_out_mse": 0.1},
])
def test_a_malformed_metrics_line_does_not_stop_a_resume(tmp_path, line):
    d = run_toy(tmp_path / "r", 4)
    with open(d / "metrics.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
    trainer.run(resume=d, steps=6, progress=False, final_plots=False)
    assert [r["step"] for r in metric_lines(d, "train")] == list(range(1, 7))


# ---- smaller ------------------------------------------------------------------------------------
def test_a_list_of_the_wrong_length_names_the_key(tmp_path, capsys):
    error_of(capsys, ["train", "wgan-gp", "--steps", 1, "--set", "betas=[0.5]", "--out",
                      tmp_path / "r"], "betas=[0.5]", "2")
    assert not (tmp_path / "r").exists()


def test_an_npz_key_with_a_colon_can_be_chosen(tmp_path):
    pts = np.random.default_rng(0).standard_normal((64, 2)).astype("f4")
    np.savez(tmp_path / "d.npz", **{"run:1": pts, "run:2": pts + 1})
    d = run_toy(tmp_path / "r", 1, dataset=f"{tmp_path / 'd.npz'}:run:2", batch_size=8)
    assert config(d)["dataset"].endswith("d.npz:run:2")
    assert sg.data.load_array(f"{tmp_path / 'd.npz'}:run:1").shape == (64, 2)


@pytest.mark.parametrize("shape,words", [((40, 28, 28, 1), ["(N, C, H, W)", "transpose"]),
                                         ((1, 28, 28), ["one example"])])
def test_bad_image_arrays_are_refused_before_training(tmp_path, capsys, shape, words):
    np.save(tmp_path / "x.npy", np.zeros(shape, np.uint8))
    error_of(capsys, ["train", "vae", "--dataset", tmp_path / "x.npy", "--steps", 2,
                      "--batch-size", 1, "--out", tmp_path / "r"], *words)
    assert not (tmp_path / "r").exists()


def test_a_missing_scratchgen_data_folder_is_not_created(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SCRATCHGEN_DATA", str(tmp_path / "nonexistent"))
    error_of(capsys, ["train", "vae", "--dataset", "mnist", "--steps", 1, "--out",
                      tmp_path / "r"], "SCRATCHGEN_DATA", "nonexistent")
    assert not (tmp_path / "nonexistent").exists() and not (tmp_path / "r").exists()


def test_sample_into_a_file_blames_the_file(tmp_path, capsys):
    d = run_toy(tmp_path / "r", 2)
    (tmp_path / "afile").write_text("")
    err = error_of(capsys, ["sample", d, "-o", tmp_path / "afile" / "x.png"], "not a folder")
    assert f"{tmp_path / 'afile'}:" in err


def test_the_nan_stop_message_comes_without_numpy_warnings(tmp_path):
    p = cli_process(["train", "toy-regression", "--steps", "5", "--set", "nan_at=2",
                     "--out", str(tmp_path / "r")])
    out, err = p.communicate(timeout=120)
    assert p.returncode == 3, err
    assert "Warning" not in err and "'mse' is nan at step 3" in err


def test_the_cuda_install_hint_is_quoted(tmp_path, capsys):
    p = cli_process(["--backend", "cuda", "train", "toy-regression", "--steps", "1"],
                    PYTHONPATH=str(PLUGINS))  # no CuPy (nor its stand-in) importable
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "pip install -e '.[cuda]'" in err, err


def test_a_short_run_is_not_mostly_evaluation(tmp_path):
    d = trainer.run("toy-regression", steps=20, out=tmp_path / "r", progress=False,
                    final_plots=False)
    assert [r["step"] for r in metric_lines(d, "eval")] == [20]
    assert config(d)["schedule"]["eval_every"] == 20
