"""The VAE's figures (host-side NumPy and matplotlib, through :mod:`scratchgen.plots`).

``decode(z) -> images`` arguments are host functions (n, z_dim) -> (n, C, H, W) in [0, 1];
``VAETask.plots`` builds them from the model.
"""
from statistics import NormalDist

import numpy as np

from scratchgen import plots


def pca(x, k=2):
    """Principal axes of the rows of ``x`` by SVD: ``(mean (D,), axes (k, D), sd (k,))``; the
    projections are ``(x - mean) @ axes.T`` with standard deviations ``sd``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"pca needs an (n >= 2, D) array, got shape {x.shape}")
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    k = min(k, vt.shape[0])
    return mean, vt[:k], s[:k] / np.sqrt(len(x) - 1)


def reconstructions(inputs, recons, path, per_row=10,
                    title="reconstructions (inputs above outputs)"):
    """Pairs of rows: ``per_row`` inputs, then their reconstructions underneath."""
    x, r = np.asarray(inputs), np.asarray(recons)
    if x.shape != r.shape:
        raise ValueError(f"inputs {x.shape} and reconstructions {r.shape} differ in shape")
    n = (len(x) // per_row) * per_row or len(x)
    per_row = min(per_row, n)
    rows = []
    for i in range(0, n, per_row):
        rows += [x[i:i + per_row], r[i:i + per_row]]
    return plots.image_grid(np.concatenate(rows), path, nrow=per_row, title=title)


def latent_scatter(codes, labels, path, title=None):
    """Held-out encodings E_q[z|x], coloured by label: the two coordinates themselves when
    z_dim = 2, else the first two principal components."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.shape[1] == 2:
        pts, what = codes, "z"
    else:
        mean, axes, _ = pca(codes, 2)
        pts, what = (codes - mean) @ axes.T, f"PCA of {codes.shape[1]}-d z"
    labels = np.zeros(len(pts), int) if labels is None else np.asarray(labels)
    sets = {str(c): pts[labels == c] for c in np.unique(labels)}
    return plots.scatter2d(sets, path, title=title or f"latent space ({what}, held-out means)",
                           s=4, alpha=0.6, size=(6, 6))


def manifold(decode, z_dim, path, n=15, codes=None):
    """Decoded grid over a latent plane (Kingma & Welling's figure): z_dim = 2: the points
    Phi^-1(u) for u on an n x n grid in (0, 1)^2 (equal prior mass per cell). z_dim > 2: the
    same grid, scaled by the spread, along the first two principal axes of ``codes`` (held-out
    means) around their mean; without ``codes``, along z_0 and z_1 with the rest at 0."""
    u = NormalDist().inv_cdf
    g = np.array([u(p) for p in np.linspace(0.05, 0.95, n)])
    a, b = np.meshgrid(g, g[::-1])
    plane = np.stack([a.ravel(), b.ravel()], 1)                          # (n*n, 2)
    if z_dim == 2:
        z, title = plane, "decoded latent plane (Phi^-1 grid)"
    elif codes is None:
        z = np.concatenate([plane, np.zeros((len(plane), z_dim - 2))], 1)
        title = f"decoded over (z_0, z_1), the other {z_dim - 2} at 0"
    else:
        mean, axes, sd = pca(codes, 2)
        z = mean + (plane * sd) @ axes
        title = "decoded over the first 2 PCA directions of z (around the mean)"
    return plots.image_grid(decode(z), path, nrow=n, title=title)


def traversals(decode, z0, dims, path, span=3.0, steps=11, what="z0"):
    """One row per latent dimension in ``dims``: z0 with that coordinate set to
    ``linspace(-span, span, steps)``, the others fixed (``what`` names z0 in the title)."""
    z0 = np.asarray(z0, dtype=np.float64)
    vals = np.linspace(-span, span, steps)
    z = np.repeat(z0[None], len(dims) * steps, 0)
    for r, d in enumerate(dims):
        z[r * steps:(r + 1) * steps, d] = vals
    return plots.image_grid(decode(z), path, nrow=steps,
                            title=f"z_{', z_'.join(map(str, dims))} (rows) over "
                                  f"[-{span:g}, {span:g}] around {what}")
