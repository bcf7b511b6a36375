import math

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import gammaln

from scratchgen import metrics
from scratchgen.data import toy_dataset


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- exact W1

def test_w1_shift_is_exact():
    a = rng().normal(size=(200, 3))
    v = np.array([0.3, -1.2, 0.5])
    # for a pure translation the identity matching is optimal: W1 = |v|
    assert metrics.wasserstein1_exact(a, a + v) == pytest.approx(np.linalg.norm(v), rel=1e-12)
    assert metrics.wasserstein1_exact(a, a) == 0.0


def test_w1_1d_matches_sorted_formula():
    a, b = rng(1).normal(size=300), rng(2).exponential(size=300)
    expected = np.mean(np.abs(np.sort(a) - np.sort(b)))
    assert metrics.wasserstein1_exact(a, b) == pytest.approx(expected, rel=1e-10)
    assert metrics.wasserstein1_exact(a[:, None], b[:, None]) == pytest.approx(expected, rel=1e-10)
    assert metrics.wasserstein_1d(a, b) == pytest.approx(expected, rel=1e-12)


def test_w1_permutation_invariance_and_symmetry():
    a, b = rng(3).normal(size=(150, 2)), rng(4).uniform(-2, 2, size=(150, 2))
    w = metrics.wasserstein1_exact(a, b)
    assert metrics.wasserstein1_exact(a[rng(5).permutation(150)], b[rng(6).permutation(150)]) == pytest.approx(w)
    assert metrics.wasserstein1_exact(b, a) == pytest.approx(w)


def test_w1_images_flattened():
    a = rng(7).random((20, 1, 4, 4))
    assert metrics.wasserstein1_exact(a, a + 0.5) == pytest.approx(0.5 * 4)


def test_w1_shape_errors():
    with pytest.raises(ValueError, match=r"a \(10, 2\) and b \(9, 2\)"):
        metrics.wasserstein1_exact(np.zeros((10, 2)), np.zeros((9, 2)))
    with pytest.raises(ValueError, match=r"a \(10, 2\) and b \(10, 3\)"):
        metrics.wasserstein1_exact(np.zeros((10, 2)), np.zeros((10, 3)))


# ---------------------------------------------------------------- 1-D and sliced W

def test_wasserstein_1d_unequal_sizes():
    # {0, 1} vs {0, 0.5, 1}: quantile functions differ by 0.5 on u in [1/3, 2/3) -> W1 = 1/6
    assert metrics.wasserstein_1d([0.0, 1.0], [0.0, 0.5, 1.0]) == pytest.approx(1 / 6)
    # duplicating every point leaves the empirical measure unchanged
    a, b = rng(8).normal(size=50), rng(9).normal(size=70)
    assert metrics.wasserstein_1d(a, b) == pytest.approx(metrics.wasserstein_1d(np.repeat(a, 2), b))
    assert metrics.wasserstein_1d(a, b, p=2) == pytest.approx(
        metrics.wasserstein_1d(np.repeat(a, 7), np.repeat(b, 5), p=2))


def test_sliced_identical_is_zero():
    a = rng(10).normal(size=(100, 1, 8, 8))
    assert metrics.sliced_wasserstein(a, a.copy()) == 0.0
    assert metrics.sliced_wasserstein(a, a[::-1]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("d", [2, 10])
def test_sliced_shift(d):
    a = rng(11).normal(size=(500, d))
    v = np.zeros(d)
    v[0] = 2.0
    expected = 2.0 * math.exp(gammaln(d / 2) - gammaln((d + 1) / 2)) / math.sqrt(math.pi)
    sw = metrics.sliced_wasserstein(a, a + v, n_projections=4000, seed=0)
    assert sw == pytest.approx(expected, rel=0.03)
    if d == 2:
        assert expected == pytest.approx(2.0 * 2 / math.pi)


def test_sliced_seeded_and_unequal_sizes():
    a, b = rng(12).normal(size=(300, 3)), rng(13).normal(size=(200, 3)) + 1
    s1 = metrics.sliced_wasserstein(a, b, seed=4)
    assert s1 == metrics.sliced_wasserstein(a, b, seed=4)
    assert s1 > 0.5
    with pytest.raises(ValueError, match="dimension mismatch"):
        metrics.sliced_wasserstein(a, b[:, :2])


# ---------------------------------------------------------------- modes

def test_modes_constructed():
    g = toy_dataset("8gaussians")
    modes, std = g.modes, g.mode_std
    # 100 samples exactly on modes 0..4, 2 samples on mode 5, 98 far away
    good = np.repeat(modes[:5], 20, axis=0)
    few = modes[5] + np.array([[std, 0.0], [0.0, -2 * std]])
    far = np.full((98, 2), 10.0)
    x = np.concatenate([good, few, far])
    n = len(x)  # 200
    np.testing.assert_array_equal(metrics.mode_counts(x, modes, std), [20] * 5 + [2, 0, 0])
    # default min_count = max(1, ceil(0.01 * 200 / 8)) = 1
    assert metrics.modes_covered(x, modes, std) == 6
    assert metrics.modes_covered(x, modes, std, min_count=5) == 5
    assert metrics.high_quality_fraction(x, modes, std) == pytest.approx(102 / n)
    # a sample at 3.5 std is out with n_sigma=3, in with n_sigma=4
    y = modes[6:7] + [[3.5 * std, 0.0]]
    assert metrics.modes_covered(y, modes, std, min_count=1) == 0
    assert metrics.modes_covered(y, modes, std, n_sigma=4, min_count=1) == 1


def test_modes_on_true_samples():
    for name in ("8gaussians", "25gaussians"):
        g = toy_dataset(name)
        x = g.sample(5000, seed=0)
        assert metrics.modes_covered(x, g.modes, g.mode_std) == len(g.modes)
        assert metrics.high_quality_fraction(x, g.modes, g.mode_std) > 0.98
    # a collapsed generator: all mass on one mode
    g = toy_dataset("25gaussians")
    x = g.modes[3] + g.mode_std * rng().normal(size=(2500, 2))
    assert metrics.modes_covered(x, g.modes, g.mode_std) == 1


def test_default_min_count_ignores_strays():
    g = toy_dataset("8gaussians")
    x = np.concatenate([np.repeat(g.modes[:1], 9999, axis=0), g.modes[1:2]])
    # expected share per mode 1250 -> need ceil(12.5) = 13 samples; one stray does not count
    assert metrics.modes_covered(x, g.modes, g.mode_std) == 1
    assert metrics.modes_covered(x, g.modes, g.mode_std, min_count=1) == 2


# ---------------------------------------------------------------- JSD

def test_jsd_identical_is_zero():
    lp = stats.norm(0, 1).logpdf
    assert metrics.jsd_from_densities(lp, lp, (-8, 8), n=2000) == pytest.approx(0.0, abs=1e-12)
    g = toy_dataset("25gaussians")
    assert metrics.jsd_from_densities(g.log_density, g.log_density, ((-2, 2), (-2, 2)), n=200) == \
        pytest.approx(0.0, abs=1e-12)


def test_jsd_disjoint_is_log2():
    lp = stats.uniform(0, 1).logpdf
    lq = stats.uniform(2, 1).logpdf
    assert metrics.jsd_from_densities(lp, lq, (-1, 4), n=5000) == pytest.approx(math.log(2), abs=1e-9)
    # 2-D: 8gaussians vs a far-shifted copy
    g = toy_dataset("8gaussians")
    shifted = lambda x: g.log_density(x - [3.0, 0.0])
    assert metrics.jsd_from_densities(g.log_density, shifted, ((-2, 5), (-2, 2)), n=700) == \
        pytest.approx(math.log(2), abs=1e-6)


def test_jsd_gaussians_against_quad():
    p, q = stats.norm(0, 1), stats.norm(1, 1.5)

    def integrand(x):
        px, qx = p.pdf(x), q.pdf(x)
        m = 0.5 * (px + qx)
        return 0.5 * (px * math.log(px / m) + qx * math.log(qx / m))

    ref, _ = integrate.quad(integrand, -20, 20, epsabs=1e-13, limit=200)
    got = metrics.jsd_from_densities(p.logpdf, q.logpdf, (-20, 20), n=20000)
    assert got == pytest.approx(ref, rel=1e-6)
    assert 0 < got < math.log(2)


def test_jsd_kde_of_true_samples_is_small():
    g = toy_dataset("ring")
    s = g.sample(1000, seed=0)
    bounds = ((-2, 2), (-2, 2))
    near = metrics.jsd_from_densities(g.log_density, metrics.kde_log_density(s, 0.05), bounds, n=120)
    far = metrics.jsd_from_densities(g.log_density, metrics.kde_log_density(0.85 * s, 0.05), bounds, n=120)
    assert near < 0.05 and far > 0.3


def test_kde_normalised_1d():
    kde = metrics.kde_log_density(rng().normal(size=500))
    x = np.linspace(-10, 10, 20001)
    assert np.trapezoid(np.exp(kde(x)), x) == pytest.approx(1.0, abs=1e-6)
