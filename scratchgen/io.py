"""Checkpoints: ``save(obj, path)`` and ``load(path)`` for nested containers of arrays.

Supported: dicts (keys str, int, float, bool or None), lists, tuples, Tensors and
Parameters, backend arrays, NumPy arrays and scalars, NumPy Generators, and plain values
(int of any size, float, str, bool, None).

Format: an uncompressed ``.npz`` (zip) with one entry per array (``a0``, ``a1``, ...) and
three more: ``__magic__`` (``"scratchgen-checkpoint"``), ``__version__`` and
``__structure__``, a JSON string describing the tree, where containers and arrays are
tagged ``{"t": "dict" | "list" | "tuple" | "array" | "tensor" | ...}`` and plain values
stand for themselves (JSON keeps big ints exact). It is read with ``allow_pickle=False``:
loading never runs code. The file is written exactly at ``path`` (no suffix is added).

What comes back: Tensors as Tensors (Parameters as Parameters) on the active backend;
arrays that were on the GPU as backend arrays (so a GPU checkpoint loads on a CPU backend,
and back); NumPy arrays as NumPy arrays. ``Module.load_state_dict`` and
``Optimizer.load_state_dict`` accept either kind.

Writes are atomic: a temporary file in the target's directory is written, flushed and
fsynced, then renamed over ``path`` (and the directory fsynced), so a crash leaves either
the old checkpoint or the new one.

Errors: a file that is not a readable scratchgen checkpoint (truncated, corrupted, another
program's ``.npz``, not a zip) raises :class:`CheckpointError`, an ``OSError``, naming the
file and what is wrong; a missing file raises ``FileNotFoundError`` (also an ``OSError``);
an object that cannot be saved raises ``TypeError`` naming where it sits, e.g.
``obj['model'][2]``.

>>> import os, tempfile, scratchgen as sg
>>> path = os.path.join(tempfile.mkdtemp(), 'ckpt.npz')
>>> sg.save({'w': sg.tensor([1.0, 2.0]), 'step': 3, 'name': 'vae'}, path)
>>> ck = sg.load(path)
>>> ck['w'].tolist(), ck['step'], ck['name']
([1.0, 2.0], 3, 'vae')
"""
import json
import os
import tempfile
import zipfile

import numpy

from scratchgen import backend
from scratchgen.autograd.tensor import Tensor
from scratchgen import torchfile

MAGIC = "scratchgen-checkpoint"
VERSION = 1
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def user_cache_dir(name):
    """The per-user cache folder ``$XDG_CACHE_HOME/scratchgen/<name>`` (default
    ``~/.cache/scratchgen/<name>``); not created here."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "scratchgen", name)


def _umask():
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


class CheckpointError(OSError):
    """A file is not a readable scratchgen checkpoint; ``.path`` is the file."""

    def __init__(self, path, problem):
        super().__init__(f"cannot load checkpoint {os.fspath(path)!r}: {problem}")
        self.path = os.fspath(path)


# ---- encoding -------------------------------------------------------------------------
def _is_device_array(x):
    return backend.on_gpu and backend.is_array(x)


class _Encoder:
    def __init__(self):
        self.arrays = {}

    def _array(self, a, where):
        host = backend.to_numpy(a)
        if host.dtype.hasobject:
            raise TypeError(f"cannot save an object array at {where}: only numeric, bool and "
                            "string arrays are supported")
        key = f"a{len(self.arrays)}"
        self.arrays[key] = host
        return key

    def encode(self, x, where):
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, int):
            return int(x)
        if isinstance(x, float):
            return float(x)
        if isinstance(x, Tensor):
            from scratchgen.nn.module import Parameter
            return {"t": "parameter" if isinstance(x, Parameter) else "tensor",
                    "key": self._array(x.array, where), "requires_grad": bool(x.requires_grad)}
        if isinstance(x, numpy.ndarray):
            return {"t": "array", "key": self._array(x, where), "device": False}
        if _is_device_array(x):
            return {"t": "array", "key": self._array(x, where), "device": True}
        if isinstance(x, numpy.generic):
            return {"t": "numpy_scalar", "key": self._array(numpy.asarray(x), where)}
        if isinstance(x, dict):
            keys, vals = [], []
            for k, v in x.items():
                if k is not None and not isinstance(k, (str, int, float, bool)):
                    raise TypeError(f"cannot save a dict key of type {type(k).__name__} "
                                    f"({k!r}) at {where}: keys must be str, int, float, bool "
                                    "or None")
                keys.append(k)
                vals.append(self.encode(v, f"{where}[{k!r}]"))
            return {"t": "dict", "k": keys, "v": vals}
        if isinstance(x, (list, tuple)):
            return {"t": "list" if isinstance(x, list) else "tuple",
                    "v": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(x)]}
        if isinstance(x, numpy.random.Generator):
            return {"t": "generator", "state": self.encode(x.bit_generator.state, where)}
        hint = ""
        if hasattr(x, "state_dict"):
            hint = "; save its state_dict() instead"
        raise TypeError(f"cannot save an object of type {type(x).__name__} at {where}{hint}")


def save(obj, path, format="scratchgen"):
    """Write ``obj`` (see the module doc for what it may hold) to ``path``, atomically.

    ``format="torch"`` writes PyTorch's zip format instead (see :mod:`scratchgen.torchfile`),
    which ``torch.load(path, weights_only=True)`` reads: dicts, lists, tuples, numbers,
    strings and tensors only.
    """
    if format not in ("scratchgen", "torch"):
        raise ValueError(f"format must be 'scratchgen' or 'torch', got {format!r}")
    if format == "torch":
        from scratchgen import torchfile
        path = os.fspath(path)
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise FileNotFoundError(f"cannot save checkpoint {path!r}: its directory does "
                                    "not exist")
        stem = os.path.splitext(os.path.basename(path))[0]
        name = "".join(c if c.isalnum() or c in "_-" else "_" for c in stem) or "archive"
        atomic_write(path, lambda f: torchfile.write(obj, f, name))
        return
    enc = _Encoder()
    structure = enc.encode(obj, "obj")
    entries = dict(enc.arrays)
    entries["__magic__"] = numpy.array(MAGIC)
    entries["__version__"] = numpy.array(VERSION)
    entries["__structure__"] = numpy.array(json.dumps(structure))
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save checkpoint {path!r}: directory {directory!r} "
                                "does not exist")
    atomic_write(path, lambda f: numpy.savez(f, **entries))


def atomic_write(path, write):
    """Call ``write(f)`` on a binary temporary file ``.scratchgen-NAME.XXXX.tmp`` beside
    ``path``, flush and fsync it, rename it over ``path`` and fsync the directory: a crash
    leaves the old file or the new one, never a mixture (at worst a stray ``.tmp``, removed on
    failure)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp",
                               prefix=".scratchgen-" + os.path.basename(path) + ".")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- decoding -------------------------------------------------------------------------
class _Decoder:
    def __init__(self, path, npz):
        self.path, self.npz = path, npz

    def _array(self, key):
        if key not in self.npz.files:
            raise CheckpointError(self.path, f"the structure refers to a missing entry {key!r}")
        return self.npz[key]

    def decode(self, node):
        if not isinstance(node, dict):
            if isinstance(node, list):
                raise CheckpointError(self.path, "malformed structure (untagged list)")
            return node
        t = node.get("t")
        if t == "dict":
            return {k: self.decode(v) for k, v in zip(node["k"], node["v"])}
        if t == "list":
            return [self.decode(v) for v in node["v"]]
        if t == "tuple":
            return tuple(self.decode(v) for v in node["v"])
        if t == "array":
            a = self._array(node["key"])
            return backend.asarray(a) if node.get("device") else a
        if t in ("tensor", "parameter"):
            a = backend.asarray(self._array(node["key"]))
            if t == "parameter":
                from scratchgen.nn.module import Parameter
                return Parameter(a, requires_grad=node.get("requires_grad", True))
            return Tensor(a, requires_grad=node.get("requires_grad", False))
        if t == "numpy_scalar":
            return self._array(node["key"])[()]
        if t == "generator":
            state = self.decode(node["state"])
            name = state.get("bit_generator") if isinstance(state, dict) else None
            if name not in _BIT_GENERATORS:
                raise CheckpointError(self.path, f"unknown bit generator {name!r}")
            bg = getattr(numpy.random, name)()
            bg.state = state
            return numpy.random.Generator(bg)
        raise CheckpointError(self.path, f"malformed structure (unknown tag {t!r})")


def load(path, map_location=None, weights_only=True):
    """Read a checkpoint written by :func:`save` (see the module doc for what comes back), or
    a ``torch.save`` file (its tensors become Tensors; nothing in it runs, see
    :mod:`scratchgen.torchfile`). ``map_location`` is checked like a ``device=``;
    ``weights_only`` is always true here."""
    if map_location is not None and not callable(map_location) and not isinstance(
            map_location, dict):
        from scratchgen import devices
        devices.check(map_location, "checkpoint")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(6)
    if not head.startswith(b"PK\x03\x04"):
        what = ("the file is empty" if not head else
                "a single .npy array, not a checkpoint" if head == b"\x93NUMPY" else
                f"not a zip (.npz) archive: it starts with {head!r}")
        raise CheckpointError(path, what)
    try:
        with zipfile.ZipFile(path) as zf:
            if torchfile.is_torch_zip(zf.namelist()):
                return torchfile.load(path, zf)
    except zipfile.BadZipFile as e:
        raise CheckpointError(path, f"truncated or corrupted archive ({e})") from e
    try:
        npz = numpy.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 (zipfile and format errors alike)
        raise CheckpointError(path, f"truncated or corrupted archive ({type(e).__name__}: "
                                    f"{e})") from e
    with npz:
        try:
            files = set(npz.files)
            if "__magic__" not in files or str(npz["__magic__"][()]) != MAGIC:
                raise CheckpointError(path, "an .npz file but not a scratchgen checkpoint "
                                            "(no scratchgen magic entry)")
            version = int(npz["__version__"][()]) if "__version__" in files else None
            if version is None or version > VERSION:
                raise CheckpointError(path, f"format version {version} is not supported "
                                            f"(this scratchgen reads up to {VERSION})")
            if "__structure__" not in files:
                raise CheckpointError(path, "the __structure__ entry is missing")
            structure = json.loads(str(npz["__structure__"][()]))
            return _Decoder(path, npz).decode(structure)
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 (truncated or corrupted entries)
            raise CheckpointError(path, f"corrupted ({type(e).__name__}: {e})") from e
