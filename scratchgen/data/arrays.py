"""User arrays from ``.npy`` / ``.npz`` files, and the data-layer error type."""
import re
import zipfile
from pathlib import Path

import numpy as np

ARRAY_EXTENSIONS = (".npy", ".npz")


class DatasetError(RuntimeError):
    """A data file is missing, corrupted, truncated, has the wrong checksum or layout."""


def _check_array(arr, path, key=None):
    where = f"{path}" + (f" [{key!r}]" if key is not None else "")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DatasetError(f"{where}: expected a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise DatasetError(f"{where}: expected a real-valued array, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3, 4):
        raise DatasetError(
            f"{where}: expected points (N,D), images (N,H,W) or (N,C,H,W), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise DatasetError(f"{where}: array holds no examples (shape {arr.shape})")
    if arr.shape[0] == 1:
        raise DatasetError(f"{where}: array holds one example (shape {arr.shape}); a model "
                           "needs at least 2 to train and evaluate on")
    if arr.ndim == 4 and arr.shape[1] not in (1, 3):
        hint = ("; it looks like (N, H, W, C): save x.transpose(0, 3, 1, 2)"
                if arr.shape[3] in (1, 3) else "")
        raise DatasetError(f"{where}: images must be (N, C, H, W) with C = 1 or 3 channels, "
                           f"got shape {arr.shape}{hint}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise DatasetError(f"{where}: array contains NaN or infinite values")
    return arr


def split_array_spec(spec):
    """``(path, key)`` of ``'file.npz:key'``; ``(spec, None)`` when there is no ``:key``
    suffix after a ``.npy``/``.npz`` name (or ``spec`` names an existing file as it is).
    The key may hold colons itself (``'runs.npz:run:2'``): the path ends at the last colon
    that leaves an existing ``.npy``/``.npz`` file, else (no such file) at the first colon
    after a ``.npy``/``.npz`` name."""
    text = str(spec)
    if Path(text).expanduser().exists():
        return spec, None
    cuts = [m.end() for m in re.finditer(r"\.np[yz](?=:)", text, re.IGNORECASE)]
    for cut in reversed(cuts):
        if Path(text[:cut]).expanduser().is_file():
            return text[:cut], text[cut + 1:]
    if not cuts:
        return spec, None
    return text[:cuts[0]], text[cuts[0] + 1:]


def load_array(path, key=None):
    """Load a dataset array: points (N,D), images (N,H,W) or (N,C,H,W).

    ``.npy`` holds one array; ``.npz`` may hold several, in which case ``'file.npz:key'``
    (or ``key=``) picks one; with a single array the key may be omitted. Loaded with
    ``allow_pickle=False``; the dtype is kept as stored (uint8 images stay uint8).
    """
    path, spec_key = split_array_spec(path)
    if spec_key is not None:
        if key is not None and key != spec_key:
            raise ValueError(f"{path}: two keys given ({spec_key!r} in the path, key={key!r})")
        if not spec_key:
            raise ValueError(f"{path}: empty key after ':'; write {path}:KEY")
        key = spec_key
    path = Path(path).expanduser()
    ext = path.suffix.lower()
    if ext not in ARRAY_EXTENSIONS:
        raise ValueError(
            f"{path}: unsupported extension {path.suffix or '(none)'!r}; expected one of "
            f"{', '.join(ARRAY_EXTENSIONS)}")
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    if not path.is_file():
        raise DatasetError(f"{path} is not a file")
    if ext == ".npy":
        if key is not None:
            raise ValueError(f"{path}: key {key!r} given but a .npy file holds a single array; "
                             "give the file alone")
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic != b"\x93NUMPY":
            raise DatasetError(f"{path}: not a .npy file (bad magic {magic!r}, expected b'\\x93NUMPY')")
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as e:
            if "pickle" in str(e):
                raise DatasetError(
                    f"{path}: holds an object (pickled) array; expected a numeric array") from e
            raise DatasetError(f"{path}: not a readable .npy file ({e})") from e
        except (OSError, EOFError) as e:
            raise DatasetError(f"{path}: not a readable .npy file ({e})") from e
        return _check_array(arr, path)
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if not keys:
                raise DatasetError(f"{path}: .npz archive holds no arrays")
            if key is None:
                if len(keys) > 1:
                    raise DatasetError(
                        f"{path}: .npz holds {len(keys)} arrays ({', '.join(keys)}); choose one "
                        f"as {path}:KEY, e.g. {path}:{keys[0]}")
                key = keys[0]
            elif key not in keys:
                raise DatasetError(f"{path}: no array {key!r} in the .npz; it holds "
                                   f"{', '.join(keys)} (choose one as {path}:KEY)")
            arr = z[key]
    except DatasetError:
        raise
    except ValueError as e:
        if "pickle" in str(e):
            raise DatasetError(
                f"{path}: array {key!r} is an object (pickled) array; expected numeric") from e
        raise DatasetError(f"{path}: not a readable .npz file ({e})") from e
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{path}: not a readable .npz file ({e})") from e
    return _check_array(arr, path, key)
