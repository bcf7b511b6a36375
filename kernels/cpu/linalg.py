"""Matrix products for the ``cpu`` backend, every one computed by single-threaded OpenBLAS
calls, so their bits do not depend on the machine's load, on timing or on
``OPENBLAS_NUM_THREADS``.

OpenBLAS's bits change with its thread count (128 x 784 @ 784 x 512 differs in the last bits
between one and two threads), and its worker threads spin-wait for a core between calls, so
beside another busy process they lose whole scheduler slices. A policy that took OpenBLAS's
threads for large products unless the machine looked busy was fast, but two identical runs
diverged on a loaded machine (``benchmarks/PROFILE.md``). Now a product below ``SPLIT_FLOPS``
is one GEMM; a larger one is cut into one block per core (``n_threads()``, at least
``MIN_BLOCK`` rows or columns each), each a one-thread GEMM on the kernels' worker threads
(``parallel_chunks``). It is cut along the rows of ``a`` or the columns of ``b``, whichever
makes the blocks re-pack the smaller operand (every block packs the whole of the other). The
blocks depend on the shape and the cores this process may use, never on load or on which
thread takes which block, so neither do the bits (``tests/test_determinism.py``).
"""
import numpy as np

from .parallel import _lock, _ranges, n_threads, one_blas_thread, parallel_chunks

SPLIT_FLOPS = 1 << 25  # 2 * batch * M * K * N from which a product is split over the cores
MIN_BLOCK = 64         # rows (or columns) per block at least


def _for_blas(a):
    """a, or a contiguous copy where its matrices have a zero or negative stride: NumPy hands
    those to its own loop instead of BLAS (a broadcast gradient's 1 x 256 @ 256 x 512 in the
    WGAN-GP step, W3)."""
    s = a.strides[-2:]
    return np.ascontiguousarray(a) if min(s) <= 0 and a.size > 1 else a


def blocks(a, b):
    """How ``matmul`` cuts a @ b: (axis, ranges), axis -2 (rows of a and of the result) or -1
    (columns of b and of the result); ranges None for one GEMM."""
    m, k = a.shape[-2:]
    n = b.shape[-1]
    batch = max(a.size // max(m * k, 1), b.size // max(k * n, 1))
    if 2 * batch * m * k * n < SPLIT_FLOPS:
        return -2, None
    axis, size = (-2, m) if k * n <= m * k else (-1, n)  # re-pack the smaller operand
    parts = min(n_threads(), size // MIN_BLOCK)
    if parts < 2:
        axis, size = (-1, n) if axis == -2 else (-2, m)
        parts = min(n_threads(), size // MIN_BLOCK)
    return axis, (_ranges(size, parts) if parts >= 2 else None)


def matmul(a, b):
    """``np.matmul(a, b)`` with one BLAS thread per GEMM: whole below ``SPLIT_FLOPS``, else in
    one block per core (``blocks``)."""
    if a.ndim < 2 or b.ndim < 2:
        with _lock, one_blas_thread():
            return np.matmul(a, b)
    a, b = _for_blas(a), _for_blas(b)
    if a.shape[-1] == 1 and b.shape[-2] == 1:
        # an outer product (a linear layer's input gradient with one output unit): one
        # rounding per element as in the GEMM, and far quicker than OpenBLAS on it
        return np.multiply(a, b)
    axis, ranges = blocks(a, b)
    if ranges is None:
        with _lock, one_blas_thread():
            return np.matmul(a, b)
    out = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]),
                   np.result_type(a, b))

    def rows(r0, r1):
        np.matmul(a[..., r0:r1, :], b, out=out[..., r0:r1, :])

    def cols(c0, c1):
        np.matmul(a, b[..., c0:c1], out=out[..., c0:c1])

    parallel_chunks(rows if axis == -2 else cols, ranges)
    return out
