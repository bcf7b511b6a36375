"""Sample-quality metrics (host-side NumPy/SciPy): Wasserstein distances, mode coverage, JSD,
the Fréchet distance of features and class statistics of a classifier's probabilities."""
import math

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from scipy.special import logsumexp


def _as_points(a, name):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    elif a.ndim > 2:
        a = a.reshape(len(a), -1)
    if a.ndim != 2 or len(a) == 0:
        raise ValueError(f"{name} must be a non-empty (n, d) array, got shape {a.shape}")
    return a


def wasserstein1_exact(a, b):
    """Exact W1 between the uniform empirical measures on equal-size point sets:
    ``W1 = min_σ (1/n) Σ_i ||a_i - b_σ(i)||₂`` over permutations σ (optimal assignment,
    O(n³): fine for n up to a few thousand). 1-D inputs are (n,) points; images are flattened.
    """
    a, b = _as_points(a, "a"), _as_points(b, "b")
    if a.shape != b.shape:
        raise ValueError(
            f"wasserstein1_exact needs equal-size point sets of equal dimension; "
            f"got a {a.shape} and b {b.shape}")
    cost = cdist(a, b)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def wasserstein_1d(a, b, p=1):
    """Exact W_p between 1-D empirical measures along the last axis (batched over leading axes):
    ``W_p^p = ∫₀¹ |F_a⁻¹(u) - F_b⁻¹(u)|^p du`` with step quantile functions; sizes may differ
    (for equal sizes this is ``mean |sort(a) - sort(b)|^p``). Returns ``W_p`` (not ``W_p^p``)."""
    a = np.sort(np.asarray(a, dtype=np.float64), axis=-1)
    b = np.sort(np.asarray(b, dtype=np.float64), axis=-1)
    na, nb = a.shape[-1], b.shape[-1]
    if na == nb:
        wpp = np.mean(np.abs(a - b) ** p, axis=-1)
    else:
        u = np.union1d(np.arange(na + 1) / na, np.arange(nb + 1) / nb)
        mid, width = 0.5 * (u[1:] + u[:-1]), np.diff(u)
        ia = np.minimum((mid * na).astype(np.int64), na - 1)
        ib = np.minimum((mid * nb).astype(np.int64), nb - 1)
        wpp = np.sum(width * np.abs(a[..., ia] - b[..., ib]) ** p, axis=-1)
    return wpp ** (1.0 / p)


def sliced_wasserstein(a, b, n_projections=256, seed=0, p=1):
    """Sliced Wasserstein ``SW_p = (E_θ W_p(θᵀa, θᵀb)^p)^{1/p}``, θ uniform on the unit sphere
    (Monte-Carlo over ``n_projections`` directions drawn with ``seed``); default p=1.

    Samples are flattened to (n, d). Sizes may differ (exact 1-D W_p between the projected
    empirical measures via their quantile functions). For ``b = a + v``:
    ``SW_1 = |v| E|θ₁| = |v| Γ(d/2) / (√π Γ((d+1)/2))`` (2/π·|v| in 2-D).
    """
    a, b = _as_points(a, "a"), _as_points(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sliced_wasserstein: dimension mismatch, a {a.shape} vs b {b.shape}")
    theta = np.random.default_rng(seed).standard_normal((a.shape[1], int(n_projections)))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    wp = wasserstein_1d((a @ theta).T, (b @ theta).T, p=p)
    return float(np.mean(wp ** p) ** (1.0 / p))


def _mode_assignment(samples, modes, std, n_sigma):
    x = _as_points(samples, "samples")
    m = _as_points(modes, "modes")
    if x.shape[1] != m.shape[1]:
        raise ValueError(f"samples {x.shape} and modes {m.shape} differ in dimension")
    d = cdist(x, m)
    nearest = d.argmin(1)
    close = d[np.arange(len(x)), nearest] <= n_sigma * float(std)
    return nearest, close, len(m)


def mode_counts(samples, modes, std, n_sigma=3.0):
    """Per-mode counts of samples whose nearest mode is within ``n_sigma·std`` (Euclidean)."""
    nearest, close, k = _mode_assignment(samples, modes, std, n_sigma)
    return np.bincount(nearest[close], minlength=k)


def modes_covered(samples, modes, std, n_sigma=3.0, min_count=None):
    """Number of modes holding at least ``min_count`` samples (each sample counts for its
    nearest mode, if within ``n_sigma·std``). Default ``min_count = max(1, ⌈0.01·n/K⌉)``:
    1 % of a mode's expected share under uniform weights, so stray samples don't count a
    mode once ``n ≥ 100 K``. Pass ``min_count=1`` for "any sample"."""
    counts = mode_counts(samples, modes, std, n_sigma)
    if min_count is None:
        n = len(np.asarray(samples))
        min_count = max(1, math.ceil(0.01 * n / len(counts)))
    return int(np.sum(counts >= min_count))


def high_quality_fraction(samples, modes, std, n_sigma=3.0):
    """Share of samples within ``n_sigma·std`` (Euclidean) of some mode."""
    _, close, _ = _mode_assignment(samples, modes, std, n_sigma)
    return float(close.mean())


def _grid(bounds, n):
    bounds = np.asarray(bounds, dtype=np.float64)
    if bounds.shape == (2,):
        bounds = bounds[None]
    if bounds.ndim != 2 or bounds.shape[1] != 2 or len(bounds) not in (1, 2):
        raise ValueError(
            f"bounds must be (lo, hi) for 1-D or ((x0, x1), (y0, y1)) for 2-D, got {bounds.tolist()}")
    if np.any(bounds[:, 1] <= bounds[:, 0]):
        raise ValueError(f"bounds must satisfy lo < hi, got {bounds.tolist()}")
    axes = [lo + (np.arange(n) + 0.5) * (hi - lo) / n for lo, hi in bounds]
    cell = float(np.prod((bounds[:, 1] - bounds[:, 0]) / n))
    if len(axes) == 1:
        return axes[0], cell
    gx, gy = np.meshgrid(*axes, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], axis=1), cell


def jsd_from_log_values(log_p, log_q, cell=1.0, normalize=True):
    """JSD (nats, in [0, log 2]) from log-densities tabulated on a grid of cell volume ``cell``:
    ``JSD = ½ Σ p log(p/m) + ½ Σ q log(q/m)`` (times ``cell``), ``m = (p+q)/2``, 0·log 0 = 0.
    ``normalize`` rescales p and q to integrate to 1 on the grid."""
    lp = np.asarray(log_p, dtype=np.float64).ravel()
    lq = np.asarray(log_q, dtype=np.float64).ravel()
    if lp.shape != lq.shape:
        raise ValueError(f"log_p {lp.shape} and log_q {lq.shape} differ in shape")
    if normalize:
        lp = lp - logsumexp(lp) - np.log(cell)
        lq = lq - logsumexp(lq) - np.log(cell)
    lm = np.logaddexp(lp, lq) - np.log(2.0)
    with np.errstate(invalid="ignore"):
        tp = np.where(np.isneginf(lp), 0.0, np.exp(lp) * (lp - lm))
        tq = np.where(np.isneginf(lq), 0.0, np.exp(lq) * (lq - lm))
    jsd = 0.5 * cell * (tp.sum() + tq.sum())
    return float(np.clip(jsd, 0.0, np.log(2.0)))


def jsd_from_densities(log_p, log_q, bounds, n=1000, normalize=True):
    """Jensen–Shannon divergence (natural log, in [0, log 2]) of two known densities by
    midpoint-rule integration over ``bounds`` with ``n`` cells per axis.

    ``log_p``, ``log_q``: callables returning log-densities; 1-D (``bounds=(lo, hi)``) they
    get an (m,) array, 2-D (``bounds=((x0, x1), (y0, y1))``) an (m, 2) array. Mass outside
    ``bounds`` is ignored (``normalize`` renormalises on the grid)."""
    pts, cell = _grid(bounds, int(n))
    return jsd_from_log_values(np.ravel(log_p(pts)), np.ravel(log_q(pts)), cell, normalize)


def kde_log_density(samples, bandwidth=None, chunk=4096):
    """Gaussian KDE ``log p̂(x) = logmeanexp_i log N(x; s_i, h² I)`` as a callable on (m, d)
    points (or (m,) when d = 1). Default ``h`` is Scott's rule ``σ̄ n^{-1/(d+4)}`` with σ̄ the
    mean per-axis sample std
    (suited to unimodal data; pass ``bandwidth`` for multi-modal toy sets)."""
    s = _as_points(samples, "samples")
    n, d = s.shape
    if bandwidth is None:
        bandwidth = float(np.mean(s.std(axis=0))) * n ** (-1.0 / (d + 4))
    h = float(bandwidth)
    if not h > 0:
        raise ValueError(f"bandwidth must be > 0, got {h}")
    const = -np.log(n) - 0.5 * d * np.log(2 * np.pi * h * h)

    def log_density(x):
        x = _as_points(x, "x")
        if x.shape[1] != d:
            raise ValueError(f"points have dimension {x.shape[1]}, KDE was fit in {d}")
        out = np.empty(len(x))
        for i in range(0, len(x), chunk):
            d2 = cdist(x[i:i + chunk], s, "sqeuclidean")
            out[i:i + chunk] = logsumexp(-0.5 * d2 / (h * h), axis=1) + const
        return out

    return log_density


# ---- image metrics in a classifier's feature space (FD, class statistics) -------------------
def _psd_sqrt(s):
    """Symmetric square root of a symmetric PSD matrix (eigenvalues below 0, round-off, set 0)."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(feats_a, feats_b):
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula):

    ``FD = |μ_a − μ_b|² + tr(Σ_a + Σ_b − 2 (Σ_a^½ Σ_b Σ_a^½)^½)``,

    means and (unbiased) covariances of the rows of ``feats_a`` (n_a, d) and ``feats_b``
    (n_b, d), n ≥ 2. In float64; the matrix square roots come from symmetric
    eigendecompositions with round-off negative eigenvalues clipped to 0, so the result is
    real, symmetric in its arguments and ≥ 0 (a tiny negative sum is returned as 0)."""
    a, b = _as_points(feats_a, "feats_a"), _as_points(feats_b, "feats_b")
    if a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance needs two (n, d) feature sets with n >= 2 and the "
                         f"same d; got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("frechet_distance: the features hold NaN or infinite values")
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    ra = _psd_sqrt(sa)
    m = ra @ sb @ ra
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0.0, None)).sum()
    return float(max(mu @ mu + np.trace(sa) + np.trace(sb) - 2.0 * cross, 0.0))


COVERAGE_SHARE = 0.2  # a class counts as covered with >= 20 % of its even share (2 % of 10)


def class_statistics(probs, share=COVERAGE_SHARE):
    """Statistics of a classifier's class probabilities ``probs`` (n, K) on generated samples:

    * ``coverage``: classes that are the argmax of at least ``share / K`` of the samples
      (default 0.2/K: a fifth of a class's share under even spread, 2 % of samples for
      digits), so stray samples do not cover a class;
    * ``confidence``: ``E_x max_y p(y|x)``, the mean top probability;
    * ``mnist_score``: ``exp(E_x KL(p(y|x) ‖ p(y)))`` with ``p(y) = E_x p(y|x)`` (the
      Inception-score form): K for confident, evenly spread samples, 1 for samples all of
      one class or all equally ambiguous.

    Returns a dict of floats."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0 or not np.all(np.isfinite(p)) or p.min() < 0 or \
            not np.allclose(p.sum(1), 1.0, atol=1e-6):
        raise ValueError(f"class_statistics needs (n, K) rows of probabilities summing to 1; "
                         f"got shape {p.shape}")
    n, k = p.shape
    counts = np.bincount(p.argmax(1), minlength=k)
    marginal = p.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p > 0, p * (np.log(p) - np.log(marginal)), 0.0).sum(1)
    return {"coverage": float(np.sum(counts >= share * n / k)),
            "confidence": float(p.max(1).mean()),
            "mnist_score": float(np.exp(kl.mean()))}
