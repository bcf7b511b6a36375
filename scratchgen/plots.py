"""Figures as PNG files: image grids, a progress strip, 2-D scatter plots, metric curves.

Host-side only (NumPy in, file out), matplotlib's Agg backend (no display needed). Every
function takes the output ``path``, writes it atomically (a temporary file, then a rename),
closes its figure and returns the path. Figure sizes are exact, so the pixel size of a PNG
is known in advance (documented per function).

>>> import numpy as np, tempfile, os
>>> from scratchgen import plots
>>> d = tempfile.mkdtemp()
>>> p = plots.image_grid(np.zeros((4, 1, 28, 28)), os.path.join(d, "g.png"), scale=1)
>>> import matplotlib.image; matplotlib.image.imread(p).shape[:2]   # 2 x 2 grid, 2-px gaps
(62, 62)
"""
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from scratchgen.io import atomic_write  # noqa: E402

DPI = 100
TITLE_PX = 24  # height of the title strip above an image grid


def save_figure(fig, path):
    """Save ``fig`` as PNG at ``path`` (parents made; atomic, as :func:`scratchgen.io.atomic_write`:
    a killed writer leaves a ``.tmp`` that the next start removes), close it; the ``Path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda f: fig.savefig(f, dpi=DPI, format="png"))
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------- image grids

def _as_images(images):
    """(n, H, W) / (n, 1, H, W) / (n, 3, H, W) -> float (n, H, W, C) in [0, 1]."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3) or len(x) == 0:
        raise ValueError(f"images must have shape (n, H, W) or (n, C, H, W) with C in (1, 3) "
                         f"and n >= 1, got {np.shape(images)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or infinite values")
    if x.min() < 0:  # [-1, 1] (tanh outputs)
        x = (x + 1) / 2
    elif x.max() > 1.0 + 1e-6:  # raw 0..255 pixels
        x = x / 255.0
    return np.clip(x, 0, 1).transpose(0, 2, 3, 1)


def tile(images, nrow=None, padding=2, pad_value=1.0):
    """Images tiled into one (rows·(H+p)+p, nrow·(W+p)+p, C) array, ``nrow`` images per row
    (default ``ceil(sqrt(n))``), separated by ``padding`` pixels of ``pad_value``."""
    x = _as_images(images)
    n, h, w, c = x.shape
    nrow = int(nrow) if nrow else math.ceil(math.sqrt(n))
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    rows = math.ceil(n / nrow)
    p = int(padding)
    grid = np.full((rows * (h + p) + p, nrow * (w + p) + p, c), float(pad_value))
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[p + r * (h + p):p + r * (h + p) + h, p + k * (w + p):p + k * (w + p) + w] = x[i]
    return grid


def image_grid(images, path, nrow=None, title=None, scale=None, padding=2):
    """Save ``images`` as a grid (see :func:`tile`). Values in [0, 1], [-1, 1] (any negative
    value) or 0..255 are mapped to [0, 1]; one channel is drawn in grey.

    Pixel size: the tiled array times ``scale`` (default: the smallest integer making the
    width >= 400 px), plus a ``TITLE_PX``-high strip on top when ``title`` is given.
    """
    grid = tile(images, nrow=nrow, padding=padding)
    gh, gw = grid.shape[:2]
    scale = int(scale) if scale else max(1, math.ceil(400 / gw))
    top = TITLE_PX if title else 0
    w, h = gw * scale, gh * scale + top
    fig = plt.figure(figsize=(w / DPI, h / DPI), dpi=DPI)
    ax = fig.add_axes([0, 0, 1, gh * scale / h])
    ax.imshow(grid[..., 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    if title:
        fig.text(0.5, 1 - (top / 2) / h, str(title), ha="center", va="center", fontsize=10)
    return save_figure(fig, path)


PROGRESS_ROWS = 16  # rows drawn in progress.png at most (evenly spaced, first and last kept)
LABEL_PX = 80  # width of the step labels left of the progress rows


def progress_strip(images, step, path, record):
    """Add ``images`` (k, C, H, W; the same fixed-noise samples at each call) as the row of
    training ``step`` to ``record`` (an ``.npz`` of uint8 rows and their steps, written
    atomically beside the figure so the strip survives an interrupted and resumed run) and
    draw the rows, one per step, each labelled ``step N``, as ``path``. Rows of steps
    >= ``step`` (a previous timeline, or a repeated evaluation) are replaced; an unreadable
    record starts afresh. At most ``PROGRESS_ROWS`` rows are drawn (evenly spaced).

    Pixel size: ``LABEL_PX`` + the tiled rows' width, times 2 for 28-pixel images."""
    x = np.round(_as_images(images) * 255).astype(np.uint8)  # (k, H, W, C)
    steps, rows = np.zeros(0, np.int64), np.zeros((0,) + x.shape, np.uint8)
    record = Path(record)
    if record.exists():
        try:
            with np.load(record, allow_pickle=False) as f:
                steps, rows = f["steps"], f["images"]
            if rows.shape[1:] != x.shape or len(steps) != len(rows):
                raise ValueError(f"its rows are {rows.shape[1:]}, not {x.shape}")
        except Exception as e:  # noqa: BLE001 (any damage: start the strip again)
            print(f"warning: {record} is unreadable ({e}); the progress strip starts afresh",
                  file=sys.stderr, flush=True)
            steps, rows = np.zeros(0, np.int64), np.zeros((0,) + x.shape, np.uint8)
    keep = steps < int(step)
    steps = np.append(steps[keep], int(step))
    rows = np.concatenate([rows[keep], x[None]])
    atomic_write(record, lambda f: np.savez(f, steps=steps, images=rows))
    show = np.unique(np.linspace(0, len(rows) - 1, min(len(rows), PROGRESS_ROWS)).round()
                     .astype(int))
    k, h = x.shape[0], x.shape[1]
    grid = tile(rows[show].reshape((-1,) + x.shape[1:]).transpose(0, 3, 1, 2) / 255.0, nrow=k)
    gh, gw = grid.shape[:2]
    scale = max(1, math.ceil(400 / gw))
    w, hh = LABEL_PX + gw * scale, gh * scale + TITLE_PX
    fig = plt.figure(figsize=(w / DPI, hh / DPI), dpi=DPI)
    ax = fig.add_axes([LABEL_PX / w, 0, gw * scale / w, gh * scale / hh])
    ax.imshow(grid[..., 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    for r, s in enumerate(steps[show]):
        y = (2 + r * (h + 2) + h / 2) * scale  # pixels from the grid's top (2-px padding)
        fig.text((LABEL_PX - 6) / w, 1 - (TITLE_PX + y) / hh, f"step {s}", ha="right",
                 va="center", fontsize=9)
    fig.text(0.5, 1 - (TITLE_PX / 2) / hh, "the same noise at each evaluation", ha="center",
             va="center", fontsize=10)
    return save_figure(fig, path)


# ---------------------------------------------------------------- 2-D points

def _point_sets(points):
    if isinstance(points, dict):
        items = list(points.items())
    elif isinstance(points, (list, tuple)) and points and np.ndim(points[0]) == 2:
        items = [(None, p) for p in points]
    else:
        items = [(None, points)]
    out = []
    for label, p in items:
        p = np.asarray(p, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 2:
            what = f"points {label!r}" if label is not None else "points"
            raise ValueError(f"{what} must have shape (n, 2), got {p.shape}")
        out.append((label, p))
    return out


def scatter2d(points, path, title=None, lim=None, size=(5, 5), s=3, alpha=0.5,
              contour=None, contour_label=None):
    """Scatter plot of 2-D points: an (n, 2) array, a list of them, or a dict label -> (n, 2)
    (one colour and legend entry each; draw the data first, the model's samples after).

    ``lim``: ``(lo, hi)`` for both axes or ``((xlo, xhi), (ylo, yhi))``; default: the points'
    range (non-finite points ignored) plus 10%. ``contour=(X, Y, Z)`` draws filled contours of
    ``Z`` on the grid ``X, Y`` underneath (a critic's values, a log density), with a colour bar.
    Pixel size: ``size`` (inches) x 100.
    """
    sets = _point_sets(points)
    fig = plt.figure(figsize=size, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    if contour is not None:
        X, Y, Z = (np.asarray(a, dtype=np.float64) for a in contour)
        cs = ax.contourf(X, Y, Z, levels=20, cmap="viridis", alpha=0.6)
        cb = fig.colorbar(cs, ax=ax, fraction=0.046, pad=0.04)
        if contour_label:
            cb.set_label(contour_label)
    for label, p in sets:
        ax.scatter(p[:, 0], p[:, 1], s=s, alpha=alpha, label=label, linewidths=0)
    if lim is None:
        allp = np.concatenate([p for _, p in sets]) if sets else np.zeros((0, 2))
        allp = allp[np.all(np.isfinite(allp), axis=1)]
        if len(allp):
            lo, hi = allp.min(0), allp.max(0)
            pad = 0.1 * np.maximum(hi - lo, 1e-3)
            lim = ((lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1]))
    if lim is not None:
        lim = np.asarray(lim, dtype=np.float64)
        xl, yl = (lim, lim) if lim.ndim == 1 else lim
        ax.set_xlim(*xl)
        ax.set_ylim(*yl)
    ax.set_aspect("equal", adjustable="box")
    if any(label is not None for label, _ in sets):
        ax.legend(loc="upper right", markerscale=3, fontsize=8)
    if title:
        ax.set_title(str(title), fontsize=10)
    return save_figure(fig, path)


# ---------------------------------------------------------------- metric curves

RESERVED_KEYS = ("step", "time", "kind", "it_s")
# Metrics drawn in one panel because comparing them is the point: members -> panel title.
OVERLAYS = {("w1", "critic_w1", "w1_estimate"): "W1: exact vs the critic's estimate",
            ("fd", "fd_floor", "fd_train"): "FD in a digit classifier's features"}
LEGEND = {"w1": "exact", "critic_w1": "critic, eval samples",
          "w1_estimate": "critic, training batches", "fd": "generated vs held-out",
          "fd_floor": "held-out halves (floor)", "fd_train": "training vs held-out"}
LABELS = {"w1": "exact W1 (generated vs data)", "critic_w1": "critic's W1 estimate",
          "w1_estimate": "critic's W1 estimate", "sliced_w1": "sliced W1 (generated vs data)",
          "modes": "modes covered", "high_quality": "fraction near a mode",
          "active_units": "active latent units", "elbo": "ELBO (nats)", "iwae": "IWAE bound (nats)",
          "recon": "reconstruction NLL (nats)", "kl": "KL(q || p) (nats)",
          "coverage": "digit classes covered", "confidence": "classifier's mean confidence",
          "mnist_score": "MNIST score (10 best)",
          "classifier_accuracy": "classifier's held-out accuracy"}
COUNT_KEYS = ("modes", "active_units", "coverage")  # integer ticks, axis from 0


def read_metrics(path):
    """Lines of a ``metrics.jsonl`` as dicts (blank lines skipped; a torn last line — a run
    killed mid-write — is ignored; any other unparsable line names the file and line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):
                break
            raise ValueError(f"{path}:{i}: not a JSON line ({e})") from e
    return out


def _series(records, key):
    """[(label, steps, values)] of ``key``: training lines, then evaluation lines split by the
    value of a companion ``<key>_k`` (e.g. ``iwae_k``: the bound's sample count)."""
    out = []
    for kind in ("train", "eval"):
        by = {}
        for rec in records:
            v = rec.get(key)
            if (rec.get("kind", "train") == kind and "step" in rec and isinstance(v, (int, float))
                    and not isinstance(v, bool)):
                by.setdefault(rec.get(f"{key}_k"), []).append((rec["step"], v))
        for k, pts in by.items():
            s, v = np.array(pts, dtype=np.float64).T
            out.append((kind + (f", k={k:g}" if k is not None else ""), s, v))
    return out


def _panels(keys):
    """Group ``keys`` into panels: each overlay together (where more than one is present)."""
    panels, done = [], set()
    for key in keys:
        if key in done:
            continue
        group = next((g for g in OVERLAYS if key in g), (key,))
        members = [k for k in group if k in keys]
        done.update(members)
        panels.append(members)
    return panels


def _scale(series):
    v = np.concatenate([v for _, _, v in series]) if series else np.zeros(0)
    v = np.abs(v[np.isfinite(v)])
    return v.max() if len(v) else 0.0


def _draw_panel(ax, records, members):
    """One panel; in an overlay, members 10x smaller than the first (a weight-clipped critic's
    estimate) go on a right-hand axis of their own."""
    styles = {"train": dict(lw=1, alpha=0.8), "eval": dict(marker="o", ms=3, lw=1)}
    several = len(members) > 1
    series = {key: _series(records, key) for key in members}
    ref = _scale(series[members[0]])
    twin = [k for k in members[1:] if 0 < _scale(series[k]) < ref / 10]
    ax2 = ax.twinx() if twin else None
    values, ks, handles = [], set(), []
    for i, key in enumerate(members):
        a = ax2 if key in twin else ax
        for label, s, v in series[key]:
            kind = label.split(",")[0]
            if ", k=" in label:
                ks.add(label.split("k=")[1])
            name = f"{LEGEND.get(key, key)} ({label})" if several else label
            handles += a.plot(s, v, label=name, color=f"C{len(handles)}", **styles[kind])
            if a is ax:
                values.append(v)
    key = members[0]
    title = next((t for g, t in OVERLAYS.items() if key in g), key) if several else key
    if len(ks) == 1:
        title += f" (k={ks.pop()})"
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("W1" if several and key == "w1" else LABELS.get(key, key), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if ax2 is not None:
        ax2.set_ylabel(LABELS.get(twin[0], twin[0]) + " (right axis)", fontsize=8)
        ax2.tick_params(labelsize=7)
    v = np.concatenate(values) if values else np.zeros(0)
    v = v[np.isfinite(v)]
    if key in COUNT_KEYS and len(v):
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylim(min(0.0, v.min()) - 0.3, max(1.0, v.max()) + 0.3)
    if len(handles) > 1:
        ax.legend(handles=handles, fontsize=7)


def metric_curves(metrics_path, path, keys=None, title=None, ncols=3):
    """:func:`curves_figure` of a ``metrics.jsonl`` saved at ``path``."""
    return save_figure(curves_figure(read_metrics(metrics_path), keys, title, ncols,
                                     source=Path(metrics_path).name), path)


def curves_figure(records, keys=None, title=None, ncols=3, source="the records"):
    """Panels of metric records (``metrics.jsonl`` lines) against ``step``: training lines
    (``kind`` ``'train'``) as a line, evaluation lines (``'eval'``) with markers. ``keys``: the
    metrics to draw (default: every numeric key, in order of appearance). Metrics compared with
    each other share a panel (:data:`OVERLAYS`: the exact W1 with the critic's estimates); a
    companion ``<key>_k`` (``iwae_k``) labels its metric's points with their k; counts
    (:data:`COUNT_KEYS`) get integer ticks from 0. Axes are labelled.

    Pixel size: ``(400·c, 300·r)`` for ``c = min(ncols, k)`` columns and ``r = ceil(k / c)``
    rows of ``k`` panels (``k = 1`` when there is nothing to draw).
    """
    if keys is None:
        keys = []
        for rec in records:
            for k, v in rec.items():
                if (k not in RESERVED_KEYS and k not in keys and isinstance(v, (int, float))
                        and not isinstance(v, bool)):
                    keys.append(k)
        keys = [k for k in keys if not (k.endswith("_k") and k[:-2] in keys)]
    panels = _panels(list(keys))
    k = max(1, len(panels))
    c = min(int(ncols), k)
    r = math.ceil(k / c)
    fig = plt.figure(figsize=(4 * c, 3 * r), dpi=DPI)
    if not panels:
        fig.text(0.5, 0.5, f"no metrics logged in {source}", ha="center")
        return fig
    for i, members in enumerate(panels):
        _draw_panel(fig.add_subplot(r, c, i + 1), records, members)
    if title:
        fig.suptitle(str(title), fontsize=10)
    fig.tight_layout()
    return fig
