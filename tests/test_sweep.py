"""scratchgen sweep (issue 27): study files checked before anything starts, one-line errors,
the summary over seeds, and on a real two-process LocalCluster: a worker killed mid-run and a
study interrupted and resumed give results equal bit for bit to sequential runs."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scratchgen import cli
from scratchgen.sweep import engine, report, store
from scratchgen.sweep.study import StudyError, load_study, parse_study

ISSUE_STUDY = """\
model = "wgan-gp"
dataset = "8gaussians"
steps = 60
seeds = [0, 1]
[set]            # fixed --set values
width = 16
[grid]           # every combination of these --set keys (lr and batch_size too)
lam = [0.1, 1.0]
"""


def _write(tmp_path, text, name="study.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


# ---- the study file ------------------------------------------------------------------------------
def test_the_issue_study_is_four_scratchgen_train_runs(tmp_path):
    study = load_study(_write(tmp_path, ISSUE_STUDY))
    assert [r.name for r in study.runs] == ["lam=0.1_seed0", "lam=0.1_seed1", "lam=1.0_seed0",
                                            "lam=1.0_seed1"]
    assert study.axes == ["lam"]
    args = cli._parser().parse_args(["train", *study.runs[2].argv])
    assert (args.model, args.dataset, args.steps, args.seed) == ("wgan-gp", "8gaussians", "60", "0")
    assert dict(args.overrides) == {"width": "16", "lam": "1.0"}


def test_models_lists_and_options_become_axes_and_flags():
    study = parse_study({"model": ["wgan", "wgan-gp"], "steps": 5, "eval_every": 5,
                         "grid": {"lr": [1e-4, 2e-5], "n_critic": [5]}})
    assert study.axes == ["model", "lr", "n_critic"]
    assert len(study.runs) == 4 and study.runs[0].name == "wgan_lr=0.0001_n_critic=5_seed0"
    betas = parse_study({"model": "wgan-gp", "grid": {"betas": [[0.5, 0.9], [0.0, 0.9]]}})
    assert [r.name for r in betas.runs] == ["betas=0.5,0.9_seed0", "betas=0.0,0.9_seed0"]
    assert "betas=[0.0, 0.9]" in betas.runs[1].argv
    # wgan declares no betas: the grid point is refused, naming the model
    with pytest.raises(StudyError, match="wgan has no such hyperparameter"):
        parse_study({"model": ["wgan", "wgan-gp"], "grid": {"betas": [[0.5, 0.9]]}})
    argv = study.runs[-1].argv
    assert argv[argv.index("--eval-every") + 1] == "5" and "lr=2e-05" in argv


def test_the_example_studies_are_valid():
    studies = sorted((Path(__file__).parents[1] / "examples" / "studies").glob("*.toml"))
    assert {p.stem for p in studies} >= {"main_job", "critic_tracks_quality", "gan_mnist_recipe"}
    runs = {p.stem: load_study(p).runs for p in studies}
    assert [r.argv for r in runs["main_job"]][4] == [
        "wgan-gp", "--dataset", "8gaussians", "--steps", "4000", "--seed", "4", "--set",
        "width=128"]
    wgan, gp = runs["critic_tracks_quality"][0], runs["critic_tracks_quality"][3]
    assert "critic_burst=true" in wgan.argv and "critic_burst=true" not in gp.argv


@pytest.mark.parametrize("text, message", [
    (ISSUE_STUDY.replace("[0.1, 1.0]", "[0.1, -1.0]"),
     "study.toml [grid] lam=-1.0: out of range; allowed: a number >= 0"),
    (ISSUE_STUDY.replace("lam =", "lamb ="), "study.toml [grid] lamb: wgan-gp has no such"),
    (ISSUE_STUDY.replace("width = 16", "width = \"wide\""), "study.toml [set] width=wide: not an"),
    (ISSUE_STUDY.replace("steps = 60", "steps = 0"), "study.toml: steps=0: out of range"),
    (ISSUE_STUDY.replace("8gaussians", "mnist").replace('"wgan-gp"', '"vae"')
     .replace("[set]", "[xset]"), "unknown key 'xset'"),
    (ISSUE_STUDY.replace('"wgan-gp"', '"vae"').replace("width = 16\n", "")
     .replace("lam =", "z_dim =").replace("0.1, 1.0", "2, 4"), "seed 0: vae cannot train on '8gaussians'"),
    (ISSUE_STUDY.replace("[grid]", "[grid"), "study.toml: not valid TOML"),
    (ISSUE_STUDY.replace("seeds = [0, 1]", "seeds = [0, 0]"), "seeds: 0 is given twice"),
    (ISSUE_STUDY.replace("[0.1, 1.0]", "0.1"), "[grid] lam: give a non-empty list"),
    (ISSUE_STUDY + "[set.wgan]\nclip = 0.1\n", "[set.wgan]: wgan is not a model of this study"),
])
def test_a_bad_study_is_one_line_exit_2_and_nothing_starts(tmp_path, capsys, text, message):
    study = _write(tmp_path, text)
    out = tmp_path / "out"
    assert cli.main(["sweep", str(study), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists()


def test_without_dask_sweep_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    out = tmp_path / "out"
    assert cli.main(["sweep", str(_write(tmp_path, ISSUE_STUDY)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == 'error: scratchgen sweep needs Dask distributed, an optional extra: pip ' \
                  'install "scratchgen[sweep]"\n'
    assert not out.exists()


def test_an_unreachable_scheduler_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", "1s")
    out = tmp_path / "out"
    t = time.time()
    assert cli.main(["sweep", str(_write(tmp_path, ISSUE_STUDY)), "--out", str(out),
                     "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert time.time() - t < 15
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--scheduler tcp://127.0.0.1:9: no Dask scheduler" in err
    assert not out.exists()


def test_another_study_or_other_files_in_out_are_refused_untouched(tmp_path, capsys):
    pytest.importorskip("distributed")
    first = load_study(_write(tmp_path, ISSUE_STUDY))
    out = tmp_path / "out"
    with store.StudyDir.open(out, first, ISSUE_STUDY):
        pass
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = _write(tmp_path, ISSUE_STUDY.replace("1.0]", "2.0]"), "other.toml")
    assert cli.main(["sweep", str(other), "--out", str(out)]) == 2
    assert "holds another study" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    assert cli.main(["sweep", str(other), "--out", str(stray)]) == 2
    assert "holds no study (notes.txt)" in capsys.readouterr().err
    assert os.listdir(stray) == ["notes.txt"]


# ---- states and the summary (no cluster) ---------------------------------------------------------
def _fake_run(sd, name, steps, done_step=None, metrics=None, records=()):
    d = sd.run_dir(name)
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model": "m", "dataset": "d",
                                               "hyperparameters": {}, "steps": steps}))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if done_step is not None:
        (d / "eval.json").write_text(json.dumps({"step": done_step, **(metrics or {})}))


def test_summary_is_mean_std_and_range_over_seeds_and_status_lists_states(tmp_path, capsys):
    study = parse_study({"model": "wgan-gp", "steps": 4, "seeds": [0, 1, 2],
                         "grid": {"lam": [0.1, 1.0]}, "correlate_with": "w1"}, "s.toml")
    sd = store.StudyDir(tmp_path / "out")
    sd.path.mkdir()
    (sd.path / "study.json").write_text(json.dumps({"source": "s.toml",
                                                    "runs": study.identity()}))
    w1 = {0: 1.0, 1: 2.0, 2: 4.0}
    for seed, v in w1.items():
        recs = [{"kind": "train", "step": s, "loss": float(s * seed)} for s in (1, 2, 3, 4)]
        recs += [{"kind": "eval", "step": s, "w1": v / s, "critic_w1": -s, "modes": 8.0}
                 for s in (2, 3, 4)]
        _fake_run(sd, f"lam=0.1_seed{seed}", 4, 4, {"w1": v, "modes": 8.0}, recs)
    _fake_run(sd, "lam=1.0_seed0", 4, 4, {"w1": 3.0, "modes": 7.0},
              [{"kind": "eval", "step": 4, "w1": 3.0}])
    _fake_run(sd, "lam=1.0_seed1", 4, records=[{"kind": "train", "step": 2, "loss": 1.0}])
    sd.record({"name": "lam=1.0_seed2", "state": "failed", "exit_code": 3,
               "error": "stopped: loss term 'loss' is nan at step 2"})
    paths, md = report.write(study, sd)
    with open(sd.path / "summary.csv") as f:
        import csv
        rows = list(csv.DictReader(f))
    assert [r["lam"] for r in rows] == ["0.1", "1.0"]
    a = rows[0]
    assert (a["runs"], a["finished"], a["failed"]) == ("3", "3", "0")
    assert float(a["w1_mean"]) == pytest.approx(7 / 3)
    assert float(a["w1_std"]) == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    assert (float(a["w1_min"]), float(a["w1_max"])) == (1.0, 4.0)
    assert float(a["spearman_critic_w1_mean"]) == 1.0  # both fall with the step
    assert "spearman_modes_mean" not in a  # constant: no rank correlation
    b = rows[1]
    assert (b["finished"], b["failed"], b["w1_mean"], b["w1_std"]) == ("1", "2", "3.0", "")
    assert "| 0.1 | 3 | 2.333 ± 1.5 (1 to 4) |" in md and "| 1.0 | 1/3 | 3 |" in md
    assert all(p.exists() for p in paths) and {p.name for p in paths} == {
        "summary.csv", "summary.md", "curves.png", "final.png"}
    by = store.status(sd.path)
    assert by == {"finished": ["lam=0.1_seed0", "lam=0.1_seed1", "lam=0.1_seed2",
                               "lam=1.0_seed0"], "running": [], "stopped": ["lam=1.0_seed1"],
                  "failed": ["lam=1.0_seed2"], "pending": []}
    out = capsys.readouterr().out
    assert "6 runs: 4 finished, 1 stopped, 1 failed" in out
    assert "exit 3: stopped: loss term 'loss' is nan" in out and "2/4" in out


# ---- a real cluster ------------------------------------------------------------------------------
CLUSTER_STUDY = """\
model = "wgan-gp"
dataset = "8gaussians"
steps = 300
eval_every = 300
ckpt_every = 20
seeds = [0, 1]
[set]
width = 16
eval_samples = 200
[grid]
lam = [0.1, 1.0]
"""


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The study's runs trained one after another by ``scratchgen train`` (the reference)."""
    pytest.importorskip("distributed")
    base = tmp_path_factory.mktemp("sequential")
    study = load_study(_write(base, CLUSTER_STUDY))
    for r in study.runs:
        subprocess.run([sys.executable, "-m", "scratchgen", "train", *r.argv, "--out",
                        str(base / r.name)], check=True, stdout=subprocess.DEVNULL)
    return base, study


def _same_as(run_dir, ref_dir):
    """metrics.jsonl without wall times, and every checkpoint, equal bit for bit."""
    def lines(d):
        return [{k: v for k, v in json.loads(ln).items() if k != "time"}
                for ln in (d / "metrics.jsonl").read_text().splitlines()]
    assert lines(run_dir) == lines(ref_dir), run_dir.name
    ckpts = sorted(p.name for p in ref_dir.glob("ckpt-*.npz"))
    assert sorted(p.name for p in run_dir.glob("ckpt-*.npz")) == ckpts
    for name in ckpts:
        assert (run_dir / name).read_bytes() == (ref_dir / name).read_bytes(), name


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except OSError:
        return False


def _attempts(sd, name):
    return [ln for ln in sd.log(name).read_text().splitlines() if ln.startswith("$ ")]


class _Watch:
    """``on_poll``: remembers every worker and trainer PID, and acts once on a run in the
    middle of training (past a checkpoint, well before its end)."""

    def __init__(self, sd, act):
        self.sd, self.act, self.pids, self.hit = sd, act, set(), None

    def __call__(self, client, futures):
        acts = client.run(engine.active, on_error="ignore")
        for a in acts.values():
            self.pids.update(v for v in a.values())
        if self.hit is not None:
            return
        for a in acts.values():
            for name in a:
                step, _ = store.progress(self.sd.run_dir(name))
                if name != "_pid" and 20 <= step <= 200 and store.has_checkpoint(
                        self.sd.run_dir(name)):
                    self.hit = name
                    self.act(a)
                    return


@pytest.mark.slow
def test_a_killed_worker_resumes_its_run_elsewhere_bit_for_bit(tmp_path, sequential):
    ref, _ = sequential
    study = _write(tmp_path, CLUSTER_STUDY)
    sd = store.StudyDir(tmp_path / "out")
    watch = _Watch(sd, lambda a: os.kill(a["_pid"], signal.SIGKILL))
    results, md, paths = engine_run(study, sd.path, watch)
    assert watch.hit is not None, "no run was caught in the middle"
    assert all(r["state"] == "finished" for r in results), results
    attempts = _attempts(sd, watch.hit)
    assert len(attempts) == 2 and "--resume" in attempts[1] and "--out" in attempts[0]
    for r in results:
        _same_as(sd.run_dir(r["name"]), ref / r["name"])
    assert not [p for p in watch.pids if _alive(p)], "processes left running"
    assert "| 0.1 | 2 |" in md and (sd.path / "curves.png").exists()


@pytest.mark.slow
def test_an_interrupted_study_resumes_and_reruns_nothing_finished(tmp_path, sequential):
    ref, _ = sequential
    study = _write(tmp_path, CLUSTER_STUDY)
    sd = store.StudyDir(tmp_path / "out")

    def interrupt(a):
        raise KeyboardInterrupt
    watch = _Watch(sd, interrupt)
    assert engine_run(study, sd.path, watch) is None
    names = [r["name"] for r in json.loads((sd.path / "study.json").read_text())["runs"]]
    states = {n: sd.state(n)[0] for n in names}
    assert states[watch.hit] == "stopped" and store.has_checkpoint(sd.run_dir(watch.hit))
    finished = [n for n, s in states.items() if s == "finished"]
    before = {n: (sd.run_dir(n) / "metrics.jsonl").stat().st_mtime_ns for n in finished}
    assert not [p for p in watch.pids if _alive(p)], "processes left running"
    results, md, paths = engine_run(study, sd.path, _Watch(sd, lambda a: None))
    assert all(r["state"] == "finished" for r in results)
    for n in finished:  # not run again
        assert len(_attempts(sd, n)) == 1
        assert (sd.run_dir(n) / "metrics.jsonl").stat().st_mtime_ns == before[n]
    assert "--resume" in _attempts(sd, watch.hit)[-1]
    for r in results:
        _same_as(sd.run_dir(r["name"]), ref / r["name"])


def engine_run(study, out, watch):
    from scratchgen.sweep.command import run_study
    return run_study(study, out, workers=2, progress=False, on_poll=watch, poll=0.2)


@pytest.mark.slow
def test_a_failed_run_is_recorded_and_the_others_finish(tmp_path, capsys):
    pytest.importorskip("distributed")
    # a GAN at rate 1e30 overflows at its first step on any BLAS kernels (a clipped WGAN's
    # critic may instead go dead, all ReLUs off, and train on without a NaN)
    study = _write(tmp_path, 'model = "gan"\ndataset = "8gaussians"\nsteps = 6\n'
                   'eval_every = 6\n[set]\nwidth = 16\neval_samples = 100\n'
                   '[grid]\nlr = [5e-5, 1e30]\n')
    out = tmp_path / "out"
    assert cli.main(["sweep", str(study), "--out", str(out), "--workers", "2"]) == 1
    summary = (out / "summary.md").read_text()
    assert "| 5e-05 | 1 |" in summary and "| 1e+30 | 0/1 | - |" in summary
    bad = json.loads((out / "results" / "lr=1e+30_seed0.json").read_text())
    assert bad["state"] == "failed" and bad["exit_code"] == 3
    assert bad["error"].startswith("stopped: loss term")
    good = out / "runs" / "lr=5e-05_seed0" / "metrics.jsonl"
    mtime = good.stat().st_mtime_ns
    capsys.readouterr()
    # started again: the failure is kept, nothing runs; --retry-failed runs only that one
    assert cli.main(["sweep", str(study), "--out", str(out)]) == 1
    assert "1 finished, 0 to run" in capsys.readouterr().out
    assert cli.main(["sweep", str(study), "--out", str(out), "--retry-failed"]) == 1
    assert "1 finished, 1 to run" in capsys.readouterr().out
    assert good.stat().st_mtime_ns == mtime
    assert len(_attempts(store.StudyDir(out), "lr=1e+30_seed0")) == 2
    assert len(_attempts(store.StudyDir(out), "lr=5e-05_seed0")) == 1
