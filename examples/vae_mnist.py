"""Train a VAE on MNIST with the library directly (model, optimiser, batches, evaluation, figures).

    python examples/vae_mnist.py --steps 2000 --out runs/vae_example

Defaults: the 784-400-20 MLP VAE, Bernoulli decoder, dynamic binarisation, Adam(1e-3), batch
128, trained on the first 9,000 images of the split and evaluated on the last 1,000 (held-out
ELBO, IWAE estimate of log p(x), active units). The same run through the harness, with
checkpoints and resume: ``scratchgen train vae --dataset mnist --split test --holdout 1000``.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

import scratchgen as sg
from scratchgen import plots
from scratchgen.data import BatchLoader, load_mnist, split_holdout
from scratchgen.losses.elbo import elbo
from scratchgen.models import vae_plots
from scratchgen.models.vae import VAE, active_units
from scratchgen.optim import Adam


def evaluate(vae, x, k, rng, batch=100):
    """Held-out (ELBO, IWAE_k, active units, posterior means), nats per example."""
    e_sum, iw_sum, means = 0.0, 0.0, []
    with sg.no_grad():
        for i in range(0, len(x), batch):
            xb = sg.tensor(x[i:i + batch])
            eps = sg.tensor(rng.standard_normal((len(xb), vae.z_dim)).astype(np.float32))
            out, mu, logvar = vae(xb, eps)
            e_sum += elbo(xb, out, mu, logvar, reduction="sum").item()
            iw_sum += vae.iwae(xb, k, rng).numpy().sum()
            means.append(mu.numpy())
    means = np.concatenate(means)
    return e_sum / len(x), float(iw_sum) / len(x), active_units(means)[0], means


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" /
                                              "data" / "mnist"))
    ap.add_argument("--split", default="test", choices=["train", "test"])
    ap.add_argument("--holdout", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--hidden", type=int, nargs="+", default=[400])
    ap.add_argument("--z-dim", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--iwae-k", type=int, default=100, help="IWAE samples during training")
    ap.add_argument("--final-iwae-k", type=int, default=1000, help="IWAE samples at the end")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/vae_example")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    images, labels = load_mnist(args.data_dir, args.split)
    train_x, _, held_x, held_y = split_holdout(images, labels, args.holdout)
    loader = BatchLoader(train_x, args.batch_size, seed=args.seed, preprocess="binarize-dynamic")
    # the held-out set is binarised once, so that every evaluation sees the same data
    held = (np.random.default_rng([args.seed, 2]).random(held_x.shape) < held_x / 255.0)
    held = held.reshape(len(held), -1).astype(np.float32)

    vae = VAE(784, args.hidden, args.z_dim, generator=np.random.default_rng([args.seed, 1]))
    opt = Adam(vae.parameters(), lr=args.lr)
    log = open(out / "metrics.jsonl", "w")
    t0 = time.perf_counter()
    for step in range(args.steps):
        x = sg.tensor(loader.batch_at(step))
        eps = sg.tensor(np.random.default_rng([args.seed, step, 3])
                        .standard_normal((len(x), args.z_dim)).astype(np.float32))
        opt.zero_grad()
        loss, terms = vae.loss(x, eps)
        loss.backward()
        opt.step()
        rec = {"step": step + 1, "kind": "train", "loss": loss.item(),
               **{k: v.item() for k, v in terms.items()}}
        if (step + 1) % 50 == 0:
            log.write(json.dumps(rec) + "\n")
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            k = args.final_iwae_k if step + 1 == args.steps else args.iwae_k
            e, iw, au, codes = evaluate(vae, held, k, np.random.default_rng(step))
            log.write(json.dumps({"step": step + 1, "kind": "eval", "elbo": e, "iwae": iw,
                                  "iwae_k": k, "active_units": au}) + "\n")
            log.flush()
            print(f"step {step + 1:6d}  train -ELBO {loss.item():7.2f} (recon "
                  f"{terms['recon'].item():6.2f}, KL {terms['kl'].item():5.2f})  held-out ELBO "
                  f"{e:7.2f}  IWAE_{k} {iw:7.2f}  active units {au}  "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    log.close()

    def decode(z):
        with sg.no_grad():
            return vae.mean(vae.decode(sg.tensor(z.astype(np.float32)))).numpy() \
                .reshape(-1, 1, 28, 28)

    rng = np.random.default_rng(args.seed)
    plots.metric_curves(out / "metrics.jsonl", out / "curves.png",
                        keys=["loss", "recon", "kl", "elbo", "iwae", "active_units"])
    plots.image_grid(vae.sample(100, rng).reshape(-1, 1, 28, 28), out / "samples.png", nrow=10,
                     title="samples from the prior (decoder means)")
    vae_plots.reconstructions(held[:30].reshape(-1, 1, 28, 28), decode(codes[:30]),
                              out / "reconstructions.png")
    vae_plots.latent_scatter(codes, held_y, out / "latent.png")
    vae_plots.manifold(decode, args.z_dim, out / "manifold.png", codes=codes)
    order = np.argsort(-active_units(codes)[1])[:8]
    vae_plots.traversals(decode, codes[0], [int(u) for u in order], out / "traversals.png",
                         what="a held-out code")
    print(f"figures in {out}/")


if __name__ == "__main__":
    main()
