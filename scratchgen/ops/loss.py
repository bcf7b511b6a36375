"""Loss primitives whose PyTorch gradient is not the derivative of a composite.

``binary_cross_entropy(x, y)`` on probabilities: PyTorch clamps each log at -100 in the
forward but does not differentiate the clamp; its gradient in x is
(x - y) / max(x (1 - x), 1e-12), finite at x = 0 and 1. Written as a primitive so the
values and gradients are PyTorch's, with both VJPs in differentiable ops (second order works).
"""
import numpy

from scratchgen import backend
from scratchgen.autograd.graph import primitive
from scratchgen.ops.elementwise import sub, mul, div, log, clip, maximum

EPS = float(numpy.float32(1e-12))  # PyTorch's lower bound on x (1 - x) in the gradient (a C float)
LOG_MIN = -100.0  # PyTorch's clamp of each log


@primitive
def binary_cross_entropy(x, y):
    """-(y max(log x, -100) + (1 - y) max(log(1 - x), -100)), elementwise; x, y in [0, 1].

    d/dx = (x - y) / max(x (1 - x), 1e-12);  d/dy = max(log(1 - x), -100) - max(log x, -100).
    """
    xp = backend.xp
    with backend.errstate(divide="ignore"):
        lx = xp.maximum(xp.log(x), LOG_MIN)
        l1 = xp.maximum(xp.log1p(-x), LOG_MIN)
    return (y - 1) * l1 - y * lx


binary_cross_entropy.defvjp(
    lambda g, ans, x, y: div(mul(g, sub(x, y)), maximum(mul(x, sub(1.0, x)), EPS)),
    lambda g, ans, x, y: mul(g, sub(clip(log(sub(1.0, x)), LOG_MIN), clip(log(x), LOG_MIN))))
