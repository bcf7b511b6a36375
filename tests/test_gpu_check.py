"""tools/gpu_check.sh (the one-command GPU proof): its --dry-run plan and its helpers."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "tests" / "plugins"))
from harness import run_toy  # noqa: E402


def dry_run(*args, env=None):
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", *args], capture_output=True,
                          text=True, env=env, cwd="/")


def test_dry_run_prints_every_stage_in_order_and_creates_nothing(tmp_path):
    logs = tmp_path / "logs"
    res = dry_run("--mnist", "/data/mnist", str(logs))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    wanted = [
        "pip install -q --no-deps --no-build-isolation --no-index -e .",
        "tools/gpu_check.py versions",
        "-m pytest -q -x -p no:cacheprovider --ignore=tests/test_notebooks.py "
        "--ignore=tests/test_install.py tests/test_kernels_cuda.py",
        "-m scratchgen --backend cuda gradcheck",
        f"train wgan-gp --dataset 8gaussians --steps 1000 --out {logs}/runs/wgan-gp",
        "train vae --dataset mnist --split test --data-dir /data/mnist --steps 300 --out "
        f"{logs}/runs/vae",
        f"train --resume {logs}/runs/resume-a --steps 200",
        f"tools/gpu_check.py same-state {logs}/runs/resume-a {logs}/runs/resume-b",
        f"benchmarks/workloads.py --steps 50 --warmup 10 --block 10 --json {logs}/workloads.json",
        "benchmarks/workloads.py --only W2,W4 --batch 512",
    ]
    pos = [out.find(w) for w in wanted]
    assert all(p >= 0 for p in pos), [w for w, p in zip(wanted, pos) if p < 0]
    assert pos == sorted(pos)
    assert "dry run: nothing was run" in out
    assert not logs.exists()


def test_dry_run_without_mnist_says_the_vae_is_skipped(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHON": "py3"}  # no SCRATCHGEN_MNIST_DIR
    res = dry_run(str(tmp_path / "l"), env=env)
    assert res.returncode == 0, res.stderr
    assert "[vae] skipped: no MNIST folder given (--mnist DIR or SCRATCHGEN_MNIST_DIR)" in res.stdout
    assert "train vae" not in res.stdout
    assert "py3 -m scratchgen --backend cuda gradcheck" in res.stdout


@pytest.mark.parametrize("args,message", [(["--bogus"], "unknown option --bogus"),
                                          (["a", "b"], "one LOG_DIR only"),
                                          (["--mnist"], "--mnist needs a folder")])
def test_bad_arguments_are_one_line_errors(args, message):
    res = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True)
    assert res.returncode == 2 and message in res.stderr and res.stdout == ""


def test_missing_mnist_folder_is_refused_before_anything_runs(tmp_path):
    res = subprocess.run(["bash", str(SCRIPT), "--mnist", str(tmp_path / "none"),
                          str(tmp_path / "logs")], capture_output=True, text=True)
    assert res.returncode == 2 and "is not a folder" in res.stderr
    assert not (tmp_path / "logs").exists()


def test_same_state_compares_the_latest_checkpoints(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCRATCHGEN_PLUGINS", "toytask")
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    a = run_toy(tmp_path / "a", 10, seed=3)
    b = run_toy(tmp_path / "b", 10, seed=3)
    c = run_toy(tmp_path / "c", 10, seed=4)
    assert gc.same_state(a, b) == 0
    assert "resume is bit-for-bit" in capsys.readouterr().out
    assert gc.same_state(a, c) == 1
    assert "DIFFER" in capsys.readouterr().out
