"""The engine: Tensor, the graph, reverse-mode differentiation and gradient checks.

It knows primitives only; layers and models live elsewhere.
"""
from scratchgen.autograd.graph import (Primitive, primitive, apply, no_grad, enable_grad,
                                       is_grad_enabled, grad, backward)
from scratchgen.autograd.tensor import Tensor, tensor


def Variable(data, requires_grad=False, volatile=False):
    """``torch.autograd.Variable`` (a legacy wrapper since PyTorch 0.4): the tensor itself,
    with ``requires_grad`` set when asked."""
    t = data if isinstance(data, Tensor) else tensor(data)
    if requires_grad:
        t.requires_grad_(True)
    return t
