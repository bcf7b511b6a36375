"""2-D convolution (NCHW, cross-correlation as in PyTorch) and its two adjoints.

Three primitives close under differentiation, with kernels from the active backend:

* ``conv2d(x, w)``: y = C_w x, w (O, C, kh, kw);
* ``conv_transpose2d(x, w)``: y = C_w^T x, w (C_in, C_out, kh, kw) viewed as a conv weight
  with O = C_in; it is conv2d's input gradient;
* ``conv2d_weight_grad(x, gy)``: the w-gradient of <gy, C_w x>.

Since <gy, C_w x> is bilinear, every VJP is one of the three:
conv2d: dx = C_w^T g, dw = W(x, g);  conv_transpose2d: dx = C_w g, dw = W(g, x);
W(x, gy): dx = C_G^T gy, dgy = C_G x (G the incoming gradient of the weight).
"""
from scratchgen import backend
from scratchgen.autograd.graph import primitive
from scratchgen.ops.elementwise import add, _data
from scratchgen.ops.shape import reshape
from scratchgen.ops.reduction import sum



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


def _add_bias(y, b):
    if b is None:
        return y
    return add(y, reshape(b, (1, -1, 1, 1)))


def _check4(x, w, name, wlabel):
    xd, wd = _data(x), _data(w)
    if xd.ndim != 4 or wd.ndim != 4:
        raise ValueError(f"{name} needs a 4-D input (N, C, H, W) and a 4-D weight {wlabel}; "
                         f"got input {xd.shape} and weight {wd.shape}")
    return xd, wd


def conv2d(x, w, b=None, stride=1, padding=0):
    """Convolution of x (N, C, H, W) with w (O, C, kh, kw) and optional bias b (O,).

    y[n,o,i,j] = b[o] + sum_{c,p,q} x_pad[n, c, i*sh+p, j*sw+q] w[o,c,p,q],
    Ho = (H + 2 ph - kh) // sh + 1.
    """
    xd, wd = _check4(x, w, "conv2d", "(out, in, kh, kw)")
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    if xd.shape[1] != wd.shape[1]:
        raise ValueError(f"conv2d: input {xd.shape} has {xd.shape[1]} channels but weight "
                         f"{wd.shape} expects {wd.shape[1]}")
    for d in (0, 1):
        if xd.shape[2 + d] + 2 * padding[d] < wd.shape[2 + d]:
            raise ValueError(f"conv2d: padded input {xd.shape} (padding {padding}) is smaller "
                             f"than the kernel {wd.shape[2:]}")
    if min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"conv2d: stride {stride} must be >= 1 and padding {padding} >= 0")
    return _add_bias(_conv(x, w, stride, padding), b)


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution of x (N, C_in, H, W) with w (C_in, C_out, kh, kw): the adjoint
    (input gradient) of conv2d with the same weight.

    Ho = (H - 1) sh - 2 ph + kh + output_padding_h.
    """
    xd, wd = _check4(x, w, "conv_transpose2d", "(in, out, kh, kw)")
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    op = _pair(output_padding, "output_padding")
    if xd.shape[1] != wd.shape[0]:
        raise ValueError(f"conv_transpose2d: input {xd.shape} has {xd.shape[1]} channels but "
                         f"weight {wd.shape} expects {wd.shape[0]}")
    if min(stride) < 1 or min(padding) < 0 or min(op) < 0 or op[0] >= stride[0] or \
            op[1] >= stride[1]:
        raise ValueError(f"conv_transpose2d: need stride >= 1, padding >= 0 and "
                         f"0 <= output_padding < stride; got stride {stride}, padding {padding},"
                         f" output_padding {op}")
    out_hw = tuple((xd.shape[2 + d] - 1) * stride[d] - 2 * padding[d] + wd.shape[2 + d] + op[d]
                   for d in (0, 1))
    if min(out_hw) < 1:
        raise ValueError(f"conv_transpose2d: output size {out_hw} is not positive")
    return _add_bias(_conv_t(x, w, out_hw, stride, padding), b)
