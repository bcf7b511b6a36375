"""MNIST as NumPy arrays for the PyTorch-style examples (NumPy only, so the same file serves
scratchgen and PyTorch; torchvision's role).

The folder is ``$SCRATCHGEN_MNIST_DIR``, else ``../shared/data/mnist`` relative to the working
directory, else the same path relative to the repository's parent.
"""
import gzip
import os
from pathlib import Path

import numpy as np

FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def folder():
    env = os.environ.get("SCRATCHGEN_MNIST_DIR")
    if env:
        return Path(env)
    here = Path("../shared/data/mnist")
    return here if here.is_dir() else Path(__file__).resolve().parents[3] / "shared/data/mnist"


def load(split="train", limit=None):
    """(images float32 in [0, 1] of shape (N, 1, 28, 28), labels int64 of shape (N,))."""
    root = folder()
    img_name, lab_name = FILES[split]
    try:
        raw_i = gzip.open(root / img_name).read()
        raw_l = gzip.open(root / lab_name).read()
    except FileNotFoundError as e:
        raise SystemExit(f"MNIST not found in {root} ({e.filename}); set SCRATCHGEN_MNIST_DIR")
    images = np.frombuffer(raw_i, np.uint8, offset=16).reshape(-1, 1, 28, 28)
    labels = np.frombuffer(raw_l, np.uint8, offset=8).astype(np.int64)
    n = len(labels) if limit is None else limit
    return (images[:n] / np.float32(255)).astype(np.float32), labels[:n]
