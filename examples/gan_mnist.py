"""GAN (non-saturating) and WGAN-GP on MNIST with the DCGAN-style networks (W2's shapes).

Trains on the real MNIST test split (10,000 images, scaled to [-1, 1]; the last 1,000 are
held out for the metric) and writes, for each model, sample grids of a fixed noise batch at
a few points of training (``<model>_step<k>.png``) and one strip of all of them
(``<model>_progress.png``); it prints the FD between 1,000 generated and the 1,000 held-out
images in the digit classifier's features (and the held-out halves' FD, the floor) and the
classes covered at each snapshot.

The default run trains the GAN for 600 steps (0.16 s a step on two quiet cores; 344 s on a
busy machine), then WGAN-GP for 100 generator steps (each with 5 critic updates and a double
backward through the convolutions). The GAN's samples go from noise through checkerboards
and centred blobs (steps 100-300) to digit-like strokes (steps 400-600); WGAN-GP's stay
blurrier.

``--quick`` (25 s on two quiet cores) trains only the GAN, for 150 steps: noise gives way to
checkerboard artefacts, then to bright blobs in the centre of a black background. Digits are
out of reach in a minute with these networks on a CPU (step 320 still shows blobs): they
need the full run.

    python examples/gan_mnist.py [--out runs/gan_mnist] [--quick] [--mnist DIR]
"""
import argparse
import os
import time
from pathlib import Path

import numpy as np

import scratchgen as sg
from scratchgen import plots
from scratchgen.models.gan import GANTask, WGANGPTask
from scratchgen.data import DataSource
from scratchgen.trainer import take_step

DEFAULT_MNIST = os.environ.get("SCRATCHGEN_MNIST_DIR") or str(
    Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")


def train(cls, mnist_dir, steps, snapshots, out, seed):
    hp = cls.spec.build({}, "mnist")
    data = DataSource("mnist", hp.batch_size, seed=seed, split="test", holdout=1000,
                      data_dir=mnist_dir)
    sg.manual_seed(seed)
    task = cls(hp, data)
    batch = 0
    z = task.noise(64, np.random.default_rng([seed, 2]))
    grids, t0 = [], time.perf_counter()
    for step in range(steps + 1):
        if step in snapshots:
            with sg.no_grad():
                x = task.G(z).numpy()
            grids.append((step, x))
            plots.image_grid(x, out / f"{task.name}_step{step}.png", nrow=8,
                             title=f"{task.name}, step {step}")
            m = task.evaluate(np.random.default_rng([seed, 3]))
            print(f"{task.name:8s} step {step:4d}  FD {m['fd']:.1f} (floor {m['fd_floor']:.1f})"
                  f"  coverage {m['coverage']:.0f}  ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        if step < steps:
            logs, batch = take_step(task, data, seed, step, batch)
            if not all(np.isfinite(v) for v in logs.values()):
                raise FloatingPointError(f"{task.name}: non-finite loss at step {step}: {logs}")
    strip = np.concatenate([x[:8] for _, x in grids])
    plots.image_grid(strip, out / f"{task.name}_progress.png", nrow=8,
                     title=f"{task.name}: rows = steps {', '.join(str(s) for s, _ in grids)}")
    return grids


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/gan_mnist")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--mnist", default=DEFAULT_MNIST, help="folder with the MNIST IDX files")
    ap.add_argument("--gan-steps", type=int, default=None)
    ap.add_argument("--wgan-gp-steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gan_steps = args.gan_steps or (150 if args.quick else 600)
    gp_steps = args.wgan_gp_steps or (0 if args.quick else 100)
    runs = [(GANTask, gan_steps)] + ([(WGANGPTask, gp_steps)] if gp_steps else [])
    for cls, steps in runs:
        snaps = sorted({0, steps // 4, steps // 2, 3 * steps // 4, steps})
        train(cls, args.mnist, steps, snaps, out, args.seed)
    print(f"wrote {', '.join(f'{out}/{c.name}_progress.png' for c, _ in runs)} and the "
          "per-step grids")
    if args.quick:
        print("quick mode: the GAN's first 150 steps (noise -> checkerboards -> blobs on a "
              "black background); digit-like strokes appear at steps 400-600 of the full run")


if __name__ == "__main__":
    main()
