"""Models and their training tasks (importing this package registers the tasks)."""
from scratchgen.models import gan, vae  # noqa: F401  (register gan, wgan, wgan-gp, vae)
from scratchgen.models.gan import (DCGANDiscriminator, DCGANGenerator, GANTask, WGANGPTask,
                                   WGANTask, toy_critic, toy_generator)
from scratchgen.models.vae import VAE, VAETask

__all__ = ["gan", "vae", "DCGANDiscriminator", "DCGANGenerator", "GANTask", "WGANGPTask",
           "WGANTask", "toy_critic", "toy_generator", "VAE", "VAETask"]
