"""Time the five standard workloads W1-W5 in scratchgen and, when importable, PyTorch.

    python benchmarks/workloads.py [--only W1,W3] [--steps 100] [--warmup 20] [--block 10]
                                   [--json PATH] [--check-flops] [--check-losses] [--batch B]
                                   [--threads N] [--under-load] [--breakdown | --profile]

The workloads are defined in ``benchmarks/README.md`` (a copy of the shared WORKLOADS.md);
each is written once (``w1`` ... ``w5``), in PyTorch's names, and built under each framework
from a ``Framework``: the module namespaces (``sg``/``torch``, ``nn``, ``F``, ``optim``) plus
the few things spelled differently (tensors from host data, placing a module on the device,
noise draws, synchronisation). Both frameworks start from the same weights (PyTorch's are
copied from scratchgen's) and see the same data.

Timing: ``--warmup`` steps each, then ``--steps`` timed steps each, run in alternating blocks
of ``--block`` steps (scratchgen, torch, [numpy,] then the reverse order), so that drift in the
machine's speed hits every framework alike while each block still runs with its own thread
pools warm (OpenBLAS, numba and PyTorch's OpenMP workers spin for a while after a call, and
stepping the frameworks in lockstep would time the other one's spinning). Each step is timed
with ``time.perf_counter``; on CUDA (``SCRATCHGEN_BACKEND=cuda``) both frameworks run on the
GPU and every step ends with a device synchronisation. Reported: the median, float32.

``--check-flops`` counts what PyTorch dispatches for one step (``FlopCounterMode``) beside the
counts below; ``--check-losses`` runs three steps of both frameworks from the same weights and
the same noise and prints the losses side by side (the workloads agree to float32 rounding).
``--breakdown`` splits a scratchgen step by primitive, kernel, optimiser and the remainder
(engine and Python), and PyTorch's by aten op; ``--profile`` runs cProfile. ``--threads N`` sets
PyTorch's, OpenBLAS's and OpenMP's thread counts (default: all cores); the ``others`` column
is how many cores other processes kept busy meanwhile (trust runs where it is near 0).
``--under-load`` times each workload twice, quiet and then beside a CPU-bound process that the
script starts (a user training two things at once), and prints each framework's growth.
The header names the BLAS kernel OpenBLAS runs (threadpoolctl), which ``OPENBLAS_CORETYPE``
can change.

scratchgen itself never imports torch; this script does, when it can.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time


def _early_threads(argv):
    """The value of --threads, which must reach OpenBLAS/OpenMP before NumPy loads them."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return None


if __name__ == "__main__" and _early_threads(sys.argv[1:]):
    for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_v] = _early_threads(sys.argv[1:])

import numpy as np  # noqa: E402

import scratchgen as sg  # noqa: E402
import scratchgen.functional as F  # noqa: E402
from scratchgen import nn, optim  # noqa: E402

if os.environ.get("_WORKLOADS_MEMORY_CHILD") == "scratchgen":
    torch = None  # a memory child times scratchgen alone, without torch's libraries resident
else:
    try:
        import torch
    except ImportError:  # scratchgen alone
        torch = None

B = sg.backend
TARGETS = {"W1": 0.8, "W2": 0.7, "W3": 0.8, "W4": 0.65}  # scratchgen/PyTorch-CPU, cpu backend (issue 30)


# ---------------------------------------------------------------- FLOP counts
# flops_per_step = 2 x the MACs of the matmuls/convs a step needs, forward and backward:
# per layer of forward cost M: forward M, weight grad M if the weight is trained in that pass,
# input grad M if the input requires grad. Bias, activations, losses, RNG, optimiser: 0.

def lin(b, i, o):
    """MACs of Linear(i, o) on a batch of b."""
    return b * i * o


def conv(b, cin, cout, hout, wout, k):
    """MACs of Conv2d: every output element is a dot product of length cin*k*k."""
    return b * cout * hout * wout * cin * k * k


def conv_t(b, cin, cout, hin, win, k):
    """MACs of ConvTranspose2d: the adjoint of the conv from its output back to its input."""
    return b * cin * hin * win * cout * k * k


def pass_macs(layers):
    """MACs of forward + backward through a trained stack fed with data: forward, weight grad
    of every layer, input grad of every layer but the first."""
    return 3 * sum(layers) - layers[0]


def w1_flops(b=128):
    enc = [lin(b, 784, 400), lin(b, 400, 40)]
    dec = [lin(b, 20, 400), lin(b, 400, 784)]
    # one pass through enc+dec; x (data) feeds the first layer, z needs its input grad
    return 2 * pass_macs(enc + dec)


def _dcgan_layers(b):
    g = [lin(b, 64, 6272), conv_t(b, 128, 64, 7, 7, 4), conv_t(b, 64, 1, 14, 14, 4)]
    d = [conv(b, 1, 64, 14, 14, 4), conv(b, 64, 128, 7, 7, 4), lin(b, 6272, 1)]
    return g, d


def w2_flops(b=64):
    g, d = _dcgan_layers(b)
    G, D = sum(g), sum(d)
    macs = G                                   # fake = G(z), once
    macs += 2 * pass_macs(d)                   # D(real), D(fake.detach()): D trained, input data
    macs += D + D                              # G update: D(fake) fwd + input grads, D frozen
    macs += G + (G - g[0])                     # ... then G's weight grads and input grads (not z)
    return 2 * macs


def w3_flops(b=256):
    """FLOPs of one WGAN-GP step (5 critic updates + 1 G update), double backward included.

    With ReLU masks constant, g = dC/dxh is a chain through the weights only:
    u_L = 1, g_{l-1} = u_l W_l, u_{l-1} = g_{l-1} * mask (layer l costs M_l). The backward of
    the penalty through that chain costs, per layer, the weight grad u_l^T dg_{l-1} (M_l) and
    the grad of u_l, dg_{l-1} W_l^T (M_l), which the last layer (u_L = 1, constant) does not
    need: 2 M_C - M_L. Nothing flows back into C(xh)'s forward (masks are constants), so
    PyTorch's zero-filled products through the forward matmuls (~17% more) are not counted.
    """
    g = [lin(b, 2, 512), lin(b, 512, 512), lin(b, 512, 512), lin(b, 512, 2)]
    c = [lin(b, 2, 512), lin(b, 512, 512), lin(b, 512, 512), lin(b, 512, 1)]
    G, C = sum(g), sum(c)
    critic = G                                 # fake = G(z) under no_grad: forward only
    critic += 2 * pass_macs(c)                 # C(fake), C(real): C trained, inputs are data
    critic += C + C                            # C(xh) forward; g: input grads, no weight grads
    critic += 2 * C - c[-1]                    # double backward through g (see above)
    gen = G + C + C                            # G(z), C(.) forward, C's input grads (C frozen)
    gen += G + (G - g[0])                      # G's weight grads, input grads (not z)
    return 2 * (5 * critic + gen)


def w4_flops(b=64):
    return 2 * 3 * conv(b, 64, 128, 14, 14, 3)  # forward, grad of x, grad of w


def w5_flops(n=1024):
    return 2 * n * n * n


# ---------------------------------------------------------------- shared host data

def make_data(key, batch, seed=0):
    """The fixed inputs of a workload, as float32 NumPy arrays (same for every framework)."""
    r = np.random.default_rng(seed)
    f32 = np.float32
    if key == "W1":
        return {"x": r.random((batch, 784), dtype=f32)}
    if key == "W2":
        return {"real": (2 * r.random((batch, 1, 28, 28), dtype=f32) - 1)}
    if key == "W3":
        return {"real": r.standard_normal((batch, 2), dtype=f32)}
    if key == "W4":
        return {"x": r.standard_normal((batch, 64, 14, 14), dtype=f32),
                "gy": r.standard_normal((batch, 128, 14, 14), dtype=f32)}
    if key == "W5":
        return {"a": r.standard_normal((1024, 1024), dtype=f32),
                "b": r.standard_normal((1024, 1024), dtype=f32)}
    raise KeyError(key)


def make_noise(key, batch, rng):
    """One step's random draws (for --check-losses, where both frameworks must see the same)."""
    f32 = np.float32
    if key == "W1":
        return {"eps": rng.standard_normal((batch, 20), dtype=f32)}
    if key == "W2":
        return {"z": rng.standard_normal((batch, 64), dtype=f32)}
    if key == "W3":
        return {"zc": rng.standard_normal((5, batch, 2), dtype=f32),
                "t": rng.random((5, batch, 1), dtype=f32),
                "zg": rng.standard_normal((batch, 2), dtype=f32)}
    return None


# ---------------------------------------------------------------- the frameworks

_host_rng = np.random.default_rng(1)


class Framework:
    """A framework as the workloads see it: PyTorch's names (``lib``, ``nn``, ``F``, ``optim``)
    and the four things that differ, adapted here so each workload is written once: making a
    tensor from host data, placing a module, drawing N(0, 1) / U(0, 1) noise, synchronising."""

    def __init__(self, name, lib, nn, F, optim, tensor, place, randn, rand, sync):
        self.name, self.lib, self.nn, self.F, self.optim = name, lib, nn, F, optim
        self.tensor, self.place, self._randn, self._rand, self.sync = (tensor, place, randn,
                                                                       rand, sync)

    def normal(self, noise, name, *shape, i=None):
        """N(0, 1) draws of ``shape``, or ``noise[name]`` (``[i]``) when the caller fixed them."""
        return self._randn(*shape) if noise is None else self._given(noise, name, i)

    def uniform(self, noise, name, *shape, i=None):
        """U(0, 1) draws of ``shape``, or ``noise[name]`` (``[i]``) when the caller fixed them."""
        return self._rand(*shape) if noise is None else self._given(noise, name, i)

    def _given(self, noise, name, i):
        return self.tensor(np.ascontiguousarray(noise[name] if i is None else noise[name][i]))


def _sg_randn(*shape):  # float32 straight from the generator (sg.randn draws float64)
    if B.on_gpu:
        return sg.tensor(B.xp.random.standard_normal(shape, dtype=B.xp.float32))
    return sg.tensor(_host_rng.standard_normal(shape, dtype=np.float32))


def _sg_rand(*shape):
    if B.on_gpu:
        return sg.tensor(B.xp.random.random_sample(shape, dtype=B.xp.float32))
    return sg.tensor(_host_rng.random(shape, dtype=np.float32))


SCRATCHGEN = Framework(
    "scratchgen", sg, nn, F, optim,
    tensor=lambda a, requires_grad=False: sg.tensor(B.asarray(a), requires_grad=requires_grad),
    place=lambda m: m, randn=_sg_randn, rand=_sg_rand, sync=lambda: B.synchronize())


def torch_framework(dev):
    """PyTorch on ``dev`` (its CPU, or CUDA when scratchgen runs on the GPU)."""
    def tensor(a, requires_grad=False):
        return torch.from_numpy(a).to(dev).requires_grad_(requires_grad)

    return Framework(
        "torch", torch, torch.nn, torch.nn.functional, torch.optim, tensor=tensor,
        place=lambda m: m.to(dev), randn=lambda *s: torch.randn(*s, device=dev),
        rand=lambda *s: torch.rand(*s, device=dev),
        sync=torch.cuda.synchronize if dev.type == "cuda" else (lambda: None))


def _freeze(module, flag):
    for p in module.parameters():
        p.requires_grad_(not flag)


# ---------------------------------------------------------------- the workloads, written once
# Each builds its modules and data in framework ``fw`` and returns (step, modules): step(noise)
# runs one training step (with ``noise`` from make_noise, or fresh draws when None) and returns
# its losses or gradients; modules are what copy_weights aligns between frameworks.

def w1(fw, d, batch):
    nn, F = fw.nn, fw.F
    x = fw.tensor(d["x"])
    enc = fw.place(nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 40)))
    dec = fw.place(nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784)))
    opt = fw.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)

    def step(noise=None):
        eps = fw.normal(noise, "eps", batch, 20)
        opt.zero_grad()
        h = enc(x)
        mu, logvar = h[:, :20], h[:, 20:]
        z = mu + (0.5 * logvar).exp() * eps
        logits = dec(z)
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum()
        loss = (bce + kl) / batch
        loss.backward()
        opt.step()
        return [loss]

    return step, [enc, dec]


def w2(fw, d, batch):
    nn = fw.nn
    real = fw.tensor(d["real"])
    ones = fw.tensor(np.ones((batch, 1), np.float32))
    zeros = fw.tensor(np.zeros((batch, 1), np.float32))
    g_fc = fw.place(nn.Linear(64, 6272))
    g_conv = fw.place(nn.Sequential(nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(),
                                    nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh()))
    D = fw.place(nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
                               nn.Conv2d(64, 128, 4, 2, 1), nn.LeakyReLU(0.2),
                               nn.Flatten(), nn.Linear(6272, 1)))
    g_params = list(g_fc.parameters()) + list(g_conv.parameters())
    opt_g = fw.optim.Adam(g_params, lr=2e-4, betas=(0.5, 0.999))
    opt_d = fw.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = fw.F.binary_cross_entropy_with_logits

    def G(z):
        return g_conv(g_fc(z).relu().view(-1, 128, 7, 7))

    def step(noise=None):
        z = fw.normal(noise, "z", batch, 64)
        fake = G(z)
        opt_d.zero_grad()
        loss_d = bce(D(real), ones) + bce(D(fake.detach()), zeros)
        loss_d.backward()
        opt_d.step()
        _freeze(D, True)
        opt_g.zero_grad()
        loss_g = bce(D(fake), ones)
        loss_g.backward()
        opt_g.step()
        _freeze(D, False)
        return [loss_d, loss_g]

    return step, [g_fc, g_conv, D]


def _mlp(nn, n_out):
    return nn.Sequential(nn.Linear(2, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, n_out))


def w3(fw, d, batch):
    real = fw.tensor(d["real"])
    G, C = fw.place(_mlp(fw.nn, 2)), fw.place(_mlp(fw.nn, 1))
    opt_g = fw.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_c = fw.optim.Adam(C.parameters(), lr=1e-4, betas=(0.5, 0.9))

    def step(noise=None):
        losses = []
        for i in range(5):
            with fw.lib.no_grad():
                fake = G(fw.normal(noise, "zc", batch, 2, i=i))
                t = fw.uniform(noise, "t", batch, 1, i=i)
                xh = t * real + (1 - t) * fake
            xh.requires_grad_(True)
            (g,) = fw.lib.autograd.grad(C(xh).sum(), xh, create_graph=True)
            gp = ((g * g).sum(dim=1).sqrt() - 1) ** 2
            loss_c = C(fake).mean() - C(real).mean() + 0.1 * gp.mean()
            opt_c.zero_grad()
            loss_c.backward()
            opt_c.step()
            losses.append(loss_c)
        z = fw.normal(noise, "zg", batch, 2)
        _freeze(C, True)
        loss_g = -C(G(z)).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        _freeze(C, False)
        return losses + [loss_g]

    return step, [G, C]


def w4(fw, d, batch):
    layer = fw.place(fw.nn.Conv2d(64, 128, 3, 1, 1))
    x = fw.tensor(d["x"], requires_grad=True)
    gy = fw.tensor(d["gy"])

    def step(noise=None):
        x.grad = layer.weight.grad = layer.bias.grad = None
        y = layer(x)
        y.backward(gy)
        return [x.grad, layer.weight.grad]

    return step, [layer]


def w5(fw, d, batch):
    a, b = fw.tensor(d["a"]), fw.tensor(d["b"])
    return (lambda noise=None: [fw.lib.matmul(a, b)]), []


BUILD = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5}


def both(key, data, batch, dev):
    """The workload in scratchgen and, when importable, PyTorch from scratchgen's weights:
    ((scratchgen step, its modules), torch step or None)."""
    s_step, s_mods = BUILD[key](SCRATCHGEN, data, batch)
    if torch is None:
        return (s_step, s_mods), None
    t_step, t_mods = BUILD[key](torch_framework(dev), data, batch)
    copy_weights(s_mods, t_mods)
    return (s_step, s_mods), t_step

def copy_weights(sg_modules, torch_modules):
    """Give PyTorch scratchgen's initial weights (same layouts: Linear (out, in), conv
    (out, in, kh, kw), conv-transpose (in, out, kh, kw))."""
    for sm, tm in zip(sg_modules, torch_modules):
        sp, tp = list(sm.parameters()), list(tm.parameters())
        if [tuple(p.shape) for p in sp] != [tuple(p.shape) for p in tp]:
            raise RuntimeError(f"parameter shapes differ: scratchgen {[p.shape for p in sp]} vs "
                               f"torch {[tuple(p.shape) for p in tp]}")
        with torch.no_grad():
            for a, b in zip(sp, tp):
                b.copy_(torch.from_numpy(B.to_numpy(a.array)))


# ---------------------------------------------------------------- workloads, timing

WORKLOADS = {
    # key: (name, flops(batch), default batch, batch overridable)
    "W1": ("vae-mlp", w1_flops, 128, False),
    "W2": ("dcgan-mnist", w2_flops, 64, True),
    "W3": ("wgan-gp-toy", w3_flops, 256, False),
    "W4": ("conv-fwd-bwd", w4_flops, 64, True),
    "W5": ("matmul", lambda b: w5_flops(), 1024, False),
}



def batch_of(key, batch_override):
    """The workload's batch: its default, or ``--batch`` where the workload allows it."""
    _, _, batch, overridable = WORKLOADS[key]
    return batch_override if batch_override and overridable else batch

def _cpu_snapshot():
    """(wall s, busy CPU s of the whole machine, CPU s of this process), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    t = os.times()
    return time.perf_counter(), (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK"), t.user + t.system


def blas_kernel():
    """OpenBLAS's kernel architecture for NumPy's BLAS (e.g. SkylakeX, Haswell), per
    threadpoolctl; OPENBLAS_CORETYPE in the environment overrides its own choice."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "?"
    return ",".join(sorted({str(i.get("architecture")) for i in threadpool_info()
                            if i.get("internal_api") == "openblas"})) or "?"


def _others_load(a, b):
    """Cores kept busy by other processes between two snapshots (0 on a machine at rest)."""
    if a is None or b is None:
        return None
    return max(0.0, ((b[1] - a[1]) - (b[2] - a[2])) / (b[0] - a[0]))


def _timed(fn, sync):
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def time_interleaved(fns, syncs, steps, warmup, block):
    """Median-ready step times (s) per framework, run in alternating blocks."""
    names = list(fns)
    for n in names:
        for _ in range(warmup):
            _timed(fns[n], syncs[n])
    times = {n: [] for n in names}
    done, flip = 0, False
    while done < steps:
        k = min(block, steps - done)
        for n in (names[::-1] if flip else names):
            times[n].extend(_timed(fns[n], syncs[n]) for _ in range(k))
        done += k
        flip = not flip
    return times


def summarize(ts):
    ms = sorted(t * 1e3 for t in ts)
    q = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
    return {"median_ms": statistics.median(ms), "p25_ms": q[0], "p75_ms": q[2],
            "min_ms": ms[0], "max_ms": ms[-1], "n": len(ms),
            "samples_ms": [round(t * 1e3, 4) for t in ts]}  # in the order run


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker, whose backward hooks make
    torch.autograd.grad on a leaf fail (W3's gradient penalty); we only need the totals."""
    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def torch_flops(step):
    """FLOPs that PyTorch dispatches for one step (total, and per aten op)."""
    from torch.utils.flop_counter import FlopCounterMode
    fc = FlopCounterMode(display=False)
    fc.mod_tracker = _GlobalOnly()
    with fc:
        step()
    per_op = {str(op): int(c) for op, c in fc.get_flop_counts().get("Global", {}).items()}
    return int(fc.get_total_flops()), per_op


def _to_float(t):
    """A loss, or the root-sum-square of a gradient."""
    a = t.detach().cpu().numpy() if torch is not None and isinstance(t, torch.Tensor) else t.numpy()
    return float(a) if a.size == 1 else float(np.sqrt(np.sum(np.square(a, dtype=np.float64))))


def check_losses(key, batch, data, dev, n_steps=3):
    """Losses of n_steps of each framework from the same weights and noise."""
    (s_step, _), t_step = both(key, data, batch, dev)
    rng = np.random.default_rng(123)
    rows = []
    for i in range(n_steps):
        noise = make_noise(key, batch, rng)
        a = [_to_float(v) for v in s_step(noise)]
        b = [_to_float(v) for v in t_step(noise)]
        rows.append((a, b))
    return rows


class busy_process:
    """Another CPU-bound process on the machine (one core's worth: a Python busy loop), as
    when a user trains two things at once; stopped on exit."""

    def __enter__(self):
        import subprocess
        self.p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # let the scheduler see it
        return self

    def __exit__(self, *exc):
        self.p.kill()
        self.p.wait()
        return False


def run(keys, steps, warmup, block, batch_override, check_flops, do_check_losses,
        under_load=False):
    dev = None
    if torch is not None:
        dev = torch.device("cuda" if B.on_gpu else "cpu")
        if B.on_gpu and not torch.cuda.is_available():
            raise SystemExit("SCRATCHGEN_BACKEND=cuda but this PyTorch has no CUDA; "
                             "install a CUDA build of PyTorch or run without torch")
    results = {}
    for key in keys:
        name, flops_fn = WORKLOADS[key][:2]
        batch = batch_of(key, batch_override)
        flops = flops_fn(batch)
        data = make_data(key, batch)
        res = {"name": name, "batch": batch, "flops_per_step": flops}
        if do_check_losses and torch is not None and key != "W5":
            res["check_losses"] = check_losses(key, batch, data, dev)
            for i, (a, b) in enumerate(res["check_losses"]):
                print(f"  {key} step {i}: scratchgen {['%.6g' % v for v in a]}  "
                      f"torch {['%.6g' % v for v in b]}", flush=True)
        (s_step, _), t_step = both(key, data, batch, dev)
        fns, syncs = {"scratchgen": s_step}, {"scratchgen": SCRATCHGEN.sync}
        if t_step is not None:
            fns["torch"], syncs["torch"] = t_step, torch_framework(dev).sync
            if check_flops:
                tf, per_op = torch_flops(t_step)
                res["torch_flops_counted"], res["torch_flops_per_op"] = tf, per_op
        if key == "W5":
            a, b = data["a"], data["b"]
            fns["numpy"], syncs["numpy"] = (lambda: np.matmul(a, b)), (lambda: None)
        snap = _cpu_snapshot()
        times = time_interleaved(fns, syncs, steps, warmup, block)
        res["others_load"] = _others_load(snap, _cpu_snapshot())
        res["times"] = {n: summarize(ts) for n, ts in times.items()}
        if under_load:
            with busy_process():
                snap = _cpu_snapshot()
                times = time_interleaved(fns, syncs, steps, max(1, warmup // 4), block)
                res["others_load_loaded"] = _others_load(snap, _cpu_snapshot())
            res["times_loaded"] = {n: summarize(ts) for n, ts in times.items()}
        results[key] = res
        print(f"  {key} done", file=sys.stderr, flush=True)
    return results


# ---------------------------------------------------------------- memory and the machine's peak

def _proc_status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def memory_child(key, framework, steps, batch_override, warmup=2):
    """Run in a child process: build ``key`` in one framework and run ``warmup`` steps, then
    reset the peak RSS (``/proc/self/clear_refs``) and run ``steps`` more; print JSON with MB:
    ``peak_mb`` the process's peak resident memory over its whole life (imports, model,
    optimiser state, every step), ``resident_mb`` what was resident after warm-up, ``step_mb``
    the peak of the later steps above it (activations, gradients, temporaries)."""
    batch = batch_of(key, batch_override)
    fw = SCRATCHGEN if framework == "scratchgen" else torch_framework(torch.device("cpu"))
    step, _ = BUILD[key](fw, make_data(key, batch), batch)
    for _ in range(warmup):
        step()
    fw.sync()
    early = _proc_status_kb("VmHWM")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    base = _proc_status_kb("VmRSS")
    for _ in range(steps):
        step()
    fw.sync()
    late = _proc_status_kb("VmHWM")
    print(json.dumps({"peak_mb": max(early, late) / 1024, "resident_mb": base / 1024,
                      "step_mb": (late - base) / 1024}))


def measure_memory(keys, steps, batch_override):
    """{key: {framework: child's JSON}}: each framework in its own process (scratchgen's
    without torch imported; PyTorch's imports scratchgen's Python modules for the shared
    workload code, ~10 MB of its ``peak_mb``)."""
    import subprocess
    out = {}
    fws = ["scratchgen"] + (["torch"] if torch is not None else [])
    for key in keys:
        out[key] = {}
        for fw in fws:
            env = dict(os.environ, _WORKLOADS_MEMORY_CHILD=fw)
            cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", fw,
                   "--only", key, "--steps", str(steps)]
            if batch_override:
                cmd += ["--batch", str(batch_override)]
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            out[key][fw] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def memory_table(mem):
    head = (f"{'workload':<17}{'framework':>11}{'peak MB':>9}{'ratio':>7}{'resident MB':>13}"
            f"{'step MB':>9}")
    lines = [head, "-" * len(head)]
    for key, per in mem.items():
        label = f"{key} {WORKLOADS[key][0]}"
        for fw, m in per.items():
            ratio = (f"{m['peak_mb'] / per['torch']['peak_mb']:>7.2f}"
                     if fw == "scratchgen" and "torch" in per else f"{'':>7}")
            lines.append(f"{label:<17}{fw:>11}{m['peak_mb']:>9.1f}{ratio}{m['resident_mb']:>13.1f}"
                         f"{m['step_mb']:>9.1f}")
            label = ""
    lines.append("peak = the process's peak resident memory (imports, model, every step; each "
                 "framework in its own process, scratchgen's without torch); resident = after "
                 "2 warm-up steps; step = the later steps' peak above it")
    return "\n".join(lines)


def gemm_peak(threads, n=2048, repeat=5):
    """The machine's attainable float32 rate, GFLOP/s: the best of ``repeat`` n^3 products by
    NumPy's BLAS and (when importable) PyTorch's, at ``threads`` threads; and the nominal peak
    from /proc/cpuinfo (cores x MHz x FLOP per cycle: 2 FMA units of the widest vector the
    flags list, which is an assumption about the core; None off Linux)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    best = 0.0
    fns = [lambda: np.matmul(a, a)]
    if torch is not None:
        ta = torch.from_numpy(a)
        fns.append(lambda: torch.mm(ta, ta))
    for fn in fns:
        fn()
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    nominal = None
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        mhz = float(info.split("cpu MHz")[1].split(":")[1].split()[0])
        flags = info.split("flags")[1].split(":")[1].split("\n")[0].split()
        lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
        per_cycle = lanes * 2 * (2 if "fma" in flags else 1)  # 2 units; FMA = 2 FLOP
        nominal = threads * mhz / 1e3 * per_cycle
    except (OSError, IndexError, ValueError):
        pass
    return best, nominal


def table(results, targets, peak=None):
    head = (f"{'workload':<17}{'GFLOP/step':>11}{'ref':>7}{'scratchgen ms':>15}{'ref ms':>9}"
            f"{'ratio':>8}{'target':>8}{'sg GFLOP/s':>12}{'ref GFLOP/s':>13}{'others':>8}"
            + (f"{'sg % peak':>11}{'ref % peak':>11}" if peak else ""))
    lines = [head, "-" * len(head)]
    for key, r in results.items():
        t = r["times"]
        s = t["scratchgen"]["median_ms"]
        label = f"{key} {r['name']}" + (f" b{r['batch']}" if r["batch"] != WORKLOADS[key][2]
                                       else "")
        refs = [n for n in ("torch", "numpy") if n in t] or [None]
        ol = r.get("others_load")
        others = "" if ol is None else f"{ol:>8.2f}"
        for ref in refs:
            gf = r["flops_per_step"] / 1e9
            if ref is None:
                lines.append(f"{label:<17}{gf:>11.3f}{'-':>7}{s:>15.2f}{'-':>9}{'-':>8}{'-':>8}"
                             f"{gf / s * 1e3:>12.1f}{'-':>13}{others or '':>8}"
                             + (f"{100 * gf / s * 1e3 / peak:>11.0f}" if peak else ""))
                continue
            m = t[ref]["median_ms"]
            ratio = s / m
            tgt = TARGETS.get(key) if (ref == "torch" and targets) else None
            mark = "-" if tgt is None else f"{tgt:.2f}{'' if ratio <= tgt else '!'}"
            lines.append(f"{label:<17}{gf:>11.3f}{ref:>7}{s:>15.2f}{m:>9.2f}{ratio:>8.2f}"
                         f"{mark:>8}{gf / s * 1e3:>12.1f}{gf / m * 1e3:>13.1f}{others or '':>8}"
                         + (f"{100 * gf / s * 1e3 / peak:>11.0f}{100 * gf / m * 1e3 / peak:>11.0f}"
                            if peak else ""))
            label, others = "", ""
        if "torch_flops_counted" in r:
            tf = r["torch_flops_counted"]
            lines.append(f"{'':<17}flops: ours {r['flops_per_step']:,}  torch FlopCounterMode "
                         f"{tf:,} ({tf / r['flops_per_step']:.3f}x)  "
                         + ", ".join(f"{k}: {v:,}" for k, v in r["torch_flops_per_op"].items()))
    lines.append("ratio = scratchgen / ref (lower is better); '!' marks a missed target; "
                 "others = cores kept busy by other processes meanwhile (compare runs near 0)"
                 + ("; % peak = GFLOP/s / the best n^3 GEMM measured in this run" if peak else ""))
    return "\n".join(lines)


def load_table(results):
    """Quiet vs loaded (one busy process beside) medians per framework: growth = loaded /
    quiet; the target is <= 1.5 (issue 30). On 2 cores one busy process leaves a two-thread
    step 1.5 cores: 1.33x is the floor for work that balances perfectly, 2x for work that
    waits for the slower core."""
    head = (f"{'workload':<17}{'framework':>11}{'quiet ms':>10}{'loaded ms':>11}{'growth':>8}"
            f"{'target':>8}{'others q/l':>12}")
    lines = [head, "-" * len(head)]
    for key, r in results.items():
        label = f"{key} {r['name']}"
        ol = (r.get("others_load"), r.get("others_load_loaded"))
        others = "" if None in ol else f"{ol[0]:>6.2f}/{ol[1]:.2f}"
        for fw, t in r["times"].items():
            q, ld = t["median_ms"], r["times_loaded"][fw]["median_ms"]
            g = ld / q
            lines.append(f"{label:<17}{fw:>11}{q:>10.2f}{ld:>11.2f}{g:>8.2f}"
                         f"{'1.50' + ('' if g <= 1.5 else '!'):>8}{others:>12}")
            label, others = "", ""
    lines.append("growth = loaded / quiet median (lower is better); others = cores kept busy by "
                 "other processes, quiet/loaded (the busy process counts 1)")
    return "\n".join(lines)


def profile(keys, steps, warmup, batch_override, top=30):
    """cProfile ``steps`` scratchgen steps of each workload; print the top functions."""
    import cProfile
    import pstats
    for key in keys:
        name, flops_fn = WORKLOADS[key][:2]
        batch = batch_of(key, batch_override)
        step, _ = BUILD[key](SCRATCHGEN, make_data(key, batch), batch)
        for _ in range(warmup):
            step()
        B.synchronize()
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        for _ in range(steps):
            step()
        B.synchronize()
        prof.disable()
        dt = (time.perf_counter() - t0) / steps * 1e3
        print(f"==== {key} {name}: {steps} steps, {dt:.2f} ms/step under cProfile")
        for order in ("tottime", "cumulative"):
            pstats.Stats(prof).sort_stats(order).print_stats(top)


class _Tally:
    """Exclusive wall time per label of wrapped callables (nested calls are subtracted)."""

    def __init__(self):
        self.ms, self.calls, self._stack, self.in_backward = {}, {}, [], False

    def wrap(self, fn, label):
        def timed(*args, **kwargs):
            lab = label(self) if callable(label) else label
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                child = self._stack.pop()
                self.ms[lab] = self.ms.get(lab, 0.0) + (dt - child) * 1e3
                self.calls[lab] = self.calls.get(lab, 0) + 1
                if self._stack:
                    self._stack[-1] += dt
        return timed


def _instrument(tally):
    """Time every primitive's forward (labelled 'fwd:' or, inside a backward sweep, 'bwd:'),
    the backend's kernels (numba loops and public kernels) and Optimizer.step. Returns undo."""
    import importlib
    import pkgutil
    from scratchgen.autograd import graph
    import scratchgen.ops as ops_pkg
    undo = []

    def patch(obj, attr, label):
        old = getattr(obj, attr)
        setattr(obj, attr, tally.wrap(old, label))
        undo.append(lambda: setattr(obj, attr, old))

    seen = set()
    for info in pkgutil.iter_modules(ops_pkg.__path__):
        mod = importlib.import_module(f"scratchgen.ops.{info.name}")
        for v in vars(mod).values():
            if isinstance(v, graph.Primitive) and id(v) not in seen:
                seen.add(id(v))
                name = v.name
                patch(v, "fwd", lambda t, n=name: ("bwd:" if t.in_backward else "fwd:") + n)
    kmods = [B.kernels] + [m for m in vars(B.kernels).values()
                           if type(m).__name__ == "module" and
                           m.__name__.startswith(B.kernels.__name__)]
    for km in kmods:
        for k, v in list(vars(km).items()):
            if hasattr(v, "py_func") or (k in ("conv2d", "conv2d_input_grad",
                                              "conv2d_weight_grad") and callable(v)):
                patch(km, k, f"kernel:{k}")
    orig_bp = graph._backprop

    def backprop(*a, **kw):
        prev, tally.in_backward = tally.in_backward, True
        try:
            return orig_bp(*a, **kw)
        finally:
            tally.in_backward = prev
    graph._backprop = backprop
    undo.append(lambda: setattr(graph, "_backprop", orig_bp))
    patch(optim.Optimizer, "step", "optimizer step")
    return lambda: [u() for u in reversed(undo)]


def breakdown(keys, steps, warmup, batch_override, top=14):
    """Where a scratchgen step's time goes: primitives' forwards (in the forward pass and in
    backward sweeps), kernels, the optimiser, and the rest (engine and Python overhead);
    then PyTorch's own per-op profile of the same workload."""
    for key in keys:
        name, flops_fn = WORKLOADS[key][:2]
        batch = batch_of(key, batch_override)
        data = make_data(key, batch)
        step, _ = BUILD[key](SCRATCHGEN, data, batch)
        for _ in range(warmup):
            step()
        B.synchronize()
        tally = _Tally()
        undo = _instrument(tally)
        try:
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            B.synchronize()
            total = (time.perf_counter() - t0) / steps * 1e3
        finally:
            undo()
        timed = sum(tally.ms.values()) / steps
        print(f"==== {key} {name} (scratchgen, {B.name}): {total:.2f} ms/step instrumented; "
              f"per step, exclusive:")
        rows = sorted(tally.ms.items(), key=lambda kv: -kv[1])
        for lab, ms in rows[:top]:
            print(f"  {lab:<40}{ms / steps:>9.2f} ms {100 * ms / steps / total:>5.1f}%  "
                  f"{tally.calls[lab] / steps:>6.1f} calls")
        rest = sum(ms for _, ms in rows[top:]) / steps
        print(f"  {'(other timed ops)':<40}{rest:>9.2f} ms {100 * rest / total:>5.1f}%")
        print(f"  {'engine + Python (untimed remainder)':<40}{total - timed:>9.2f} ms "
              f"{100 * (total - timed) / total:>5.1f}%")
        if torch is None:
            continue
        dev = torch.device("cuda" if B.on_gpu else "cpu")
        _, t_step = both(key, data, batch, dev)
        for _ in range(warmup):
            t_step()
        from torch.profiler import profile as tprofile, ProfilerActivity
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                t_step()
        ev = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        tot = sum(e.self_cpu_time_total for e in ev) / steps / 1e3
        print(f"  -- torch: {tot:.2f} ms/step of op self time; top ops per step:")
        for e in ev[:top]:
            ms = e.self_cpu_time_total / steps / 1e3
            print(f"  {e.key:<40}{ms:>9.2f} ms {100 * ms / tot:>5.1f}%  "
                  f"{e.count / steps:>6.1f} calls")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="W1,W2,W3,W4,W5", help="comma-separated workload keys")
    p.add_argument("--steps", type=int, default=100, help="timed steps per framework")
    p.add_argument("--warmup", type=int, default=20, help="warm-up steps per framework")
    p.add_argument("--block", type=int, default=10, help="steps per alternating block")
    p.add_argument("--batch", type=int, default=None, help="batch size override for W2 and W4")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads for PyTorch, OpenBLAS and OpenMP (default: all cores)")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--check-flops", action="store_true",
                   help="count one PyTorch step's FLOPs with torch.utils.flop_counter")
    p.add_argument("--check-losses", action="store_true",
                   help="3 steps of both frameworks from the same weights and noise")
    p.add_argument("--under-load", action="store_true",
                   help="time each workload quiet, then again beside a busy process that this "
                        "script starts (one CPU-bound loop), and report the growth")
    p.add_argument("--profile", action="store_true",
                   help="instead of timing, cProfile --steps scratchgen steps of each workload")
    p.add_argument("--breakdown", action="store_true",
                   help="instead of timing, split --steps scratchgen steps by op, kernel, "
                        "optimiser and engine overhead (and PyTorch's steps by aten op)")
    p.add_argument("--memory", action="store_true",
                   help="also measure each workload's peak resident memory, each framework in "
                        "its own process (--steps steps each)")
    p.add_argument("--memory-child", choices=("scratchgen", "torch"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    keys = [k.strip().upper() for k in a.only.split(",") if k.strip()]
    bad = [k for k in keys if k not in WORKLOADS]
    if bad:
        p.error(f"unknown workload(s) {', '.join(bad)}; choose from {', '.join(WORKLOADS)}")
    if a.steps < 1 or a.warmup < 0 or a.block < 1:
        p.error("--steps and --block must be >= 1 and --warmup >= 0")
    if (a.memory or a.memory_child) and B.on_gpu:
        p.error("--memory measures the host's resident memory: cpu and numpy backends only")
    if torch is not None:
        torch.set_num_threads(a.threads)
    if a.memory_child:
        memory_child(keys[0], a.memory_child, a.steps, a.batch)
        return
    if a.profile:
        profile(keys, a.steps, a.warmup, a.batch)
        return
    if a.breakdown:
        breakdown(keys, a.steps, a.warmup, a.batch)
        return
    if torch is None:
        print("PyTorch is not importable: timing scratchgen alone", file=sys.stderr)
    peak, nominal = (None, None) if B.on_gpu else gemm_peak(a.threads)  # the CPU's peak
    load0 = os.getloadavg()
    results = run(keys, a.steps, a.warmup, a.block, a.batch, a.check_flops, a.check_losses,
                  a.under_load)
    info = {"loadavg_before": load0, "loadavg_after": os.getloadavg(), "backend": B.name,
            "torch": torch.__version__ if torch else None,
            "torch_threads": torch.get_num_threads() if torch else None,
            "numpy": np.__version__, "cpu_count": os.cpu_count(), "threads": a.threads,
            "env": {k: v for k, v in os.environ.items()
                    if k.startswith(("OPENBLAS", "OMP_", "MKL_", "NUMBA", "SCRATCHGEN"))},
            "machine": platform.platform(), "processor": platform.processor(),
            "steps": a.steps, "warmup": a.warmup, "block": a.block,
            "blas_kernel": blas_kernel(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "gemm_peak_gflops": peak, "nominal_peak_gflops": nominal}
    print(f"backend={B.name}  torch={info['torch']}  threads={a.threads}  "
          f"numpy={np.__version__}  {a.steps} steps after {a.warmup} warm-up, median  "
          f"load avg {load0[0]:.2f} -> {info['loadavg_after'][0]:.2f} on {os.cpu_count()} cores"
          + (f"  OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']}"
             if os.environ.get("OPENBLAS_CORETYPE") else "") + f"  BLAS kernel {blas_kernel()}")
    if peak:
        print(f"peak: best {a.threads}-thread float32 GEMM {peak:.0f} GFLOP/s"
              + (f" (nominal {nominal:.0f}: cores x base clock x FLOP/cycle)" if nominal else ""))
    print(table(results, targets=B.name == "cpu", peak=peak))
    if a.under_load:
        print(load_table(results))
    if a.memory:
        mem = measure_memory(keys, a.steps, a.batch)
        info["memory"] = mem
        print(memory_table(mem))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"info": info, "results": results}, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
