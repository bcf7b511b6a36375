"""The ``scratchgen`` command: subcommands, exit codes, one-line errors, signals, --backend."""
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import cli
from scratchgen.cli import main

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
from harness import PLUGINS, checkpoint_state, checkpoints, cli_process, run_toy  # noqa: E402


@pytest.fixture(autouse=True)
def toy_task(monkeypatch):
    monkeypatch.setenv("SCRATCHGEN_PLUGINS", "toytask")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return run_toy(tmp_path_factory.mktemp("cli") / "run", 4)


def error_of(capsys, argv, code=2):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("sub", [[], ["train"], ["eval"], ["sample"], ["gradcheck"], ["bench"]])
def test_help_of_every_subcommand(sub, capsys):
    with pytest.raises(SystemExit) as e:
        main(sub + ["--help"])
    assert e.value.code == 0
    assert "usage: scratchgen" in capsys.readouterr().out


def test_bad_names_list_the_choices(capsys):
    err = error_of(capsys, ["train", "nosuchmodel"])
    assert "unknown model 'nosuchmodel'" in err and "wgan-gp" in err and "vae" in err
    err = error_of(capsys, ["train", "wgan-gp", "--dataset", "nosuchdata", "--steps", "1"])
    assert "nosuchdata" in err and "8gaussians" in err and "mnist" in err
    err = error_of(capsys, ["train", "toy-regression", "--set", "nosuchkey=1", "--steps", "1"])
    assert "nosuchkey" in err and "width" in err
    err = error_of(capsys, ["train"])
    assert "toy-regression" in err and "--resume" in err
    for argv in (["--backend", "bogus", "gradcheck"], ["gradcheck", "--backend", "bogus"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "'bogus'" in err and "cpu" in err and "cuda" in err
    assert "'nosuchcase'" in error_of(capsys, ["gradcheck", "nosuchcase"])


def test_bad_paths_name_the_path(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert str(missing) in error_of(capsys, ["eval", str(missing)])
    assert str(missing) in error_of(capsys, ["sample", str(missing), "-o", "x.png"])
    assert str(missing) in error_of(capsys, ["train", "--resume", str(missing)])
    err = error_of(capsys, ["train", "--resume", str(tmp_path)])
    assert "config.json" in err and str(tmp_path) in err
    npy = tmp_path / "nope.npy"
    assert str(npy) in error_of(capsys, ["train", "toy-regression", "--dataset", str(npy)])
    err = error_of(capsys, ["train", "toy-regression", "--data-dir", str(missing),
                            "--out", str(tmp_path / "never")])
    assert str(missing) in err


def test_resume_errors(toy_run, tmp_path, capsys):
    err = error_of(capsys, ["train", "--resume", str(toy_run), "--seed", "2", "--set", "width=3"])
    assert "--set, --seed cannot change" in err and "config.json" in err
    err = error_of(capsys, ["train", "--resume", str(toy_run), "--lr", "0.1"])
    assert "--lr 0.1" in err and "only lower" in err
    assert "not both" in error_of(capsys, ["train", "toy-regression", "--resume", str(toy_run)])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((toy_run / "config.json").read_text())
    err = error_of(capsys, ["eval", str(empty)])  # (train --resume starts it from step 0)
    assert "no checkpoint" in err and str(empty) in err and "--resume" in err


def test_unreadable_checkpoint_names_the_file(tmp_path, capsys):
    d = run_toy(tmp_path / "c", 5)
    ck = checkpoints(d)[-1]
    ck.write_bytes(ck.read_bytes()[:100])
    assert str(ck) in error_of(capsys, ["eval", str(d)])


def test_eval_writes_eval_json_and_plots(toy_run, capsys):
    assert main(["eval", str(toy_run)]) == 0
    out = capsys.readouterr().out
    ev = json.loads((toy_run / "eval.json").read_text())
    assert ev["step"] == 4 and "held_out_mse" in ev and "held_out_mse" in out
    assert (toy_run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    # the same numbers as the run's own final evaluation (same step, same stream)
    last = [json.loads(ln) for ln in (toy_run / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["kind"] == "eval" and last["held_out_mse"] == ev["held_out_mse"]
    assert "nosuch: no such" in error_of(capsys, ["eval", str(toy_run), "--set", "nosuch=1"])


def test_sample_writes_npy_and_png_and_rejects_other_extensions(toy_run, tmp_path, capsys):
    assert main(["sample", str(toy_run), "-n", "5", "-o", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (5, 2)
    assert main(["sample", str(toy_run), "-n", "50", "-o", str(tmp_path / "d" / "s.png")]) == 0
    assert (tmp_path / "d" / "s.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    err = error_of(capsys, ["sample", str(toy_run), "-n", "4", "-o", str(tmp_path / "x.jpg")])
    assert "'.jpg'" in err and ".png" in err and ".npy" in err
    assert "-n 0" in error_of(capsys, ["sample", str(toy_run), "-n", "0", "-o", "x.npy"])
    err = error_of(capsys, ["sample", str(toy_run), "-n", "100000000000", "-o", "x.npy"])
    assert "-n 100000000000: out of range" in err


def test_sample_writes_into_the_run_by_default_and_relative_to_the_cwd(toy_run, tmp_path,
                                                                       monkeypatch, capsys):
    assert main(["sample", str(toy_run), "-n", "8"]) == 0
    assert (toy_run / "samples-n8-seed0.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.chdir(tmp_path)
    assert main(["sample", str(toy_run), "-n", "8", "-o", "mine.npy"]) == 0
    assert np.load(tmp_path / "mine.npy").shape == (8, 2)


def test_sample_refuses_non_finite_samples(toy_run, tmp_path, monkeypatch, capsys):
    from toytask import ToyRegression
    monkeypatch.setattr(ToyRegression, "sample", lambda self, n, rng: np.full((n, 2), np.nan))
    err = error_of(capsys, ["sample", str(toy_run), "-n", "4", "-o", str(tmp_path / "s.npy")])
    assert "NaN" in err and not (tmp_path / "s.npy").exists()


def test_eval_and_sample_accept_a_data_dir_for_moved_data(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    np.save(tmp_path / "a" / "pts.npy",
            np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32))
    d = run_toy(tmp_path / "run", 2, dataset=str(tmp_path / "a" / "pts.npy"))
    (tmp_path / "a").rename(tmp_path / "b")
    assert "pts.npy" in error_of(capsys, ["eval", str(d), "--no-plots"])
    assert main(["eval", str(d), "--no-plots", "--data-dir", str(tmp_path / "b")]) == 0
    assert main(["sample", str(d), "--data-dir", str(tmp_path / "b"), "-o",
                 str(tmp_path / "s.npy")]) == 0


def test_set_takes_key_value_text():
    assert cli._kv("hidden=[400, 400]") == ("hidden", "[400, 400]")
    assert cli._kv("critic_burst=false") == ("critic_burst", "false")
    with pytest.raises(Exception, match="key=value"):
        cli._kv("lr")


@pytest.mark.parametrize("args,named", [
    (["--set", "width=abc"], "--set width=abc: not an integer; allowed: an integer >= 1"),
    (["--set", "width=0"], "--set width=0: out of range"),
    (["--set", "z_dim=0"], "--set z_dim=0"), (["--set", "n_critic=0"], "--set n_critic=0"),
    (["--set", "batch_size=abc"], "--set batch_size=abc"),
    (["--set", "critic_burst=maybe"], "no such hyperparameter"),
    (["--batch-size", "0"], "--batch-size 0: out of range; allowed: an integer >= 1"),
    (["--batch-size", "-3"], "--batch-size -3"), (["--seed", "-1"], "--seed -1"),
    (["--lr", "nan"], "--lr nan: not finite"), (["--lr", "inf"], "--lr inf"),
    (["--steps", "0"], "--steps 0"), (["--dataset", "ring", "--epochs", "1"], "--steps")])
def test_bad_options_are_one_line_and_write_nothing(tmp_path, capsys, args, named):
    out = tmp_path / "r"
    err = error_of(capsys, ["train", "wgan-gp"] + args + ["--out", str(out)])
    assert named in err and err.count("\n") == 1, err
    assert not out.exists()


def test_critic_burst_false_means_false(tmp_path, capsys):
    assert main(["train", "wgan", "--steps", "2", "--batch-size", "16", "--set", "width=8",
                 "--set", "critic_burst=False", "--out", str(tmp_path / "r")]) == 0
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["hyperparameters"]["critic_burst"] is False
    lines = [json.loads(ln) for ln in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert all("n_critic" not in r for r in lines)  # no burst: 5 critic updates, not logged


def test_out_that_is_not_a_run_is_refused_and_left_alone(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "config.json").write_text('{"my": 1}')
    (d / "metrics.jsonl").write_text("notes\n")
    err = error_of(capsys, ["train", "toy-regression", "--steps", "2", "--out", str(d)])
    assert str(d) in err
    assert (d / "config.json").read_text() == '{"my": 1}'
    assert (d / "metrics.jsonl").read_text() == "notes\n"
    (tmp_path / "f").write_text("a file")
    assert "not a folder" in error_of(capsys, ["train", "toy-regression", "--out",
                                               str(tmp_path / "f")])


def test_list_hyperparameters(capsys):
    assert main(["train", "wgan-gp", "--list-hyperparameters", "--dataset", "mnist"]) == 0
    out = capsys.readouterr().out
    assert "lam = 10.0" in out and "batch_size = 64" in out and "n_critic = 5" in out


def test_gradcheck_one_case(capsys):
    assert main(["gradcheck", "exp"]) == 0
    out = capsys.readouterr().out
    assert "exp" in out and "float64" in out


def test_bench_without_a_checkout_says_where_it_is_expected(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "bench_script", lambda: tmp_path / "benchmarks" / "workloads.py")
    err = error_of(capsys, ["bench", "--only", "W1"])
    assert str(tmp_path / "benchmarks" / "workloads.py") in err


def test_backend_option_takes_effect(tmp_path):
    """--backend wins over SCRATCHGEN_BACKEND (chosen before the first array is made)."""
    other = "numpy" if sg.backend.name != "numpy" else "cpu"
    p = cli_process(["--backend", other, "train", "toy-regression", "--steps", "2",
                     "--out", str(tmp_path / "b")], SCRATCHGEN_BACKEND="cuda")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert json.loads((tmp_path / "b" / "config.json").read_text())["backend"] == other


@pytest.mark.parametrize("env,argv,named", [
    ({"SCRATCHGEN_BACKEND": "bogus"}, ["train", "wgan-gp", "--steps", "1"], "SCRATCHGEN_BACKEND='bogus'"),
    ({}, ["train", "wgan-gp", "--backend", "cuda", "--steps", "1"], "--backend=cuda"),
])
def test_bad_or_unavailable_backend_is_one_line(tmp_path, env, argv, named):
    hidden = tmp_path / "no-cupy" / "cupy"  # CuPy absent, even on a GPU machine
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('CuPy hidden by the test')\n")
    p = cli_process(argv + ["--out", str(tmp_path / "r")], **env,
                    PYTHONPATH=os.pathsep.join([str(hidden.parent), str(PLUGINS)]))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2
    assert err.strip().count("\n") == 0 and err.startswith("error: ") and named in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.slow
def test_signal_saves_checkpoint_and_resume_works(tmp_path, sig, code):
    out = tmp_path / "s"
    p = cli_process(["train", "toy-regression", "--steps", "100000", "--out", str(out),
                     "--ckpt-every", "100000", "--set", "sleep=0.01"])
    line = p.stdout.readline()  # the first progress line
    assert line.startswith("step "), line + p.communicate()[1]
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == code, stderr
    assert "checkpoint saved" in stderr and f"--resume {out}" in stderr
    assert "Traceback" not in stderr
    step, *_ = checkpoint_state(out)
    assert 0 < step < 100000
    r = cli_process(["train", "--resume", str(out), "--steps", str(step + 3)])
    stdout, stderr = r.communicate(timeout=120)
    assert r.returncode == 0, stderr
    assert checkpoint_state(out)[0] == step + 3
    assert f"run directory: {out}" in stdout and "curves.png" in stdout


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"scratchgen {sg.__version__}"


def test_list_hyperparameters_rejects_an_unknown_dataset(capsys):
    assert main(["train", "gan", "--list-hyperparameters", "--dataset", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert "bogus" in err and "8gaussians" in err and "\n" not in err


def test_set_a_choice_named_none_is_that_choice_not_null():
    from scratchgen.tasks import get_task
    param = get_task("vae").spec.params["preprocess"]
    assert "none" in param.choices
    assert param.parse("none") == "none"
