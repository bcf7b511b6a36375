"""A digit classifier trained with scratchgen itself: the feature space of the image metrics.

    clf = digit_classifier(images, labels, held_out=(hx, hy))   # trained once, then cached
    clf.features(x)        # (N, 128) penultimate activations of images (N, 1, 28, 28) in [-1, 1]
    clf.probabilities(x)   # (N, 10) softmax class probabilities
    clf.accuracy           # share of the held-out images labelled correctly
    DigitMetrics(data, n)(fake)   # fd, fd_floor, fd_train, coverage, confidence, ...

Network (:class:`DigitNet`): Conv(1, 16, 4, 2, 1) -> ReLU -> Conv(16, 32, 4, 2, 1) -> ReLU ->
flatten -> Linear(1568, 128) -> ReLU -> Linear(128, 10); cross-entropy, Adam, :data:`RECIPE`
(4 epochs of batches of 64, rate 3e-3 halved after each epoch, seed 0, up to 60,000 digits):
99.1 % on the 10,000 MNIST test digits after training on the 60,000 training digits (~30 s on
2 quiet cores); 97 % on the last 1,000 test digits after the first 9,000. Weights are drawn from
``default_rng(seed)`` and the batch order of epoch ``e`` from ``default_rng([seed, e])``, so
training is a pure function of the data and the recipe.

Cache: ``$XDG_CACHE_HOME/scratchgen/classifiers/digits-<sha256>.npz`` (default under
``~/.cache``), the hash taken over the training images, labels and the recipe (architecture,
hyperparameters, seed, format version), so every run on the same data is measured by the
same network. The file (a :func:`scratchgen.io.save` checkpoint, written atomically) holds
the weights and the accuracy on the held-out set it was trained beside (measured afresh for
another held-out set). A corrupt file is retrained with a one-line warning; a cache folder
that cannot be written keeps the network in memory (with a one-line warning).
"""
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import softmax

import scratchgen as sg
from scratchgen import backend, nn, optim
from scratchgen import functional as F
from scratchgen.data import preprocess
from scratchgen.io import load, save, user_cache_dir
from scratchgen.metrics import class_statistics, frechet_distance

__all__ = ["DigitNet", "DigitClassifier", "DigitMetrics", "digit_classifier", "has_digits",
           "train_classifier", "RECIPE", "cache_path"]

FORMAT = 1
RECIPE = {"architecture": "conv16-conv32-fc128 relu, 4x4 stride-2 convs", "epochs": 4,
          "max_images": 60000, "batch_size": 64, "optimizer": "adam", "lr": 3e-3,
          "lr_gamma": 0.5, "betas": [0.9, 0.999], "seed": 0, "format": FORMAT}
FEATURES = 128
_BATCH = 500  # images per forward pass when measuring


class DigitNet(nn.Module):
    """(B, 1, 28, 28) -> (B, 10) logits; :meth:`features` gives the (B, 128) penultimate
    activations."""

    def __init__(self, generator=None):
        super().__init__()
        g = generator
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 4, 2, 1, generator=g), nn.ReLU(),
            nn.Conv2d(16, 32, 4, 2, 1, generator=g), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 7 * 7, FEATURES, generator=g), nn.ReLU())
        self.head = nn.Linear(FEATURES, 10, generator=g)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def _as_images(x):
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1:] != (1, 28, 28) or len(x) == 0:
        raise ValueError(f"the digit classifier takes images (N, 1, 28, 28) in [-1, 1], N >= 1; "
                         f"got shape {x.shape}")
    return x


class DigitClassifier:
    """A trained :class:`DigitNet` and its held-out ``accuracy``; ``path``: its cache file
    (None when it could not be written)."""

    def __init__(self, net, accuracy, path):
        self.net, self.accuracy, self.path = net, accuracy, path

    def _apply(self, fn, x):
        x = _as_images(x)
        out = []
        with sg.no_grad():
            for i in range(0, len(x), _BATCH):
                out.append(backend.to_numpy(fn(sg.tensor(x[i:i + _BATCH])).array))
        return np.concatenate(out)

    def features(self, x):
        """(N, 128) float32 penultimate activations of images ``x`` (N, 1, 28, 28) in [-1, 1]."""
        return self._apply(self.net.features, x)

    def probabilities(self, x):
        """(N, 10) float64 class probabilities p(y | x) (softmax of the logits)."""
        return softmax(self._apply(self.net, x).astype(np.float64), axis=1)

    def score(self, x, labels):
        """Share of ``x`` whose most probable class is its label."""
        return float(np.mean(self.probabilities(x).argmax(1) == np.asarray(labels)))


def _digest(images, labels, recipe):
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(images), np.ascontiguousarray(labels, dtype=np.int64)):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps(recipe, sort_keys=True).encode())
    return h.hexdigest()


def cache_path(images, labels, recipe=None):
    """Where the classifier of these training data and ``recipe`` (default :data:`RECIPE`)
    is cached."""
    digest = _digest(images, labels, RECIPE if recipe is None else recipe)
    return Path(user_cache_dir("classifiers")) / f"digits-{digest}.npz"


def _symmetric(images):
    """Raw pixels (uint8 or floats in [0, 1]) -> float32 (N, 1, 28, 28) in [-1, 1]."""
    return _as_images(preprocess(np.asarray(images), "symmetric"))


def train_classifier(x, y, recipe=None):
    """A :class:`DigitNet` fitted to images ``x`` (N, 1, 28, 28) in [-1, 1] and labels ``y``."""
    r = RECIPE if recipe is None else recipe
    net = DigitNet(generator=np.random.default_rng(r["seed"]))
    opt = optim.build_optimizer(r["optimizer"], net.parameters(), lr=r["lr"],
                                betas=tuple(r["betas"]))
    y = np.asarray(y, dtype=np.int64)
    b = int(r["batch_size"])
    for epoch in range(int(r["epochs"])):
        for group in opt.param_groups:  # lr * gamma^epoch
            group["lr"] = r["lr"] * r.get("lr_gamma", 1.0) ** epoch
        order = np.random.default_rng([r["seed"], epoch]).permutation(len(x))
        for i in range(0, len(x) - b + 1, b):
            idx = order[i:i + b]
            loss = F.cross_entropy(net(sg.tensor(x[idx])), sg.tensor(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def digit_classifier(images, labels, held_out=None, recipe=None, warn=None, log=None):
    """The digit classifier of training ``images`` (raw pixels: uint8 or floats in [0, 1],
    (N, 28, 28) or (N, 1, 28, 28); the first ``max_images`` of the recipe) and ``labels``
    (N,): loaded from the cache, else trained (announced on ``log``, default stdout) and
    cached. ``held_out``: ``(images, labels)``, images (M, 1, 28, 28) in [-1, 1] never trained
    on; the classifier's ``accuracy`` is measured there (NaN without). ``warn`` (default
    stderr) gets the one-line cache warnings."""
    warn = warn or (lambda m: print(m, file=sys.stderr, flush=True))
    log = log or (lambda m: print(m, flush=True))
    r = RECIPE if recipe is None else recipe
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu" or \
            (len(labels) and not 0 <= labels.min() <= labels.max() <= 9):
        raise ValueError(f"digit_classifier needs one integer label in 0..9 per image; got "
                         f"{len(images)} images and labels of shape {labels.shape}")
    images, labels = images[:r["max_images"]], labels[:r["max_images"]]
    path = cache_path(images, labels, r)
    held_digest = None if held_out is None else _digest(*held_out, {})
    net = DigitNet()
    try:
        state = load(path)
        net.load_state_dict(state["weights"])
        clf = DigitClassifier(net, float(state["accuracy"]), path)
        if held_out is not None and state["held_out_sha256"] != held_digest:
            clf.accuracy = clf.score(*held_out)  # another held-out set
        return clf
    except FileNotFoundError:
        pass
    except (OSError, KeyError, TypeError, ValueError, RuntimeError) as e:
        warn(f"warning: the cached digit classifier {path} is unreadable ({e}); retraining it")
    eta = len(images) * int(r["epochs"]) * 1e-3  # seconds: ~1,000 images/s on 2 busy cores
    log(f"training the digit classifier once ({len(images)} images, ~{eta:.0f} s); "
        f"cached in {path}")
    t0 = time.time()
    net = train_classifier(_symmetric(images), labels, r)
    clf = DigitClassifier(net, float("nan"), path)
    if held_out is not None:
        clf.accuracy = clf.score(*held_out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save({"format": FORMAT, "recipe": r, "weights": net.state_dict(),
              "accuracy": clf.accuracy, "held_out_sha256": held_digest, "n_train": len(images),
              "seconds": round(time.time() - t0, 1)}, path)
    except OSError as e:
        warn(f"warning: cannot cache the digit classifier in {path.parent} ({e}); it is kept "
             "in memory for this run only")
        clf.path = None
    return clf


def has_digits(data):
    """Whether ``data`` (a :class:`~scratchgen.data.DataSource`) are labelled 28x28 digits in
    [-1, 1]: training and (at least 4) held-out labels at hand, ``'symmetric'`` preprocessing."""
    train = data.training_set()
    return (data.kind == "images" and tuple(data.shape) == (1, 28, 28)
            and data.preprocess == "symmetric" and data.held_out.labels is not None
            and len(data.held_out.labels) >= 4 and train is not None and train[1] is not None)


class DigitMetrics:
    """FD and class statistics of generated digits against a run's held-out digits.

    ``metrics(fake)`` for images ``fake`` (n, 1, 28, 28) in [-1, 1] (``n``: the number the
    task evaluates) returns

    * ``fd``: :func:`~scratchgen.metrics.frechet_distance` of the classifier's features of
      ``fake`` and of the first ``len(fake)`` held-out images;
    * ``fd_floor``: the FD between the even- and odd-numbered images of the first ``2m``
      held-out digits, ``m = min(n, held-out / 2)`` each (computed once): what real digits
      score. Interleaved, not first against second half: MNIST's test split is ordered by
      writer group, and its two halves differ (FD 56.7 at 5,000 each, against 4.5
      interleaved). FD's bias grows as the sample shrinks (~1/m), so with ``n`` = the whole
      held-out set (10,000 test digits, or 1,000 of ``--holdout 1000``) the floor compares
      halves and sits a little above what a perfect generator would score;
    * ``fd_train``: the FD of ``n`` training digits against the same held-out digits as ``fd``
      (computed once): what a generator reproducing the training data scores at this ``n``,
      the reference at equal sample size (on ``--split test --holdout 1000``: 21-29 at
      ``n`` = 1,000, while the held-out halves differ by 74);
    * ``coverage``, ``confidence``, ``mnist_score``: :func:`~scratchgen.metrics.class_statistics`
      of the classifier's probabilities on ``fake``;
    * ``classifier_accuracy``: the classifier's accuracy on the held-out set.
    """

    KEYS = ("fd", "fd_floor", "fd_train", "coverage", "confidence", "mnist_score",
            "classifier_accuracy")

    def __init__(self, data, n=None, **kw):
        if not has_digits(data):
            raise ValueError("DigitMetrics needs labelled 28x28 images in [-1, 1] "
                             f"(MNIST); {data.name} is not")
        x, y = data.training_set()
        self.real = data.held_out.x
        self.classifier = digit_classifier(x, y, held_out=(self.real, data.held_out.labels), **kw)
        self.real_features = self.classifier.features(self.real)
        m = len(self.real) // 2 if n is None else min(int(n), len(self.real) // 2)
        self.fd_floor = frechet_distance(self.real_features[:2 * m:2],
                                         self.real_features[1:2 * m:2])
        n = min(len(self.real) if n is None else int(n), len(self.real), len(x))
        self.fd_train = frechet_distance(self.classifier.features(_symmetric(x[:n])),
                                         self.real_features[:n])

    def __call__(self, fake):
        fake = _as_images(fake)
        out = {"fd": frechet_distance(self.classifier.features(fake),
                                      self.real_features[:len(fake)]),
               "fd_floor": self.fd_floor, "fd_train": self.fd_train}
        out.update(class_statistics(self.classifier.probabilities(fake)))
        out["classifier_accuracy"] = self.classifier.accuracy
        return out
