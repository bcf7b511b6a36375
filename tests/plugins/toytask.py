"""A tiny task for harness tests: a 2-D MLP fitting ``y = sin(x)`` by least squares, with
randomness (noise on the batch) drawn from the step's rng, so resume equality is meaningful.
``nan_at`` makes the loss NaN at that step; ``sleep`` slows steps down (signal tests)."""
import time

import numpy as np

import scratchgen as sg
from scratchgen import functional as F, nn, optim
from scratchgen.spec import Param, Spec
from scratchgen.tasks import Task, register


@register
class ToyRegression(Task):
    name = "toy-regression"
    datasets = ("8gaussians", "ring")
    default_dataset = "8gaussians"

    spec = Spec(Param("batch_size", int, 32, low=1), Param("lr", float, 1e-2, above=0),
                Param("width", int, 16, low=1), Param("nan_at", int, -1),
                Param("sleep", float, 0.0, low=0))

    @classmethod
    def check_data(cls, kind, shape):
        if tuple(shape) != (2,):
            raise ValueError(f"toy-regression takes 2-D points, not examples of shape {shape}")

    def __init__(self, hp, data):
        super().__init__(hp, data)
        w = self.hp.width
        self.net = nn.Sequential(nn.Linear(2, w), nn.Tanh(), nn.Linear(w, 1))
        self.opt = optim.Adam(self.net.parameters(), lr=self.hp.lr)
        self.seen = 0

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"adam": self.opt}

    def train_step(self, step, batches, rng):
        if self.hp.sleep:
            time.sleep(self.hp.sleep)
        x = batches[0] + 0.01 * rng.standard_normal(batches[0].shape).astype(np.float32)
        y = np.sin(x[:, :1] * 3).astype(np.float32)
        loss = F.mse_loss(self.net(sg.tensor(x)), sg.tensor(y))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.seen += len(x)
        if step == self.hp.nan_at:  # as a diverging model meets it: NumPy warns, then nan
            loss = np.float32(0) / np.float32(0)
        return {"mse": loss}

    def evaluate(self, rng):
        x = self.data.held_out.x[:200]
        with sg.no_grad():
            pred = self.net(sg.tensor(x)).numpy()
        return {"held_out_mse": float(np.mean((pred - np.sin(x[:, :1] * 3)) ** 2))}

    def sample(self, n, rng):
        return rng.standard_normal((n, 2))

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = int(state["seen"])
