"""Which algorithm runs each pass of a ``cpu`` convolution: the geometry, the one route table,
its tuning constants, and the switch that forces a route.

``conv.py`` describes each call by a ``ConvGeometry`` and asks ``route(g, pass_)`` for one of
the three ``PASSES``; the ``Route`` names an algorithm, a sibling module of this one with the
same three functions, called the same way (arrays C-contiguous in one float dtype; results
in that dtype)::

    forward(x, w, g, r)       y  (N, O, Ho, Wo) = x (*) w
    input_grad(gy, w, g, r)   gx (N, C, H, W): the adjoint in x (the transposed convolution)
    weight_grad(x, gy, g, r)  gw (O, C, kh, kw): the adjoint in w

    im2col        columns + one GEMM per chunk of samples; any geometry (the fallback)
    winograd      F(m x m, r x r) on the input's s*s polyphase components, r = ceil(k / s): any
                  square kernel and stride, any m; unrolled transforms for F(2x2, 3x3)
    winograd_f43  F(4x4, 3x3): 3x3 stride 1, tiles channel-last
    winograd_s2   F(2x2, 2x2) or F(4x4, 2x2) on the four phases: 3x3 or 4x4 at stride 2,
                  tiles channel-last

A new algorithm is a module with those three functions, a line in ``_takes`` (what it can
run) and an entry in ``TABLE`` (where it should run). Tests and benchmarks pick a route with
``force``. ``benchmarks/PROFILE.md`` has the measurements behind every constant here.
"""
import importlib
from contextlib import contextmanager
from dataclasses import dataclass

from .parallel import batch_chunks

PASSES = ("forward", "input_grad", "weight_grad")
ALGORITHMS = ("im2col", "winograd", "winograd_f43", "winograd_s2")

# ---------------------------------------------------------------- tuning constants

# The route table: (kernel, stride) -> {output tile m: algorithm for (forward, input_grad,
# weight_grad)}, the Winograd routes that measured faster than im2col + GEMM. Per call the m
# whose GEMMs do the fewest multiply-adds wins (``winograd_tile``); a geometry not listed, a
# non-square one, or one with fewer than WINOGRAD_MIN_CHANNELS input or output channels (the
# transforms would dominate) runs im2col in every pass.
TABLE = {
    (3, 1): {2: ("winograd",) * 3,        # F(2x2, 3x3): outputs of 1-2 pixels a side
             4: ("winograd_f43",) * 3},   # F(4x4, 3x3): larger outputs (W4)
    (4, 2): {2: ("winograd_s2",) * 3,     # F(2x2, 2x2) on the phases
             4: ("winograd_s2",) * 3},    # F(4x4, 2x2) on the phases (W2's D2)
}
WINOGRAD_MIN_CHANNELS = 16

# im2col: up to K = C*kh*kw = SMALL_K the forward and the weight gradient lay columns out per
# sample, (N, K, P), one product per sample (a first layer on a few channels: the joint
# (K, N*P) layout's GEMM is skinny there and needs a transposed copy into y, or of gy).
SMALL_K = 64
# im2col's chunks of samples, about this many GEMM columns (samples * Ho*Wo) each, run on
# both cores with one-thread GEMMs: joint layout (every pass) up to K = SPLIT_MAX_K, beyond
# which the batch is one chunk on one thread (split everywhere by default: one chunk was
# faster on a quiet machine only on OpenBLAS's own threads, which no cpu product uses now,
# their bits changing with the thread count); per-sample layout.
IM2COL_CHUNK_COLS = 1024
SPLIT_MAX_K = 1 << 30
SAMPLE_CHUNK_COLS = 4096
# im2col copies through a per-tap offset table (one flat loop of P per row) instead of row by
# row when the rows are short and strided: stride > 1 and Wo <= this.
TABLE_IM2COL_MAX_WO = 8

# Winograd chunks of samples, in tiles (GEMM columns): the generic module; F(4x4, 3x3) (6
# samples of W4); F(2x2, 2x2) and F(4x4, 2x2) by m (two chunks of 32 samples of W2's D2 for 4).
WINOGRAD_CHUNK_COLS = {"winograd": 512, "winograd_f43": 96, "winograd_s2": {2: 256, 4: 192}}
# Elements of padding between the alpha^2 planes of a tile or product array: with planes a
# power of two apart the transforms' 9-36 streams fall into one L1 set and 4K-alias each
# other. 16 keeps 64-byte alignment.
PLANE_PAD = 16


# ---------------------------------------------------------------- geometry and routes


@dataclass(frozen=True)
class ConvGeometry:
    """One convolution: x (n, c, h, w) (*) w (o, c, kh, kw) -> y (n, o, ho, wo)."""
    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    ho: int
    wo: int
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)  # the cpu kernels run (1, 1) only
    groups: int = 1           # likewise 1 only

    @property
    def k(self):
        """C*kh*kw: im2col's column length, the GEMMs' inner dimension."""
        return self.c * self.kh * self.kw

    @property
    def p(self):
        """Ho*Wo: output positions per sample and channel."""
        return self.ho * self.wo

    @property
    def square(self):
        """Square kernel and stride: what the Winograd algorithms take."""
        return self.kh == self.kw and self.stride[0] == self.stride[1]

    @property
    def pointwise(self):
        """1x1, stride 1, no padding: a plain matrix product, no im2col."""
        return (self.kh, self.kw, self.stride, self.padding) == (1, 1, (1, 1), (0, 0))


@dataclass(frozen=True)
class Route:
    """An algorithm (a module named in ``ALGORITHMS``) with its options for one pass."""
    algorithm: str
    tile: int = 0             # Winograd: outputs per tile side (F(m x m, r x r))
    per_sample: bool = False  # im2col: columns (N, K, P), one product per sample
    chunk_cols: int = 0       # target GEMM columns per chunk of samples; 0: one chunk

    def chunks(self, n, cols_per_sample):
        """The batch 0..n in chunks of about ``chunk_cols`` columns (``parallel.py``)."""
        if not self.chunk_cols:
            return [(0, n)]
        return batch_chunks(n, cols_per_sample, self.chunk_cols)


def winograd_tile(g, tiles):
    """Of ``tiles``, the m whose GEMMs do the fewest multiply-adds on g's output, alpha^2 per
    tile (alpha = m + r - 1, r = ceil(k / s)), the smaller m (more accurate) on a tie: 14x14
    outputs F(4x4, 3x3) 16 tiles x 36 against F(2x2, 3x3) 49 x 16; 2x2 outputs 1 x 36
    against 1 x 16."""
    r = -(-g.kh // g.stride[0])
    return min(tiles, key=lambda m: ((m + r - 1) ** 2 * -(-g.ho // m) * -(-g.wo // m), m))


def _takes(algorithm, g, tile):
    """Whether ``algorithm`` can run g with output tile ``tile``."""
    if g.dilation != (1, 1) or g.groups != 1:
        return False
    if algorithm == "im2col":
        return True
    k, s = g.kh, g.stride[0]
    return g.square and {"winograd": tile >= 1,
                         "winograd_f43": (k, s, tile) == (3, 1, 4),
                         "winograd_s2": s == 2 and 2 < k <= 4 and tile in (2, 4)}[algorithm]


def winograd_algorithm(k, s, m):
    """The most specialised Winograd module for a k x k kernel at stride s with tile m."""
    g = ConvGeometry(1, 1, k, k, 1, k, k, 1, 1, (s, s))
    return next(a for a in ("winograd_f43", "winograd_s2", "winograd") if _takes(a, g, m))


def make_route(g, pass_, algorithm, tile=0, per_sample=None):
    """The Route of ``algorithm`` for one pass of g, its options filled in from the constants
    above (im2col's layout by SMALL_K unless ``per_sample`` says)."""
    if algorithm == "im2col":
        if per_sample is None:
            per_sample = g.k <= SMALL_K
        per_sample = per_sample and pass_ != "input_grad"  # its columns are per sample anyway
        cols = SAMPLE_CHUNK_COLS if per_sample else \
            IM2COL_CHUNK_COLS if g.k <= SPLIT_MAX_K else 0
        return Route("im2col", per_sample=per_sample, chunk_cols=cols)
    cols = WINOGRAD_CHUNK_COLS[algorithm]
    return Route(algorithm, tile, chunk_cols=cols[tile] if isinstance(cols, dict) else cols)


_forced = {}  # pass -> (algorithm, tile, per_sample), set by ``force``


def route(g, pass_):
    """The Route for one pass (``PASSES``) of convolution g: the forced one inside ``force``,
    else the table's."""
    if pass_ in _forced:
        algorithm, tile, per_sample = _forced[pass_]
        if not _takes(algorithm, g, tile):
            raise ValueError(f"forced conv route {algorithm} (tile {tile}) cannot run a "
                             f"{g.kh}x{g.kw} kernel at stride {g.stride}")
        return make_route(g, pass_, algorithm, tile, per_sample)
    if not _takes("im2col", g, 0):
        raise ValueError(f"the cpu conv kernels run dilation (1, 1) and groups 1 only, not "
                         f"{g.dilation} and {g.groups}")
    tiles = TABLE.get((g.kh, g.stride[0]), {}) if g.square else {}
    if tiles and min(g.c, g.o) >= WINOGRAD_MIN_CHANNELS:
        m = winograd_tile(g, tiles)
        return make_route(g, pass_, tiles[m][PASSES.index(pass_)], m)
    return make_route(g, pass_, "im2col")


@contextmanager
def force(algorithm, tile=0, per_sample=None, passes=PASSES):
    """Inside the block, ``passes`` of every cpu convolution run ``algorithm`` (one of
    ``ALGORITHMS``) with output tile ``tile`` (Winograd) and, for im2col, the per-sample
    layout or not (default: by ``SMALL_K``), whatever the table would pick; a geometry the
    algorithm cannot run is a ValueError. For tests and benchmarks: the setting is the
    process's, not the thread's. ::

        with routes.force("im2col"):
            y = kernels.conv2d(x, w, (1, 1), (1, 1))
        with routes.force(routes.winograd_algorithm(4, 2, 4), tile=4):
            ...
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown conv algorithm {algorithm!r}; one of {ALGORITHMS}")
    if algorithm != "im2col" and tile < 1:
        raise ValueError(f"{algorithm} needs an output tile size (tile=2, 4, ...)")
    unknown = set(passes) - set(PASSES)
    if unknown:
        raise ValueError(f"unknown conv passes {sorted(unknown)}; of {PASSES}")
    saved = dict(_forced)
    _forced.update({p: (algorithm, tile, per_sample) for p in passes})
    try:
        yield
    finally:
        _forced.clear()
        _forced.update(saved)


def algorithm(name):
    """The module of algorithm ``name``, imported on first use."""
    return importlib.import_module(f".{name}", __package__)
