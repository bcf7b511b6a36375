"""The ``cpu`` backend's kernels: numba loops (im2col / col2im, Winograd transforms, fused Adam)
plus OpenBLAS GEMMs.

Same interface as :mod:`scratchgen.kernels.reference`.
"""
from . import _cache  # noqa: F401  (first: numba caches in a per-user folder, see _cache)
from .conv import conv2d, conv2d_input_grad, conv2d_weight_grad, out_size
from .optim import adam_update

__all__ = ["conv2d", "conv2d_input_grad", "conv2d_weight_grad", "out_size", "adam_update"]
