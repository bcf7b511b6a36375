"""Does the critic's value track sample quality? (WGAN paper, sec. 4.2; WGAN-GP fig. 3)

WGAN (clipping), WGAN-GP and, for contrast, a GAN are trained on 8gaussians. Every
``--every`` generator steps we draw 1,000 generated and 1,000 real points and record
* the exact W1 between them (optimal assignment, ``metrics.wasserstein1_exact``): quality;
* the critic's estimate ``E C(real) - E C(fake)`` on the same points (WGAN, WGAN-GP);
* the GAN discriminator's loss on them (its JS estimate is ``(log 4 - loss) / 2``).
We plot both over training and print Spearman's rank correlation of each model's estimate
with the exact W1 (scipy.stats.spearmanr). A clipped critic estimates ``K·W1`` for an unknown
``K``, which rank correlation ignores.

``--quick`` (about 35 s on two quiet cores) trains WGAN-GP and the GAN for 600 steps with
Adam at 1e-3, evaluated every 30: enough for WGAN-GP to cover the 8 modes while its critic
tracks the exact W1, and for the GAN's discriminator loss not to. The weight-clipped WGAN is
left out of it: its critic needs the full run's 2,000 steps to track (at 600 steps its
correlation ranged from 0.07 to 0.93 between settings).

    python examples/critic_tracks_quality.py [--out runs/critic_tracks_quality] [--quick]
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

import scratchgen as sg
from scratchgen import plots
from scratchgen.models.gan import GANTask, WGANGPTask, WGANTask
from scratchgen.data import DataSource
from scratchgen.trainer import take_step

MODELS = {"wgan": WGANTask, "wgan-gp": WGANGPTask, "gan": GANTask}


def run(name, steps, every, width, seed, dataset="8gaussians", **overrides):
    cls = MODELS[name]
    hp = cls.spec.build({"width": width, **overrides}, dataset)
    data = DataSource(dataset, hp.batch_size, seed=seed)
    sg.manual_seed(seed)
    task = cls(hp, data)
    batch = 0
    eval_rng = np.random.default_rng([seed, 2])
    key = "loss_d" if name == "gan" else "w1_estimate"
    rows, window, t0 = [], [], time.perf_counter()
    for step in range(steps + 1):
        if step % every == 0:
            rows.append({"step": step, **task.evaluate(eval_rng),
                         # the training-time estimate, averaged over the steps since the last row
                         "train_estimate": float(np.mean(window)) if window else float("nan"),
                         "time": time.perf_counter() - t0})
            window = []
        if step < steps:
            logs, batch = take_step(task, data, seed, step, batch)
            if not all(np.isfinite(v) for v in logs.values()):
                raise FloatingPointError(f"{name}: non-finite loss at step {step}: {logs}")
            window.append(logs[key])
    return task, rows


def summarize(name, rows):
    """Spearman correlations with the exact W1 over the rows after step 0 (where the critic
    is untrained and no training estimate exists yet)."""
    w1 = np.array([r["w1"] for r in rows])
    later = rows[1:]
    eval_key = "loss_d" if name == "gan" else "critic_w1"
    rho = lambda k: float(spearmanr([r[k] for r in later], [r["w1"] for r in later]).statistic)
    return {"spearman_eval": rho(eval_key), "spearman_train": rho("train_estimate"),
            "w1_start": float(w1[0]), "w1_end": float(w1[-1]), "w1_min": float(w1.min()),
            "modes_end": int(rows[-1]["modes"]), "seconds": float(rows[-1]["time"])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/critic_tracks_quality")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None, help="generator steps per model")
    ap.add_argument("--every", type=int, default=None)
    ap.add_argument("--width", type=int, default=128, help="MLP width (3 hidden layers)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = args.steps or (600 if args.quick else 2000)
    every = args.every or (30 if args.quick else 100)
    # the tasks' defaults; WGAN with the paper's schedule (100 critic updates for the first
    # 25 generator steps and every 500th), which trains its clipped critic much further
    settings = {"wgan": {"critic_burst": True}, "wgan-gp": {}, "gan": {}}
    if args.quick:
        settings = {"wgan-gp": {"lr": 1e-3}, "gan": {"lr": 1e-3}}
    results, summary = {}, {}
    for name in settings:
        _, rows = run(name, steps, every, args.width, args.seed, **settings[name])
        results[name] = rows
        summary[name] = summarize(name, rows)
        s = summary[name]
        what = "discriminator loss" if name == "gan" else "critic estimate"
        print(f"{name:8s} Spearman({what}, exact W1): {s['spearman_eval']:+.3f} on the 1,000 "
              f"eval points, {s['spearman_train']:+.3f} averaged over training steps;  "
              f"exact W1 {s['w1_start']:.3f} -> {s['w1_end']:.3f} (min {s['w1_min']:.3f}), "
              f"modes {s['modes_end']}/8, {steps} steps in {s['seconds']:.0f} s", flush=True)
    (out / "critic_tracks_quality.json").write_text(
        json.dumps({"results": results, "summary": summary}, indent=1))

    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results) + 1, figsize=(4.75 * (len(results) + 1), 4),
                             dpi=plots.DPI)
    for ax, name in zip(axes, results):
        rows = results[name]
        s = [r["step"] for r in rows]
        key = "loss_d" if name == "gan" else "critic_w1"
        ax.plot(s, [r["w1"] for r in rows], "k-", label="exact W1 (1,000 vs 1,000)")
        ax.set_xlabel("generator step")
        ax.set_ylabel("exact W1")
        ax2 = ax.twinx()
        ax2.plot(s, [r[key] for r in rows], "C1-",
                 label="discriminator loss" if name == "gan" else "critic estimate (eval)")
        ax2.plot(s, [r["train_estimate"] for r in rows], "C2--", lw=1,
                 label="same, mean over training steps")
        ax2.set_ylabel("discriminator loss" if name == "gan" else "E C(real) − E C(fake)",
                       color="C1")
        ax.set_title(f"{name}: Spearman {summary[name]['spearman_eval']:+.2f} (eval), "
                     f"{summary[name]['spearman_train']:+.2f} (train)", fontsize=9)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right")
    ax = axes[-1]
    for i, name in enumerate(n for n in ("wgan", "wgan-gp") if n in results):
        rows = results[name][1:]  # after step 0 (untrained critic)
        est = np.array([r["critic_w1"] for r in rows])
        ax.scatter([r["w1"] for r in rows], est / max(np.abs(est).max(), 1e-12), s=8,
                   color=f"C{i}", label=f"{name} (scaled to max 1)")
    ax.set_xlabel("exact W1")
    ax.set_ylabel("critic estimate / max")
    ax.legend(fontsize=7)
    ax.set_title("critic estimate vs exact W1")
    fig.tight_layout()
    print(f"wrote {plots.save_figure(fig, out / 'critic_tracks_quality.png')}")
    return summary


if __name__ == "__main__":
    main()
