"""Matrix products for the ``cpu`` backend: small ones with OpenBLAS held at one thread.

OpenBLAS's worker threads spin-wait for a core between calls. Beside another busy process
they lose whole scheduler slices on every small product: the README's main job (an MLP of
width 128, products of ~8 MFLOP) ran 3.4x slower with its default two threads than with
``OPENBLAS_NUM_THREADS=1`` (10 vs 34 steps/s), and no faster on a quiet machine. Large
products keep OpenBLAS's own threads: splitting them over our own threads
(``parallel_chunks``) was robust under load but 15-20% slower quiet (a ~50 us thread hand-off
per call, each block packing the other operand again: W1 4.2 -> 5.8 ms), see
``benchmarks/PROFILE.md``. Except beside the conv kernels' splits (``recently_split``): the
workers a threaded product leaves spinning would slow the next convolutions more than its
second thread saves; and while other processes keep our cores busy (``others_busy``), where
they would spin-wait for a core (``parallel.py``).
"""
import numpy as np

from .parallel import _lock, one_blas_thread, others_busy, recently_split

# 2 * batch * M * K * N below which a product runs with one BLAS thread
SINGLE_THREAD_FLOPS = 1 << 25


def _for_blas(a):
    """a, or a contiguous copy where its matrices have a zero or negative stride: NumPy hands
    those to its own loop instead of BLAS (a broadcast gradient's 1 x 256 @ 256 x 512 in the
    WGAN-GP step, W3: 209 us against 9 us copied)."""
    s = a.strides[-2:]
    return np.ascontiguousarray(a) if min(s) <= 0 and a.size > 1 else a


def matmul(a, b):
    """``np.matmul(a, b)``, with one BLAS thread below ``SINGLE_THREAD_FLOPS``, while the
    conv kernels split work over the cores and while other processes keep them busy."""
    if a.ndim < 2 or b.ndim < 2:
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
    if 2 * batch * m * k * n >= SINGLE_THREAD_FLOPS and not recently_split() \
            and not others_busy():
        return np.matmul(a, b)
    with _lock, one_blas_thread():
        return np.matmul(a, b)
