"""``scratchgen.nn.functional`` is :mod:`scratchgen.functional` itself (one module, two names),
so ``import scratchgen.nn.functional as F`` reads as ``import torch.nn.functional as F``.
(``F is scratchgen.functional``; tests/test_pytorch_style.py checks both import forms).
"""
import sys

from scratchgen import functional as _functional

sys.modules[__name__] = _functional
