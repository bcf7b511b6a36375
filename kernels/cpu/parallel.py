"""Both cores busy without spin-fights: chunks of a conv's batch on plain threads, each doing
its own numba copies/transforms and a *single-threaded* OpenBLAS GEMM.

OpenBLAS's own threads spin-wait after each call; a numba loop or a second GEMM started
meanwhile on the other core fights them (``benchmarks/PROFILE.md``), and with another process on
the machine a spinning worker loses whole scheduler slices (``benchmarks/PROFILE.md``). Here
OpenBLAS is set to one thread for the duration of the call (threadpoolctl, at run time: the
user's environment is not touched, and the previous count is restored), and the work is split
into more chunks than threads, taken from a shared counter: a thread whose core is busy
elsewhere simply takes fewer chunks. Idle workers sleep on a futex.

Nothing here depends on load or timing: chunk bounds depend on the shapes and
``n_threads()`` only, each chunk writes its own output (or its own partial sum, added in
chunk order), so which thread takes which chunk never changes a bit.
"""
import itertools
import os
import threading
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
    ``threadpoolctl``'s ``limit`` does, at a fraction of its cost per use)."""

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
    numba loops, NumPy matmul) and write disjoint outputs per chunk. A single chunk runs on
    the calling thread, BLAS single-threaded too: OpenBLAS's bits change with its thread count,
    so no product of the cpu backend uses its threads (``linalg.py``). Serialised per process:
    the BLAS thread count is global."""
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
        worker()
        for f in futs:
            f.result()


def parallel_chunks_after(prep, fn, chunks):
    """``parallel_chunks`` of fn(n0, n1, get) with ``prep()`` run as the first work item: one
    thread computes it (a conv's filter transform) while the other starts on a chunk's tile
    transforms; ``get()`` waits for prep's result and returns it (or raises its error).
    (Measured on W2's D2: ``benchmarks/PROFILE.md``, fifth round.)"""
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
