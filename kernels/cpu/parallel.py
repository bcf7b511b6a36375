"""Both cores busy without spin-fights: chunks of a conv's batch on plain threads, each doing
its own numba copies/transforms and a *single-threaded* OpenBLAS GEMM.

OpenBLAS's own threads spin-wait after each call; a numba loop or a second GEMM started
meanwhile on the other core fights them (``benchmarks/NOTES.md``), and with another process on
the machine a spinning worker loses whole scheduler slices (``benchmarks/PROFILE.md``). Here
OpenBLAS is set to one thread for the duration of the call (threadpoolctl, at run time: the
user's environment is not touched, and the previous count is restored), and the work is split
into more chunks than threads, taken from a shared counter: a thread whose core is busy
elsewhere simply takes fewer chunks. Idle workers sleep on a futex.

One threading model at a time: a BLAS call on OpenBLAS's own threads leaves its workers
spinning for ~0.1 s after it returns (2^28 TSC ticks, even once set to one thread), and a
split started meanwhile shares the cores with them. So while splits run (``recently_split``),
the engine's matrix products stay on one BLAS thread too (``linalg.py``): measured on the
DCGAN step (W2), whose two 51-MFLOP products otherwise slowed its convolutions 1.3x
(``benchmarks/PROFILE.md``). Nor do they take OpenBLAS's threads while other processes keep
our cores busy (``others_busy``): its workers would spin-wait for a core that is running
something else.
"""
import itertools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController

_lock = threading.Lock()
_state = {}


def n_threads():
    """Cores this process may run on (its affinity mask), at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _blas():
    if "blas" not in _state:
        _state["blas"] = ThreadpoolController().select(user_api="blas")
    return _state["blas"]


SPIN_S = 0.2  # seconds; OpenBLAS's workers spin ~0.1 s after a threaded call


def recently_split():
    """Whether a split (``parallel_chunks`` on several threads) ended within ``SPIN_S``."""
    return _state.get("split_until", 0.0) > time.monotonic()


LOAD_WINDOW_S = 0.25  # how often ``others_busy`` re-reads the machine's CPU counters
OTHERS_BUSY = 0.5     # cores' worth of other processes' work on our cores that counts as busy


def _cpu_snapshot():
    """(busy CPU seconds of the cores we may run on, CPU seconds of this process), from
    /proc/stat (user + nice + system + irq + softirq: not idle, iowait or a hypervisor's
    steal) and os.times; None where there is no /proc/stat."""
    try:
        mine = os.sched_getaffinity(0)
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except (AttributeError, OSError):
        return None
    busy = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in mine:
            v = rest.split()
            busy += int(v[0]) + int(v[1]) + int(v[2]) + int(v[5]) + int(v[6])
    t = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system


def others_busy():
    """Whether other processes kept >= ``OTHERS_BUSY`` of our cores busy since the previous
    reading (re-read at most every ``LOAD_WINDOW_S``; False off Linux and at the first call)."""
    now = time.monotonic()
    last = _state.get("load")
    if last is not None and now - last[0] < LOAD_WINDOW_S:
        return last[3]
    snap = _cpu_snapshot()
    if snap is None:
        return False
    busy = False
    if last is not None:
        busy = ((snap[0] - last[1]) - (snap[1] - last[2])) / (now - last[0]) >= OTHERS_BUSY
    _state["load"] = (now, snap[0], snap[1], busy)
    return busy


def _pool(n):
    if _state.get("pool_size") != n:
        _state["pool"] = ThreadPoolExecutor(n, thread_name_prefix="scratchgen-cpu")
        _state["pool_size"] = n
    return _state["pool"]


def batch_chunks(n, cols_per_sample, target):
    """Equal sample ranges covering 0..n, about ``target`` GEMM columns each, their number a
    multiple of ``n_threads()`` when n allows (4 chunks of 16 on 2 cores, not 21+21+21+1)."""
    nt = n_threads()
    k = max(1, round(n * cols_per_sample / target))
    return _ranges(n, min(n, -(-k // nt) * nt))


def halves(n):
    """0..n cut into one range per thread (fewer when n is smaller): for a loop without BLAS
    that would otherwise leave a core idle."""
    return _ranges(n, max(1, min(n, n_threads())))


def _ranges(n, k):
    """0..n in k ranges whose sizes differ by at most one."""
    return [(n * i // k, n * (i + 1) // k) for i in range(k)]


class one_blas_thread:
    """Context: OpenBLAS at one thread inside, the previous count restored on exit (what
    ``threadpoolctl``'s ``limit`` does, at ~1/5 of its ~11 us per use)."""

    def __enter__(self):
        self._saved = [(lc, lc.num_threads) for lc in _blas().lib_controllers]
        for lc, n in self._saved:
            if n != 1:
                lc.set_num_threads(1)

    def __exit__(self, *exc):
        for lc, n in self._saved:
            if n != 1:
                lc.set_num_threads(n)


def parallel_chunks(fn, chunks):
    """fn(*chunk) for every chunk, spread over ``n_threads()`` threads (the caller is one),
    with BLAS single-threaded meanwhile. fn must release the GIL for its heavy parts (nogil
    numba loops, NumPy matmul) and write disjoint outputs per chunk. A single chunk runs as is,
    BLAS threads untouched. Serialised per process: the BLAS thread count is global."""
    if len(chunks) == 1:  # nothing to split: BLAS keeps its own threads
        with _lock:
            fn(*chunks[0])
        return
    nt = min(n_threads(), len(chunks))
    with _lock, one_blas_thread():
        if nt <= 1:
            for ch in chunks:
                fn(*ch)
            return
        ids = itertools.count()  # next() is atomic under the GIL

        def worker():
            for i in ids:
                if i >= len(chunks):
                    return
                fn(*chunks[i])

        futs = [_pool(nt - 1).submit(worker) for _ in range(nt - 1)]
        try:
            worker()
            for f in futs:
                f.result()
        finally:
            _state["split_until"] = time.monotonic() + SPIN_S


def parallel_chunks_after(prep, fn, chunks):
    """``parallel_chunks`` of fn(n0, n1, get) with ``prep()`` run as the first work item: one
    thread computes it (a conv's filter transform) while the other starts on a chunk's tile
    transforms; ``get()`` waits for prep's result and returns it (or raises its error).
    On D2's forward + input grad, caches cold as in a training step: 11.3 -> 10.9 ms (medians
    of six runs, each -0.2 to -0.85 ms)."""
    done = threading.Event()
    out, err = [], []

    def get():
        done.wait()
        if err:
            raise err[0]
        return out[0]

    def item(n0, n1=None):
        if n1 is not None:
            fn(n0, n1, get)
            return
        try:
            out.append(prep())
        except BaseException as e:
            err.append(e)
            raise
        finally:
            done.set()

    parallel_chunks(item, [(None,)] + list(chunks))
