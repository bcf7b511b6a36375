"""The ELBO's gradients on one MNIST batch, three ways: closed form, autodiff, finite differences.

    python examples/elbo_gradients.py [--data-dir ../shared/data/mnist] [--batch 8]

Everything is float64. The encoder outputs (mu, logvar) are those of a random linear encoder
and the decoder is linear, logits = z W + b, so that the full loss -ELBO has a closed-form
gradient too (``elbo_gradients``: the chain rule through the reparameterisation). Finite
differences are ``sg.numeric_grad`` of each term summed over the batch.
"""
import argparse
from pathlib import Path

import numpy as np

import scratchgen as sg
from scratchgen.data import load_mnist
from scratchgen.losses.elbo import (bernoulli_nll, bernoulli_nll_grad, elbo, elbo_gradients,
                                    gaussian_nll, gaussian_nll_grad, kl_normal_std,
                                    kl_normal_std_grad, reparameterize, reparameterize_grad)

def t(a, grad=False):
    return sg.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def fd(term, arrays, i):
    """Central differences of sum(term) w.r.t. arrays[i] (sg.numeric_grad)."""
    args = [t(a) for a in arrays]

    def f(x):
        return term(*args[:i], x, *args[i + 1:]).sum()
    return sg.numeric_grad(f, args[i])[0]


def autodiff(term, arrays, wrt):
    ts = [t(a, grad=True) for a in arrays]
    return [g.numpy() for g in sg.grad(term(*ts).sum(), [ts[i] for i in wrt])]


def row(name, closed, auto, fd):
    closed, auto, fd = (np.asarray(a, dtype=np.float64) for a in (closed, auto, fd))
    print(f"{name:<22} {str(closed.shape):<10} {np.abs(closed - auto).max():>14.2e} "
          f"{np.abs(closed - fd).max():>14.2e}   "
          f"{closed.flat[0]:+.6f} {auto.flat[0]:+.6f} {fd.flat[0]:+.6f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" /
                                              "data" / "mnist"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--z-dim", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    images, _ = load_mnist(args.data_dir, "test")
    p = images[:args.batch].reshape(args.batch, -1) / 255.0
    x = (rng.random(p.shape) < p).astype(np.float64)          # dynamically binarised batch
    B, D, Z = x.shape[0], x.shape[1], args.z_dim
    enc = rng.normal(size=(D, 2 * Z)) * 0.02
    h = (x - 0.5) @ enc
    mu, lv = h[:, :Z], h[:, Z:]
    eps = rng.standard_normal((B, Z))
    W, b = rng.normal(size=(Z, D)) * 0.5, rng.normal(size=D) * 0.5
    z = mu + np.exp(lv / 2) * eps
    logits = z @ W + b

    print(f"batch {B} x {D}, z_dim {Z}; max |difference| of the closed form from autodiff and "
          "from finite differences,\nthen the first element three ways (closed, autodiff, FD)\n")
    print(f"{'gradient':<22} {'shape':<10} {'|cf - auto|':>14} {'|cf - fd|':>14}   first element")

    kl_cf = kl_normal_std_grad(t(mu), t(lv))
    kl_auto = autodiff(kl_normal_std, [mu, lv], [0, 1])
    row("dKL/dmu", kl_cf[0].numpy(), kl_auto[0], fd(kl_normal_std, [mu, lv], 0))
    row("dKL/dlogvar", kl_cf[1].numpy(), kl_auto[1], fd(kl_normal_std, [mu, lv], 1))

    row("dNLL_bern/dlogits", bernoulli_nll_grad(t(logits), t(x)).numpy(),
        autodiff(bernoulli_nll, [logits, x], [0])[0],
        fd(bernoulli_nll, [logits, x], 0))

    mean, xlv = 1 / (1 + np.exp(-logits)), np.full((B, D), -1.0)   # Gaussian on intensities p
    g_cf = gaussian_nll_grad(t(mean), t(p), t(xlv))
    g_auto = autodiff(gaussian_nll, [mean, p, xlv], [0, 2])
    row("dNLL_gauss/dmean", g_cf[0].numpy(), g_auto[0],
        fd(gaussian_nll, [mean, p, xlv], 0))
    row("dNLL_gauss/dlogvar", g_cf[1].numpy(), g_auto[1],
        fd(gaussian_nll, [mean, p, xlv], 2))

    rp_cf = reparameterize_grad(t(mu), t(lv), t(eps))
    rp_auto = autodiff(reparameterize, [mu, lv, eps], [0, 1])
    row("dz/dmu", rp_cf[0].numpy(), rp_auto[0], fd(reparameterize, [mu, lv, eps], 0))
    row("dz/dlogvar", rp_cf[1].numpy(), rp_auto[1],
        fd(reparameterize, [mu, lv, eps], 1))

    # The whole loss -sum ELBO through the reparameterisation and the linear decoder.
    def loss(m, l):
        out = reparameterize(m, l, t(eps)) @ t(W) + t(b)
        return -elbo(t(x), out, m, l, reduction="sum")

    cf = elbo_gradients(t(x), t(logits), t(mu), t(lv), t(eps), lambda g: g @ t(W.T))
    ts = [t(mu, True), t(lv, True)]
    auto = [g.numpy() for g in sg.grad(loss(*ts), ts)]
    fds = sg.numeric_grad(loss, [mu, lv])
    for i, name in enumerate(("mu", "logvar")):
        row(f"d(-ELBO)/d{name}", cf[name].numpy(), auto[i], fds[i])

if __name__ == "__main__":
    main()
