"""Two bugs the rest of the suite let through (issue 12): dynamic binarisation drawn without
the run's seed (runs with seeds 1 and 2 would see identical batches), and the WGAN burst
schedule off by one inside the task (only the free function was tested)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.data import BatchLoader, DataSource
from scratchgen.tasks import get_task

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
from harness import cli_process  # noqa: E402


def _grey(tmp_path):
    """64 identical 4x4 images of intensity 128/255: every batch holds the same pixels,
    whatever the shuffle, so only the binarisation can tell two seeds apart."""
    path = tmp_path / "grey.npy"
    np.save(path, np.full((64, 4, 4), 128, np.uint8))
    return path


def test_dynamic_binarisation_follows_the_seed(tmp_path):
    x = np.load(_grey(tmp_path))
    one, two = (BatchLoader(x, 16, seed=s, preprocess="binarize-dynamic") for s in (1, 2))
    for step in (0, 5):
        a, b = one.batch_at(step), two.batch_at(step)
        assert set(np.unique(a)) == {0.0, 1.0}
        assert np.mean(a != b) > 0.3  # independent Bernoulli(1/2): about half differ
        np.testing.assert_array_equal(a, BatchLoader(x, 16, seed=1,
                                                     preprocess="binarize-dynamic").batch_at(step))


def test_a_runs_seed_reaches_its_binarisation(tmp_path):
    """Through the harness's data source, as a run builds it from its seed."""
    path = str(_grey(tmp_path))
    batches = {s: DataSource(path, 16, seed=s, preprocess="binarize-dynamic").batch_at(0)
               for s in (1, 2)}
    assert batches[1].shape == (16, 1, 4, 4)
    assert np.mean(batches[1] != batches[2]) > 0.3


def _wgan(**hp):
    cls = get_task("wgan")
    sg.manual_seed(0)
    spec = cls.spec.build({"width": 8, "depth": 2, "batch_size": 8, **hp}, "8gaussians")
    return cls(spec, DataSource("8gaussians", spec.batch_size, seed=0))


def test_wgan_task_bursts_for_the_first_25_generator_steps_and_every_500th():
    """Arjovsky et al.: ``Diters = 100 if gen_iterations < 25 or gen_iterations % 500 == 0``,
    ``gen_iterations`` counting completed generator updates (the 0-based step)."""
    task = _wgan(critic_burst=True)
    steps = range(1002)
    expected = [100 if s < 25 or s % 500 == 0 else 5 for s in steps]
    assert [task.critic_iters(s) for s in steps] == expected
    assert [task.batches_per_step(s) for s in steps] == expected
    assert [task.critic_iters(s) for s in (24, 25, 499, 500, 501)] == [100, 5, 5, 100, 5]
    plain = _wgan(critic_burst=False, n_critic=3)
    assert {plain.batches_per_step(s) for s in (0, 24, 500)} == {3}


def _train(*args):
    p = cli_process([str(a) for a in args])
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err


@pytest.mark.slow
def test_the_burst_reaches_training_through_the_command(tmp_path):
    """Resumed from a checkpoint relabelled as step 24 (then 499), the command trains
    generator steps 24 and 25 (then 499 and 500). A train line is logged after each step,
    with ``n_critic`` for a burst only: lines 25 and 501 burst, 26 and 500 do not."""
    d = tmp_path / "run"
    _train("train", "wgan", "--steps", 1, "--batch-size", 8, "--set", "width=8", "--set",
           "critic_burst=true", "--log-every", 1, "--eval-every", 1000, "--out", d)
    state = sg.load(d / "ckpt-00000001.npz")
    for start, expected in ((24, {25: 100, 26: None}), (499, {500: None, 501: 100})):
        for old in d.glob("ckpt-*.npz"):
            old.unlink()
        sg.save(dict(state, step=start), d / f"ckpt-{start:08d}.npz")
        (d / "metrics.jsonl").write_text("")
        _train("train", "--resume", d, "--steps", start + 2)
        lines = [json.loads(ln) for ln in (d / "metrics.jsonl").read_text().splitlines()]
        assert {r["step"]: r.get("n_critic") for r in lines if r["kind"] == "train"} == expected
