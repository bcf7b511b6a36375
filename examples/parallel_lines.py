"""Parallel lines (Arjovsky et al. 2017, example 1): the critic's W1 gives a usable gradient
where the discriminator's JS does not.

P0 = (0, Z) and P_theta = (theta, Z), Z ~ U(0, 1). Then W1(P0, P_theta) = |theta|, while
JSD(P0, P_theta) = log 2 for every theta != 0 (disjoint supports) and 0 at theta = 0.

For each theta on a grid we train, on samples of the two lines,
* a critic (gradient penalty, or weight clipping with ``--critic clip``), whose estimate is
  ``E C(real) - E C(fake)`` (W1 for the GP critic; ``K·W1`` for a clipped one);
* a discriminator (logits, loss ``softplus(-l_r) + softplus(l_f)`` = -V), whose JS estimate
  is ``(log 4 + V) / 2 = (log 4 - loss) / 2`` (exact at D*, where V = 2 JSD - log 4);
and then ask what gradient each gives theta: ``d/dtheta`` of the generator loss evaluated on
``(theta, Z)`` with theta a tensor (``sg.grad``). The critic's (``-E C``) stays near
``sign(theta)`` in magnitude; the discriminator's minimax loss ``E log(1 - D)`` gives a
vanishing one (the non-saturating ``-E log D`` is shown too).

    python examples/parallel_lines.py [--out runs/parallel_lines] [--quick]
"""
import argparse
import math
import time
from pathlib import Path

import numpy as np

import scratchgen as sg
import scratchgen.functional as F
from scratchgen import optim, plots
from scratchgen.losses import adversarial as A
from scratchgen.models.gan import mlp


def lines(theta, n, rng):
    """(real, fake): n points of P0 and of P_theta, float32 (n, 2)."""
    z = rng.random((2, n)).astype(np.float32)
    return (np.stack([np.zeros(n, np.float32), z[0]], 1),
            np.stack([np.full(n, theta, np.float32), z[1]], 1))


def train(kind, theta, steps, batch, rng, width, lam=10.0, clip=0.01):
    """Train a critic ('gp' / 'clip') or a discriminator ('gan') on P0 vs P_theta."""
    net = mlp(2, 1, width=width, depth=2)
    if kind == "clip":
        opt = optim.RMSprop(net.parameters(), lr=5e-4)
        A.clip_weights_(net, clip)
    else:
        opt = optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.9))
    for _ in range(steps):
        r, f = (sg.tensor(a) for a in lines(theta, batch, rng))
        sr, sf = net(r).reshape(-1), net(f).reshape(-1)
        if kind == "gan":
            loss = A.gan_discriminator_loss(sr, sf)
        else:
            loss = A.wgan_critic_loss(sr, sf)
            if kind == "gp":
                loss = loss + A.gradient_penalty(net, r, f, rng=rng, lam=lam)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if kind == "clip":
            A.clip_weights_(net, clip)
    return net


def theta_gradient(net, theta, n, rng, gen_loss):
    """d gen_loss(net(theta, Z)) / d theta, with the score net frozen."""
    th = sg.tensor(np.float32(theta), requires_grad=True)
    z = sg.tensor(rng.random((n, 1)).astype(np.float32))
    fake = F.cat([th * sg.tensor(np.ones((n, 1), np.float32)), z], axis=1)
    net.requires_grad_(False)
    (g,) = sg.grad(gen_loss(net(fake).reshape(-1)), th)
    net.requires_grad_(True)
    return float(g.item())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/parallel_lines")
    ap.add_argument("--quick", action="store_true", help="fewer thetas and steps")
    ap.add_argument("--critic", choices=("gp", "clip"), default="gp")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    thetas = ([-1.0, -0.5, -0.1, 0.0, 0.1, 0.5, 1.0] if args.quick else
              [-1.0, -0.75, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 0.75, 1.0])
    steps = args.steps or (500 if args.quick else 1000)
    sg.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    rows = []
    for theta in thetas:
        critic = train(args.critic, theta, steps, 256, rng, args.width)
        disc = train("gan", theta, steps, 256, rng, args.width)
        r, f = (sg.tensor(a) for a in lines(theta, 4096, rng))
        with sg.no_grad():
            w1 = A.critic_w1_estimate(critic(r), critic(f))
            d_loss = A.gan_discriminator_loss(disc(r).reshape(-1), disc(f).reshape(-1)).item()
        rows.append(dict(
            theta=theta, w1_true=abs(theta), w1_critic=w1,
            js_true=0.0 if theta == 0 else math.log(2), js_disc=A.jsd_estimate(d_loss),
            grad_critic=theta_gradient(critic, theta, 4096, rng, A.wgan_generator_loss),
            grad_minimax=theta_gradient(disc, theta, 4096, rng, A.gan_generator_loss_minimax),
            grad_nonsat=theta_gradient(disc, theta, 4096, rng,
                                       A.gan_generator_loss_nonsaturating)))
    elapsed = time.perf_counter() - t0

    cols = ["theta", "w1_true", "w1_critic", "js_true", "js_disc", "grad_critic",
            "grad_minimax", "grad_nonsat"]
    print(f"critic: {args.critic}, {steps} steps per network, width {args.width}; "
          f"{elapsed:.1f} s")
    print(" ".join(f"{c:>12}" for c in cols))
    for row in rows:
        print(" ".join(f"{row[c]:>12.4g}" for c in cols))

    import matplotlib.pyplot as plt
    th = np.array(thetas)
    fine = np.linspace(th.min(), th.max(), 201)
    get = lambda k: np.array([row[k] for row in rows])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), dpi=plots.DPI)
    ax = axes[0]
    ax.plot(fine, np.abs(fine), "k--", lw=1, label="W1 = |θ|")
    ax.plot(th, get("w1_critic"), "o-", label=f"critic estimate ({args.critic})")
    ax.set_title("critic: E C(P0) − E C(Pθ)")
    ax = axes[1]
    ax.plot(th, get("js_true"), "k--", lw=1, label="JSD (log 2; 0 at θ = 0)")
    ax.plot(th, get("js_disc"), "o-", color="C1", label="discriminator (log 4 − loss)/2")
    ax.set_title("discriminator: JSD estimate")
    ax = axes[2]
    floor = lambda v: np.maximum(np.abs(v), 1e-12)
    ax.plot(th, floor(get("grad_critic")), "o-", label="critic: |d(−E C)/dθ|")
    ax.plot(th, floor(get("grad_minimax")), "s-", color="C1", label="D, minimax: |d E log(1−D)/dθ|")
    ax.plot(th, floor(get("grad_nonsat")), "^:", color="C2", label="D, non-saturating: |d(−E log D)/dθ|")
    ax.set_yscale("log")
    ax.set_title("gradient given to θ (at θ = 0 the two lines coincide)")
    for ax in axes:
        ax.set_xlabel("θ")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = plots.save_figure(fig, out / "parallel_lines.png")
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
