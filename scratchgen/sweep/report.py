"""What a study writes for people to read, from its finished runs.

* ``summary.csv`` / ``summary.md``: one row per grid point; every final metric (the run's last
  evaluation) as mean, standard deviation (over seeds, n - 1 in the denominator) and range;
  ``wall_s``: seconds each run's last attempt took; with ``correlate_with``, ``spearman_<m>``:
  Spearman's rank correlation, over a run's evaluations, of metric ``m`` with that metric.
* ``curves.png``: each logged metric against the step, one line per grid point (the mean over
  seeds at the steps all its seeds logged) in a band from the lowest to the highest seed.
* ``final.png``: each final metric against the swept setting (every seed a dot, the mean a
  line; the seeds themselves where nothing else varies).
"""
import csv
import io
import math
import warnings
from pathlib import Path

import numpy as np

from scratchgen.io import atomic_write
from scratchgen.sweep import store


def collect(study, sd):
    """[(run plan, final metrics or None, metrics.jsonl records)] of every run."""
    from scratchgen.plots import read_metrics
    out = []
    for run in study.runs:
        rd = sd.run_dir(run.name)
        final = store.finished_metrics(rd)
        records = []
        if final is not None:
            try:
                records = read_metrics(rd / "metrics.jsonl")
            except (OSError, ValueError):
                records = []
            final = dict(final, **_correlations(study, records))
            res = sd.result(run.name) or {}
            if res.get("state") == "finished" and "wall_s" in res:
                final["wall_s"] = res["wall_s"]
        out.append((run, final, records))
    return out


def _correlations(study, records):
    ref = study.correlate_with
    if ref is None:
        return {}
    evals = [r for r in records if r.get("kind") == "eval" and _num(r.get(ref))]
    names = study.correlate or [k for r in evals for k in r
                                if k not in (ref, "kind", "step") and _num(r[k])]
    out = {}
    from scipy.stats import spearmanr
    for m in dict.fromkeys(names):
        pairs = [(r[m], r[ref]) for r in evals if _num(r.get(m))]
        if len(pairs) < 3:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a constant series: no correlation (NaN)
            rho = float(spearmanr(*zip(*pairs)).statistic)
        if math.isfinite(rho):
            out[f"spearman_{m}"] = rho
    return out


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _groups(rows):
    """Rows grouped by grid point, in the study's order: {label: [(run, final, records)]}."""
    out = {}
    for row in rows:
        out.setdefault(row[0].label, []).append(row)
    return out


def table(study, rows):
    """(header, rows) of the summary: axes, run counts, then mean/std/min/max per metric."""
    metrics = list(dict.fromkeys(k for _, f, _ in rows if f for k in f if _num(f[k])))
    header = list(study.axes) + ["runs", "finished", "failed"]
    for m in metrics:
        header += [f"{m}_mean", f"{m}_std", f"{m}_min", f"{m}_max"]
    out = []
    for label, group in _groups(rows).items():
        point = group[0][0].point
        finals = [f for _, f, _ in group if f is not None]
        line = [point[a] for a in study.axes] + [len(group), len(finals),
                                                  len(group) - len(finals)]
        for m in metrics:
            v = np.array([f[m] for f in finals if _num(f.get(m))], dtype=np.float64)
            line += [float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None,
                     float(v.min()), float(v.max())] if len(v) else [None] * 4
        out.append(line)
    return header, out, metrics


def write(study, sd, failed=()):
    """Write the summary files and figures into the study directory; returns
    (paths written, the Markdown table)."""
    rows = collect(study, sd)
    header, lines, metrics = table(study, rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for line in lines:
        w.writerow(["" if v is None else (repr(v) if isinstance(v, float) else _cell(v))
                    for v in line])
    _write_text(sd.path / "summary.csv", buf.getvalue())
    md = markdown(study, header, lines, metrics, failed)
    _write_text(sd.path / "summary.md", md)
    paths = [sd.path / "summary.csv", sd.path / "summary.md"]
    if any(f is not None for _, f, _ in rows):
        paths.append(curves(study, rows, sd.path / "curves.png"))
        paths.append(finals(study, rows, [m for m in metrics if m != "wall_s"],
                            sd.path / "final.png"))
    return paths, md


def _cell(v):
    from scratchgen.sweep.study import text
    return text(v)


def _write_text(path, text):
    data = text.encode()
    atomic_write(Path(path), lambda f: f.write(data))


def _fmt(mean, std, lo, hi):
    if mean is None:
        return "-"
    if std is None:
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {std:.2g} ({lo:.4g} to {hi:.4g})"


def markdown(study, header, lines, metrics, failed=()):
    """The summary as a Markdown table (mean ± std (min to max) over the finished seeds)."""
    cols = list(study.axes) + ["runs"] + metrics
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    n = len(study.axes)
    for line in lines:
        cells = [_cell(v) for v in line[:n]]
        runs, done = line[n], line[n + 1]
        cells.append(f"{done}/{runs}" if done != runs else str(runs))
        for i in range(len(metrics)):
            cells.append(_fmt(*line[n + 3 + 4 * i: n + 7 + 4 * i]))
        out.append("| " + " | ".join(cells) + " |")
    seeds = ", ".join(map(str, study.seeds))
    out.append("")
    out.append(f"Mean ± standard deviation (lowest to highest) over seeds {seeds}, finished "
               "runs only; `runs`: finished/all where some did not finish.")
    for res in failed:
        out.append(f"- {res['name']}: {res['state']}: {res.get('error')}")
    return "\n".join(out) + "\n"


# ---- figures ------------------------------------------------------------------------------------
def _series(records, kind, key):
    return {r["step"]: r[key] for r in records
            if r.get("kind", "train") == kind and "step" in r and _num(r.get(key))}


def curves(study, rows, path, ncols=3):
    """``curves.png``: each metric against step, a line per grid point, a band over seeds."""
    from scratchgen import plots
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    keys = []
    for _, f, recs in rows:
        if f is None:
            continue
        for r in recs:
            for k, v in r.items():
                if k not in plots.RESERVED_KEYS and _num(v) and (r.get("kind", "train"), k) \
                        not in keys:
                    keys.append((r.get("kind", "train"), k))
    both = {k for kind, k in keys if (("eval" if kind == "train" else "train"), k) in keys}
    c = max(1, min(ncols, len(keys)))
    r = max(1, math.ceil(len(keys) / c))
    fig = plt.figure(figsize=(4 * c, 3 * r + 0.4), dpi=plots.DPI)
    groups = _groups(rows)
    for i, (kind, key) in enumerate(keys):
        ax = fig.add_subplot(r, c, i + 1)
        for j, (label, group) in enumerate(groups.items()):
            runs = [_series(recs, kind, key) for _, f, recs in group if f is not None]
            runs = [s for s in runs if s]
            if not runs:
                continue
            steps = sorted(set.intersection(*(set(s) for s in runs)))
            v = np.array([[s[t] for t in steps] for s in runs])
            style = dict(marker="o", ms=3) if kind == "eval" else {}
            ax.plot(steps, v.mean(0), color=f"C{j}", lw=1, label=label, **style)
            if len(runs) > 1:
                ax.fill_between(steps, v.min(0), v.max(0), color=f"C{j}", alpha=0.2, lw=0)
        if key in plots.COUNT_KEYS:
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.set_ylim(bottom=0)
        title = f"{key} ({kind})" if key in both else key
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(plots.LABELS.get(key, key), fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0 and len(groups) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"{Path(study.source).name}: mean over seeds "
                 f"{', '.join(map(str, study.seeds))}, band: lowest to highest", fontsize=10)
    fig.tight_layout()
    return plots.save_figure(fig, path)


def _x_axis(study, rows):
    """The axis to put along x: the numeric axis with the most values, else the first, else
    the seed."""
    axes = list(study.axes)
    if not axes:
        return "seed"
    numeric = [a for a in axes if all(_num(run.point[a]) for run, _, _ in rows)]
    pick = max(numeric, key=lambda a: len({run.point[a] for run, _, _ in rows})) \
        if numeric else axes[0]
    return pick


def finals(study, rows, metrics, path, ncols=3):
    """``final.png``: every final metric against the swept setting."""
    from scratchgen import plots
    from scratchgen.sweep.study import point_label, text
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    xa = _x_axis(study, rows)
    others = [a for a in study.axes if a != xa]
    numeric = xa == "seed" or all(_num(run.point[xa]) for run, _, _ in rows)
    vals = [run.seed if xa == "seed" else _key(run.point[xa]) for run, _, _ in rows]
    xs = sorted(set(vals)) if numeric else list(dict.fromkeys(vals))
    pos = (lambda v: v) if numeric else (lambda v: xs.index(v))
    c = max(1, min(ncols, len(metrics)))
    r = max(1, math.ceil(len(metrics) / c))
    fig = plt.figure(figsize=(4 * c, 3 * r + 0.4), dpi=plots.DPI)
    lines = {}
    for run, f, _ in rows:
        lines.setdefault(point_label({a: run.point[a] for a in others}), []).append((run, f))
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(r, c, i + 1)
        for j, (label, members) in enumerate(lines.items()):
            pts = [(pos(run.seed if xa == "seed" else _key(run.point[xa])), f[m])
                   for run, f in members if f is not None and _num(f.get(m))]
            if not pts:
                continue
            x, y = np.array(pts, dtype=np.float64).T
            ax.scatter(x, y, s=10, color=f"C{j}", alpha=0.6, lw=0)
            if xa != "seed":
                ux = sorted(set(x))
                ax.plot(ux, [y[x == u].mean() for u in ux], color=f"C{j}", lw=1,
                        marker="o", ms=3, label=label if others else None)
            else:
                ax.axhline(y.mean(), color=f"C{j}", lw=1, ls="--")
        if m in plots.COUNT_KEYS:
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.set_ylim(bottom=0)
        if numeric and all(float(v).is_integer() for v in xs):
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if numeric and xa != "seed" and min(xs) > 0 and max(xs) / min(xs) >= 20:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(xs)))
            ax.set_xticklabels([text(v) for v in xs], fontsize=7)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel(xa, fontsize=8)
        ax.set_ylabel(plots.LABELS.get(m, m), fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0 and others:
            ax.legend(fontsize=7)
    fig.suptitle(f"{Path(study.source).name}: final metrics against {xa}"
                 + (" (dashed: mean)" if xa == "seed" else " (dots: seeds, line: mean)"),
                 fontsize=10)
    fig.tight_layout()
    return plots.save_figure(fig, path)


def _key(v):
    return tuple(v) if isinstance(v, list) else v
