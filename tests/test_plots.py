"""PNG figures: written, readable, of the documented pixel size; values mapped as documented."""
import json

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from scratchgen import plots


def png_shape(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path).shape[:2]


def test_agg_backend_and_no_open_figures_left(tmp_path):
    import matplotlib.pyplot as plt
    assert matplotlib.get_backend().lower() == "agg"
    before = len(plt.get_fignums())
    plots.image_grid(np.zeros((3, 8, 8)), tmp_path / "a.png")
    plots.scatter2d(np.zeros((5, 2)), tmp_path / "b.png")
    assert len(plt.get_fignums()) == before


@pytest.mark.parametrize("shape,nrow,title,expect", [
    ((4, 1, 28, 28), None, None, (62 * 7, 62 * 7)),  # 2x2 of 28+2 px, scale ceil(400/62)
    ((64, 28, 28), 8, "samples", (242 * 2 + plots.TITLE_PX, 242 * 2)),
    ((10, 3, 5, 5), 5, None, ((2 * 7 + 2) * 11, (5 * 7 + 2) * 11)),  # RGB, 2 rows of 5
])
def test_image_grid_pixel_size(tmp_path, shape, nrow, title, expect):
    p = plots.image_grid(np.random.default_rng(0).random(shape), tmp_path / "g.png",
                         nrow=nrow, title=title)
    assert p == tmp_path / "g.png" and png_shape(p) == expect


def test_image_grid_maps_value_ranges_to_grey_levels(tmp_path):
    # [-1, 1] data (any negative value): -1 -> black, 1 -> white, 0 -> mid grey
    imgs = np.stack([np.full((4, 4), v) for v in (-1.0, 0.0, 1.0)])
    img = matplotlib.image.imread(plots.image_grid(imgs, tmp_path / "s.png", nrow=3, scale=1,
                                                   padding=1))
    assert img.shape[:2] == (6, 16)
    centres = [img[2, 1 + k * 5 + 2, 0] for k in range(3)]
    np.testing.assert_allclose(centres, [0.0, 0.5, 1.0], atol=1 / 255 + 1e-6)
    grid = plots.tile(np.full((1, 2, 2), 255, dtype=np.uint8), padding=0)  # 0..255 pixels
    np.testing.assert_array_equal(grid, np.ones((2, 2, 1)))
    grid = plots.tile(np.full((1, 2, 2), 0.25), padding=0)  # [0, 1] kept
    np.testing.assert_array_equal(grid, np.full((2, 2, 1), 0.25))


def test_image_grid_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"\(n, C, H, W\).*\(2, 2, 4, 4\)"):
        plots.image_grid(np.zeros((2, 2, 4, 4)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="NaN"):
        plots.image_grid(np.full((1, 4, 4), np.nan), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_scatter2d_sizes_and_inputs(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((100, 2)), rng.standard_normal((50, 2)) + 3
    assert png_shape(plots.scatter2d(a, tmp_path / "a.png")) == (500, 500)
    assert png_shape(plots.scatter2d([a, b], tmp_path / "b.png", size=(4, 3))) == (300, 400)
    X, Y = np.meshgrid(np.linspace(-2, 2, 20), np.linspace(-2, 2, 20))
    p = plots.scatter2d({"data": a, "model": b}, tmp_path / "c.png", title="t", lim=(-4, 6),
                        contour=(X, Y, X * Y), contour_label="critic", size=(6, 5))
    assert png_shape(p) == (500, 600)
    # non-finite samples (a diverged generator) are drawn without breaking the axes
    assert png_shape(plots.scatter2d(np.array([[0, 0], [np.inf, 1.0]]), tmp_path / "d.png"))
    with pytest.raises(ValueError, match=r"'model'.*\(5, 3\)"):
        plots.scatter2d({"data": a, "model": np.zeros((5, 3))}, tmp_path / "e.png")


def _write_metrics(path, lines, torn=None):
    text = "".join(json.dumps(r) + "\n" for r in lines)
    path.write_text(text + (torn or ""))
    return path


def test_metric_curves_one_subplot_per_term(tmp_path):
    lines = [{"kind": "train", "step": s, "time": 0.1 * s, "loss": 1 / s, "kl": 0.1 * s}
             for s in range(1, 30)]
    lines.append({"kind": "eval", "step": 29, "loss": 0.3, "elbo": -90.0, "ok": True})
    m = _write_metrics(tmp_path / "metrics.jsonl", lines, torn='{"kind": "train", "st')
    assert png_shape(plots.metric_curves(m, tmp_path / "c.png")) == (300, 1200)  # loss kl elbo
    assert png_shape(plots.metric_curves(m, tmp_path / "k.png", keys=["kl"])) == (300, 400)
    assert png_shape(plots.metric_curves(m, tmp_path / "w.png", ncols=2)) == (600, 800)
    assert [r["step"] for r in plots.read_metrics(m)] == list(range(1, 30)) + [29]


def test_metric_curves_of_an_empty_or_missing_file(tmp_path):
    m = tmp_path / "metrics.jsonl"
    m.write_text("")
    assert png_shape(plots.metric_curves(m, tmp_path / "e.png")) == (300, 400)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        plots.metric_curves(tmp_path / "nope.jsonl", tmp_path / "n.png")
    bad = _write_metrics(tmp_path / "bad.jsonl", [{"step": 1}])
    bad.write_text("garbage\n" + bad.read_text())
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        plots.read_metrics(bad)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_png_mode_follows_the_umask(tmp_path, umask):
    import os
    old = os.umask(umask)
    try:
        p = plots.image_grid(np.zeros((1, 4, 4)), tmp_path / "g.png")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [q.name for q in tmp_path.iterdir()] == ["g.png"]  # no temporary file left


def _gan_records():
    recs = []
    for s in range(1, 11):
        recs.append({"kind": "train", "step": s, "w1_estimate": 1.0 / s, "loss_c": -1.0 / s})
        if s % 5 == 0:
            recs.append({"kind": "eval", "step": s, "w1": 1.1 / s, "critic_w1": 0.9 / s,
                         "modes": 8.0})
    return recs


def test_curves_overlay_the_critic_estimate_with_the_exact_w1_and_label_axes():
    import matplotlib.pyplot as plt
    fig = plots.curves_figure(_gan_records())
    try:
        axes = [a for a in fig.axes if a.get_title()]
        assert [a.get_title() for a in axes] == [plots.OVERLAYS[("w1", "critic_w1", "w1_estimate")],
                                                 "loss_c", "modes"]
        w1 = axes[0]
        labels = [t.get_text() for t in w1.get_legend().get_texts()]
        assert labels == ["exact (eval)", "critic, eval samples (eval)",
                          "critic, training batches (train)"]
        assert all(a.get_xlabel() == "step" and a.get_ylabel() for a in axes)
        modes = axes[2].get_yticks()
        lo, hi = axes[2].get_ylim()
        shown = [t for t in modes if lo <= t <= hi]
        assert lo < 0 < 8 < hi and all(float(t).is_integer() for t in shown)
    finally:
        plt.close(fig)


def test_curves_put_a_much_smaller_estimate_on_its_own_axis():
    import matplotlib.pyplot as plt
    recs = [{"kind": "eval", "step": s, "w1": 0.3, "critic_w1": 1e-4 * s} for s in (1, 2)]
    fig = plots.curves_figure(recs)
    try:
        assert len(fig.axes) == 2 and "right axis" in fig.axes[1].get_ylabel()
    finally:
        plt.close(fig)


def test_curves_label_iwae_points_with_their_k(tmp_path):
    import matplotlib.pyplot as plt
    recs = [{"kind": "eval", "step": 100, "iwae": -99.0, "iwae_k": 100},
            {"kind": "eval", "step": 200, "iwae": -98.0, "iwae_k": 100},
            {"kind": "eval", "step": 200, "iwae": -97.5, "iwae_k": 1000}]
    fig = plots.curves_figure(recs)
    try:
        (ax,) = fig.axes
        assert ax.get_title() == "iwae"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["eval, k=100",
                                                                       "eval, k=1000"]
    finally:
        plt.close(fig)
    fig = plots.curves_figure(recs[:2])
    try:
        assert fig.axes[0].get_title() == "iwae (k=100)"
    finally:
        plt.close(fig)
