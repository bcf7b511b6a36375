"""scratchgen: deep generative models from scratch, with an autodiff engine you can read.

>>> import scratchgen as sg
>>> x = sg.tensor([0.5, -1.0], requires_grad=True)
>>> sg.functional.softplus(x).sum().backward()
>>> [round(v, 4) for v in x.grad.tolist()]
[0.6225, 0.2689]
"""
__version__ = "0.1.0"

from scratchgen import backend
from scratchgen.autograd import (Tensor, tensor, grad, no_grad, enable_grad, is_grad_enabled,
                                 Primitive, primitive)
from scratchgen.autograd import methods as _methods  # noqa: F401  (binds operators)
from scratchgen import functional
from scratchgen.autograd.gradcheck import (gradcheck, gradgradcheck, GradcheckError,
                                          numeric_grad)
from scratchgen import nn, optim
from scratchgen.io import save, load, CheckpointError
from scratchgen.nn.init import manual_seed
