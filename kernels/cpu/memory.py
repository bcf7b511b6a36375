"""glibc's malloc set to keep freed memory for reuse instead of handing it back to the OS.

A training step allocates and frees many arrays of 0.1-30 MB (activations, their gradients,
tile buffers). With glibc's defaults each such block is a fresh ``mmap`` or is trimmed off the
heap when freed, so the next step takes a page fault per 4 KiB page it touches again. On the
DCGAN step (W2) keeping the memory cut the step by ~20% (``benchmarks/PROFILE.md``, third
round).

Applied once when the ``cpu`` backend's kernels load, on glibc only, and not where the user
set any ``MALLOC_*_`` tunable (their choice stands). The cost is resident memory: up to
``TRIM`` bytes of free heap kept per malloc arena (the main thread's and the kernels' worker).
"""
import ctypes
import os

MMAP_THRESHOLD = 32 << 20  # blocks below this come from the heap (glibc's maximum)
TRIM = 128 << 20           # free heap kept before returning memory to the OS
TOP_PAD = 16 << 20         # extra heap requested per growth

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_USER_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_",
              "MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_")


def _glibc():
    """Whether the running C library is glibc (asked of it: no scan of the executable, which
    ``platform.libc_ver`` does, slowly at import)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


def keep_freed_memory(environ=os.environ):
    """Set the three thresholds; returns what was set ({} when skipped: not glibc, or the
    user tuned malloc through the environment)."""
    if not _glibc() or any(v in environ for v in _USER_VARS):
        return {}
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = {}
    for name, param, value in (("mmap_threshold", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                               ("trim_threshold", _M_TRIM_THRESHOLD, TRIM),
                               ("top_pad", _M_TOP_PAD, TOP_PAD)):
        if mallopt(param, value) == 1:
            done[name] = value
    return done


APPLIED = keep_freed_memory()
