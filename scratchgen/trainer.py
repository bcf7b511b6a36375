"""The training harness shared by every model: data, seeded randomness, run directory,
logging, checkpoints, resume, signals, evaluation and plots.

    run_dir = run("wgan-gp", dataset="8gaussians", steps=2000)
    run_dir = run(resume=run_dir, steps=4000)

A run directory holds

* ``config.json``: model, dataset, split, holdout, seed, every hyperparameter (the task's
  ``defaults()`` with the user's overrides), steps, the resolved ``schedule`` (``log_every``,
  ``eval_every``, ``ckpt_every``, ``keep_checkpoints``), the data's description, scratchgen
  version, backend and command line;
* ``metrics.jsonl``: one JSON line per logged step, ``{"kind": "train", "step", "time", <loss
  terms>}``, and one per evaluation, ``{"kind": "eval", "step", <metrics>}``; ``step`` counts
  completed steps, ``time`` is wall seconds since the run began (across resumptions);
* ``ckpt-XXXXXXXX.npz`` (``sg.save``, atomic; the last ``keep_checkpoints``): step, modules,
  optimisers and ``task.state_dict()`` after step XXXXXXXX;
* ``eval.json`` (the final evaluation), ``curves.png`` (the metric curves) and the task's plots.

Step ``k`` (0-based) trains on ``data.batch_at(k)`` with ``step_rng(seed, k)``; modules are
initialised after ``sg.manual_seed(seed)``. A checkpoint after step ``k`` therefore holds all
the state, and a run resumed from it repeats the uninterrupted run bit for bit (on the CPU
backends); resuming drops the metric lines logged after the checkpoint.

SIGINT / SIGTERM finish the current step, save a checkpoint and raise :class:`TrainingStopped`
(``exit_code`` 130 / 143, the ``scratchgen`` command's exit status); a second Ctrl-C quits at
once without saving. A non-finite loss term stops the run before anything is saved
(``exit_code`` 3), naming the step, the term and the last good checkpoint.
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
DEFAULT_STEPS = 2000


class TrainingStopped(Exception):
    """The run stopped early; ``exit_code`` says why (130 SIGINT, 143 SIGTERM, 3 non-finite)."""

    def __init__(self, message, exit_code, run_dir):
        super().__init__(message)
        self.exit_code = exit_code
        self.run_dir = run_dir


class UsageError(ValueError):
    """A bad name, path or option given by the user."""


# ---- data ----------------------------------------------------------------------------------------
class DataSource:
    """What a task sees of its data.

    * ``batch_at(step)``: the training batch of ``step``, a host float32 array (images
      (B, C, H, W) preprocessed by :class:`~scratchgen.data.BatchLoader`; points (B, D));
    * ``held_out``: toy data: ``max(holdout, eval_size)`` points drawn once from the seed;
      finite data: ``(x, labels)`` of the last ``holdout`` examples, else of the other MNIST
      split when present, else of the first ``eval_size`` training examples; ``x`` gets the
      deterministic part of the preprocessing (scaling; binarisation is left to the task);
    * ``name`` (``'array'`` for files), ``kind`` (``'points'``/``'images'``), ``shape`` (one
      example), ``dist`` (the :class:`~scratchgen.data.ToyDistribution` or None),
      ``preprocess``, ``batches_per_epoch`` (0 for toys: sampled afresh each step).
    """

    def __init__(self, dataset, batch_size, seed=0, split="train", holdout=0, data_dir=None,
                 preprocess=None, eval_size=1000):
        self.name, self.split, self.holdout = dataset, split, int(holdout)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.dist = None
        if dataset in TOY_DATASETS:
            self.kind = "points"
            self.dist = toy_dataset(dataset)
            self.shape = (2,)
            self.batches_per_epoch = 0
            self.held_out = self.dist.sample(max(self.holdout, eval_size),
                                             rng=step_rng(self.seed, 0, STREAMS["held_out"]))
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
            try:  # the other split when it is at hand (never downloaded for this)
                held = self._mnist(data_dir, other, download=False)
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
    def _mnist(data_dir, split, download=True):
        """``load_mnist`` from ``data_dir`` (the IDX files' folder, or a folder holding
        ``mnist/``); without it, ``$SCRATCHGEN_DATA/mnist`` or ``~/.cache/scratchgen/mnist``."""
        root = None
        if data_dir is not None:
            root = Path(data_dir).expanduser()
            if not root.is_dir():
                raise UsageError(f"--data-dir {root}: no such folder")
            if not any(root.glob("*-idx?-ubyte*")) and (root / "mnist").is_dir():
                root = root / "mnist"
        return load_mnist(root, split=split, download=download)

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


# ---- run directory -------------------------------------------------------------------------------
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
    """Drop metric lines logged after ``step`` (they belong to an interrupted future) and a
    torn last line; return the wall time of the last line kept (resumed runs count on)."""
    if not path.exists():
        return 0.0
    keep, t = [], 0.0
    for ln in path.read_text().splitlines():
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError:
            continue
        if rec.get("step", 0) <= step:
            keep.append(ln)
            t = rec.get("time", t)
    path.write_text("".join(ln + "\n" for ln in keep))
    return float(t)


def _resolve_schedule(sched, total):
    """Fill in the cadences left open: log 200 times, evaluate 5 times, checkpoint 10 times
    over ``total`` steps; keep 3 checkpoints. Stored resolved, so a resumed run keeps them."""
    auto = {"log_every": max(1, total // 200), "eval_every": max(1, total // 5),
            "ckpt_every": max(1, total // 10), "keep_checkpoints": 3}
    out = {}
    for key, default in auto.items():
        value = sched.get(key)
        value = default if value is None else int(value)
        if value < 1:
            raise UsageError(f"{key} must be >= 1, got {value}")
        out[key] = value
    return out


def _fresh_dir(path):
    """``path``, or ``path-2``, ``path-3``, ... if it exists."""
    k, p = 1, path
    while p.exists():
        k += 1
        p = path.with_name(f"{path.name}-{k}")
    return p


def _epochs_to_steps(epochs, data, dataset):
    if not data.batches_per_epoch:
        raise UsageError(f"--epochs needs a finite data set; {dataset} is sampled afresh each "
                         "step: give --steps")
    if int(epochs) < 1:
        raise UsageError(f"--epochs must be positive, got {epochs}")
    return int(epochs) * data.batches_per_epoch


def read_config(run_dir):
    """A run directory's ``config.json``; names what is missing or unreadable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run directory not found: {run_dir}")
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise UsageError(f"{run_dir}: no config.json there (not a scratchgen run directory)")
    try:
        return json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{cfg_path}: not valid JSON ({e})") from e


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
        if k not in state.get("optimizers", {}):
            raise UsageError(f"{path}: checkpoint has no optimiser {k!r}")
        o.load_state_dict(state["optimizers"][k])
    task.load_state_dict(state.get("task", {}))
    return int(state["step"])


def save_checkpoint(task, run_dir, step, keep):
    """Write ``ckpt-{step:08d}.npz`` (atomic) and delete all but the newest ``keep``."""
    path = Path(run_dir) / f"ckpt-{step:08d}.npz"
    sg.save(_state(task, step), path)
    for old in checkpoints(run_dir)[:-keep]:
        old.unlink()
    return path


STREAMS = {"train": 1, "eval": 2, "plots": 3, "held_out": 4}


def step_rng(seed, step, stream=1):
    """The Generator for ``step``'s ``stream`` (1 training, 2 evaluation, 3 plots, 4 the toy
    held-out set): ``SeedSequence([seed, step], spawn_key=(stream,))``. The spawn key pads the
    entropy to 5 words, so these never coincide with the data layer's plain
    ``default_rng([seed, ...])`` streams (at most 4 words)."""
    ss = np.random.SeedSequence([int(seed), int(step)], spawn_key=(int(stream),))
    return np.random.default_rng(ss)


# ---- progress ------------------------------------------------------------------------------------
class _Progress:
    """tqdm with the live loss terms on a terminal; otherwise plain lines
    ``step 100/2000  loss 1.234  ...  (12.3 it/s)``: after the first step, every ``every``
    steps, at least every ``PLAIN_SECONDS`` and at the last step."""

    PLAIN_SECONDS = 30.0

    def __init__(self, start, total, every, enabled=None):
        self.tty = sys.stdout.isatty() if enabled is None else enabled
        self.total, self.every, self.start = total, max(1, every), start
        self.t0 = self.last = time.time()
        self.bar = None
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, dynamic_ncols=True, file=sys.stdout)

    def update(self, step, logs):
        if self.bar is not None:
            self.bar.update(1)
            if step % 10 == 0 or step == self.total:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
            return
        now = time.time()
        if (step == self.start + 1 or step % self.every == 0 or step == self.total
                or now - self.last >= self.PLAIN_SECONDS):
            self.last = now
            rate = (step - self.start) / max(now - self.t0, 1e-9)
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


# ---- the loop ------------------------------------------------------------------------------------
def run(model=None, dataset=None, split="train", holdout=0, steps=None, epochs=None,
        batch_size=None, lr=None, seed=0, out=None, resume=None, data_dir=None, overrides=None,
        log_every=None, eval_every=None, ckpt_every=None, keep_checkpoints=None, progress=None,
        final_plots=True, argv=None):
    """Train ``model`` (a registered task name) and return the run directory.

    ``dataset``: a toy name, ``'mnist'`` or a .npy/.npz path (default: the task's).
    ``steps`` (default 2000) or ``epochs`` (finite data only). ``overrides``: hyperparameters
    by name (unknown keys raise :class:`UsageError` listing the task's). ``out``: the run
    directory (default ``runs/MODEL-DATASET-TIME``). Cadences left None are resolved as in
    :func:`_resolve_schedule`. ``progress``: tqdm bar (True), plain lines (False), or a bar
    when stdout is a terminal (None).

    With ``resume`` (a run directory) everything comes from its ``config.json`` and latest
    checkpoint; ``steps``/``epochs`` may extend the run, ``data_dir`` and the cadences may
    change. Raises :class:`TrainingStopped` on SIGINT/SIGTERM (after saving a checkpoint) or
    on a non-finite loss (keeping the last good checkpoint).
    """
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise UsageError(f"--data-dir {data_dir}: no such folder")
    schedule = {"log_every": log_every, "eval_every": eval_every, "ckpt_every": ckpt_every,
                "keep_checkpoints": keep_checkpoints}
    if resume is not None:
        run_dir = Path(resume)
        config = read_config(run_dir)
        ckpt = latest_checkpoint(run_dir)
        if data_dir is not None:  # the data may have moved
            config["data_dir"] = str(data_dir)
        config.setdefault("schedule", {}).update(
            {k: v for k, v in schedule.items() if v is not None})
        task, data = build(config)
        start = restore(task, ckpt)
        if epochs is not None:
            steps = _epochs_to_steps(epochs, data, config["dataset"])
        if steps is not None:
            if int(steps) < start:
                raise UsageError(f"{ckpt} is at step {start}; --steps {steps} would go back")
            config["steps"] = int(steps)
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
        run_dir = Path(out) if out else _fresh_dir(
            Path("runs") / f"{model}-{Path(str(dataset)).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        if checkpoints(run_dir):
            raise UsageError(f"{run_dir} already holds a run; continue it with --resume "
                             f"{run_dir}, or choose another --out")
        task, data = build(config)
        if epochs is not None:
            steps = _epochs_to_steps(epochs, data, dataset)
        config["steps"] = int(steps if steps is not None else DEFAULT_STEPS)
        if config["steps"] < 1:
            raise UsageError(f"--steps must be positive, got {config['steps']}")
        config["data"] = data.describe()
        config["schedule"] = schedule
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").write_text("")
        start = 0
    total = int(config["steps"])
    sched = config["schedule"] = _resolve_schedule(config.get("schedule", {}), total)
    log_every, eval_every, ckpt_every, keep = (
        sched[k] for k in ("log_every", "eval_every", "ckpt_every", "keep_checkpoints"))
    config["backend"] = backend.name
    _write_json(run_dir / "config.json", config)
    metrics_path = run_dir / "metrics.jsonl"
    t_offset = _truncate_metrics(metrics_path, start)
    seed = int(config["seed"])

    stop = {}

    def on_signal(signum, frame):
        if stop and signum == signal.SIGINT:  # a second Ctrl-C: leave now, without saving
            raise KeyboardInterrupt
        stop["signal"] = signum
        print(f"\n{signal.Signals(signum).name}: finishing the current step, then saving a "
              "checkpoint (Ctrl-C again to quit without saving)", file=sys.stderr, flush=True)

    handlers = {}
    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            handlers[s] = signal.signal(s, on_signal)
    except ValueError:  # not the main thread: no signal handling
        handlers = {}
    bar = _Progress(start, total, max(1, total // 20), progress)
    t_start = time.time()
    t0 = t_start - t_offset  # metrics' "time" counts on across resumptions
    step = start
    try:
        with metrics_path.open("a") as mf:
            while step < total:
                logs = task.train_step(step, data.batch_at(step), step_rng(seed, step))
                bad = [k for k, v in logs.items() if not math.isfinite(v)]
                if bad:
                    last = checkpoints(run_dir)
                    where = (f"the last good checkpoint is {last[-1]} (continue from it with "
                             f"scratchgen train --resume {run_dir}, e.g. with a lower --lr)"
                             if last else "no checkpoint was written before it")
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
                    ckpt = save_checkpoint(task, run_dir, step, keep)
                if "signal" in stop:
                    name = signal.Signals(stop["signal"]).name
                    raise TrainingStopped(
                        f"{name}: stopped after step {step}/{total}; checkpoint saved: {ckpt}\n"
                        f"continue with: scratchgen train --resume {run_dir}",
                        128 + stop["signal"], run_dir)
            if not checkpoints(run_dir) or checkpoints(run_dir)[-1].name != f"ckpt-{step:08d}.npz":
                save_checkpoint(task, run_dir, step, keep)
            ev = task.evaluate(step_rng(seed, step, 2))
            mf.write(json.dumps({"kind": "eval", "step": step, **ev},
                                default=_json_default) + "\n")
    except KeyboardInterrupt:
        last = checkpoints(run_dir)
        raise TrainingStopped(
            f"interrupted during step {step + 1}, not saved; " +
            (f"the last checkpoint is {last[-1]} (continue with: scratchgen train --resume "
             f"{run_dir})" if last else "no checkpoint was written"), 130, run_dir) from None
    finally:
        bar.close()
        for s, h in handlers.items():
            signal.signal(s, h)
    _write_json(run_dir / "eval.json", {"step": step, **ev})
    written = []
    if final_plots:
        written = finish_plots(task, run_dir, seed, step)
    print(f"done: {config['model']} on {config['dataset']}, step {step}/{total} "
          f"({time.time() - t_start:.1f} s)")
    print("final metrics: " + "  ".join(f"{k} {v:.4g}" for k, v in ev.items()))
    print(f"run directory: {run_dir}")
    print(f"  metrics: {run_dir / 'metrics.jsonl'}, {run_dir / 'eval.json'}")
    if written:
        print("  plots:   " + ", ".join(str(p) for p in written))
    print(f"  next:    scratchgen sample {run_dir} -n 64 -o samples.png  |  scratchgen eval "
          f"{run_dir}  |  scratchgen train --resume {run_dir} --steps {2 * total}")
    return run_dir


def finish_plots(task, run_dir, seed, step):
    written = list(task.plots(run_dir, step_rng(seed, step, 3)) or [])
    mp = Path(run_dir) / "metrics.jsonl"
    if mp.exists() and mp.stat().st_size:
        written.append(plots.metric_curves(mp, Path(run_dir) / "curves.png"))
    return written


def load_run(run_dir):
    """(task, data, config, step) restored from a run directory's latest checkpoint."""
    config = read_config(run_dir)
    task, data = build(config)
    step = restore(task, latest_checkpoint(run_dir))
    return task, data, config, step
