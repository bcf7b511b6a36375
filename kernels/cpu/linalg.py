"""Matrix products for the ``cpu`` backend, every one computed by single-threaded OpenBLAS
calls, so their bits do not depend on the machine's load or on timing.

OpenBLAS's bits change with its thread count (128 x 784 @ 784 x 512 differs in the last bits
between one and two threads), and its worker threads spin-wait for a core between calls:
beside another busy process they lose whole scheduler slices (the README's main job, an MLP
of width 128, ran 3.4x slower with two threads than with ``OPENBLAS_NUM_THREADS=1``). An
earlier policy took OpenBLAS's threads for large products unless the machine looked busy
(/proc/stat) or a conv split had just run: fast, but two identical runs diverged at step 148
on a loaded machine. Now small products run on one BLAS thread as they are; large ones
(``SPLIT_FLOPS``) are cut into row blocks fixed by the shape (``ROW_BLOCK``), each a
one-thread GEMM on the kernels' worker threads (``parallel_chunks``). The blocks depend on
M alone, not on cores, threads or which thread takes which block, so neither do the bits
(``tests/test_determinism.py``); in float32 they were the whole one-thread product's in every
shape tried, float64 differed for some (OpenBLAS's small-matrix kernels on the blocks).
"""
import numpy as np

from .parallel import _lock, _ranges, one_blas_thread, parallel_chunks

SPLIT_FLOPS = 1 << 25  # 2 * batch * M * K * N from which a product is split into row blocks
ROW_BLOCK = 64         # rows per block at least (whole SkylakeX SGEMM micro-tiles of 16)


def _for_blas(a):
    """a, or a contiguous copy where its matrices have a zero or negative stride: NumPy hands
    those to its own loop instead of BLAS (a broadcast gradient's 1 x 256 @ 256 x 512 in the
    WGAN-GP step, W3: 209 us against 9 us copied)."""
    s = a.strides[-2:]
    return np.ascontiguousarray(a) if min(s) <= 0 and a.size > 1 else a


def _split_rows(a, b):
    """a @ b as one-thread GEMMs over row blocks of a, on the kernels' threads."""
    m = a.shape[-2]
    out = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (m, b.shape[-1]),
                   np.result_type(a, b))

    def run(r0, r1):
        np.matmul(a[..., r0:r1, :], b, out=out[..., r0:r1, :])

    parallel_chunks(run, _ranges(m, m // ROW_BLOCK))
    return out


def matmul(a, b):
    """``np.matmul(a, b)`` with one BLAS thread per GEMM: whole below ``SPLIT_FLOPS`` or with
    fewer than 2 ``ROW_BLOCK`` rows, else in row blocks over the cores."""
    if a.ndim < 2 or b.ndim < 2:
        with _lock, one_blas_thread():
            return np.matmul(a, b)
    a, b = _for_blas(a), _for_blas(b)
    m, k = a.shape[-2:]
    n = b.shape[-1]
    if k == 1 and b.shape[-2] == 1:
        # an outer product (a linear layer's input gradient with one output unit): one
        # rounding per element as in the GEMM, but OpenBLAS took 0.64 ms for 64 x 6272
        # (W2's discriminator), the broadcast product 0.06 ms
        return np.multiply(a, b)
    batch = max(a.size // max(m * k, 1), b.size // max(k * n, 1))
    if 2 * batch * m * k * n >= SPLIT_FLOPS and m >= 2 * ROW_BLOCK:
        return _split_rows(a, b)
    with _lock, one_blas_thread():
        return np.matmul(a, b)
