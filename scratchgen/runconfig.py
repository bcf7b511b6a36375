"""A run's whole specification, as ``config.json`` stores it.

:class:`RunConfig` holds the model, data, steps, seed, cadences and the task's checked
hyperparameters; the harness, the tasks and ``config.json`` share it, and
``RunConfig.from_json(cfg.to_json()) == cfg``. A stored file is checked value by value, so a
hand-edited or damaged one is refused in one line naming the key.
"""
from dataclasses import dataclass, field, fields

from scratchgen.rundir import RUN_KEYS
from scratchgen.spec import RUN, HParams, SpecError
from scratchgen.tasks import get_task

# what a checkpoint records of the run it was written in; all but lr are fixed for a run's life
SETTINGS = ("model", "seed", "split", "holdout")


@dataclass
class RunConfig:
    """A run's specification, as stored in ``config.json``. ``hyperparameters`` are the
    task's checked :class:`~scratchgen.spec.HParams`; ``data_dir`` and array datasets are
    absolute paths; ``steps`` is None only for a stored file that lacks it (a resume must then
    say ``--steps``); ``history`` records changes made on resume (``{"step", "lr"}``...);
    ``meta`` holds what describes rather than specifies the run (version, backend, argv, the
    data's shape); ``pending`` (never stored) what this session asked for that the harness
    resolves when it opens the run: ``epochs``/``steps`` (a resume's new end)."""

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

    def settings(self):
        """What a checkpoint records of this run (:data:`SETTINGS` and the hyperparameters),
        so a resume can tell a foreign or since-edited checkpoint."""
        return {**{k: getattr(self, k) for k in SETTINGS},
                "hyperparameters": self.hyperparameters.to_dict()}

    @classmethod
    def from_json(cls, cfg, origin="config.json"):
        """The run of a stored ``config.json`` dict; every value checked against today's
        declaration (keys added since the run was written take their defaults; run settings
        that older versions copied into the hyperparameters, like ``seed``, are dropped).
        Anything malformed is a one-line :class:`~scratchgen.spec.SpecError`."""
        if not isinstance(cfg, dict):
            raise SpecError(f"{origin}: holds {_kind(cfg)}, not a run's settings (an object)")
        missing = [k for k in RUN_KEYS if k not in cfg]
        if missing:
            raise SpecError(f"{origin}: no {', '.join(missing)}; not a scratchgen run config")
        for key, kind in (("model", str), ("dataset", str), ("hyperparameters", dict),
                          ("schedule", dict), ("history", list), ("data_dir", str)):
            if key in cfg and not isinstance(cfg[key], kind) and \
                    not (cfg[key] is None and key in ("schedule", "history", "data_dir")):
                raise SpecError(f"{origin}: {key} is {_kind(cfg[key])}, not {_kind(kind())}; "
                                "restore it (or start a new run)")
        if not all(isinstance(h, dict) for h in cfg.get("history") or []):
            raise SpecError(f"{origin}: history holds something other than objects "
                            "({\"step\": N, \"lr\": X}); restore it (or start a new run)")
        try:
            task = get_task(cfg["model"])
        except ValueError as e:
            raise SpecError(f"{origin}: model: {e}") from None
        stored = {k: v for k, v in cfg["hyperparameters"].items() if k not in RUN.params}
        hp = task.spec.build(stored, cfg["dataset"], origin=f"{origin}: hyperparameter")
        run = {k: RUN.params[k].parse(cfg[k], f"{origin}: {k}") for k in
               ("steps", "seed", "split", "holdout") if k in cfg}
        run.setdefault("steps", None)
        names = {f.name for f in fields(cls)}
        return cls(model=cfg["model"], dataset=cfg["dataset"], hyperparameters=hp,
                   data_dir=cfg.get("data_dir"), schedule=dict(cfg.get("schedule") or {}),
                   history=list(cfg.get("history") or []),
                   meta={k: v for k, v in cfg.items() if k not in names}, **run)


def _kind(value):
    """``null``, ``a list``, ``an object``... : a JSON value's kind, for messages."""
    if value is None:
        return "null"
    for t, name in ((bool, "true/false"), (str, "a string"), (int, "a number"),
                    (float, "a number"), (list, "a list"), (dict, "an object")):
        if isinstance(value, t):
            return name
    return type(value).__name__
