"""Determinism as a contract (issue 31): on one machine and backend a run's bits do not depend
on the machine's load, on timing or on how many threads were free. The products that once
followed the load (OpenBLAS's thread count, chosen from /proc/stat) are the ones tested here:
the MNIST VAE's 128 x 784 @ 784 x 400 products are large enough to be split. The runs hold on
every backend (the ``numpy`` one keeps OpenBLAS's own fixed thread count); the product test
calls the cpu kernel directly."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import backend, trainer

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
from harness import checkpoints, metric_lines  # noqa: E402

class Busy:
    """As many spinning processes as this process has cores, for the ``with`` block: the
    machine looks (and is) fully loaded by others."""

    def __enter__(self):
        n = len(os.sched_getaffinity(0))
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                      for _ in range(n)]
        time.sleep(0.5)  # long enough for a /proc/stat reading to see them
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


def vae_run(out, steps, mnist_dir, **kw):
    return trainer.run("vae", dataset="mnist", split="test", holdout=1000, data_dir=mnist_dir,
                       steps=steps, ckpt_every=5, eval_every=1000, keep_checkpoints=10,
                       final_plots=False, progress=False, **kw)


def arrays(path):
    """A checkpoint's float arrays by key, as NumPy (step, RNG state, weights, moments)."""
    out = {}

    def walk(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}/{k}", x)
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(f"{prefix}/{i}", x)
        elif hasattr(v, "shape") or isinstance(v, sg.Tensor):
            out[prefix] = np.asarray(backend.to_numpy(getattr(v, "array", v)))
        else:
            out[prefix] = v
    walk("", sg.load(path))
    return out


def assert_same_run(a, b):
    assert metric_lines(a, "train") == metric_lines(b, "train")
    ca, cb = checkpoints(a), checkpoints(b)
    assert [p.name for p in ca] == [p.name for p in cb]
    for pa, pb in zip(ca, cb):
        xa, xb = arrays(pa), arrays(pb)
        assert xa.keys() == xb.keys()
        for k in xa:
            if isinstance(xa[k], np.ndarray):
                assert xa[k].dtype == xb[k].dtype and np.array_equal(xa[k], xb[k]), (pa.name, k)
            else:
                assert xa[k] == xb[k], (pa.name, k)


@pytest.mark.slow
def test_a_run_beside_busy_processes_is_the_quiet_runs_bits(tmp_path, mnist_dir):
    quiet = vae_run(tmp_path / "quiet", 20, mnist_dir)
    with Busy():
        loaded = vae_run(tmp_path / "loaded", 20, mnist_dir)
    assert_same_run(quiet, loaded)


@pytest.mark.slow
def test_a_run_resumed_beside_busy_processes_is_the_uninterrupted_quiet_runs_bits(tmp_path,
                                                                                   mnist_dir):
    whole = vae_run(tmp_path / "whole", 20, mnist_dir)
    part = vae_run(tmp_path / "part", 10, mnist_dir)
    with Busy():
        trainer.run(resume=part, steps=20, final_plots=False, progress=False)
    assert_same_run(whole, part)


@pytest.mark.parametrize("shape", [(256, 784, 400), (784, 128, 400)])
def test_large_products_have_the_same_bits_under_load_and_any_blas_thread_count(shape):
    """A large product is split by its shape and the cores this process may use, never by
    load or by OpenBLAS's thread count: the same bits with OpenBLAS set to 1, 2 or 4 threads
    before the call, beside busy processes or not, call after call."""
    from threadpoolctl import threadpool_limits
    from scratchgen.kernels.cpu import linalg, parallel
    m, k, n = shape
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    assert 2 * m * k * n >= linalg.SPLIT_FLOPS
    assert (linalg.blocks(a, b)[1] is not None) == (parallel.n_threads() >= 2)
    want = linalg.matmul(a, b)
    got = []
    for t in (1, 2, 4):
        with threadpool_limits(t, user_api="blas"):
            got.append(linalg.matmul(a, b))
    with Busy():
        got += [linalg.matmul(a, b) for _ in range(5)]
    for g in got:
        np.testing.assert_array_equal(g, want)
