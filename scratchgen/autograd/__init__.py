"""The engine: Tensor, the graph, reverse-mode differentiation and gradient checks.

It knows primitives only; layers and models live elsewhere.
"""
from scratchgen.autograd.graph import (Primitive, primitive, apply, no_grad, enable_grad,
                                       is_grad_enabled, grad, backward)
from scratchgen.autograd.tensor import Tensor, tensor
