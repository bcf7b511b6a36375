"""The harness: determinism, resume equality, signals, non-finite stops, checkpoints, CLI."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import trainer
from scratchgen.cli import main

PLUGINS = Path(__file__).parent / "plugins"
sys.path.insert(0, str(PLUGINS))
os.environ["SCRATCHGEN_PLUGINS"] = "toytask"
MNIST = Path(os.environ.get("SCRATCHGEN_MNIST_DIR",
                            Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))


def _run(out, steps, **kw):
    kw.setdefault("ckpt_every", 5)
    kw.setdefault("eval_every", 1000)
    return trainer.run("toy-regression", steps=steps, out=out, final_plots=False, **kw)


def _params(run_dir):
    state = sg.load(trainer.latest_checkpoint(run_dir))
    mods = {k: np.asarray(sg.backend.to_numpy(v)) for k, v in state["modules"]["net"].items()}
    opt = state["optimizers"]["adam"]["state"]
    moments = {f"{i}.{k}": sg.backend.to_numpy(v) for i, s in opt.items() for k, v in s.items()
               if k != "step"}
    return state["step"], mods, moments, state["task"]


def _train_lines(run_dir):
    return [{k: v for k, v in json.loads(ln).items() if k != "time"}
            for ln in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
            if '"train"' in ln]


def test_same_seed_same_parameters_other_seed_differs(tmp_path):
    a = _params(_run(tmp_path / "a", 6, seed=1))
    b = _params(_run(tmp_path / "b", 6, seed=1))
    c = _params(_run(tmp_path / "c", 6, seed=2))
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k])
    assert any(not np.array_equal(a[1][k], c[1][k]) for k in a[1])


def test_resume_ends_bit_for_bit_equal_to_uninterrupted(tmp_path):
    full = _run(tmp_path / "full", 20, seed=3, log_every=1)
    part = _run(tmp_path / "part", 10, seed=3, log_every=1)
    trainer.run(resume=part, steps=20, final_plots=False)
    s1, p1, m1, t1 = _params(full)
    s2, p2, m2, t2 = _params(part)
    assert s1 == s2 == 20 and t1 == t2
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    for k in m1:
        np.testing.assert_array_equal(m1[k], m2[k])
    assert _train_lines(full) == _train_lines(part)


def test_run_directory_contents_and_keep_last_k(tmp_path):
    d = trainer.run("toy-regression", steps=12, out=tmp_path / "r", ckpt_every=2,
                    keep_checkpoints=2, seed=0)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model"] == "toy-regression" and cfg["seed"] == 0
    assert cfg["backend"] == sg.backend.name and cfg["version"] == sg.__version__
    assert cfg["hyperparameters"]["lr"] == 1e-2 and cfg["steps"] == 12
    assert [p.name for p in trainer.checkpoints(d)] == ["ckpt-00000010.npz", "ckpt-00000012.npz"]
    lines = [json.loads(ln) for ln in (d / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["kind"] == "eval" and "held_out_mse" in lines[-1]
    assert (d / "curves.png").exists()
    with pytest.raises(trainer.UsageError, match="--resume"):
        trainer.run("toy-regression", steps=2, out=d)


def test_non_finite_loss_stops_naming_step_and_term_keeping_last_good(tmp_path):
    with pytest.raises(trainer.TrainingStopped) as e:
        _run(tmp_path / "n", 20, overrides={"nan_at": 7}, ckpt_every=5)
    msg = str(e.value)
    assert "'mse'" in msg and "step 8" in msg and "ckpt-00000005.npz" in msg
    assert e.value.exit_code == 3
    assert [p.name for p in trainer.checkpoints(tmp_path / "n")] == ["ckpt-00000005.npz"]
    step, *_ = _params(tmp_path / "n")
    assert step == 5


def _cli(args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGINS), os.environ.get(
        "PYTHONPATH", "")]), SCRATCHGEN_PLUGINS="toytask")
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "scratchgen"] + args, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_checkpoint_and_resume_works(tmp_path, sig, code):
    out = tmp_path / "s"
    p = _cli(["train", "toy-regression", "--steps", "100000", "--out", str(out),
              "--ckpt-every", "100000", "--set", "sleep=0.01"])
    deadline = time.time() + 60
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():
        assert time.time() < deadline and p.poll() is None, p.communicate()
        time.sleep(0.05)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == code, stderr
    assert "checkpoint saved" in stderr and f"--resume {out}" in stderr
    step, *_ = _params(out)
    assert 0 < step < 100000
    r = _cli(["train", "--resume", str(out), "--steps", str(step + 3)])
    stdout, stderr = r.communicate(timeout=60)
    assert r.returncode == 0, stderr
    assert _params(out)[0] == step + 3


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert main(["train", "nosuchmodel"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nosuchmodel'" in err and "wgan-gp" in err and "vae" in err
    assert main(["train", "wgan-gp", "--dataset", "nosuchdata", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "nosuchdata" in err and "8gaussians" in err and "mnist" in err
    assert main(["train", "toy-regression", "--set", "nosuchkey=1", "--steps", "1"]) == 2
    assert "nosuchkey" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--backend", "bogus", "gradcheck"])
    assert e.value.code == 2
    assert "bogus" in capsys.readouterr().err and "cpu" in capsys.readouterr().err + "cpu"
    d = _run(tmp_path / "ok", 2)
    assert main(["sample", str(d), "-n", "4", "-o", str(tmp_path / "x.jpg")]) == 2
    assert ".png" in capsys.readouterr().err


def test_checkpoint_of_another_architecture_names_the_parameter(tmp_path):
    d = _run(tmp_path / "w", 2, overrides={"width": 8})
    cfg = json.loads((d / "config.json").read_text())
    cfg["hyperparameters"]["width"] = 9
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(trainer.UsageError, match=r"0\.weight.*\(9, 2\)|0\.weight"):
        trainer.load_run(d)


def test_unreadable_checkpoint_names_the_file(tmp_path, capsys):
    d = _run(tmp_path / "c", 5)
    ck = trainer.latest_checkpoint(d)
    ck.write_bytes(ck.read_bytes()[:100])
    assert main(["eval", str(d)]) == 2
    assert str(ck) in capsys.readouterr().err


def test_eval_and_sample_commands(tmp_path, capsys):
    d = _run(tmp_path / "e", 4)
    assert main(["eval", str(d), "--no-plots"]) == 0
    assert "held_out_mse" in json.loads((d / "eval.json").read_text())
    assert main(["sample", str(d), "-n", "5", "-o", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (5, 2)
    assert main(["sample", str(d), "-n", "50", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("sub", [[], ["train"], ["eval"], ["sample"], ["gradcheck"], ["bench"]])
def test_help_of_every_subcommand(sub, capsys):
    with pytest.raises(SystemExit) as e:
        main(sub + ["--help"])
    assert e.value.code == 0
    assert "usage: scratchgen" in capsys.readouterr().out


def test_holdout_keeps_the_last_examples_out_of_training():
    data = trainer.DataSource("mnist", 64, split="test", holdout=1000, data_dir=MNIST,
                              preprocess="binarize-dynamic")
    images, labels = sg.data.load_mnist(MNIST, split="test")
    assert data.batches_per_epoch == 9000 // 64
    np.testing.assert_array_equal(data.held_out[0], images[-1000:])
    np.testing.assert_array_equal(data.held_out[1], labels[-1000:])
    with pytest.raises(trainer.UsageError, match="holdout"):
        trainer.DataSource("mnist", 64, split="test", holdout=10000, data_dir=MNIST)
