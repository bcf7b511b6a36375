"""GAN, WGAN and WGAN-GP on MNIST with the batch-normalised DCGAN recipes, watched from one
fixed noise batch.

Trains on the real MNIST test split (10,000 images in [-1, 1]; the last 1,000 are held out
for the metric) and writes, for each model, sample grids of the same 64 noise vectors at a
few points of training (``<model>_step<k>.png``) and a strip of their first rows
(``<model>_progress.png``, one row per snapshot). At each snapshot it prints the FD between
1,000 generated and the 1,000 held-out images in the digit classifier's features (and the
held-out halves' FD, the floor) and the classes covered.

The full run trains each model with the defaults of ``scratchgen train MODEL --dataset
mnist`` (their MNIST recipes, rate schedules and step counts, up to about 10 minutes each on
two quiet cores).

``--quick`` (under a minute on two cores: 36 s beside another job once the digit classifier
is cached) trains the GAN alone, its MNIST recipe at a constant rate for 400 steps: noise,
then bright blobs (step 50), then strokes from which digits emerge (8, 2, 3, 0 readable by step
400; FD 147 where the held-out halves score 14.8).

    python examples/gan_mnist.py [--out runs/gan_mnist] [--quick] [--mnist DIR]
"""
import argparse
import os
import time
from pathlib import Path

import numpy as np

import scratchgen as sg
from scratchgen import plots
from scratchgen.data import DataSource
from scratchgen.tasks import get_task
from scratchgen.trainer import take_step, task_schedules

DEFAULT_MNIST = os.environ.get("SCRATCHGEN_MNIST_DIR") or str(
    Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")
QUICK_STEPS = 400


def train(name, mnist_dir, steps, snapshots, out, seed, overrides=None):
    cls = get_task(name)
    hp = cls.spec.build(overrides or {}, "mnist")
    data = DataSource("mnist", hp.batch_size, seed=seed, split="test", holdout=1000,
                      data_dir=mnist_dir)
    sg.manual_seed(seed)
    task = cls(hp, data)
    schedules = task_schedules(task, hp.lr_schedule, steps)  # as scratchgen train steps them
    batch = 0
    z = task.noise(64, np.random.default_rng([seed, 2]))
    t0 = time.perf_counter()
    for step in range(steps + 1):
        if step in snapshots:
            x = task.generate(z)
            plots.image_grid(x, out / f"{name}_step{step}.png", nrow=8,
                             title=f"{name}, step {step}")
            plots.progress_strip(x[:8], step, out / f"{name}_progress.png",
                                 out / f"{name}_progress.npz")
            m = task.evaluate(np.random.default_rng([seed, 3]))
            print(f"{name:8s} step {step:4d}  FD {m['fd']:.1f} (floor {m['fd_floor']:.1f})"
                  f"  coverage {m['coverage']:.0f}  ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        if step < steps:
            logs, batch = take_step(task, data, seed, step, batch)
            for schedule in schedules:
                schedule.step()
            if not all(np.isfinite(v) for v in logs.values()):
                raise FloatingPointError(f"{name}: non-finite loss at step {step}: {logs}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/gan_mnist")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--mnist", default=DEFAULT_MNIST, help="folder with the MNIST IDX files")
    ap.add_argument("--models", default=None,
                    help="comma-separated (default: gan with --quick, else gan,wgan,wgan-gp)")
    ap.add_argument("--steps", type=int, default=None,
                    help="steps per model (default: 400 with --quick, else each model's MNIST "
                    "default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a hyperparameter of every model trained (as scratchgen train --set)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = (args.models or ("gan" if args.quick else "gan,wgan,wgan-gp")).split(",")
    overrides = {}
    for kv in args.overrides:
        if "=" not in kv:
            ap.error(f"--set {kv}: give KEY=VALUE")
        overrides.update([kv.split("=", 1)])
    if args.quick:  # a cosine decay over 400 steps would freeze the picture by step 250
        overrides.setdefault("lr_schedule", "constant")
    for name in names:
        steps = args.steps or (QUICK_STEPS if args.quick
                               else get_task(name).default_steps("mnist"))
        k = 8 if args.quick else 4
        snaps = sorted({round(i * steps / k) for i in range(k + 1)})
        train(name, args.mnist, steps, snaps, out, args.seed, overrides)
    print(f"wrote {', '.join(f'{out}/{n}_progress.png' for n in names)} and the per-step "
          "grids")


if __name__ == "__main__":
    main()
