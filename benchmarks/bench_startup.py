"""Start-up: wall seconds from launching ``scratchgen train ...`` to the end of its first
training step, with the numba cache cold (an empty cache folder) and warm (the same folder,
filled by the cold run).

    python benchmarks/bench_startup.py [--repeat 3] [--json PATH] [-- TRAIN ARGS...]

Each launch is a new process running the ``scratchgen`` command's own ``main`` with
``trainer.take_step`` wrapped: after the first step the child prints the wall time and exits
(``os._exit``, so no checkpoint, evaluation or plot is counted). The clock starts in the parent
just before the process is created, so the interpreter's start and every import are included.
Default run: the README's main job (WGAN-GP on the 8 Gaussians, width 128); also timed: the
MLP VAE and the DCGAN on MNIST (the convolution kernels' compile) when ``SCRATCHGEN_DATA``
names a folder with ``mnist/``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = """
import os, sys, time
import scratchgen.trainer as T
from scratchgen import cli
take = T.take_step
def first(*a, **k):
    out = take(*a, **k)
    print("FIRST_STEP_DONE", repr(time.time()), flush=True)
    os._exit(0)
T.take_step = first
cli.main(sys.argv[1:])
"""

MAIN_JOB = ["train", "wgan-gp", "--dataset", "8gaussians", "--steps", "4000",
            "--set", "width=128"]
VAE_MNIST = ["train", "vae", "--dataset", "mnist", "--steps", "100"]
DCGAN_MNIST = ["train", "gan", "--dataset", "mnist", "--steps", "100"]


def launch(args, cache, out):
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    env.pop("NUMBA_CACHE_DIR", None)
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", CHILD, *args, "--out", out],
                       env=env, capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("FIRST_STEP_DONE"):
            return float(line.split()[1]) - t0
    raise RuntimeError(f"no first step (exit {p.returncode}):\n{p.stderr[-2000:]}")


def measure(args, repeat):
    """Medians over ``repeat`` fresh caches: (cold s, warm s)."""
    cold, warm = [], []
    for i in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            cold.append(launch(args, os.path.join(d, "cache"), os.path.join(d, "c")))
            warm.append(launch(args, os.path.join(d, "cache"), os.path.join(d, "w")))
    return statistics.median(cold), statistics.median(warm)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", metavar="PATH")
    p.add_argument("train", nargs="*", help="a train command line instead of the defaults")
    a = p.parse_args(argv)
    runs = {"main job (wgan-gp, 8gaussians)": MAIN_JOB}
    data = os.environ.get("SCRATCHGEN_DATA")
    if data and os.path.isdir(os.path.join(data, "mnist")):
        runs["vae, mnist"] = VAE_MNIST
        runs["gan (dcgan), mnist"] = DCGAN_MNIST
    if a.train:
        runs = {" ".join(a.train): a.train}
    backend = os.environ.get("SCRATCHGEN_BACKEND", "cpu")
    print(f"start-up to the end of the first step, s (median of {a.repeat}; backend {backend})")
    print(f"{'run':36}{'cold cache':>12}{'warm cache':>12}")
    results = {}
    for name, args in runs.items():
        cold, warm = measure(args, a.repeat)
        results[name] = {"cold_s": cold, "warm_s": warm}
        print(f"{name:36}{cold:12.2f}{warm:12.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
