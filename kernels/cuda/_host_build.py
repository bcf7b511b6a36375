"""Compile the ``.cu`` kernels as plain host C++ (no GPU, no nvcc) for testing their logic.

Not used at run time. The CUDA qualifiers are defined away, ``threadIdx`` / ``blockIdx`` /
``blockDim`` / ``gridDim`` become globals that the caller sets before each emulated
thread, and every ``extern "C"`` kernel becomes an exported host function. The result is
loaded with ctypes; ``kernels/cuda/_emulator.py`` launches it thread by thread, so the real
index arithmetic of the sources (64-bit integer division, the grid-stride loops, the
layouts) runs against ``kernels/reference.py`` on a CPU-only machine.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))

_PRELUDE = r"""
#include <math.h>
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
struct sg_dim3 { unsigned int x, y, z; };
static sg_dim3 threadIdx, blockIdx, blockDim, gridDim;
extern "C" void sg_host_set_launch(unsigned int grid, unsigned int block,
                                   unsigned int bid, unsigned int tid) {
    gridDim.x = grid; gridDim.y = gridDim.z = 1;
    blockDim.x = block; blockDim.y = blockDim.z = 1;
    blockIdx.x = bid; blockIdx.y = blockIdx.z = 0;
    threadIdx.x = tid; threadIdx.y = threadIdx.z = 0;
}
"""


def find_cxx():
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def build(source, cxx=None, workdir=None):
    """Compile one ``.cu`` (a name in SOURCE_DIR or a path) to a host shared library.

    Returns a ``ctypes.CDLL``; raises RuntimeError (with the compiler output) on failure.
    Each source gets its own library because each redefines the thread-index globals.
    """
    cxx = cxx or find_cxx()
    if cxx is None:
        raise RuntimeError("no C++ compiler (c++, g++, clang++) on PATH")
    path = source if os.path.isabs(source) else os.path.join(SOURCE_DIR, source)
    workdir = workdir or tempfile.mkdtemp(prefix="sg_cuda_host_")
    stem = os.path.splitext(os.path.basename(path))[0]
    cpp = os.path.join(workdir, f"{stem}_host.cpp")
    lib = os.path.join(workdir, f"lib{stem}_host.so")
    with open(cpp, "w") as f:
        f.write(_PRELUDE)
        f.write(f'#include "{path}"\n')
    cmd = [cxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-Werror",
           "-Wno-unknown-pragmas", "-o", lib, cpp]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout}{res.stderr}")
    return ctypes.CDLL(lib)


_built = {}  # source text -> ctypes.CDLL (per process)


def build_code(code, cxx=None):
    """:func:`build` for a kernel source given as text (what ``cupy.RawModule`` receives).

    Each distinct text is compiled once per user and kept in the temp folder, keyed by a
    hash of the text and of this file's prelude (processes that race both build, and
    the last rename wins)."""
    lib = _built.get(code)
    if lib is None:
        key = hashlib.sha256((_PRELUDE + code).encode()).hexdigest()[:20]
        cache = os.path.join(tempfile.gettempdir(), f"sg_cuda_host_{os.getuid()}")
        final = os.path.join(cache, f"{key}.so")
        if not os.path.exists(final):
            os.makedirs(cache, exist_ok=True)
            workdir = tempfile.mkdtemp(prefix="build-", dir=cache)
            path = os.path.join(workdir, "module.cu")
            with open(path, "w") as f:
                f.write(code)
            build(path, cxx, workdir)
            os.replace(os.path.join(workdir, "libmodule_host.so"), final)
            shutil.rmtree(workdir, ignore_errors=True)
        lib = _built[code] = ctypes.CDLL(final)
    return lib
