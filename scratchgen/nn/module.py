"""``Module`` and ``Parameter``, and the containers ``Sequential`` and ``ModuleList``.

Assigning a :class:`Parameter` or a :class:`Module` to an attribute registers it; buffers
(non-trained state such as BatchNorm's running statistics) are registered with
:meth:`Module.register_buffer`. Names are dotted paths, as in PyTorch: ``'0.weight'``,
``'encoder.fc.bias'``.

**state_dict**: a flat ``dict`` from dotted name to the backend array of every parameter and
persistent buffer (parameters first, then buffers, then submodules, in registration order).
The arrays *are* the module's storage, as PyTorch's tensors are: save them (``sg.save``) or
copy them to keep a snapshot. :meth:`Module.load_state_dict` copies values (backend or NumPy
arrays, or Tensors) into the existing arrays, so optimisers keep working.

>>> import scratchgen as sg
>>> net = sg.nn.Sequential(sg.nn.Linear(2, 3), sg.nn.ReLU(), sg.nn.BatchNorm1d(3))
>>> list(net.state_dict())  # doctest: +NORMALIZE_WHITESPACE
['0.weight', '0.bias', '2.weight', '2.bias', '2.running_mean', '2.running_var',
 '2.num_batches_tracked']
"""
from collections import namedtuple

from scratchgen import backend
from scratchgen.autograd.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (``requires_grad=True`` by default).

    Python numbers and lists become float32; backend arrays keep their dtype; a Tensor's
    array is shared, not copied.
    """

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = backend.xp.empty((0,), dtype=backend.xp.float32)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _as_array(value):
    if isinstance(value, Tensor):
        return value.array
    return backend.asarray(value)


def _addindent(s, n):
    lines = s.split("\n")
    return lines[0] + "".join("\n" + " " * n + line for line in lines[1:])


class Module:
    """Base class of layers and models: override ``forward``; call the module to run it."""

    training = True

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # ---- registration ---------------------------------------------------------------
    def _registry(self, kind):
        d = self.__dict__.get(kind)
        if d is None:
            raise AttributeError(f"cannot register on {type(self).__name__} before "
                                 "Module.__init__() has run: call super().__init__() first")
        return d

    def __setattr__(self, name, value):
        d = self.__dict__
        if isinstance(value, Parameter):
            self._unset(name)
            self._registry("_parameters")[name] = value
        elif isinstance(value, Module):
            self._unset(name)
            self._registry("_modules")[name] = value
        elif name in d.get("_parameters", ()):
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} to parameter {name!r} "
                                f"of {type(self).__name__}: use nn.Parameter (or None)")
            self._parameters[name] = None
        elif name in d.get("_buffers", ()):
            if value is not None and not isinstance(value, Tensor):
                value = Tensor(backend.asarray(value))
            self._buffers[name] = value
        elif name in d.get("_modules", ()):
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} to submodule {name!r} "
                                f"of {type(self).__name__}: use an nn.Module (or None)")
            self._modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def _unset(self, name):
        d = self.__dict__
        for kind in ("_parameters", "_buffers", "_modules"):
            d.get(kind, {}).pop(name, None)
        d.get("_non_persistent", set()).discard(name)
        d.pop(name, None)

    def __getattr__(self, name):  # only called when normal lookup fails
        d = self.__dict__
        for kind in ("_parameters", "_buffers", "_modules"):
            reg = d.get(kind)
            if reg is not None and name in reg:
                return reg[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        d = self.__dict__
        if any(name in d.get(k, ()) for k in ("_parameters", "_buffers", "_modules")):
            self._unset(name)
        else:
            object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter({name!r}): expected an nn.Parameter or None, "
                            f"got {type(param).__name__}")
        self._unset(name)
        self._registry("_parameters")[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """A named non-trained tensor (in ``state_dict`` unless ``persistent=False``)."""
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(backend.asarray(tensor))
        self._unset(name)
        self._registry("_buffers")[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module({name!r}): {type(module).__name__} is not a Module")
        self._unset(name)
        self._registry("_modules")[name] = module

    # ---- traversal ------------------------------------------------------------------
    def named_modules(self, prefix="", _memo=None):
        """(name, module) for this module and every descendant, each once."""
        memo = set() if _memo is None else _memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named(self, kind, prefix, recurse):
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, t in getattr(m, kind).items():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{mprefix}.{name}" if mprefix else name), t

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter), each shared parameter once."""
        return self._named("_parameters", prefix, recurse)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        return self._named("_buffers", prefix, recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call ``fn`` on every submodule (children first) and on self; returns self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- state ----------------------------------------------------------------------
    def state_dict(self, prefix=""):
        """Flat dict dotted name -> backend array (shared with the module; see module doc)."""
        out = {}
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p.array
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                out[prefix + name] = b.array
        for name, m in self._modules.items():
            if m is not None:
                out.update(m.state_dict(prefix + name + "."))
        return out

    def _state_tensors(self):
        """The Tensors behind :meth:`state_dict`, by the same names."""
        out = {}
        for mprefix, m in self.named_modules():
            pre = mprefix + "." if mprefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    out.setdefault(pre + name, p)
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out.setdefault(pre + name, b)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy ``state_dict``'s values into this module's parameters and buffers, in place.

        Values may be backend or NumPy arrays or Tensors (what ``sg.load`` returns); they are
        cast to each target's dtype. Wrong shapes, and with ``strict`` missing or unexpected
        keys, raise one ``RuntimeError`` naming every offending key; nothing is copied then.
        Returns ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict expects a dict, got {type(state_dict).__name__}")
        own = self._state_tensors()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems, values = [], {}
        for k, t in own.items():
            if k not in state_dict:
                continue
            try:
                v = _as_array(state_dict[k])
            except Exception as e:  # noqa: BLE001 (reported with its key below)
                problems.append(f"{k!r}: cannot convert a {type(state_dict[k]).__name__} to an "
                                f"array ({e})")
                continue
            if tuple(v.shape) != tuple(t.shape):
                problems.append(f"{k!r}: checkpoint has shape {tuple(v.shape)}, "
                                f"model has {tuple(t.shape)}")
            else:
                values[k] = v
        if strict:
            if missing:
                problems.insert(0, "missing keys: " + ", ".join(map(repr, missing)))
            if unexpected:
                problems.insert(1 if missing else 0,
                                "unexpected keys: " + ", ".join(map(repr, unexpected)))
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n  "
                               + "\n  ".join(problems))
        for k, v in values.items():
            own[k].array[...] = v.astype(own[k].dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # ---- modes, gradients, dtypes ---------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor._wrap(backend.xp.zeros_like(p.array))

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def to(self, *args, **kwargs):
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)``: the device is checked against
        the backend (nothing moves, see :mod:`scratchgen.devices`); a floating-point dtype casts
        parameters, their gradients and buffers in place."""
        from scratchgen import devices as D
        _, dtype = D.parse_to(args, kwargs, "module")
        if dtype is None:
            return self
        dtype = backend.xp.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"Module.to: {dtype} is not a floating-point dtype")
        for t in list(self.parameters()) + list(self.buffers()):
            if t.array.dtype.kind == "f":
                t.array = t.array.astype(dtype, copy=False)
                if t.grad is not None:
                    t.grad = Tensor._wrap(t.grad.array.astype(dtype, copy=False))
        return self

    def cuda(self, device=None):
        return self.to("cuda" if device is None else device)

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.to("float32")

    def double(self):
        return self.to("float64")

    # ---- calling and printing -------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    repr_fields = ()  # attributes shown by the default extra_repr, as name=value

    def extra_repr(self):
        return ", ".join(f"{k}={getattr(self, k)}" for k in self.repr_fields)

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({k}): {_addindent(repr(m), 2)}" for k, m in self._modules.items()]
        lines = extra_lines + child_lines
        s = type(self).__name__ + "("
        if len(extra_lines) == 1 and not child_lines:
            s += extra_lines[0]
        elif lines:
            s += "\n  " + "\n  ".join(lines) + "\n"
        return s + ")"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))


class _ModuleSequence(Module):
    """Children registered as '0', '1', ... in order."""

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self


class Sequential(_ModuleSequence):
    """Modules applied in order; indexable (``seq[0]``, ``seq[1:]``), ``len`` and iterable.

    Children are named ``'0'``, ``'1'``, ..., or by the keys of a dict passed alone.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            for name, m in modules[0].items():
                self.add_module(str(name), m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def _index(self, idx):
        n = len(self._modules)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range for {type(self).__name__} of "
                             f"length {n}")
        return idx % n

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(dict(items[idx]))
        return items[self._index(idx)][1]


    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(_ModuleSequence):
    """A list of modules, registered as ``'0'``, ``'1'``, ...; no forward of its own."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(mods[idx])
        return mods[idx]


    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self
