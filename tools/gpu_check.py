"""Helpers of tools/gpu_check.sh (run on the GPU machine).

    python tools/gpu_check.py versions          # versions + the first-compile time
    python tools/gpu_check.py same-state A B    # latest checkpoints of runs A and B identical?
    python tools/gpu_check.py bench ARGS...     # benchmarks/workloads.py, PyTorch without TF32
    python tools/gpu_check.py disguise DIR      # the stand-in as an installed CuPy (rehearsal)
"""
import glob
import json
import os
import runpy
import sys
import time
from pathlib import Path

import numpy as np


def versions():
    import cupy
    if getattr(cupy, "__standin__", False):
        raise SystemExit("gpu_check: `import cupy` found the test stand-in (tools/standin), "
                         "not CuPy; remove it from PYTHONPATH")
    if os.environ.get("GPU_CHECK_REHEARSAL") == "1":
        print(f"REHEARSAL: cupy is the strict stand-in disguised as CuPy ({cupy.__file__}); "
              "nothing below was measured on a GPU")
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


ROOT = Path(__file__).resolve().parents[1]


def tf32_off():
    """Turn PyTorch's TF32 off for float32 matmuls and cuDNN convolutions (cuDNN's is on by
    default), so the baseline computes in float32 as scratchgen does; returns the state."""
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return {"cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def bench(argv):
    """benchmarks/workloads.py ARGV with PyTorch's TF32 off (said, and recorded in --json).
    A PyTorch without CUDA is hidden (workloads.py then times scratchgen alone)."""
    try:
        import torch
    except ImportError:
        torch, tf32 = None, None
    if torch is not None:
        tf32 = tf32_off()
        print("PyTorch baseline without TF32:", ", ".join(f"{k}={v}" for k, v in tf32.items()))
        if not torch.cuda.is_available():
            print("PyTorch has no CUDA here: no PyTorch baseline, scratchgen timed alone")
            for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
                sys.modules[name] = None
    script = ROOT / "benchmarks" / "workloads.py"
    sys.argv = [str(script), *argv]
    sys.path.insert(0, str(script.parent))
    runpy.run_path(str(script), run_name="__main__")
    out = argv[argv.index("--json") + 1] if "--json" in argv else None
    if out and os.path.exists(out):
        with open(out) as f:
            data = json.load(f)
        data.setdefault("info", {})["torch_tf32"] = tf32
        with open(out, "w") as f:
            json.dump(data, f, indent=1)


def disguise(site):
    """Install the strict stand-in into SITE/cupy as if it were CuPy (``__standin__`` False,
    CuPy's version string): the rehearsal's "real-looking" CuPy, outside the tree."""
    src = (ROOT / "tools" / "standin" / "cupy" / "__init__.py").read_text()
    marker, version = "__standin__ = True\n", '__version__ = "14.2.0+standin"\n'
    if marker not in src or version not in src:
        raise SystemExit("gpu_check: tools/standin/cupy no longer has the lines to disguise")
    dest = Path(site) / "cupy"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "__init__.py").write_text(src.replace(marker, "__standin__ = False\n")
                                      .replace(version, '__version__ = "14.2.0"\n'))
    print(dest)


if __name__ == "__main__":
    cmd, args = sys.argv[1:2], sys.argv[2:]
    if cmd == ["versions"] and not args:
        versions()
    elif cmd == ["same-state"] and len(args) == 2:
        sys.exit(same_state(*args))
    elif cmd == ["bench"]:
        bench(args)
    elif cmd == ["disguise"] and len(args) == 1:
        disguise(args[0])
    else:
        raise SystemExit(__doc__)
