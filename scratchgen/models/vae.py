"""Variational autoencoder (Kingma & Welling, 2014) and its training task ``vae``.

q(z|x) = N(mu(x), diag exp(logvar(x))),  p(z) = N(0, I),
p(x|z) = Bernoulli(sigmoid(logits(z)))  or  N(mean(z), diag exp(x_logvar)).

The loss is -ELBO (:mod:`scratchgen.losses.elbo`); held-out log p(x) is estimated with the
importance-weighted bound IWAE_k (Burda et al., 2016).

>>> import numpy as np, scratchgen as sg
>>> from scratchgen.models.vae import VAE
>>> vae = VAE(x_dim=6, hidden=(5,), z_dim=2)
>>> x = sg.tensor((np.arange(12).reshape(2, 6) % 2).astype(np.float32))
>>> loss, terms = vae.loss(x, sg.tensor(np.zeros((2, 2), np.float32)))
>>> sorted(terms)
['elbo', 'kl', 'recon']
"""
import math

import numpy as np

from scratchgen import backend, nn, optim
from scratchgen import functional as F
from scratchgen.autograd.graph import no_grad
from scratchgen.autograd.tensor import tensor
from scratchgen.losses.elbo import (elbo, iwae_bound, log_standard_normal, reconstruction_nll,
                                    reparameterize as _reparameterize)
from scratchgen.data import PREPROCESS
from scratchgen.optim.lr_scheduler import SCHEDULES as LR_SCHEDULES
from scratchgen.spec import Param, Spec
from scratchgen.tasks import Task, register


def active_units(means, threshold=0.01):
    """Active latent units (Burda et al., 2016): A_u = Cov_x(E_q[z_u | x]) over a data set.
    ``means``: host array (N, z_dim) of posterior means. Returns ``(count, A)`` with
    ``count = #{u : A_u > threshold}``."""
    a = np.var(np.asarray(means, dtype=np.float64), axis=0)
    return int((a > threshold).sum()), a


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


def _mlp(sizes, act, g):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b, generator=g)] + ([act()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """``arch='mlp'``: x_dim - hidden... - 2 z_dim encoder, mirrored decoder (784-400-20 by
    default). ``arch='conv'`` (images ``image_shape`` with H, W divisible by 4): two stride-2
    4x4 convolutions (32, 64 channels) and a ``hidden[0]`` fully connected layer, mirrored with
    transposed convolutions. Inputs of any shape (B, ...) are flattened to (B, x_dim); the
    decoder's output is (B, x_dim): Bernoulli logits or Gaussian means.

    ``likelihood='gaussian'``: ``gaussian_var='fixed'`` uses variance ``fixed_var`` (a buffer),
    ``'learned'`` one log-variance parameter per pixel, ``x_logvar``. ``generator``: the NumPy
    Generator that draws the initial weights (default: the global one, ``sg.manual_seed``).
    """

    def __init__(self, x_dim=784, hidden=(400,), z_dim=20, arch="mlp", likelihood="bernoulli",
                 gaussian_var="fixed", fixed_var=1.0, activation="relu", image_shape=(1, 28, 28),
                 generator=None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {activation!r}")
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        if gaussian_var not in ("fixed", "learned"):
            raise ValueError(f"gaussian_var must be 'fixed' or 'learned', got {gaussian_var!r}")
        act, g = ACTIVATIONS[activation], generator
        hidden = tuple(int(h) for h in hidden)
        self.x_dim, self.z_dim, self.likelihood = int(x_dim), int(z_dim), likelihood
        if arch == "mlp":
            self.encoder = _mlp((self.x_dim, *hidden, 2 * self.z_dim), act, g)
            self.decoder = _mlp((self.z_dim, *hidden[::-1], self.x_dim), act, g)
        elif arch == "conv":
            c, h, w = image_shape
            if c * h * w != self.x_dim or h % 4 or w % 4:
                raise ValueError(f"arch='conv' needs image_shape (C, H, W) with C*H*W = x_dim "
                                 f"({self.x_dim}) and H, W divisible by 4; got {image_shape}")
            fc, flat = (hidden[0] if hidden else 256), 64 * (h // 4) * (w // 4)
            self.encoder = nn.Sequential(
                nn.Unflatten(1, (c, h, w)),
                nn.Conv2d(c, 32, 4, stride=2, padding=1, generator=g), act(),
                nn.Conv2d(32, 64, 4, stride=2, padding=1, generator=g), act(), nn.Flatten(),
                nn.Linear(flat, fc, generator=g), act(), nn.Linear(fc, 2 * self.z_dim, generator=g))
            self.decoder = nn.Sequential(
                nn.Linear(self.z_dim, fc, generator=g), act(),
                nn.Linear(fc, flat, generator=g), act(),
                nn.Unflatten(1, (64, h // 4, w // 4)),
                nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1, generator=g), act(),
                nn.ConvTranspose2d(32, c, 4, stride=2, padding=1, generator=g), nn.Flatten())
        else:
            raise ValueError(f"arch must be 'mlp' or 'conv', got {arch!r}")
        self.x_logvar = None
        if likelihood == "gaussian":
            lv = backend.xp.full((self.x_dim,), math.log(fixed_var), dtype=backend.xp.float32)
            if gaussian_var == "learned":
                self.x_logvar = nn.Parameter(lv)
            else:
                self.register_buffer("x_logvar", lv)

    def encode(self, x):
        """(mu, logvar) of q(z|x), each (B, z_dim)."""
        h = self.encoder(F.reshape(x, (x.shape[0], self.x_dim)))
        return h[:, :self.z_dim], h[:, self.z_dim:]

    def decode(self, z):
        """Decoder output (B, x_dim): Bernoulli logits or Gaussian means."""
        return self.decoder(z)

    @staticmethod
    def reparameterize(mu, logvar, eps):
        """z = mu + exp(logvar/2) * eps."""
        return _reparameterize(mu, logvar, eps)

    def forward(self, x, eps):
        """(decoder output, mu, logvar) for z = mu + sigma * eps."""
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar, eps)), mu, logvar

    def loss(self, x, eps, beta=1.0):
        """(-ELBO averaged over the batch, {'elbo', 'recon', 'kl'} as tensors); recon is the
        reconstruction NLL -log p(x|z) in nats."""
        x = F.reshape(x, (x.shape[0], self.x_dim))
        out, mu, logvar = self(x, eps)
        value, nll, kl = elbo(x, out, mu, logvar, self.likelihood, self.x_logvar, beta,
                              reduction="mean", return_terms=True)
        return -value, {"elbo": value, "recon": nll, "kl": kl}

    def mean(self, out):
        """E[x|z] from the decoder output: sigmoid(logits) or the Gaussian mean."""
        return F.sigmoid(out) if self.likelihood == "bernoulli" else out

    def log_joint(self, x, z):
        """log p(x, z) = log p(x|z) + log p(z) for x (B, x_dim) and z (c, B, z_dim) -> (c, B)."""
        c, b, _ = z.shape
        zf = F.reshape(z, (c * b, self.z_dim))
        out = F.reshape(self.decode(zf), (c, b, self.x_dim))
        xb = F.broadcast_to(F.reshape(x, (1, b, self.x_dim)), (c, b, self.x_dim))
        flat = (c * b, self.x_dim)
        nll = reconstruction_nll(F.reshape(xb, flat), F.reshape(out, flat), self.likelihood,
                                 self.x_logvar)
        return F.reshape(log_standard_normal(zf) - nll, (c, b))

    def iwae(self, x, k, rng, chunk=None):
        """IWAE_k estimate of log p(x) per example (B,), without a graph; ``chunk`` samples at
        a time (default: as many as keep ~2e6 decoder outputs in memory)."""
        with no_grad():
            x = F.reshape(x, (x.shape[0], self.x_dim))
            mu, logvar = self.encode(x)
            if chunk is None:
                chunk = max(1, int(2e6) // (x.shape[0] * self.x_dim))
            return iwae_bound(lambda z: self.log_joint(x, z), mu, logvar, k, rng=rng, chunk=chunk)

    def sample(self, n, rng, mean=True):
        """``n`` draws (host array (n, x_dim)): decoder means E[x|z] for z ~ N(0, I), or, with
        ``mean=False``, x ~ p(x|z) (drawn from ``rng``)."""
        z = rng.standard_normal((n, self.z_dim))
        with no_grad():
            m = backend.to_numpy(self.mean(self.decode(tensor(z.astype(np.float32)))).array)
        if mean:
            return m
        if self.likelihood == "bernoulli":
            return (rng.random(m.shape) < m).astype(np.float32)
        sd = np.exp(0.5 * backend.to_numpy(self.x_logvar.array))
        return (m + sd * rng.standard_normal(m.shape)).astype(np.float32)


# ---- the training task ------------------------------------------------------------------------
def burda_lr(lr, epoch):
    """Burda et al.'s schedule: 3^i passes at lr 10^(-i/7) for i = 0..7 (3280 passes in all),
    then the last rate."""
    i, end = 0, 1
    while epoch >= end and i < 7:
        i += 1
        end += 3 ** i
    return lr * 10 ** (-i / 7)


@register
class VAETask(Task):
    """``scratchgen train vae``: the VAE trained on -ELBO with Adam.

    Logged per step (batch means, nats): ``loss`` (-ELBO), ``elbo``, ``recon`` (-log p(x|z)),
    ``kl``. ``evaluate`` on the held-out set (binarised once, with a fixed seed, when the
    training data are binarised dynamically): ``elbo``, ``recon``, ``kl``, ``iwae`` (the
    IWAE_k estimate of log p(x)), ``iwae_k`` (that k) and ``active_units``.
    """

    name = "vae"
    datasets = ("mnist",)  # and user arrays (a .npy/.npz path)
    default_dataset = "mnist"
    spec = Spec(
        Param("arch", str, "mlp", "encoder/decoder", choices=("mlp", "conv")),
        Param("hidden", list, [400], "hidden layer widths (conv: the dense layer's)", low=1),
        Param("z_dim", int, 20, "latent dimension", low=1),
        Param("activation", str, "relu", choices=tuple(ACTIVATIONS)),
        Param("likelihood", str, "bernoulli", "p(x|z)", choices=("bernoulli", "gaussian")),
        Param("gaussian_var", str, "fixed", "Gaussian p(x|z) variance",
              choices=("fixed", "learned")),
        Param("fixed_var", float, 1.0, "the fixed variance", above=0),
        Param("beta", float, 1.0, "KL weight", low=0),
        Param("optimizer", str, "adam", "adamw: decoupled weight decay 0.01",
              choices=("adam", "adamw")),
        Param("lr", float, 1e-3, "learning rate", above=0),
        Param("adam_eps", float, 1e-8, "Adam's epsilon (Burda et al.: 1e-4)", above=0),
        Param("lr_schedule", str, "constant", "over the run's steps; 'burda': 3^i passes at "
              "lr 10^(-i/7)", choices=LR_SCHEDULES + ("burda",)),
        Param("epoch_steps", int, 0, "steps per pass for the schedule (0: from the data)",
              low=0),
        Param("batch_size", int, 128, low=1),
        Param("preprocess", str, "binarize-dynamic", "pixels to inputs", choices=PREPROCESS),
        Param("iwae_k", int, 100, "samples per example of the held-out IWAE estimate", low=1),
        Param("iwae_chunk", int, 0, "IWAE samples per chunk (0: automatic)", low=0),
        Param("eval_batch", int, 100, "held-out examples per evaluation batch", low=1),
        Param("eval_examples", int, 0, "held-out examples evaluated (0: all)", low=0))

    def __init__(self, hp, data):
        super().__init__(hp, data)
        hp = self.hp
        shape = tuple(data.shape)
        self.image_shape = shape if len(shape) == 3 else None
        x_dim = int(np.prod(shape))
        self.model = VAE(x_dim, tuple(hp.hidden), hp.z_dim, hp.arch, hp.likelihood,
                         hp.gaussian_var, hp.fixed_var, hp.activation,
                         self.image_shape or (1, 1, x_dim),
                         generator=np.random.default_rng([data.seed, 1]))
        self.epoch_steps = hp.epoch_steps or data.batches_per_epoch
        if hp.lr_schedule == "burda" and self.epoch_steps < 1:
            raise ValueError("lr_schedule='burda' needs the steps per pass: set epoch_steps")
        self.opt = optim.build_optimizer(hp.optimizer, self.model.parameters(), lr=hp.lr,
                                         eps=hp.adam_eps)
        held = data.held_out
        self.held_x = None if held is None else held.x.reshape(len(held.x), -1)
        self.labels = None if held is None else held.labels
        if self.held_x is not None and hp.likelihood == "bernoulli" and (
                self.held_x.min() < 0 or self.held_x.max() > 1):
            raise ValueError(f"likelihood='bernoulli' needs inputs in [0, 1]; preprocess="
                             f"{data.preprocess!r} gives [{self.held_x.min():g}, "
                             f"{self.held_x.max():g}] (use --set preprocess=unit or "
                             "likelihood=gaussian)")

    def modules(self):
        return {"vae": self.model}

    def optimizers(self):
        return {"adam": self.opt}

    def train_step(self, step, batches, rng):
        x = tensor(batches[0])
        eps = tensor(rng.standard_normal((x.shape[0], self.model.z_dim)).astype(np.float32))
        if self.hp.lr_schedule == "burda":
            for g in self.opt.param_groups:
                g["lr"] = burda_lr(self.hp.lr, step // self.epoch_steps)
        self.opt.zero_grad()
        loss, terms = self.model.loss(x, eps, self.hp.beta)
        loss.backward()
        self.opt.step()
        return {"loss": loss, **terms}

    def encode_held_out(self):
        """Posterior means of the held-out set (host array (N, z_dim))."""
        out = []
        with no_grad():
            bs = self.hp.eval_batch
            for i in range(0, len(self.held_x), bs):
                mu, _ = self.model.encode(tensor(self.held_x[i:i + bs]))
                out.append(backend.to_numpy(mu.array))
        return np.concatenate(out)

    def evaluate(self, rng):
        if self.held_x is None:
            return {}
        hp = self.hp
        x = self.held_x[:hp.eval_examples or None]
        k, bs, zd = hp.iwae_k, hp.eval_batch, self.model.z_dim
        sums = dict(elbo=0.0, recon=0.0, kl=0.0, iwae=0.0)
        means = []
        seed = int(rng.integers(2 ** 63))  # separate streams: the ELBO's noise does not depend on k
        rng_elbo, rng_iw = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
        with no_grad():
            for i in range(0, len(x), bs):
                xb = tensor(x[i:i + bs])
                eps = tensor(rng_elbo.standard_normal((xb.shape[0], zd)).astype(np.float32))
                out, mu, logvar = self.model(xb, eps)
                e, nll, kl = elbo(xb, out, mu, logvar, self.model.likelihood, self.model.x_logvar,
                                  reduction="sum", return_terms=True)
                iw = self.model.iwae(xb, k, rng_iw, chunk=hp.iwae_chunk or None)
                for key, v in (("elbo", e), ("recon", nll), ("kl", kl), ("iwae", F.sum(iw))):
                    sums[key] += float(v.item())
                means.append(backend.to_numpy(mu.array))
        res = {key: v / len(x) for key, v in sums.items()}
        res["active_units"] = float(active_units(np.concatenate(means))[0])
        res["iwae_k"] = k
        return res

    def sample(self, n, rng):
        s = self.model.sample(n, rng)
        return s.reshape((len(s),) + self.image_shape) if self.image_shape else s

    def _decode_images(self, z):
        with no_grad():
            out = self.model.mean(self.model.decode(tensor(np.asarray(z, np.float32))))
        return backend.to_numpy(out.array).reshape((len(z),) + self.image_shape)

    def plots(self, run_dir, rng, step=None):
        from pathlib import Path

        from scratchgen import plots as P
        from scratchgen.models import vae_plots as V
        d, paths = Path(run_dir), []  # the harness draws the metric curves (curves.png)
        codes = self.encode_held_out() if self.held_x is not None else None
        if self.image_shape is not None:
            paths.append(P.image_grid(self.sample(100, rng), d / "vae_samples.png", nrow=10,
                                      title="samples from the prior (decoder means)"
                                      + ("" if step is None else f", step {step}")))
            if self.held_x is not None:
                x = self.held_x[:30]
                with no_grad():
                    mu, _ = self.model.encode(tensor(x))
                recon = self._decode_images(backend.to_numpy(mu.array))
                paths.append(V.reconstructions(x.reshape(recon.shape), recon,
                                               d / "vae_reconstructions.png"))
            paths.append(V.manifold(self._decode_images, self.model.z_dim,
                                    d / "vae_manifold.png", codes=codes))
            if codes is not None:
                _, a = active_units(codes)
                dims = [int(u) for u in np.argsort(-a)[:min(8, len(a))]]
                z0 = codes[0]
            else:
                dims, z0 = list(range(min(8, self.model.z_dim))), np.zeros(self.model.z_dim)
            paths.append(V.traversals(self._decode_images, z0, dims, d / "vae_traversals.png",
                                      what="a held-out code" if codes is not None else "0"))
        elif self.model.x_dim == 2:
            pts = {"samples": self.model.sample(1000, rng, mean=False)}
            if self.held_x is not None:
                pts = {"held-out data": self.held_x, **pts}
            paths.append(P.scatter2d(pts, d / "vae_samples.png", title="VAE samples"))
        if codes is not None and self.model.z_dim >= 2:
            paths.append(V.latent_scatter(codes, None if self.labels is None else
                                          self.labels[:len(codes)], d / "vae_latent.png"))
        return paths
