"""Adversarial losses: GAN (through logits), WGAN (weight clipping) and WGAN-GP.

Each loss is a short composite of primitives (autodiff needs no backward code for it); its
gradient with respect to the discriminator/critic outputs is written in the docstring and,
as a closed form, in the matching ``*_grad`` function, which the tests compare with autodiff
and with finite differences. ``B_r``/``B_f`` are the numbers of real/fake outputs.

GAN background (Goodfellow et al. 2014). With ``D = sigmoid(l)`` and the value

    V(D) = E_p[log D(x)] + E_q[log(1 - D(x))],    log D = -softplus(-l), log(1-D) = -softplus(l),

the best discriminator for fixed ``q`` (the generator's distribution) is pointwise
``D*(x) = p(x) / (p(x) + q(x))`` (logit ``log p - log q``), and

    V(D*) = 2 JSD(p, q) - log 4.

The discriminator loss is ``-V``, so a converged discriminator's loss estimates
``log 4 - 2 JSD`` and :func:`jsd_estimate` inverts that: ``JSD ≈ (log 4 - loss) / 2``.
"""
import math

from scratchgen import backend
from scratchgen import functional as F
from scratchgen.autograd.graph import grad as _grad
from scratchgen.autograd.tensor import Tensor

__all__ = [
    "gan_discriminator_loss", "gan_discriminator_loss_grad",
    "gan_generator_loss_minimax", "gan_generator_loss_minimax_grad",
    "gan_generator_loss_nonsaturating", "gan_generator_loss_nonsaturating_grad",
    "jsd_estimate",
    "wgan_critic_loss", "wgan_critic_loss_grad", "wgan_generator_loss",
    "wgan_generator_loss_grad", "critic_w1_estimate", "clip_weights_",
    "gradient_penalty", "check_no_batchnorm", "GP_NORM_EPS",
]

LOG4 = math.log(4.0)


def _t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _const(x):
    """A constant Tensor with ``x``'s values (outside any graph)."""
    return _t(x).detach()


# ---- GAN (logits) -------------------------------------------------------------------------
def gan_discriminator_loss(real_logits, fake_logits):
    """``mean softplus(-l_r) + mean softplus(l_f)`` = ``-V(D)`` (binary cross-entropy with
    targets 1 for real, 0 for fake), finite for any logits (no log(0)).

    d/dl_r,i = -sigmoid(-l_r,i) / B_r = (sigmoid(l_r,i) - 1) / B_r,
    d/dl_f,j =  sigmoid(l_f,j) / B_f.

    At the optimum ``D*`` it equals ``log 4 - 2 JSD(p, q)``.
    """
    return F.softplus(-_t(real_logits)).mean() + F.softplus(_t(fake_logits)).mean()


def gan_discriminator_loss_grad(real_logits, fake_logits):
    """Closed-form ``(d loss/d real_logits, d loss/d fake_logits)`` of
    :func:`gan_discriminator_loss`."""
    r, f = _const(real_logits), _const(fake_logits)
    return (F.sigmoid(r) - 1.0) * (1.0 / r.size), F.sigmoid(f) * (1.0 / f.size)


def gan_generator_loss_minimax(fake_logits):
    """The minimax generator loss ``mean log(1 - D(G(z))) = -mean softplus(l_f)``.

    d/dl_f,j = -sigmoid(l_f,j) / B_f, which vanishes as ``l_f -> -inf``: when the
    discriminator confidently rejects the fakes (early in training) the generator gets no
    gradient (saturation).
    """
    return -F.softplus(_t(fake_logits)).mean()


def gan_generator_loss_minimax_grad(fake_logits):
    f = _const(fake_logits)
    return -F.sigmoid(f) * (1.0 / f.size)


def gan_generator_loss_nonsaturating(fake_logits):
    """The non-saturating generator loss ``-mean log D(G(z)) = mean softplus(-l_f)``.

    d/dl_f,j = -sigmoid(-l_f,j) / B_f = (sigmoid(l_f,j) - 1) / B_f, which tends to
    ``-1/B_f`` (not 0) as ``l_f -> -inf``.
    """
    return F.softplus(-_t(fake_logits)).mean()


def gan_generator_loss_nonsaturating_grad(fake_logits):
    f = _const(fake_logits)
    return (F.sigmoid(f) - 1.0) * (1.0 / f.size)


def jsd_estimate(discriminator_loss):
    """JSD (nats) implied by a discriminator loss (a float or a 0-d array, kept on the device),
    exact at ``D*``: ``(log 4 - loss) / 2``."""
    return (LOG4 - discriminator_loss) / 2.0


# ---- WGAN -----------------------------------------------------------------------------------
def wgan_critic_loss(real_scores, fake_scores):
    """``mean D(fake) - mean D(real)`` (minimised by the critic; its negative estimates
    ``W1`` up to the critic's Lipschitz constant).

    d/dD_r,i = -1 / B_r,   d/dD_f,j = 1 / B_f.
    """
    return _t(fake_scores).mean() - _t(real_scores).mean()


def wgan_critic_loss_grad(real_scores, fake_scores):
    r, f = _const(real_scores), _const(fake_scores)
    xp = backend.xp
    return (Tensor._wrap(xp.full(r.shape, -1.0 / r.size, dtype=r.dtype)),
            Tensor._wrap(xp.full(f.shape, 1.0 / f.size, dtype=f.dtype)))


def wgan_generator_loss(fake_scores):
    """``-mean D(fake)``;  d/dD_f,j = -1 / B_f (never saturates)."""
    return -_t(fake_scores).mean()


def wgan_generator_loss_grad(fake_scores):
    f = _const(fake_scores)
    return Tensor._wrap(backend.xp.full(f.shape, -1.0 / f.size, dtype=f.dtype))


def critic_w1_estimate(real_scores, fake_scores):
    """``E[D(real)] - E[D(fake)]`` as a float: the critic's estimate of W1 (exact for the
    optimal 1-Lipschitz critic; a clipped critic gives ``K·W1`` with an unknown ``K``)."""
    return float(_t(real_scores).array.mean() - _t(fake_scores).array.mean())


def _parameters(module_or_params):
    if hasattr(module_or_params, "parameters"):
        return list(module_or_params.parameters())
    if isinstance(module_or_params, Tensor):
        return [module_or_params]
    return list(module_or_params)


def clip_weights_(module, c=0.01):
    """Clamp every parameter of ``module`` (or an iterable of tensors) to ``[-c, c]`` in place,
    outside the graph; call it after each critic update (WGAN, Arjovsky et al. 2017).
    Returns ``module``."""
    c = float(c)
    if not c > 0:
        raise ValueError(f"clip_weights_: c must be > 0, got {c}")
    xp = backend.xp
    for p in _parameters(module):
        xp.clip(p.array, -c, c, out=p.array)
    return module


# ---- WGAN-GP --------------------------------------------------------------------------------
GP_NORM_EPS = 1e-12


def _submodules(m):
    if hasattr(m, "modules") and callable(m.modules):
        return list(m.modules())
    return [m]


def check_no_batchnorm(critic):
    """Raise ``ValueError`` if ``critic`` (a module tree) contains batch normalisation."""
    for m in _submodules(critic):
        if any(c.__name__.startswith("BatchNorm") for c in type(m).__mro__):
            raise ValueError(
                f"gradient_penalty: the critic contains {type(m).__name__}. The penalty "
                "constrains each example's input gradient ||dD(x_i)/dx_i||, which is only "
                "meaningful when D(x_i) depends on x_i alone; batch normalisation couples the "
                "examples of a batch through its statistics, so the penalised quantity is not "
                "the critic's gradient (Gulrajani et al. 2017, sec. 4). Remove the "
                "normalisation, or use a per-example one such as layer normalisation.")


def gradient_penalty(critic, real, fake, alpha=None, rng=None, lam=10.0, return_norm=False):
    """WGAN-GP penalty ``lam · mean_i (||∇_x D(x̂_i)|| - 1)²`` (Gulrajani et al. 2017).

    ``x̂ = α x_real + (1 - α) x_fake`` with one ``α ~ U(0, 1)`` per example, shape (B, 1) for
    points and (B, 1, 1, 1) for images (``alpha`` given, or drawn from the numpy Generator
    ``rng``). Real and fake enter as constants: the penalty trains the critic only.
    ``∇_x D(x̂_i)`` comes from ``grad(D(x̂).sum(), x̂, create_graph=True)`` (the examples do not
    interact, so the sum's gradient holds each example's own); it is flattened to (B, -1)
    before the norm, so images take the norm over C·H·W, not over one axis.

    The norm is ``sqrt(Σ g² + ε)``, ``ε = GP_NORM_EPS = 1e-12``: the plain norm's gradient
    ``g/||g||`` is 0/0 = NaN at ``g = 0`` (e.g. a dead-ReLU or zero-weight critic); with ε it
    is ``g / sqrt(Σ g² + ε) = 0`` there, the penalty is ``lam (√ε - 1)² ≈ lam``, and the value
    moves by at most ``ε / (2||g||)`` elsewhere.

    d/dg_i of the penalty = ``(2 lam / B) (n_i - 1) g_i / n_i`` with ``n_i`` the safe norm.
    ``return_norm=True`` also returns the mean gradient norm (a float, for logging).
    """
    check_no_batchnorm(critic)
    xp = backend.xp
    real, fake = _const(real), _const(fake)
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {real.shape} and fake {fake.shape} differ")
    b = real.shape[0]
    ashape = (b,) + (1,) * (real.ndim - 1)
    if alpha is None:
        if rng is None:
            raise ValueError("gradient_penalty needs alpha or rng (a numpy Generator)")
        alpha = rng.random(ashape)
    alpha = backend.asarray(alpha.array if isinstance(alpha, Tensor) else alpha, dtype=real.dtype)
    if alpha.shape != ashape:
        alpha = alpha.reshape(ashape)  # raises for a wrong size
    xh = Tensor(alpha * real.array + (1 - alpha) * fake.array, requires_grad=True)
    (g,) = _grad(critic(xh).sum(), xh, create_graph=True)
    g = g.reshape(b, -1)
    norm = F.sqrt((g * g).sum(axis=1) + GP_NORM_EPS)
    pen = F.square(norm - 1.0).mean() * float(lam)
    if return_norm:
        return pen, float(xp.mean(norm.array))
    return pen
