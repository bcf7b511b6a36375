"""2-D convolution (NCHW, cross-correlation as in PyTorch) and its two adjoints.

Three primitives close under differentiation, with kernels from the active backend:

* ``conv2d(x, w)``: y = C_w x, w (O, C, kh, kw);
* ``conv_transpose2d(x, w)``: y = C_w^T x, w (C_in, C_out, kh, kw) viewed as a conv weight
  with O = C_in; it is conv2d's input gradient;
* ``conv2d_weight_grad(x, gy)``: the w-gradient of <gy, C_w x>.

Since <gy, C_w x> is bilinear, every VJP is one of the three:
conv2d: dx = C_w^T g, dw = W(x, g);  conv_transpose2d: dx = C_w g, dw = W(g, x);
W(x, gy): dx = C_G^T gy, dgy = C_G x (G the incoming gradient of the weight).

A bias is one more pair, each the other's adjoint: ``_channel_bias(y, b)`` = y + b per channel
(db = g summed over n, i, j: ``_channel_sum``), whose VJP broadcasts back.

``dilation`` and ``groups`` (PyTorch's semantics and weight shapes) are composed from these
three and shape primitives, so every backend runs them and their derivatives of any order need
no new backward code:

* dilation d: the kernel with d - 1 zeros between taps (``index_scatter`` into a zero kernel of
  size d (k - 1) + 1, whose VJP is a strided slice) feeds the plain conv. Cost: the GEMM works
  on the dilated kernel, (d (k - 1) + 1)^2 / k^2 times the multiply-adds (mostly zeros);
* groups G: the channels are sliced into G blocks, each block convolved with its slice of the
  weight and the results concatenated: G kernel calls of 1/G^2 the work each.
"""
from scratchgen import backend
from scratchgen.autograd.graph import primitive
from scratchgen.ops.elementwise import _data
from scratchgen.ops.shape import broadcast_to, reshape, getitem, index_scatter, concatenate, pad



def _pair(v, name):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v}")
    return v


@primitive
def _conv(x, w, stride, padding):
    return backend.kernels.conv2d(x, w, stride, padding)


@primitive
def _conv_t(x, w, out_hw, stride, padding):
    return backend.kernels.conv2d_input_grad(x, w, out_hw, stride, padding)


@primitive
def conv2d_weight_grad(x, gy, k_hw, stride, padding):
    """dL/dw of y = conv2d(x, w) given gy = dL/dy; itself differentiable in x and gy."""
    return backend.kernels.conv2d_weight_grad(x, gy, k_hw, stride, padding)


_conv.defvjp(
    lambda g, ans, x, w, stride, padding: _conv_t(g, w, _data(x).shape[2:], stride, padding),
    lambda g, ans, x, w, stride, padding: conv2d_weight_grad(x, g, _data(w).shape[2:], stride,
                                                             padding))
_conv_t.defvjp(
    lambda g, ans, x, w, out_hw, stride, padding: _conv(g, w, stride, padding),
    lambda g, ans, x, w, out_hw, stride, padding: conv2d_weight_grad(g, x, _data(w).shape[2:],
                                                                     stride, padding))
conv2d_weight_grad.defvjp(
    lambda g, ans, x, gy, k_hw, stride, padding: _conv_t(gy, g, _data(x).shape[2:], stride,
                                                         padding),
    lambda g, ans, x, gy, k_hw, stride, padding: _conv(x, g, stride, padding))


@primitive
def _channel_bias(y, b):
    """y + b[None, :, None, None]; dy = g, db = g summed over n, i, j."""
    return backend.kernels.channel_bias(y, b)


@primitive
def _channel_sum(g):
    """g (N, C, H, W) summed to (C,); its VJP broadcasts back."""
    return backend.kernels.channel_sum(g)


_channel_bias.defvjp(lambda g, ans, y, b: g, lambda g, ans, y, b: _channel_sum(g))
_channel_sum.defvjp(
    lambda gg, ans, g: broadcast_to(reshape(gg, (1, -1, 1, 1)), _data(g).shape))


def _add_bias(y, b):
    if b is None:
        return y
    shape, yd = tuple(getattr(_data(b), "shape", ())), _data(y)
    if shape != yd.shape[1:2]:
        raise ValueError(f"conv bias has shape {shape}; expected ({yd.shape[1]},), one value "
                         "per output channel")
    return _channel_bias(y, b)


def _check4(x, w, name, wlabel):
    xd, wd = _data(x), _data(w)
    if xd.ndim != 4 or wd.ndim != 4:
        raise ValueError(f"{name} needs a 4-D input (N, C, H, W) and a 4-D weight {wlabel}; "
                         f"got input {xd.shape} and weight {wd.shape}")
    return xd, wd


def _dilate(w, dilation):
    """w (A, B, kh, kw) with d - 1 zeros between taps: (A, B, d_h (kh-1)+1, d_w (kw-1)+1)."""
    if dilation == (1, 1):
        return w
    a, b, kh, kw = _data(w).shape
    shape = (a, b, dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    return index_scatter(w, shape, (slice(None), slice(None), slice(None, None, dilation[0]),
                                    slice(None, None, dilation[1])))


def _grouped(conv, x, w, groups):
    """Apply ``conv`` per channel block: x's channels and w's dim 0 in ``groups`` equal blocks,
    outputs concatenated along channels."""
    if groups == 1:
        return conv(x, w)
    cx, cw = _data(x).shape[1] // groups, _data(w).shape[0] // groups
    return concatenate(*[conv(getitem(x, (slice(None), slice(k * cx, (k + 1) * cx))),
                              getitem(w, (slice(k * cw, (k + 1) * cw),)))
                         for k in range(groups)], axis=1)


def _conv_t_cropped(x, w, out_hw, stride, padding):
    """conv_transpose with output_padding >= stride (allowed with dilation): the unpadded full
    output (H - 1) s + k, cropped from ``padding`` and zero-extended to ``out_hw``."""
    xd, wd = _data(x), _data(w)
    full = tuple((xd.shape[2 + d] - 1) * stride[d] + wd.shape[2 + d] for d in (0, 1))
    y = getitem(_conv_t(x, w, full, stride, (0, 0)),
                (Ellipsis, slice(padding[0], padding[0] + out_hw[0]),
                 slice(padding[1], padding[1] + out_hw[1])))
    extra = tuple(out_hw[d] - _data(y).shape[2 + d] for d in (0, 1))
    return pad(y, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1]))) if max(extra) else y


def _check_groups(name, groups, channels, wdim, what):
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{name}: groups must be a positive integer, got {groups!r}")
    for n, label in ((channels, "input channels"), (wdim, what)):
        if n % groups:
            raise ValueError(f"{name}: {label} ({n}) must be divisible by groups ({groups})")


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Convolution of x (N, C, H, W) with w (O, C / groups, kh, kw) and optional bias b (O,).

    y[n,o,i,j] = b[o] + sum_{c,p,q} x_pad[n, g C/G + c, i sh + p dh, j sw + q dw] w[o,c,p,q]
    with g = o // (O / G); Ho = (H + 2 ph - dh (kh - 1) - 1) // sh + 1.
    """
    xd, wd = _check4(x, w, "conv2d", "(out, in / groups, kh, kw)")
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    dilation = _pair(dilation, "dilation")
    _check_groups("conv2d", groups, xd.shape[1], wd.shape[0], "output channels (weight dim 0)")
    if xd.shape[1] != wd.shape[1] * groups:
        raise ValueError(f"conv2d: input {xd.shape} has {xd.shape[1]} channels but weight "
                         f"{wd.shape} with groups={groups} expects {wd.shape[1] * groups}")
    if min(stride) < 1 or min(padding) < 0 or min(dilation) < 1:
        raise ValueError(f"conv2d: stride {stride} and dilation {dilation} must be >= 1 and "
                         f"padding {padding} >= 0")
    for d in (0, 1):
        if xd.shape[2 + d] + 2 * padding[d] < dilation[d] * (wd.shape[2 + d] - 1) + 1:
            raise ValueError(f"conv2d: padded input {xd.shape} (padding {padding}) is smaller "
                             f"than the kernel {wd.shape[2:]} (dilation {dilation})")
    y = _grouped(lambda xi, wi: _conv(xi, _dilate(wi, dilation), stride, padding), x, w, groups)
    return _add_bias(y, b)


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed convolution of x (N, C_in, H, W) with w (C_in, C_out / groups, kh, kw): the
    adjoint (input gradient) of conv2d with the same weight, stride, padding, dilation, groups.

    Ho = (H - 1) sh - 2 ph + dh (kh - 1) + output_padding_h + 1.
    """
    xd, wd = _check4(x, w, "conv_transpose2d", "(in, out / groups, kh, kw)")
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    op, dilation = _pair(output_padding, "output_padding"), _pair(dilation, "dilation")
    _check_groups("conv_transpose2d", groups, xd.shape[1], wd.shape[0],
                  "weight dim 0 (in_channels)")
    if xd.shape[1] != wd.shape[0]:
        raise ValueError(f"conv_transpose2d: input {xd.shape} has {xd.shape[1]} channels but "
                         f"weight {wd.shape} expects {wd.shape[0]}")
    if min(stride) < 1 or min(padding) < 0 or min(dilation) < 1 or min(op) < 0 or \
            (op[0] >= stride[0] and op[0] >= dilation[0]) or \
            (op[1] >= stride[1] and op[1] >= dilation[1]):
        raise ValueError(f"conv_transpose2d: need stride, dilation >= 1, padding >= 0 and "
                         f"0 <= output_padding < stride or dilation; got stride {stride}, "
                         f"padding {padding}, dilation {dilation}, output_padding {op}")
    out_hw = tuple((xd.shape[2 + d] - 1) * stride[d] - 2 * padding[d] +
                   dilation[d] * (wd.shape[2 + d] - 1) + 1 + op[d] for d in (0, 1))
    if min(out_hw) < 1:
        raise ValueError(f"conv_transpose2d: output size {out_hw} is not positive")
    conv_t = _conv_t_cropped if op[0] >= stride[0] or op[1] >= stride[1] else _conv_t
    y = _grouped(lambda xi, wi: conv_t(xi, _dilate(wi, dilation), out_hw, stride, padding),
                 x, w, groups)
    return _add_bias(y, b)
