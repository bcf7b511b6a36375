"""Losses written as composites of primitives, each with its gradient documented.

The ELBO itself is ``scratchgen.losses.elbo.elbo``: the package name ``elbo`` stays the module.
"""
from scratchgen.losses.adversarial import (  # noqa: F401
    gan_discriminator_loss, gan_generator_loss_minimax, gan_generator_loss_nonsaturating,
    jsd_estimate, wgan_critic_loss, wgan_generator_loss, critic_w1_estimate, clip_weights_,
    gradient_penalty)
from scratchgen.losses.elbo import (  # noqa: F401
    reparameterize, reparameterize_grad, kl_normal_std, kl_normal_std_grad, bernoulli_nll,
    bernoulli_nll_grad, gaussian_nll, gaussian_nll_grad, log_normal, log_standard_normal,
    reconstruction_nll, elbo_gradients, iwae_bound)
