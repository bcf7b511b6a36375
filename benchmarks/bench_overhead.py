"""Per-op overhead of the engine: a (4, 4) float32 add, where the arithmetic is nothing and the
bookkeeping (Tensor, graph node, VJP, accumulation) is everything.

    python benchmarks/bench_overhead.py [--ops 1000] [--repeat 30] [--json PATH]

For a chain ``y = y + x`` of ``--ops`` adds with ``x`` requiring grad, per op in µs (median of
``--repeat`` runs after warm-up, ``time.perf_counter``):

* ``fwd (no grad)``: the chain under ``no_grad`` (no graph);
* ``fwd``: the chain, recording the graph;
* ``fwd+bwd``: the chain, ``y.sum()`` and ``backward()``, divided by the number of adds.

PyTorch (same chain, 1 thread) is timed in the same run when ``import torch`` works;
scratchgen itself never imports torch.
"""
import argparse
import json
import statistics
import time

import numpy as np


def _median_us(fn, ops, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) / ops * 1e6


def bench(lib, ops, repeat):
    """Per-op µs of the chain in ``lib`` (``scratchgen`` or ``torch``: the same calls)."""
    x = lib.tensor(np.ones((4, 4), np.float32), requires_grad=True)

    def chain():
        y = x
        for _ in range(ops):
            y = y + x
        return y

    def no_grad():
        with lib.no_grad():
            chain()

    def fwd_bwd():
        x.grad = None
        chain().sum().backward()

    return {"fwd (no grad)": _median_us(no_grad, ops, repeat),
            "fwd": _median_us(chain, ops, repeat),
            "fwd+bwd": _median_us(fwd_bwd, ops, repeat)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    a = p.parse_args(argv)
    import scratchgen as sg
    results = {f"scratchgen ({sg.backend.name})": bench(sg, a.ops, a.repeat)}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)
        results[f"torch {torch.__version__}"] = bench(torch, a.ops, a.repeat)
    cols = ["fwd (no grad)", "fwd", "fwd+bwd"]
    print(f"(4, 4) float32 add, chain of {a.ops}: µs per op (median of {a.repeat})")
    print(f"{'':24}" + "".join(f"{c:>15}" for c in cols))
    for name, r in results.items():
        print(f"{name:24}" + "".join(f"{r[c]:15.2f}" for c in cols))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"ops": a.ops, "repeat": a.repeat, "us_per_op": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
