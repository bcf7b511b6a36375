"""scratchgen.rundir: refusal of foreign folders, the writer lock, append-only metrics with an
atomic truncation, stray temp files, finite checkpoints, fallback past corrupt ones, and
one-line messages for OS failures. Kill cases are driven by subprocesses."""
import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.rundir import NonFiniteStateError, RunDir, RunDirError, os_error_message


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _run(path, **cfg):
    rd = RunDir.create(path)
    rd.write_config(dict({"model": "toy"}, **cfg))
    return rd


def _worker(code, *args):
    """A Python subprocess running ``code`` (argv[1:] = args); stdout/stderr piped."""
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc, word):
    line = proc.stdout.readline()
    assert word in line, (line, proc.stderr.read() if proc.poll() is not None else "")


# ---- create / open ---------------------------------------------------------------------------
def test_create_refuses_a_folder_of_the_users_and_writes_nothing(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "config.json").write_text('{"my": 1}\n')
    (d / "metrics.jsonl").write_text("notes\n")
    before = _snapshot(d)
    # someone else's config.json: not called a run (--resume would refuse it too)
    with pytest.raises(RunDirError, match=r"holds a config.json that is not a scratchgen run's "
                                          r"\(no model, dataset, hyperparameters\); nothing was "
                                          r"changed; choose another --out"):
        RunDir.create(d)
    (d / "config.json").write_text("not json")
    with pytest.raises(RunDirError, match=r"not a scratchgen run's \(unreadable: JSONDecodeError"):
        RunDir.create(d)
    (d / "config.json").write_text('{"model": "vae", "dataset": "mnist", "hyperparameters": {}}')
    before["config.json"] = _snapshot(d)["config.json"]
    with pytest.raises(RunDirError, match=f"already holds a run; continue it with --resume {d}"):
        RunDir.create(d)
    (d / "config.json").unlink()
    del before["config.json"]
    with pytest.raises(RunDirError, match=r"exists and is not empty \(metrics.jsonl\)") as e:
        RunDir.create(d)
    assert str(d) in str(e.value) and "\n" not in str(e.value)
    assert _snapshot(d) == before and sorted(os.listdir(d)) == ["metrics.jsonl"]


def test_create_refuses_a_file_and_a_path_through_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("mine")
    with pytest.raises(RunDirError, match="exists and is not a folder"):
        RunDir.create(f)
    with pytest.raises(RunDirError, match="a part of this path is a file") as e:
        RunDir.create(f / "run")
    assert str(f / "run") in str(e.value)
    assert f.read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["f"]


def test_create_accepts_new_or_empty_folders_and_leaves_nothing_if_never_configured(tmp_path):
    with RunDir.create(tmp_path / "a" / "b" / "run") as rd:
        assert rd.path == (tmp_path / "a" / "b" / "run") and rd.path.is_dir()
        assert (rd.path / ".lock").read_text().strip() == str(os.getpid())
    assert os.listdir(tmp_path) == []  # nothing configured: the folders made are gone
    (tmp_path / "empty").mkdir()
    with RunDir.create(tmp_path / "empty") as rd:
        rd.write_config({"model": "toy"})
    assert (tmp_path / "empty").is_dir() and RunDir.open(tmp_path / "empty").read_config() == {
        "model": "toy"}


def test_open_needs_a_run(tmp_path):
    with pytest.raises(RunDirError, match="no such run directory"):
        RunDir.open(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RunDirError, match=r"not a scratchgen run directory \(no config.json\)"):
        RunDir.open(tmp_path / "plain")
    assert os.listdir(tmp_path / "plain") == []


def test_open_removes_temp_files_of_killed_writers(tmp_path):
    _run(tmp_path / "r").close()
    strays = [".scratchgen-ckpt-00000005.npz.k2j4x9.tmp", ".scratchgen-config.json.abc.tmp",
              ".config.json.abc12345.tmp"]  # the last: of versions before the prefix
    for name in strays + ["metrics.jsonl.tmp", "analysis.tmp"]:  # the user's stay
        (tmp_path / "r" / name).write_bytes(b"\0" * 1000)
    (tmp_path / "r" / "notes.txt").write_text("kept")
    RunDir.open(tmp_path / "r").close()
    assert sorted(os.listdir(tmp_path / "r")) == [".lock", "analysis.tmp", "config.json",
                                                   "metrics.jsonl.tmp", "notes.txt"]


def test_readonly_open_takes_no_lock_and_refuses_writes(tmp_path):
    with _run(tmp_path / "r") as rd:
        ro = RunDir.open(tmp_path / "r", readonly=True)  # while rd holds the lock
        assert ro.read_config() == {"model": "toy"} and rd.checkpoints() == ro.checkpoints()
        with pytest.raises(RunDirError, match="opened read-only"):
            ro.append_metrics([{"step": 1}])


# ---- the lock --------------------------------------------------------------------------------
HOLD = """
import sys, time
from scratchgen.rundir import RunDir
rd = RunDir.open(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""

TRY_OPEN = """
import sys
from scratchgen.rundir import RunDir, RunDirError
try:
    RunDir.open(sys.argv[1])
except RunDirError as e:
    print("refused:", e)
else:
    print("opened")
"""


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    with _run(tmp_path / "r"):
        out = subprocess.run([sys.executable, "-c", TRY_OPEN, str(tmp_path / "r")],
                             capture_output=True, text=True, check=True).stdout
        assert out.startswith("refused: ") and f"in use by process {os.getpid()}" in out
        assert str(tmp_path / "r") in out


def test_a_stale_lock_of_a_killed_writer_is_taken_over(tmp_path):
    _run(tmp_path / "r").close()
    holder = _worker(HOLD, tmp_path / "r")
    try:
        _wait_for(holder, "locked")
        with pytest.raises(RunDirError, match=f"in use by process {holder.pid}"):
            RunDir.open(tmp_path / "r")
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "r" / ".lock").read_text().strip() == str(holder.pid)  # stale
    with RunDir.open(tmp_path / "r"):
        assert (tmp_path / "r" / ".lock").read_text().strip() == str(os.getpid())


# ---- metrics ---------------------------------------------------------------------------------
def test_metrics_are_appended_never_rewritten(tmp_path):
    with _run(tmp_path / "r") as rd:
        rd.append_metrics([{"kind": "train", "step": 1, "time": 0.5, "loss": np.float32(2)}])
        first = rd.metrics_path.read_bytes()
        rd.append_metrics([{"kind": "train", "step": 2, "time": 1.0, "loss": 1.5},
                           {"kind": "eval", "step": 2, "w1": 0.25}])
        assert rd.metrics_path.read_bytes().startswith(first)
        assert [r["step"] for r in rd.read_metrics()] == [1, 2, 2]


def test_a_torn_line_is_skipped_and_not_merged_with_new_lines(tmp_path):
    with _run(tmp_path / "r") as rd:
        rd.append_metrics([{"step": 1, "time": 0.5}])
    with open(tmp_path / "r" / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "ti')  # a writer killed mid-line
    with RunDir.open(tmp_path / "r") as rd:
        assert rd.read_metrics() == [{"step": 1, "time": 0.5}]
        rd.append_metrics([{"step": 2, "time": 1.0}])
        assert rd.read_metrics() == [{"step": 1, "time": 0.5}, {"step": 2, "time": 1.0}]


def test_truncate_keeps_steps_up_to_the_checkpoint_and_returns_its_time(tmp_path):
    with _run(tmp_path / "r") as rd:
        rd.append_metrics([{"kind": "train", "step": s, "time": s / 10} for s in range(1, 8)])
        assert rd.truncate_metrics(4) == pytest.approx(0.4)
        assert [r["step"] for r in rd.read_metrics()] == [1, 2, 3, 4]
        rd.append_metrics([{"kind": "train", "step": 5, "time": 0.55}])
        assert [r["step"] for r in rd.read_metrics()] == [1, 2, 3, 4, 5]
        assert rd.truncate_metrics(0) == 0.0 and rd.metrics_path.read_text() == ""


TRUNCATE = """
import sys
from scratchgen.rundir import RunDir
rd = RunDir.open(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
rd.truncate_metrics(int(sys.argv[2]))
"""


def _kill_mid_write(folder, target, step):
    """Run ``truncate_metrics(step)`` in a subprocess and SIGKILL it the moment the writing
    shows (a temporary file appears, or ``target`` changes size); True if it was caught."""
    size = target.stat().st_size
    w = subprocess.Popen([sys.executable, "-c", TRUNCATE, str(folder), str(step)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    _wait_for(w, "ready")
    w.stdin.write("go\n")
    w.stdin.flush()
    caught = False
    while w.poll() is None:
        if (any(n.endswith(".tmp") for n in os.listdir(folder))
                or not target.exists() or target.stat().st_size != size):
            w.send_signal(signal.SIGKILL)
            caught = True
            break
    w.wait()
    return caught and w.returncode == -signal.SIGKILL


def test_a_kill_during_truncation_never_leaves_metrics_empty_or_partial(tmp_path):
    rd = _run(tmp_path / "r")
    n = 100_000
    rd.append_metrics([{"kind": "train", "step": s, "time": s * 1e-3, "loss": 1.0 / s}
                       for s in range(1, n + 1)])
    rd.close()
    path = tmp_path / "r" / "metrics.jsonl"
    full = path.read_bytes()
    half = b"".join(ln + b"\n" for ln in full.splitlines()[:n // 2])
    assert len(full) > 4_000_000
    caught = []
    for _ in range(3):
        caught.append(_kill_mid_write(tmp_path / "r", path, n // 2))
        assert path.read_bytes() in (full, half)
    assert any(caught)  # a kill landed while the new file was being written
    with RunDir.open(tmp_path / "r") as rd:  # stray temp files of the kills are gone
        assert not [n for n in os.listdir(rd.path) if n.endswith(".tmp")]
        assert len(rd.read_metrics()) in (n, n // 2)


# ---- checkpoints -----------------------------------------------------------------------------
def _state(w, moment=0.0):
    return {"step": 1, "modules": {"net": {"0.weight": sg.tensor(w)}},
            "optimizers": {"adam": {"state": {0: {"exp_avg": np.full(2, moment, np.float32),
                                                  "step": np.int64(3)}},
                                    "param_groups": [{"lr": 1e-3}]}},
            "task": {"rng": np.random.default_rng(0), "count": 2}}


@pytest.mark.parametrize("w, moment, key", [
    ([1.0, float("nan")], 0.0, "modules/net/0.weight"),
    ([1.0, 2.0], float("inf"), "optimizers/adam/state/0/exp_avg"),
])
def test_a_non_finite_state_is_never_checkpointed(tmp_path, w, moment, key):
    with _run(tmp_path / "r") as rd:
        good = rd.save_checkpoint(1, _state([1.0, 2.0]), keep=3)
        before = _snapshot(rd.path)
        with pytest.raises(NonFiniteStateError, match="ckpt-00000002.npz: not written") as e:
            rd.save_checkpoint(2, _state(w, moment), keep=3)
        assert e.value.key == key and key in str(e.value)
        assert _snapshot(rd.path) == before and rd.checkpoints() == [good]


def test_checkpoints_are_pruned_to_keep_newest(tmp_path):
    with _run(tmp_path / "r") as rd:
        for s in (5, 10, 15, 20):
            rd.save_checkpoint(s, _state([float(s), 0.0]), keep=2)
        assert [p.name for p in rd.checkpoints()] == ["ckpt-00000015.npz", "ckpt-00000020.npz"]
        path, state = rd.load_latest(warn=pytest.fail)
        assert path.name == "ckpt-00000020.npz"
        assert state["modules"]["net"]["0.weight"].tolist() == [20.0, 0.0]


def test_a_corrupt_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path):
    with _run(tmp_path / "r") as rd:
        for s in (1, 2, 3):
            rd.save_checkpoint(s, _state([float(s), 0.0]), keep=3)
        p1, p2, p3 = rd.checkpoints()
        p3.write_bytes(p3.read_bytes()[:200])  # truncated
        sg.save(_state([float("nan"), 0.0]), p2)  # non-finite (written by an older version)
        warnings = []
        path, state = rd.load_latest(warn=warnings.append)
        assert path == p1 and state["modules"]["net"]["0.weight"].tolist() == [1.0, 0.0]
        assert len(warnings) == 2
        assert p3.name in warnings[0] and "truncated or corrupted" in warnings[0]
        assert p2.name in warnings[1] and "NaN" in warnings[1]
        assert all(str(p1) in w and "\n" not in w for w in warnings)
        p1.write_bytes(b"")
        with pytest.raises(RunDirError, match="no usable checkpoint"):
            rd.load_latest(warn=warnings.append)
    with _run(tmp_path / "new") as rd:
        with pytest.raises(RunDirError, match=r"no checkpoint \(ckpt-XXXXXXXX.npz\)"):
            rd.load_latest()


# ---- OS failures -----------------------------------------------------------------------------
def _raise(code):
    def f(*a, **k):
        raise OSError(code, os.strerror(code))
    return f


def test_disk_full_while_checkpointing_is_one_line_and_loses_nothing(tmp_path, monkeypatch):
    with _run(tmp_path / "r") as rd:
        good = rd.save_checkpoint(1, _state([1.0, 2.0]), keep=1)
        before = _snapshot(rd.path)
        monkeypatch.setattr(os, "fsync", _raise(errno.ENOSPC))
        with pytest.raises(RunDirError) as e:
            rd.save_checkpoint(2, _state([3.0, 4.0]), keep=1)
        monkeypatch.undo()
        msg = str(e.value)
        assert msg == (f"{rd.path / 'ckpt-00000002.npz'}: no space left on the device: free "
                       "some space (or choose another --out), then continue with --resume")
        assert _snapshot(rd.path) == before and rd.checkpoints() == [good]


def test_disk_full_while_logging_is_one_line(tmp_path):
    with _run(tmp_path / "r") as rd:
        rd.metrics_path.symlink_to("/dev/full")  # every write: ENOSPC
        with pytest.raises(RunDirError, match="metrics.jsonl: no space left on the device"):
            rd.append_metrics([{"step": 1}])


@pytest.mark.parametrize("code, advice", [
    (errno.EROFS, "the file system is read-only: choose a writable location"),
    (errno.EACCES, "permission denied: choose a location you can write"),
])
def test_read_only_or_forbidden_places_are_one_line(tmp_path, monkeypatch, code, advice):
    from pathlib import Path as P
    monkeypatch.setattr(P, "mkdir", _raise(code))
    with pytest.raises(RunDirError) as e:
        RunDir.create(tmp_path / "new" / "run")
    assert str(e.value) == f"{tmp_path / 'new' / 'run'}: {advice} (--out / -o)" + (
        "" if code == errno.EROFS else " or change its permissions")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []
    with _run(tmp_path / "r") as rd:
        monkeypatch.setattr("tempfile.mkstemp", _raise(code))
        with pytest.raises(RunDirError, match=f"^{rd.path / 'eval.json'}: {advice}"):
            rd.write_json("eval.json", {"w1": 0.1})
    assert json.loads((tmp_path / "r" / "config.json").read_text()) == {"model": "toy"}


def test_os_error_message_names_path_and_remedy():
    e = OSError(errno.ENOSPC, "No space left on device", "/x/tmpfile")
    assert os_error_message(e, Path("/runs/a")).startswith("/runs/a: no space left")
    assert os_error_message(e).startswith("/x/tmpfile: no space left")
    odd = OSError(errno.ECONNRESET, "Connection reset\nby peer")
    assert os_error_message(odd, "p") == "p: Connection reset by peer"
    assert "ulimit" in os_error_message(OSError(errno.EMFILE, "x"), "p")
