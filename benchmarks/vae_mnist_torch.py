"""The MNIST VAE recipe of ``scratchgen train vae --dataset mnist`` in PyTorch, on the same data.

784-400-20 MLP (ReLU), Bernoulli decoder, Adam(1e-3), batch 128, trained on the 60,000 training
digits in scratchgen's own batch order (``DataSource.batch_at``: the same shuffles and the same
dynamic binarisation), evaluated on the 10,000 test digits binarised once exactly as scratchgen
binarises them. Prints one JSON line per budget with the held-out ELBO and IWAE_k, so the two
libraries' figures stand side by side (docs/RESULTS.md)::

    python benchmarks/vae_mnist_torch.py --data-dir ../shared/data/mnist --epochs 10,50,100 --iwae-k 5000

Only the noise differs: PyTorch draws eps and the IWAE samples from ``torch.manual_seed(seed)``.
"""
import argparse
import json
import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from scratchgen.data import DataSource


class VAE(nn.Module):
    def __init__(self, x_dim=784, hidden=400, z_dim=20):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, x_dim))

    def encode(self, x):
        h = self.encoder(x)
        return h[:, :self.z_dim], h[:, self.z_dim:]

    def log_px_given_z(self, x, logits):
        return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    def elbo(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
        return self.log_px_given_z(x, self.decoder(z)) - kl

    @torch.no_grad()
    def iwae(self, x, k, chunk=500):
        """log (1/k) sum_i p(x, z_i) / q(z_i | x) per example, k samples in chunks."""
        mu, logvar = self.encode(x)
        std = torch.exp(0.5 * logvar)
        parts = []
        for c0 in range(0, k, chunk):
            c = min(chunk, k - c0)
            eps = torch.randn(c, *mu.shape)
            z = mu + std * eps
            log_q = -0.5 * (logvar + math.log(2 * math.pi) + eps ** 2).sum(-1)
            log_p = -0.5 * (math.log(2 * math.pi) + z ** 2).sum(-1)
            parts.append(torch.logsumexp(self.log_px_given_z(x, self.decoder(z)) + log_p - log_q, 0))
        return torch.logsumexp(torch.stack(parts), 0) - math.log(k)


def evaluate(model, x, k, batch=100):
    model.eval()
    elbo = iw = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            elbo += float(model.elbo(xb).sum())
            iw += float(model.iwae(xb, k).sum())
    model.train()
    return elbo / len(x), iw / len(x)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data/mnist")
    p.add_argument("--epochs", default="10,50,100", help="budgets to evaluate at, comma-separated")
    p.add_argument("--iwae-k", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: with 2, OpenMP workers spin against any other busy "
                   "process on a 2-core machine, 40x slower steps measured)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = DataSource("mnist", 128, seed=args.seed, data_dir=args.data_dir,
                      preprocess="binarize-dynamic")
    held = torch.from_numpy(data.held_out.x.reshape(len(data.held_out.x), -1))
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    budgets = sorted(int(e) for e in args.epochs.split(","))
    step, t0, train_s = 0, time.time(), 0.0
    for epochs in budgets:
        t1 = time.time()
        while step < epochs * data.batches_per_epoch:
            x = torch.from_numpy(data.batch_at(step).reshape(128, -1))
            loss = -model.elbo(x).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        train_s += time.time() - t1
        t2 = time.time()
        elbo, iw = evaluate(model, held, args.iwae_k)
        print(json.dumps({"library": "torch " + torch.__version__, "epochs": epochs, "step": step,
                          "elbo": round(elbo, 3), "iwae": round(iw, 3), "iwae_k": args.iwae_k,
                          "train_s": round(train_s, 1), "eval_s": round(time.time() - t2, 1)}),
              flush=True)


if __name__ == "__main__":
    main()
