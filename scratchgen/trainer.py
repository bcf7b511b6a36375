"""The training harness shared by every model: data, seeded randomness, run directory,
logging, checkpoints, resume, signals, evaluation and plots.

A run directory holds ``config.json`` (every hyperparameter, version, backend, seed),
``metrics.jsonl`` (one JSON line per logged step, ``"kind": "train"`` or ``"eval"``),
``ckpt-XXXXXXXX.npz`` (the last ``keep_checkpoints``, written atomically) and the PNG plots.

Determinism: step ``k`` draws its batch with ``data.batch_at(k)`` and all its other randomness
from ``numpy.random.default_rng([seed, k, 1])``; model initialisation is seeded by ``seed``.
A checkpoint after step ``k`` therefore holds all the state, and a run resumed from it repeats
the uninterrupted run bit for bit (on the CPU backends).

>>> run_dir = run("vae", dataset="mnist", steps=200)        # doctest: +SKIP
"""
import json
import math
import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np

import scratchgen as sg
from scratchgen import backend, plots
from scratchgen.data import (TOY_DATASETS, BatchLoader, load_array, load_mnist, split_holdout,
                             toy_batch_at, toy_dataset)
from scratchgen.tasks import get_task

CKPT_RE = re.compile(r"^ckpt-(\d{8})\.npz$")
DATASETS = TOY_DATASETS + ("mnist",)


class TrainingStopped(Exception):
    """The run stopped early; ``exit_code`` says why (130 SIGINT, 143 SIGTERM, 3 non-finite)."""

    def __init__(self, message, exit_code, run_dir):
        super().__init__(message)
        self.exit_code = exit_code
        self.run_dir = run_dir


class UsageError(ValueError):
    """A bad name, path or option given by the user."""


# ---- data ------------------------------------------------------------------------------------
class DataSource:
    """What a task sees of its data: ``batch_at(step)`` (host float32 arrays), ``held_out``
    (``(x, labels)`` or points, or None), ``name``, ``shape`` (one example) and
    ``batches_per_epoch``. Images are preprocessed by the loader; the held-out set gets the
    deterministic part of the preprocessing (scaling; binarisation is left to the task)."""

    def __init__(self, dataset, batch_size, seed=0, split="train", holdout=0, data_dir=None,
                 preprocess=None, eval_size=1000):
        self.name, self.split, self.holdout = dataset, split, int(holdout)
        self.batch_size, self.seed = int(batch_size), int(seed)
        if dataset in TOY_DATASETS:
            self.kind = "points"
            self.dist = toy_dataset(dataset)
            self.shape = (2,)
            self.batches_per_epoch = 0
            self.held_out = self.dist.sample(max(self.holdout, eval_size),
                                             rng=np.random.default_rng([self.seed, 0, 2]))
            self.preprocess = "none"
            return
        if dataset == "mnist":
            x, y = self._mnist(data_dir, split)
        elif dataset.endswith((".npy", ".npz")):
            x, y = load_array(dataset), None
            self.name = "array"
        else:
            raise UsageError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}"
                             " or give a path to a .npy/.npz file")
        self.kind = "points" if x.ndim == 2 else "images"
        self.preprocess = preprocess or ("none" if self.kind == "points" else "symmetric")
        held = None
        if self.holdout:
            try:
                x, y, hx, hy = split_holdout(x, y, self.holdout)
            except ValueError as e:
                raise UsageError(str(e)) from e
            held = (hx, hy)
        elif dataset == "mnist":
            other = "test" if split == "train" else "train"
            try:
                held = self._mnist(data_dir, other)
            except Exception:  # only one split present: evaluate on training examples
                held = None
        if held is None:
            held = (x[:eval_size], None if y is None else y[:eval_size])
        self.held_out = (self._scale(held[0]), held[1])
        self.shape = tuple(x.shape[1:])
        self.loader = BatchLoader(x, self.batch_size, shuffle=True, seed=self.seed,
                                  preprocess=self.preprocess)
        self.batches_per_epoch = len(self.loader)
        if self.batches_per_epoch == 0:
            raise UsageError(f"{len(x)} training examples are fewer than one batch of "
                             f"{self.batch_size}")

    @staticmethod
    def _mnist(data_dir, split):
        root = data_dir
        if root is None and os.environ.get("SCRATCHGEN_DATA") is None:
            root = None  # load_mnist's default (~/.cache/scratchgen/mnist)
        return load_mnist(root, split=split)

    def _scale(self, x):
        if self.preprocess in ("unit", "symmetric") and x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
            return 2 * x - 1 if self.preprocess == "symmetric" else x
        return x

    def batch_at(self, step):
        if self.kind == "points" and self.name in TOY_DATASETS:
            return toy_batch_at(self.name, self.batch_size, step, seed=self.seed)
        return self.loader.batch_at(step)

    def describe(self):
        return {"dataset": self.name, "split": self.split, "holdout": self.holdout,
                "kind": self.kind, "example_shape": list(self.shape),
                "batches_per_epoch": self.batches_per_epoch, "preprocess": self.preprocess}


# ---- run directory -----------------------------------------------------------------------------
def checkpoints(run_dir):
    """Checkpoint paths in ``run_dir``, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if CKPT_RE.match(p.name))


def latest_checkpoint(run_dir):
    ck = checkpoints(run_dir)
    if not ck:
        raise UsageError(f"no checkpoint (ckpt-XXXXXXXX.npz) in {run_dir}")
    return ck[-1]


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _write_json(path, obj):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def _truncate_metrics(path, step):
    """Drop metric lines logged after ``step`` (they belong to an interrupted future)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines()
            if ln.strip() and json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


# ---- building and restoring a task ---------------------------------------------------------------
def _task_config(task_cls, dataset, options, overrides):
    defaults = task_cls.defaults_for(dataset) if hasattr(task_cls, "defaults_for") \
        else task_cls.defaults()
    config = dict(defaults)
    for key, value in overrides.items():
        if key not in defaults:
            raise UsageError(f"{task_cls.name} has no hyperparameter {key!r}; its keys are "
                             f"{', '.join(sorted(defaults))}")
        config[key] = value
    for key in ("batch_size", "lr"):
        if options.get(key) is not None:
            if key not in defaults:
                raise UsageError(f"{task_cls.name} takes no --{key.replace('_', '-')}; its "
                                 f"hyperparameters are {', '.join(sorted(defaults))}")
            config[key] = options[key]
    if "seed" in defaults:
        config["seed"] = options["seed"]
    return config


def build(config):
    """(task, data) from a run's config dict, with the model initialised from its seed."""
    task_cls = get_task(config["model"])
    hp = config["hyperparameters"]
    seed = int(config["seed"])
    data = DataSource(config["dataset"], hp.get("batch_size", 64), seed=seed,
                      split=config["split"], holdout=config["holdout"],
                      data_dir=config.get("data_dir"), preprocess=hp.get("preprocess"))
    sg.manual_seed(seed)
    task = task_cls(dict(hp, dataset=data.name), data)
    return task, data


def _state(task, step):
    return {"step": step,
            "modules": {k: m.state_dict() for k, m in task.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in task.optimizers().items()},
            "task": task.state_dict()}


def restore(task, path):
    """Load a checkpoint into ``task``; returns its step. Architecture mismatches name the
    parameter (``load_state_dict``'s error)."""
    state = sg.load(path)
    for k, m in task.modules().items():
        if k not in state["modules"]:
            raise UsageError(f"{path}: checkpoint has no module {k!r} (it has "
                             f"{', '.join(state['modules'])}); was it written by another model?")
        try:
            m.load_state_dict(state["modules"][k])
        except (RuntimeError, ValueError) as e:
            raise UsageError(f"{path}: checkpoint does not fit module {k!r}: {e}") from e
    for k, o in task.optimizers().items():
        o.load_state_dict(state["optimizers"][k])
    task.load_state_dict(state.get("task", {}))
    return int(state["step"])


def save_checkpoint(task, run_dir, step, keep):
    path = Path(run_dir) / f"ckpt-{step:08d}.npz"
    sg.save(_state(task, step), path)
    for old in checkpoints(run_dir)[:-keep]:
        old.unlink()
    return path


def step_rng(seed, step, stream=1):
    """The Generator for step ``step`` (stream 1: training, 2: evaluation, 3: plots)."""
    return np.random.default_rng([int(seed), int(step), int(stream)])


# ---- progress ------------------------------------------------------------------------------------
class _Progress:
    """tqdm with the live loss terms on a terminal; plain periodic lines otherwise."""

    def __init__(self, start, total, every, enabled=None):
        self.tty = sys.stdout.isatty() if enabled is None else enabled
        self.total, self.every, self.t0, self.start = total, max(1, every), time.time(), start
        self.bar = None
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, dynamic_ncols=True, file=sys.stdout)

    def update(self, step, logs):
        if self.bar is not None:
            self.bar.update(1)
            if step % 10 == 0 or step == self.total:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
        elif step % self.every == 0 or step == self.total:
            rate = (step - self.start) / max(time.time() - self.t0, 1e-9)
            terms = "  ".join(f"{k} {v:.4g}" for k, v in logs.items())
            print(f"step {step}/{self.total}  {terms}  ({rate:.1f} it/s)", flush=True)

    def write(self, text):
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ---- the loop --------------------------------------------------------------------------------------
def run(model=None, dataset=None, split="train", holdout=0, steps=None, epochs=None,
        batch_size=None, lr=None, seed=0, out=None, resume=None, data_dir=None, overrides=None,
        log_every=None, eval_every=None, ckpt_every=None, keep_checkpoints=3, progress=None,
        final_plots=True, argv=None):
    """Train ``model`` (a registered task name) and return the run directory.

    Give ``steps`` or ``epochs`` (epochs need a finite data set). With ``resume`` (a run
    directory) everything comes from its ``config.json`` and latest checkpoint; ``steps`` may
    extend the run. Raises :class:`TrainingStopped` on SIGINT/SIGTERM (after saving a
    checkpoint) or on a non-finite loss (keeping the last good checkpoint).
    """
    if resume is not None:
        run_dir = Path(resume)
        cfg_path = run_dir / "config.json"
        if not cfg_path.exists():
            raise UsageError(f"--resume {run_dir}: no config.json there (not a run directory)")
        config = json.loads(cfg_path.read_text())
        if steps is not None:
            config["steps"] = int(steps)
        ckpt = latest_checkpoint(run_dir)
        task, data = build(config)
        start = restore(task, ckpt)
    else:
        if model is None:
            raise UsageError("give a model name")
        task_cls = get_task(model)
        dataset = dataset or task_cls.default_dataset
        if dataset not in task_cls.datasets and not str(dataset).endswith((".npy", ".npz")):
            raise UsageError(f"{model} cannot train on {dataset!r}; choose one of "
                             f"{', '.join(task_cls.datasets)} (or a .npy/.npz file)")
        hp = _task_config(task_cls, dataset, {"batch_size": batch_size, "lr": lr, "seed": seed},
                          dict(overrides or {}))
        config = {"model": model, "dataset": str(dataset), "split": split,
                  "holdout": int(holdout), "seed": int(seed), "hyperparameters": hp,
                  "data_dir": None if data_dir is None else str(data_dir),
                  "version": sg.__version__, "backend": backend.name,
                  "argv": list(argv) if argv is not None else None}
        run_dir = Path(out) if out else Path("runs") / f"{model}-{Path(str(dataset)).stem}-" \
            f"{time.strftime('%Y%m%d-%H%M%S')}"
        if checkpoints(run_dir):
            raise UsageError(f"{run_dir} already holds a run; continue it with --resume "
                             f"{run_dir}, or choose another --out")
        task, data = build(config)
        if epochs is not None:
            if not data.batches_per_epoch:
                raise UsageError(f"--epochs needs a finite data set; {dataset} is sampled "
                                 "afresh each step: give --steps")
            steps = int(epochs) * data.batches_per_epoch
        config["steps"] = int(steps if steps is not None else 2000)
        config["data"] = data.describe()
        config["schedule"] = {"log_every": log_every, "eval_every": eval_every,
                              "ckpt_every": ckpt_every, "keep_checkpoints": keep_checkpoints}
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").write_text("")
        start = 0
    total = int(config["steps"])
    sched = config.get("schedule", {})
    log_every = int(sched.get("log_every") or max(1, total // 200))
    eval_every = int(sched.get("eval_every") or max(1, total // 5))
    ckpt_every = int(sched.get("ckpt_every") or max(1, total // 10))
    keep = int(sched.get("keep_checkpoints") or 3)
    config["backend"] = backend.name
    _write_json(run_dir / "config.json", config)
    metrics_path = run_dir / "metrics.jsonl"
    _truncate_metrics(metrics_path, start)
    seed = int(config["seed"])

    stop = {}

    def on_signal(signum, frame):
        stop["signal"] = signum

    handlers = {}
    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            handlers[s] = signal.signal(s, on_signal)
    except ValueError:  # not the main thread: no signal handling
        handlers = {}
    bar = _Progress(start, total, max(1, total // 20), progress)
    t0 = time.time()
    try:
        with metrics_path.open("a") as mf:
            step = start
            while step < total:
                logs = task.train_step(step, data.batch_at(step), step_rng(seed, step))
                bad = [k for k, v in logs.items() if not math.isfinite(v)]
                if bad:
                    last = checkpoints(run_dir)
                    where = f"the last good checkpoint is {last[-1]}" if last else \
                        "no checkpoint was written before it"
                    raise TrainingStopped(
                        f"stopped: loss term {bad[0]!r} is {logs[bad[0]]} at step {step + 1} "
                        f"(all terms: {logs}); {where}", 3, run_dir)
                step += 1
                if step % log_every == 0 or step == total:
                    mf.write(json.dumps({"kind": "train", "step": step,
                                         "time": round(time.time() - t0, 3), **logs}) + "\n")
                    mf.flush()
                bar.update(step, logs)
                if step % eval_every == 0 and step != total:
                    ev = task.evaluate(step_rng(seed, step, 2))
                    mf.write(json.dumps({"kind": "eval", "step": step, **ev},
                                        default=_json_default) + "\n")
                    mf.flush()
                    bar.write(f"eval @ {step}: " + "  ".join(f"{k} {v:.4g}"
                                                             for k, v in ev.items()))
                if step % ckpt_every == 0 or "signal" in stop:
                    save_checkpoint(task, run_dir, step, keep)
                if "signal" in stop:
                    name = signal.Signals(stop["signal"]).name
                    raise TrainingStopped(
                        f"{name}: stopped after step {step}; checkpoint saved in {run_dir}. "
                        f"Continue with: scratchgen train --resume {run_dir}",
                        128 + stop["signal"], run_dir)
            if not checkpoints(run_dir) or checkpoints(run_dir)[-1].name != f"ckpt-{step:08d}.npz":
                save_checkpoint(task, run_dir, step, keep)
            ev = task.evaluate(step_rng(seed, step, 2))
            mf.write(json.dumps({"kind": "eval", "step": step, **ev},
                                default=_json_default) + "\n")
    finally:
        bar.close()
        for s, h in handlers.items():
            signal.signal(s, h)
    _write_json(run_dir / "eval.json", {"step": step, **ev})
    written = []
    if final_plots:
        written = finish_plots(task, run_dir, seed, step)
    print(f"trained {config['model']} on {config['dataset']} for {step} steps in "
          f"{time.time() - t0:.1f} s")
    print("final metrics: " + "  ".join(f"{k} {v:.4g}" for k, v in ev.items()))
    print(f"run directory: {run_dir}  (config.json, metrics.jsonl, eval.json, checkpoints)")
    if written:
        print("plots: " + ", ".join(str(p) for p in written))
    return run_dir


def finish_plots(task, run_dir, seed, step):
    written = list(task.plots(run_dir, step_rng(seed, step, 3)) or [])
    mp = Path(run_dir) / "metrics.jsonl"
    if mp.exists() and mp.stat().st_size:
        written.append(plots.metric_curves(mp, Path(run_dir) / "curves.png"))
    return written


def load_run(run_dir):
    """(task, data, config, step) restored from a run directory's latest checkpoint."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise UsageError(f"{run_dir}: no config.json (not a scratchgen run directory)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"{cfg_path}: not valid JSON ({e})") from e
    task, data = build(config)
    step = restore(task, latest_checkpoint(run_dir))
    return task, data, config, step
