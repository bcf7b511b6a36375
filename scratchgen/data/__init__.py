"""Host-side data: MNIST (IDX), toy 2-D distributions, user arrays, deterministic batches.

Everything here returns NumPy arrays; the trainer moves batches to the active backend.
"""
from .arrays import DatasetError, load_array
from .loader import PREPROCESS, BatchLoader, ToySampler, split_holdout, toy_batch_at
from .mnist import MNIST_FILES, load_mnist, read_idx
from .toy import TOY_DATASETS, ToyDistribution, toy_dataset

__all__ = [
    "DatasetError", "load_array", "load_mnist", "read_idx", "MNIST_FILES",
    "TOY_DATASETS", "ToyDistribution", "toy_dataset",
    "PREPROCESS", "BatchLoader", "ToySampler", "toy_batch_at", "split_holdout",
]
