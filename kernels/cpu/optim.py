"""Fused optimiser updates for the ``cpu`` backend: one numba pass over flat arrays.

``adam_update`` replaces the ~11 NumPy passes (5 temporaries) of ``scratchgen.optim.Adam``
with one loop doing the same IEEE operations in the same order, in the arrays' dtype, so
results equal :func:`scratchgen.kernels.reference.adam_update`. ``error_model='numpy'``
matters: numba's default inserts a zero-division check per ``/`` that blocks vectorisation.
"""
import math

import numpy as np
from numba import njit

from ..reference import adam_arrays


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def _adam_flat(p, g, m, v, vmax, amsgrad, b1, c1, b2, c2, inv_sb2, eps, step, wd, decay):
    for i in range(p.size):
        gi = g[i]
        if decay:
            gi = p[i] * wd + gi
        mi = m[i] * b1 + c1 * gi
        m[i] = mi
        vi = v[i] * b2 + (gi * gi) * c2
        v[i] = vi
        if amsgrad:
            vm = vmax[i]
            if not vi <= vm:  # np.maximum: NaN propagates
                vm = vi
            vmax[i] = vm
            vi = vm
        denom = np.sqrt(vi) * inv_sb2 + eps
        p[i] -= (mi / denom) * step


def adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2, v_max=None):
    """In place: g' = g + wd p;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;
    (v_max = max(v_max, v), used for v below, when given);
    p -= lr/bc1 * m / (sqrt(v) * (1/sqrt(bc2)) + eps).

    p, g, m, v (, v_max): C-contiguous arrays of one float dtype and shape; the scalars are
    rounded to that dtype first, as NumPy does with Python floats."""
    f = p.dtype.type
    flat = [a.reshape(-1) for a in adam_arrays(p, g, m, v, v_max)]
    vm = flat[4] if v_max is not None else flat[3]
    _adam_flat(flat[0], flat[1], flat[2], flat[3], vm, v_max is not None,
               f(beta1), f(1 - beta1), f(beta2), f(1 - beta2), f(1 / math.sqrt(bc2)), f(eps),
               f(lr / bc1), f(weight_decay), weight_decay != 0)
