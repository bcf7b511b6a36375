"""Neural-network building blocks with PyTorch's names: ``Module``, ``Parameter``, layers,
containers and ``nn.init``.

>>> import scratchgen as sg
>>> sg.manual_seed(0)
>>> net = sg.nn.Sequential(sg.nn.Linear(4, 8), sg.nn.ReLU(), sg.nn.Linear(8, 1))
>>> net(sg.tensor([[0.1, 0.2, 0.3, 0.4]])).shape
(1, 1)
>>> net
Sequential(
  (0): Linear(in_features=4, out_features=8, bias=True)
  (1): ReLU()
  (2): Linear(in_features=8, out_features=1, bias=True)
)
"""
from scratchgen.nn import init
import sys as _sys
from scratchgen import functional  # nn.functional is scratchgen.functional: one module, two
_sys.modules[__name__ + ".functional"] = functional  # names (import scratchgen.nn.functional)
from scratchgen.nn.module import Module, Parameter, Sequential, ModuleList, IncompatibleKeys
from scratchgen.nn.layers import (Linear, Conv2d, ConvTranspose2d, BatchNorm1d, BatchNorm2d,
                                  Dropout, ReLU, LeakyReLU, Sigmoid, Tanh, Identity, Flatten,
                                  Unflatten)
from scratchgen.nn.layers import (Dropout2d, MaxPool2d, AvgPool2d, Softmax, LogSoftmax, MSELoss,
                                  BCELoss, BCEWithLogitsLoss, NLLLoss, CrossEntropyLoss)

__all__ = ["init", "Module", "Parameter", "Sequential", "ModuleList", "IncompatibleKeys",
           "Linear", "Conv2d", "ConvTranspose2d", "BatchNorm1d", "BatchNorm2d", "Dropout",
           "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Identity", "Flatten", "Unflatten",
           "Dropout2d", "MaxPool2d", "AvgPool2d", "Softmax", "LogSoftmax", "MSELoss", "BCELoss",
           "BCEWithLogitsLoss", "NLLLoss", "CrossEntropyLoss"]
