"""Learning-rate schedules with PyTorch's names, arguments and protocol.

Construction records each group's ``initial_lr`` and sets step 0's rate; ``sched.step()``
after ``optimizer.step()`` advances ``last_epoch`` by one and writes each group's ``lr``;
``get_last_lr()`` lists them. With base rate b and t = ``last_epoch`` the rate is the
closed form of PyTorch's documented schedule (PyTorch's chained updates equal it up to
rounding; here the rate depends on t alone, so a resumed run is bit-for-bit):

* StepLR(step_size, gamma=0.1): b gamma^floor(t / step_size)
* ExponentialLR(gamma): b gamma^t
* CosineAnnealingLR(T_max, eta_min=0): eta_min + (b - eta_min)(1 + cos(pi t / T_max)) / 2
* LambdaLR(lr_lambda): b lr_lambda(t) (one function, or one per group)
* LinearLR(start_factor=1/3, end_factor=1, total_iters=5):
  b (s + (e - s) min(t, total_iters) / total_iters)

``state_dict()`` holds every attribute but the optimiser (LambdaLR: not the functions, as in
PyTorch); it round-trips through ``sg.save``/``sg.load``.

>>> import scratchgen as sg
>>> opt = sg.optim.SGD([sg.nn.Parameter(sg.zeros(1))], lr=1.0)
>>> sched = StepLR(opt, step_size=2, gamma=0.5)
>>> for _ in range(4):
...     opt.step(); sched.step()
>>> sched.get_last_lr()
[0.25]
"""
import math


class LRScheduler:
    """Base class: subclasses define ``_factor(t, group_index)`` or override ``_lr``."""

    def __init__(self, optimizer, last_epoch=-1):
        from scratchgen.optim import Optimizer
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__} needs an optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] "
                               "when resuming an optimizer")
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def _lr(self, t, i, base):
        raise NotImplementedError

    def step(self):
        self.last_epoch += 1
        t = self.last_epoch
        for i, (group, base) in enumerate(zip(self.optimizer.param_groups, self.base_lrs)):
            group["lr"] = self._lr(t, i, base)
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self):
        return list(self._last_lr)

    def state_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        """Restore the schedule's position (the rates themselves are in the optimiser's
        state dict, as in PyTorch)."""
        self.__dict__.update({k: list(v) if isinstance(v, tuple) else v
                              for k, v in state_dict.items()})

    def __repr__(self):
        opts = ", ".join(f"{k}={v}" for k, v in self.state_dict().items()
                         if k not in ("base_lrs", "_last_lr", "last_epoch", "lr_lambdas"))
        return f"{type(self).__name__}({opts})"


def _positive(name, cls, value, integer=False):
    if (integer and not isinstance(value, int)) or not value > 0:
        raise ValueError(f"{cls}: {name} must be a positive {'integer' if integer else 'number'}"
                         f", got {value!r}")


class StepLR(LRScheduler):
    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        _positive("step_size", "StepLR", step_size, integer=True)
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def _lr(self, t, i, base):
        return base * self.gamma ** (t // self.step_size)


class ExponentialLR(LRScheduler):
    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _lr(self, t, i, base):
        return base * self.gamma ** t


class CosineAnnealingLR(LRScheduler):
    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        _positive("T_max", "CosineAnnealingLR", T_max)
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def _lr(self, t, i, base):
        return self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class LambdaLR(LRScheduler):
    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        n = len(optimizer.param_groups)
        fns = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(fns) != n:
            raise ValueError(f"LambdaLR: {len(fns)} lr_lambdas for {n} parameter groups")
        self.lr_lambdas = fns
        super().__init__(optimizer, last_epoch)

    def _lr(self, t, i, base):
        return base * self.lr_lambdas[i](t)

    def state_dict(self):
        """Everything but the optimiser and the functions (as PyTorch: not picklable)."""
        return {k: v for k, v in super().state_dict().items() if k != "lr_lambdas"}


class LinearLR(LRScheduler):
    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5,
                 last_epoch=-1):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: need 0 < start_factor <= 1 and 0 <= end_factor <= 1, "
                             f"got {start_factor} and {end_factor}")
        _positive("total_iters", "LinearLR", total_iters, integer=True)
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _lr(self, t, i, base):
        s, e = self.start_factor, self.end_factor
        return base * (s + (e - s) * min(t, self.total_iters) / self.total_iters)


SCHEDULES = ("constant", "step", "exponential", "cosine", "linear")  # build_scheduler's names


def build_scheduler(name, optimizer, total_steps, **hp):
    """A schedule over ``total_steps`` optimiser steps by name: 'constant', 'step' (gamma 0.1
    every total_steps // 3), 'exponential' (to 1% of the rate at the end), 'cosine' (to
    eta_min = 0), 'linear' (to 0); ``hp`` overrides the arguments (e.g. gamma=0.5).

    >>> import scratchgen as sg
    >>> opt = sg.optim.SGD([sg.nn.Parameter(sg.zeros(1))], lr=1.0)
    >>> type(build_scheduler("cosine", opt, 100)).__name__
    'CosineAnnealingLR'
    """
    n = max(1, int(total_steps))
    makers = {
        "constant": lambda: LambdaLR(optimizer, _one, **hp),
        "step": lambda: StepLR(optimizer, **{"step_size": max(1, n // 3), **hp}),
        "exponential": lambda: ExponentialLR(optimizer, **{"gamma": 0.01 ** (1 / n), **hp}),
        "cosine": lambda: CosineAnnealingLR(optimizer, **{"T_max": n, **hp}),
        "linear": lambda: LinearLR(optimizer, **{"start_factor": 1.0, "end_factor": 0.0,
                                                 "total_iters": n, **hp}),
    }
    if name not in makers:
        raise ValueError(f"unknown lr schedule {name!r}; choose from {', '.join(makers)}")
    try:
        return makers[name]()
    except TypeError as e:
        raise ValueError(f"lr schedule {name!r}: {e}") from None


def _one(t):
    return 1.0
