"""A PyTorch user's code as typed: the example script trains (a few steps), and README's
"A taste" runs with a finite gradient penalty gradient."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pytorch_style_mnist_script_runs_and_learns(mnist_dir):
    script = ROOT / "examples" / "pytorch_style_mnist.py"
    body = script.read_text().split('"""', 2)[2]          # after the docstring
    ours = [ln for ln in body.splitlines() if "scratchgen" in ln]
    assert len(ours) == 4 and all(ln.startswith(("import ", "from ")) for ln in ours), ours
    env = dict(os.environ, MNIST_DIR=str(mnist_dir))
    r = subprocess.run([sys.executable, str(script), "80"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    acc = float(re.search(r"held-out accuracy ([0-9.]+)", r.stdout).group(1))
    assert acc > 0.75, r.stdout
    assert "lr 0.00e+00" in r.stdout                     # the cosine schedule reached eta_min


def test_readme_taste_runs_and_its_penalty_has_finite_gradients():
    readme = (ROOT / "README.md").read_text()
    taste = readme.split("## A taste", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert "** 0.5" not in taste and ".sqrt()" not in taste  # norms with a NaN gradient at 0
    ns = {}
    exec(compile(taste, "README A taste", "exec"), ns)
    grads = [p.grad.numpy() for p in ns["D"].parameters() if p.grad is not None]
    assert grads and all(np.all(np.isfinite(g)) for g in grads)
    for p in ns["D"].parameters():                       # a flat critic: dD/dx = 0 everywhere
        p.array[...] = 0
        p.grad = None
    gp = ns["gradient_penalty"](ns["D"], ns["real"], ns["fake"], rng=np.random.default_rng(1))
    gp.backward()
    assert abs(gp.item() - 10.0) < 1e-4 and all(np.all(np.isfinite(p.grad.numpy()))
                                     for p in ns["D"].parameters() if p.grad is not None)


# ---- pytorch/examples-style programs: one file, the library chosen by the import block ----
STYLE = ROOT / "examples" / "pytorch_style"
SCRIPTS = ["mnist", "vae", "dcgan", "wgan_gp"]
FLOAT = r"(-?[0-9.]+(?:e[-+][0-9]+)?)"


def _run(mnist_dir, name, *args, torch=False):
    # The programs are CPU programs (vae.py saves samples through .cpu(), which the cuda backend
    # refuses: tensors never leave its device), so they run on the cpu backend whatever the suite's.
    env = dict(os.environ, SCRATCHGEN_MNIST_DIR=str(mnist_dir), SCRATCHGEN_BACKEND="cpu")
    env.pop("PYTORCH_STYLE", None)
    if torch:
        env["PYTORCH_STYLE"] = "torch"
    r = subprocess.run([sys.executable, str(STYLE / f"{name}.py"), "--quick", *args], env=env,
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    init = [float(v) for v in re.findall(FLOAT, re.search(r"^init .*$", r.stdout, re.M)[0])]
    final = [float(v) for v in re.findall(FLOAT, re.search(r"^final .*$", r.stdout, re.M)[0])]
    assert init and final and np.all(np.isfinite(init + final)), r.stdout[-2000:]
    return init, final


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_is_pytorch_code_but_for_its_import_block(name):
    src = (STYLE / f"{name}.py").read_text()
    head, block, rest = re.split(r"^(if os\.environ\.get\(\"PYTORCH_STYLE\"\) == \"torch\":\n"
                                 r"(?:    .*\n|else:\n)+)", src, maxsplit=1, flags=re.M)
    assert "scratchgen" not in head.split('"""', 2)[2] + rest
    theirs, ours = block.split("else:\n")
    swap = {"scratchgen as torch": "torch", "scratchgen": "torch"}
    for a, b in swap.items():
        ours = ours.replace(a, b)
    assert theirs.splitlines()[1:] == ours.splitlines(), (theirs, ours)


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.slow
def test_script_runs_under_scratchgen(name, mnist_dir):
    _run(mnist_dir, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_script_under_torch_and_scratchgen_agrees_from_the_same_weights(name, tmp_path,
                                                                        mnist_dir):
    """PyTorch runs the file and torch.saves its initial weights; scratchgen runs the same
    file from them (sg.load reads the torch file): the deterministic first evaluation agrees,
    and both train to finite losses (random draws differ, so later losses are not compared)."""
    pytest.importorskip("torch")
    theirs, _ = _run(mnist_dir, name, "--save-init", str(tmp_path / "init.pt"), torch=True)
    ours, _ = _run(mnist_dir, name, "--load-init", str(tmp_path / "init.pt"))
    np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=1e-9)
