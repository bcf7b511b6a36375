"""PyTorch's checkpoint format (``torch.save``'s zip), read and written without torch and
without running pickled code.

A ``torch.save`` file is a zip holding ``<name>/data.pkl`` (a pickle of the object), one entry
``<name>/data/<key>`` of raw little-endian bytes per storage, and ``byteorder`` / ``version``
records. The pickle names a few torch functions (``torch._utils._rebuild_tensor_v2``,
``_rebuild_parameter``, ``collections.OrderedDict``, ``torch.FloatStorage``...) and refers to
storages by persistent id ``('storage', type, key, location, numel)``.

:func:`load` unpickles with a ``find_class`` that maps exactly those names to reconstructions
here (a tensor is ``as_strided`` over its storage, copied) and refuses every other global
with one :class:`~scratchgen.io.CheckpointError` naming it: a checkpoint that carries code
(``os.system`` in a ``__reduce__``) is refused before anything runs. :func:`save` writes the
same format with a hand-built protocol-2 pickle (plain ``torch.load(path, weights_only=True)``
reads it): dicts, OrderedDicts, lists, tuples, numbers, strings, None and Tensors/arrays.
"""
import collections
import io as _io
import pickle
import struct
import zipfile

import numpy

from scratchgen import backend
from scratchgen.autograd.tensor import Tensor

_STORAGES = {"FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
             "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
             "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool"}
_BY_DTYPE = {numpy.dtype(v): k for k, v in _STORAGES.items()}
_DTYPES = {"float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
           "float16": "float16", "half": "float16", "int64": "int64", "long": "int64",
           "int32": "int32", "int": "int32", "int16": "int16", "int8": "int8", "uint8": "uint8",
           "bool": "bool"}


def is_torch_zip(names):
    """True for a zip listing that holds a torch.save pickle (``<dir>/data.pkl``)."""
    return any(n.endswith("/data.pkl") and n.count("/") == 1 for n in names)


class _StorageType:
    def __init__(self, name):
        self.name, self.dtype = name, numpy.dtype(_STORAGES[name])


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    item = storage.dtype.itemsize
    n = storage.size
    if all(size) and storage_offset + sum((s - 1) * st for s, st in zip(size, stride)) >= n:
        raise ValueError(f"tensor of size {tuple(size)} overruns its storage of {n} elements")
    view = numpy.lib.stride_tricks.as_strided(storage[storage_offset:], tuple(size),
                                              tuple(st * item for st in stride))
    return Tensor(backend.asarray(numpy.array(view, order="C")),
                  requires_grad=bool(requires_grad))


def _rebuild_parameter(data, requires_grad, backward_hooks, *state):
    from scratchgen.nn.module import Parameter
    return Parameter(data.array, requires_grad=bool(requires_grad))


_ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, zf, prefix, path):
        super().__init__(file)
        self.zf, self.prefix, self.path, self.storages = zf, prefix, path, {}

    def find_class(self, module, name):
        from scratchgen.io import CheckpointError
        if (module, name) in _ALLOWED:
            return _ALLOWED[module, name]
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        if module == "torch" and name in _DTYPES:
            return numpy.dtype(_DTYPES[name])
        if module == "torch" and name.endswith("Storage"):
            raise CheckpointError(self.path, f"torch.{name} tensors are not supported (NumPy "
                                             "has no such dtype); convert them before saving")
        raise CheckpointError(self.path, f"the pickle names {module}.{name}, which is not "
                                         "data: refused without running it (only tensors, "
                                         "dicts, lists, numbers and strings load; save a "
                                         "state_dict())")

    def persistent_load(self, pid):
        from scratchgen.io import CheckpointError
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise CheckpointError(self.path, f"unknown persistent id {pid!r:.80}")
        _, stype, key, _location, numel = pid
        if key not in self.storages:
            raw = self.zf.read(f"{self.prefix}/data/{key}")
            if len(raw) < numel * stype.dtype.itemsize:
                raise CheckpointError(self.path, f"storage {key} holds {len(raw)} bytes, "
                                                 f"fewer than {numel} {stype.dtype} elements")
            self.storages[key] = numpy.frombuffer(raw, stype.dtype, numel)
        return self.storages[key]


def load(path, zf):
    """The object in a torch.save zip ``zf`` (already open), Tensors on the active backend."""
    from scratchgen.io import CheckpointError
    names = zf.namelist()
    pkl = next(n for n in names if n.endswith("/data.pkl") and n.count("/") == 1)
    prefix = pkl.split("/")[0]
    order = f"{prefix}/byteorder"
    if order in names and zf.read(order).strip() != b"little":
        raise CheckpointError(path, "a big-endian torch checkpoint is not supported")
    try:
        return _Unpickler(_io.BytesIO(zf.read(pkl)), zf, prefix, path).load()
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 (malformed pickle, CRC errors, missing storages)
        raise CheckpointError(path, f"corrupted torch checkpoint ({type(e).__name__}: "
                                    f"{e})") from e


# ---- writing: protocol 2 by hand (no torch import, nothing pickled by reference) --------
class _Writer:
    def __init__(self):
        self.out, self.storages = _io.BytesIO(), []

    def w(self, b):
        self.out.write(b)

    def str(self, s):
        b = s.encode("utf-8")
        self.w(b"X" + struct.pack("<I", len(b)) + b)

    def int(self, i):
        if 0 <= i < 256:
            self.w(b"K" + bytes([i]))
        elif -2 ** 31 <= i < 2 ** 31:
            self.w(b"J" + struct.pack("<i", i))
        else:
            b = i.to_bytes((i.bit_length() + 8) // 8, "little", signed=True)
            self.w(b"\x8a" + bytes([len(b)]) + b)

    def tuple(self, items, where):
        self.w(b"(")
        for x in items:
            self.obj(x, where)
        self.w(b"t")

    def ordered_dict_call(self):
        self.w(b"ccollections\nOrderedDict\n)R")

    def tensor(self, arr, where):
        host = numpy.array(backend.to_numpy(arr), order="C")
        name = _BY_DTYPE.get(host.dtype)
        if name is None:
            raise TypeError(f"cannot save a {host.dtype} array at {where} in torch format")
        key = str(len(self.storages))
        self.storages.append(host.astype(host.dtype.newbyteorder("<"), copy=False).tobytes())
        self.w(b"ctorch._utils\n_rebuild_tensor_v2\n(")
        self.w(b"(")
        self.str("storage")
        self.w(f"ctorch\n{name}\n".encode())
        self.str(key)
        self.str("cpu")
        self.int(host.size)
        self.w(b"tQ")
        self.int(0)
        self.tuple(host.shape, where)
        strides = [st // host.itemsize for st in host.strides] if host.size else [0] * host.ndim
        self.tuple(strides, where)
        self.w(b"\x89")
        self.ordered_dict_call()
        self.w(b"tR")

    def obj(self, x, where):
        if x is None:
            self.w(b"N")
        elif isinstance(x, bool):
            self.w(b"\x88" if x else b"\x89")
        elif isinstance(x, (int, numpy.integer)):
            self.int(int(x))
        elif isinstance(x, (float, numpy.floating)):
            self.w(b"G" + struct.pack(">d", float(x)))
        elif isinstance(x, str):
            self.str(x)
        elif isinstance(x, Tensor):
            self.tensor(x.array, where)
        elif isinstance(x, numpy.ndarray) or backend.is_array(x):
            self.tensor(x, where)
        elif isinstance(x, dict):
            if isinstance(x, collections.OrderedDict):
                self.ordered_dict_call()
            else:
                self.w(b"}")
            if x:
                self.w(b"(")
                for k, v in x.items():
                    if not isinstance(k, (str, int)):
                        raise TypeError(f"cannot save a dict key {k!r} at {where} in torch "
                                        "format: keys must be str or int")
                    self.obj(k, where)
                    self.obj(v, f"{where}[{k!r}]")
                self.w(b"u")
        elif isinstance(x, list):
            self.w(b"]")
            if x:
                self.w(b"(")
                for i, v in enumerate(x):
                    self.obj(v, f"{where}[{i}]")
                self.w(b"e")
        elif isinstance(x, tuple):
            self.tuple(x, where)
        else:
            raise TypeError(f"cannot save an object of type {type(x).__name__} at {where} in "
                            "torch format (dicts, lists, tuples, numbers, str and tensors)")


def write(obj, f, name="archive"):
    """Write ``obj`` to the binary file ``f`` as ``torch.save`` would (uncompressed zip,
    storages aligned to 64 bytes as torch's writer does)."""
    wr = _Writer()
    wr.w(b"\x80\x02")
    wr.obj(obj, "obj")
    wr.w(b".")
    records = [("data.pkl", wr.out.getvalue()), ("byteorder", b"little")]
    records += [(f"data/{i}", b) for i, b in enumerate(wr.storages)]
    records += [("version", b"3\n")]
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        for rec, data in records:
            info = zipfile.ZipInfo(f"{name}/{rec}", date_time=(1980, 1, 1, 0, 0, 0))
            header = 30 + len(info.filename.encode())
            pad = -(f.tell() + header + 4) % 64
            info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # 'FB' padding field
            zf.writestr(info, data)
