"""Helpers shared by the harness and CLI tests (the directory is put on ``sys.path`` by them)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import scratchgen as sg
from scratchgen import trainer
from scratchgen.rundir import RunDir

PLUGINS = Path(__file__).resolve().parent


def run_toy(out, steps, **kw):
    """``toy-regression`` for ``steps`` steps into ``out``; checkpoints every 5, no plots."""
    kw.setdefault("ckpt_every", 5)
    kw.setdefault("eval_every", 1000)
    kw.setdefault("final_plots", False)
    kw.setdefault("progress", False)
    return trainer.run("toy-regression", steps=steps, out=out, **kw)


def checkpoints(run_dir):
    """A run's checkpoint paths, oldest first."""
    return RunDir.open(run_dir, readonly=True).checkpoints()


def checkpoint_state(run_dir):
    """(step, parameters, Adam moments, task state) of a run's latest checkpoint, as NumPy."""
    state = sg.load(checkpoints(run_dir)[-1])
    mods = {k: np.asarray(sg.backend.to_numpy(v)) for k, v in state["modules"]["net"].items()}
    opt = state["optimizers"]["adam"]["state"]
    moments = {f"{i}.{k}": sg.backend.to_numpy(v) for i, s in opt.items() for k, v in s.items()
               if k != "step"}
    return state["step"], mods, moments, state["task"]


def metric_lines(run_dir, kind=None):
    """metrics.jsonl as dicts without the wall time (optionally only ``kind`` lines)."""
    lines = [json.loads(ln) for ln in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in lines
            if kind is None or r["kind"] == kind]


def cli_process(args, **env_extra):
    """``python -m scratchgen ARGS`` with the test task registered; a Popen with text pipes."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(PLUGINS), os.environ.get("PYTHONPATH", "")]), SCRATCHGEN_PLUGINS="toytask")
    env.update(env_extra)
    return subprocess.Popen([sys.executable, "-m", "scratchgen"] + list(args), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
