"""Helpers of tools/gpu_check.sh (run on the GPU machine).

    python tools/gpu_check.py versions          # versions + the first-compile time
    python tools/gpu_check.py same-state A B    # latest checkpoints of runs A and B identical?
"""
import glob
import sys
import time

import numpy as np


def versions():
    import cupy
    if getattr(cupy, "__standin__", False):
        raise SystemExit("gpu_check: `import cupy` found the test stand-in (tests/standin), "
                         "not CuPy; remove it from PYTHONPATH")
    rt = cupy.cuda.runtime
    dev = cupy.cuda.Device(0)
    print("cupy", cupy.__version__, "| CUDA runtime", rt.runtimeGetVersion(), "| driver",
          rt.driverGetVersion())
    print("GPU", rt.getDeviceProperties(0)["name"].decode(), "| compute capability",
          dev.compute_capability)
    import numba
    print("numba", numba.__version__, "| numpy", np.__version__)
    try:
        import torch
        print("torch", torch.__version__, "| torch CUDA", torch.version.cuda, "| available",
              torch.cuda.is_available())
    except ImportError:
        print("torch not importable: the benchmarks time scratchgen alone")
    import scratchgen as sg
    t0 = time.perf_counter()
    sg.backend.use("cuda")  # compiles every kernel and runs the self-test
    first = time.perf_counter() - t0
    warm = sg.backend.kernels.self_test()
    print(f"first compile (cuda backend self-test) {first:.2f} s, warm {warm * 1e3:.1f} ms")


def _flat(x, key=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _flat(v, f"{key}/{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from _flat(v, f"{key}/{i}")
    elif "time" not in key:  # wall-clock entries differ by design
        yield key, x


def same_state(run_a, run_b):
    """Exit 1 unless the newest checkpoints of two runs hold identical values."""
    import scratchgen as sg

    def load(run):
        paths = sorted(glob.glob(f"{run}/ckpt-*.npz"))
        if not paths:
            raise SystemExit(f"gpu_check: no checkpoint in {run}")
        return {k: sg.backend.to_numpy(v) if sg.backend.is_array(v) else v
                for k, v in _flat(sg.load(paths[-1]))}

    a, b = load(run_a), load(run_b)
    bad = [f"only in one: {k}" for k in sorted(set(a) ^ set(b))]
    for k in sorted(set(a) & set(b)):
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            x, y = np.asarray(x), np.asarray(y)
            if x.shape != y.shape or not np.array_equal(x, y):
                diff = (np.max(np.abs(x.astype(float) - y.astype(float)))
                        if x.shape == y.shape and x.size else float("nan"))
                bad.append(f"{k} (max abs diff {diff:.3g})")
        elif x != y:
            bad.append(f"{k} ({x!r} != {y!r})")
    print(f"{len(a)} checkpoint entries compared: "
          + ("resume is bit-for-bit" if not bad else "DIFFER " + "; ".join(bad[:5])))
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["versions"]:
        versions()
    elif sys.argv[1:2] == ["same-state"] and len(sys.argv) == 4:
        sys.exit(same_state(sys.argv[2], sys.argv[3]))
    else:
        raise SystemExit(__doc__)
