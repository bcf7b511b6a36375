"""Installing the README's way: ``pip install .``, use it, then ``pip install -e ".[test]"`` in the
same environment, and the command line still works. numba's cache lands in a per-user folder,
never inside the installed package (a left-behind ``site-packages/scratchgen/`` folder shadows an
editable install as an empty namespace package).

Offline and quick: the test environment is a venv without pip whose packages come from this one
(a ``.pth`` line), built with ``--no-deps --no-build-isolation``.
"""
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "scratchgen", "kernels", "examples")
KERNEL_RUN = ("import numpy as np; from scratchgen.kernels import cpu as K; "
              "y = K.conv2d(np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32), "
              "1, 1); assert y.shape == (1, 3, 5, 5) and y[0, 0, 2, 2] == 18, y")


def _env(cache):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    env["XDG_CACHE_HOME"] = str(cache)
    env["SCRATCHGEN_BACKEND"] = "cpu"  # the numba kernels' cache and the install layout
    return env


def _run(args, cwd, env, timeout=300):
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, args))} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _numba_files(folder):
    return sorted(p for p in Path(folder).rglob("*") if p.suffix in (".nbi", ".nbc"))


def _snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in _numba_files(folder)}


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """(python, pip command, site-packages) of a fresh venv seeing this environment's packages."""
    d = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", d / "venv"], check=True)
    py = d / "venv" / "bin" / "python"
    purelib = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()"
                                   "['purelib'])"], capture_output=True, text=True,
                                  check=True).stdout.strip())
    outer = dict.fromkeys(site.getsitepackages() + [sysconfig.get_paths()["purelib"]])
    (purelib / "_outer_env.pth").write_text("".join(p + "\n" for p in outer))
    pip = [sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps",
           "--no-build-isolation", "--no-index"]
    return py, pip, purelib


@pytest.mark.slow
def test_install_then_editable_install_keeps_the_command_line_working(venv, tmp_path):
    py, pip, purelib = venv
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:  # a copy: the builds write build/ and *.egg-info into the source tree
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    bin_ = py.parent
    cache = tmp_path / "cache"
    env = _env(cache)
    train = [bin_ / "scratchgen", "train", "wgan-gp", "--dataset", "8gaussians", "--steps", "2",
             "--set", "width=16"]

    _run(pip + [src], tmp_path, env)
    installed = purelib / "scratchgen"
    _run([py, "-c", KERNEL_RUN], tmp_path, env)
    assert _numba_files(installed) == [], "numba wrote its cache inside the installed package"
    user_cache = cache / "scratchgen" / "numba"
    assert _numba_files(user_cache), "numba's cache is not in $XDG_CACHE_HOME/scratchgen/numba"

    # a read-only install compiles, caches in the user's folder, and reuses that cache
    ro_env = _env(tmp_path / "cache-ro")
    modes = {p: p.stat().st_mode for p in [installed, *installed.rglob("*")]}
    try:
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        _run([py, "-c", KERNEL_RUN], tmp_path, ro_env)
        first = _snapshot(tmp_path / "cache-ro")
        _run([py, "-c", KERNEL_RUN], tmp_path, ro_env)
        assert first and _snapshot(tmp_path / "cache-ro") == first  # a hit writes nothing
    finally:
        for p, m in modes.items():
            p.chmod(m)

    _run(pip + ["-e", f"{src}[test]"], tmp_path, env)
    out = _run([py, "-c", "import scratchgen; print(scratchgen.__version__, scratchgen.__file__)"],
               tmp_path, env)
    version, where = out.split()
    assert Path(where) == src / "scratchgen" / "__init__.py" and version
    assert not installed.exists(), f"{installed} left behind after the editable install"
    out = _run(train + ["--out", tmp_path / "run"], tmp_path, env)
    assert "run directory" in out and (tmp_path / "run" / "eval.json").is_file()
    # the examples' imports (scripts without a __main__ guard would train: the suite runs those)
    _run([py, "-c", "import glob, runpy, sys; [runpy.run_path(p) for p in "
          "sorted(glob.glob(sys.argv[1] + '/*.py')) if '__main__' in open(p).read()]",
          src / "examples"], tmp_path, env)
    assert _numba_files(src / "kernels") == []


@pytest.mark.slow
def test_numba_cache_honours_numba_cache_dir(tmp_path):
    env = _env(tmp_path / "xdg")
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "nc")
    before = _snapshot(ROOT / "kernels")
    _run([sys.executable, "-c", KERNEL_RUN], tmp_path, env)
    assert _numba_files(tmp_path / "nc") and not (tmp_path / "xdg").exists()
    assert _snapshot(ROOT / "kernels") == before
