"""The ``cpu`` backend's kernels: numba loops (im2col / col2im, Winograd transforms, fused Adam,
ReLU, conv bias) plus OpenBLAS GEMMs, one BLAS thread per worker (``parallel.py``); glibc's
malloc keeps freed memory (``memory.py``). Each convolution pass runs the algorithm that
``routes.py``'s table picks for its geometry.

Same interface as :mod:`scratchgen.kernels.reference`.
"""
from . import _cache  # noqa: F401  (first: numba caches in a per-user folder, see _cache)
from . import memory  # noqa: F401  (glibc keeps freed memory for reuse, see memory)
from .elementwise import channel_bias, channel_sum, leaky_relu, relu, relu_grad
from .conv import conv2d, conv2d_input_grad, conv2d_weight_grad, out_size
from .linalg import matmul
from .optim import adam_update

__all__ = ["conv2d", "conv2d_input_grad", "conv2d_weight_grad", "out_size", "matmul",
           "adam_update", "relu", "leaky_relu", "relu_grad", "channel_bias", "channel_sum"]
