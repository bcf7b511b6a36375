"""Time the conv kernels: ``scratchgen.kernels.cpu`` vs the NumPy ``reference`` vs PyTorch.

    python benchmarks/bench_kernels.py [--repeat 20] [--no-reference] [--float64]

Median wall time (ms) of ``--repeat`` runs after warm-up, ``time.perf_counter``. PyTorch
(``torch.nn.functional.conv2d`` / ``conv_transpose2d`` / ``torch.nn.grad.conv2d_weight``,
2 threads) is timed when ``import torch`` works; scratchgen itself never imports torch.

Geometries (float32, batch 64):

* W4: Conv2d(64->128, 3x3, s1, p1) on (64, 64, 14, 14);
* D1: Conv2d(1->64, 4x4, s2, p1) on (64, 1, 28, 28) -- DCGAN D layer 1; its transpose
  is G layer 2, ConvTranspose2d(64->1, 4, 2, 1), whose forward is ``conv2d_input_grad``,
  input grad ``conv2d`` and weight grad ``conv2d_weight_grad`` at the same shapes;
* D2: Conv2d(64->128, 4x4, s2, p1) on (64, 64, 14, 14) -- D layer 2, and likewise
  G layer 1, ConvTranspose2d(128->64, 4, 2, 1) on (64, 128, 7, 7).
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time

import numpy as np


def _load_kernels():
    """``from scratchgen.kernels import cpu, reference``; fall back to the source tree."""
    try:
        from scratchgen.kernels import cpu, reference
        return cpu, reference
    except ImportError:
        # The package is not installed (yet): load the source tree's kernels/ under its real
        # name ``scratchgen.kernels`` (numba's on-disk cache records the module name).
        import types
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for m in [k for k in sys.modules if k == "scratchgen" or k.startswith("scratchgen.")]:
            del sys.modules[m]
        top = types.ModuleType("scratchgen")
        top.__path__ = []
        sys.modules["scratchgen"] = top
        spec = importlib.util.spec_from_file_location(
            "scratchgen.kernels", os.path.join(root, "kernels", "__init__.py"),
            submodule_search_locations=[os.path.join(root, "kernels")])
        pkg = importlib.util.module_from_spec(spec)
        sys.modules["scratchgen.kernels"] = pkg
        spec.loader.exec_module(pkg)
        top.kernels = pkg
        from scratchgen.kernels import cpu, reference
        return cpu, reference


GEOMS = {
    # name: (x shape, w shape, stride, padding)
    "W4": ((64, 64, 14, 14), (128, 64, 3, 3), (1, 1), (1, 1)),
    "D1": ((64, 1, 28, 28), (64, 1, 4, 4), (2, 2), (1, 1)),
    "D2": ((64, 64, 14, 14), (128, 64, 4, 4), (2, 2), (1, 1)),
}


def timeit(fn, repeat, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def bench(repeat=20, with_reference=True, dtype=np.float32):
    cpu, reference = _load_kernels()
    try:
        import torch
        import torch.nn.functional as F
        torch.set_num_threads(2)
    except ImportError:
        torch = None

    rng = np.random.default_rng(0)
    rows, totals, jobs, autograd = [], {}, [], {}
    for name, (xs, ws, s, p) in GEOMS.items():
        x = rng.standard_normal(xs).astype(dtype)
        w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype(dtype)
        y = reference.conv2d(x, w, s, p)
        gy = rng.standard_normal(y.shape).astype(dtype)
        k_hw, in_hw = ws[2:], xs[2:]
        cases = {
            # default arguments bind this geometry's arrays (the lambdas outlive the loop)
            "conv2d": (lambda m, x=x, w=w, s=s, p=p: m.conv2d(x, w, s, p)),
            "input_grad": (lambda m, gy=gy, w=w, hw=in_hw, s=s, p=p:
                           m.conv2d_input_grad(gy, w, hw, s, p)),
            "weight_grad": (lambda m, x=x, gy=gy, k=k_hw, s=s, p=p:
                            m.conv2d_weight_grad(x, gy, k, s, p)),
        }
        if torch is not None:
            tx, tw, tgy = (torch.from_numpy(a) for a in (x, w, gy))
            tcases = {
                "conv2d": lambda tx=tx, tw=tw, s=s, p=p: F.conv2d(tx, tw, stride=s, padding=p),
                "input_grad": lambda xs=xs, tw=tw, tgy=tgy, s=s, p=p: torch.nn.grad.conv2d_input(
                    tuple(xs), tw, tgy, stride=s, padding=p),
                "weight_grad": lambda tx=tx, ws=ws, tgy=tgy, s=s, p=p: torch.nn.grad.conv2d_weight(
                    tx, tuple(ws), tgy, stride=s, padding=p),
            }
        for kname, fn in cases.items():
            got = fn(cpu)
            want = fn(reference)
            err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
            jobs.append((name, kname, lambda fn=fn: fn(cpu), lambda fn=fn: fn(reference),
                         tcases[kname] if torch is not None else None, err))
        if torch is not None:
            # the real thing: autograd fwd + bwd (dx and dw) of one conv layer
            txg = tx.clone().requires_grad_(True)
            twg = tw.clone().requires_grad_(True)

            def fb(txg=txg, twg=twg, s=s, p=p, tgy=tgy):
                out = F.conv2d(txg, twg, stride=s, padding=p)
                out.backward(tgy)
            autograd[name] = fb

    # Time one library at a time: torch's OpenMP workers keep spinning after each call and
    # would slow whatever runs next (measured: a 9 ms kernel read 70 ms when interleaved).
    t_cpu = [timeit(j[2], repeat) for j in jobs]
    t_ref = [timeit(j[3], max(3, repeat // 4)) if with_reference else float("nan") for j in jobs]
    t_tor = [timeit(j[4], repeat) if j[4] is not None else float("nan") for j in jobs]
    t_ag = {name: timeit(fb, repeat) for name, fb in autograd.items()}
    for j, tc, tr, tt in zip(jobs, t_cpu, t_ref, t_tor):
        rows.append((j[0], j[1], tc, tr, tt, j[5]))
        tot = totals.setdefault(j[0], [0.0, 0.0, 0.0])
        tot[0] += tc
        tot[1] += tr
        tot[2] += tt
    for name, t in t_ag.items():
        totals[name].append(t)

    hdr = f"{'geom':5} {'kernel':12} {'cpu ms':>8} {'numpy ms':>9} {'torch ms':>9} {'ref/cpu':>8} {'cpu/torch':>9} {'rel err':>8}"
    print(f"dtype={np.dtype(dtype).name} repeat={repeat} (median)")
    print(hdr)
    print("-" * len(hdr))
    for name, kname, tc, tr, tt, err in rows:
        print(f"{name:5} {kname:12} {tc:8.2f} {tr:9.2f} {tt:9.2f} {tr / tc:8.2f} {tc / tt:9.2f} {err:8.1e}")
    print("-" * len(hdr))
    for name, tot in totals.items():
        line = f"{name:5} {'sum of 3':12} {tot[0]:8.2f} {tot[1]:9.2f} {tot[2]:9.2f} {tot[1] / tot[0]:8.2f} {tot[0] / tot[2]:9.2f}"
        if len(tot) > 3:
            line += f"   torch autograd fwd+bwd {tot[3]:.2f} ms -> cpu/torch {tot[0] / tot[3]:.2f}"
        print(line)
    return rows, totals


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--float64", action="store_true")
    a = ap.parse_args(argv)
    bench(a.repeat, not a.no_reference, np.float64 if a.float64 else np.float32)


if __name__ == "__main__":
    main()
