"""Optimizers: how a gradient becomes a parameter update, as generated code.

An optimizer works on the whole flat parameter buffer at once (every weight and bias
side by side), so its update is one loop fused into the compiled training step.
Each optimizer writes its rule once, as the update of one parameter ``i``:

    def <name>_update(i, params, grads, state, lr, step)

and each backend runs it over every i (a loop on the CPU, a thread per i on the
GPU).  ``state`` holds ``state_slots`` values per parameter (slot k of parameter i
at ``state[k * params.size + i]``): momentum, moment estimates.  ``step`` counts
updates from 1.  ``source()`` pastes the hyperparameters in as typed constants;
``source(generic=True)`` takes them as arguments instead (the names ``hyper()`` lists,
in that order), so one compiled kernel serves every value of them.

The rules are PyTorch's (``torch.optim``, defaults dampening=0, amsgrad=False,
centered=False), so the same gradients give the same parameters.  Computing
gradients and applying the update are separate generated functions, so a
data-parallel trainer can sum the gradient buffer across processes in between.
"""
from __future__ import annotations

import math
import numbers


def _positive(value, what: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        kind = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{what} must be {kind} number, got {value!r}")
    return float(value)


def _fraction(value, what: str) -> float:
    value = _positive(value, what, allow_zero=True)
    if value >= 1:
        raise ValueError(f"{what} must be in [0, 1), got {value!r}")
    return value


def _lit(x: float) -> str:
    """A float constant typed like the model: real(0.9)."""
    return f"real({x!r})"


class Optimizer:
    """Base class: subclasses set ``name``, ``state_slots`` and write ``source()``."""

    name = "optimizer"
    state_slots = 0

    def __init__(self, lr):
        from .schedules import as_schedule
        self.schedule = as_schedule(lr)           # a float becomes schedules.Constant
        self.lr = self.schedule.initial

    def source(self, generic: bool = False) -> str:
        """``def <name>_update(i, params, grads, state, lr, step)``; with ``generic`` the
        hyperparameters of ``hyper()`` follow as arguments instead of being constants."""
        raise NotImplementedError

    def hyper(self) -> dict:
        """The hyperparameters the generic source takes, name -> value, in argument order.
        Which names appear depends only on the optimizer's structure (its kind, and
        momentum / Nesterov on or off, which change its state), never on the values."""
        return {}

    def _terms(self, generic: bool) -> tuple[dict, str]:
        """Each hyperparameter as the source writes it (a typed literal or its argument
        name), and the extra arguments of the function header."""
        hyper = self.hyper()
        if generic:
            return {k: k for k in hyper}, "".join(f", {k}" for k in hyper)
        return {k: _lit(v) for k, v in hyper.items()}, ""

    def config(self) -> dict:
        """Name and hyperparameters, enough to rebuild the optimizer (checkpoints)."""
        cfg = {"name": type(self).__name__}
        cfg.update({k: v for k, v in vars(self).items() if k not in ("state_slots", "schedule")})
        cfg["lr"] = schedule_config(self.schedule)
        return cfg

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                         if k not in ("state_slots", "schedule"))
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Gradient descent, optionally with momentum, Nesterov momentum and L2 weight decay.

        g = grad + weight_decay * p
        b = momentum * b + g                  (b = g at the first step)
        g = g + momentum * b  if nesterov  else  b
        p = p - lr * g
    """

    name = "sgd"

    def __init__(self, lr=0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(lr)
        self.momentum = _fraction(momentum, "momentum")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs a momentum > 0")
        self.weight_decay = _positive(weight_decay, "weight_decay", allow_zero=True)
        self.state_slots = 1 if self.momentum else 0

    def hyper(self) -> dict:
        h = {"weight_decay": self.weight_decay}
        if self.momentum:
            h["momentum"] = self.momentum
        return h

    def source(self, generic: bool = False) -> str:
        h, args = self._terms(generic)
        lines = [f'def sgd_update(i, params, grads, state, lr, step{args}):',
                 '    """Gradient descent on parameter i."""',
                 '    g = grads[i]']
        if self.weight_decay or generic:
            lines.append(f"    g += {h['weight_decay']} * params[i]   # L2 weight decay")
        if self.momentum:
            lines += [f"    b = {h['momentum']} * state[i] + g    # momentum buffer",
                      "    state[i] = b"]
            lines.append(f"    g = g + {h['momentum']} * b   # Nesterov" if self.nesterov
                         else "    g = b")
        lines.append("    params[i] -= lr * g")
        return "\n".join(lines)


class Adam(Optimizer):
    """Adam: running means of the gradient (m) and its square (v), bias-corrected.

        g = grad + weight_decay * p           (L2, coupled: Adam's own weight decay)
        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
        p = p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """

    name = "adam"
    state_slots = 2
    decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_fraction(betas[0], "betas[0]"), _fraction(betas[1], "betas[1]"))
        self.eps = _positive(eps, "eps")
        self.weight_decay = _positive(weight_decay, "weight_decay", allow_zero=True)

    def hyper(self) -> dict:
        b1, b2 = self.betas
        return {"beta1": b1, "one_minus_beta1": 1 - b1, "beta2": b2, "one_minus_beta2": 1 - b2,
                "eps": self.eps, "weight_decay": self.weight_decay}

    def source(self, generic: bool = False) -> str:
        h, args = self._terms(generic)
        name = self.name
        decay = ""
        if (self.weight_decay or generic) and self.decoupled:
            decay = (f"    params[i] *= one - lr * {h['weight_decay']}"
                     "   # decoupled weight decay (AdamW)\n")
        elif self.weight_decay or generic:
            decay = f"    g += {h['weight_decay']} * params[i]   # L2 weight decay\n"
        return f'''def {name}_update(i, params, grads, state, lr, step{args}):
    """{type(self).__name__} on parameter i: m in state slot 0, v in slot 1."""
    n = params.size
    g = grads[i]
{decay}    m = {h['beta1']} * state[i] + {h['one_minus_beta1']} * g
    v = {h['beta2']} * state[n + i] + {h['one_minus_beta2']} * g * g
    state[i] = m
    state[n + i] = v
    t = real(step)
    c1 = one - {h['beta1']} ** t        # bias corrections
    c2 = one - {h['beta2']} ** t
    params[i] -= (lr / c1) * m / (math.sqrt(v) / math.sqrt(c2) + {h['eps']})'''


class AdamW(Adam):
    """Adam with decoupled weight decay: p = p * (1 - lr * weight_decay) before the Adam step."""

    name = "adamw"
    decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(lr, betas, eps, weight_decay)


class RMSprop(Optimizer):
    """RMSprop: divide the gradient by a running root mean square of it.

        g = grad + weight_decay * p
        v = alpha v + (1 - alpha) g^2
        b = momentum b + g / (sqrt(v) + eps);  p = p - lr b   (momentum > 0)
        p = p - lr g / (sqrt(v) + eps)                          (momentum = 0)
    """

    name = "rmsprop"

    def __init__(self, lr=0.01, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(lr)
        self.alpha = _fraction(alpha, "alpha")
        self.eps = _positive(eps, "eps")
        self.momentum = _fraction(momentum, "momentum")
        self.weight_decay = _positive(weight_decay, "weight_decay", allow_zero=True)
        self.state_slots = 2 if self.momentum else 1

    def hyper(self) -> dict:
        h = {"alpha": self.alpha, "one_minus_alpha": 1 - self.alpha, "eps": self.eps,
             "weight_decay": self.weight_decay}
        if self.momentum:
            h["momentum"] = self.momentum
        return h

    def source(self, generic: bool = False) -> str:
        h, args = self._terms(generic)
        decay = (f"    g += {h['weight_decay']} * params[i]   # L2 weight decay\n"
                 if self.weight_decay or generic else "")
        step = (f'''    b = {h['momentum']} * state[n + i] + g / avg
    state[n + i] = b
    params[i] -= lr * b''' if self.momentum else "    params[i] -= lr * g / avg")
        return f'''def rmsprop_update(i, params, grads, state, lr, step{args}):
    """RMSprop on parameter i: mean square in state slot 0 (momentum in slot 1)."""
    n = params.size
    g = grads[i]
{decay}    v = {h['alpha']} * state[i] + {h['one_minus_alpha']} * g * g
    state[i] = v
    avg = math.sqrt(v) + {h['eps']}
{step}'''


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam, AdamW, RMSprop)}


def check_optimizer(opt) -> Optimizer:
    if opt is None:
        return SGD(0.01)
    if isinstance(opt, Optimizer):
        return opt
    if isinstance(opt, str) and opt.lower() in {k.lower() for k in OPTIMIZERS}:
        return {k.lower(): v for k, v in OPTIMIZERS.items()}[opt.lower()]()
    raise ValueError(f"optimizer must be a graphnn optimizer such as gn.SGD(lr=0.1) or one of "
                     f"{', '.join(OPTIMIZERS)}, got {opt!r}")


def from_config(cfg: dict) -> Optimizer:
    """Rebuild an optimizer from ``Optimizer.config()`` (used by checkpoints)."""
    cfg = dict(cfg)
    cls = OPTIMIZERS.get(cfg.pop("name", None))
    if cls is None:
        raise ValueError(f"unknown optimizer in checkpoint: {cfg!r}")
    lr = cfg.pop("lr")
    if isinstance(lr, dict):
        lr = schedule_from_config(lr)
    if "betas" in cfg:
        cfg["betas"] = tuple(cfg["betas"])
    return cls(lr, **cfg)


def schedule_config(schedule) -> dict | float:
    """A schedule as JSON-safe data: its type, constructor arguments and running state."""
    from . import schedules
    if type(schedule) is schedules.Constant:
        return schedule.initial
    data = {k: v for k, v in vars(schedule).items() if not k.startswith("_")}
    return {"type": type(schedule).__name__, **data}


def schedule_from_config(cfg: dict):
    import inspect
    from . import schedules
    cfg = dict(cfg)
    cls = getattr(schedules, str(cfg.pop("type", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, schedules.Schedule)):
        raise ValueError(f"unknown learning-rate schedule in checkpoint: {cfg!r}")
    params = inspect.signature(cls.__init__).parameters
    args = {k: cfg.pop(k) for k in list(cfg) if k in params and k != "lr"}
    sched = cls(cfg.pop("initial"), **args)
    for k, v in cfg.items():          # running state (ReduceOnPlateau: lr, best, bad_epochs)
        setattr(sched, k, v)
    return sched
