"""What a trainable model must provide so the harness (``scratchgen.trainer``) can run it.

A ``Task`` owns its modules, optimisers and loss; the harness owns everything around it: data
batches, the seeded RNG, the run directory, logging, checkpoints, resume, signals and plots of
the metric curves. Register a task with :func:`register` so ``scratchgen train NAME`` finds it.
"""

TASKS = {}


def register(cls):
    """Class decorator: make ``cls`` available as ``scratchgen train cls.name``."""
    TASKS[cls.name] = cls
    return cls


def task_names():
    """Names of the registered tasks: the built-in models (registered on import) and those of
    the modules named in ``$SCRATCHGEN_PLUGINS`` (comma-separated), sorted."""
    import importlib
    import os
    import scratchgen.models  # noqa: F401
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
    """Base class. Subclasses set ``name``, ``datasets`` and ``default_dataset`` and implement
    the methods below. All randomness must come from the ``rng`` arguments (numpy Generators
    the harness derives from the seed and the step), so that a resumed run repeats the
    uninterrupted one bit for bit.

    ``config``: the run's hyperparameters, ``defaults()`` updated with the user's options.
    The harness reads three of them when present: ``batch_size`` (of ``data.batch_at``),
    ``preprocess`` (of images: a :data:`scratchgen.data.PREPROCESS` mode; default
    ``'symmetric'``, i.e. [-1, 1]) and ``seed`` (set to the run's seed); ``--batch-size`` and
    ``--lr`` need the keys ``batch_size`` and ``lr``.
    ``data``: a :class:`scratchgen.trainer.DataSource` built by the harness (train batches by
    step, the held-out set, the dataset's metadata).
    """

    name = None
    datasets = ()
    default_dataset = None

    @classmethod
    def defaults(cls):
        """Hyperparameters and their defaults (all JSON-serialisable)."""
        return {}

    @classmethod
    def defaults_for(cls, dataset):
        """``defaults()`` adjusted for a dataset (e.g. a smaller batch on MNIST)."""
        return cls.defaults()

    def __init__(self, config, data):
        self.config = config
        self.data = data

    def modules(self):
        """dict name -> nn.Module (saved in checkpoints)."""
        raise NotImplementedError

    def optimizers(self):
        """dict name -> optimiser (saved in checkpoints)."""
        raise NotImplementedError

    def train_step(self, step, batch, rng):
        """One training step on ``batch`` (a backend array, or None for tasks that sample
        their own data from ``rng``); returns dict of Python floats (the logged loss terms)."""
        raise NotImplementedError

    def evaluate(self, rng):
        """Held-out metrics as a dict of Python floats."""
        return {}

    def sample(self, n, rng):
        """``n`` samples as a host NumPy array (images (n, C, H, W) or points (n, D))."""
        raise NotImplementedError

    def plots(self, run_dir, rng):
        """Write the model's figures (PNG) into ``run_dir``; return the paths."""
        return []

    def state_dict(self):
        """Task state beyond modules and optimisers (counters, schedules)."""
        return {}

    def load_state_dict(self, state):
        pass
