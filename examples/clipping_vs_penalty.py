"""Weight clipping vs gradient penalty (Gulrajani et al. 2017, fig. 1).

With the "generator" held fixed at the real data plus Gaussian noise, a critic is trained
towards optimality on 8gaussians, 25gaussians and swissroll, once with weight clipping
(c = 0.01, RMSprop) and once with the gradient penalty (lam = 0.1 as in the toy experiments,
Adam(betas 0.5, 0.9)); the toy MLP critic (3 hidden ReLU layers) in both cases.

* ``clipping_vs_penalty.png``: each critic's value over the plane with the real (data) and
  fake (data + noise) samples, clipping on the top row, penalty on the bottom. The clipped
  critic is a near-linear, low-capacity function; the penalised one follows the data.
* ``critic_weights.png``: histograms of the critics' weights (8gaussians): clipping piles
  them up at ±c; the penalty leaves a smooth distribution.

Printed per critic: its W1 estimate ``E C(real) - E C(fake)``, the exact W1 of the same 1,000
vs 1,000 points, the mean input-gradient norm on interpolates, and the share of weights
within 1 % of ±c.

    python examples/clipping_vs_penalty.py [--out runs/clipping_vs_penalty] [--quick]
"""
import argparse
import time
from pathlib import Path

import numpy as np

import scratchgen as sg
from scratchgen import metrics, optim, plots
from scratchgen.data import toy_dataset
from scratchgen.losses import adversarial as A
from scratchgen.models.gan import toy_critic

DATASETS = ("8gaussians", "25gaussians", "swissroll")


def train_critic(kind, dist, steps, batch, noise, width, lr, rng, clip=0.01, lam=0.1):
    critic = toy_critic(width=width)
    if kind == "clip":
        A.clip_weights_(critic, clip)
        opt = optim.RMSprop(critic.parameters(), lr=lr)
    else:
        opt = optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.9))
    for _ in range(steps):
        x = dist.sample(batch, rng=rng)
        real = sg.tensor(x.astype(np.float32))
        fake = sg.tensor((dist.sample(batch, rng=rng) + noise * rng.standard_normal(x.shape))
                         .astype(np.float32))
        loss = A.wgan_critic_loss(critic(real).reshape(-1), critic(fake).reshape(-1))
        if kind == "gp":
            loss = loss + A.gradient_penalty(critic, real, fake, rng=rng, lam=lam)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if kind == "clip":
            A.clip_weights_(critic, clip)
    return critic


def scores(critic, x):
    with sg.no_grad():
        return critic(sg.tensor(np.asarray(x, np.float32))).numpy().ravel()


def weights(critic):
    """All weight matrices' entries (biases left out), as in the paper's histogram."""
    return np.concatenate([p.numpy().ravel() for n, p in critic.named_parameters()
                           if n.endswith("weight")])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/clipping_vs_penalty")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--noise", type=float, default=0.3, help="std of the fake = data + noise")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = args.steps or (300 if args.quick else 1000)
    width = args.width or (128 if args.quick else 256)
    sg.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, len(DATASETS), figsize=(5 * len(DATASETS), 9), dpi=plots.DPI)
    hist = {}
    print(f"{steps} critic steps, width {width}, fake = data + N(0, {args.noise}^2)")
    print(f"{'dataset':12s} {'critic':5s} {'estimate':>10s} {'exact W1':>9s} "
          f"{'|grad| mean':>11s} {'at ±c':>7s} {'seconds':>8s}")
    for j, name in enumerate(DATASETS):
        dist = toy_dataset(name)
        real = dist.sample(1000, rng=rng)
        fake = dist.sample(1000, rng=rng) + args.noise * rng.standard_normal((1000, 2))
        w1 = metrics.wasserstein1_exact(real, fake)
        lo, hi = np.minimum(real.min(0), fake.min(0)) - 0.3, np.maximum(real.max(0), fake.max(0)) + 0.3
        X, Y = np.meshgrid(np.linspace(lo[0], hi[0], 150), np.linspace(lo[1], hi[1], 150))
        grid = np.stack([X.ravel(), Y.ravel()], 1)
        for i, kind in enumerate(("clip", "gp")):
            t0 = time.perf_counter()
            critic = train_critic(kind, dist, steps, 256, args.noise, width, args.lr, rng)
            secs = time.perf_counter() - t0
            est = float(scores(critic, real).mean() - scores(critic, fake).mean())
            _, gnorm = A.gradient_penalty(critic, sg.tensor(real.astype(np.float32)),
                                          sg.tensor(fake.astype(np.float32)), rng=rng,
                                          return_norm=True)
            w = weights(critic)
            at_c = f"{np.mean(np.abs(np.abs(w) - 0.01) <= 1e-4):7.1%}" if kind == "clip" else "      -"
            if name == "8gaussians":
                hist[kind] = w
            print(f"{name:12s} {kind:5s} {est:10.4g} {w1:9.4f} {gnorm:11.4g} {at_c} "
                  f"{secs:8.1f}")
            ax = axes[i, j]
            Z = scores(critic, grid).reshape(X.shape)
            cs = ax.contourf(X, Y, Z, levels=20, cmap="viridis", alpha=0.7)
            fig.colorbar(cs, ax=ax, fraction=0.046, pad=0.04)
            ax.scatter(*real.T, s=2, c="orange", label="real")
            ax.scatter(*fake.T, s=2, c="white", alpha=0.5, label="fake (data + noise)")
            ax.set_aspect("equal")
            label = "weight clipping (c = 0.01)" if kind == "clip" else "gradient penalty (λ = 0.1)"
            ax.set_title(f"{name}: {label}", fontsize=9)
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="lower left", markerscale=4)
    fig.tight_layout()
    p1 = plots.save_figure(fig, out / "clipping_vs_penalty.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), dpi=plots.DPI)
    for ax, kind in zip(axes, ("clip", "gp")):
        ax.hist(hist[kind], bins=100, color="C0" if kind == "clip" else "C1")
        ax.set_yscale("log")
        ax.set_title(("weight clipping: weights pile up at ±c" if kind == "clip"
                      else "gradient penalty: no pile-up") + " (8gaussians critic)", fontsize=9)
        ax.set_xlabel("weight value")
        if kind == "clip":
            ax.set_xticks([-0.01, -0.005, 0, 0.005, 0.01])
    fig.tight_layout()
    p2 = plots.save_figure(fig, out / "critic_weights.png")
    print(f"wrote {p1}\nwrote {p2}")


if __name__ == "__main__":
    main()
