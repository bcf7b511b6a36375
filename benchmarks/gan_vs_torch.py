"""Train the MNIST GAN recipes in scratchgen and, when importable, the same recipes in PyTorch;
measure both with the same scratchgen classifier.

    python benchmarks/gan_vs_torch.py [--models gan,wgan,wgan-gp] [--steps N] [--seed S]
        [--data-dir DIR] [--split test] [--holdout 1000] [--set KEY=VALUE ...]
        [--torch-noise] [--threads N] [--json PATH] [--lock PATH] [--check]

Each model's scratchgen side is built and trained exactly as ``scratchgen train MODEL
--dataset mnist`` builds and trains it (``trainer.new_config`` / ``trainer.build`` /
``trainer.take_step``: the task's networks, optimisers, hyperparameters, batches and step
RNGs). The PyTorch side is derived from it, never written separately:

* the networks are translated layer by layer (:func:`translate`: the scratchgen
  ``nn.Sequential`` walked, each layer mapped to its ``torch.nn`` twin, an unknown layer an
  error) and start from scratchgen's initial weights and buffers;
* the optimisers are the scratchgen ones' classes and hyperparameters (:func:`translate_optimizer`),
  with the learning rate scratchgen had at each step (so an ``lr_schedule`` is followed);
* a step (:class:`TorchGAN`) mirrors ``_AdversarialTask.train_step`` and the task's critic
  step: the GAN's non-saturating (or minimax) losses through logits with one ``G(z)`` kept in
  the graph; WGAN's critic loss and clipping of every critic parameter after each critic
  update; WGAN-GP's penalty ``lam * mean (||grad_x D(x_hat)|| - 1)^2`` (double backward,
  ``sqrt(sum g^2 + 1e-12)``, one uniform alpha per image); ``batches_per_step`` critic updates,
  each on its own real batch (the same batches, by index, as scratchgen's);
* the noise is by default drawn from the same step RNGs in the same order (``task.noise``,
  then alpha), so both frameworks see the same z; ``--torch-noise`` draws PyTorch's from its
  own generator (seeded by ``--seed``) instead.

Before training, a check (``--check`` runs only that; :func:`check_model`) verifies the
mirror: the same float32 weights and inputs give the same G and D outputs (train and eval
mode) to float32 rounding, and two training steps from the same state, in float64, give the
same losses, gradients and weights to float64 rounding. The comparison is refused if not.

At the end each framework's networks go through the task's own ``evaluate`` (the PyTorch
networks called in the scratchgen networks' place: the same samples' noise, the generator in
the mode the task samples in), so both are measured by the same scratchgen digit classifier:
Fréchet distance to the held-out images (``fd``; ``fd_floor`` is two real halves',
``fd_train`` training digits'), class
coverage, mean confidence, the MNIST score. The run passes when scratchgen's FD is at most
1.2x PyTorch's and scratchgen's samples cover all 10 classes. Training in float32 is chaotic:
the two runs part ways within a few hundred steps however closely each step agrees, so the
ratio compares two draws of the same training process, not one trajectory. ``--lock PATH`` holds an flock
on PATH while each framework trains and is measured, handed back and taken again every four
minutes (a shared machine's lock, held in pieces).

scratchgen itself never imports torch; this script does, when it can.
"""
import argparse
import contextlib
import fcntl
import json
import os
import sys
import time

import numpy as np

import scratchgen as sg
from scratchgen import backend, nn, trainer
from scratchgen.data import STREAMS, step_rng
from scratchgen.models import gan

try:
    import torch
    import torch.nn as tnn
    import torch.nn.functional as TF
except ImportError:  # scratchgen alone
    torch = None

TARGET = 1.2  # FD scratchgen / FD PyTorch
TOL = {"forward": 2e-5, "loss": 1e-9, "grad": 1e-7, "weights": 1e-6}  # see check_model


# ---- networks -------------------------------------------------------------------------------
def _conv(m):
    return tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                      m.dilation, m.groups, bias=m.bias is not None)


def _conv_t(m):
    return tnn.ConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                               m.padding, m.output_padding, m.groups, bias=m.bias is not None,
                               dilation=m.dilation)


def _bn(m):
    return getattr(tnn, type(m).__name__)(m.num_features, eps=m.eps, momentum=m.momentum,
                                          affine=m.affine,
                                          track_running_stats=m.track_running_stats)


LAYERS = {  # scratchgen layer type -> its torch.nn twin (exact types: a subclass may differ)
    nn.Linear: lambda m: tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None),
    nn.Conv2d: _conv,
    nn.ConvTranspose2d: _conv_t,
    nn.BatchNorm1d: _bn,
    nn.BatchNorm2d: _bn,
    nn.ReLU: lambda m: tnn.ReLU(),
    nn.LeakyReLU: lambda m: tnn.LeakyReLU(m.negative_slope),
    nn.Tanh: lambda m: tnn.Tanh(),
    nn.Sigmoid: lambda m: tnn.Sigmoid(),
    nn.Identity: lambda m: tnn.Identity(),
    nn.Flatten: lambda m: tnn.Flatten(m.start_dim, m.end_dim),
    nn.Unflatten: lambda m: tnn.Unflatten(m.dim, m.unflattened_size),
}


def _twin(m):
    if isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward:
        return tnn.Sequential(*[_twin(c) for c in m])
    make = LAYERS.get(type(m))
    if make is None:
        raise TypeError(f"no PyTorch translation for the scratchgen layer {type(m).__name__} "
                        f"({m!r}); add one to LAYERS in {__file__}")
    return make(m)


def to_torch(a):
    return torch.from_numpy(np.ascontiguousarray(backend.to_numpy(a)))


def copy_state(module, twin):
    """Copy scratchgen ``module``'s parameters, buffers and train/eval flags into ``twin``
    (state-dict names and shapes must agree)."""
    src, dst = module.state_dict(), twin.state_dict()
    if list(src) != list(dst) or any(tuple(src[k].shape) != tuple(dst[k].shape) for k in src):
        raise RuntimeError(f"{type(module).__name__}: state differs from its PyTorch twin: "
                           f"{[(k, tuple(v.shape)) for k, v in src.items()]} vs "
                           f"{[(k, tuple(v.shape)) for k, v in dst.items()]}")
    with torch.no_grad():
        for k, v in src.items():
            dst[k].copy_(to_torch(v).reshape(dst[k].shape))
    for (_, a), (_, b) in zip(module.named_modules(), twin.named_modules()):
        b.training = a.training


def translate(module):
    """A ``torch.nn`` module computing what scratchgen ``module`` computes, holding its
    current weights and buffers."""
    twin = _twin(module)
    copy_state(module, twin)
    return twin


def translate_optimizer(opt, module, twin):
    """The ``torch.optim`` twin of scratchgen optimiser ``opt`` over ``module``'s parameters
    (same class name and hyperparameters), acting on ``twin``'s."""
    if len(opt.param_groups) != 1 or [id(p) for p in opt.param_groups[0]["params"]] != \
            [id(p) for p in module.parameters()]:
        raise RuntimeError(f"{type(opt).__name__}: expected one parameter group holding "
                           f"{type(module).__name__}'s parameters in order")
    cls = getattr(torch.optim, type(opt).__name__, None)
    if cls is None:
        raise TypeError(f"no PyTorch twin for the optimiser {type(opt).__name__}")
    hp = {k: v for k, v in opt.param_groups[0].items() if k not in ("params", "initial_lr")}
    if "betas" in hp:
        hp["betas"] = tuple(hp["betas"])
    return cls(list(twin.parameters()), **hp)


class AsScratchgen:
    """A PyTorch network called in a scratchgen network's place (inference only): a scratchgen
    tensor in, a scratchgen tensor out; ``train``/``eval`` switch the PyTorch modules, so the
    task's own ``sample`` and ``evaluate`` can run it."""

    def __init__(self, twin):
        self.twin = twin

    def __call__(self, x):
        with torch.no_grad():
            return sg.tensor(self.twin(to_torch(x.array)).numpy())

    @property
    def training(self):
        return self.twin.training

    def train(self, mode=True):
        self.twin.train(mode)
        return self

    def eval(self):
        return self.train(False)


@contextlib.contextmanager
def swapped(task, G, D):
    """``task`` with its generator and critic replaced by the PyTorch twins."""
    saved = task.G, task.D
    task.G, task.D = AsScratchgen(G), AsScratchgen(D)
    try:
        yield task
    finally:
        task.G, task.D = saved


# ---- the training step ----------------------------------------------------------------------
# hyperparameters the mirror reads, or that only shape what translate() copies
MIRRORED = {"batch_size", "z_dim", "n_critic", "loss", "clip", "critic_burst", "lam", "lr",
            "betas", "optimizer", "lr_schedule", "eval_samples", "width", "depth", "channels",
            "g_batchnorm", "d_batchnorm"}


class TorchGAN:
    """The PyTorch mirror of a scratchgen GAN/WGAN/WGAN-GP task's ``train_step``."""

    def __init__(self, task, torch_noise_seed=None):
        unknown = sorted(set(task.hp.keys()) - MIRRORED)
        if unknown:
            raise RuntimeError(f"{task.name}: hyperparameter(s) {', '.join(unknown)} are not "
                               "mirrored in PyTorch; teach TorchGAN (or MIRRORED, if they only "
                               "shape the networks)")
        if not isinstance(task, (gan.GANTask, gan.WGANTask, gan.WGANGPTask)):
            raise TypeError(f"no PyTorch mirror for the task {task.name!r}")
        self.task, self.hp = task, task.hp
        self.G, self.D = translate(task.G), translate(task.D)
        opts = task.optimizers()
        self.opt_g = translate_optimizer(opts["generator"], task.G, self.G)
        self.opt_d = translate_optimizer(opts["critic"], task.D, self.D)
        self.gen = None
        if torch_noise_seed is not None:
            self.gen = torch.Generator().manual_seed(int(torch_noise_seed))

    def sync_from_scratchgen(self):
        """Give the twins scratchgen's current weights, buffers and modes."""
        copy_state(self.task.G, self.G)
        copy_state(self.task.D, self.D)

    def set_lrs(self, lrs):
        for opt, lr in zip((self.opt_g, self.opt_d), lrs):
            for group in opt.param_groups:
                group["lr"] = lr

    # noise: the task's own draws from the step rng, or PyTorch's generator
    @property
    def dtype(self):
        return next(self.G.parameters()).dtype

    def noise(self, n, rng):
        if self.gen is None:
            return to_torch(self.task.noise(n, rng).array).to(self.dtype)
        return torch.randn(n, self.task.z_dim, generator=self.gen).to(self.dtype)

    def uniform(self, shape, rng):
        if self.gen is None:  # drawn as gradient_penalty draws it, then float32
            return torch.from_numpy(rng.random(shape).astype(np.float32)).to(self.dtype)
        return torch.rand(shape, generator=self.gen).to(self.dtype)

    def scores(self, x):
        return self.D(x).reshape(-1)

    def step(self, k, batches, rng):
        """Training step ``k`` on ``batches``; returns the logged terms (floats)."""
        n, fake, logs = len(batches), None, {}
        for i, batch in enumerate(batches):
            real = torch.from_numpy(batch).to(self.dtype)
            z = self.noise(real.shape[0], rng)
            if self.task.reuse_fake and i == n - 1:
                fake = self.G(z)
                fake_c = fake.detach()
            else:
                with torch.no_grad():
                    fake_c = self.G(z)
            for key, v in self.critic_step(real, fake_c, rng).items():
                logs[key] = logs.get(key, 0.0) + v / n
        self.D.requires_grad_(False)
        try:
            if fake is None:
                fake = self.G(self.noise(self.hp.batch_size, rng))
            loss_g = self.generator_loss(self.scores(fake))
            self.opt_g.zero_grad()
            loss_g.backward()
            self.opt_g.step()
        finally:
            self.D.requires_grad_(True)
        logs["loss_g"] = loss_g.item()
        return logs

    def critic_step(self, real, fake, rng):
        sr, sf = self.scores(real), self.scores(fake)
        if isinstance(self.task, gan.GANTask):
            loss = TF.softplus(-sr).mean() + TF.softplus(sf).mean()
            logs = {"loss_d": loss.item()}
        else:
            loss = sf.mean() - sr.mean()
            logs = {"w1_estimate": -loss.item()}
            if isinstance(self.task, gan.WGANGPTask):
                gp = self.penalty(real, fake, rng)
                logs["gp"] = gp.item()
                loss = loss + gp
            logs["loss_c"] = loss.item()
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        if isinstance(self.task, gan.WGANTask):
            with torch.no_grad():
                for p in self.D.parameters():
                    p.clamp_(-self.hp.clip, self.hp.clip)
        return logs

    def penalty(self, real, fake, rng):
        b = real.shape[0]
        alpha = self.uniform((b,) + (1,) * (real.ndim - 1), rng)
        xh = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (g,) = torch.autograd.grad(self.D(xh).sum(), xh, create_graph=True)
        norm = torch.sqrt((g.reshape(b, -1) ** 2).sum(1) + 1e-12)
        return ((norm - 1.0) ** 2).mean() * float(self.task.lam)

    def generator_loss(self, fake_scores):
        if isinstance(self.task, gan.GANTask):
            if self.hp.loss == "minimax":
                return -TF.softplus(fake_scores).mean()
            return TF.softplus(-fake_scores).mean()
        return -fake_scores.mean()


# ---- runs -----------------------------------------------------------------------------------
def build(model, a):
    """(task, data, config, lr schedules) of ``scratchgen train MODEL --dataset mnist``."""
    config = trainer.new_config(model, dict(a.set), dataset="mnist", steps=a.steps, seed=a.seed,
                                split=a.split, holdout=a.holdout, data_dir=a.data_dir)
    task, data = trainer.build(config)
    return task, data, config, trainer.lr_schedules(task, config, 0)


def _lrs(task):
    return [o.param_groups[0]["lr"] for o in (task.opt_g, task.opt_d)]


def _rel(a, b):
    """max |a - b| / max |b| (0 when both vanish)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.abs(b).max() if b.size else 0.0
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a - b).max())


def check_model(model, a, steps=2):
    """The mirror's check; returns {quantity: worst relative difference}.

    forward: G(z) and D(x) from the same float32 weights (train and eval mode),
    max |diff| / max |out|. Then ``steps`` training steps from the same state and noise, both
    frameworks in float64 (in float32, Adam and RMSprop, which divide a gradient by its own
    running size, turn the rounding of near-zero gradients into differences of a whole step,
    and batch normalisation makes many such gradients): loss: the logged terms of every step
    (relative); grad: the parameter gradients left by the last step (the generator's update
    and the last critic update), max |diff| / max |grad| per tensor; weights: every parameter
    and buffer after the steps, max |diff| in units of the learning rate."""
    task, data, config, _ = build(model, a)
    mirror = TorchGAN(task)
    z = task.noise(task.hp.batch_size, step_rng(a.seed, 0))
    x = data.batch_at(0)
    out = {"forward": 0.0}
    for mode in (True, False):
        for net, twin, inp in ((task.G, mirror.G, z.array), (task.D, mirror.D, x)):
            net.train(mode)
            twin.train(mode)
            with sg.no_grad():
                ours = backend.to_numpy(net(sg.tensor(inp)).array)
            with torch.no_grad():
                theirs = twin(to_torch(inp)).numpy()
            out["forward"] = max(out["forward"], _rel(ours, theirs))
    for net in (task.G, task.D, mirror.G, mirror.D):  # in float64: rounding out of the way
        net.train()
        net.double()
    mirror.sync_from_scratchgen()
    out["loss"], batch = 0.0, 0
    for k in range(steps):
        n = task.batches_per_step(k)
        logs = trainer.take_step(task, data, a.seed, k, batch)[0]
        tlogs = mirror.step(k, data.batches(batch, n), step_rng(a.seed, k))
        batch += n
        out["loss"] = max([out["loss"]] + [abs(logs[t] - tlogs[t]) / max(abs(tlogs[t]), 1e-3)
                                           for t in tlogs])
    out["grad"] = out["weights"] = 0.0
    lr = min(_lrs(task))
    for net, twin in ((task.G, mirror.G), (task.D, mirror.D)):
        tp = dict(twin.named_parameters())
        for name, p in net.named_parameters():
            if p.grad is not None or tp[name].grad is not None:
                out["grad"] = max(out["grad"], _rel(backend.to_numpy(p.grad.array),
                                                    tp[name].grad.numpy()))
        tsd = twin.state_dict()
        for name, v in net.state_dict().items():
            diff = np.abs(backend.to_numpy(v).astype(np.float64) - tsd[name].numpy())
            out["weights"] = max(out["weights"], float(diff.max()) / lr)
    return out


def report_check(model, diffs):
    ok = all(diffs[k] <= TOL[k] for k in TOL)
    print(f"check {model:8s} " + "  ".join(f"{k} {v:.1e}" for k, v in diffs.items())
          + ("  ok" if ok else "  MISMATCH (tolerances " + ", ".join(
              f"{k} {v:g}" for k, v in TOL.items()) + ")"), flush=True)
    return ok


class Lock:
    """An exclusive flock on ``path`` (None: no lock), taken on entry and handed back and taken
    again by :meth:`breathe` once held ``piece`` seconds, so a long run shares a machine in
    pieces; ``waited`` sums the seconds :meth:`breathe` spent (not counted as training time)."""

    def __init__(self, path, piece=240.0):
        self.path, self.piece, self.file, self.since, self.waited = path, piece, None, 0.0, 0.0

    def __enter__(self):
        if self.path is not None:
            self.file = open(self.path, "a")
            fcntl.flock(self.file, fcntl.LOCK_EX)
            self.since = time.monotonic()
        return self

    def __exit__(self, *exc):
        if self.file is not None:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None

    def breathe(self):
        if self.file is not None and time.monotonic() - self.since > self.piece:
            t0 = time.monotonic()
            self.__exit__()
            self.__enter__()
            self.waited += time.monotonic() - t0


def _progress(name, k, steps, logs, t0):
    if k == 0 or (k + 1) % max(1, steps // 5) == 0:
        print(f"  {name:10s} step {k + 1}/{steps}  "
              + "  ".join(f"{key} {v:.4g}" for key, v in logs.items())
              + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


def train_scratchgen(task, data, config, schedules, lock):
    """Train as the harness does; returns (wall seconds, the lrs of each step)."""
    lrs, batch, t0 = [], 0, time.perf_counter()
    for k in range(config.steps):
        lock.breathe()
        lrs.append(_lrs(task))
        logs, batch = trainer.take_step(task, data, config.seed, k, batch)
        for s in schedules:
            s.step()
        _progress("scratchgen", k, config.steps, logs, t0)
    return time.perf_counter() - t0 - lock.waited, lrs


def train_torch(mirror, data, config, lrs, lock):
    batch, t0 = 0, time.perf_counter()
    for k in range(config.steps):
        lock.breathe()
        mirror.set_lrs(lrs[k])
        n = mirror.task.batches_per_step(k)
        logs = mirror.step(k, data.batches(batch, n), step_rng(config.seed, k))
        batch += n
        _progress("torch", k, config.steps, logs, t0)
    return time.perf_counter() - t0 - lock.waited


def measure(task, config):
    """The task's evaluation at the end of training (the run's eval rng): the classifier's
    metrics of ``task.hp.eval_samples`` samples against the held-out images."""
    rng = step_rng(config.seed, config.steps, STREAMS["eval"])
    return trainer.fetch_scalars(task.evaluate(rng))


def compare(model, a):
    """Train ``model`` in both frameworks; returns the JSON record."""
    task, data, config, schedules = build(model, a)
    mirror = None
    if torch is not None:  # the twins take the initial state before scratchgen trains
        mirror = TorchGAN(task, a.seed if a.torch_noise else None)
    rec = {"model": model, "steps": config.steps, "seed": config.seed,
           "hyperparameters": config.hyperparameters.to_dict()}
    with Lock(a.lock) as lock:
        print(f"{model}: scratchgen, {config.steps} steps", flush=True)
        rec["time_scratchgen"], lrs = train_scratchgen(task, data, config, schedules, lock)
        rec["scratchgen"] = measure(task, config)
    if mirror is not None:
        with Lock(a.lock) as lock:
            print(f"{model}: torch, {config.steps} steps", flush=True)
            rec["time_torch"] = train_torch(mirror, data, config, lrs, lock)
            with swapped(task, mirror.G, mirror.D):
                rec["torch"] = measure(task, config)
        rec["ratio"] = rec["scratchgen"]["fd"] / rec["torch"]["fd"]
    rec["ok"] = rec["scratchgen"]["coverage"] == 10 and rec.get("ratio", 0) <= TARGET
    return rec


# ---- output -----------------------------------------------------------------------------------
def _both(key, fmt):
    """'scratchgen / torch' values of a metric ('-' for a framework that did not run)."""
    def cell(r):
        return " / ".join(format(r[f][key], fmt) if f in r else "-" for f in ("scratchgen", "torch"))
    return cell


COLUMNS = [  # header, width, value of a record
    ("model", 8, lambda r: r["model"]),
    ("steps", 6, lambda r: r["steps"]),
    ("FD sg", 7, lambda r: f"{r['scratchgen']['fd']:.1f}"),
    ("FD torch", 8, lambda r: f"{r['torch']['fd']:.1f}"),
    ("ratio", 5, lambda r: f"{r['ratio']:.2f}"),
    ("floor", 5, lambda r: f"{r['scratchgen']['fd_floor']:.1f}"),
    ("train", 5, lambda r: f"{r['scratchgen']['fd_train']:.1f}"),
    ("cover sg/t", 10, _both("coverage", ".0f")),
    ("conf sg/t", 11, _both("confidence", ".3f")),
    ("time sg/t (s)", 13, lambda r: f"{r['time_scratchgen']:.0f} / "
                                    + (f"{r['time_torch']:.0f}" if "time_torch" in r else "-")),
    ("", 0, lambda r: "" if r["ok"] else "!"),
]


def table(records):
    """The records as a text table ('-' where PyTorch did not run, '!' marking a miss)."""
    def cell(fn, r, w):
        try:
            v = fn(r)
        except KeyError:
            v = "-"
        return f"{v:>{w}}"
    lines = ["  ".join(f"{h:>{w}}" for h, w, _ in COLUMNS)]
    lines += ["  ".join(cell(fn, r, w) for _, w, fn in COLUMNS) for r in records]
    return "\n".join(line.rstrip() for line in lines)


def _key_value(text):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set {text}: expected KEY=VALUE")
    return tuple(text.split("=", 1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="gan,wgan,wgan-gp")
    p.add_argument("--steps", type=int, help="generator steps (default: the task's, as scratchgen train)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="MNIST's folder (default: scratchgen's)")
    p.add_argument("--split", default="test", help="MNIST split trained on (default test)")
    p.add_argument("--holdout", type=int, default=1000, help="held-out images (default 1000)")
    p.add_argument("--set", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="a hyperparameter for both frameworks, as scratchgen train --set")
    p.add_argument("--torch-noise", action="store_true",
                   help="PyTorch draws its own noise (default: the same z as scratchgen)")
    p.add_argument("--threads", type=int, help="PyTorch's threads (default: its own choice)")
    p.add_argument("--json", help="write the records here")
    p.add_argument("--lock", help="hold an flock on this file while each framework runs")
    p.add_argument("--check", action="store_true", help="only the one-step mirror check")
    a = p.parse_args(argv)
    if a.threads and torch is not None:
        torch.set_num_threads(a.threads)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    bad = [m for m in models if m not in ("gan", "wgan", "wgan-gp")]
    if bad:
        p.error(f"--models: {', '.join(bad)}: choose from gan, wgan, wgan-gp")
    print(f"scratchgen {sg.__version__} ({backend.name} backend), "
          + (f"torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch
             else "PyTorch not installed: scratchgen only")
          + "".join(f", {v}={os.environ[v]}" for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                    if v in os.environ), flush=True)
    ok = True
    if torch is not None:
        with Lock(a.lock):
            for m in models:
                ok = report_check(m, check_model(m, a)) and ok
    if a.check:
        return 0 if ok and torch is not None else 1
    if not ok:
        print("the mirror does not reproduce scratchgen's step; not comparing", file=sys.stderr)
        return 1
    records = []
    for m in models:
        records.append(compare(m, a))
        print(table(records[-1:]), flush=True)
    if len(records) > 1:
        print()
        print(table(records))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
