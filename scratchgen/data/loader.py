"""Deterministic mini-batches and the one preprocessing function (host-side NumPy).

Every batch is a pure function of ``(seed, epoch, index-in-epoch)``:

* order: ``perm_e = default_rng([seed, epoch, 0]).permutation(N)`` (identity if ``shuffle=False``);
* dynamic binarisation of batch ``i`` of epoch ``e``: ``x ~ Bernoulli(pixel/255)`` drawn from
  ``default_rng([seed, e, 1, i])`` — a fresh draw per epoch and per example (Burda et al.).

So resuming at global batch ``k`` needs nothing but ``k``: ``loader.batch_at(k)`` is batch
``k % batches_per_epoch`` of epoch ``k // batches_per_epoch``. The toy equivalent is
:class:`ToySampler` (``batch_at(k)`` draws from ``default_rng([seed, k])``).
"""
import numpy as np

from .toy import ToyDistribution, toy_dataset

PREPROCESS = ("binarize-dynamic", "binarize-fixed", "unit", "symmetric", "none")


def _check_seed(seed):
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_preprocess(data, mode):
    """Raise ValueError unless ``mode`` can map ``data``: pixels must be uint8 or floats in
    [0, 1] for every mode but ``'none'``."""
    if mode not in PREPROCESS:
        raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS)}, got {mode!r}")
    if mode == "none" or data.dtype == np.uint8:
        return
    if not np.issubdtype(data.dtype, np.floating):
        raise ValueError(f"preprocess={mode!r} needs uint8 or float data, got {data.dtype}")
    lo, hi = float(data.min()), float(data.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"preprocess={mode!r} needs uint8 pixels or floats in [0, 1]; got "
                         f"floats in [{lo:g}, {hi:g}] (for points use --set preprocess=none)")


def preprocess(raw, mode, rng=None):
    """Map raw examples to float32 model inputs. Pixel intensity ``p`` is ``raw/255`` for
    uint8 data and ``raw`` itself for floats (in [0, 1], see :func:`check_preprocess`):

    * ``'binarize-dynamic'``: ``x ~ Bernoulli(p)`` drawn from ``rng``;
    * ``'binarize-fixed'``: ``x = [p > 0.5]`` (uint8: pixel > 127);
    * ``'unit'``: ``x = p`` in [0, 1];  ``'symmetric'``: ``x = 2p - 1`` in [-1, 1];
    * ``'none'``: ``x = raw`` cast to float32 (points, already-normalised arrays).

    Images (N, H, W) come out as (N, 1, H, W); (N, C, H, W) and points (N, D) keep their
    layout."""
    if mode == "none":
        x = raw.astype(np.float32)
    else:
        p = raw.astype(np.float32)
        if raw.dtype == np.uint8:
            p /= 255.0
        if mode == "binarize-dynamic":
            x = (rng.random(p.shape) < p).astype(np.float32)
        elif mode == "binarize-fixed":
            x = (p > 0.5).astype(np.float32)
        elif mode == "unit":
            x = p
        elif mode == "symmetric":
            x = 2.0 * p - 1.0
        else:
            raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS)}, got {mode!r}")
    return x[:, None] if x.ndim == 3 else x


class BatchLoader:
    """Mini-batches of ``data`` (N, ...) with optional ``labels`` (N,).

    ``preprocess``: a :func:`preprocess` mode (dynamic binarisation is re-drawn every
    epoch). A batch is ``x``, or ``(x, y)`` with
    labels (``y`` int64).
    """

    def __init__(self, data, batch_size, shuffle=True, seed=0, drop_last=True,
                 preprocess="unit", labels=None):
        data = np.asarray(data)
        if data.ndim < 2:
            raise ValueError(f"data must have shape (N, ...) with ndim >= 2, got {data.shape}")
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
        check_preprocess(data, preprocess)
        self.data, self.labels = data, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, bool(shuffle), bool(drop_last)
        self.seed = _check_seed(seed)
        self.preprocess = preprocess

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
        if self.labels is None:
            return x
        return x, self.labels[idx].astype(np.int64)

    def batch_at(self, step):
        """The batch of global ``step``: epoch ``step // len(self)``, index ``step % len(self)``."""
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self.get_batch(*divmod(step, self.batches_per_epoch))

    def _preprocess(self, raw, epoch, index):
        rng = np.random.default_rng([self.seed, int(epoch), 1, int(index)])
        return preprocess(raw, self.preprocess, rng)


class ToySampler:
    """Toy batches by index: batch ``k`` is drawn from ``default_rng([seed, k])``."""

    def __init__(self, dataset, batch_size, seed=0):
        self.dist = toy_dataset(dataset) if isinstance(dataset, str) else dataset
        if not isinstance(self.dist, ToyDistribution):
            raise TypeError(f"dataset must be a toy name or ToyDistribution, got {dataset!r}")
        self.batch_size, self.seed = int(batch_size), _check_seed(seed)

    def batch_at(self, step, dtype=np.float32):
        return toy_batch_at(self.dist, self.batch_size, step, self.seed, dtype)


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
