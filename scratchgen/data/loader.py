"""Deterministic, resumable mini-batches (host-side NumPy).

Every batch is a pure function of ``(seed, epoch, index-in-epoch)``:

* order: ``perm_e = default_rng([seed, epoch, 0]).permutation(N)`` (identity if ``shuffle=False``);
* dynamic binarisation of batch ``i`` of epoch ``e``: ``x ~ Bernoulli(pixel/255)`` drawn from
  ``default_rng([seed, e, 1, i])`` — a fresh draw per epoch and per example (Burda et al.).

So resuming at global step ``k`` needs nothing but ``k``: ``loader.batch_at(k)`` is batch
``k % batches_per_epoch`` of epoch ``k // batches_per_epoch``, and ``loader.steps(start=k)``
continues the infinite stream from there. The toy equivalent is :class:`ToySampler`
(``batch_at(step)`` draws from ``default_rng([seed, step])``).
"""
import numpy as np

from .toy import ToyDistribution, toy_dataset

PREPROCESS = ("binarize-dynamic", "binarize-fixed", "unit", "symmetric", "none")


def _check_seed(seed):
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


class BatchLoader:
    """Mini-batches of ``data`` (N, ...) with optional ``labels`` (N,).

    ``preprocess`` maps the raw values to float32; pixel intensity ``p`` is ``data/255`` for
    uint8 data and ``data`` itself for float data (which must then lie in [0, 1]):

    * ``'binarize-dynamic'``: ``x ~ Bernoulli(p)``, re-drawn every epoch;
    * ``'binarize-fixed'``: ``x = [p > 0.5]`` (uint8: pixel > 127);
    * ``'unit'``: ``x = p`` in [0, 1];  ``'symmetric'``: ``x = 2p - 1`` in [-1, 1];
    * ``'none'``: ``x = data`` cast to float32 (points, already-normalised arrays).

    Images (N, H, W) come out as (B, 1, H, W); (N, C, H, W) and points (N, D) keep their
    layout. ``transform(x) -> x`` is applied last. A batch is ``x``, or ``(x, y)`` with
    labels (``y`` int64).
    """

    def __init__(self, data, batch_size, shuffle=True, seed=0, drop_last=True,
                 preprocess="unit", labels=None, transform=None):
        data = np.asarray(data)
        if data.ndim < 2:
            raise ValueError(f"data must have shape (N, ...) with ndim >= 2, got {data.shape}")
        if preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r}")
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (len(data),):
                raise ValueError(
                    f"labels must have shape ({len(data)},) to match data {data.shape}, "
                    f"got {labels.shape}")
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if drop_last and batch_size > len(data):
            raise ValueError(
                f"batch_size {batch_size} > {len(data)} examples with drop_last=True: no batches")
        if preprocess != "none":
            if data.dtype == np.uint8:
                pass
            elif np.issubdtype(data.dtype, np.floating):
                lo, hi = float(data.min()), float(data.max())
                if lo < 0 or hi > 1:
                    raise ValueError(
                        f"preprocess={preprocess!r} needs uint8 pixels or floats in [0, 1]; "
                        f"got floats in [{lo:g}, {hi:g}]")
            else:
                raise ValueError(
                    f"preprocess={preprocess!r} needs uint8 or float data, got {data.dtype}")
        self.data, self.labels = data, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, bool(shuffle), bool(drop_last)
        self.seed = _check_seed(seed)
        self.preprocess, self.transform = preprocess, transform
        self.epoch, self.index = 0, 0  # position of the next batch for __iter__

    @property
    def num_examples(self):
        return len(self.data)

    @property
    def batches_per_epoch(self):
        n, b = len(self.data), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __len__(self):
        return self.batches_per_epoch

    def epoch_order(self, epoch):
        """Example indices of ``epoch`` in visiting order."""
        cached = getattr(self, "_order", None)
        if cached is not None and cached[0] == epoch:
            return cached[1]
        if not self.shuffle:
            order = np.arange(len(self.data))
        else:
            order = np.random.default_rng([self.seed, int(epoch), 0]).permutation(len(self.data))
        self._order = (epoch, order)  # one permutation per epoch, not per batch
        return order

    def get_batch(self, epoch, index):
        """Batch ``index`` (0-based) of ``epoch``."""
        if not 0 <= index < self.batches_per_epoch:
            raise IndexError(f"batch index {index} out of range 0..{self.batches_per_epoch - 1}")
        idx = self.epoch_order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        x = self._preprocess(self.data[idx], epoch, index)
        if self.transform is not None:
            x = self.transform(x)
        if self.labels is None:
            return x
        return x, self.labels[idx].astype(np.int64)

    def batch_at(self, step):
        """The batch of global ``step``: epoch ``step // len(self)``, index ``step % len(self)``."""
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self.get_batch(*divmod(step, self.batches_per_epoch))

    def epoch_batches(self, epoch, start=0):
        """Batches ``start, start+1, ...`` of ``epoch``."""
        for i in range(start, self.batches_per_epoch):
            yield self.get_batch(epoch, i)

    def steps(self, start=0):
        """Infinite stream of ``(step, batch)`` from global step ``start``."""
        step = int(start)
        while True:
            yield step, self.batch_at(step)
            step += 1

    def __iter__(self):
        """One epoch from the saved position (``epoch``, ``index``); advances it."""
        epoch, start = self.epoch, self.index
        for i in range(start, self.batches_per_epoch):
            batch = self.get_batch(epoch, i)
            self.index = i + 1
            yield batch
        self.epoch, self.index = epoch + 1, 0

    def state_dict(self):
        return {"seed": self.seed, "epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state):
        if int(state["seed"]) != self.seed:
            raise ValueError(f"state seed {state['seed']} != loader seed {self.seed}")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])

    def _preprocess(self, raw, epoch, index):
        mode = self.preprocess
        if mode == "none":
            x = raw.astype(np.float32)
        else:
            p = raw.astype(np.float32)
            if raw.dtype == np.uint8:
                p /= 255.0
            if mode == "binarize-dynamic":
                u = np.random.default_rng([self.seed, int(epoch), 1, int(index)]).random(p.shape)
                x = (u < p).astype(np.float32)
            elif mode == "binarize-fixed":
                x = (p > 0.5).astype(np.float32)
            elif mode == "unit":
                x = p
            else:
                x = 2.0 * p - 1.0
        if x.ndim == 3:
            x = x[:, None]
        return x


class ToySampler:
    """Infinite stream of toy batches; batch ``step`` is drawn from ``default_rng([seed, step])``."""

    def __init__(self, dataset, batch_size, seed=0):
        self.dist = toy_dataset(dataset) if isinstance(dataset, str) else dataset
        if not isinstance(self.dist, ToyDistribution):
            raise TypeError(f"dataset must be a toy name or ToyDistribution, got {dataset!r}")
        self.batch_size, self.seed = int(batch_size), _check_seed(seed)

    def batch_at(self, step, dtype=np.float32):
        return toy_batch_at(self.dist, self.batch_size, step, self.seed, dtype)

    def steps(self, start=0):
        step = int(start)
        while True:
            yield step, self.batch_at(step)
            step += 1

    def __iter__(self):
        return (b for _, b in self.steps())


def toy_batch_at(dataset, batch_size, step, seed=0, dtype=np.float32):
    """Batch for global ``step`` of a toy dataset: ``dataset.sample(batch_size, rng=default_rng([seed, step]))``."""
    dist = toy_dataset(dataset) if isinstance(dataset, str) else dataset
    step = int(step)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    rng = np.random.default_rng([_check_seed(seed), step])
    return dist.sample(batch_size, rng=rng).astype(dtype)


def split_holdout(images, labels, holdout):
    """Keep the last ``holdout`` examples out: ``(train_x, train_y, held_x, held_y)``.

    ``labels`` may be ``None`` (then both label outputs are ``None``)."""
    n = len(images)
    holdout = int(holdout)
    if labels is not None and len(labels) != n:
        raise ValueError(f"{n} images but {len(labels)} labels")
    if holdout < 0:
        raise ValueError(f"holdout must be >= 0, got {holdout}")
    if holdout >= n:
        raise ValueError(f"holdout={holdout} leaves no training data: only {n} examples")
    cut = n - holdout
    if labels is None:
        return images[:cut], None, images[cut:], None
    return images[:cut], labels[:cut], images[cut:], labels[cut:]
