"""Studies over seeds and settings: ``scratchgen sweep STUDY.toml --out DIR``.

A study file (:mod:`~scratchgen.sweep.study`) names a model, its data, fixed settings and a
grid of settings to try over some seeds; every combination is one ordinary ``scratchgen
train`` run in ``DIR/runs/<name>`` (:mod:`~scratchgen.sweep.store`), trained in a subprocess by
a Dask task (:mod:`~scratchgen.sweep.engine`: a local cluster, or an existing scheduler), and
the finished runs are summarised over seeds (:mod:`~scratchgen.sweep.report`). Dask is needed
only to run a study (``pip install "scratchgen[sweep]"``); this package imports without it.
"""
from scratchgen.sweep.study import RunPlan, Study, StudyError, load_study, parse_study

__all__ = ["Study", "RunPlan", "StudyError", "load_study", "parse_study", "run_study",
           "status"]


def run_study(*args, **kwargs):
    """See :func:`scratchgen.sweep.command.run_study`."""
    from scratchgen.sweep.command import run_study
    return run_study(*args, **kwargs)


def status(path, out=print):
    """See :func:`scratchgen.sweep.store.status`."""
    from scratchgen.sweep.store import status
    return status(path, out)
