"""A run directory as a unit the user can trust.

    with RunDir.create("runs/wgan") as rd:        # refuses anything but a new or empty folder
        rd.write_config(cfg)
        rd.append_metrics([{"kind": "train", "step": 1, "time": 0.1, "loss": 0.5}])
        rd.save_checkpoint(1, state, keep=3)      # refuses non-finite weights
    with RunDir.open("runs/wgan") as rd:          # an existing run, for writing
        path, state = rd.load_latest()            # falls back past corrupt checkpoints
        t = rd.truncate_metrics(state["step"])

Guarantees:

* **One writer.** A process holding a ``RunDir`` holds ``fcntl.flock`` on ``<run>/.lock``,
  which records its PID; a second writer gets :class:`RunDirError` naming that PID. The
  kernel releases the lock when its holder dies, so a stale lock is simply taken over. The
  lock file is opened with ``O_NOFOLLOW``: a ``.lock`` that is a symbolic link (or not a
  plain file of its own) is refused, never written through.
  ``RunDir.open(path, shared=True)`` is for readers that write beside the run (``eval``,
  ``sample``): a shared lock, refused while a writer trains it (and a writer is refused
  while they read). ``RunDir.open(path, readonly=True)`` reads a run (even one being trained,
  or on read-only media) without any lock; its writing methods raise.
* **Nothing of the user's is overwritten.** :meth:`RunDir.create` accepts only a path that
  does not exist or an empty folder; closing a run that never got a ``config.json`` removes
  what ``create`` made.
* **Every write is atomic** (temporary file, fsync, rename): ``config.json``,
  :meth:`write_json` files, checkpoints (``sg.save``) and the truncation of
  ``metrics.jsonl``, which is otherwise only appended to. Temporary files of killed writers
  (``.scratchgen-*.tmp``, a pattern no user chooses) are removed by :meth:`RunDir.open`;
  any other file is left alone.
* **"Last good" is true.** :meth:`save_checkpoint` refuses a state holding a non-finite float
  array (:class:`NonFiniteStateError`, naming its key); :meth:`load_latest` uses the newest
  checkpoint that loads and is finite, warning about each newer one it skips; a run with no
  checkpoint at all is :class:`NoCheckpointError`.
* **OS failures are one line.** ``OSError`` from the file system (disk full, read-only,
  permission) comes out as :class:`RunDirError` with :func:`os_error_message`'s text.
"""
import errno
import fcntl
import io
import json
import math
import os
import re
import stat
import time
from pathlib import Path

import numpy

from scratchgen import backend
from scratchgen.autograd.tensor import Tensor
from scratchgen.io import CheckpointError, atomic_write, load, save

CKPT_RE = re.compile(r"^ckpt-(\d{8})\.npz$")
# temporaries of scratchgen.io.atomic_write; the second form is of versions before 0.1.1
TMP_RE = re.compile(r"^\.(scratchgen-.+|(config\.json|metrics\.jsonl|eval\.json|"
                    r"ckpt-\d{8}\.npz)\.[A-Za-z0-9_]+)\.tmp$")
CONFIG, METRICS, LOCK = "config.json", "metrics.jsonl", ".lock"
RUN_KEYS = ("model", "dataset", "hyperparameters")  # what every run's config.json holds


class LockHeld(Exception):
    """Another process holds the lock; ``pid``: the PID it wrote (None if unreadable)."""

    def __init__(self, pid):
        super().__init__(pid)
        self.pid = pid


class LockNotOurs(Exception):
    """The lock path is not a plain file of its own (``what``: a symbolic link, a hard link
    to another file, not a plain file); nothing was written through it."""

    def __init__(self, what):
        super().__init__(what)
        self.what = what


def take_lock(path, shared=False):
    """An fd of ``path`` under ``fcntl.flock``: exclusive (the file created if missing and
    our PID written in it) or ``shared`` (for readers; ``FileNotFoundError`` if missing).
    Opened with ``O_NOFOLLOW``: a symbolic link, a hard link or a non-file is
    :class:`LockNotOurs`, never written through. :class:`LockHeld` when another process holds
    it, ``OSError`` otherwise. Closing the fd releases the lock."""
    flags = os.O_RDONLY if shared else os.O_RDWR | os.O_CREAT
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise LockNotOurs("a symbolic link") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise LockNotOurs("a hard link to another file" if stat.S_ISREG(st.st_mode)
                          else "not a plain file")
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as e:
        busy = e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
        pid = _holder(fd) if busy else None
        os.close(fd)
        if not busy:
            raise
        raise LockHeld(pid) from None
    if shared:
        return fd
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        os.close(fd)
        raise
    return fd


def release_lock(fd):
    """Release and close a lock fd of :func:`take_lock`."""
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _holder(fd):
    """The PID written in a held lock file (the holder writes it just after locking)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return None


class RunDirError(Exception):
    """A run directory cannot be used; the message is one line: the path, what is wrong and
    what to do. ``.path`` is the path concerned."""

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = None if path is None else str(path)


class NoCheckpointError(RunDirError):
    """A run holds no checkpoint at all (it was stopped before its first)."""


class NonFiniteStateError(RunDirError):
    """A state to checkpoint holds NaN or infinity; ``.key`` names where."""

    def __init__(self, message, path=None, key=None):
        super().__init__(message, path)
        self.key = key


_ADVICE = {
    errno.ENOSPC: "no space left on the device: free some space (or choose another --out), "
                  "then continue with --resume",
    errno.EDQUOT: "disk quota exceeded: free some space (or choose another --out), then "
                  "continue with --resume",
    errno.EROFS: "the file system is read-only: choose a writable location (--out / -o)",
    errno.EACCES: "permission denied: choose a location you can write (--out / -o) or change "
                  "its permissions",
    errno.EPERM: "operation not permitted: choose a location you can write (--out / -o) or "
                 "change its permissions",
    errno.ENOTDIR: "a part of this path is a file, not a folder: choose another path",
    errno.EISDIR: "this is a folder, not a file: give a file name",
    errno.ENOENT: "no such file or folder: check the path",
    errno.EEXIST: "it already exists: choose another path",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
    errno.ENOMEM: "out of memory: use a smaller batch or sample count",
    errno.EMFILE: "too many open files: close other programs or raise the limit (ulimit -n)",
    errno.EIO: "input/output error: the device may be failing or disconnected; check it",
}


def os_error_message(exc, path=None):
    """One line for an ``OSError``: the path (``path``, else the error's file name), what
    went wrong and what to do, e.g. ``runs/a/ckpt-00000010.npz: no space left on the device:
    free some space (or choose another --out), then continue with --resume``."""
    where = path if path is not None else (exc.filename or "")
    what = _ADVICE.get(exc.errno)
    if what is None:
        what = (exc.strerror or str(exc) or type(exc).__name__)
    return " ".join(f"{os.fspath(where)}: {what}".split()) if where else " ".join(what.split())


def _os_error(exc, path):
    return RunDirError(os_error_message(exc, path), path)


def _json_default(o):
    if isinstance(o, numpy.integer):
        return int(o)
    if isinstance(o, numpy.floating):
        return float(o)
    if isinstance(o, numpy.bool_):
        return bool(o)
    if isinstance(o, numpy.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _dumps(obj, **kw):
    return json.dumps(obj, default=_json_default, **kw)


def _taken(p):
    """Why a folder holding a config.json cannot take a new run: a run to resume, or a file
    that is not a run's (then --resume would fail too)."""
    try:
        cfg = json.loads((p / CONFIG).read_text())
    except (OSError, ValueError) as e:
        why = f"unreadable: {type(e).__name__}"
    else:
        missing = [k for k in RUN_KEYS if not isinstance(cfg, dict) or k not in cfg]
        why = f"no {', '.join(missing)}" if missing else None
    if why is None:
        return f"{p}: already holds a run; continue it with --resume {p}, or choose another --out"
    return (f"{p}: holds a {CONFIG} that is not a scratchgen run's ({why}); nothing was "
            "changed; choose another --out")


def _step_of(record):
    """A metrics record's ``step`` when it is a whole number >= 0, else -1."""
    v = record.get("step")
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else -1


def first_non_finite(state, where=""):
    """The key path (``'modules/net/0.weight'``) of the first float array (Tensor, NumPy or
    backend array, NumPy float scalar) in ``state`` holding NaN or infinity, else None."""
    stack = [(where, state)]
    while stack:
        key, x = stack.pop()
        if isinstance(x, dict):
            stack.extend((f"{key}/{k}" if key else str(k), v) for k, v in reversed(x.items()))
        elif isinstance(x, (list, tuple)):
            stack.extend((f"{key}/{i}" if key else str(i), v)
                         for i, v in reversed(list(enumerate(x))))
        else:
            a = x.array if isinstance(x, Tensor) else x
            if isinstance(a, (numpy.ndarray, numpy.generic)):
                if a.dtype.kind in "fc" and not numpy.isfinite(a).all():
                    return key
            elif backend.is_array(a):
                if a.dtype.kind in "fc" and not bool(backend.xp.isfinite(a).all()):
                    return key
    return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class RunDir:
    """A run directory held (locked) by this process; see the module doc."""

    def __init__(self, path, readonly=False):
        self.path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
        self.readonly = readonly
        self.shared = False
        self._lock_fd = None
        self._metrics = None
        self._made = []  # folders create() made, removed again if no config.json is written

    # ---- opening and closing -------------------------------------------------------------
    @classmethod
    def create(cls, path):
        """A new run at ``path``, which must not exist or be an empty folder (parents are
        made). Anything else is refused with :class:`RunDirError` and nothing is written."""
        rd = cls(path)
        p = rd.path
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise RunDirError(f"{p}: exists and is not a folder; choose another --out", p)
            try:
                entries = set(os.listdir(p))
            except OSError as e:
                raise _os_error(e, p) from None
            if CONFIG in entries:
                raise RunDirError(_taken(p), p)
            if entries - {LOCK}:
                shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
                raise RunDirError(f"{p}: exists and is not empty ({shown}); choose a new or "
                                  "empty folder for --out", p)
        else:
            missing = []
            q = p
            while not q.exists() and not q.is_symlink():
                missing.append(q)
                q = q.parent
            try:
                for d in reversed(missing):
                    d.mkdir()
                    rd._made.append(d)
            except OSError as e:
                rd._remove_made()
                raise _os_error(e, p) from None
        try:
            rd._lock()
        except BaseException:
            rd._remove_made()
            raise
        if (p / CONFIG).exists():  # another process created a run here since we looked
            rd.close()
            raise RunDirError(_taken(p), p)
        return rd

    @classmethod
    def open(cls, path, readonly=False, shared=False):
        """An existing run (``config.json`` present). Takes the lock and removes temporary
        files left by killed writers; ``readonly=True`` does neither (for reading only);
        ``shared=True`` takes a shared lock (refused while the run trains) and is read-only
        too (for commands that read the run and write beside it)."""
        rd = cls(path, readonly=readonly or shared)
        p = rd.path
        if not p.is_dir():
            what = "no such run directory" if not p.exists() else "not a folder"
            raise RunDirError(f"{p}: {what}; give the folder of a scratchgen run", p)
        if not (p / CONFIG).is_file():
            raise RunDirError(f"{p}: not a scratchgen run directory (no {CONFIG}); give the "
                              "folder a run was trained into", p)
        if shared:
            rd.shared = True
            rd._lock()
        if readonly or shared:
            return rd
        rd._lock()
        try:
            for name in os.listdir(p):
                if TMP_RE.match(name) and (p / name).is_file() and not (p / name).is_symlink():
                    (p / name).unlink()
        except OSError as e:
            rd.close()
            raise _os_error(e, p) from None
        return rd

    def _lock(self):
        lock = self.path / LOCK
        try:
            self._lock_fd = take_lock(lock, shared=self.shared)
        except FileNotFoundError:  # a reader of a run that no writer has locked since
            return
        except LockNotOurs as e:
            raise RunDirError(f"{lock}: is {e.what}, not scratchgen's lock file; nothing was "
                              "written through it; remove it (or choose another folder)",
                              lock) from None
        except LockHeld as e:
            if self.shared:
                raise RunDirError(f"{self.path}: in use by process {e.pid or '(unknown)'} (a "
                                  "scratchgen training is writing this run); wait for it to "
                                  "finish or stop it, then run this again", self.path) from None
            who = f"process {e.pid}" if e.pid and _alive(e.pid) else \
                "another process (a scratchgen eval or sample reading it)"
            raise RunDirError(f"{self.path}: in use by {who}; wait for it to finish or stop "
                              "it, or choose another --out", self.path) from None
        except OSError as e:
            raise _os_error(e, lock) from None

    def _remove_made(self):
        for d in reversed(self._made):
            try:
                d.rmdir()
            except OSError:
                break
        self._made = []

    def close(self):
        """Release the lock (a run that never got a config.json leaves nothing behind)."""
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._lock_fd is None:
            return
        if not self.shared and not (self.path / CONFIG).exists():
            try:
                (self.path / LOCK).unlink()
            except OSError:
                pass
            self._remove_made()
        release_lock(self._lock_fd)
        self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    def _writable(self):
        if self.readonly:
            raise RunDirError(f"{self.path}: opened read-only; open it without readonly=True "
                              "to write", self.path)
        if self._lock_fd is None:
            raise RunDirError(f"{self.path}: closed; open the run again to write it", self.path)

    # ---- config and other JSON files -----------------------------------------------------
    def read_config(self):
        p = self.path / CONFIG
        try:
            return json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunDirError(f"{p}: not valid JSON ({e}); restore it from a backup", p) \
                from None
        except OSError as e:
            raise _os_error(e, p) from None

    def write_config(self, cfg):
        self.write_json(CONFIG, cfg)

    def write_json(self, name, obj):
        """``<run>/name`` holding ``obj`` as indented JSON, atomically."""
        if os.sep in name or name in ("", ".", ".."):
            raise ValueError(f"write_json takes a file name inside the run, got {name!r}")
        self._writable()
        p = self.path / name
        data = (_dumps(obj, indent=2) + "\n").encode()
        try:
            atomic_write(p, lambda f: f.write(data))
        except OSError as e:
            raise _os_error(e, p) from None

    # ---- metrics -------------------------------------------------------------------------
    @property
    def metrics_path(self):
        return self.path / METRICS

    def append_metrics(self, records):
        """Append one JSON line per record, unbuffered (on disk when this returns). A line
        torn by a killed writer is closed first, so it never merges with the new ones."""
        self._writable()
        p = self.metrics_path
        text = "".join(_dumps(r) + "\n" for r in records)
        try:
            if self._metrics is None:
                self._metrics = open(p, "a+b", buffering=0)
                size = self._metrics.seek(0, io.SEEK_END)
                if size:
                    self._metrics.seek(size - 1)
                    if self._metrics.read(1) != b"\n":
                        text = "\n" + text
            data = memoryview(text.encode())
            while data:
                data = data[self._metrics.write(data):]
        except OSError as e:
            if self._metrics is not None:
                self._metrics.close()
                self._metrics = None
            raise _os_error(e, p) from None

    def read_metrics(self):
        """The records of ``metrics.jsonl`` (lines that do not parse, e.g. one torn by a
        kill, are skipped)."""
        p = self.metrics_path
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise _os_error(e, p) from None
        out = []
        for ln in raw.decode(errors="replace").splitlines():
            try:
                rec = json.loads(ln)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def truncate_metrics(self, step):
        """Drop the records with ``step`` > ``step`` (and lines that are unreadable or lack
        a whole-number ``step``, e.g. edited by hand), atomically: the
        new file replaces the old by rename, so a kill leaves one or the other, never an
        empty or partial file. Returns the ``time`` of the last record kept (0.0 if none)."""
        self._writable()
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        keep = [r for r in self.read_metrics() if 0 <= _step_of(r) <= step]
        t = 0.0
        for r in keep:
            v = r.get("time")
            if isinstance(v, (int, float)) and math.isfinite(v):
                t = float(v)
        data = "".join(_dumps(r) + "\n" for r in keep).encode()
        try:
            atomic_write(self.metrics_path, lambda f: f.write(data))
        except OSError as e:
            raise _os_error(e, self.metrics_path) from None
        return t

    # ---- checkpoints ---------------------------------------------------------------------
    def checkpoints(self):
        """Checkpoint paths ``ckpt-XXXXXXXX.npz``, oldest first."""
        try:
            names = os.listdir(self.path)
        except OSError as e:
            raise _os_error(e, self.path) from None
        return [self.path / n for n in sorted(names) if CKPT_RE.match(n)]

    def save_checkpoint(self, step, state, keep):
        """Write ``ckpt-{step:08d}.npz`` with ``sg.save`` (atomic) and delete all but the
        newest ``keep``. A state holding a non-finite float array is refused with
        :class:`NonFiniteStateError` and nothing is written."""
        self._writable()
        if int(keep) < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        p = self.path / f"ckpt-{int(step):08d}.npz"
        bad = first_non_finite(state)
        if bad is not None:
            raise NonFiniteStateError(
                f"{p}: not written: {bad} holds NaN or infinite values after step {step}",
                p, bad)
        try:
            save(state, p)
            for old in self.checkpoints()[:-int(keep)]:
                old.unlink()
        except CheckpointError:
            raise
        except OSError as e:
            raise _os_error(e, p) from None
        return p

    def load_latest(self, warn=print):
        """``(path, state)`` of the newest checkpoint that loads and holds only finite
        values. Each newer one skipped is reported by ``warn(message)`` naming it, what is
        wrong and the one used; none usable -> :class:`RunDirError`."""
        skipped = []
        for p in reversed(self.checkpoints()):
            try:
                state = load(p)
            except FileNotFoundError:  # pruned by a writer since we listed
                continue
            except CheckpointError as e:
                skipped.append((p, str(e)))
                continue
            except OSError as e:
                raise _os_error(e, p) from None
            bad = first_non_finite(state)
            if bad is not None:
                skipped.append((p, f"{p}: {bad} holds NaN or infinite values"))
                continue
            for q, why in skipped:
                warn(f"warning: skipping {q.name} ({why}); using the newest intact "
                     f"checkpoint {p}")
            return p, state
        if skipped:
            raise RunDirError(f"{self.path}: no usable checkpoint ({'; '.join(w for _, w in skipped)})"
                              "; start a new run", self.path)
        raise NoCheckpointError(f"{self.path}: no checkpoint (ckpt-XXXXXXXX.npz) there yet; "
                                f"train it (scratchgen train --resume {self.path} starts it "
                                "from step 0)", self.path)
