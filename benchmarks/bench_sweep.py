"""Throughput of ``scratchgen sweep`` against running the same runs one after another.

A study of ``--runs`` short runs (the main job's model, WGAN-GP with 3x128 MLPs on 8 Gaussians,
``--steps`` steps, one evaluation at the end, seeds 0..runs-1) is trained

* sequentially: ``python -m scratchgen train ...`` one run after the other, in this
  environment (what a user without ``sweep`` does);
* by ``scratchgen sweep --workers K`` for each K of ``--workers`` (a fresh study folder each).

For each it reports the wall time of the whole command (cluster start and summary included),
runs per hour, the mean wall time of one run and the per-run slowdown against the sequential
runs, and the measurement conditions: cores, load average, and how many cores' worth of CPU
other processes used meanwhile (/proc/stat's busy time minus this benchmark's own).

    python benchmarks/bench_sweep.py                  # 8 runs of 300 steps; 1, 2, 4 workers
    python benchmarks/bench_sweep.py --runs 8 --steps 300 --workers 1,2,4 --out /tmp/bench-sweep

Writes ``OUT/bench_sweep.json`` and prints a Markdown table.
"""
import argparse
import glob
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def busy_seconds():
    """CPU seconds all cores spent busy (user + nice + system + irq + softirq), or None."""
    try:
        with open("/proc/stat") as f:
            v = f.readline().split()[1:]
    except OSError:
        return None
    return (int(v[0]) + int(v[1]) + int(v[2]) + int(v[5]) + int(v[6])) / os.sysconf("SC_CLK_TCK")


def own_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    s = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime + s.ru_utime + s.ru_stime


class Measure:
    """Wall time, and the cores' worth of CPU that other processes used meanwhile."""

    def __enter__(self):
        self.t, self.busy, self.own = time.time(), busy_seconds(), own_seconds()
        self.load = os.getloadavg()[0]
        return self

    def __exit__(self, *exc):
        self.wall = time.time() - self.t
        busy = busy_seconds()
        own = own_seconds() - self.own
        self.others = None if busy is None else max(0.0, (busy - self.busy - own) / self.wall)
        self.own_cores = own / self.wall


def study_text(runs, steps, width):
    return (f'model = "wgan-gp"\ndataset = "8gaussians"\nsteps = {steps}\n'
            f"eval_every = {steps}\nseeds = {list(range(runs))}\n[set]\nwidth = {width}\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    ap.add_argument("--out", help="folder for the runs and bench_sweep.json (default: a "
                    "temporary folder, removed afterwards except the json, copied to cwd)")
    ap.add_argument("--skip-sequential", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-sweep-"))
    out.mkdir(parents=True, exist_ok=True)
    study = out / "study.toml"
    study.write_text(study_text(args.runs, args.steps, args.width))
    py = [sys.executable, "-m", "scratchgen"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    print(f"{args.runs} runs of wgan-gp on 8gaussians, width {args.width}, {args.steps} steps; "
          f"{cores} cores; load average {os.getloadavg()}", flush=True)

    # numba's kernels compile (or load from the cache) on first use: not part of any row
    subprocess.run(py + ["train", "wgan-gp", "--dataset", "8gaussians", "--steps", "2",
                         "--set", "width=8", "--out", str(out / "warm-up")], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.rmtree(out / "warm-up")
    if not args.skip_sequential:
        from scratchgen.sweep import load_study
        per_run = []
        with Measure() as m:
            for r in load_study(study).runs:
                t = time.time()
                subprocess.run(py + ["train", *r.argv, "--out", str(out / "seq" / r.name)],
                               check=True, stdout=subprocess.DEVNULL)
                per_run.append(time.time() - t)
        rows.append(_row("sequential (scratchgen train, one after another)", m, per_run))
        print(rows[-1], flush=True)

    for k in [int(w) for w in args.workers.split(",")]:
        folder = out / f"sweep-{k}"
        shutil.rmtree(folder, ignore_errors=True)
        with Measure() as m:
            subprocess.run(py + ["sweep", str(study), "--out", str(folder), "--workers", str(k)],
                           check=True, stdout=subprocess.DEVNULL)
        per_run = [json.loads(Path(p).read_text())["wall_s"]
                   for p in glob.glob(str(folder / "results" / "*.json"))]
        rows.append(_row(f"sweep --workers {k}", m, per_run))
        print(rows[-1], flush=True)

    base = rows[0]["run_s"] if not args.skip_sequential else None
    print()
    print("| how | wall s | runs/hour | s per run (mean) | per-run slowdown | others' CPU "
          "(cores) | load avg at start |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        slow = f"{r['run_s'] / base:.2f}x" if base else "-"
        print(f"| {r['how']} | {r['wall_s']:.0f} | {r['runs_per_hour']:.0f} | {r['run_s']:.1f} | "
              f"{slow} | {r['others_cores']:.2f} | {r['load']:.2f} |")
    result = {"runs": args.runs, "steps": args.steps, "width": args.width, "cores": cores,
              "machine": platform.processor() or platform.machine(), "rows": rows,
              "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "bench_sweep.json").write_text(json.dumps(result, indent=1))
    if not args.out:
        shutil.copy(out / "bench_sweep.json", "bench_sweep.json")
        shutil.rmtree(out)
        print("\nwrote bench_sweep.json")
    else:
        print(f"\nwrote {out / 'bench_sweep.json'}")


def _row(how, m, per_run):
    n = len(per_run)
    return {"how": how, "wall_s": m.wall, "runs_per_hour": 3600 * n / m.wall,
            "run_s": sum(per_run) / n, "others_cores": m.others if m.others is not None else
            float("nan"), "own_cores": m.own_cores, "load": m.load, "n": n}


if __name__ == "__main__":
    main()
