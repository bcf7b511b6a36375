"""MNIST from the four standard IDX files (gzipped or not), with checksums and download.

Folder layout (``root``)::

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]   (split='train')
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]    (split='test')

A folder holding only one split works for that split. A ``.gz`` file is accepted when its
bytes have the official gzip MD5 *or* its decompressed content has the official uncompressed
MD5 (a mirror or a re-packed copy compresses the same content to other bytes); a sum listed for
either name in the folder's ``MD5SUMS`` (``md5sum`` format) counts as official too. Both sums
come from one read of the file. Uncompressed files are checked against ``MD5SUMS`` when it lists
them, and otherwise only by strict IDX validation (magic, dims, exact payload length).
"""
import hashlib
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from .arrays import DatasetError

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# MD5 of the official gzipped files.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# MD5 of the official files' decompressed content.
MNIST_CONTENT_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
DOWNLOAD_TIMEOUT = 10.0  # seconds, per connection attempt / read

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
# IDX type byte -> big-endian dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_urlopen = urllib.request.urlopen  # the one network entry point (tests replace it)


def default_root():
    """``$SCRATCHGEN_DATA/mnist`` if ``SCRATCHGEN_DATA`` is set, else ``~/.cache/scratchgen/mnist``."""
    base = os.environ.get("SCRATCHGEN_DATA")
    if base:
        if not Path(base).expanduser().is_dir():  # a typo must not create folders
            raise DatasetError(f"SCRATCHGEN_DATA={base}: no such folder; create it (MNIST is "
                               "kept in its mnist/ folder) or unset it")
        return Path(base).expanduser() / "mnist"
    return Path.home() / ".cache" / "scratchgen" / "mnist"


def _read_md5sums(folder):
    """Parse ``folder/MD5SUMS`` (``<hex>  <name>`` or ``<hex> *<name>`` lines) into a dict."""
    path = Path(folder) / "MD5SUMS"
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and len(parts[0]) == 32:
            sums[parts[1].lstrip("*").strip()] = parts[0].lower()
    return sums


def parse_idx(data, name="<bytes>", expected_magic=None):
    """Decode IDX bytes: a 4-byte magic ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32
    dims, then exactly ``prod(dims) * itemsize`` bytes of payload."""
    if len(data) < 4:
        raise DatasetError(f"{name}: {len(data)} bytes is too short for an IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    if expected_magic is not None and magic != expected_magic:
        raise DatasetError(
            f"{name}: bad IDX magic number 0x{magic:08X}, expected 0x{expected_magic:08X}")
    zero, dtype_code, ndim = magic >> 16, (magic >> 8) & 0xFF, magic & 0xFF
    if zero != 0 or dtype_code not in _IDX_DTYPES or ndim == 0:
        raise DatasetError(f"{name}: not an IDX file (magic number 0x{magic:08X})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(
            f"{name}: truncated IDX header: expected {header} bytes for {ndim} dims, "
            f"found {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "pixel data" if ndim == 3 else "label data" if ndim == 1 else "data"
        raise DatasetError(
            f"{name}: expected {expected} bytes of {what} for dims {tuple(dims)}, found {found}"
            + (" (file truncated)" if found < expected else " (trailing bytes)"))
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _read_hashed(path):
    """``(content, md5 of the file's bytes, md5 of the content)`` in one read; the content is
    the gunzipped stream for a ``.gz`` name, the bytes themselves otherwise."""
    path = Path(path)
    raw_md5, content_md5, parts = hashlib.md5(), hashlib.md5(), []
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if path.suffix == ".gz" else None
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                raw_md5.update(block)
                if inflate is not None:
                    block = inflate.decompress(block)
                content_md5.update(block)
                parts.append(block)
        if inflate is not None:
            tail = inflate.flush()
            content_md5.update(tail)
            parts.append(tail)
            if not inflate.eof:
                raise EOFError("compressed stream ends early")
    except (EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: corrupted or truncated gzip file ({e})") from e
    return b"".join(parts), raw_md5.hexdigest(), content_md5.hexdigest()


def read_idx(path, expected_magic=None):
    """Read an IDX file, gunzipping it when its name ends in ``.gz``."""
    return parse_idx(_read_hashed(path)[0], str(path), expected_magic)


def _locate(root, name):
    for candidate in (root / (name + ".gz"), root / name):
        if candidate.is_file():
            return candidate
    return None


def _read_verified(path, sums, expected_magic, check_md5=True):
    """Read ``path`` as IDX after checking its MD5s (module docstring)."""
    data, raw_md5, content_md5 = _read_hashed(path)
    if check_md5:
        stem = path.name[:-3] if path.suffix == ".gz" else path.name
        want_raw = {MNIST_MD5.get(path.name), sums.get(path.name)} - {None}
        want_content = {MNIST_CONTENT_MD5.get(stem), sums.get(stem)} - {None}
        if path.suffix != ".gz":
            want_raw, want_content = set(), {sums.get(path.name)} - {None}
        if (want_raw or want_content) and raw_md5 not in want_raw \
                and content_md5 not in want_content:
            checks = []
            if want_raw:
                checks.append(f"its bytes have MD5 {raw_md5}, expected {' or '.join(sorted(want_raw))}")
            if path.suffix == ".gz" and want_content:
                checks.append(f"its decompressed content has MD5 {content_md5}, expected "
                              f"{' or '.join(sorted(want_content))}")
            elif want_content:
                checks.append(f"its MD5 is {content_md5}, expected "
                              f"{' or '.join(sorted(want_content))} (MD5SUMS)")
            raise DatasetError(
                f"MD5 mismatch for {path}: {'; '.join(checks)}. The file is corrupted or is not "
                f"the official MNIST file; delete it and download it again.")
    return parse_idx(data, str(path), expected_magic)


def download_file(url, dest, md5=None, timeout=DOWNLOAD_TIMEOUT):
    """Download ``url`` to ``dest`` atomically (temp file + rename), with a tqdm bar;
    checks ``md5`` before the rename."""
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out, _urlopen(url, timeout=timeout) as resp:
            total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                      desc=dest.name, leave=False) as bar:
                for block in iter(lambda: resp.read(1 << 16), b""):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
        if md5 is not None and h.hexdigest() != md5:
            raise DatasetError(
                f"MD5 mismatch for {url}: expected {md5}, got {h.hexdigest()}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def _download_missing(root, names):
    """Fetch ``<name>.gz`` for each name from the mirrors; return {name: error} for failures."""
    failures = {}
    for name in names:
        fname = name + ".gz"
        errors = []
        for mirror in MIRRORS:
            try:
                download_file(mirror + fname, root / fname, md5=MNIST_MD5[fname])
                break
            except (urllib.error.URLError, OSError, DatasetError, ValueError) as e:
                errors.append(None if _unreachable(e) else f"{mirror}: {getattr(e, 'reason', e)}")
        else:
            failures[name] = "; ".join(e for e in errors if e) or None
    return failures


def _unreachable(e):
    """True for "no network" failures (DNS, refused, timeout), whose details help nobody."""
    reason = getattr(e, "reason", e) if isinstance(e, urllib.error.URLError) else e
    return isinstance(reason, (OSError, TimeoutError)) and not isinstance(reason, FileNotFoundError)


def _missing_message(root, split, names, reason):
    lines = [f"MNIST {split!r} split: missing {', '.join(names)} in {root}."]
    if reason:
        lines.append(f"Download failed ({reason}).")
    lines.append(f"Put these files (gzipped, or uncompressed without .gz) in {root}:")
    lines += [f"  {n}.gz  (MD5 {MNIST_MD5[n + '.gz']})" for n in names]
    lines.append("or point to a folder holding them: --data-dir <folder> (command line), "
                 "root=<folder> (Python), or SCRATCHGEN_DATA=<dir> (files in <dir>/mnist).")
    return "\n".join(lines)


def load_mnist(root=None, split="train", download=True, check_md5=True):
    """Load an MNIST split as ``(images uint8 (N,28,28), labels uint8 (N,))``.

    Missing files are downloaded into ``root`` when ``download`` is true; if that is
    impossible (offline, checksum mismatch) a :class:`DatasetError` names the files and
    the folder. ``check_md5=False`` skips checksums (IDX validation stays strict).
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {', '.join(MNIST_FILES)}, got {split!r}")
    root = Path(root).expanduser() if root is not None else default_root()
    names = MNIST_FILES[split]
    missing = [n for n in names if _locate(root, n) is None]
    if missing:
        if not download:
            raise DatasetError(_missing_message(root, split, missing, "download=False"))
        try:
            root.mkdir(parents=True, exist_ok=True)
            failures = _download_missing(root, missing)
        except OSError as e:
            failures = {n: f"cannot create {root}: {e}" for n in missing}
        if failures:
            reason = "; ".join(f"{n}: {r}" for n, r in failures.items() if r) or \
                "no network: the mirrors could not be reached"
            raise DatasetError(_missing_message(root, split, list(failures), reason))
    paths = [_locate(root, n) for n in names]
    sums = _read_md5sums(root) if check_md5 else {}
    images = _read_verified(paths[0], sums, IMAGES_MAGIC, check_md5)
    labels = _read_verified(paths[1], sums, LABELS_MAGIC, check_md5)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DatasetError(
            f"{paths[0]}: expected uint8 images of shape (N, 28, 28), "
            f"got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(f"{paths[1]}: expected uint8 labels of shape (N,), got {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(
            f"{root}: {paths[0].name} holds {len(images)} images but {paths[1].name} holds "
            f"{len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{paths[1]}: label {int(labels.max())} out of range 0..9")
    return images, labels
