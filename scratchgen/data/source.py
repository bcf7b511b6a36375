"""A run's data as the harness hands it to a task: batches by index, one held-out set.

    data = DataSource("mnist", batch_size=64, seed=0, split="test", holdout=1000)
    data.batch_at(k)       # training batch k: float32, preprocessed (images (B, C, H, W))
    data.held_out          # HeldOut(x, labels or None), preprocessed the same way
    data.training_set()    # (x, labels or None): the raw training examples, none held out

Batch ``k`` is a pure function of ``(seed, k)``, so the harness's batch index is all a
checkpoint needs to continue the stream.
"""
from collections import namedtuple
from pathlib import Path

import numpy as np

from .arrays import DatasetError, load_array, split_array_spec
from .loader import BatchLoader, ToySampler, check_preprocess, preprocess, split_holdout
from .mnist import load_mnist
from .toy import TOY_DATASETS, toy_dataset

DATASETS = TOY_DATASETS + ("mnist",)
STREAMS = {"train": 1, "eval": 2, "plots": 3, "held_out": 4, "fixed_noise": 5}

HeldOut = namedtuple("HeldOut", "x labels")
HeldOut.__doc__ = """Held-out examples: ``x`` preprocessed float32 (like the training
batches), ``labels`` an int array or None."""


def step_rng(seed, step, stream=1):
    """The Generator for ``step``'s ``stream`` (:data:`STREAMS`: 1 training, 2 evaluation,
    3 plots, 4 the toy held-out set, 5 the fixed noise of the progress pictures):
    ``SeedSequence([seed, step], spawn_key=(stream,))``. The spawn key pads the entropy to 5
    words, so these never coincide with the data layer's plain ``default_rng([seed, ...])``
    streams (at most 4 words)."""
    ss = np.random.SeedSequence([int(seed), int(step)], spawn_key=(int(stream),))
    return np.random.default_rng(ss)


def is_array_path(dataset):
    """Whether ``dataset`` names a ``.npy``/``.npz`` file (``file.npz:key`` included)."""
    return str(split_array_spec(dataset)[0]).lower().endswith((".npy", ".npz"))


def mnist_root(data_dir):
    """The MNIST folder of ``--data-dir`` (the IDX files' folder, or one holding ``mnist/``);
    None: the default location."""
    if data_dir is None:
        return None
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DatasetError(f"--data-dir {root}: no such folder")
    if not any(root.glob("*-idx?-ubyte*")) and (root / "mnist").is_dir():
        root = root / "mnist"
    return root


class DataSource:
    """What a task sees of its data.

    * ``batch_at(k)``: training batch ``k`` (host float32; the harness owns ``k``);
    * ``held_out``: a :class:`HeldOut`. Toys: ``max(holdout, eval_size)`` fresh points drawn
      once from the seed. Finite data: the last ``holdout`` examples, else the other MNIST
      split when present, else the first ``eval_size`` training examples; preprocessed like
      the batches (dynamic binarisation drawn once, from ``default_rng([seed, 2])``);
    * ``training_set()``: the raw (not preprocessed) training examples and their labels, none
      of them in ``held_out`` (for models fitted to the data beside the task: the digit
      classifier of :mod:`scratchgen.models.classifier`);
    * ``name`` (``'array'`` for files), ``kind`` (``'points'``/``'images'``), ``shape`` (one
      preprocessed example), ``dist`` (the toy distribution or None), ``preprocess``,
      ``batches_per_epoch`` (0 for toys: sampled afresh each batch).
    """

    def __init__(self, dataset, batch_size, seed=0, split="train", holdout=0, data_dir=None,
                 preprocess=None, eval_size=1000):
        self.name, self.split, self.holdout = str(dataset), split, int(holdout)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.dist = None
        if self.name in TOY_DATASETS:
            self._toy(eval_size)
            return
        if self.name == "mnist":
            x, y = load_mnist(mnist_root(data_dir), split=split)
        elif is_array_path(self.name):
            x, y = load_array(self.name), None
            self.name = "array"
        else:
            raise DatasetError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)} "
                            "or give a path to a .npy/.npz file (file.npz:key picks an array)")
        self.kind = "points" if x.ndim == 2 else "images"
        self.preprocess = preprocess or ("none" if self.kind == "points" else "symmetric")
        try:
            check_preprocess(x, self.preprocess)
        except ValueError as e:
            raise DatasetError(str(e)) from None
        x, y, held, shared = self._held_out(x, y, data_dir, eval_size)
        self._training = (x[shared:], None if y is None else y[shared:])
        self.held_out = HeldOut(self._prepare(held[0]), held[1])
        self.shape = tuple(self.held_out.x.shape[1:])
        if self.batch_size > len(x):
            raise DatasetError(f"{len(x)} training examples are fewer than one batch of "
                            f"{self.batch_size}")
        self.loader = BatchLoader(x, self.batch_size, shuffle=True, seed=self.seed,
                                  preprocess=self.preprocess)
        self.batches_per_epoch = len(self.loader)

    def _toy(self, eval_size):
        self.kind, self.preprocess, self.batches_per_epoch = "points", "none", 0
        self._training = None
        self.dist = toy_dataset(self.name)
        self.shape = (2,)
        self.loader = ToySampler(self.dist, self.batch_size, seed=self.seed)
        x = self.dist.sample(max(self.holdout, eval_size),
                             rng=step_rng(self.seed, 0, STREAMS["held_out"]))
        self.held_out = HeldOut(x.astype(np.float32), None)

    def _held_out(self, x, y, data_dir, eval_size):
        """(training x, y, (held-out x, labels), k) as described in the class doc: the first
        ``k`` training examples are also held out."""
        if self.holdout:
            try:
                x, y, hx, hy = split_holdout(x, y, self.holdout)
            except ValueError as e:
                raise DatasetError(f"--holdout {self.holdout}: {e}") from None
            return x, y, (hx, hy), 0
        if self.name == "mnist":
            other = "test" if self.split == "train" else "train"
            try:  # the other split when it is at hand (never downloaded for this)
                return x, y, load_mnist(mnist_root(data_dir), split=other, download=False), 0
            except Exception:  # only one split present: evaluate on training examples
                pass
        return x, y, (x[:eval_size], None if y is None else y[:eval_size]), eval_size

    def _prepare(self, x):
        return preprocess(x, self.preprocess, np.random.default_rng([self.seed, 2]))

    def training_set(self):
        """``(x, labels)``: the training examples as loaded (uint8 pixels for MNIST, not
        preprocessed) and their labels (None when unlabelled), without any held-out example:
        when ``held_out`` is the first ``eval_size`` training examples (one split, no
        ``holdout``), those are left out.
        Toys: None (sampled afresh)."""
        return self._training

    def batch_at(self, index):
        """Training batch ``index`` (0-based, counted over the whole run)."""
        return self.loader.batch_at(index)

    def batches(self, start, n):
        """Batches ``start, ..., start + n - 1``."""
        return [self.batch_at(i) for i in range(start, start + n)]

    def describe(self):
        return {"dataset": self.name, "split": self.split, "holdout": self.holdout,
                "kind": self.kind, "example_shape": list(self.shape),
                "batches_per_epoch": self.batches_per_epoch, "preprocess": self.preprocess}
