"""Adversarial losses: closed-form gradients = autodiff = finite differences, the GAN optimum,
weight clipping and the gradient penalty (independent of scratchgen.nn: critics here are
plain functions of parameter tensors)."""
import math

import numpy as np
import pytest
from scipy import stats

import scratchgen as sg
import scratchgen.functional as F
from scratchgen.losses import adversarial as A
from scratchgen.metrics import jsd_from_densities


def t64(a, requires_grad=False):
    return sg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


# logits spread over the saturated and linear regions, away from nothing (all smooth)
REAL = np.array([-30.0, -3.1, -0.4, 0.0, 0.7, 2.5, 25.0])
FAKE = np.array([-22.0, -1.3, 0.2, 1.9, 40.0])

TWO_ARG = [(A.gan_discriminator_loss, A.gan_discriminator_loss_grad),
           (A.wgan_critic_loss, A.wgan_critic_loss_grad)]
ONE_ARG = [(A.gan_generator_loss_minimax, A.gan_generator_loss_minimax_grad),
           (A.gan_generator_loss_nonsaturating, A.gan_generator_loss_nonsaturating_grad),
           (A.wgan_generator_loss, A.wgan_generator_loss_grad)]


@pytest.mark.parametrize("loss,closed", TWO_ARG, ids=lambda f: getattr(f, "__name__", ""))
def test_two_sided_loss_gradients_three_ways(loss, closed):
    r, f = t64(REAL, True), t64(FAKE, True)
    gr, gf = sg.grad(loss(r, f), [r, f])
    cr, cf = closed(r, f)
    np.testing.assert_allclose(gr.numpy(), cr.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gf.numpy(), cf.numpy(), rtol=1e-12, atol=1e-15)
    assert sg.gradcheck(loss, [r, f])


@pytest.mark.parametrize("loss,closed", ONE_ARG, ids=lambda f: getattr(f, "__name__", ""))
def test_generator_loss_gradients_three_ways(loss, closed):
    f = t64(FAKE, True)
    (g,) = sg.grad(loss(f), f)
    np.testing.assert_allclose(g.numpy(), closed(f).numpy(), rtol=1e-12, atol=1e-15)
    assert sg.gradcheck(loss, f)


def test_gan_losses_values_and_finiteness_at_extreme_logits():
    r, f = t64([1e4, -1e4, 0.0], True), t64([-1e4, 1e4], True)
    # softplus(-1e4) = 0, softplus(1e4) = 1e4, softplus(0) = log 2
    np.testing.assert_allclose(A.gan_discriminator_loss(r, f).item(),
                               (0 + 1e4 + math.log(2)) / 3 + (0 + 1e4) / 2)
    for v in (A.gan_generator_loss_minimax(f), A.gan_generator_loss_nonsaturating(f)):
        assert np.isfinite(v.item())
        assert np.all(np.isfinite(sg.grad(v, f)[0].numpy()))
    # log(1 - D) with D = sigmoid(l): the minimax loss is mean log(1 - sigmoid(l))
    l = np.array([-2.0, 0.5, 3.0])
    np.testing.assert_allclose(A.gan_generator_loss_minimax(t64(l)).item(),
                               np.mean(np.log(1 - 1 / (1 + np.exp(-l)))))


def test_minimax_saturates_nonsaturating_does_not():
    f = t64(np.full(4, -20.0), True)  # the discriminator confidently rejects every fake
    (g_mm,) = sg.grad(A.gan_generator_loss_minimax(f), f)
    (g_ns,) = sg.grad(A.gan_generator_loss_nonsaturating(f), f)
    assert np.all(np.abs(g_mm.numpy()) < 1e-8)
    np.testing.assert_allclose(g_ns.numpy(), -0.25, rtol=1e-8)


def test_discriminator_loss_at_optimum_is_log4_minus_2jsd():
    """D*(x) = p/(p+q), i.e. logit log p - log q; the loss is then log 4 - 2 JSD(p, q).
    Expectations by the midpoint rule in probability space: the 'samples' are quantiles."""
    p, q = stats.norm(0.0, 1.0), stats.norm(1.0, 1.5)
    logit = lambda x: p.logpdf(x) - q.logpdf(x)
    u = (np.arange(200_000) + 0.5) / 200_000
    loss = A.gan_discriminator_loss(t64(logit(p.ppf(u))), t64(logit(q.ppf(u)))).item()
    jsd = jsd_from_densities(p.logpdf, q.logpdf, bounds=(-20.0, 20.0), n=40_000)
    assert 0.05 < jsd < math.log(2)
    np.testing.assert_allclose(loss, math.log(4) - 2 * jsd, atol=2e-4)
    np.testing.assert_allclose(A.jsd_estimate(loss), jsd, atol=1e-4)
    # D* is the optimum: scaling its logits either way increases the loss
    for s in (0.9, 1.1):
        other = A.gan_discriminator_loss(t64(s * logit(p.ppf(u))), t64(s * logit(q.ppf(u))))
        assert other.item() > loss


def test_identical_distributions_give_log4_and_zero_jsd():
    z = t64(np.zeros(5))
    assert A.gan_discriminator_loss(z, z).item() == pytest.approx(math.log(4))
    assert A.jsd_estimate(math.log(4)) == 0.0


def test_wgan_losses_and_w1_estimate():
    r, f = t64([1.0, 2.0, 3.0]), t64([-1.0, 0.0])
    assert A.wgan_critic_loss(r, f).item() == pytest.approx(-0.5 - 2.0)
    assert A.wgan_generator_loss(f).item() == pytest.approx(0.5)
    assert A.critic_w1_estimate(r, f) == pytest.approx(2.5)


def test_clip_weights_in_place():
    w = t64(np.linspace(-1, 1, 12).reshape(3, 4), True)
    b = t64([0.003, -0.5], True)
    A.clip_weights_([w, b], 0.01)
    assert np.abs(w.numpy()).max() == pytest.approx(0.01)
    np.testing.assert_array_equal(b.numpy(), [0.003, -0.01])
    assert w.requires_grad and w.is_leaf
    with pytest.raises(ValueError, match="c must be > 0"):
        A.clip_weights_([w], 0.0)


# ---- gradient penalty ------------------------------------------------------------------------
def mlp_critic(params):
    """D(x) = w2 · tanh(W1 flatten(x) + b1) + b2 (smooth: no kinks for finite differences)."""
    w1, b1, w2, b2 = params

    def critic(x):
        h = F.tanh(F.linear(x.reshape(x.shape[0], -1), w1, b1))
        return F.linear(h, w2, b2)
    return critic


def mlp_params(rng, d_in, hidden=6, scale=1.0):
    return [t64(scale * rng.standard_normal((hidden, d_in)), True),
            t64(scale * rng.standard_normal(hidden), True),
            t64(scale * rng.standard_normal((1, hidden)), True),
            t64(scale * rng.standard_normal(1), True)]


def test_penalty_of_linear_critic_on_images_uses_the_full_norm():
    """D(x) = <w, x> has gradient w everywhere: penalty = lam (||w||_F - 1)^2, with the norm
    over C·H·W (taking it over one axis of the 4-D gradient would give a different value)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3, 3)) * 0.3
    wt = t64(w)
    critic = lambda x: (x * wt).sum(axis=(1, 2, 3))
    real, fake = rng.standard_normal((5, 2, 3, 3)), rng.standard_normal((5, 2, 3, 3))
    pen, mean_norm = A.gradient_penalty(critic, t64(real), t64(fake), rng=rng, lam=10.0,
                                        return_norm=True)
    full = np.linalg.norm(w)
    assert pen.item() == pytest.approx(10.0 * (full - 1) ** 2, rel=1e-9)
    assert mean_norm == pytest.approx(full, rel=1e-9)
    wrong = np.mean((np.linalg.norm(np.broadcast_to(w, (5, 2, 3, 3)), axis=1) - 1) ** 2) * 10
    assert abs(pen.item() - wrong) > 1e-2


def test_penalty_interpolates_with_one_uniform_alpha_per_example():
    """D(x) = ½||x||² has gradient x, so ||g_i|| = ||α_i r_i + (1-α_i) f_i||."""
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((64, 1, 2, 2)), rng.standard_normal((64, 1, 2, 2))
    critic = lambda x: 0.5 * (x * x).sum(axis=(1, 2, 3))
    pen = A.gradient_penalty(critic, t64(real), t64(fake), rng=np.random.default_rng(7), lam=2.0)
    alpha = np.random.default_rng(7).random((64, 1, 1, 1))  # what the penalty drew
    assert np.all((alpha >= 0) & (alpha < 1))
    xh = alpha * real + (1 - alpha) * fake
    expect = 2.0 * np.mean((np.linalg.norm(xh.reshape(64, -1), axis=1) - 1) ** 2)
    assert pen.item() == pytest.approx(expect, rel=1e-9)
    # the same alpha passed explicitly, as (B,) or (B, 1, 1, 1)
    for a in (alpha, alpha.ravel()):
        assert A.gradient_penalty(critic, t64(real), t64(fake), alpha=a, lam=2.0).item() \
            == pytest.approx(expect, rel=1e-12)


def test_penalty_finite_at_zero_gradient():
    """A critic with zero weights is constant in x: g = 0, the plain norm's gradient would be
    0/0; the safe norm gives penalty = lam and zero (finite) parameter gradients."""
    rng = np.random.default_rng(2)
    params = [t64(np.zeros((6, 2)), True), t64(rng.standard_normal(6), True),
              t64(np.zeros((1, 6)), True), t64([0.3], True)]
    pen = A.gradient_penalty(mlp_critic(params), t64(rng.standard_normal((8, 2))),
                             t64(rng.standard_normal((8, 2))), rng=rng, lam=10.0)
    assert pen.item() == pytest.approx(10.0, rel=1e-5)
    grads = sg.grad(pen, params, allow_unused=True)
    for g in grads:
        if g is not None:
            assert np.all(np.isfinite(g.numpy()))
            np.testing.assert_array_equal(g.numpy(), 0.0)


@pytest.mark.parametrize("shape", [(6, 2), (4, 1, 3, 3)])
def test_penalty_parameter_gradients_match_finite_differences(shape):
    rng = np.random.default_rng(3)
    params = mlp_params(rng, int(np.prod(shape[1:])), scale=0.7)
    real, fake = t64(rng.standard_normal(shape)), t64(rng.standard_normal(shape))
    alpha = rng.random(shape[0])

    def penalty(*ps):
        return A.gradient_penalty(mlp_critic(ps), real, fake, alpha=alpha, lam=10.0)

    assert sg.gradcheck(penalty, params, atol=1e-6, rtol=1e-5)


def test_penalty_refuses_batchnorm_and_bad_inputs():
    class BatchNorm1d:  # stands for any batch-normalisation layer (matched by class name)
        pass

    class Critic:
        def __init__(self):
            self.layers = [BatchNorm1d()]

        def modules(self):
            return [self] + self.layers

        def __call__(self, x):
            return x.sum(axis=1)

    x = t64(np.ones((3, 2)))
    with pytest.raises(ValueError, match="BatchNorm1d.*batch normalisation"):
        A.gradient_penalty(Critic(), x, x, rng=np.random.default_rng(0))
    critic = lambda x: x.sum(axis=1)
    with pytest.raises(ValueError, match="differ"):
        A.gradient_penalty(critic, x, t64(np.ones((2, 2))), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="alpha or rng"):
        A.gradient_penalty(critic, x, x)
