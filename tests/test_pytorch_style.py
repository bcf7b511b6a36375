"""A PyTorch user's code as typed: the example script trains (a few steps), and README's
"A taste" runs with a finite gradient penalty gradient."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNIST = Path(os.environ.get("SCRATCHGEN_MNIST_DIR") or ROOT.parent / "shared" / "data" / "mnist")


def test_pytorch_style_mnist_script_runs_and_learns():
    script = ROOT / "examples" / "pytorch_style_mnist.py"
    body = script.read_text().split('"""', 2)[2]          # after the docstring
    ours = [ln for ln in body.splitlines() if "scratchgen" in ln]
    assert len(ours) == 4 and all(ln.startswith(("import ", "from ")) for ln in ours), ours
    env = dict(os.environ, MNIST_DIR=str(MNIST))
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
        p.data[...] = 0
        p.grad = None
    gp = ns["gradient_penalty"](ns["D"], ns["real"], ns["fake"], rng=np.random.default_rng(1))
    gp.backward()
    assert abs(gp.item() - 10.0) < 1e-4 and all(np.all(np.isfinite(p.grad.numpy()))
                                     for p in ns["D"].parameters() if p.grad is not None)
