"""The training harness shared by every model: run specification, data, seeded randomness, run
directory, logging, checkpoints, resume, signals, evaluation and figures.

    run_dir = run("wgan-gp", dataset="8gaussians", steps=2000)
    run_dir = run(resume=run_dir, steps=4000)

A run is opened (:func:`open_run`: a new run and a resumed one take the same path), trained
(:func:`train`: the loop and its signals) and finished (:func:`finish`: evaluation, figures,
summary). A run directory (:class:`~scratchgen.rundir.RunDir`, locked while written) holds

* ``config.json``: the :class:`~scratchgen.runconfig.RunConfig` (model, dataset, split, holdout,
  seed, steps, the task's checked hyperparameters, the resolved ``schedule``, absolute data
  paths, the ``history`` of resumptions) and a description (version, backend, command line,
  the data's shape);
* ``metrics.jsonl``: one JSON line per logged step, ``{"kind": "train", "step", "time", <loss
  terms>}``, and one per evaluation, ``{"kind": "eval", "step", <metrics>}``; ``step`` counts
  completed steps, ``time`` is wall seconds since the run began (across resumptions);
* ``ckpt-XXXXXXXX.npz`` (the last ``keep_checkpoints``, only ever from finite state): step,
  batch index, modules, optimisers and ``task.state_dict()`` after step XXXXXXXX, and the
  run's settings (``RunConfig.settings()``: model, seed, split, holdout, hyperparameters);
* ``eval.json`` (the latest evaluation), ``curves.png`` and the task's figures, redrawn at
  every evaluation (an image GAN's ``progress.png`` gains a row each time, kept in
  ``progress.npz``).

Step ``k`` (0-based) trains on the data's next ``task.batches_per_step(k)`` batches (the harness
keeps their index) with ``step_rng(seed, k)``; modules are initialised after
``sg.manual_seed(seed)``. A checkpoint after step ``k`` therefore holds all the state, and a
run resumed from it repeats the uninterrupted run bit for bit (on the CPU backends); resuming
drops the metric lines logged after the checkpoint.

``config.json`` is the one source of truth for the next step: on resume the checkpoint's
recorded settings are compared with it; a learning rate that differs (``--lr``, or the file
edited) is applied to the optimisers' state, any other difference is refused naming the key,
and a checkpoint of another model is refused. A run stopped before its first checkpoint
starts again from step 0.

SIGINT / SIGTERM finish the current step, save a checkpoint and raise :class:`TrainingStopped`
(``exit_code`` 130 / 143, the ``scratchgen`` command's exit status); a second Ctrl-C quits at
once without saving. A non-finite loss term or weight stops the run before anything
non-finite is saved (``exit_code`` 3), naming the step, the term and the last good checkpoint.
"""
import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy

import scratchgen as sg
from scratchgen import backend, optim, plots
from scratchgen.autograd.tensor import Tensor
from scratchgen.data import (DATASETS, STREAMS, DataSource, DatasetError, is_array_path,
                             split_array_spec, step_rng)
from scratchgen.rundir import NoCheckpointError, NonFiniteStateError, RunDir, RunDirError
from scratchgen.runconfig import SETTINGS, RunConfig
from scratchgen.spec import (FLAGS, RUN, SCHEDULE, SpecError, absolute, check_option,
                             resolve_schedule)
from scratchgen.tasks import get_task

__all__ = ["run", "open_run", "train", "finish", "load_run", "build", "TrainingStopped",
           "UsageError", "DataSource", "step_rng", "STREAMS", "DATASETS"]
CHECKPOINT_FORMAT = 2  # 2: the harness's batch index is saved (1, no "format": tasks counted)
RESUMABLE = ("steps", "epochs", "data_dir", "lr") + SCHEDULE


class TrainingStopped(Exception):
    """The run stopped early; ``exit_code`` says why (130 SIGINT, 143 SIGTERM, 3 non-finite)."""

    def __init__(self, message, exit_code, run_dir):
        super().__init__(message)
        self.exit_code = exit_code
        self.run_dir = run_dir


class UsageError(ValueError):
    """A bad name, path or option given by the user."""


# ---- the run specification -------------------------------------------------------------------
def new_config(model, overrides=None, argv=None, **options):
    """A new run's :class:`RunConfig` from options (text or values; each checked, nothing
    read or written). ``options``: ``dataset``, ``batch_size``, ``lr`` and the run settings
    of :data:`scratchgen.spec.RUN`; ``overrides``: hyperparameters by name."""
    if model is None:
        raise UsageError("give a model name")
    task = get_task(model)
    unknown = set(options) - set(RUN.params) - {"dataset", "batch_size", "lr", "data_dir"}
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(sorted(unknown))}")
    dataset = options.pop("dataset", None) or task.default_dataset
    if dataset not in task.datasets and not is_array_path(dataset):
        raise UsageError(f"{model} cannot train on {dataset!r}; choose one of "
                         f"{', '.join(task.datasets)} (or a .npy/.npz file)")
    values = dict(overrides or {})
    for key in ("batch_size", "lr"):
        if options.get(key) is not None:
            if key not in task.spec:
                raise UsageError(f"{model} takes no {FLAGS[key]}; its hyperparameters are "
                                 f"{', '.join(task.spec.params)}")
            values[key] = task.spec.params[key].parse(options.pop(key), FLAGS[key])
    run = {k: check_option(k, v) for k, v in options.items()
           if k in RUN.params and v is not None}
    _check_folder(options.get("data_dir"))
    data_path = absolute(dataset) if is_array_path(dataset) else dataset  # runs from any cwd
    config = RunConfig(model=model, dataset=data_path,
                       hyperparameters=task.spec.build(values, dataset),
                       data_dir=absolute(options.get("data_dir")),
                       schedule={k: run.pop(k, None) for k in SCHEDULE},
                       meta={"version": sg.__version__, "argv": argv})
    config.pending["epochs"] = run.pop("epochs", None)
    config.steps = task.default_steps(dataset)
    for key, value in run.items():
        setattr(config, key, value)
    return config


def resumed_config(stored, origin, **options):
    """A stored run's :class:`RunConfig` with the changes a resume may make: more ``steps``
    (or ``epochs``), another ``data_dir``, the cadences, a lower ``lr`` (recorded in
    ``history`` when it changes). Any other option is refused, naming it; so is a stored file
    without ``steps`` unless ``steps``/``epochs`` say where the run ends."""
    fixed = [k for k, v in options.items() if v is not None and v != {} and k not in RESUMABLE]
    if fixed:
        names = {"overrides": "--set", "out": "--out"}
        raise UsageError(f"{', '.join(names.get(k) or FLAGS.get(k, '--' + k) for k in fixed)} "
                         f"cannot change when resuming (the run's settings are in {origin}); "
                         "start a new run with --out instead")
    config = relocate(RunConfig.from_json(stored, origin=str(origin)), options.get("data_dir"))
    config.schedule.update({k: check_option(k, options[k]) for k in SCHEDULE
                            if options.get(k) is not None})
    for key in ("steps", "epochs"):
        config.pending[key] = None if options.get(key) is None else check_option(key, options[key])
    if config.steps is None and config.pending["steps"] is None and \
            config.pending["epochs"] is None:
        raise UsageError(f"{origin}: no steps (where the run ends); give --steps N, or add "
                         '"steps": N to it')
    if options.get("lr") is not None:
        _lower_lr(config, options["lr"])
    return config


def _lower_lr(config, value):
    hp = config.hyperparameters
    if "lr" not in hp:
        raise UsageError(f"{config.model} takes no --lr")
    lr = get_task(config.model).spec.params["lr"].parse(value, "--lr")
    if lr > hp.lr:
        raise UsageError(f"--lr {value}: resuming may only lower the learning rate (the run's "
                         f"is {hp.lr:g}); start a new run to raise it")
    if lr < hp.lr:  # recorded in history when the run opens (the step is known then)
        config.hyperparameters = hp.replace(lr=lr)
        config.pending["lr_was"] = hp.lr


def relocate(config, data_dir):
    """Point a stored run at data moved to ``data_dir`` (MNIST's folder, or the folder now
    holding the run's .npy/.npz file)."""
    if data_dir is None:
        return config
    _check_folder(data_dir)
    config.data_dir = absolute(data_dir)
    if is_array_path(config.dataset):
        path, key = split_array_spec(config.dataset)
        config.dataset = str(Path(config.data_dir) / Path(path).name) + (
            "" if key is None else ":" + key)
    return config


def _check_folder(data_dir):
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise UsageError(f"--data-dir {data_dir}: no such folder")


# ---- building, saving and restoring ------------------------------------------------------------
def build(config):
    """(task, data) of a :class:`RunConfig`, the modules initialised from its seed. A model
    that cannot take the data is refused here, before anything is written."""
    task_cls, hp = get_task(config.model), config.hyperparameters
    data = DataSource(config.dataset, hp["batch_size"] if "batch_size" in hp else 1,
                      seed=config.seed, split=config.split, holdout=config.holdout,
                      data_dir=config.data_dir,
                      preprocess=hp["preprocess"] if "preprocess" in hp else None)
    try:
        task_cls.check_data(data.kind, data.shape)
    except ValueError as e:
        raise UsageError(f"--dataset {config.dataset}: {e}") from None
    sg.manual_seed(config.seed)
    return task_cls(hp, data), data


def _state(task, step, batch, config):
    return {"format": CHECKPOINT_FORMAT, "step": step, "batch": batch,
            "run": json.dumps(config.settings(), sort_keys=True),
            "modules": {k: m.state_dict() for k, m in task.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in task.optimizers().items()},
            "task": task.state_dict()}


def restore(task, path, state, version=None, config=None):
    """Load a checkpoint's ``state`` into ``task``; returns ``(step, batch index)``.
    Checkpoints of the first format (no batch index) continue from the batches the task
    counted (``real_batches``), else one per step. Architecture mismatches name the
    parameter; with the run's ``config``, a checkpoint of another model, or one trained with
    other settings than ``config`` holds (lr aside), is refused."""
    recorded = _recorded(state, path)
    if config is not None and recorded.get("model", config.model) != config.model:
        raise UsageError(f"{path}: a checkpoint of a {recorded['model']} run, not of this "
                         f"{config.model} run; remove it (or resume the run it belongs to)")
    try:
        task.check_checkpoint(state.get("modules", {}))
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None
    for k, m in task.modules().items():
        if k not in state.get("modules", {}):
            raise UsageError(f"{path}: checkpoint has no module {k!r} (it has "
                             f"{', '.join(state.get('modules', {}))}); was it written by "
                             f"another model (scratchgen {version})?")
        try:
            m.load_state_dict(state["modules"][k])
        except (RuntimeError, ValueError) as e:
            raise UsageError(f"{path}: checkpoint does not fit module {k!r}: {e}") from e
    for k, o in task.optimizers().items():
        if k not in state.get("optimizers", {}):
            raise UsageError(f"{path}: checkpoint has no optimiser {k!r} (written by "
                             f"scratchgen {version})")
        o.load_state_dict(state["optimizers"][k])
    task.load_state_dict(state.get("task", {}))
    if config is not None:
        _check_settings(path, recorded, config)
    step = int(state["step"])
    return step, int(state.get("batch", state.get("task", {}).get("real_batches", step)))


def load_run(run_dir, data_dir=None):
    """(task, data, config, step) restored from a run directory's newest intact checkpoint,
    read without taking the lock (``scratchgen eval``/``sample`` hold its shared lock around
    this, so they refuse while the run trains); ``data_dir`` relocates the run's data."""
    rd = RunDir.open(run_dir, readonly=True)
    config = relocate(RunConfig.from_json(rd.read_config(), origin=str(rd.path / "config.json")),
                      data_dir)
    task, data = build(config)
    path, state = rd.load_latest(warn=_warn)
    step, _ = restore(task, path, state, config.meta.get("version"), config)
    return task, data, config, step


def _warn(message):
    print(message, file=sys.stderr, flush=True)


# ---- opening a run: new or resumed, one path -----------------------------------------------------
@dataclass
class Run:
    """An open run: its locked directory, specification, task, data and position."""
    dir: RunDir
    config: RunConfig
    task: object
    data: DataSource
    step: int
    batch: int
    t0: float  # wall time the run began (across resumptions)
    schedules: list  # lr schedules stepped once per training step (``lr_schedule``)


def open_run(model=None, resume=None, out=None, argv=None, overrides=None, **options):
    """A new run of ``model`` into ``out`` (default ``runs/MODEL-DATASET-TIME``), or the run
    in ``resume`` continued from its newest intact checkpoint. Everything is checked before
    the directory is created or changed."""
    if resume is not None:
        if model is not None:
            raise UsageError(f"give either MODEL or --resume DIR, not both (the run in "
                             f"{resume} knows its model)")
        stored = RunDir.open(resume, readonly=True)
        config = resumed_config(stored.read_config(), stored.path / "config.json", out=out,
                                overrides=overrides, **options)
    else:
        config = new_config(model, overrides, argv, **options)
    task, data = build(config)
    rd = RunDir.open(resume) if resume is not None else RunDir.create(
        out or _default_out(config))
    try:
        step, batch = _restore_latest(rd, task, config) if resume is not None else (0, 0)
        _settle(config, data, step)
        rd.write_config(config.to_json())
        t_offset = rd.truncate_metrics(step) if resume is not None else 0.0
    except BaseException:
        rd.close()
        raise
    return Run(rd, config, task, data, step, batch, time.time() - t_offset,
               lr_schedules(task, config, step))


def lr_schedules(task, config, start):
    """One ``lr_schedule`` per optimiser over the run's ``steps``, at step ``start``
    (:func:`task_schedules` of the run's settings)."""
    hp = config.hyperparameters
    return task_schedules(task, hp["lr_schedule"] if "lr_schedule" in hp else "constant",
                          config.steps, start)


def task_schedules(task, name, steps, start=0):
    """Schedule ``name`` for each of ``task``'s optimisers over ``steps``, at step ``start``;
    step them once after each training step. The rate is a closed form of the step (the
    optimisers' checkpointed ``initial_lr`` is the base), so a resumed run repeats the
    uninterrupted one. 'constant' and schedules a task runs itself (the VAE's 'burda') need
    none."""
    if name == "constant" or name not in optim.lr_scheduler.SCHEDULES:
        return []
    return [optim.build_scheduler(name, opt, steps, last_epoch=start - 1)
            for opt in task.optimizers().values()]


def _default_out(config):
    stem = Path(config.dataset.split(":")[0]).stem
    path = Path("runs") / f"{config.model}-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    k, p = 1, path
    while p.exists():
        k += 1
        p = path.with_name(f"{path.name}-{k}")
    return p


def _restore_latest(rd, task, config):
    """(step, batch) of the run's newest intact checkpoint, restored into ``task`` with the
    settings of ``config`` (see the module doc); (0, 0) for a run that has none yet."""
    try:
        path, state = rd.load_latest(warn=_warn)
    except NoCheckpointError:
        _warn(f"note: {rd.path} has no checkpoint yet (stopped before its first): training "
              "it from step 0")
        step, batch = 0, 0
    else:
        version = config.meta.get("version")
        step, batch = restore(task, path, state, version, config)
        if "format" not in state:
            _warn(f"warning: {path.name} has checkpoint format 1 (scratchgen {version}); "
                  f"continuing from training batch {batch} (a toy-data GAN draws its batches "
                  "differently now, so it will not repeat that version's run exactly)")
        hp = config.hyperparameters
        if "lr" in hp:  # config.json's rate replaces the one in the optimisers' state
            trained = _recorded(state).get("hyperparameters", {})
            was = trained.get("lr", config.pending.get("lr_was", hp.lr))
            if was != hp.lr and "lr_was" not in config.pending:
                _warn(f"note: training on at lr {hp.lr:g} as {rd.path / 'config.json'} says "
                      f"({path.name} was trained at {was:g})")
            _set_lr(task, was, hp.lr)
    if "lr_was" in config.pending:
        config.history.append({"step": step, "lr": config.hyperparameters.lr})
    return step, batch


def _recorded(state, path=None):
    """The run settings a checkpoint records (``{}`` for one written before they were)."""
    if "run" not in state:
        return {}
    try:
        recorded = json.loads(str(state["run"]))
        if isinstance(recorded, dict) and isinstance(recorded.get("hyperparameters"), dict):
            return recorded
    except ValueError:
        pass
    raise UsageError(f"{path}: its run settings are unreadable; remove it to resume from an "
                     "older checkpoint")


def _check_settings(path, recorded, config):
    """Refuse a checkpoint whose settings other than lr differ from ``config`` (a hand-edited
    config.json): the run would go on under settings its record does not show."""
    now = config.settings()
    for key in SETTINGS[1:]:
        if key in recorded and recorded[key] != now[key]:
            _changed(path, key, now[key], recorded[key])
    for key, value in now["hyperparameters"].items():
        if key != "lr" and key in recorded.get("hyperparameters", {}) and \
                recorded["hyperparameters"][key] != value:
            _changed(path, f"hyperparameters.{key}", value, recorded["hyperparameters"][key])


def _changed(path, key, now, then):
    raise UsageError(f"{path.parent / 'config.json'}: {key} is {json.dumps(now)} but "
                     f"{path.name} was trained with {json.dumps(then)}; only lr may change "
                     "within a run: restore it, or start a new run with --out")


def _set_lr(task, was, lr):
    """Every optimiser's rates (and ``initial_lr``, the base of an lr_schedule) scaled from the
    run's rate ``was`` to ``lr``; a group at exactly ``was`` gets exactly ``lr``."""
    if was == lr:
        return
    for opt in task.optimizers().values():
        for group in opt.param_groups:
            for key in ("lr", "initial_lr"):
                if key in group:
                    group[key] = lr if group[key] == was else group[key] * (lr / was)


def _settle(config, data, start):
    """Resolve steps (from epochs), the schedule and the description for ``config.json``."""
    epochs, steps = config.pending.get("epochs"), config.pending.get("steps")
    if epochs is not None:
        if not data.batches_per_epoch:
            raise UsageError(f"--epochs needs a finite data set; {config.dataset} is sampled "
                             "afresh each step: give --steps")
        steps = epochs * data.batches_per_epoch
    if steps is not None:
        if steps < start:
            raise UsageError(f"the run is at step {start}; --steps {steps} would go back")
        config.steps = steps
    config.schedule = resolve_schedule(config.schedule, config.steps)
    config.meta.update(backend=backend.name, data=data.describe())


# ---- the loop ----------------------------------------------------------------------------------
def fetch_scalars(logs):
    """A step's logged terms as Python floats, fetched from the device in one transfer."""
    values = [v.array if isinstance(v, Tensor) else v for v in logs.values()]
    on_device = [i for i, v in enumerate(values) if backend.is_array(v)]
    if on_device:
        xp = backend.xp
        host = backend.to_numpy(xp.stack([xp.asarray(values[i], dtype=xp.float64).reshape(())
                                          for i in on_device]))
        for i, v in zip(on_device, host):
            values[i] = v
    return {k: float(v) for k, v in zip(logs, values)}


class _Signals:
    """SIGINT/SIGTERM handlers for the loop: the first asks to stop after the current step,
    a second Ctrl-C quits at once (KeyboardInterrupt)."""

    def __init__(self):
        self.received, self.saved = None, {}

    def __enter__(self):
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                self.saved[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread: no signal handling
            pass
        return self

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        print(f"\n{signal.Signals(signum).name}: finishing the current step, then saving a "
              "checkpoint (Ctrl-C again to quit without saving)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for s, h in self.saved.items():
            signal.signal(s, h)


def train(r, progress=None, figures=True):
    """Train the open run ``r`` up to its ``steps``: log, evaluate (with figures), checkpoint;
    stop cleanly on a signal or a non-finite value (:class:`TrainingStopped`)."""
    total, sched = r.config.steps, r.config.schedule
    bar = _Progress(r.step, total, max(1, total // 20), progress)
    try:
        with _Signals() as sig:
            while r.step < total:
                logs = _step(r)
                if r.step % sched["log_every"] == 0 or r.step == total:
                    r.dir.append_metrics([{"kind": "train", "step": r.step,
                                           "time": round(time.time() - r.t0, 3), **logs}])
                bar.update(r.step, logs)
                if r.step % sched["eval_every"] == 0 and r.step != total:
                    ev = evaluate(r, figures)
                    bar.write(f"eval @ {r.step}: " + _terms(ev))
                if r.step % sched["ckpt_every"] == 0 or sig.received:
                    ckpt = _checkpoint(r)
                if sig.received:
                    raise TrainingStopped(
                        f"{signal.Signals(sig.received).name}: stopped after step {r.step}/"
                        f"{total}; checkpoint saved: {ckpt}\ncontinue with: scratchgen train "
                        f"--resume {r.dir.path}", 128 + sig.received, r.dir.path)
    except KeyboardInterrupt:
        raise TrainingStopped(f"interrupted during step {r.step + 1}, not saved; "
                              + _last_good(r), 130, r.dir.path) from None
    finally:
        bar.close()


def take_step(task, data, seed, step, batch):
    """Training step ``step`` as the harness runs it: the task's batches from index ``batch``
    on, the step's rng; returns (the logged terms as floats, the next batch index)."""
    n = task.batches_per_step(step)
    with numpy.errstate(all="ignore"):  # a diverging step is reported by the loop, in words
        logs = task.train_step(step, data.batches(batch, n), step_rng(seed, step))
        return fetch_scalars(logs), batch + n


def _step(r):
    logs, batch = take_step(r.task, r.data, r.config.seed, r.step, r.batch)
    bad = [k for k, v in logs.items() if not math.isfinite(v)]
    if bad:
        raise TrainingStopped(f"stopped: loss term {bad[0]!r} is {logs[bad[0]]} at step "
                              f"{r.step + 1} (all terms: {logs}); {_last_good(r)}", 3,
                              r.dir.path)
    r.step, r.batch = r.step + 1, batch
    for schedule in r.schedules:
        schedule.step()
    return logs


def _checkpoint(r):
    try:
        return r.dir.save_checkpoint(r.step, _state(r.task, r.step, r.batch, r.config),
                                     r.config.schedule["keep_checkpoints"])
    except NonFiniteStateError as e:
        raise TrainingStopped(f"stopped: {e.key} holds NaN or infinite values after step "
                              f"{r.step}, not saved; {_last_good(r)}", 3, r.dir.path) from None


def _last_good(r):
    last = r.dir.checkpoints()
    if not last:
        return "no checkpoint was written before it (start a new run, e.g. with a lower --lr)"
    return (f"the last good checkpoint is {last[-1]} (continue from it with scratchgen train "
            f"--resume {r.dir.path}, e.g. with a lower --lr)")


def evaluate(r, figures=True):
    """Evaluate at the current step: a metrics line, ``eval.json`` and (``figures``) the
    task's figures and ``curves.png``, each written atomically."""
    ev = fetch_scalars(r.task.evaluate(step_rng(r.config.seed, r.step, STREAMS["eval"])))
    r.dir.append_metrics([{"kind": "eval", "step": r.step, **ev}])
    r.dir.write_json("eval.json", {"step": r.step, **ev})
    if figures:
        draw_figures(r.task, r.dir.path, r.config.seed, r.step)
    return ev


def draw_figures(task, run_dir, seed, step):
    """The task's figures and the metric curves; returns their paths."""
    written = list(task.plots(run_dir, step_rng(seed, step, STREAMS["plots"]), step) or [])
    metrics = Path(run_dir) / "metrics.jsonl"
    if metrics.exists() and metrics.stat().st_size:
        written.append(plots.metric_curves(metrics, Path(run_dir) / "curves.png"))
    return written


def finish(r, figures=True, t_start=None):
    """The end of a run: a final checkpoint and evaluation (not repeated when the run had
    already finished), figures and a summary on stdout."""
    done = [e for e in r.dir.read_metrics()
            if e.get("kind") == "eval" and e.get("step") == r.step]
    if done:
        ev = {k: v for k, v in done[-1].items() if k not in ("kind", "step")}
    else:
        if not any(p.name == f"ckpt-{r.step:08d}.npz" for p in r.dir.checkpoints()):
            _checkpoint(r)
        ev = evaluate(r, figures=False)
    written = draw_figures(r.task, r.dir.path, r.config.seed, r.step) if figures else []
    d, c = r.dir.path, r.config
    took = "" if t_start is None else f" ({time.time() - t_start:.1f} s)"
    print(f"done: {c.model} on {c.dataset}, step {r.step}/{c.steps}{took}")
    print("final metrics: " + _terms(ev))
    print(f"run directory: {d}")
    print(f"  metrics: {d / 'metrics.jsonl'}, {d / 'eval.json'}")
    if written:
        print("  plots:   " + ", ".join(str(p) for p in written))
    print(f"  next:    scratchgen sample {d}  |  scratchgen eval {d}  |  scratchgen train "
          f"--resume {d} --steps {2 * c.steps}")
    return ev


def run(model=None, *, resume=None, out=None, progress=None, final_plots=True, argv=None,
        overrides=None, **options):
    """Train ``model`` (a registered task name) and return the run directory (a Path).

    ``options``: ``dataset`` (a toy name, ``'mnist'`` or a .npy/.npz path, ``file.npz:key``;
    default the task's), ``steps`` (default the task's for the dataset, else 2000) or
    ``epochs`` (finite data only),
    ``batch_size``, ``lr``, ``seed``, ``split``, ``holdout``, ``data_dir``, the cadences
    ``log_every``, ``eval_every``, ``ckpt_every``, ``keep_checkpoints`` (None: automatic, see
    :func:`~scratchgen.spec.resolve_schedule`); ``overrides``: hyperparameters by name. Text
    or values: everything is checked against its declaration first. ``progress``: tqdm bar
    (True), plain lines (False), or a bar when stdout is a terminal (None).

    With ``resume`` (a run directory) the settings come from its ``config.json``; ``steps``/
    ``epochs`` may extend the run, ``data_dir`` and the cadences change and ``lr`` go down.
    Raises :class:`TrainingStopped` on SIGINT/SIGTERM (after saving a checkpoint) or on a
    non-finite value (keeping the last good checkpoint).
    """
    t_start = time.time()
    r = open_run(model, resume, out, argv, overrides, **options)
    with r.dir:
        train(r, progress, figures=final_plots)
        finish(r, figures=final_plots, t_start=t_start)
    return r.dir.path


def _terms(values):
    return "  ".join(f"{k} {v:.4g}" for k, v in values.items())


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
            print(f"step {step}/{self.total}  {_terms(logs)}  ({rate:.1f} it/s)", flush=True)

    def write(self, text):
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


__all__ += ["take_step", "new_config", "resumed_config", "relocate", "restore", "evaluate", "draw_figures",
            "fetch_scalars", "Run", "RunDirError", "SpecError", "DatasetError"]
