"""A study file (TOML) and the runs it stands for, every one checked before anything starts.

    model = "wgan-gp"            # or a list of models: one more axis of the grid
    dataset = "8gaussians"
    steps = 60                   # or epochs = N; default: the model's for the dataset
    seeds = [0, 1]               # default [0]
    [set]                        # fixed --set values
    width = 16
    [set.wgan]                   # fixed values for one model of a list only
    critic_burst = true
    [grid]                       # every combination of these --set keys
    lam = [0.1, 1.0]

Optional top-level keys: the run settings of ``scratchgen train`` (``data_dir``, ``split``,
``holdout``, ``log_every``, ``eval_every``, ``ckpt_every``, ``keep_checkpoints``) and, for the
summary, ``correlate_with`` (an evaluation metric, e.g. ``"w1"``) with ``correlate`` (the
metrics to rank-correlate with it over each run's evaluations; default all others).

Values go through the same declarations as ``scratchgen train``'s options and ``--set``
(:mod:`scratchgen.spec`, :func:`scratchgen.trainer.new_config`), so a bad key or value in any
grid point is one :class:`StudyError` line naming the file, the table and the key.

>>> s = parse_study({"model": "wgan-gp", "dataset": "8gaussians", "steps": 60,
...                  "seeds": [0, 1], "set": {"width": 16}, "grid": {"lam": [0.1, 1.0]}})
>>> [r.name for r in s.runs]
['lam=0.1_seed0', 'lam=0.1_seed1', 'lam=1.0_seed0', 'lam=1.0_seed1']
>>> s.runs[0].argv
['wgan-gp', '--dataset', '8gaussians', '--steps', '60', '--seed', '0', '--set', 'width=16', '--set', 'lam=0.1']
>>> parse_study({"model": "wgan-gp", "grid": {"lam": [0.1, -1]}}, "s.toml")
Traceback (most recent call last):
...
scratchgen.sweep.study.StudyError: s.toml [grid] lam=-1: out of range; allowed: a number >= 0
"""
import itertools
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from scratchgen.spec import RUN, SpecError, absolute

# top-level keys that are ``scratchgen train`` options, with their command-line flags
OPTIONS = {"dataset": "--dataset", "steps": "--steps", "epochs": "--epochs",
           "split": "--split", "holdout": "--holdout", "data_dir": "--data-dir",
           "log_every": "--log-every", "eval_every": "--eval-every",
           "ckpt_every": "--ckpt-every", "keep_checkpoints": "--keep-checkpoints"}
KEYS = ("model", "seeds", "set", "grid", "correlate_with", "correlate") + tuple(OPTIONS)


class StudyError(ValueError):
    """A study file that cannot run: one line naming the file, where and what is allowed."""


@dataclass
class RunPlan:
    """One run of a study: ``DIR/runs/<name>``, trained by ``scratchgen train <argv> --out``."""
    name: str
    model: str
    point: dict      # the grid point's values by axis (``model`` too, when it varies)
    seed: int
    argv: list       # ``scratchgen train`` arguments, without ``--out``

    @property
    def label(self):
        """The grid point in words: ``lam=0.1 width=16`` (``-`` where nothing varies)."""
        return point_label(self.point)


@dataclass
class Study:
    source: str          # the file (for messages)
    raw: dict            # the parsed TOML
    axes: list           # grid axes in file order (``model`` first when it varies)
    seeds: list
    runs: list = field(default_factory=list)
    correlate_with: str = None
    correlate: list = None

    def identity(self):
        """What must match for a study directory to be resumed: each run's name and argv."""
        return [{"name": r.name, "argv": r.argv} for r in self.runs]


def point_label(point):
    return " ".join(f"{k}={text(v)}" for k, v in point.items()) or "-"


def text(value):
    """A TOML value as ``--set``/option text that parses back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return str(value)


def _name_part(key, value):
    v = ",".join(map(text, value)) if isinstance(value, (list, tuple)) else text(value)
    v = re.sub(r"[^A-Za-z0-9.,+-]", "-", v)
    return v if key == "model" else f"{key}={v}"


def load_study(path):
    """The :class:`Study` of a TOML file; every grid point checked (:class:`StudyError`)."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise StudyError(f"{p}: no such study file") from None
    except IsADirectoryError:
        raise StudyError(f"{p}: a folder, not a study file (.toml)") from None
    except UnicodeDecodeError:
        raise StudyError(f"{p}: not a text file; give a TOML study file") from None
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"{p}: not valid TOML ({e})") from None
    except OSError as e:
        from scratchgen.rundir import os_error_message
        raise StudyError(os_error_message(e, p)) from None
    return parse_study(raw, str(p), base=p.parent)


def parse_study(raw, source="study", base=None):
    """The :class:`Study` of a parsed TOML dict (``base``: the folder relative data paths in
    it start from; default the working directory)."""
    def fail(msg):
        raise StudyError(f"{source}: {msg}")

    unknown = [k for k in raw if k not in KEYS]
    if unknown:
        fail(f"unknown key {unknown[0]!r}; a study has {', '.join(KEYS)}")
    if "model" not in raw:
        fail("no model; give model = \"wgan-gp\" (or a list of models)")
    if "steps" in raw and "epochs" in raw:
        fail("give steps or epochs, not both")
    models = raw["model"] if isinstance(raw["model"], list) else [raw["model"]]
    if not models or not all(isinstance(m, str) for m in models):
        fail("model: give a model name or a non-empty list of names")
    _unique(models, f"{source}: model")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        fail("seeds: give a non-empty list of seeds, e.g. seeds = [0, 1, 2]")
    seeds = [RUN.params["seed"].parse(s, f"{source}: seeds") for s in seeds]
    _unique(seeds, f"{source}: seeds")
    fixed, grid = dict(_table(raw, "set", fail)), _table(raw, "grid", fail)
    per_model = {m: fixed.pop(m) for m in models if isinstance(fixed.get(m), dict)}
    for key, value in fixed.items():
        if isinstance(value, dict):
            fail(f"[set.{key}]: {key} is not a model of this study ({', '.join(models)})")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            fail(f"[grid] {key}: give a non-empty list of values, e.g. {key} = [a, b]")
        _unique([text(v) for v in values], f"{source}: [grid] {key}")
        if key in fixed or any(key in t for t in per_model.values()):
            fail(f"{key} is in both [set] and [grid]; keep it in one")
    options = _options(raw, source, base)
    axes = (["model"] if len(models) > 1 else []) + list(grid)
    study = Study(source, raw, axes, seeds, correlate_with=raw.get("correlate_with"),
                  correlate=raw.get("correlate"))
    _check_correlate(study, fail)
    for model in models:
        _check_model(model, {"set": fixed, f"set.{model}": per_model.get(model, {})}, grid,
                     options, source)
    points = [dict(zip(axes, combo)) for combo in
              itertools.product(*([models] if len(models) > 1 else []), *grid.values())]
    names = set()
    for point in points:
        model = point.get("model", models[0])
        overrides = {**fixed, **per_model.get(model, {}),
                     **{k: v for k, v in point.items() if k != "model"}}
        for seed in seeds:
            argv = _argv(model, options, seed, overrides)
            where = f"grid point {point_label(point)}, " if point else ""
            _check_run(model, options, seed, overrides, f"{source}: {where}seed {seed}")
            parts = [_name_part(k, v) for k, v in point.items()] + [f"seed{seed}"]
            name = "_".join(parts)
            k = 2
            while name in names:  # two values that read the same in a folder name
                name = "_".join(parts) + f"-{k}"
                k += 1
            names.add(name)
            study.runs.append(RunPlan(name, model, point, seed, argv))
    return study


def _unique(values, where):
    seen = set()
    for v in values:
        if v in seen:
            raise StudyError(f"{where}: {v!r} is given twice")
        seen.add(v)


def _table(raw, key, fail):
    t = raw.get(key, {})
    if not isinstance(t, dict):
        fail(f"{key} must be a table ([{key}] followed by key = value lines)")
    return t


def _options(raw, source, base):
    """The top-level run options, checked as ``scratchgen train`` checks its flags."""
    out = {}
    for key in OPTIONS:
        if key not in raw:
            continue
        value = raw[key]
        if key in ("dataset", "data_dir"):
            if not isinstance(value, str) or not value:
                raise StudyError(f"{source}: {key} must be a string")
            if key == "data_dir" or value.split(":")[0].endswith((".npy", ".npz")):
                path = Path(value).expanduser()
                value = absolute(path if path.is_absolute() or base is None else base / path)
                if key == "data_dir" and not Path(value).is_dir():
                    raise StudyError(f"{source}: data_dir = {raw[key]!r}: no such folder")
                if key == "dataset" and not Path(value.split(":")[0]).is_file():
                    raise StudyError(f"{source}: dataset = {raw[key]!r}: no such file")
        else:
            value = RUN.params[key].parse(value, f"{source}: {key}")
        out[key] = value
    return out


def _check_model(model, fixed, grid, options, source):
    """Each [set] (``fixed``: {table name: values}) and [grid] value alone against the
    model's declaration, so a message names its table."""
    from scratchgen.tasks import get_task
    try:
        task = get_task(model)
    except ValueError as e:
        raise StudyError(f"{source}: model: {e}") from None
    dataset = options.get("dataset") or task.default_dataset
    tables = [(t, {k: [v] for k, v in vs.items()}) for t, vs in fixed.items()]
    for table, values in tables + [("grid", grid)]:
        for key, vs in values.items():
            for v in vs:
                try:
                    task.spec.build({key: v}, dataset, origin=f"{source} [{table}]")
                except SpecError as e:
                    msg = str(e)
                    if "no such hyperparameter" in msg:
                        msg = msg.replace("no such hyperparameter",
                                          f"{model} has no such hyperparameter")
                    raise StudyError(msg) from None


def _argv(model, options, seed, overrides):
    argv = [model]
    for key, flag in OPTIONS.items():
        if key in options:
            argv += [flag, text(options[key])]
    argv += ["--seed", str(seed)]
    for k, v in overrides.items():
        argv += ["--set", f"{k}={text(v)}"]
    return argv


def _check_run(model, options, seed, overrides, where):
    """The whole run as ``scratchgen train`` would check it (model, data, options)."""
    from scratchgen import trainer
    opts = {k: v for k, v in options.items()}
    values = {k: text(v) for k, v in overrides.items()}
    try:
        trainer.new_config(model, values, seed=seed, **opts)
    except (ValueError, TypeError) as e:
        raise StudyError(f"{where}: {e}") from None


def _check_correlate(study, fail):
    if study.correlate_with is not None and not isinstance(study.correlate_with, str):
        fail("correlate_with must be a metric name, e.g. \"w1\"")
    if study.correlate is not None:
        if study.correlate_with is None:
            fail("correlate needs correlate_with (the metric to correlate them with)")
        if not isinstance(study.correlate, list) or not all(
                isinstance(m, str) for m in study.correlate):
            fail("correlate must be a list of metric names")
