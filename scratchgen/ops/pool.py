"""2-D pooling (NCHW, PyTorch's geometry) as two adjoint pairs of window primitives.

A window geometry :class:`Win` maps output (i, j) and tap (a, b) of the kernel to the input
position (i s_h - p_h + a d_h, j s_w - p_w + b d_w). Each tap is one strided slice of the padded
input, so every backend runs these with the array module's basic slicing: no kernel code.

* ``_window_sum(x)``: y = sum of the taps (zero padding); its adjoint ``_window_spread(g)`` adds
  g at every tap. Each is the other's VJP; avg_pool2d = window_sum / divisor.
* ``_max_pool(x)``: y = max of the taps (-inf padding). Its VJP is ``_window_place(g, idx)``,
  g put at the tap ``idx`` of each window (the argmax, recomputed from x: nothing is kept),
  whose adjoint ``_window_pick(gg, idx)`` reads that tap back. Both are linear in their array,
  so every derivative order closes on these two.

The gradient goes to the first maximum in row-major window order, as PyTorch's; a window
holding NaN gives NaN and sends its gradient to its first NaN (PyTorch's to its last).
"""
import collections
import math
import numbers

from scratchgen import backend
from scratchgen.autograd.graph import primitive
from scratchgen.autograd.tensor import Tensor
from scratchgen.ops.elementwise import div, _data

Win = collections.namedtuple("Win", "k s p d in_hw out padded")
Win.__doc__ = ("Pooling geometry, each field an (h, w) pair: kernel, stride, padding, dilation, "
               "input size, output size, padded input size.")


def _pair(v, name, fn):
    t = (v, v) if isinstance(v, numbers.Integral) else tuple(v)
    if len(t) == 1:
        t = t * 2
    if len(t) != 2 or not all(isinstance(a, numbers.Integral) and not isinstance(a, bool)
                              for a in t):
        raise ValueError(f"{fn}: {name} must be an int or a pair of ints, got {v!r}")
    return tuple(int(a) for a in t)


def _out_size(n, k, s, p, d, ceil_mode):
    """PyTorch's pooling_output_shape: floor (or ceil) of (n + 2p - d (k-1) - 1) / s, plus 1; in
    ceil mode the last window must start inside the input or its left padding."""
    span = n + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def geometry(x, kernel_size, stride, padding, dilation, ceil_mode, fn):
    """The :class:`Win` of pooling x (N, C, H, W) or (C, H, W), with PyTorch's checks."""
    xd = _data(x)
    if xd.ndim not in (3, 4):
        raise ValueError(f"{fn}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape "
                         f"{tuple(xd.shape)}")
    k = _pair(kernel_size, "kernel_size", fn)
    s = k if stride is None or stride == () or stride == [] else _pair(stride, "stride", fn)
    p, d = _pair(padding, "padding", fn), _pair(dilation, "dilation", fn)
    if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ValueError(f"{fn}: kernel_size {k}, stride {s}, dilation {d} must be >= 1 and "
                         f"padding {p} >= 0")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{fn}: padding {p} must be at most half of kernel_size {k}")
    hw = tuple(xd.shape[-2:])
    out = tuple(_out_size(hw[i], k[i], s[i], p[i], d[i], ceil_mode) for i in (0, 1))
    if min(out) < 1:
        raise ValueError(f"{fn}: input {tuple(xd.shape)} is too small for kernel_size {k}, "
                         f"padding {p}, dilation {d}: output size {out}")
    padded = tuple(max(hw[i] + 2 * p[i], (out[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1)
                   for i in (0, 1))
    return Win(k, s, p, d, hw, out, padded)


def _taps(win):
    """The (slice_h, slice_w) of each kernel tap in the padded input, row-major."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = win.k, win.s, win.d, win.out
    return [(Ellipsis, slice(a * dh, a * dh + (ho - 1) * sh + 1, sh),
             slice(b * dw, b * dw + (wo - 1) * sw + 1, sw)) for a in range(kh) for b in range(kw)]


def _interior(win):
    (ph, pw), (h, w) = win.p, win.in_hw
    return (Ellipsis, slice(ph, ph + h), slice(pw, pw + w))


def _padded(x, win, fill):
    if tuple(x.shape[-2:]) == win.padded:
        return x
    out = backend.xp.full(x.shape[:-2] + win.padded, fill, dtype=x.dtype)
    out[_interior(win)] = x
    return out


def _crop(gp, win):
    return backend.xp.ascontiguousarray(gp[_interior(win)])


def _zeros_padded(g, win):
    return backend.xp.zeros(g.shape[:-2] + win.padded, dtype=g.dtype)


@primitive
def _window_sum(x, win):
    """y[.., i, j] = sum over taps of x_pad (zero padding)."""
    xp_ = _padded(x, win, 0)
    taps = _taps(win)
    y = xp_[taps[0]].copy()
    for t in taps[1:]:
        y += xp_[t]
    return y


@primitive
def _window_spread(g, win):
    """The adjoint of _window_sum: g added at every tap of the padded input, cropped."""
    gp = _zeros_padded(g, win)
    for t in _taps(win):
        gp[t] += g
    return _crop(gp, win)


_window_sum.defvjp(lambda g, ans, x, win: _window_spread(g, win))
_window_spread.defvjp(lambda gg, ans, g, win: _window_sum(gg, win))


def _window_max(x, win):
    """max over each window of x_pad (-inf padding); NaN if the window holds one."""
    xp_ = _padded(x, win, -math.inf)
    taps = _taps(win)
    best = xp_[taps[0]].copy()
    for t in taps[1:]:
        backend.xp.maximum(best, xp_[t], out=best)
    return best


def _argmax(x, win, best=None):
    """The tap index of each window's first maximum (first NaN, if any), int32. Arithmetic
    on masks, not masked writes: copyto(where=) on a dense random mask is far slower."""
    xp = backend.xp
    best = _window_max(x, win) if best is None else best
    xp_ = _padded(x, win, -math.inf)
    idx = xp.zeros(best.shape, dtype=xp.int32)
    found = xp.zeros(best.shape, dtype=bool)
    for n, t in enumerate(_taps(win)):
        v = xp_[t]
        m = (v == best) | (v != v)
        m &= ~found
        found |= m
        if n:
            idx += m * xp.int32(n)
    return idx


@primitive
def _max_pool(x, win):
    return _window_max(x, win)


@primitive
def _window_place(g, idx, win):
    """g[.., i, j] put at tap idx[.., i, j] of its window in the padded input, cropped (windows
    that overlap add up)."""
    gp = _zeros_padded(g, win)
    for n, t in enumerate(_taps(win)):
        gp[t] += g * (idx == n)
    return _crop(gp, win)


@primitive
def _window_pick(x, idx, win):
    """The adjoint of _window_place: tap idx[.., i, j] of each window of x_pad (zero padding)."""
    xp_ = _padded(x, win, 0)
    taps = _taps(win)
    y = xp_[taps[0]].copy()
    for n, t in enumerate(taps[1:], 1):
        y = backend.xp.where(idx == n, xp_[t], y)
    return y


_max_pool.defvjp(lambda g, ans, x, win: _window_place(g, _argmax(_data(x), win, ans.array),
                                                      win))
_window_place.defvjp(lambda gg, ans, g, idx, win: _window_pick(gg, idx, win), None)
_window_pick.defvjp(lambda gg, ans, x, idx, win: _window_place(gg, idx, win), None)


def _flat_indices(idx, win):
    """Tap indices -> PyTorch's return_indices: the flat position h W + w in the unpadded
    input plane."""
    xp = backend.xp
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = win.k, win.s, win.p, win.d
    (ho, wo), w = win.out, win.in_hw[1]
    rows = (xp.arange(ho) * sh - ph).reshape(-1, 1) + (idx // kw) * dh
    cols = (xp.arange(wo) * sw - pw).reshape(1, -1) + (idx % kw) * dw
    return (rows * w + cols).astype(xp.int64)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over kh x kw windows of x (N, C, H, W) or (C, H, W); padding counts as -inf.

    Ho = floor((H + 2 ph - dh (kh - 1) - 1) / sh) + 1 (ceil in ``ceil_mode``, the last window
    starting inside the input or its left padding); stride defaults to kernel_size and
    padding may be at most half the kernel. The gradient goes to the first maximum of each
    window. With ``return_indices`` also the argmax as flat indices into H x W (int64).

    >>> import scratchgen as sg, scratchgen.functional as F
    >>> x = sg.tensor([[[[1.0, 5.0, 2.0], [4.0, 3.0, 6.0]]]], requires_grad=True)
    >>> y, i = F.max_pool2d(x, 2, ceil_mode=True, return_indices=True)
    >>> y.tolist(), i.tolist()
    ([[[[5.0, 6.0]]]], [[[[1, 5]]]])
    >>> y.sum().backward(); x.grad.tolist()
    [[[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]]
    """
    win = geometry(input, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    y = _max_pool(input, win)
    if return_indices:
        return y, Tensor._wrap(_flat_indices(_argmax(_data(input), win, y.array), win))
    return y


def _divisor(win, count_include_pad, dtype):
    """PyTorch's avg_pool2d divisor per output position (Ho, Wo): the window clipped to the
    padded input, or (``count_include_pad=False``) to the input itself."""
    sizes = []
    for i in (0, 1):
        start = [o * win.s[i] - win.p[i] for o in range(win.out[i])]
        end = [max(0, min(a + win.k[i], win.in_hw[i] + win.p[i])) for a in start]
        if count_include_pad:
            sizes.append([e - a for a, e in zip(start, end)])
        else:
            sizes.append([min(e, win.in_hw[i]) - max(a, 0) for a, e in zip(start, end)])
    h, w = sizes
    return backend.asarray([[a * b for b in w] for a in h], dtype=dtype)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Mean over kh x kw windows of x (N, C, H, W) or (C, H, W): the window's sum divided by
    its size (zero padding counted when ``count_include_pad``; windows running past the
    padded input in ``ceil_mode`` counted only up to it), or by ``divisor_override``.
    Output size as in :func:`max_pool2d` (dilation 1).

    >>> import scratchgen as sg, scratchgen.functional as F
    >>> x = sg.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> F.avg_pool2d(x, 2, stride=1, padding=1).tolist()[0][0][1]
    [1.0, 3.0, 2.0]
    >>> F.avg_pool2d(x, 2, stride=1, padding=1, count_include_pad=False).tolist()[0][0][1]
    [2.0, 3.0, 4.0]
    """
    win = geometry(input, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    s = _window_sum(input, win)
    if divisor_override is not None:
        if not isinstance(divisor_override, int) or divisor_override == 0:
            raise ValueError(f"avg_pool2d: divisor_override must be a non-zero int, got "
                             f"{divisor_override!r}")
        return div(s, float(divisor_override))
    return div(s, _divisor(win, count_include_pad, _data(input).dtype))
