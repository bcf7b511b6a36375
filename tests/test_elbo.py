"""ELBO terms: closed-form gradients = autodiff = central differences (float64); the
reparameterisation's variance; KL vs Monte Carlo; the IWAE estimator on a model with exact
log p(x)."""
import math

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.losses.elbo import (bernoulli_nll, bernoulli_nll_grad, elbo, elbo_gradients,
                                    gaussian_nll, gaussian_nll_grad, iwae_bound, kl_normal_std,
                                    kl_normal_std_grad, log_normal, log_standard_normal,
                                    reparameterize, reparameterize_grad)


def t64(a, grad=False):
    return sg.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def three_ways(term, closed, arrays, wrt):
    """Per-example ``term`` summed; compare closed-form grads, sg.grad and central diffs."""
    ts = [t64(a, grad=True) for a in arrays]
    auto = sg.grad(term(*ts).sum(), [ts[i] for i in wrt])
    cf = closed(*[t64(a) for a in arrays])
    cf = cf if isinstance(cf, tuple) else (cf,)
    fds = sg.numeric_grad(lambda *xs: term(*xs).sum(), [t64(a) for a in arrays])
    for n, i in enumerate(wrt):
        fd = fds[i]
        g_cf = cf[n].numpy()
        if g_cf.shape != fd.shape:  # a broadcast parameter: its gradient sums over the batch
            g_cf = g_cf.reshape(-1, *fd.shape).sum(0)
        np.testing.assert_allclose(auto[n].numpy(), g_cf, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(fd, g_cf, rtol=1e-5, atol=1e-7)


rng = np.random.default_rng(0)


def test_kl_gradients_three_ways():
    mu, lv = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    three_ways(kl_normal_std, kl_normal_std_grad, [mu, lv], wrt=[0, 1])
    np.testing.assert_allclose(kl_normal_std_grad(t64(mu), t64(lv))[1].numpy(),
                               (np.exp(lv) - 1) / 2)


def test_bernoulli_nll_gradient_three_ways():
    logits = rng.normal(size=(3, 5)) * 3
    x = (rng.random((3, 5)) < 0.5).astype(np.float64)
    x[0, :2] = [0.3, 0.9]  # soft targets are allowed too
    three_ways(lambda l, t: bernoulli_nll(l, t), lambda l, t: bernoulli_nll_grad(l, t),
               [logits, x], wrt=[0])
    np.testing.assert_allclose(bernoulli_nll_grad(t64(logits), t64(x)).numpy(),
                               1 / (1 + np.exp(-logits)) - x)


def test_gaussian_nll_gradients_three_ways_including_per_pixel_logvar():
    mean, x = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    lv_full = rng.normal(size=(3, 4)) * 0.5
    three_ways(gaussian_nll, gaussian_nll_grad, [mean, x, lv_full], wrt=[0, 2])
    lv_pixel = rng.normal(size=(4,)) * 0.5  # one learned log-variance per pixel
    three_ways(gaussian_nll, gaussian_nll_grad, [mean, x, lv_pixel], wrt=[0, 2])


def test_gaussian_nll_is_the_normal_log_density():
    from scipy.stats import norm
    mean, x, lv = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    ref = -norm.logpdf(x, mean, np.exp(lv / 2)).sum(1)
    np.testing.assert_allclose(gaussian_nll(t64(mean), t64(x), t64(lv)).numpy(), ref)
    np.testing.assert_allclose(log_normal(t64(x), t64(mean), t64(lv)).numpy(), -ref)


def test_reparameterisation_path_gradients_three_ways():
    mu, lv, eps = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    v = rng.normal(size=(2, 3))  # z is elementwise: test <v, z>
    term = lambda m, l, e: (reparameterize(m, l, e) * t64(v)).sum(axis=1)
    closed = lambda m, l, e: tuple(g * t64(v) for g in reparameterize_grad(m, l, e))
    three_ways(term, closed, [mu, lv, eps], wrt=[0, 1])
    np.testing.assert_allclose(reparameterize_grad(t64(mu), t64(lv), t64(eps))[1].numpy(),
                               eps * np.exp(lv / 2) / 2)


def test_reparameterisation_variance_is_exp_logvar():
    """Catches sampling with exp(logvar) as the standard deviation."""
    n = 200_000
    mu = np.array([0.5, -1.0, 2.0])
    lv = np.array([-1.5, 0.7, 1.2])
    eps = np.random.default_rng(1).standard_normal((n, 3))
    z = reparameterize(t64(np.broadcast_to(mu, (n, 3))), t64(np.broadcast_to(lv, (n, 3))),
                       t64(eps)).numpy()
    np.testing.assert_allclose(z.mean(0), mu, atol=0.02)
    np.testing.assert_allclose(z.var(0), np.exp(lv), rtol=0.02)
    assert np.all(np.abs(z.var(0) / np.exp(2 * lv) - 1) > 0.4)


def test_kl_closed_form_matches_monte_carlo():
    mu, lv = np.array([[0.3, -1.2, 0.8]]), np.array([[-0.5, 0.4, 1.0]])
    eps = np.random.default_rng(2).standard_normal((400_000, 3))
    z = mu + np.exp(lv / 2) * eps
    lq = log_normal(t64(z), t64(mu), t64(lv)).numpy()
    lp = log_standard_normal(t64(z)).numpy()
    mc = (lq - lp)
    exact = kl_normal_std(t64(mu), t64(lv)).item()
    assert abs(mc.mean() - exact) < 4 * mc.std() / math.sqrt(len(mc))
    assert abs(mc.mean() - exact) < 0.01


def linear_decoder(W, b):
    return (lambda z: z @ t64(W) + t64(b)), (lambda g: g @ t64(W.T))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_elbo_gradients_three_ways_with_linear_decoder(likelihood):
    B, Z, D = 3, 2, 5
    W, b = rng.normal(size=(Z, D)), rng.normal(size=D)
    x = (rng.random((B, D)) < 0.5).astype(np.float64) if likelihood == "bernoulli" \
        else rng.normal(size=(B, D))
    mu, lv, eps = rng.normal(size=(B, Z)), rng.normal(size=(B, Z)) * 0.5, rng.normal(size=(B, Z))
    xlv = rng.normal(size=D) * 0.3
    beta = 0.7
    dec, dec_vjp = linear_decoder(W, b)

    def loss(m, l, xl):
        out = dec(reparameterize(m, l, t64(eps)))
        return -elbo(t64(x), out, m, l, likelihood, x_logvar=xl, beta=beta, reduction="sum")

    out = dec(reparameterize(t64(mu), t64(lv), t64(eps)))
    cf = elbo_gradients(t64(x), out, t64(mu), t64(lv), t64(eps), dec_vjp, likelihood,
                        x_logvar=t64(xlv), beta=beta)
    ts = [t64(mu, True), t64(lv, True), t64(xlv, True)]
    names = ["mu", "logvar"] + (["x_logvar"] if likelihood == "gaussian" else [])
    auto = sg.grad(loss(*ts), ts[:len(names)])
    fds = sg.numeric_grad(loss, [mu, lv, xlv])
    for n, name in enumerate(names):
        fd = fds[n]
        np.testing.assert_allclose(auto[n].numpy(), cf[name].numpy(), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(fd, cf[name].numpy(), rtol=1e-5, atol=1e-6)
    assert sg.gradcheck(loss, ts[:len(names)] + ts[len(names):])


def test_elbo_reduction_beta_and_terms():
    B, D, Z = 4, 6, 2
    x = (rng.random((B, D)) < 0.5).astype(np.float64)
    logits, mu, lv = rng.normal(size=(B, D)), rng.normal(size=(B, Z)), rng.normal(size=(B, Z))
    per = elbo(t64(x), t64(logits), t64(mu), t64(lv), beta=0.5, reduction="none").numpy()
    nll = (np.logaddexp(0, logits) - x * logits).sum(1)
    kl = 0.5 * (mu ** 2 + np.exp(lv) - 1 - lv).sum(1)
    np.testing.assert_allclose(per, -nll - 0.5 * kl)
    e, n, k = elbo(t64(x), t64(logits), t64(mu), t64(lv), reduction="mean", return_terms=True)
    np.testing.assert_allclose([e.item(), n.item(), k.item()],
                               [(-nll - kl).mean(), nll.mean(), kl.mean()])
    with pytest.raises(ValueError, match="reduction"):
        elbo(t64(x), t64(logits), t64(mu), t64(lv), reduction="avg")
    with pytest.raises(ValueError, match="shape"):
        bernoulli_nll(t64(logits), t64(x[:, :3]))


def test_bernoulli_nll_finite_at_extreme_logits():
    logits = t64([[1e4, -1e4, 0.0]], grad=True)
    x = t64([[0.0, 1.0, 1.0]])
    nll = bernoulli_nll(logits, x)
    np.testing.assert_allclose(nll.numpy(), [2e4 + math.log(2)])
    (g,) = sg.grad(nll.sum(), logits)
    np.testing.assert_allclose(g.numpy(), [[1.0, -1.0, -0.5]])


# ---- IWAE ----------------------------------------------------------------------------------
def linear_gaussian(seed=0, Z=3, D=5, B=4, s=0.7):
    """p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I), W with orthogonal columns so that the
    exact posterior N(m, S) is diagonal: S = (I + W^T W / s^2)^-1, m = S W^T (x - b) / s^2."""
    r = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(r.normal(size=(D, Z)))
    W = Q * np.array([2.0, 1.0, 0.5])[:Z]
    b = r.normal(size=D)
    C = W @ W.T + s ** 2 * np.eye(D)
    x = r.multivariate_normal(b, C, size=B)
    d = x - b
    log_px = -0.5 * (D * math.log(2 * math.pi) + np.linalg.slogdet(C)[1]
                     + np.einsum("bi,ij,bj->b", d, np.linalg.inv(C), d))
    S = 1 / (1 + (W ** 2).sum(0) / s ** 2)
    m = (d @ W) / s ** 2 * S
    xt = t64(x)

    def log_joint(z):  # z (c, B, Z) -> (c, B)
        mean = z @ t64(W.T) + t64(b)
        c = z.shape[0]
        lpx = log_normal(F_reshape(xt - mean, (-1, D)), t64(np.zeros(D)),
                         t64(np.full(D, 2 * math.log(s))))
        lpz = log_standard_normal(F_reshape(z, (-1, Z)))
        return F_reshape(lpx, (c, -1)) + F_reshape(lpz, (c, -1))

    return log_joint, log_px, m, np.log(S) * np.ones_like(m)


def F_reshape(t, shape):
    return sg.functional.reshape(t, shape)


def test_iwae_with_exact_posterior_equals_log_px_for_any_k():
    log_joint, log_px, m, lv = linear_gaussian()
    for k in (1, 7, 50):
        est = iwae_bound(log_joint, t64(m), t64(lv), k, rng=np.random.default_rng(k)).numpy()
        np.testing.assert_allclose(est, log_px, rtol=0, atol=1e-9)


def test_iwae_with_worse_q_is_a_lower_bound_increasing_in_k():
    log_joint, log_px, m, lv = linear_gaussian(seed=1)
    mu_q, lv_q = m + 1.5, lv + 1.5  # a biased, too wide q
    means = []
    for k in (1, 10, 100):
        r = np.random.default_rng(10 + k)
        reps = [iwae_bound(log_joint, t64(mu_q), t64(lv_q), k, rng=r).numpy() for _ in range(60)]
        means.append(np.mean(reps, axis=0))
    means = np.array(means)
    assert np.all(means < log_px[None])
    assert np.all(np.diff(means, axis=0) > 0)
    assert np.all(log_px - means[-1] < 0.5 * (log_px - means[0]))


def test_iwae_k1_is_the_elbo_with_the_same_eps():
    log_joint, log_px, m, lv = linear_gaussian(seed=2)
    mu_q, lv_q = m - 0.3, lv + 0.5
    B, Z = m.shape
    eps = np.random.default_rng(3).standard_normal((1000, 1, B, Z))
    iw = np.stack([iwae_bound(log_joint, t64(mu_q), t64(lv_q), 1, eps=e).numpy() for e in eps])
    z = mu_q + np.exp(lv_q / 2) * eps[:, 0]                                  # (n, B, Z)
    log_px_z = log_joint(t64(z)).numpy() - log_standard_normal(t64(z.reshape(-1, Z))).numpy() \
        .reshape(len(eps), B)
    log_q = log_normal(t64(z.reshape(-1, Z)), t64(np.tile(mu_q, (len(eps), 1))),
                       t64(np.tile(lv_q, (len(eps), 1)))).numpy().reshape(len(eps), B)
    log_p_z = log_standard_normal(t64(z.reshape(-1, Z))).numpy().reshape(len(eps), B)
    # the one-sample ELBO log p(x|z) + log p(z) - log q(z|x), draw by draw
    np.testing.assert_allclose(iw, log_px_z + log_p_z - log_q, rtol=1e-12)
    # and its mean over eps is the ELBO with the KL in closed form, below log p(x)
    analytic = log_px_z.mean(0) - kl_normal_std(t64(mu_q), t64(lv_q)).numpy()
    se = iw.std(0) / math.sqrt(len(eps))
    assert np.all(np.abs(iw.mean(0) - analytic) < 4 * se)
    assert np.all(analytic < log_px)


def test_iwae_chunked_equals_unchunked_and_is_stable():
    log_joint, log_px, m, lv = linear_gaussian(seed=3)
    mu_q, lv_q = m + 0.2, lv + 0.3
    full = iwae_bound(log_joint, t64(mu_q), t64(lv_q), 37, rng=np.random.default_rng(5)).numpy()
    for chunk in (1, 5, 36):
        part = iwae_bound(log_joint, t64(mu_q), t64(lv_q), 37, rng=np.random.default_rng(5),
                          chunk=chunk).numpy()
        np.testing.assert_allclose(part, full, rtol=1e-12)
    # log weights near -1e4: a naive log(mean(exp)) would give -inf
    shifted = iwae_bound(lambda z: log_joint(z) - 1e4, t64(mu_q), t64(lv_q), 37,
                         rng=np.random.default_rng(5), chunk=5).numpy()
    np.testing.assert_allclose(shifted, full - 1e4, rtol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        iwae_bound(log_joint, t64(mu_q), t64(lv_q), 3, eps=np.zeros((2, *m.shape)))


def test_losses_elbo_is_the_module():
    import importlib
    import types
    E = importlib.import_module("scratchgen.losses.elbo")
    import scratchgen.losses.elbo as E2
    from scratchgen import losses
    assert isinstance(E2, types.ModuleType) and E2 is E and losses.elbo is E
    assert E.elbo is elbo and losses.kl_normal_std is kl_normal_std
