"""Toy 2-D distributions (WGAN-GP toy experiments, Gulrajani et al. 2017, plus two more).

Exactly what is implemented (all samples float64, shape (n, 2)):

* ``8gaussians``: equal mixture of isotropic Gaussians, centres
  ``2 * {(±1,0), (0,±1), (±1/√2, ±1/√2)} / 1.414`` (radius ≈ 1.4144), std ``0.02 / 1.414``
  (the reference draws ``center + 0.02·N(0,I)`` and divides the whole point by 1.414).
* ``25gaussians``: equal mixture on the 5×5 grid ``{-4,-2,0,2,4}² / 2.828``,
  std ``0.05 / 2.828``.
* ``swissroll``: ``t = 1.5π(1 + 2u)``, ``u ~ U(0,1)``; ``x = (t cos t, t sin t) + 0.25·N(0,I)``,
  divided by 7.5 (sklearn ``make_swiss_roll(noise=0.25)`` columns (0, 2), as in the
  reference). No closed-form density.
* ``ring``: continuous annulus, angle ``θ ~ U(0, 2π)``, radius ``r = |ρ|``,
  ``ρ ~ N(R=1.5, s=0.1)``. Density ``p(x) = [φ_s(r-R) + φ_s(r+R)] / (2π r)``, ``r = |x|``.
* ``checkerboard``: uniform on the 8 "black" cells of a 4×4 board of 2×2 squares covering
  ``[-4,4)²``; cell containing ``(x, y)`` is black iff ``⌊x/2⌋ + ⌊y/2⌋`` is even
  (the FFJORD checkerboard). Density ``1/32`` on black cells, 0 elsewhere.
"""
import numpy as np
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

TOY_DATASETS = ("8gaussians", "25gaussians", "swissroll", "ring", "checkerboard")


def _rng(seed=None, rng=None):
    if rng is not None:
        if seed is not None:
            raise ValueError("pass either seed or rng, not both")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


def _points(points):
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"expected points of shape (n, 2), got {x.shape}")
    return x


class ToyDistribution:
    """A 2-D toy distribution. ``modes``/``mode_std`` are set for Gaussian mixtures only."""

    name = None
    modes = None
    mode_std = None

    def sample(self, n, seed=None, rng=None):
        """Draw ``n`` points, float64 (n, 2); ``seed`` (int / SeedSequence entropy) or ``rng``."""
        n = int(n)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return self._sample(n, _rng(seed, rng))

    def log_density(self, points):
        raise NotImplementedError(f"{self.name!r} has no closed-form density")

    def __repr__(self):
        return f"toy_dataset({self.name!r})"


class GaussianMixture2D(ToyDistribution):
    """Equal-weight mixture of isotropic Gaussians ``(1/K) Σ_k N(μ_k, σ² I)``."""

    def __init__(self, name, modes, std):
        self.name = name
        self.modes = np.asarray(modes, dtype=np.float64)
        self.mode_std = float(std)

    def _sample(self, n, rng):
        k = rng.integers(len(self.modes), size=n)
        return self.modes[k] + self.mode_std * rng.standard_normal((n, 2))

    def log_density(self, points):
        x = _points(points)
        d2 = cdist(x, self.modes, "sqeuclidean")
        s2 = self.mode_std ** 2
        return logsumexp(-0.5 * d2 / s2, axis=1) - np.log(2 * np.pi * s2) - np.log(len(self.modes))


class SwissRoll(ToyDistribution):
    name = "swissroll"
    noise = 0.25
    scale = 7.5

    def _sample(self, n, rng):
        t = 1.5 * np.pi * (1 + 2 * rng.random(n))
        x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
        return (x + self.noise * rng.standard_normal((n, 2))) / self.scale

    def log_density(self, points):
        raise NotImplementedError(
            "swissroll has no closed-form density; estimate one with metrics.kde_log_density")


class Ring(ToyDistribution):
    name = "ring"

    def __init__(self, radius=1.5, width=0.1):
        self.radius, self.width = float(radius), float(width)

    def _sample(self, n, rng):
        r = np.abs(self.radius + self.width * rng.standard_normal(n))
        theta = rng.uniform(0, 2 * np.pi, n)
        return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)

    def log_density(self, points):
        r = np.hypot(*_points(points).T)
        s, R = self.width, self.radius
        log_phi = lambda z: -0.5 * (z / s) ** 2 - np.log(s * np.sqrt(2 * np.pi))
        with np.errstate(divide="ignore"):
            return np.logaddexp(log_phi(r - R), log_phi(r + R)) - np.log(2 * np.pi * r)


class Checkerboard(ToyDistribution):
    name = "checkerboard"
    cell = 2.0
    # lower-left corners of the black cells: (i + j) even, i, j in {-2, -1, 0, 1}
    corners = np.array([(i, j) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0],
                       dtype=np.float64) * cell

    def _sample(self, n, rng):
        k = rng.integers(len(self.corners), size=n)
        return self.corners[k] + self.cell * rng.random((n, 2))

    def is_black(self, points):
        x = _points(points)
        ij = np.floor(x / self.cell)
        inside = np.all((x >= -4) & (x < 4), axis=1)
        return inside & (ij.sum(1) % 2 == 0)

    def log_density(self, points):
        area = len(self.corners) * self.cell ** 2  # 32
        return np.where(self.is_black(points), -np.log(area), -np.inf)


def toy_dataset(name):
    """Return the :class:`ToyDistribution` called ``name`` (one of :data:`TOY_DATASETS`)."""
    if name == "8gaussians":
        c = 1 / np.sqrt(2)
        centers = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (c, c), (c, -c), (-c, c), (-c, -c)])
        return GaussianMixture2D(name, 2.0 * centers / 1.414, 0.02 / 1.414)
    if name == "25gaussians":
        grid = np.array([(x, y) for x in range(-2, 3) for y in range(-2, 3)], dtype=np.float64)
        return GaussianMixture2D(name, 2.0 * grid / 2.828, 0.05 / 2.828)
    if name == "swissroll":
        return SwissRoll()
    if name == "ring":
        return Ring()
    if name == "checkerboard":
        return Checkerboard()
    raise ValueError(f"unknown toy dataset {name!r}; choose one of {', '.join(TOY_DATASETS)}")
