"""Layers: thin Modules over the functional primitives, initialised as PyTorch initialises them.

Weights are float32 unless ``dtype=`` says otherwise (float64 layers serve gradient checks).
``generator=`` (a NumPy Generator) draws the initial weights; by default the global one that
``sg.manual_seed`` seeds.
"""
import math

import numpy

from scratchgen import backend
from scratchgen import functional as F
from scratchgen.nn import init
from scratchgen.nn.module import Module, Parameter


def _dtype(dtype):
    dt = backend.xp.dtype("float32" if dtype is None else dtype)
    if dt.kind != "f":
        raise TypeError(f"layer parameters must be floating point, got dtype {dt}")
    return dt


def _param(shape, dtype):
    return Parameter(backend.xp.empty(shape, dtype=_dtype(dtype)))


def _pair(v, name):
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(a, int) for a in t):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return t


def _default_init(weight, bias, generator):
    """PyTorch's default for Linear and convolutions: kaiming_uniform_(a=sqrt(5)), i.e.
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias from the same bound."""
    init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    if bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(bias, -bound, bound, generator=generator)


# ---- affine ---------------------------------------------------------------------------
class Linear(Module):
    """y = x W^T + b, W (out_features, in_features), x (..., in_features)."""

    def __init__(self, in_features, out_features, bias=True, dtype=None, generator=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _param((out_features, in_features), dtype)
        self.register_parameter("bias", _param((out_features,), dtype) if bias else None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        _default_init(self.weight, self.bias, generator)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class _ConvNd(Module):
    def _conv_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

    extra_repr = _conv_repr

    def _set_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                      groups):
        name = type(self).__name__
        if not isinstance(groups, int) or groups < 1 or in_channels % groups or \
                out_channels % groups:
            raise ValueError(f"{name}: groups ({groups!r}) must be a positive integer dividing "
                             f"in_channels ({in_channels}) and out_channels ({out_channels})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride, self.padding = _pair(stride, "stride"), _pair(padding, "padding")
        self.dilation, self.groups = _pair(dilation, "dilation"), groups

    def reset_parameters(self, generator=None):
        _default_init(self.weight, self.bias, generator)


class Conv2d(_ConvNd):
    """2-D cross-correlation, weight (out_channels, in_channels / groups, kh, kw); see
    ``F.conv2d``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, dtype=None, generator=None):
        super().__init__()
        self._set_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation,
                           groups)
        self.weight = _param((out_channels, in_channels // groups) + self.kernel_size, dtype)
        self.register_parameter("bias", _param((out_channels,), dtype) if bias else None)
        self.reset_parameters(generator)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class ConvTranspose2d(_ConvNd):
    """Transposed convolution (conv2d's input gradient), weight (in_channels,
    out_channels / groups, kh, kw);
    H_out = (H - 1) stride - 2 padding + dilation (kh - 1) + output_padding + 1.

    Initialised as PyTorch does: its fan_in is computed from the weight's dim 1, which for
    this layout is out_channels * kh * kw, so bound = 1/sqrt(out_channels kh kw).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, dtype=None, generator=None):
        super().__init__()
        self._set_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation,
                           groups)
        self.output_padding = _pair(output_padding, "output_padding")
        self.weight = _param((in_channels, out_channels // groups) + self.kernel_size, dtype)
        self.register_parameter("bias", _param((out_channels,), dtype) if bias else None)
        self.reset_parameters(generator)

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)


# ---- normalisation --------------------------------------------------------------------
class _BatchNorm(Module):
    """Batch normalisation over all axes but the channel axis 1, as PyTorch's.

    Train: y = (x - mean_B) / sqrt(var_B + eps) * weight + bias with the batch's biased
    variance, and (no graph) running_mean <- (1 - m) running_mean + m mean_B,
    running_var <- (1 - m) running_var + m var_B n / (n - 1) (unbiased), where m = momentum,
    or 1 / num_batches_tracked when momentum is None.
    Eval: the same with running_mean and running_var.
    """

    _ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        xp, dt = backend.xp, _dtype(dtype)
        if affine:
            self.weight = Parameter(xp.ones(num_features, dtype=dt))
            self.bias = Parameter(xp.zeros(num_features, dtype=dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", xp.zeros(num_features, dtype=dt))
            self.register_buffer("running_var", xp.ones(num_features, dtype=dt))
            self.register_buffer("num_batches_tracked", xp.zeros((), dtype=xp.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.array[...] = 0
            self.running_var.array[...] = 1
            self.num_batches_tracked.array[...] = 0

    def forward(self, x):
        if x.ndim not in self._ndims or x.shape[1] != self.num_features:
            want = " or ".join(f"{d}-D" for d in self._ndims)
            raise ValueError(f"{type(self).__name__}({self.num_features}) expects a {want} "
                             f"input with {self.num_features} channels on axis 1; got shape "
                             f"{tuple(x.shape)}")
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, self.num_features) + (1,) * (x.ndim - 2)
        if self.training or not self.track_running_stats:
            n = x.size // self.num_features
            if self.training and n <= 1:
                raise ValueError(f"{type(self).__name__}: expected more than 1 value per "
                                 f"channel when training, got input shape {tuple(x.shape)}")
            mean = F.mean(x, axis=axes, keepdims=True)
            d = x - mean
            var = F.mean(d * d, axis=axes, keepdims=True)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean.array, var.array, n)
            scale = 1 / F.sqrt(var + self.eps)
        else:
            d = x - F.reshape(self.running_mean, shape)
            scale = F.reshape(1 / F.sqrt(self.running_var + self.eps), shape)
        if self.affine:
            scale = scale * F.reshape(self.weight, shape)
            return d * scale + F.reshape(self.bias, shape)
        return d * scale

    def _update_running_stats(self, mean, var, n):
        nbt = self.num_batches_tracked.array
        nbt += 1
        m = 1.0 / float(nbt) if self.momentum is None else self.momentum
        rm, rv = self.running_mean.array, self.running_var.array
        rm *= 1 - m
        rm += (m * mean.reshape(-1)).astype(rm.dtype, copy=False)
        rv *= 1 - m
        rv += (m * n / (n - 1) * var.reshape(-1)).astype(rv.dtype, copy=False)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """BatchNorm over (N, C) or (N, C, L) inputs."""
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """BatchNorm over (N, C, H, W) inputs."""
    _ndims = (4,)


# ---- regularisation -------------------------------------------------------------------
class _DropoutNd(Module):
    repr_fields = ("p",)
    _fn = None

    def __init__(self, p=0.5, inplace=False, seed=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p, self.inplace = float(p), inplace
        if seed is None:
            seed = int(init.default_generator().integers(2 ** 63))
        self.generator = numpy.random.default_rng(seed)

    def forward(self, x, rng=None):
        return self._fn(x, self.p, self.training, generator=rng or self.generator)


class Dropout(_DropoutNd):
    """Inverted dropout (``F.dropout``): in training, zero each element with probability p
    and scale the rest by 1/(1-p); the identity in eval mode.

    The mask is drawn on the host from ``self.generator``, a NumPy Generator seeded by
    ``seed`` (or, without one, from the global generator that ``sg.manual_seed`` seeds), or
    from ``rng`` when ``forward(x, rng=...)`` is given one. For bit-exact resumption either
    pass ``rng`` or save ``self.generator.bit_generator.state``. ``inplace`` is accepted for
    PyTorch's signature; nothing is done in place.
    """
    _fn = staticmethod(F.dropout)


class Dropout2d(_DropoutNd):
    """Channel-wise dropout (``F.dropout2d``) of (N, C, H, W) or (C, H, W) input: in
    training, zero whole channels with probability p and scale the rest by 1/(1-p); the
    identity in eval mode. Masks and ``inplace`` as :class:`Dropout`'s."""
    _fn = staticmethod(F.dropout2d)


# ---- pooling --------------------------------------------------------------------------
class MaxPool2d(Module):
    """Max over kernel_size windows (``F.max_pool2d``); stride defaults to kernel_size."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size, self.padding, self.dilation = kernel_size, padding, dilation
        self.stride = kernel_size if stride is None else stride
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """Mean over kernel_size windows (``F.avg_pool2d``); stride defaults to kernel_size."""
    repr_fields = ("kernel_size", "stride", "padding")

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = kernel_size if stride is None else stride
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


# ---- activations and shapes -----------------------------------------------------------
class _Inplace(Module):
    """``inplace`` is accepted for PyTorch's signature; the result is always a new tensor."""

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class ReLU(_Inplace):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return F.relu(x)


class LeakyReLU(_Inplace):
    """max(x, 0) + negative_slope min(x, 0)."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, x):
        return F.leaky_relu(x, negative_slope=self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace
                                                           else "")


class Softmax(Module):
    """softmax along ``dim`` (``F.softmax``); without one, PyTorch's legacy choice: dim 0 for
    0-, 1- and 3-D input, else 1."""
    repr_fields = ("dim",)
    _fn = staticmethod(F.softmax)

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        dim = self.dim if self.dim is not None else 0 if x.ndim in (0, 1, 3) else 1
        return self._fn(x, dim)


class LogSoftmax(Softmax):
    """log_softmax along ``dim`` (``F.log_softmax``); ``dim`` as :class:`Softmax`'s."""
    _fn = staticmethod(F.log_softmax)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Identity(Module):
    def forward(self, x):
        return x


class Flatten(Module):
    """Merge dims start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) by default."""
    repr_fields = ("start_dim", "end_dim")

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        shape = tuple(x.shape)
        s, e = self.start_dim % len(shape), self.end_dim % len(shape)
        if s > e:
            raise ValueError(f"Flatten: start_dim {self.start_dim} comes after end_dim "
                             f"{self.end_dim} for input shape {shape}")
        return F.reshape(x, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


class Unflatten(Module):
    """Split dim ``dim`` into ``unflattened_size``: Unflatten(1, (1, 28, 28)) maps
    (N, 784) -> (N, 1, 28, 28)."""
    repr_fields = ("dim", "unflattened_size")

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x):
        shape = tuple(x.shape)
        d = self.dim % len(shape)
        sizes = self.unflattened_size
        if -1 not in sizes and math.prod(sizes) != shape[d]:
            raise ValueError(f"Unflatten: dim {self.dim} of input shape {shape} has size "
                             f"{shape[d]}, which is not the product of {sizes}")
        return F.reshape(x, shape[:d] + sizes + shape[d + 1:])


# ---- losses ---------------------------------------------------------------------------
class _Loss(Module):
    """A loss module: ``forward(input, target)`` calls its functional form with the options
    given at construction (PyTorch's names; legacy ``size_average``/``reduce`` honoured)."""

    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        self.reduction = F._reduction(size_average, reduce, reduction)

    def _weights(self, **named):
        for name, w in named.items():
            self.register_buffer(name, w)


class MSELoss(_Loss):
    """Mean squared error (``F.mse_loss``)."""

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class BCELoss(_Loss):
    """Binary cross-entropy on probabilities (``F.binary_cross_entropy``, logs clamped at -100
    as PyTorch's); ``weight`` rescales each element."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self._weights(weight=weight)

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits (``F.binary_cross_entropy_with_logits``): the stable
    softplus form; ``pos_weight`` weighs the positive term per class, ``weight`` each element."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self._weights(weight=weight, pos_weight=pos_weight)

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight,
                                                  reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class NLLLoss(_Loss):
    """Negative log-likelihood of class indices given log-probabilities (``F.nll_loss``)."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self._weights(weight=weight)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits against class indices or probabilities
    (``F.cross_entropy``: ``weight``, ``ignore_index``, ``label_smoothing``)."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0):
        super().__init__(size_average, reduce, reduction)
        self._weights(weight=weight)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)
