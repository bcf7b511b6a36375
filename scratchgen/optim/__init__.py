"""Optimisers with PyTorch's update rules, applied in place to the parameters' arrays.

A step reads ``p.grad`` and writes ``p.array`` outside the graph; parameters whose ``.grad`` is
None are skipped. ``param_groups`` carry per-group options, as in PyTorch::

    opt = sg.optim.Adam([{'params': gen.parameters()}, {'params': head, 'lr': 1e-4}], lr=2e-4)

``state_dict()`` is ``{'state': {index: {name: backend array or int}}, 'param_groups':
[{option: value, 'params': [index, ...]}]}``, indices counting parameters across groups in
order; it round-trips through ``sg.save``/``sg.load``. Learning-rate schedules are in
:mod:`scratchgen.optim.lr_scheduler`; :func:`build_optimizer` / :func:`build_scheduler` make
either by name (for the command line's ``--set optimizer=... --set lr_schedule=...``).
"""
import math

from scratchgen import backend
from scratchgen.autograd.tensor import Tensor


class Optimizer:
    """Base class: subclasses define ``defaults`` (via ``__init__``) and ``_update``."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or of dicts, got a Tensor")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group):
        group = dict(group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: parameter {i} of group "
                                f"{len(self.param_groups)} is a {type(p).__name__}, not a Tensor")
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__}: parameter {i} (shape {p.shape}) is "
                                 "not a leaf tensor; optimise leaves (e.g. nn.Parameter)")
            if id(p) in seen:
                raise ValueError(f"{type(self).__name__}: parameter {i} (shape {p.shape}) "
                                 "appears in more than one place in the parameter groups")
            seen.add(id(p))
        group["params"] = params
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown option(s) {sorted(unknown)}; "
                             f"options are {sorted(self.defaults)}")
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group):
        if group["lr"] < 0:
            raise ValueError(f"invalid learning rate {group['lr']}")
        if group.get("weight_decay", 0) < 0:
            raise ValueError(f"invalid weight_decay {group['weight_decay']}")

    def zero_grad(self, set_to_none=True):
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad = Tensor._wrap(backend.xp.zeros_like(p.array))

    def step(self):
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.array
                if g.shape != p.array.shape:
                    raise ValueError(f"{type(self).__name__}: gradient shape {g.shape} does not "
                                     f"match its parameter's {p.array.shape}")
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {}
                self._update(p.array, g, state, group)

    def _update(self, p, g, state, group):
        raise NotImplementedError

    @staticmethod
    def _decayed(p, g, wd):
        """g + wd p (a new array; the gradient is never modified)."""
        if wd == 0:
            return g
        d = p * wd
        d += g
        return d

    # ---- checkpoints ----------------------------------------------------------------
    def state_dict(self):
        index = {}
        groups = []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index[id(p)] = len(index)
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore options and state (copied, cast to each parameter's dtype and backend)."""
        name = type(self).__name__
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the checkpoint has {len(groups)} "
                             f"parameter groups, this optimiser {len(self.param_groups)}")
        params = []
        for i, (saved, own) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(f"{name}.load_state_dict: group {i} has "
                                 f"{len(saved['params'])} parameters in the checkpoint and "
                                 f"{len(own['params'])} here")
            params.extend(zip(saved["params"], own["params"]))
        by_index = dict(params)
        new_state = {}
        for idx, s in state_dict["state"].items():
            p = by_index.get(int(idx))
            if p is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter {idx}, which no "
                                 "group lists")
            entry = {}
            for k, v in s.items():
                if isinstance(v, (int, float)):
                    entry[k] = v
                    continue
                a = backend.asarray(v.array if isinstance(v, Tensor) else v)
                if a.shape != p.array.shape:
                    raise ValueError(f"{name}.load_state_dict: state {k!r} of parameter {idx} "
                                     f"has shape {a.shape}, the parameter {p.array.shape}")
                entry[k] = a.astype(p.array.dtype, copy=True)
            new_state[p] = entry
        for saved, own in zip(groups, self.param_groups):
            own.update({k: (tuple(v) if isinstance(v, list) else v)
                        for k, v in saved.items() if k != "params"})
        self.state = new_state

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (PyTorch's form):

    d = g + wd p;  b = d (first step) or mu b + (1 - dampening) d;
    d = d + mu b (nesterov) or b;  p -= lr d.
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay))

    def _check_group(self, group):
        super()._check_group(group)
        if group["momentum"] < 0:
            raise ValueError(f"invalid momentum {group['momentum']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")

    def _update(self, p, g, state, group):
        d = self._decayed(p, g, group["weight_decay"])
        mu = group["momentum"]
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.astype(p.dtype, copy=True)
            else:
                buf *= mu
                buf += (1 - group["dampening"]) * d
            if group["nesterov"]:
                d = d + mu * buf
            else:
                d = buf
        p -= group["lr"] * d


def _average_square(avg, g, decay):
    """avg <- decay avg + (1 - decay) g^2 in place; returns the g^2 scratch array for reuse."""
    avg *= decay
    tmp = g * g
    tmp *= 1 - decay
    avg += tmp
    return tmp


class Adam(Optimizer):
    """Adam (PyTorch's form, weight decay added to the gradient):

    g = g + wd p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  (amsgrad: v_max =
    max(v_max, v), used for v below);  p -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))

    def _check_group(self, group):
        super()._check_group(group)
        b1, b2 = group["betas"]
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"invalid betas {group['betas']}: each must be in [0, 1)")
        if group["eps"] < 0:
            raise ValueError(f"invalid eps {group['eps']}")

    def _update(self, p, g, state, group):
        xp = backend.xp
        b1, b2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p)
            state["exp_avg_sq"] = xp.zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        vmax = state.get("max_exp_avg_sq") if group["amsgrad"] else None
        fused = getattr(backend.kernels, "adam_update", None)
        arrays = (p, g, m, v) if vmax is None else (p, g, m, v, vmax)
        if (fused is not None and (vmax is None) != group["amsgrad"]
                and all(a.flags.c_contiguous and a.dtype == p.dtype for a in arrays)):
            # one pass, same arithmetic as below (cpu: numba loop)
            fused(p, g, m, v, group["lr"], b1, b2, group["eps"], group["weight_decay"],
                  1 - b1 ** t, 1 - b2 ** t, v_max=vmax)
            return
        g = self._decayed(p, g, group["weight_decay"])
        m *= b1
        m += (1 - b1) * g
        tmp = _average_square(v, g, b2)
        if group["amsgrad"]:
            vmax = state["max_exp_avg_sq"]
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        denom = xp.sqrt(v, out=tmp)
        denom *= 1 / math.sqrt(1 - b2 ** t)
        denom += group["eps"]
        xp.divide(m, denom, out=tmp)
        tmp *= group["lr"] / (1 - b1 ** t)
        p -= tmp


class AdamW(Adam):
    """AdamW (decoupled weight decay, PyTorch's form): p *= 1 - lr wd, then Adam's step with
    no decay in the gradient (the moments never see wd p)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)

    def _update(self, p, g, state, group):
        if group["weight_decay"]:
            p *= 1 - group["lr"] * group["weight_decay"]
        super()._update(p, g, state, {**group, "weight_decay": 0.0})


class RMSprop(Optimizer):
    """RMSprop (PyTorch's form):

    g = g + wd p;  s = alpha s + (1 - alpha) g^2;  centered: a = alpha a + (1 - alpha) g and
    s~ = s - a^2, else s~ = s;  u = g / (sqrt(s~) + eps);
    momentum > 0: b = mu b + u, p -= lr b;  else p -= lr u.
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _check_group(self, group):
        super()._check_group(group)
        if not 0 <= group["alpha"]:
            raise ValueError(f"invalid alpha {group['alpha']}")
        if group["eps"] < 0 or group["momentum"] < 0:
            raise ValueError(f"invalid eps {group['eps']} or momentum {group['momentum']}")

    def _update(self, p, g, state, group):
        xp = backend.xp
        alpha, mu = group["alpha"], group["momentum"]
        g = self._decayed(p, g, group["weight_decay"])
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p)
            if mu > 0:
                state["momentum_buffer"] = xp.zeros_like(p)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(p)
        state["step"] += 1
        s = state["square_avg"]
        tmp = _average_square(s, g, alpha)
        if group["centered"]:
            a = state["grad_avg"]
            a *= alpha
            a += (1 - alpha) * g
            xp.multiply(a, a, out=tmp)
            xp.subtract(s, tmp, out=tmp)
            avg = xp.sqrt(tmp, out=tmp)
        else:
            avg = xp.sqrt(s, out=tmp)
        avg += group["eps"]
        if mu > 0:
            buf = state["momentum_buffer"]
            buf *= mu
            xp.divide(g, avg, out=tmp)
            buf += tmp
            xp.multiply(buf, group["lr"], out=tmp)
        else:
            xp.divide(g, avg, out=tmp)
            tmp *= group["lr"]
        p -= tmp


class Adadelta(Optimizer):
    """Adadelta (Zeiler 2012, PyTorch's form and defaults):

    g = g + wd p;  s = rho s + (1 - rho) g^2;  d = sqrt(a + eps) / sqrt(s + eps) g;
    a = rho a + (1 - rho) d^2;  p -= lr d.
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay))

    def _check_group(self, group):
        super()._check_group(group)
        if not 0 <= group["rho"] <= 1:
            raise ValueError(f"invalid rho {group['rho']}: it must be in [0, 1]")
        if group["eps"] < 0:
            raise ValueError(f"invalid eps {group['eps']}")

    def _update(self, p, g, state, group):
        xp = backend.xp
        rho, eps = group["rho"], group["eps"]
        g = self._decayed(p, g, group["weight_decay"])
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p)
            state["acc_delta"] = xp.zeros_like(p)
        state["step"] += 1
        s, a = state["square_avg"], state["acc_delta"]
        tmp = _average_square(s, g, rho)
        xp.sqrt(s + eps, out=tmp)
        d = xp.sqrt(a + eps)
        d /= tmp
        d *= g
        _average_square(a, d, rho)
        d *= group["lr"]
        p -= d


class Adagrad(Optimizer):
    """Adagrad (PyTorch's form and defaults):

    g = g + wd p;  s = s + g^2 (s starts at initial_accumulator_value);
    p -= lr / (1 + (t - 1) lr_decay) g / (sqrt(s) + eps).
    """

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps))

    def _check_group(self, group):
        super()._check_group(group)
        if group["lr_decay"] < 0 or group["initial_accumulator_value"] < 0 or group["eps"] < 0:
            raise ValueError("invalid lr_decay, initial_accumulator_value or eps: "
                             f"{group['lr_decay']}, {group['initial_accumulator_value']}, "
                             f"{group['eps']}")

    def _update(self, p, g, state, group):
        xp = backend.xp
        g = self._decayed(p, g, group["weight_decay"])
        if not state:
            state["step"] = 0
            state["sum"] = xp.full_like(p, group["initial_accumulator_value"])
        state["step"] += 1
        s = state["sum"]
        s += g * g
        std = xp.sqrt(s)
        std += group["eps"]
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        xp.divide(g, std, out=std)
        std *= clr
        p -= std


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop,
              "adadelta": Adadelta, "adagrad": Adagrad}


def build_optimizer(name, params, **hp):
    """``OPTIMIZERS[name](params, **hp)``; an unknown name or option is one ValueError.

    >>> import scratchgen as sg
    >>> build_optimizer("adamw", [sg.nn.Parameter(sg.zeros(2))], lr=1e-2).defaults["lr"]
    0.01
    """
    cls = OPTIMIZERS.get(name)
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    try:
        return cls(params, **hp)
    except TypeError as e:
        raise ValueError(f"optimizer {name!r}: {e}") from None


from scratchgen.optim import lr_scheduler  # noqa: E402  (needs Optimizer)
from scratchgen.optim.lr_scheduler import build_scheduler  # noqa: E402,F401
