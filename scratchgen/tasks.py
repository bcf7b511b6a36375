"""What a trainable model must provide so the harness (``scratchgen.trainer``) can run it.

A ``Task`` owns its modules, optimisers and loss and declares its hyperparameters (``spec``);
the harness owns everything around it: the run specification, data batches and their index,
the seeded RNG, the run directory, logging, checkpoints, resume, signals and plots of the
metric curves. Register a task with :func:`register` so ``scratchgen train NAME`` finds it.
"""

from scratchgen.spec import RUN, HParams, Spec

TASKS = {}
BUILTIN = ("scratchgen.models",)  # the modules registering the built-in models, loaded by name
# like plugins: models import this registry, never the other way round


def register(cls):
    """Class decorator: make ``cls`` available as ``scratchgen train cls.name``."""
    TASKS[cls.name] = cls
    return cls


def task_names():
    """Names of the registered tasks: the built-in models (:data:`BUILTIN`, registered on
    import) and those of the modules named in ``$SCRATCHGEN_PLUGINS`` (comma-separated),
    sorted."""
    import importlib
    import os
    for mod in BUILTIN:
        importlib.import_module(mod)
    for mod in filter(None, os.environ.get("SCRATCHGEN_PLUGINS", "").split(",")):
        try:
            importlib.import_module(mod.strip())
        except ImportError as e:
            raise ValueError(f"SCRATCHGEN_PLUGINS: cannot import {mod.strip()!r} ({e})") from e
    return sorted(TASKS)


def get_task(name):
    """The task class registered as ``name`` (see :func:`task_names`)."""
    names = task_names()
    if name not in TASKS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(names)}")
    return TASKS[name]


class Task:
    """Base class. Subclasses set ``name``, ``datasets``, ``default_dataset`` and ``spec`` (a
    :class:`~scratchgen.spec.Spec` declaring every hyperparameter) and implement the methods
    below. All randomness must come from the ``rng`` arguments (numpy Generators the harness
    derives from the seed and the step) and the batches the harness hands over, so that a
    resumed run repeats the uninterrupted one bit for bit.

    ``hp``: the run's checked :class:`~scratchgen.spec.HParams` (a dict is checked against
    ``spec``). The harness reads ``batch_size`` (of the data's batches) and, when declared,
    ``preprocess`` (of images: a :data:`scratchgen.data.PREPROCESS` mode; default
    ``'symmetric'``, i.e. [-1, 1]); ``--batch-size`` and ``--lr`` set ``batch_size`` and ``lr``.
    ``data``: a :class:`scratchgen.data.DataSource` (``held_out``, ``shape``, ``kind``, ``dist``,
    ``seed``); the task never fetches training batches itself.
    ``steps_by_dataset``: the run's default ``steps`` on some datasets (e.g. ``{"mnist":
    3000}``; else :data:`~scratchgen.spec.RUN`'s).
    """

    name = None
    datasets = ()
    default_dataset = None
    spec = Spec()
    steps_by_dataset = {}

    @classmethod
    def default_steps(cls, dataset):
        """Training steps of a run on ``dataset`` that gives no ``--steps``/``--epochs``."""
        return cls.steps_by_dataset.get(dataset, RUN.params["steps"].default)

    def __init__(self, hp, data):
        self.hp = hp if isinstance(hp, HParams) else self.spec.build(hp, getattr(data, "name", None))
        self.data = data

    @classmethod
    def check_data(cls, kind, shape):
        """Raise ValueError naming what fits if examples of ``kind`` (``'points'``/``'images'``)
        and ``shape`` cannot be modelled; called before anything is written."""

    def check_checkpoint(self, modules):
        """Raise ValueError (one line, saying what to do) if a checkpoint's module states
        (dict name -> state dict) are known not to fit this task's modules; the harness
        reports other mismatches parameter by parameter."""

    def batches_per_step(self, step):
        """How many training batches ``train_step(step, ...)`` takes (default 1)."""
        return 1

    def modules(self):
        """dict name -> nn.Module (saved in checkpoints)."""
        raise NotImplementedError

    def optimizers(self):
        """dict name -> optimiser (saved in checkpoints)."""
        raise NotImplementedError

    def train_step(self, step, batches, rng):
        """One training step on ``batches`` (a list of ``batches_per_step(step)`` host float32
        arrays, the harness's next ones); returns the logged terms as a dict of scalars:
        floats, 0-d arrays or 0-d Tensors (the harness fetches them from the device together)."""
        raise NotImplementedError

    def evaluate(self, rng):
        """Held-out metrics as a dict of Python floats."""
        return {}

    def sample(self, n, rng):
        """``n`` samples as a host NumPy array (images (n, C, H, W) or points (n, D))."""
        raise NotImplementedError

    def plots(self, run_dir, rng, step=None):
        """Write the model's figures (PNG) into ``run_dir`` at training step ``step`` (None:
        not known); return the paths."""
        return []

    def state_dict(self):
        """Task state beyond modules and optimisers (schedules)."""
        return {}

    def load_state_dict(self, state):
        pass
