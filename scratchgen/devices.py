"""Devices as PyTorch names them, for code written for PyTorch: no-ops that tell the truth.

The array library is chosen once per process (:mod:`scratchgen.backend`): the ``cpu`` and
``numpy`` backends hold every tensor in host memory (device ``"cpu"``), the ``cuda`` backend
holds every tensor on the GPU (device ``"cuda"``). So ``.to(device)``, ``.cuda()``, ``.cpu()``
and ``device=`` copy nothing: they check that the device named is the process's device and
return the tensor or module itself. Naming the other device is one error that says how to
switch backends.

>>> import scratchgen as sg
>>> dev = sg.device("cuda" if sg.cuda.is_available() else "cpu")
>>> sg.zeros(2, device=dev).device == dev
True
"""
from scratchgen import backend


class device:
    """``torch.device``: a type ('cpu' or 'cuda') and an optional index (0 is the only one)."""

    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        if isinstance(type, device):
            type, index = type.type, type.index if index is None else index
        if isinstance(type, int):
            type, index = "cuda", type
        if not isinstance(type, str):
            raise TypeError(f"device() expects a string such as 'cpu' or 'cuda:0', got "
                            f"{type!r}")
        name, _, idx = type.partition(":")
        if name not in ("cpu", "cuda"):
            raise ValueError(f"device type must be 'cpu' or 'cuda', got {type!r}")
        if idx:
            if not idx.isdigit() or index is not None:
                raise ValueError(f"invalid device string {type!r}")
            index = int(idx)
        self.type, self.index = name, index

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return (isinstance(other, device) and self.type == other.type
                and (self.index or 0) == (other.index or 0))

    def __hash__(self):
        return hash((self.type, self.index or 0))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        idx = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{idx})"


def current():
    """The process's device: cuda on the cuda backend, else cpu."""
    return device("cuda") if backend.name == "cuda" else device("cpu")


def check(dev, what="tensor"):
    """``dev`` (str, device, int or None) as a device; it must be the process's device."""
    if dev is None:
        return current()
    d = device(dev)
    here = current()
    if d.type != here.type or (d.index or 0) != 0:
        how = ("SCRATCHGEN_BACKEND=cuda (or --backend cuda) on a machine with a GPU"
               if d.type == "cuda" else "SCRATCHGEN_BACKEND=cpu (or --backend cpu)")
        raise RuntimeError(f"cannot move a {what} to {d}: this process runs the "
                           f"{backend.name!r} backend, whose only device is {here}; tensors "
                           f"never change device in scratchgen: set {how} before it starts")
    return d


class _Cuda:
    """``torch.cuda``'s queries: true exactly when the cuda backend runs."""

    @staticmethod
    def is_available():
        return backend.name == "cuda"

    @staticmethod
    def device_count():
        return 1 if backend.name == "cuda" else 0

    @staticmethod
    def manual_seed(seed):
        from scratchgen.nn.init import manual_seed
        manual_seed(seed)

    manual_seed_all = manual_seed

    @staticmethod
    def synchronize(device=None):
        if backend.name == "cuda":
            backend.synchronize()


class _Accelerator:
    """``torch.accelerator``: the cuda backend's GPU, or none."""

    @staticmethod
    def is_available():
        return backend.name == "cuda"

    @staticmethod
    def current_accelerator(check_available=False):
        return device("cuda") if backend.name == "cuda" else None

    @staticmethod
    def device_count():
        return 1 if backend.name == "cuda" else 0


cuda = _Cuda()
accelerator = _Accelerator()


def parse_to(args, kwargs, what):
    """``.to(...)``'s arguments as (device, dtype or None); the device is checked."""
    dev = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None), kwargs.pop("copy", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword argument(s) {sorted(kwargs)}")
    for a in args:
        if isinstance(a, device) or (isinstance(a, int) and not isinstance(a, bool)) or (
                isinstance(a, str) and a.partition(":")[0] in ("cpu", "cuda")):
            dev = a
        elif not isinstance(a, type) and hasattr(a, "requires_grad"):  # a Tensor
            dtype = a.dtype
        elif a is not None:
            dtype = a
    return check(dev, what), dtype
