"""The study directory and the state of each run in it.

    DIR/study.toml, study.json   the study as given and its runs (what a restart must match)
    DIR/runs/<name>/             each run: an ordinary ``scratchgen train`` run directory
    DIR/results/<name>.json      how each attempt ended (state, exit code, error, metrics, time)
    DIR/logs/<name>.log          each run's output, attempts appended
    DIR/summary.csv, summary.md, curves.png, final.png   (:mod:`scratchgen.sweep.report`)

A run is *finished* when its ``eval.json`` is at its configured last step (the harness writes
that evaluation only when a run ends); *running* while a live process holds its lock; *failed*
when its last attempt ended in an error (kept until ``--retry-failed``); *stopped* when it has a
directory but is none of these (resumed from its newest checkpoint); otherwise *pending*.
"""
import json
import os
from pathlib import Path

from scratchgen.io import atomic_write
from scratchgen.rundir import (CKPT_RE, CONFIG, LOCK, LockHeld, LockNotOurs, os_error_message,
                               release_lock, take_lock)
from scratchgen.sweep.study import StudyError

STATES = ("finished", "running", "stopped", "failed", "pending")


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(path, obj):
    data = (json.dumps(obj, indent=2) + "\n").encode()
    atomic_write(Path(path), lambda f: f.write(data))


def finished_metrics(run_dir):
    """The final evaluation (dict without ``step``) of a finished run, else None."""
    cfg, ev = _read_json(Path(run_dir) / CONFIG), _read_json(Path(run_dir) / "eval.json")
    if not (isinstance(cfg, dict) and isinstance(ev, dict)) or ev.get("step") != cfg.get("steps"):
        return None
    return {k: v for k, v in ev.items() if k != "step"}


def has_checkpoint(run_dir):
    try:
        return any(CKPT_RE.match(n) for n in os.listdir(run_dir))
    except OSError:
        return False


def progress(run_dir):
    """(step reached, steps) of a run from the tail of its ``metrics.jsonl`` (0 when none)."""
    cfg = _read_json(Path(run_dir) / CONFIG) or {}
    step = 0
    try:
        with open(Path(run_dir) / "metrics.jsonl", "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            for line in reversed(f.read().splitlines()):
                try:
                    step = int(json.loads(line)["step"])
                    break
                except (ValueError, KeyError, TypeError):
                    continue
    except OSError:
        pass
    return step, cfg.get("steps")


def lock_holder(run_dir):
    """The PID of a live process holding a run's lock, else None (read, never locked: a
    ``scratchgen train`` starting at that moment must not find it taken)."""
    try:
        pid = int((Path(run_dir) / LOCK).read_text().strip())
        os.kill(pid, 0)
        cmd = Path(f"/proc/{pid}/cmdline")
        if cmd.exists() and b"scratchgen" not in cmd.read_bytes():
            return None  # the PID was reused by something else
        return pid
    except (OSError, ValueError):
        return None


class StudyDir:
    """``DIR`` of a study, held by this process (an exclusive lock on ``DIR/.lock``)."""

    def __init__(self, path):
        self.path = Path(path).expanduser().absolute()
        self._fd = None

    runs_dir = property(lambda self: self.path / "runs")

    def run_dir(self, name):
        return self.runs_dir / name

    def log(self, name):
        return self.path / "logs" / f"{name}.log"

    def result_path(self, name):
        return self.path / "results" / f"{name}.json"

    # ---- opening ----------------------------------------------------------------------
    @classmethod
    def check(cls, path, study):
        """Raise :class:`StudyError` unless ``path`` can take ``study``: missing, empty, or
        holding the same study (to resume); nothing is written. Returns whether it resumes."""
        p = Path(path).expanduser().absolute()
        if p.exists() and not p.is_dir():
            raise StudyError(f"{p}: exists and is not a folder; choose another --out")
        if not p.is_dir():
            return False
        stored = _read_json(p / "study.json")
        if stored is None:
            entries = set(os.listdir(p)) - {".lock"}
            if entries:
                shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
                raise StudyError(f"{p}: exists and holds no study ({shown}); choose a new or "
                                 "empty folder for --out")
            return False
        if stored.get("runs") != study.identity():
            raise StudyError(f"{p}: holds another study (from {stored.get('source')}, "
                             f"{len(stored.get('runs') or [])} runs); nothing was changed; "
                             "choose another --out, or give that study's file to resume it")
        return True

    @classmethod
    def open(cls, path, study, source_text):
        """A new study in ``path``, or the same study resumed (see :meth:`check`), locked."""
        resumes = cls.check(path, study)
        sd = cls(path)
        p = sd.path
        try:
            for d in (p, p / "runs", p / "results", p / "logs"):
                d.mkdir(exist_ok=True, parents=d == p)
            sd._lock()
            if not resumes:
                (p / "study.toml").write_text(source_text)
                write_json(p / "study.json", {"source": study.source, "axes": study.axes,
                                               "seeds": study.seeds, "runs": study.identity()})
        except OSError as e:
            sd.close()
            raise StudyError(os_error_message(e)) from None
        return sd

    def _lock(self):
        try:
            self._fd = take_lock(self.path / ".lock")
        except LockHeld as e:
            raise StudyError(f"{self.path}: in use by process {e.pid or '?'} (another "
                             "scratchgen sweep is running this study); wait for it or "
                             "stop it") from None
        except LockNotOurs as e:
            raise StudyError(f"{self.path / '.lock'}: is {e.what}, not scratchgen's lock file; "
                             "nothing was written through it; remove it") from None
        except OSError as e:
            raise StudyError(os_error_message(e)) from None

    def close(self):
        if self._fd is not None:
            release_lock(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- runs -------------------------------------------------------------------------
    def result(self, name):
        return _read_json(self.result_path(name))

    def record(self, result):
        self.result_path(result["name"]).parent.mkdir(parents=True, exist_ok=True)
        write_json(self.result_path(result["name"]), result)

    def state(self, name):
        """(state, detail dict) of one run; see the module doc."""
        rd = self.run_dir(name)
        metrics = finished_metrics(rd)
        if metrics is not None:
            return "finished", {"metrics": metrics, **(self.result(name) or {})}
        if lock_holder(rd):
            return "running", {}
        res = self.result(name)
        if res is not None and res.get("state") == "failed":
            return "failed", res
        if (rd / CONFIG).exists():
            return "stopped", res or {}
        return "pending", {}


def status(path, out=print):
    """List the runs of the study in ``path`` by state (``scratchgen sweep --status DIR``);
    returns {state: [names]}."""
    p = Path(path).expanduser().absolute()
    stored = _read_json(p / "study.json")
    if stored is None:
        raise StudyError(f"{p}: not a study directory (no study.json); give the --out of a "
                         "scratchgen sweep")
    sd = StudyDir(p)
    rows, by = [], {s: [] for s in STATES}
    for run in stored["runs"]:
        state, detail = sd.state(run["name"])
        by[state].append(run["name"])
        step, steps = progress(sd.run_dir(run["name"]))
        if state == "finished":
            what = "  ".join(f"{k} {v:.4g}" for k, v in detail["metrics"].items()
                             if isinstance(v, (int, float)))
        elif state == "failed":
            what = f"exit {detail.get('exit_code')}: {detail.get('error')}"
        elif state == "stopped":
            what = "resumes from its newest checkpoint" if has_checkpoint(
                sd.run_dir(run["name"])) else "no checkpoint yet: restarts"
        else:
            what = ""
        rows.append((state, run["name"], f"{step}/{steps}" if steps else "-", what))
    counts = ", ".join(f"{len(v)} {k}" for k, v in by.items() if v)
    out(f"study {p} (from {stored.get('source')}): {len(rows)} runs: {counts}")
    width = max(len(r[1]) for r in rows) if rows else 0
    for state in STATES:
        for r in rows:
            if r[0] == state:
                out(f"  {r[0]:8s}  {r[1]:{width}s}  {r[2]:>11s}  {r[3]}".rstrip())
    return by
