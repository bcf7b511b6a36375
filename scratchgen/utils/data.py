"""``torch.utils.data``: ``Dataset``, ``TensorDataset``, ``DataLoader`` and samplers.

A ``DataLoader`` yields batches made by :func:`default_collate`: samples that are tuples
(or lists, or dicts) of arrays, Tensors or numbers become tuples (dicts) of stacked Tensors
(floats as float32 unless an array says otherwise, ints as int64). ``shuffle=True`` draws a
permutation per epoch from ``generator=`` (an ``sg.Generator``) or, without one, from the
default generator that ``sg.manual_seed`` reseeds. ``num_workers``, ``pin_memory`` and
``persistent_workers`` are accepted and ignored: loading runs in the calling process.

>>> import scratchgen as sg
>>> from scratchgen.utils.data import TensorDataset, DataLoader
>>> ds = TensorDataset(sg.arange(10).reshape(5, 2), sg.tensor([0, 1, 0, 1, 1], dtype='int64'))
>>> [(x.shape, y.tolist()) for x, y in DataLoader(ds, batch_size=2)]
[((2, 2), [0, 1]), ((2, 2), [0, 1]), ((1, 2), [1])]
>>> g = sg.Generator().manual_seed(0)
>>> len(DataLoader(ds, batch_size=2, shuffle=True, drop_last=True, generator=g))
2
"""
import numbers

import numpy

from scratchgen import backend
from scratchgen.autograd.tensor import Tensor


class Dataset:
    """Map-style dataset: subclasses define ``__getitem__(i)`` and ``__len__``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} does not define __getitem__")

    def __add__(self, other):
        return ConcatDataset([self, other])


class TensorDataset(Dataset):
    """Samples are ``(t[i] for t in tensors)``; every tensor has the same first dimension."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError("TensorDataset: tensors differ in their first dimension: "
                             f"{[len(t) for t in tensors]}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return len(self.tensors[0])


class ConcatDataset(Dataset):
    def __init__(self, datasets):
        self.datasets = list(datasets)
        self.cumulative = numpy.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self):
        return self.cumulative[-1] if self.cumulative else 0

    def __getitem__(self, index):
        if index < 0:
            index += len(self)
        k = int(numpy.searchsorted(self.cumulative, index, side="right"))
        return self.datasets[k][index - (self.cumulative[k - 1] if k else 0)]


class Subset(Dataset):
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


def _generator(generator):
    from scratchgen.nn.init import default_generator
    return default_generator() if generator is None else generator


class SequentialSampler:
    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler:
    """A fresh permutation of the indices at every ``iter``."""

    def __init__(self, data_source, generator=None):
        self.data_source, self.generator = data_source, generator

    def __iter__(self):
        return iter(_generator(self.generator).permutation(len(self.data_source)).tolist())

    def __len__(self):
        return len(self.data_source)


class BatchSampler:
    def __init__(self, sampler, batch_size, drop_last):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self):
        batch = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def default_collate(batch):
    """Stack a list of samples: Tensors and arrays along a new first axis, numbers into a
    Tensor (float32 or int64), and tuples/lists/dicts element by element."""
    first = batch[0]
    if isinstance(first, Tensor):
        return Tensor._wrap(backend.xp.stack([b.array for b in batch]))
    if backend.is_array(first) or isinstance(first, numpy.ndarray):
        return Tensor._wrap(backend.asarray(numpy.stack([backend.to_numpy(b) for b in batch])))
    if isinstance(first, (bool, numpy.bool_)):
        return Tensor._wrap(backend.asarray(numpy.array(batch, dtype=bool)))
    if isinstance(first, numbers.Integral):
        return Tensor._wrap(backend.asarray(numpy.array(batch, dtype=numpy.int64)))
    if isinstance(first, numbers.Real):
        return Tensor._wrap(backend.asarray(numpy.array(batch, dtype=numpy.float32)))
    if isinstance(first, (str, bytes)):
        return list(batch)
    if isinstance(first, dict):
        return {k: default_collate([b[k] for b in batch]) for k in first}
    if isinstance(first, (tuple, list)):
        if any(len(b) != len(first) for b in batch):
            raise RuntimeError("default_collate: samples in a batch differ in length")
        return type(first)(default_collate(list(s)) for s in zip(*batch)) \
            if isinstance(first, tuple) else [default_collate(list(s)) for s in zip(*batch)]
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}")


class DataLoader:
    """Batches of a map-style dataset, in-process (``num_workers`` is ignored)."""

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False,
                 timeout=0, worker_init_fn=None, generator=None, prefetch_factor=None,
                 persistent_workers=False):
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True are mutually exclusive")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.dataset, self.num_workers = dataset, num_workers
        self.generator, self.drop_last = generator, drop_last
        if batch_sampler is None:
            if sampler is None:
                sampler = (RandomSampler(dataset, generator) if shuffle
                           else SequentialSampler(dataset))
            batch_sampler = BatchSampler(sampler, batch_size, drop_last) \
                if batch_size is not None else None
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.batch_size = batch_size
        self.collate_fn = collate_fn or default_collate

    def __iter__(self):
        if self.batch_sampler is None:  # batch_size=None: samples one by one
            for i in self.sampler:
                yield self.dataset[i]
            return
        if isinstance(self.dataset, TensorDataset) and self.collate_fn is default_collate:
            for idx in self.batch_sampler:  # one gather per tensor, not one per sample
                ix = backend.asarray(numpy.asarray(idx, dtype=numpy.int64))
                yield tuple(Tensor._wrap(t.array[ix]) for t in self.dataset.tensors)
            return
        for idx in self.batch_sampler:
            yield self.collate_fn([self.dataset[i] for i in idx])

    def __len__(self):
        return len(self.batch_sampler if self.batch_sampler is not None else self.sampler)
