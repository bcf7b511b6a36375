"""Host-side data: MNIST (IDX), toy 2-D distributions, user arrays, deterministic batches.

Everything here returns NumPy arrays; the trainer moves batches to the active backend.
:class:`DataSource` is what a task sees of its data.
"""
from .arrays import DatasetError, load_array, split_array_spec
from .loader import (PREPROCESS, BatchLoader, ToySampler, check_preprocess, preprocess,
                     split_holdout, toy_batch_at)
from .mnist import MNIST_FILES, load_mnist, read_idx
from .source import DATASETS, STREAMS, DataSource, HeldOut, is_array_path, step_rng
from .toy import TOY_DATASETS, ToyDistribution, toy_dataset

__all__ = [
    "DatasetError", "load_array", "split_array_spec", "load_mnist", "read_idx", "MNIST_FILES",
    "TOY_DATASETS", "ToyDistribution", "toy_dataset",
    "PREPROCESS", "BatchLoader", "ToySampler", "toy_batch_at", "split_holdout", "preprocess",
    "check_preprocess", "DATASETS", "STREAMS", "DataSource", "HeldOut", "is_array_path",
    "step_rng",
]
