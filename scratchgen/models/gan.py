"""GAN, WGAN and WGAN-GP: networks and the three training tasks.

Networks: MLPs for 2-D points (the WGAN-GP toy experiments: 3 hidden layers of 512, ReLU) and
the DCGAN pair for 1x28x28 images (:class:`DCGANGenerator`, :class:`DCGANDiscriminator`, base
width ``channels``): batch normalisation in the generator and the GAN's discriminator (as
DCGAN), in the clipped WGAN critic only with ``d_batchnorm`` (as the WGAN paper; on MNIST the
critic without it reached a lower FD), never in the WGAN-GP critic (the penalty needs each
score to depend on its own image only). Samples come from the generator
in eval mode (:meth:`~_AdversarialTask.generate`: running statistics).
Tasks (``scratchgen train NAME``):

* ``gan``: discriminator + generator, non-saturating generator loss (``--set loss=minimax``
  for the original one), Adam(2e-4; 1e-3 on MNIST, betas (0.5, 0.999)); MNIST: 12,000 steps;
* ``wgan``: clipped critic (``clip`` = 0.01; 0.05 on MNIST), RMSprop(5e-5; 1e-3 on MNIST),
  ``n_critic`` = 5 critic updates per generator update (1 on MNIST), optionally the paper's
  schedule (``critic_burst``: 100 critic updates for the first 25 generator steps and every
  500th); MNIST: 12,000 steps;
* ``wgan-gp``: gradient penalty ``lam`` (10; 0.1 on toys), Adam(1e-4; 2e-3 on MNIST, betas
  (0.5, 0.9)), ``n_critic`` = 5; MNIST: 4,000 steps.

On MNIST (``channels`` 32, batch 64) the rate decays to 0 on a cosine over the run
(``lr_schedule``) and the rates are above the papers': chosen on the 60,000 training digits
(docs/RESULTS.md) for the lowest Fréchet distance within about 10 minutes on two cores. The
clipped WGAN takes one critic update per generator update there (at equal generator steps
n_critic 1, 2 and 5 reached about the same FD, so 1 buys the most steps in the same time), and
a wider box: without batch normalisation in the critic, 0.01 lies below the initial weights'
scale (the default bound 1/sqrt(fan_in): 0.044 for the second conv, 0.018 for the linear);
0.05 reached FD 98 against 133 at 0.01, with 6% of the critic's weights on the box's faces at
the end against 16%.

One task step is one generator update, preceded by its critic/discriminator updates, each on
its own real batch: the task asks the harness for ``batches_per_step(step)`` batches.
"""
from functools import cached_property
from pathlib import Path

import numpy as np

import scratchgen as sg
from scratchgen import backend, metrics, nn, optim, plots
from scratchgen.data import STREAMS, TOY_DATASETS, step_rng
from scratchgen.losses import adversarial as A
from scratchgen.models.classifier import DigitMetrics, has_digits
from scratchgen.optim.lr_scheduler import SCHEDULES as LR_SCHEDULES
from scratchgen.spec import Param, Spec
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


def _bn(cls, n, on):
    return [cls(n)] if on else []


class DCGANGenerator(nn.Sequential):
    """z (B, z_dim) -> Linear(z_dim, 2C·7·7) -> view (B, 2C, 7, 7) [-> BatchNorm2d] -> ReLU
    -> ConvT(2C, C, 4, 2, 1) [-> BatchNorm2d] -> ReLU -> ConvT(C, 1, 4, 2, 1) -> tanh: images
    (B, 1, 28, 28) in (-1, 1). ``C`` = ``channels``; layers followed by batch normalisation
    have no bias (its shift replaces it)."""

    def __init__(self, z_dim=64, channels=64, batchnorm=True):
        c, bias = channels, not batchnorm
        super().__init__(
            nn.Linear(z_dim, 2 * c * 7 * 7, bias=bias), nn.Unflatten(1, (2 * c, 7, 7)),
            *_bn(nn.BatchNorm2d, 2 * c, batchnorm), nn.ReLU(),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=bias),
            *_bn(nn.BatchNorm2d, c, batchnorm), nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, 2, 1), nn.Tanh())


class DCGANDiscriminator(nn.Sequential):
    """x (B, 1, 28, 28) -> Conv(1, C, 4, 2, 1) -> LeakyReLU(0.2) -> Conv(C, 2C, 4, 2, 1)
    [-> BatchNorm2d] -> LeakyReLU(0.2) -> flatten -> Linear(2C·7·7, 1): one logit/score per
    image. As in DCGAN, the first layer is never normalised."""

    def __init__(self, channels=64, batchnorm=True):
        c = channels
        super().__init__(
            nn.Conv2d(1, c, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, 2, 1, bias=not batchnorm),
            *_bn(nn.BatchNorm2d, 2 * c, batchnorm), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * c * 7 * 7, 1))


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
    hp = task.hp
    return tuple(optim.build_optimizer(hp.optimizer, m.parameters(), lr=hp.lr,
                                       betas=tuple(hp.betas))
                 for m in (task.G, task.D))


_COMMON = Spec(
    Param("batch_size", int, 256, "real (and fake) examples per update", low=1,
          by_dataset={"mnist": 64}),
    Param("z_dim", int, 2, "noise dimension", low=1, by_dataset={"mnist": 64}),
    Param("width", int, 512, "MLP width (points only)", low=1),
    Param("depth", int, 3, "MLP hidden layers (points only)", low=1),
    Param("channels", int, 32, "DCGAN base width C (images only): G's ConvT 2C -> C, D's "
          "Conv C -> 2C", low=1),
    Param("g_batchnorm", bool, True, "batch normalisation in the DCGAN generator"),
    Param("eval_samples", int, 1000, "samples per evaluation (at most the held-out set's size)",
          low=2, by_dataset={"mnist": 10000}),
    Param("lr_schedule", str, "constant", "learning-rate schedule over the run's steps",
          choices=LR_SCHEDULES, by_dataset={"mnist": "cosine"}),
)


def _adam_spec(lr, beta2, mnist_lr=None):
    return Spec(Param("optimizer", str, "adam", "adamw: decoupled weight decay 0.01",
                      choices=("adam", "adamw")),
                Param("lr", float, lr, "learning rate", above=0,
                      by_dataset={"mnist": mnist_lr or lr}),
                Param("betas", list, [0.5, beta2], "Adam's (beta1, beta2)", item=float,
                      length=2, low=0, below=1))


class _AdversarialTask(Task):
    """Shared by the three tasks. 2-D points (a toy, or a .npy of (N, 2) points) get the
    MLPs, 1x28x28 images (MNIST, in [-1, 1]) the DCGAN pair."""

    datasets = TOY_DATASETS + ("mnist",)
    default_dataset = "8gaussians"
    reuse_fake = False  # GAN: the generator update reuses the last critic step's G(z)

    @classmethod
    def check_data(cls, kind, shape):
        if tuple(shape) not in ((2,), (1, 28, 28)):
            raise ValueError(f"{cls.name} models 2-D points (N, 2) or 28x28 images; the data "
                             f"have examples of shape {tuple(shape)}")

    def __init__(self, hp, data):
        super().__init__(hp, data)
        self.check_data(data.kind, data.shape)
        self.dist, self.points = data.dist, data.kind == "points"
        self.z_dim = self.hp.z_dim
        if self.points:
            self.G = toy_generator(self.z_dim, self.hp.width, self.hp.depth, dim=data.shape[0])
            self.D = toy_critic(self.hp.width, self.hp.depth, dim=data.shape[0])
        else:
            hp = self.hp
            self.G = DCGANGenerator(self.z_dim, hp.channels, hp.g_batchnorm)
            self.D = DCGANDiscriminator(hp.channels, getattr(hp, "d_batchnorm", False))
        self.opt_g, self.opt_d = self.make_optimizers()

    def check_checkpoint(self, modules):
        """MNIST runs saved before the batch-normalised recipes have no BatchNorm states."""
        if self.points:
            return
        flags = [f for f, k in (("g_batchnorm", "generator"), ("d_batchnorm", "critic"))
                 if getattr(self.hp, f, False)
                 and not any(n.endswith("running_mean") for n in modules.get(k, {}))]
        if flags:
            raise ValueError(
                "the checkpoint's networks have no batch normalisation (an MNIST run of a "
                "scratchgen before the batch-normalised recipes); to load it, add "
                + ", ".join(f'"{f}": false' for f in flags)
                + ' to "hyperparameters" in the run\'s config.json')

    # subclasses: make_optimizers, critic_step, generator_loss
    def modules(self):
        return {"generator": self.G, "critic": self.D}

    def optimizers(self):
        return {"generator": self.opt_g, "critic": self.opt_d}

    # ---- data and noise ---------------------------------------------------------------
    def noise(self, n, rng):
        return sg.tensor(rng.standard_normal((n, self.z_dim)).astype(np.float32))

    def critic_iters(self, step):
        return self.hp.n_critic

    def batches_per_step(self, step):
        """One real batch per critic update."""
        return self.critic_iters(step)

    # ---- one generator step -------------------------------------------------------------
    def train_step(self, step, batches, rng):
        n = len(batches)
        sums, fake = {}, None
        for k, batch in enumerate(batches):
            real = sg.tensor(batch)
            z = self.noise(real.shape[0], rng)
            if self.reuse_fake and k == n - 1:  # one G(z) per step, kept in the graph
                fake = self.G(z)
                fake_c = fake.detach()
            else:
                with sg.no_grad():
                    fake_c = self.G(z)
            for key, v in self.critic_step(real, fake_c, rng).items():
                v = v.astype("float64")  # 0-d device values, summed in float64 there
                sums[key] = v if key not in sums else sums[key] + v
        logs = {key: v / n for key, v in sums.items()}  # means over the critic updates
        self.D.requires_grad_(False)  # no critic weight gradients in the generator update
        try:
            if fake is None:  # fresh noise for the generator update
                fake = self.G(self.noise(self.hp.batch_size, rng))
            loss_g = self.generator_loss(_scores(self.D, fake))
            self.opt_g.zero_grad()
            loss_g.backward()
            self.opt_g.step()
        finally:
            self.D.requires_grad_(True)
        logs["loss_g"] = loss_g.array
        if n != self.hp.n_critic:  # the WGAN burst schedule
            logs["n_critic"] = float(n)
        return logs

    # ---- evaluation and figures ---------------------------------------------------------
    def sample(self, n, rng):
        return self.generate(self.noise(n, rng))

    def generate(self, z):
        """G(z) as a host array, the generator in eval mode: batch normalisation uses its
        running statistics, so a sample depends on its own z only (not on the batch drawn
        with it) and sampling leaves the statistics unchanged."""
        was = self.G.training
        self.G.eval()
        try:
            with sg.no_grad():
                return backend.to_numpy(self.G(z).array)
        finally:
            self.G.train(was)

    def held_out(self, n):
        """The first ``n`` held-out examples."""
        return self.data.held_out.x[:n]

    def critic_scores(self, x):
        with sg.no_grad():
            return backend.to_numpy(_scores(self.D, sg.tensor(np.asarray(x, np.float32))).array)

    @cached_property
    def digit_metrics(self):
        """The run's :class:`~scratchgen.models.classifier.DigitMetrics` (the digit classifier
        loaded or trained once, the held-out features), or None unless the data are labelled
        digits."""
        return DigitMetrics(self.data, self.hp.eval_samples) if has_digits(self.data) else None

    def evaluate(self, rng):
        """Metrics of ``eval_samples`` samples against as many held-out examples. Points:
        exact ``w1`` (and ``modes``, ``high_quality`` on toys). Labelled digits (MNIST): ``fd``,
        ``fd_floor``, ``fd_train``, ``coverage``, ``confidence``, ``mnist_score``,
        ``classifier_accuracy`` (see :class:`~scratchgen.models.classifier.DigitMetrics`).
        Other images (a .npy of 28x28 images, no labels to train a classifier on): the
        pixel-space ``sliced_w1``. And the critic's view of both sets (:meth:`eval_critic`)."""
        real = self.held_out(self.hp.eval_samples)
        fake = self.sample(len(real), rng)
        n = len(real)
        out = {}
        if self.points:
            out["w1"] = metrics.wasserstein1_exact(fake, real)
            if self.dist is not None and self.dist.modes is not None:
                out["modes"] = float(metrics.modes_covered(fake, self.dist.modes,
                                                           self.dist.mode_std))
                out["high_quality"] = metrics.high_quality_fraction(fake, self.dist.modes,
                                                                    self.dist.mode_std)
        elif self.digit_metrics is not None:
            out.update(self.digit_metrics(fake))
        else:
            out["sliced_w1"] = metrics.sliced_wasserstein(fake.reshape(n, -1),
                                                          real.reshape(n, -1))
        out.update(self.eval_critic(self.critic_scores(real), self.critic_scores(fake)))
        return out

    def eval_critic(self, real_scores, fake_scores):
        return {"critic_w1": float(real_scores.mean() - fake_scores.mean())}

    FIXED_SAMPLES, PROGRESS_SAMPLES = 64, 10

    def fixed_samples(self):
        """Samples of one fixed noise batch (``FIXED_SAMPLES`` z): the same z at every
        evaluation and across resumes, drawn from the seed's ``fixed_noise`` stream, apart
        from training's, so successive pictures show the generator's progress."""
        return self.sample(self.FIXED_SAMPLES,
                           step_rng(self.data.seed, 0, STREAMS["fixed_noise"]))

    def plots(self, run_dir, rng, step=None):
        """Images: ``samples.png``, the fixed-noise samples with the step in the title, and
        (at a known step) ``progress.png``, the first ``PROGRESS_SAMPLES`` of them at every
        evaluation so far (rows kept in ``progress.npz``, see
        :func:`~scratchgen.plots.progress_strip`). Points: the samples over the data and the
        critic's values over the plane."""
        run_dir = Path(run_dir)
        if not self.points:
            x = self.fixed_samples()
            at = "" if step is None else f", step {step}"
            out = [plots.image_grid(x, run_dir / "samples.png", nrow=8,
                                    title=f"{self.name} samples (fixed noise{at})")]
            if step is not None:
                out.append(plots.progress_strip(x[:self.PROGRESS_SAMPLES], step,
                                                run_dir / "progress.png",
                                                run_dir / "progress.npz"))
            return out
        real, fake = self.held_out(1000), self.sample(1000, rng)
        return [plots.scatter2d({"data": real, self.name: fake}, run_dir / "samples.png",
                                title=f"{self.name} on {self.data.name}"),
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
    steps_by_dataset = {"mnist": 12000}
    spec = _COMMON + _adam_spec(2e-4, 0.999, mnist_lr=1e-3) + Spec(
        Param("n_critic", int, 1, "discriminator updates per generator update", low=1),
        Param("d_batchnorm", bool, True, "batch normalisation in the DCGAN discriminator"),
        Param("loss", str, "nonsaturating", "generator loss",
              choices=("nonsaturating", "minimax")))

    def make_optimizers(self):
        return _adams(self)

    def critic_step(self, real, fake, rng):
        loss = A.gan_discriminator_loss(_scores(self.D, real), _scores(self.D, fake))
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        return {"loss_d": loss.array, "jsd_estimate": A.jsd_estimate(loss.array)}

    def generator_loss(self, fake_scores):
        if self.hp.loss == "minimax":
            return A.gan_generator_loss_minimax(fake_scores)
        return A.gan_generator_loss_nonsaturating(fake_scores)

    def eval_critic(self, real_scores, fake_scores):
        loss = A.gan_discriminator_loss(sg.tensor(real_scores), sg.tensor(fake_scores)).item()
        return {"loss_d": float(loss), "jsd_estimate": A.jsd_estimate(loss)}


class _WassersteinTask(_AdversarialTask):
    def critic_step(self, real, fake, rng):
        loss = A.wgan_critic_loss(_scores(self.D, real), _scores(self.D, fake))
        logs = {"w1_estimate": -loss.array}  # E D(real) - E D(fake)
        gp = self.penalty(real, fake, rng)
        if gp is not None:
            logs["gp"] = gp.array
            loss = loss + gp
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        self.after_critic_step()
        logs["loss_c"] = loss.array
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
    steps_by_dataset = {"mnist": 12000}
    spec = _COMMON + Spec(
        Param("optimizer", str, "rmsprop", choices=("rmsprop",)),
        Param("lr", float, 5e-5, "learning rate", above=0, by_dataset={"mnist": 1e-3}),
        Param("n_critic", int, 5, "critic updates per generator update", low=1,
              by_dataset={"mnist": 1}),
        Param("clip", float, 0.01, "critic weights clipped to [-clip, clip]", above=0,
              by_dataset={"mnist": 0.05}),
        Param("d_batchnorm", bool, False, "batch normalisation in the DCGAN critic (the WGAN "
              "paper's)"),
        Param("critic_burst", bool, False, "100 critic updates for the first 25 generator "
              "steps and every 500th"))

    def make_optimizers(self):
        lr = self.hp.lr
        return optim.RMSprop(self.G.parameters(), lr=lr), optim.RMSprop(self.D.parameters(), lr=lr)

    def __init__(self, hp, data):
        super().__init__(hp, data)
        A.clip_weights_(self.D, self.hp.clip)  # start inside the constraint set

    def critic_iters(self, step):
        return wgan_critic_iters(step, self.hp.n_critic, self.hp.critic_burst)

    def after_critic_step(self):
        A.clip_weights_(self.D, self.hp.clip)


@register
class WGANGPTask(_WassersteinTask):
    """WGAN-GP (Gulrajani et al. 2017): gradient penalty on interpolates, Adam(1e-4, 0.5, 0.9).

    ``lam`` is 0.1 on points (the toy experiments) and 10 on images."""

    name = "wgan-gp"
    steps_by_dataset = {"mnist": 4000}
    spec = _COMMON + _adam_spec(1e-4, 0.9, mnist_lr=2e-3) + Spec(
        Param("n_critic", int, 5, "critic updates per generator update", low=1),
        Param("lam", float, 0.1, "gradient-penalty weight", low=0, by_dataset={"mnist": 10.0}))

    def __init__(self, hp, data):
        super().__init__(hp, data)
        A.check_no_batchnorm(self.D)
        self.lam = self.hp.lam

    def make_optimizers(self):
        return _adams(self)

    def penalty(self, real, fake, rng):
        return A.gradient_penalty(self.D, real, fake, rng=rng, lam=self.lam)
