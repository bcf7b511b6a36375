"""tools/gpu_check.sh (the one-command GPU proof): its plan, MNIST lookup, guards, helpers,
and (slow) its rehearsal on the CPU against the stand-in disguised as CuPy."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "tests" / "plugins"))
from harness import run_toy  # noqa: E402

import conftest_gpu  # noqa: E402


def gpu_check(*args, env=None, script=SCRIPT):
    env = dict(os.environ if env is None else env)
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                          env=env, cwd="/")


def fake_mnist(folder):
    folder.mkdir(parents=True)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    return folder


def helpers():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    return gc


def test_plan_runs_the_gpu_tests_last_within_the_budget_and_creates_nothing(tmp_path):
    logs = tmp_path / "logs"
    mnist = fake_mnist(tmp_path / "mnist")
    res = gpu_check("--dry-run", "--mnist", str(mnist), str(logs))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    wanted = [
        f"MNIST: {mnist} (from --mnist)",
        "pip install -q --no-deps --no-build-isolation --no-index -e .",
        "tools/gpu_check.py versions",
        "-m scratchgen --backend cuda gradcheck",
        f"train wgan-gp --dataset 8gaussians --steps 1000 --out {logs}/runs/wgan-gp",
        f"train vae --dataset mnist --split test --data-dir {mnist} --steps 300",
        f"train --resume {logs}/runs/resume-a --steps 200",
        f"tools/gpu_check.py same-state {logs}/runs/resume-a {logs}/runs/resume-b",
        f"tools/gpu_check.py bench --steps 50 --warmup 10 --block 10 --json {logs}/workloads.json",
        "tools/gpu_check.py bench --only W2,W4 --batch 512",
        "[pytest] (cap the rest)",
        "-m pytest -q -m gpu -p no:cacheprovider",
    ]
    pos = [out.find(w) for w in wanted]
    assert all(p >= 0 for p in pos), [w for w, p in zip(wanted, pos) if p < 0]
    assert pos == sorted(pos)
    caps = re.search(r"caps before pytest: (\d+)s of the (\d+)s budget", out)
    assert int(caps[2]) == 540 and int(caps[1]) <= 540 - 100  # one 600 s command, margin
    for module in conftest_gpu.GPU_MODULES:  # the GPU stage names exactly the gpu modules
        assert f"tests/{module}.py" in out.split("[pytest]")[1]
    assert "--rehearse" not in out and "dry run: nothing was run" in out
    assert not logs.exists()


def test_mnist_is_found_inside_the_tree_and_exported_as_one_absolute_path(tmp_path):
    tree = tmp_path / "checkout"  # a checkout as the device receives it: no ../shared
    (tree / "tools").mkdir(parents=True)
    shutil.copy(SCRIPT, tree / "tools")
    mnist = fake_mnist(tree / "shared" / "data" / "mnist")
    env = {"PATH": os.environ["PATH"]}
    res = gpu_check("--dry-run", "logs", env=env, script=tree / "tools" / "gpu_check.sh")
    assert res.returncode == 0, res.stderr
    assert f"MNIST: {mnist} (from {tree}/shared/data/mnist)" in res.stdout
    assert f"--data-dir {mnist} " in res.stdout
    env["SCRATCHGEN_MNIST_DIR"] = str(fake_mnist(tmp_path / "elsewhere"))
    res = gpu_check("--dry-run", "logs", env=env, script=tree / "tools" / "gpu_check.sh")
    assert f"MNIST: {tmp_path}/elsewhere (from SCRATCHGEN_MNIST_DIR)" in res.stdout
    shutil.rmtree(tree / "shared")  # nowhere: a real run stops before anything, saying how
    del env["SCRATCHGEN_MNIST_DIR"]
    res = gpu_check(str(tmp_path / "logs"), env=env, script=tree / "tools" / "gpu_check.sh")
    assert res.returncode == 2 and res.stdout == ""
    assert "no MNIST found; copy it into the checkout (mkdir -p shared/data" in res.stderr
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("args,message", [(["--bogus", "l"], "unknown option --bogus"),
                                          (["a", "b"], "one LOG_DIR only"),
                                          (["--mnist"], "--mnist needs a folder"),
                                          (["--dry-run"], "LOG_DIR is needed")])
def test_bad_arguments_are_one_line_errors(args, message):
    res = gpu_check(*args)
    assert res.returncode == 2 and message in res.stderr and res.stdout == ""


def test_a_bad_mnist_folder_is_refused_before_anything_runs(tmp_path):
    res = gpu_check("--mnist", str(tmp_path / "none"), str(tmp_path / "logs"))
    assert res.returncode == 2 and "is not a folder" in res.stderr
    (tmp_path / "empty").mkdir()
    res = gpu_check("--mnist", str(tmp_path / "empty"), str(tmp_path / "logs"))
    assert res.returncode == 2 and "holds no MNIST" in res.stderr
    assert not (tmp_path / "logs").exists()


def test_the_guard_refuses_the_standin_and_accepts_a_real_looking_cupy(monkeypatch, tmp_path):
    monkeypatch.setenv(conftest_gpu.REQUIRE_REAL_CUPY, "1")
    fake = types.ModuleType("cupy")
    fake.__file__ = "/x/cupy/__init__.py"
    for standin, refused in ((True, True), (False, False)):
        fake.__standin__ = standin
        monkeypatch.setitem(sys.modules, "cupy", fake)
        why = conftest_gpu.standin_refusal()
        assert (why is not None and "found the test stand-in" in why) == refused
    monkeypatch.delenv(conftest_gpu.REQUIRE_REAL_CUPY)
    fake.__standin__ = True
    assert conftest_gpu.standin_refusal() is None  # only when asked for
    # the disguise that the rehearsal installs outside the tree
    helpers().disguise(tmp_path)
    text = (tmp_path / "cupy" / "__init__.py").read_text()
    assert "\n__standin__ = False\n" in text and '\n__version__ = "14.2.0"\n' in text


def test_a_test_run_stops_at_once_on_the_standin_when_real_cupy_is_required():
    env = dict(os.environ, SCRATCHGEN_REQUIRE_REAL_CUPY="1", SCRATCHGEN_BACKEND="cuda",
               PYTHONPATH=str(ROOT / "tools" / "standin"))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--co", str(ROOT / "tests" / "test_backend.py")],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert res.returncode == 4, res.stdout + res.stderr
    assert "found the test stand-in" in res.stderr and "tools/standin" in res.stderr


def test_gpu_marker_takes_the_device_tests_and_leaves_the_cpu_tiers_out():
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--co", "-m", "gpu", "tests/test_kernels_cuda.py",
                          "tests/test_backend.py", "tests/test_gpu_check.py"],
                         capture_output=True, text=True, cwd=ROOT)
    out = res.stdout
    assert "test_kernels_cuda.py::test_gpu_self_test" in out
    assert "test_kernels_cuda.py::test_gpu_adam_matches_reference" in out
    assert "test_cu_sources_compile_with_nvcc" not in out  # nvcc, host C, emulator: CPU tiers
    assert "test_conv_host_compiled" not in out and "test_gpu_check.py" not in out
    assert "test_backend.py::" in out


def test_the_pytorch_baseline_runs_without_tf32():
    pytest.importorskip("torch")
    state = helpers().tf32_off()
    assert state["cuda.matmul.allow_tf32"] is False and state["cudnn.allow_tf32"] is False


def test_same_state_compares_the_latest_checkpoints(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCRATCHGEN_PLUGINS", "toytask")
    gc = helpers()
    a = run_toy(tmp_path / "a", 10, seed=3)
    b = run_toy(tmp_path / "b", 10, seed=3)
    c = run_toy(tmp_path / "c", 10, seed=4)
    assert gc.same_state(a, b) == 0
    assert "resume is bit-for-bit" in capsys.readouterr().out
    assert gc.same_state(a, c) == 1
    assert "DIFFER" in capsys.readouterr().out


@pytest.mark.slow
def test_the_rehearsal_runs_every_stage_on_the_cpu(tmp_path):
    """About 1.5 minutes here: every stage against the stand-in disguised as CuPy."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCRATCHGEN_BACKEND")}
    env["PYTHON"] = sys.executable
    res = gpu_check("--rehearse", str(tmp_path / "logs"), env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    table = res.stdout.split("gpu_check summary")[1]
    for stage in ("guard", "install", "versions", "gradcheck", "wgan-gp", "vae", "resume",
                  "bench", "bench-512", "pytest"):
        assert re.search(rf"^{stage} +PASS ", table, re.M), stage
    logs = tmp_path / "logs"
    assert "REHEARSAL: cupy is the strict stand-in" in (logs / "versions.log").read_text()
    assert "resume is bit-for-bit" in (logs / "resume.log").read_text()
    assert " passed" in (logs / "pytest.log").read_text()
