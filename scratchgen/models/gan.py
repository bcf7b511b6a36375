"""GAN, WGAN and WGAN-GP: networks and the three training tasks.

Networks: MLPs for 2-D toys (the WGAN-GP toy experiments: 3 hidden layers of 512, ReLU) and
the DCGAN-style pair for MNIST (W2 of ``WORKLOADS.md``). Tasks (``scratchgen train NAME``):

* ``gan``: discriminator + generator, non-saturating generator loss (``--set loss=minimax``
  for the original one), Adam(2e-4, betas (0.5, 0.999));
* ``wgan``: clipped critic (``clip`` = 0.01), RMSprop(5e-5), ``n_critic`` = 5 critic updates
  per generator update, optionally the paper's schedule (``critic_burst``: 100 critic updates
  for the first 25 generator steps and every 500th);
* ``wgan-gp``: gradient penalty ``lam`` (10; 0.1 on toys), Adam(1e-4, betas (0.5, 0.9)),
  ``n_critic`` = 5.

One task step is one generator update (preceded by its critic/discriminator updates).
"""
from pathlib import Path

import numpy as np

import scratchgen as sg
from scratchgen import backend, metrics, nn, optim, plots
from scratchgen.data import TOY_DATASETS, toy_dataset
from scratchgen.losses import adversarial as A
from scratchgen.tasks import Task, register

__all__ = ["mlp", "toy_generator", "toy_critic", "DCGANGenerator", "DCGANDiscriminator",
           "wgan_critic_iters", "GANTask", "WGANTask", "WGANGPTask"]


# ---- networks -----------------------------------------------------------------------------
def mlp(d_in, d_out, width=512, depth=3, activation=nn.ReLU):
    """``d_in -> width -> ... -> width -> d_out``: ``depth`` hidden layers, ``activation``
    between layers and none after the last."""
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), activation()]
        d = width
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


def toy_generator(z_dim=2, width=512, depth=3, dim=2):
    return mlp(z_dim, dim, width, depth)


def toy_critic(width=512, depth=3, dim=2):
    return mlp(dim, 1, width, depth)


class DCGANGenerator(nn.Sequential):
    """z (B, 64) -> Linear(64, 6272) -> ReLU -> view (B, 128, 7, 7) -> ConvT(128, 64, 4, 2, 1)
    -> ReLU -> ConvT(64, 1, 4, 2, 1) -> tanh: images (B, 1, 28, 28) in (-1, 1)."""

    def __init__(self, z_dim=64):
        super().__init__(
            nn.Linear(z_dim, 128 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (128, 7, 7)),
            nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh())


class DCGANDiscriminator(nn.Sequential):
    """x (B, 1, 28, 28) -> Conv(1, 64, 4, 2, 1) -> LeakyReLU(0.2) -> Conv(64, 128, 4, 2, 1)
    -> LeakyReLU(0.2) -> flatten -> Linear(6272, 1): one logit/score per image."""

    def __init__(self):
        super().__init__(
            nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(128 * 7 * 7, 1))


def wgan_critic_iters(gen_step, n_critic=5, burst=False):
    """Critic updates before generator update ``gen_step`` (0-based): ``n_critic``, or with
    ``burst`` the WGAN paper's 100 for the first 25 generator steps and every 500th."""
    if burst and (gen_step < 25 or gen_step % 500 == 0):
        return 100
    return int(n_critic)


# ---- tasks ----------------------------------------------------------------------------------
def _scores(net, x):
    """Critic/discriminator outputs as a (B,) tensor."""
    return net(x).reshape(-1)


def _adams(task):
    c = task.config
    return tuple(optim.Adam(m.parameters(), lr=c["lr"], betas=tuple(c["betas"]))
                 for m in (task.G, task.D))


class _AdversarialTask(Task):
    """Shared by the three tasks. Points (a toy, or a .npy of (N, D) points) get the MLPs,
    1×28×28 images (MNIST, in [-1, 1]) the DCGAN pair."""

    datasets = TOY_DATASETS + ("mnist",)
    default_dataset = "8gaussians"
    reuse_fake = False  # GAN: the generator update reuses the last critic step's G(z)

    @classmethod
    def defaults(cls):
        """Toy defaults; :meth:`defaults_for` adjusts them for images."""
        return {
            "batch_size": 256,
            "z_dim": 2,
            "width": 512,        # MLP width and number of hidden layers (points only)
            "depth": 3,
            "n_critic": 1,
            "eval_samples": 1000,
        }

    @classmethod
    def defaults_for(cls, dataset):
        d = cls.defaults()
        if dataset == "mnist":
            d.update(batch_size=64, z_dim=64)
        return d

    def __init__(self, config, data):
        super().__init__(config, data)
        c = self.config
        self.dataset = getattr(data, "name", None) or c.get("dataset", self.default_dataset)
        self.dist = toy_dataset(self.dataset) if self.dataset in TOY_DATASETS else None
        shape = tuple(getattr(data, "shape", ()) or ((2,) if self.dist else (1, 28, 28)))
        self.points = len(shape) == 1
        if not self.points and shape not in ((28, 28), (1, 28, 28)):
            raise ValueError(f"{self.name}: the conv networks take 1x28x28 images; "
                             f"{self.dataset!r} has examples of shape {shape}")
        self.z_dim = int(c["z_dim"])
        if self.points:
            self.G = toy_generator(self.z_dim, c["width"], c["depth"], dim=shape[0])
            self.D = toy_critic(c["width"], c["depth"], dim=shape[0])
        else:
            self.G, self.D = DCGANGenerator(self.z_dim), DCGANDiscriminator()
        self.opt_g, self.opt_d = self.make_optimizers()
        self.real_batches = 0  # batches taken from a finite data set, for resumable indexing

    # subclasses: make_optimizers, critic_step, generator_loss
    def modules(self):
        return {"generator": self.G, "critic": self.D}

    def optimizers(self):
        return {"generator": self.opt_g, "critic": self.opt_d}

    def state_dict(self):
        return {"real_batches": self.real_batches}

    def load_state_dict(self, state):
        self.real_batches = int(state.get("real_batches", 0))

    # ---- data and noise ---------------------------------------------------------------
    def noise(self, n, rng):
        return sg.tensor(rng.standard_normal((n, self.z_dim)).astype(np.float32))

    def real_batch(self, k, batch, rng):
        """Real batch ``k`` of this step. Toys: the harness's ``batch``, then fresh samples
        from ``rng``. Finite data: batches ``real_batches, real_batches + 1, ...`` of the
        data stream, so that the n_critic batches of a step are all different."""
        if self.dist is not None:
            if k == 0 and batch is not None:
                return batch if isinstance(batch, sg.Tensor) else sg.tensor(batch)
            x = self.dist.sample(int(self.config["batch_size"]), rng=rng)
            return sg.tensor(x.astype(np.float32))
        x = self.data.batch_at(self.real_batches)
        self.real_batches += 1
        return sg.tensor(x)

    def critic_iters(self, step):
        return int(self.config["n_critic"])

    # ---- one generator step -------------------------------------------------------------
    def train_step(self, step, batch, rng):
        n = self.critic_iters(step)
        sums, fake = {}, None
        for k in range(n):
            real = self.real_batch(k, batch, rng)
            z = self.noise(real.shape[0], rng)
            if self.reuse_fake and k == n - 1:  # W2: one G(z) per step, kept in the graph
                fake = self.G(z)
                fake_c = fake.detach()
            else:
                with sg.no_grad():
                    fake_c = self.G(z)
            for key, v in self.critic_step(real, fake_c, rng).items():
                sums[key] = sums.get(key, 0.0) + v
        logs = {key: v / n for key, v in sums.items()}  # means over the critic updates
        self.D.requires_grad_(False)  # no critic weight gradients in the generator update
        try:
            if fake is None:  # W3: fresh noise for the generator update
                fake = self.G(self.noise(int(self.config["batch_size"]), rng))
            loss_g = self.generator_loss(_scores(self.D, fake))
            self.opt_g.zero_grad()
            loss_g.backward()
            self.opt_g.step()
        finally:
            self.D.requires_grad_(True)
        logs["loss_g"] = float(loss_g.item())
        if n != int(self.config["n_critic"]):  # the WGAN burst schedule
            logs["n_critic"] = float(n)
        return logs

    # ---- evaluation and figures ---------------------------------------------------------
    def sample(self, n, rng):
        with sg.no_grad():
            return backend.to_numpy(self.G(self.noise(int(n), rng)).data)

    def held_out(self, n, rng):
        """``n`` real examples: the harness's held-out set, or fresh toy samples."""
        x = getattr(self.data, "held_out", None)
        if x is None:
            if self.dist is None:
                raise ValueError(f"{self.name}: the data source has no held-out set")
            return self.dist.sample(n, rng=rng)
        x = np.asarray(x[0] if isinstance(x, tuple) else x)[:n].astype(np.float32)
        return x[:, None] if x.ndim == 3 else x  # (n, 28, 28) -> (n, 1, 28, 28)

    def critic_scores(self, x):
        with sg.no_grad():
            return backend.to_numpy(_scores(self.D, sg.tensor(np.asarray(x, np.float32))).data)

    def evaluate(self, rng):
        n = int(self.config["eval_samples"])
        fake = self.sample(n, rng)
        real = self.held_out(n, rng)
        n = min(len(fake), len(real))
        fake, real = fake[:n], real[:n]
        out = {}
        if self.points:
            out["w1"] = metrics.wasserstein1_exact(fake, real)
            if self.dist is not None and self.dist.modes is not None:
                out["modes"] = float(metrics.modes_covered(fake, self.dist.modes,
                                                           self.dist.mode_std))
                out["high_quality"] = metrics.high_quality_fraction(fake, self.dist.modes,
                                                                    self.dist.mode_std)
        else:
            out["sliced_w1"] = metrics.sliced_wasserstein(fake.reshape(n, -1),
                                                          real.reshape(n, -1))
        out.update(self.eval_critic(self.critic_scores(real), self.critic_scores(fake)))
        return out

    def eval_critic(self, real_scores, fake_scores):
        return {"critic_w1": float(real_scores.mean() - fake_scores.mean())}

    def plots(self, run_dir, rng):
        run_dir = Path(run_dir)
        if not self.points:
            return [plots.image_grid(self.sample(64, rng), run_dir / "samples.png", nrow=8,
                                     title=f"{self.name} samples")]
        real, fake = self.held_out(1000, rng), self.sample(1000, rng)
        return [plots.scatter2d({"data": real, self.name: fake}, run_dir / "samples.png",
                                title=f"{self.name} on {self.dataset}"),
                self.contour_plot(run_dir / "critic.png", real, fake)]

    def contour_plot(self, path, real, fake, title=None, n=120):
        """The critic's (discriminator's logit's) values over the plane, with the samples."""
        both = np.concatenate([real, fake])
        both = both[np.all(np.isfinite(both), axis=1)]
        lo, hi = np.percentile(both, 0.5, axis=0), np.percentile(both, 99.5, axis=0)
        pad = 0.25 * (hi - lo) + 0.1
        lo, hi = lo - pad, hi + pad
        X, Y = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
        Z = self.critic_scores(np.stack([X.ravel(), Y.ravel()], 1)).reshape(X.shape)
        label = "discriminator logit" if self.name == "gan" else "critic value"
        return plots.scatter2d({"data": real, "generated": fake}, path, contour=(X, Y, Z),
                               contour_label=label, lim=((lo[0], hi[0]), (lo[1], hi[1])),
                               title=title or f"{self.name} {label}", size=(6, 5))


@register
class GANTask(_AdversarialTask):
    """GAN (Goodfellow et al. 2014) with the non-saturating (default) or minimax G loss."""

    name = "gan"
    reuse_fake = True

    @classmethod
    def defaults(cls):
        return {**super().defaults(), "loss": "nonsaturating", "lr": 2e-4,
                "betas": [0.5, 0.999]}

    def __init__(self, config, data):
        if config.get("loss", "nonsaturating") not in ("nonsaturating", "minimax"):
            raise ValueError(f"gan: loss must be 'nonsaturating' or 'minimax', got "
                             f"{config['loss']!r}")
        super().__init__(config, data)

    def make_optimizers(self):
        return _adams(self)

    def critic_step(self, real, fake, rng):
        loss = A.gan_discriminator_loss(_scores(self.D, real), _scores(self.D, fake))
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        loss = float(loss.item())
        return {"loss_d": loss, "jsd_estimate": A.jsd_estimate(loss)}

    def generator_loss(self, fake_scores):
        if self.config.get("loss", "nonsaturating") == "minimax":
            return A.gan_generator_loss_minimax(fake_scores)
        return A.gan_generator_loss_nonsaturating(fake_scores)

    def eval_critic(self, real_scores, fake_scores):
        loss = A.gan_discriminator_loss(sg.tensor(real_scores), sg.tensor(fake_scores)).item()
        return {"loss_d": float(loss), "jsd_estimate": A.jsd_estimate(loss)}


class _WassersteinTask(_AdversarialTask):
    def critic_step(self, real, fake, rng):
        sr, sf = _scores(self.D, real), _scores(self.D, fake)
        loss = A.wgan_critic_loss(sr, sf)
        logs = {"w1_estimate": A.critic_w1_estimate(sr, sf)}
        gp = self.penalty(real, fake, rng)
        if gp is not None:
            logs["gp"] = float(gp.item())
            loss = loss + gp
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        self.after_critic_step()
        logs["loss_c"] = float(loss.item())
        return logs

    def penalty(self, real, fake, rng):
        return None

    def after_critic_step(self):
        pass

    def generator_loss(self, fake_scores):
        return A.wgan_generator_loss(fake_scores)


@register
class WGANTask(_WassersteinTask):
    """WGAN (Arjovsky et al. 2017): weight-clipped critic, RMSprop."""

    name = "wgan"

    @classmethod
    def defaults(cls):
        return {**super().defaults(), "n_critic": 5, "lr": 5e-5, "clip": 0.01,
                "critic_burst": False}

    def make_optimizers(self):
        lr = self.config["lr"]
        return optim.RMSprop(self.G.parameters(), lr=lr), optim.RMSprop(self.D.parameters(), lr=lr)

    def __init__(self, config, data):
        super().__init__(config, data)
        A.clip_weights_(self.D, self.config["clip"])  # start inside the constraint set

    def critic_iters(self, step):
        return wgan_critic_iters(step, self.config["n_critic"], bool(self.config["critic_burst"]))

    def after_critic_step(self):
        A.clip_weights_(self.D, self.config["clip"])


@register
class WGANGPTask(_WassersteinTask):
    """WGAN-GP (Gulrajani et al. 2017): gradient penalty on interpolates, Adam(1e-4, 0.5, 0.9).

    ``lam`` is 0.1 on points (the toy experiments) and 10 on images."""

    name = "wgan-gp"

    @classmethod
    def defaults(cls):
        return {**super().defaults(), "n_critic": 5, "lr": 1e-4, "betas": [0.5, 0.9],
                "lam": 0.1}

    @classmethod
    def defaults_for(cls, dataset):
        d = super().defaults_for(dataset)
        if dataset == "mnist":
            d["lam"] = 10.0
        return d

    def __init__(self, config, data):
        super().__init__(config, data)
        A.check_no_batchnorm(self.D)
        self.lam = float(self.config["lam"])

    def make_optimizers(self):
        return _adams(self)

    def penalty(self, real, fake, rng):
        return A.gradient_penalty(self.D, real, fake, rng=rng, lam=self.lam)
