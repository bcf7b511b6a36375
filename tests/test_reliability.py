"""Nothing of the user's is lost or silently wrong: every case of issue 12 driven end to end
through the ``scratchgen`` command in subprocesses (kills by SIGKILL; a full disk and a
read-only file system by a ``sitecustomize`` that makes the chosen calls fail, since tests
cannot mount a small file system).

Each test states what the user sees: an exit code, one line on stderr naming the path or
option and what to do, and the run directory's files afterwards."""
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import scratchgen as sg

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
from harness import PLUGINS, cli_process  # noqa: E402

TOY = ["train", "toy-regression", "--log-every", "1"]
WGAN_GP = ["train", "wgan-gp", "--batch-size", "16", "--set", "width=32"]


def scratchgen(*args, timeout=300, **env):
    """Run ``scratchgen ARGS`` (test task registered) to the end: (exit code, stdout, stderr)."""
    p = cli_process([str(a) for a in args], **env)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def ok(result):
    rc, out, err = result
    assert rc == 0, f"exit {rc}\n{out}\n{err}"
    return out + err


def one_line_error(result, *words, code=2):
    """The command failed with ``code`` (any non-zero if None) and one stderr line holding
    ``words``, without a traceback; returns that line."""
    rc, out, err = result
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert (rc != 0 if code is None else rc == code), f"exit {rc}\n{out}\n{err}"
    assert len(lines) == 1, err
    for w in words:
        assert str(w) in lines[0], (w, lines[0])
    return lines[0]


def records(run):
    path = Path(run) / "metrics.jsonl"
    out = []
    for ln in path.read_text().splitlines():
        try:
            out.append(json.loads(ln))
        except json.JSONDecodeError:
            pass
    return out


def train_steps(run):
    return [r["step"] for r in records(run) if r.get("kind") == "train"]


def ckpts(run):
    return sorted(p for p in Path(run).iterdir() if re.fullmatch(r"ckpt-\d{8}\.npz", p.name))


def temp_files(run):
    return sorted(n for n in os.listdir(run) if n.endswith(".tmp"))


def finite(path):
    """Whether every float array of the checkpoint at ``path`` is finite."""
    bad, todo = [], [sg.load(path)]
    while todo:
        x = todo.pop()
        if isinstance(x, dict):
            todo.extend(x.values())
        elif isinstance(x, (list, tuple)):
            todo.extend(x)
        else:
            x = x.array if isinstance(x, sg.Tensor) else x
            if getattr(x, "dtype", None) is not None and x.dtype.kind == "f":
                bad.append(not np.isfinite(sg.backend.to_numpy(x)).all())
    return not any(bad)


def wait_for_line(proc, text, limit=60):
    """Read ``proc``'s stdout until a line holding ``text``."""
    t0 = time.time()
    while time.time() - t0 < limit:
        line = proc.stdout.readline()
        if text in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {text!r}: "
                                 f"{proc.stderr.read()}")
    raise AssertionError(f"no {text!r} within {limit} s")


FAULTS = """
import builtins, errno, io, os
_dir = os.environ.get("FAULT_DIR")
_code = getattr(errno, os.environ.get("FAULT_ERRNO", "EROFS"))
_full = os.environ.get("FULL_AT")

def _under(path):
    try:
        return _dir and os.path.abspath(os.fspath(path)).startswith(_dir)
    except TypeError:
        return False

def _deny(path):
    raise OSError(_code, os.strerror(_code), os.fspath(path))

_mkdir, _open, _bopen = os.mkdir, os.open, builtins.open
def mkdir(path, *a, **k):
    if _under(path) and not os.path.exists(path):  # as the kernel: EEXIST comes first
        _deny(path)
    return _mkdir(path, *a, **k)
def os_open(path, flags, *a, **k):
    if _under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        _deny(path)
    return _open(path, flags, *a, **k)
def b_open(file, mode="r", *a, **k):
    if not isinstance(file, int) and _under(file) and set(mode) & set("wax+"):
        _deny(file)
    return _bopen(file, mode, *a, **k)
if _dir:
    os.mkdir, os.open, builtins.open, io.open = mkdir, os_open, b_open, b_open

_fsync = os.fsync
def fsync(fd):
    if _full and _full in os.readlink(f"/proc/self/fd/{fd}"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return _fsync(fd)
if _full:
    os.fsync = fsync
"""


@pytest.fixture
def faults(tmp_path):
    """Environment for :func:`scratchgen` that loads :data:`FAULTS` as ``sitecustomize``."""
    d = tmp_path / "faults"
    d.mkdir()
    (d / "sitecustomize.py").write_text(FAULTS)
    return {"PYTHONPATH": os.pathsep.join([str(d), str(PLUGINS),
                                           os.environ.get("PYTHONPATH", "")])}


# ---- data lost or corrupted -------------------------------------------------------------------
def test_out_naming_a_folder_that_is_not_a_run_is_refused_and_left_alone(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "config.json").write_text('{"my":1}\n')
    (d / "metrics.jsonl").write_text("notes\n")
    one_line_error(scratchgen(*WGAN_GP, "--steps", 5, "--out", d), d)
    assert sorted(os.listdir(d)) == ["config.json", "metrics.jsonl"]
    assert (d / "config.json").read_text() == '{"my":1}\n'
    assert (d / "metrics.jsonl").read_text() == "notes\n"


def _while_writing(args, *others):
    """Start ``scratchgen ARGS`` (a slow run); once it has trained a step, run each of
    ``others`` (argument lists) to the end and check it is refused, naming the writer's PID
    (a resume) or the folder (a new run on the same --out); then stop the writer with
    SIGINT, which saves a checkpoint (exit 130)."""
    writer = cli_process([str(a) for a in args])
    try:
        wait_for_line(writer, "step ")
        for other in others:
            holder = f"process {writer.pid}" if "--resume" in other else str(args[-1])
            one_line_error(scratchgen(*other), holder, code=None)
    finally:
        writer.send_signal(signal.SIGINT)
        out, err = writer.communicate(timeout=120)
    assert writer.returncode == 130, err


@pytest.mark.slow
def test_a_second_writer_of_a_run_is_refused_naming_the_holder(tmp_path):
    d = tmp_path / "d"
    _while_writing(TOY + ["--steps", 1000, "--set", "sleep=0.05", "--out", d],
                   TOY + ["--steps", 40, "--out", d], ["train", "--resume", d, "--steps", 60])
    first = train_steps(d)
    _while_writing(["train", "--resume", d, "--steps", 2000],
                   ["train", "--resume", d, "--steps", 2000])
    steps = train_steps(d)  # one writer at a time: each step once, in order
    assert steps == list(range(1, steps[-1] + 1)) and len(steps) > len(first) > 0
    evals = [r["step"] for r in records(d) if r.get("kind") == "eval"]
    assert len(evals) == len(set(evals)) and evals == sorted(evals)


@pytest.mark.slow
def test_a_kill_while_resume_rewrites_metrics_never_loses_them(tmp_path):
    """A checkpoint at step 200000 with 200000 metric lines and 100 lines of an interrupted
    future: resume drops those 100, and a SIGKILL the moment the rewrite shows (a temporary
    metrics file appears, or metrics.jsonl shrinks) leaves every line up to the checkpoint."""
    d = tmp_path / "d"
    ok(scratchgen(*TOY, "--steps", 10, "--ckpt-every", 10, "--out", d))
    state = sg.load(d / "ckpt-00000010.npz")
    state["step"] = 200_000
    sg.save(state, d / "ckpt-00200000.npz")
    (d / "metrics.jsonl").write_text("".join(
        json.dumps({"kind": "train", "step": s, "time": s * 1e-3, "mse": 0.5}) + "\n"
        for s in range(1, 200_101)))
    size = (d / "metrics.jsonl").stat().st_size
    caught = 0
    for _ in range(3):
        before = set(temp_files(d))
        p = cli_process(["train", "--resume", str(d), "--steps", "200002"])
        while p.poll() is None:
            new = [n for n in set(temp_files(d)) - before if "metrics" in n]
            if new or (d / "metrics.jsonl").stat().st_size < size:
                p.send_signal(signal.SIGKILL)
                caught += 1
                break
        p.communicate(timeout=120)
        kept = [s for s in train_steps(d) if s <= 200_000]
        assert kept == list(range(1, 200_001))
        if p.returncode == 0:
            break
    assert caught  # the kill landed while the file was being rewritten


@pytest.mark.slow
def test_temp_files_left_by_killed_writers_are_removed_on_the_next_start(tmp_path):
    d = tmp_path / "d"
    ok(scratchgen(*TOY, "--steps", 4, "--ckpt-every", 2, "--out", d))
    strays = [".ckpt-00000004.npz.k2j4x9ab.tmp", ".ckpt-00000006.npz.q8w7e6rt.tmp"]
    for name in strays:
        (d / name).write_bytes(os.urandom(2 << 20))
    ok(scratchgen("train", "--resume", d, "--steps", 6))
    assert temp_files(d) == [] and ckpts(d)[-1].name == "ckpt-00000006.npz"


@pytest.mark.slow
def test_resuming_a_finished_run_adds_nothing_to_its_metrics(tmp_path):
    d = tmp_path / "d"
    ok(scratchgen(*TOY, "--steps", 4, "--out", d))
    before = (d / "metrics.jsonl").read_text()
    assert [r["step"] for r in records(d) if r["kind"] == "eval"].count(4) == 1
    ok(scratchgen("train", "--resume", d))
    ok(scratchgen("train", "--resume", d))
    assert (d / "metrics.jsonl").read_text() == before


# ---- a "last good" checkpoint that is good --------------------------------------------------------
def test_a_checkpoint_is_written_only_from_finite_weights(tmp_path):
    """lr 1e39 sends the weights to infinity in step 1 while its loss is still finite."""
    d = tmp_path / "d"
    rc, out, err = scratchgen(*TOY, "--lr", "1e39", "--steps", 5, "--ckpt-every", 1, "--out", d)
    assert rc == 3 and "Traceback" not in err, err
    assert all(finite(p) for p in ckpts(d)), [p.name for p in ckpts(d)]
    for name in re.findall(r"ckpt-\d{8}\.npz", err):  # a checkpoint named as good is good
        assert (d / name).exists() and finite(d / name)


@pytest.mark.slow
def test_resume_may_lower_the_learning_rate_as_the_stop_message_advises(tmp_path):
    d = tmp_path / "d"
    rc, out, err = scratchgen(*TOY, "--steps", 6, "--ckpt-every", 1, "--set", "nan_at=3",
                              "--out", d)
    assert rc == 3 and "ckpt-00000003.npz" in err and "--lr" in err, err
    rc, out, err = scratchgen("train", "--resume", d, "--lr", "0.001")
    assert "cannot change" not in err and "Traceback" not in err, err
    assert rc == 3  # the task's NaN hook fires again at the same step
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["hyperparameters"]["lr"] == 0.001
    assert "0.001" in json.dumps(cfg.get("history"))


def _poison_latest(run):
    """Overwrite the newest checkpoint with one whose weights are NaN, as older versions
    wrote them."""
    path = ckpts(run)[-1]
    state = sg.load(path)
    for mod in state["modules"].values():
        for k, v in mod.items():
            mod[k] = np.full(np.shape(sg.backend.to_numpy(getattr(v, "data", v))), np.nan,
                             np.float32)
    sg.save(state, path)
    return path


@pytest.mark.slow
def test_sample_never_draws_from_non_finite_weights(tmp_path):
    d = tmp_path / "d"
    ok(scratchgen(*WGAN_GP, "--steps", 4, "--ckpt-every", 2, "--out", d))
    bad = _poison_latest(d)
    said = ok(scratchgen("sample", d, "-n", 16, "-o", tmp_path / "s.npy"))
    assert bad.name in said and "ckpt-00000002.npz" in said
    s = np.load(tmp_path / "s.npy")
    assert s.shape == (16, 2) and np.isfinite(s).all()


@pytest.mark.slow
def test_a_corrupt_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path):
    d = tmp_path / "d"
    ok(scratchgen(*TOY, "--steps", 6, "--ckpt-every", 2, "--out", d))
    latest = d / "ckpt-00000006.npz"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    for args in (["eval", d, "--no-plots"], ["sample", d, "-n", 4, "-o", tmp_path / "s.npy"]):
        said = ok(scratchgen(*args))
        assert "ckpt-00000006.npz" in said and "ckpt-00000004.npz" in said, said
    assert json.loads((d / "eval.json").read_text())["step"] == 4
    said = ok(scratchgen("train", "--resume", d))
    assert "ckpt-00000006.npz" in said and "ckpt-00000004.npz" in said, said
    assert finite(latest) and sg.load(latest)["step"] == 6
    assert train_steps(d) == [1, 2, 3, 4, 5, 6]


# ---- hyperparameters checked before anything is written -------------------------------------------
BAD_OPTIONS = [
    ("wgan-gp", ["--set", "n_critic=0"], ["n_critic", "0"]),
    ("wgan-gp", ["--set", "width=abc"], ["width", "abc"]),
    ("wgan-gp", ["--set", "width=0"], ["width", "0"]),
    ("wgan-gp", ["--set", "z_dim=0"], ["z_dim", "0"]),
    ("wgan-gp", ["--set", "batch_size=abc"], ["batch_size", "abc"]),
    ("wgan-gp", ["--batch-size", "0"], ["--batch-size", "0"]),
    ("wgan-gp", ["--batch-size", "-3"], ["--batch-size", "-3"]),
    ("wgan-gp", ["--seed", "-1"], ["--seed", "-1"]),
    ("wgan-gp", ["--lr", "nan"], ["--lr", "nan"]),
    ("wgan-gp", ["--lr", "inf"], ["--lr", "inf"]),
    ("wgan", ["--set", "critic_burst=maybe"], ["critic_burst", "maybe"]),
]


@pytest.mark.slow
def test_bad_hyperparameters_are_one_line_naming_them_and_write_nothing(tmp_path):
    procs = [cli_process(["train", model, *args, "--steps", "3",
                          "--out", str(tmp_path / f"r{i}")])
             for i, (model, args, words) in enumerate(BAD_OPTIONS)]
    wrong = []
    for i, (p, (model, args, words)) in enumerate(zip(procs, BAD_OPTIONS)):
        out, err = p.communicate(timeout=300)
        try:
            line = one_line_error((p.returncode, out, err), *words)
            assert "invalid literal" not in line and "n must be" not in line, line
            assert not (tmp_path / f"r{i}").exists()
        except AssertionError as e:
            wrong.append(f"{model} {' '.join(args)}: {e}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_critic_burst_false_means_false(tmp_path):
    for value in ("False", "false"):
        d = tmp_path / value
        ok(scratchgen("train", "wgan", "--steps", 1, "--batch-size", 16, "--set", "width=8",
                      "--set", f"critic_burst={value}", "--log-every", 1, "--out", d))
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["hyperparameters"]["critic_burst"] is False, value
        assert all("n_critic" not in r for r in records(d)), value  # logged for a burst only


# ---- run directories that do not depend on where they were made ---------------------------------
@pytest.mark.slow
def test_relative_data_paths_still_work_from_another_folder(tmp_path, monkeypatch, mnist_dir):
    home, away = tmp_path / "home", tmp_path / "away"
    home.mkdir()
    away.mkdir()
    np.save(home / "pts.npy", np.random.default_rng(0).standard_normal((64, 2)).astype("f4"))
    (home / "mnist").symlink_to(mnist_dir)
    monkeypatch.chdir(home)
    ok(scratchgen(*TOY, "--dataset", "pts.npy", "--steps", 2, "--out", "pts-run"))
    ok(scratchgen("train", "vae", "--dataset", "mnist", "--data-dir", "mnist", "--split", "test",
                  "--holdout", 500, "--batch-size", 16, "--set", "hidden=[32]", "--set",
                  "z_dim=4", "--set", "iwae_k=2", "--steps", 2, "--out", "vae-run"))
    monkeypatch.chdir(away)
    for run in ("pts-run", "vae-run"):
        ok(scratchgen("sample", home / run, "-n", 4, "-o", f"{run}.npy"))
        ok(scratchgen("eval", home / run, "--no-plots"))
        assert np.load(f"{run}.npy").shape[0] == 4


@pytest.mark.slow
def test_eval_and_sample_take_data_dir_to_relocate_the_data(tmp_path):
    (tmp_path / "a").mkdir()
    np.save(tmp_path / "a" / "pts.npy",
            np.random.default_rng(0).standard_normal((64, 2)).astype("f4"))
    d = tmp_path / "run"
    ok(scratchgen(*TOY, "--dataset", tmp_path / "a" / "pts.npy", "--steps", 2, "--out", d))
    (tmp_path / "a").rename(tmp_path / "b")
    ok(scratchgen("eval", d, "--no-plots", "--data-dir", tmp_path / "b"))
    ok(scratchgen("sample", d, "--data-dir", tmp_path / "b", "-n", 4, "-o", tmp_path / "s.npy"))


@pytest.mark.slow
def test_an_npz_array_is_chosen_with_colon_key(tmp_path):
    rng = np.random.default_rng(0)
    f = tmp_path / "data.npz"
    np.savez(f, xyz=rng.standard_normal((64, 3)).astype("f4"),
             pts=rng.standard_normal((64, 2)).astype("f4"))
    one_line_error(scratchgen(*TOY, "--dataset", f, "--steps", 2, "--out", tmp_path / "r1"),
                   "xyz, pts", f"{f}:")
    assert not (tmp_path / "r1").exists()
    ok(scratchgen(*TOY, "--dataset", f"{f}:pts", "--steps", 2, "--out", tmp_path / "r2"))
    ok(scratchgen("sample", tmp_path / "r2", "-n", 4, "-o", tmp_path / "s.npy"))


def test_points_a_model_cannot_take_are_refused_before_training(tmp_path):
    np.save(tmp_path / "p3.npy", np.random.default_rng(0).standard_normal((64, 3)).astype("f4"))
    d = tmp_path / "d"
    line = one_line_error(scratchgen(*WGAN_GP, "--dataset", tmp_path / "p3.npy", "--steps", 2,
                                     "--out", d))
    assert re.search(r"\(3,\)|\(64, 3\)", line) and not d.exists(), line


# ---- faults that used to come out as tracebacks --------------------------------------------------
def test_out_that_is_a_file_is_one_line(tmp_path):
    f = tmp_path / "f"
    f.write_text("mine")
    one_line_error(scratchgen(*TOY, "--steps", 2, "--out", f), f)
    assert f.read_text() == "mine"


@pytest.mark.parametrize("code, what", [("EROFS", "read-only"), ("EACCES", "permission")])
@pytest.mark.slow
def test_read_only_or_forbidden_places_are_one_line(tmp_path, faults, code, what):
    ro = tmp_path / "ro"
    ro.mkdir()
    env = dict(faults, FAULT_DIR=str(ro), FAULT_ERRNO=code)
    one_line_error(scratchgen(*TOY, "--steps", 2, "--out", ro / "run", **env),
                   ro / "run", what, "--out", code=None)  # the place, the fault, what to do
    d = tmp_path / "d"
    ok(scratchgen(*TOY, "--steps", 2, "--out", d))
    one_line_error(scratchgen("sample", d, "-n", 4, "-o", ro / "s.npy", **env),
                   ro / "s.npy", what, "-o", code=None)
    assert os.listdir(ro) == []


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_loses_nothing(tmp_path, faults):
    d = tmp_path / "d"
    line = one_line_error(scratchgen(*TOY, "--steps", 6, "--ckpt-every", 2, "--out", d,
                                     FULL_AT="ckpt-00000004", **faults),
                          "ckpt-00000004.npz", "no space left", code=None)
    assert str(d) in line
    assert [p.name for p in ckpts(d)] == ["ckpt-00000002.npz"] and finite(ckpts(d)[0])
    assert temp_files(d) == [] and train_steps(d)[:4] == [1, 2, 3, 4]
    ok(scratchgen("train", "--resume", d))
    assert train_steps(d) == [1, 2, 3, 4, 5, 6] and ckpts(d)[-1].name == "ckpt-00000006.npz"


def test_sampling_more_than_memory_holds_is_one_line(tmp_path):
    d = tmp_path / "d"
    ok(scratchgen(*TOY, "--steps", 2, "--out", d))
    line = one_line_error(scratchgen("sample", d, "-n", 100000000000, "-o", tmp_path / "s.npy"),
                          code=None)
    assert re.search(r"memory|-n 100000000000", line), line
    assert not (tmp_path / "s.npy").exists()
