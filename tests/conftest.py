"""Shared test settings: a fixed hypothesis profile (reproducible in CI) and backend helpers."""
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from conftest_gpu import pytest_collection_modifyitems, pytest_sessionstart  # noqa: F401

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=25, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "dev", deadline=None, max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def mnist_dir():
    """The MNIST folder: ``$SCRATCHGEN_MNIST_DIR``, else ``shared/data/mnist`` beside the
    checkout (read-only; tests copy what they alter)."""
    return Path(os.environ.get("SCRATCHGEN_MNIST_DIR")
                or Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")


@pytest.fixture(scope="module")
def digit_cache(tmp_path_factory):
    """For a test module: digit classifiers cached in the session's folder (``$XDG_CACHE_HOME``,
    shared by the modules) and trained for one epoch, so MNIST evaluations are quick; yields
    the classifiers' folder."""
    from scratchgen import backend
    from scratchgen.models import classifier
    backend.kernels  # numba picks its cache folder when the kernels load: keep the user's
    folder = tmp_path_factory.getbasetemp() / "xdg-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(folder))
        mp.setattr(classifier, "RECIPE", dict(classifier.RECIPE, epochs=1))
        yield folder / "scratchgen" / "classifiers"
