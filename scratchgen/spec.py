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

:data:`RUN` declares a run's own settings (seed, steps, cadences...); a run's whole stored
specification is :class:`scratchgen.runconfig.RunConfig`.
"""
import json
import math
from dataclasses import dataclass, field
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
    ``choices`` for strings; ``length``: the number of items a list must have; ``optional``:
    None is allowed (meaning "automatic"); ``by_dataset``: other defaults for some datasets
    (e.g. ``{"mnist": 64}``)."""

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
    length: int = None
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
                items = text.replace('an integer', 'integers').replace('a number', 'numbers')
                text = f"a list of {'' if self.length is None else f'{self.length} '}{items}"
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
            if self.length is not None and len(items) != self.length:
                fail(f"{len(items)} values, not {self.length}")
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
    Param("eval_every", int, None, "steps between evaluations (default steps/5, at least "
          "50: a short run evaluates once, at its end)", low=1, optional=True),
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


MIN_EVAL_EVERY = 50


def resolve_schedule(schedule, steps):
    """Cadences left None: log 200 times, evaluate 5 times (but at most every
    :data:`MIN_EVAL_EVERY` steps: an evaluation may cost as much as many steps), checkpoint 10
    times over ``steps``; keep 3 checkpoints. Stored resolved, so a resumed run keeps them.

    >>> resolve_schedule({}, 20)["eval_every"], resolve_schedule({}, 2000)["eval_every"]
    (20, 400)
    """
    auto = {"log_every": max(1, steps // 200),
            "eval_every": max(1, steps // 5, min(steps, MIN_EVAL_EVERY)),
            "ckpt_every": max(1, steps // 10), "keep_checkpoints": 3}
    return {k: auto[k] if schedule.get(k) is None else check_option(k, schedule[k])
            for k in SCHEDULE}


def absolute(path):
    """An absolute, user-expanded path string (run directories store these, so they work from
    any working directory)."""
    return None if path is None else str(Path(path).expanduser().absolute())
