"""Running a study's runs on Dask: one task per run, each a ``scratchgen train`` subprocess.

A task (:func:`run_one`, on a worker) starts ``python -m scratchgen train ... --out
DIR/runs/<name>``, or ``train --resume`` where the run directory already holds a run, and
returns how it ended with the final metrics. The subprocess is told to stop (SIGTERM: the
harness saves a checkpoint) when its worker dies; the scheduler then gives the task to another
worker (up to ``distributed.scheduler.allowed-failures`` deaths), which resumes the run from
its newest checkpoint, bit for bit. A task that raises is retried ``RETRIES`` times; a run that
fails (non-finite loss, bad data) is a result, not an exception, so it is not retried.

Each subprocess gets ``threads`` BLAS/OpenMP/numba threads (``OPENBLAS_NUM_THREADS`` ...)
unless the worker's environment sets them: ``cores // workers`` on a local cluster, so that
the runs share the cores instead of fighting over them.
"""
import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from scratchgen.rundir import CONFIG, LOCK
from scratchgen.sweep import store
from scratchgen.sweep.study import StudyError

RETRIES = 2
CONNECT_TIMEOUT = "5s"
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
INSTALL = 'pip install "scratchgen[sweep]"'
_ACTIVE = {}  # in a worker: run name -> PID of the training subprocess it waits for


def require_dask():
    """Import Dask distributed, or one line saying how to install it."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise StudyError(f"scratchgen sweep needs Dask distributed, an optional extra: "
                         f"{INSTALL}") from None


def cores():
    """Cores this process may run on (its affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---- on a worker --------------------------------------------------------------------------------
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None
PR_SET_PDEATHSIG = 1


def _die_with_parent(parent):
    """In the child before exec: SIGTERM when the worker thread that started it dies."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # died already
            os.kill(os.getpid(), signal.SIGTERM)


def _wait_unlocked(run_dir, timeout=300.0):
    """Wait while another process holds the run's lock: the subprocess of a killed worker
    saving its checkpoint after SIGTERM."""
    lock = Path(run_dir) / LOCK
    deadline = time.time() + timeout
    while lock.exists() and time.time() < deadline:
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        except OSError:
            time.sleep(0.5)
        finally:
            os.close(fd)


def command(job):
    """The ``scratchgen train`` command line of a job: a new run, or ``--resume`` (a run
    directory that holds a run but no checkpoint yet is started again)."""
    run_dir = Path(job["run_dir"])
    base = [sys.executable, "-m", "scratchgen"]
    if job.get("backend"):
        base += ["--backend", job["backend"]]
    if (run_dir / CONFIG).exists():
        if store.has_checkpoint(run_dir):
            return base + ["train", "--resume", str(run_dir)]
        shutil.rmtree(run_dir)  # killed before its first checkpoint: nothing to keep
    return base + ["train", *job["argv"], "--out", str(run_dir)]


def run_one(job):
    """Train one run (``job``: name, run_dir, argv, log, threads, backend) in a subprocess;
    returns its result (name, state, exit_code, error, metrics, wall_s, threads, worker)."""
    name, run_dir, log = job["name"], Path(job["run_dir"]), Path(job["log"])
    _wait_unlocked(run_dir)
    cmd = command(job)
    env = dict(os.environ)
    threads = job.get("threads") or max(1, cores() // _worker_threads())
    for var in THREAD_VARS:
        env.setdefault(var, str(threads))
    threads = env["OPENBLAS_NUM_THREADS"]  # as the run sees it (the environment's may win)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log, "ab") as f:
        f.write(f"$ {' '.join(cmd)}   # {time.strftime('%Y-%m-%d %H:%M:%S')}, "
                f"OPENBLAS_NUM_THREADS={threads}, worker pid {os.getpid()}\n".encode())
        f.flush()
        start = f.tell()
        parent = os.getpid()
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, start_new_session=True,
                             preexec_fn=lambda: _die_with_parent(parent))
        _ACTIVE[name] = p.pid
        try:
            code = p.wait()
        finally:
            _ACTIVE.pop(name, None)
    result = {"name": name, "exit_code": code, "wall_s": round(time.time() - t0, 3),
              "threads": threads, "worker": _worker_address(), "command": cmd}
    metrics = store.finished_metrics(run_dir)
    if code == 0 and metrics is not None:
        return {**result, "state": "finished", "error": None, "metrics": metrics}
    state = "stopped" if code in (130, 143, -signal.SIGINT, -signal.SIGTERM) else "failed"
    return {**result, "state": state, "error": _error_line(log, start, code), "metrics": None}


def _error_line(log, start, code):
    """The line saying why a run ended: its ``error:``/``stopped``/``interrupted`` line, else
    the last line of its output."""
    try:
        with open(log, "rb") as f:
            f.seek(start)
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()
                     if ln.strip()]
    except OSError:
        lines = []
    for ln in reversed(lines):
        if ln.startswith(("error:", "stopped", "interrupted", "SIGINT", "SIGTERM")):
            return ln
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return lines[-1] if lines else f"exit code {code}, no output"


def _worker_threads():
    try:
        from distributed import get_worker
        return get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        return 1


def _worker_address():
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return None


def active():
    """In a worker: {run name: subprocess PID, "_pid": the worker's PID} (polled by the
    client through ``client.run`` for the progress display, and by the tests)."""
    return {**_ACTIVE, "_pid": os.getpid()}


def terminate(names):
    """In a worker: SIGTERM to the subprocesses training ``names`` (they save and stop)."""
    for name in names:
        pid = _ACTIVE.get(name)
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass


try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:
    WorkerPlugin = object


class IgnoreCtrlC(WorkerPlugin):
    """On a local cluster's workers (restarted ones too): Ctrl-C in the terminal reaches the
    whole process group; the client alone handles it, stopping each training at a
    checkpoint (a worker dying of it would wait for its training at exit instead)."""

    name = "scratchgen-ignore-ctrl-c"

    def setup(self, worker):
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass


# ---- the client ---------------------------------------------------------------------------------
def connect(scheduler=None, workers=None):
    """(client, cluster, threads per run): an existing scheduler at ``scheduler``, or a
    ``LocalCluster`` on this machine bound to 127.0.0.1 (``workers`` processes of one thread,
    default one per core). A scheduler that cannot be reached is one :class:`StudyError`."""
    require_dask()
    import logging
    from distributed import Client, LocalCluster
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as e:
            why = " ".join(str(e).split()) or type(e).__name__
            raise StudyError(f"--scheduler {scheduler}: no Dask scheduler reachable there "
                             f"({why[:200]}); start one (dask scheduler) or check the "
                             "address") from None
        return client, None, None
    n = workers or cores()
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None,
                           silence_logs=logging.ERROR)
    client = Client(cluster)
    client.register_plugin(IgnoreCtrlC())
    return client, cluster, max(1, cores() // n)


class Progress:
    """A bar over runs, its text the running runs and their steps (tqdm on a terminal, else
    a line per finished run and one every ``PLAIN_S`` seconds)."""

    PLAIN_S = 30.0

    def __init__(self, total, done, enabled=None):
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        self.last = time.time()
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, unit="run", dynamic_ncols=True)
        self.total, self.done = total, done

    def running(self, steps):
        text = ", ".join(f"{n} {s}" for n, s in sorted(steps.items()))
        if self.bar is not None:
            self.bar.set_postfix_str(f"running: {text}" if text else "", refresh=True)
        elif time.time() - self.last >= self.PLAIN_S and text:
            self.last = time.time()
            print(f"[{self.done}/{self.total}] running: {text}", flush=True)

    def finished(self, result):
        self.done += 1
        err = f": {result['error']}" if result.get("error") else ""
        line = (f"[{self.done}/{self.total}] {result['name']}: {result['state']} "
                f"({result.get('wall_s', 0):.1f} s){err}")
        if result.get("metrics"):
            line += "  " + "  ".join(f"{k} {v:.4g}" for k, v in result["metrics"].items()
                                     if isinstance(v, (int, float)))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run_jobs(client, jobs, sd, progress, poll=1.0, on_poll=None):
    """Submit ``jobs`` and record each result in ``sd`` as it comes; returns the results.
    ``on_poll(client, futures)``: called every ``poll`` seconds (the tests kill a worker
    there). Ctrl-C stops the running trainings at a checkpoint and re-raises."""
    from distributed import wait
    tag = uuid.uuid4().hex[:8]
    futures = {client.submit(run_one, job, key=f"scratchgen-sweep-{job['name']}-{tag}",
                             retries=RETRIES, pure=False): job for job in jobs}
    pending, results = set(futures), []
    try:
        while pending:
            try:
                done, pending = wait(pending, timeout=poll, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            for fut in done:
                res = _outcome(fut, futures[fut])
                sd.record(res)
                results.append(res)
                progress.finished(res)
            if pending:
                progress.running(_running(client, sd))
                if on_poll is not None:
                    on_poll(client, futures)
    except KeyboardInterrupt:
        _stop(client, pending)
        raise
    return results


def _outcome(fut, job):
    if fut.status == "finished":
        return fut.result()
    try:
        exc = fut.exception()
    except Exception as e:  # cancelled
        exc = e
    why = " ".join(str(exc).split()) or type(exc).__name__
    return {"name": job["name"], "state": "failed", "exit_code": None, "metrics": None,
            "error": f"{type(exc).__name__}: {why[:300]}", "wall_s": 0.0}


def _running(client, sd):
    """{name: "step/steps"} of the runs the workers are training now."""
    try:
        per_worker = client.run(active, on_error="ignore")
    except Exception:
        return {}
    out = {}
    for act in per_worker.values():
        for name in act:
            if name != "_pid":
                step, steps = store.progress(sd.run_dir(name))
                out[name] = f"{step}/{steps or '?'}"
    return out


def _stop(client, pending, grace=300.0):
    """Cancel the runs not started and ask the running trainings to stop at a checkpoint
    (SIGTERM); return once none is left running (a second Ctrl-C returns at once)."""
    client.cancel(list(pending))
    sent, deadline = set(), time.time() + grace
    while time.time() < deadline:
        try:
            acts = client.run(active, on_error="ignore")
        except Exception:
            return
        running = {n for act in acts.values() for n in act if n != "_pid"}
        if not running:
            return
        if running - sent:
            client.run(terminate, sorted(running - sent), on_error="ignore")
            sent |= running
        time.sleep(0.3)
