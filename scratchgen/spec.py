"""Run specifications: every setting declared once, with its type, default and allowed values.

A :class:`Param` declares one setting; a :class:`Spec` is a task's (or the harness's) list
of them. Parsing ``--set key=value`` text, checking values read back from ``config.json``,
the ``--help`` listing and the defaults all come from that one declaration:

>>> spec = Spec(Param("width", int, 512, low=1), Param("burst", bool, False))
>>> hp = spec.build({"width": "128", "burst": "false"})
>>> hp.width, hp.burst
(128, False)
>>> spec.build({"width": "0"})
Traceback (most recent call last):
...
scratchgen.spec.SpecError: --set width=0: out of range; allowed: an integer >= 1

:class:`RunConfig` is a run's whole specification (model, data, steps, seed, cadences, the
task's hyperparameters); it is what the harness, the tasks and ``config.json`` share, and
``RunConfig.from_json(cfg.to_json()) == cfg``.
"""
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

_NOUN = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class SpecError(ValueError):
    """A setting with a wrong name, type or value; one line naming it, the value and what is
    allowed."""


@dataclass(frozen=True, eq=False)
class Param:
    """One setting. ``type``: int, float, bool, str, or list (of ``item``); ``low``/``high``
    inclusive bounds, ``above``/``below`` exclusive ones (of a number or of each list item);
    ``choices`` for strings; ``optional``: None is allowed (meaning "automatic");
    ``by_dataset``: other defaults for some datasets (e.g. ``{"mnist": 64}``)."""

    name: str
    type: type
    default: object
    help: str = ""
    low: float = None
    high: float = None
    above: float = None
    below: float = None
    choices: tuple = None
    item: type = int
    optional: bool = False
    by_dataset: dict = field(default_factory=dict)

    def default_for(self, dataset=None):
        return self.by_dataset.get(dataset, self.default)

    def allowed(self):
        """What is allowed, in words: ``an integer >= 1``, ``one of adam, rmsprop``..."""
        if self.choices is not None:
            text = "one of " + ", ".join(map(str, self.choices))
        else:
            kind = self.item if self.type is list else self.type
            text = _NOUN[kind]
            bounds = [f"> {self.above:g}" if self.above is not None else None,
                      f">= {self.low:g}" if self.low is not None else None,
                      f"<= {self.high:g}" if self.high is not None else None,
                      f"< {self.below:g}" if self.below is not None else None]
            text += " " + " and ".join(b for b in bounds if b) if any(bounds) else ""
            if self.type is list:
                text = f"a list of {text.replace('an integer', 'integers').replace('a number', 'numbers')}"
        return text + (" (or null: automatic)" if self.optional else "")

    def parse(self, value, label=None):
        """``value`` (command-line text, or a JSON/Python value) as this setting's type,
        checked against its range; :class:`SpecError` otherwise."""
        label = label or f"--set {self.name}"

        def fail(why):
            shown = value if isinstance(value, str) else json.dumps(value)
            sep = " " if label.split()[-1].startswith("-") else "="
            raise SpecError(f"{label}{sep}{shown}: {why}; allowed: {self.allowed()}")

        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")
                             and value not in (self.choices or ())):
            if self.optional:
                return None
            fail("a value is required")
        if self.type is list:
            items = value
            if isinstance(value, str):
                text = value.strip()
                try:
                    items = json.loads(text) if text.startswith("[") else \
                        [t for t in text.split(",") if t.strip()]
                except json.JSONDecodeError:
                    fail("not a list")
            if not isinstance(items, (list, tuple)):
                fail("not a list")
            out = [self._scalar(v, self.item, fail) for v in items]
            for v in out:
                self._check_range(v, fail)
            return out
        v = self._scalar(value, self.type, fail)
        if self.choices is not None and v not in self.choices:
            fail("not a choice")
        self._check_range(v, fail)
        return v

    @staticmethod
    def _scalar(value, kind, fail):
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            fail("not true or false")
        if kind is str:
            if isinstance(value, str):
                return value
            fail("not a string")
        if isinstance(value, bool):
            fail(f"not {_NOUN[kind]}")
        if isinstance(value, str):
            try:
                value = int(value) if kind is int else float(value)
            except ValueError:
                fail(f"not {_NOUN[kind]}")
        if not isinstance(value, (int, float)):
            fail(f"not {_NOUN[kind]}")
        if not math.isfinite(value):
            fail("not finite")
        if kind is int:
            if value != int(value):
                fail("not an integer")
            return int(value)
        return float(value)

    def _check_range(self, v, fail):
        if isinstance(v, str):
            return
        if ((self.low is not None and v < self.low) or (self.high is not None and v > self.high)
                or (self.above is not None and v <= self.above)
                or (self.below is not None and v >= self.below)):
            fail("out of range")


class HParams:
    """Checked hyperparameters: read as attributes (``hp.width``) or items; immutable.
    ``replace(**changes)`` checks the changes against the same declaration."""

    __slots__ = ("_spec", "_values")

    def __init__(self, spec, values):
        object.__setattr__(self, "_spec", spec)
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no hyperparameter {name!r}") from None

    def __setattr__(self, name, value):
        raise AttributeError("hyperparameters are read-only; use replace()")

    def __getitem__(self, name):
        return self._values[name]

    def __contains__(self, name):
        return name in self._values

    def __iter__(self):
        return iter(self._values)

    def __eq__(self, other):
        return isinstance(other, HParams) and self._values == other._values

    def __repr__(self):
        return f"HParams({self._values!r})"

    def keys(self):
        return self._values.keys()

    def to_dict(self):
        return {k: list(v) if isinstance(v, list) else v for k, v in self._values.items()}

    def replace(self, origin="--set", **changes):
        return self._spec.build({**self._values, **changes}, origin=origin, fill=False)


class Spec:
    """An ordered declaration of :class:`Param`; :meth:`build` makes checked
    :class:`HParams` from partial, textual or stored values."""

    def __init__(self, *params):
        self.params = {p.name: p for p in params}

    def __add__(self, other):
        return Spec(*self.params.values(), *other.params.values())

    def __contains__(self, name):
        return name in self.params

    def defaults(self, dataset=None):
        return {k: p.default_for(dataset) for k, p in self.params.items()}

    def build(self, values=None, dataset=None, origin="--set", fill=True):
        """Defaults (for ``dataset``) updated with ``values``; each value is parsed and
        checked, an unknown key names the keys there are. ``origin`` prefixes messages
        (``--set``, or a config.json path)."""
        out = self.defaults(dataset) if fill else {}
        for key, value in dict(values or {}).items():
            if key not in self.params:
                raise SpecError(f"{origin} {key}: no such hyperparameter; the keys are "
                                f"{', '.join(sorted(self.params))}")
            out[key] = self.params[key].parse(value, f"{origin} {key}" if origin != "--set"
                                              else None)
        return HParams(self, out)

    def describe(self, dataset=None):
        """One line per setting for ``--help``: ``name = default  (allowed) help``."""
        return "\n".join(f"  {p.name} = {json.dumps(p.default_for(dataset))}  ({p.allowed()})"
                         + (f"  {p.help}" if p.help else "") for p in self.params.values())


# ---- a whole run --------------------------------------------------------------------------------
RUN = Spec(
    Param("seed", int, 0, "seed of all randomness", low=0),
    Param("steps", int, 2000, "training steps", low=1),
    Param("epochs", int, None, "passes over a finite training set", low=1, optional=True),
    Param("holdout", int, 0, "examples kept out of training", low=0),
    Param("split", str, "train", "MNIST split", choices=("train", "test")),
    Param("log_every", int, None, "steps between metric lines (default steps/200)", low=1,
          optional=True),
    Param("eval_every", int, None, "steps between evaluations (default steps/5)", low=1,
          optional=True),
    Param("ckpt_every", int, None, "steps between checkpoints (default steps/10)", low=1,
          optional=True),
    Param("keep_checkpoints", int, None, "checkpoints kept (default 3)", low=1, optional=True),
)
SCHEDULE = ("log_every", "eval_every", "ckpt_every", "keep_checkpoints")
# the command line's option for each run setting, for messages
FLAGS = {"batch_size": "--batch-size", "lr": "--lr", "keep_checkpoints": "--keep-checkpoints",
         **{k: "--" + k.replace("_", "-") for k in RUN.params if k != "keep_checkpoints"}}


def check_option(name, value):
    """A run setting given as an option (``--seed``, ``--steps``...), checked."""
    return RUN.params[name].parse(value, FLAGS[name])


def resolve_schedule(schedule, steps):
    """Cadences left None: log 200 times, evaluate 5 times, checkpoint 10 times over
    ``steps``; keep 3 checkpoints. Stored resolved, so a resumed run keeps them."""
    auto = {"log_every": max(1, steps // 200), "eval_every": max(1, steps // 5),
            "ckpt_every": max(1, steps // 10), "keep_checkpoints": 3}
    return {k: auto[k] if schedule.get(k) is None else check_option(k, schedule[k])
            for k in SCHEDULE}


@dataclass
class RunConfig:
    """A run's specification, as stored in ``config.json``. ``hyperparameters`` are the
    task's checked :class:`HParams`; ``data_dir`` and array datasets are absolute paths;
    ``history`` records changes made on resume (``{"step", "lr"}``...); ``meta`` holds what
    describes rather than specifies the run (version, backend, argv, the data's shape);
    ``pending`` (never stored) what this session asked for that the harness resolves when it
    opens the run: ``epochs``/``steps`` (a resume's new end), ``lr_was`` (a lowered lr)."""

    model: str
    dataset: str
    hyperparameters: HParams
    steps: int = 2000
    seed: int = 0
    split: str = "train"
    holdout: int = 0
    data_dir: str = None
    schedule: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    pending: dict = field(default_factory=dict, compare=False)

    def to_json(self):
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("meta", "pending")}
        out["hyperparameters"] = self.hyperparameters.to_dict()
        return {**out, **self.meta}

    @classmethod
    def from_json(cls, cfg, origin="config.json"):
        """The run of a stored ``config.json`` dict; every value checked against today's
        declaration (keys added since the run was written take their defaults; run settings
        that older versions copied into the hyperparameters, like ``seed``, are dropped)."""
        from scratchgen.rundir import RUN_KEYS
        from scratchgen.tasks import get_task
        names = {f.name for f in fields(cls)}
        missing = [k for k in RUN_KEYS if k not in cfg]
        if missing:
            raise SpecError(f"{origin}: no {', '.join(missing)}; not a scratchgen run config")
        task = get_task(cfg["model"])
        stored = {k: v for k, v in cfg["hyperparameters"].items() if k not in RUN.params}
        hp = task.spec.build(stored, cfg["dataset"],
                             origin=f"{origin}: hyperparameter")
        run = {k: RUN.params[k].parse(cfg[k], f"{origin}: {k}") for k in
               ("steps", "seed", "split", "holdout") if k in cfg}
        return cls(model=cfg["model"], dataset=cfg["dataset"], hyperparameters=hp,
                   data_dir=cfg.get("data_dir"), schedule=dict(cfg.get("schedule") or {}),
                   history=list(cfg.get("history") or []),
                   meta={k: v for k, v in cfg.items() if k not in names}, **run)


def absolute(path):
    """An absolute, user-expanded path string (run directories store these, so they work from
    any working directory)."""
    return None if path is None else str(Path(path).expanduser().absolute())
