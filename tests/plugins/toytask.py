"""A tiny task for harness tests: a 2-D MLP fitting ``y = sin(x)`` by least squares, with
randomness (noise on the batch) drawn from the step's rng, so resume equality is meaningful.
``nan_at`` makes the loss NaN at that step; ``sleep`` slows steps down (signal tests)."""
import time

import numpy as np

import scratchgen as sg
from scratchgen import functional as F, nn, optim
from scratchgen.tasks import Task, register


@register
class ToyRegression(Task):
    name = "toy-regression"
    datasets = ("8gaussians", "ring")
    default_dataset = "8gaussians"

    @classmethod
    def defaults(cls):
        return {"batch_size": 32, "lr": 1e-2, "width": 16, "nan_at": -1, "sleep": 0.0}

    def __init__(self, config, data):
        super().__init__(config, data)
        w = int(config["width"])
        self.net = nn.Sequential(nn.Linear(2, w), nn.Tanh(), nn.Linear(w, 1))
        self.opt = optim.Adam(self.net.parameters(), lr=float(config["lr"]))
        self.seen = 0

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"adam": self.opt}

    def train_step(self, step, batch, rng):
        if self.config["sleep"]:
            time.sleep(float(self.config["sleep"]))
        x = batch + 0.01 * rng.standard_normal(batch.shape).astype(np.float32)
        y = np.sin(x[:, :1] * 3).astype(np.float32)
        loss = F.mse_loss(self.net(sg.tensor(x)), sg.tensor(y))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.seen += len(x)
        value = float("nan") if step == int(self.config["nan_at"]) else loss.item()
        return {"mse": value}

    def evaluate(self, rng):
        held = self.data.held_out  # toy points, or (points, labels) of a finite set
        x = (held[0] if isinstance(held, tuple) else held)[:200].astype(np.float32)
        with sg.no_grad():
            pred = self.net(sg.tensor(x)).numpy()
        return {"held_out_mse": float(np.mean((pred - np.sin(x[:, :1] * 3)) ** 2))}

    def sample(self, n, rng):
        return rng.standard_normal((n, 2))

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = int(state["seen"])
