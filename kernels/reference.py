"""Pure-NumPy reference kernels: the interface every backend's kernel module implements.

All arrays are NCHW; ``stride`` and ``padding`` are ``(h, w)`` pairs of ints. With
``Ho = (H + 2*ph - kh)//sh + 1`` (likewise ``Wo``) the convolution's index map is

    y[n, o, i, j] = sum_{c, p, q} x_pad[n, c, i*sh + p, j*sw + q] * w[o, c, p, q]

``conv2d_input_grad`` is its adjoint in ``x`` (the transposed convolution, col2im),
``conv2d_weight_grad`` its adjoint in ``w``. Input positions that no window covers (when
``(H + 2*ph - kh) % sh != 0``) get zero gradient. Every other kernel module must agree
with these to float tolerance; tests compare them on random shapes.
"""
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def matmul(a, b):
    """``a @ b`` with NumPy's broadcasting rules: every matrix product of the engine."""
    return np.matmul(a, b)


def relu(a):
    """max(a, 0): +0 for -0, NaN for NaN."""
    return np.maximum(a, 0)


def leaky_relu(a, slope):
    """max(a, s a) for 0 <= s <= 1 (a branch-free form of where(a > 0, a, s a))."""
    y = np.asarray(a * slope)
    return np.maximum(a, y, out=y)


def relu_grad(g, a, slope=0.0):
    """g * m with m = 1 where a > 0, else the slope (in a's dtype): the VJP of relu (a its input
    or output) and of leaky_relu. Array methods only (as channel_bias and channel_sum): the
    cuda module runs these three on CuPy arrays."""
    m = (a > 0).astype(a.dtype)
    m *= 1 - slope
    m += slope
    return g * m


def channel_bias(y, b):
    """y + b[None, :, None, None]: a conv's bias, y (N, C, H, W) and b (C,)."""
    return y + b.reshape(1, -1, 1, 1)


def channel_sum(g):
    """g summed over N, H, W -> (C,): the gradient of a conv's bias."""
    return g.sum(axis=(0, 2, 3))


def _pad(x, padding):
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _windows(x, k_hw, stride, padding):
    """(N, C, Ho, Wo, kh, kw) strided view of the padded input: im2col without a copy."""
    kh, kw = k_hw
    sh, sw = stride
    xp_ = _pad(x, padding)
    v = sliding_window_view(xp_, (kh, kw), axis=(2, 3))
    ho = out_size(x.shape[2], kh, sh, padding[0])
    wo = out_size(x.shape[3], kw, sw, padding[1])
    return v[:, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]


def conv2d(x, w, stride, padding):
    """y = x (*) w, without bias. x (N,C,H,W), w (O,C,kh,kw) -> (N,O,Ho,Wo)."""
    cols = _windows(x, w.shape[2:], stride, padding)
    y = np.tensordot(cols, w, axes=([1, 4, 5], [1, 2, 3]))  # (N, Ho, Wo, O)
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def conv2d_weight_grad(x, gy, k_hw, stride, padding):
    """dL/dw = sum_{n,i,j} gy[n,o,i,j] * x_pad[n,c,i*sh+p,j*sw+q] -> (O,C,kh,kw)."""
    cols = _windows(x, k_hw, stride, padding)
    return np.tensordot(gy, cols, axes=([0, 2, 3], [0, 2, 3])).astype(x.dtype, copy=False)


def conv2d_input_grad(gy, w, in_hw, stride, padding):
    """dL/dx: scatter-add (col2im) of w^T gy into the padded input, then crop -> (N,C,H,W)."""
    n, _, ho, wo = gy.shape
    _, c, kh, kw = w.shape
    sh, sw = stride
    ph, pw = padding
    h, wd = in_hw
    cols = np.tensordot(w, gy, axes=([0], [1]))  # (C, kh, kw, N, Ho, Wo)
    hp = max(h + 2 * ph, (ho - 1) * sh + kh)
    wp = max(wd + 2 * pw, (wo - 1) * sw + kw)
    gx = np.zeros((n, c, hp, wp), dtype=gy.dtype)
    gxt = gx.transpose(1, 0, 2, 3)  # (C, N, Hp, Wp) view
    for p in range(kh):
        for q in range(kw):
            gxt[:, :, p : p + (ho - 1) * sh + 1 : sh, q : q + (wo - 1) * sw + 1 : sw] += cols[:, p, q]
    return np.ascontiguousarray(gx[:, :, ph : ph + h, pw : pw + wd])


def adam_arrays(p, g, m, v, v_max=None):
    """(p, g, m, v[, v_max]) after checking what the fused kernels need: C-contiguous arrays
    of p's float32/float64 dtype and shape; a clear error naming the first that is not."""
    dt = p.dtype
    arrays = (p, g, m, v) if v_max is None else (p, g, m, v, v_max)
    for name, a in zip(("p", "g", "m", "v", "v_max"), arrays):
        if a.dtype != dt or a.shape != p.shape or not a.flags.c_contiguous:
            raise ValueError(f"adam_update: {name} must be C-contiguous {dt} of shape {p.shape}, "
                             f"got {a.dtype} {a.shape} (contiguous={a.flags.c_contiguous})")
    if dt != np.float32 and dt != np.float64:
        raise TypeError(f"adam_update: float32 or float64 arrays expected, got {dt}")
    return arrays


def adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2, v_max=None):
    """In place: g' = g + wd p;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;
    (v_max = max(v_max, v), used for v below, when given);
    p -= lr/bc1 * m / (sqrt(v) * (1/sqrt(bc2)) + eps), with bc1 = 1 - b1^t, bc2 = 1 - b2^t.

    Scalars are rounded to the arrays' dtype (NumPy's rule for Python floats)."""
    if weight_decay != 0:
        d = p * weight_decay
        d += g
        g = d
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    tmp = g * g
    tmp *= 1 - beta2
    v += tmp
    if v_max is not None:
        np.maximum(v_max, v, out=v_max)
        v = v_max
    denom = np.sqrt(v, out=tmp)
    denom *= 1 / math.sqrt(bc2)
    denom += eps
    np.divide(m, denom, out=tmp)
    tmp *= lr / bc1
    p -= tmp
