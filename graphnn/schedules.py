"""Learning-rate schedules: what ``lr=`` of an optimizer may be besides a number.

A schedule says which learning rate each update uses.  There are two kinds, told
apart by ``per_step``, and the rule is simple: **a schedule whose length is counted
in optimizer steps is per-step, every other one is per-epoch.**

* per-epoch (``per_step = False``): ``Constant``, ``StepDecay``, ``ExponentialDecay``,
  ``ReduceOnPlateau``.  The lr is fixed for a whole epoch: ``fit`` calls
  ``value(epoch, step)`` once before each epoch and passes the result as the ``lr``
  argument of the compiled epoch.
* per-step (``per_step = True``): ``CosineDecay`` and ``WarmupCosine``, whose
  ``total`` (and ``warmup``) are numbers of optimizer steps.  The lr changes inside
  the compiled epoch: ``source()`` is the Python source of a scalar function
  ``def schedule_lr(step):`` that the generated module pastes in and calls for
  every update (``lr = schedule_lr(step)``).  It uses only float arithmetic and
  ``math.cos``/``math.pi`` with the hyperparameters pasted in as literals, so Numba
  compiles it for the CPU and as a CUDA device function alike.  ``value(epoch,
  step)`` runs that very source in Python, so both always agree.

Counting: ``epoch`` is 0-based (the first epoch is 0); ``step`` is the 1-based number
of the update being made (the first update of a fresh model is step 1; a model's
``net.step`` counts the updates already made, so its next update is
``net.step + 1``).

The formulas are PyTorch's (``torch.optim.lr_scheduler``), with ``t`` the number of
scheduler steps taken before the update (``t = epoch`` for per-epoch schedules,
``t = step - 1`` for per-step ones):

==================  ==================================================================
StepDecay           ``lr * gamma ** (epoch // step_size)``           (``StepLR``)
ExponentialDecay    ``lr * gamma ** epoch``                          (``ExponentialLR``)
CosineDecay         ``min_lr + (lr - min_lr) * (1 + cos(pi * t / total)) / 2`` for
                    ``t <= total``, ``min_lr`` after              (``CosineAnnealingLR``
                    with ``T_max=total, eta_min=min_lr``; PyTorch's curve would
                    rise again after ``T_max``, here it stays at ``min_lr``)
WarmupCosine        ``lr * step / warmup`` for steps 1..warmup (linear from
                    ``lr / warmup`` to ``lr``), then the cosine above from ``lr`` to
                    ``min_lr`` over ``t = warmup .. total``: ``min_lr`` is reached
                    after ``total`` updates and kept.  ``warmup=0`` is exactly
                    ``CosineDecay``.  (PyTorch: ``SequentialLR`` of ``LinearLR
                    (start_factor=1/warmup, total_iters=warmup-1)`` and
                    ``CosineAnnealingLR(T_max=total-warmup, eta_min=min_lr)``,
                    milestone ``warmup``.)
ReduceOnPlateau     ``ReduceLROnPlateau``: after ``patience`` epochs in a row without
                    improvement the lr is multiplied by ``factor`` (not below
                    ``min_lr``).  "Improvement" is *absolute* by default, like Keras'
                    ``min_delta``: ``current < best - min_delta`` (mode "min") or
                    ``current > best + min_delta`` (mode "max"), i.e. PyTorch's
                    ``threshold_mode="abs", threshold=min_delta``; pass
                    ``threshold_mode="rel"`` for PyTorch's default relative test
                    ``current < best * (1 - min_delta)``.
==================  ==================================================================
"""
from __future__ import annotations

import math
import numbers

__all__ = ["Schedule", "Constant", "StepDecay", "ExponentialDecay", "CosineDecay",
           "WarmupCosine", "ReduceOnPlateau", "as_schedule"]


# -- argument checks ------------------------------------------------------------------
def _real(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) \
        and math.isfinite(value)


def _positive(value, what: str) -> float:
    if not _real(value) or value <= 0:
        raise ValueError(f"{what} must be a positive finite number, got {value!r}")
    return float(value)


def _non_negative(value, what: str) -> float:
    if not _real(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def _int(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{what} must be {kind}, got {value!r}")
    return int(value)


def _factor(value, what: str) -> float:
    if not _real(value) or not 0 < value <= 1:
        raise ValueError(f"{what} must be a number in (0, 1], got {value!r}")
    return float(value)


def _min_lr(min_lr, lr: float) -> float:
    min_lr = _non_negative(min_lr, "min_lr")
    if min_lr > lr:
        raise ValueError(f"min_lr must not exceed lr={lr!r}, got {min_lr!r}")
    return min_lr


def _check_position(epoch, step):
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
        raise ValueError(f"epoch must be an integer >= 0 (0-based), got {epoch!r}")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
        raise ValueError(f"step must be an integer >= 1 (the 1-based number of the update), "
                         f"got {step!r}")


# -- the schedules --------------------------------------------------------------------
class Schedule:
    """Base of every schedule.

    ``initial``: the base learning rate.  ``per_step``: whether the lr changes inside
    an epoch (see the module docstring for the rule).  ``value(epoch, step)``: the lr of
    update ``step`` (1-based) in epoch ``epoch`` (0-based).  Per-step schedules also
    give ``source()``: the Python source of ``def schedule_lr(step):``.
    """

    per_step = False

    def __init__(self, lr):
        self.initial = _positive(lr, "learning rate lr")

    def value(self, epoch: int, step: int) -> float:
        raise NotImplementedError

    def source(self, generic: bool = False) -> str:
        raise ValueError(
            f"{type(self).__name__} is a per-epoch schedule and has no per-step source(): "
            "fit passes value(epoch, step) as the lr of each epoch")

    def _args(self) -> str:
        return f"lr={self.initial!r}"

    def __repr__(self):
        return f"{type(self).__name__}({self._args()})"


class Constant(Schedule):
    """The same lr for every update (what a plain number ``lr=0.1`` means)."""

    def value(self, epoch: int, step: int) -> float:
        _check_position(epoch, step)
        return self.initial


class StepDecay(Schedule):
    """``lr * gamma ** (epoch // step_size)``: multiply by ``gamma`` every ``step_size``
    epochs (PyTorch ``StepLR``).  Per epoch."""

    def __init__(self, lr, step_size, gamma=0.1):
        super().__init__(lr)
        self.step_size = _int(step_size, "step_size", 1)
        self.gamma = _factor(gamma, "gamma")

    def value(self, epoch: int, step: int) -> float:
        _check_position(epoch, step)
        return self.initial * self.gamma ** (epoch // self.step_size)

    def _args(self):
        return f"lr={self.initial!r}, step_size={self.step_size}, gamma={self.gamma!r}"


class ExponentialDecay(Schedule):
    """``lr * gamma ** epoch`` (PyTorch ``ExponentialLR``).  Per epoch."""

    def __init__(self, lr, gamma):
        super().__init__(lr)
        self.gamma = _factor(gamma, "gamma")

    def value(self, epoch: int, step: int) -> float:
        _check_position(epoch, step)
        return self.initial * self.gamma ** epoch

    def _args(self):
        return f"lr={self.initial!r}, gamma={self.gamma!r}"


class _PerStep(Schedule):
    """A schedule defined by generated source; ``value`` runs that source in Python."""

    per_step = True
    _fn = None

    def value(self, epoch: int, step: int) -> float:
        _check_position(epoch, step)
        if self._fn is None:
            namespace = {"math": math}
            exec(self.source(), namespace)
            self._fn = namespace["schedule_lr"]
        return self._fn(step)

    def hyper(self) -> dict:
        """The numbers ``source(generic=True)``'s function takes after ``step``, in order."""
        return {"lr": self.initial, "min_lr": self.min_lr,
                "warmup": float(getattr(self, "warmup", 0)), "total": float(self.total)}

    def __getstate__(self):                 # the cached function is rebuilt, not pickled
        state = dict(self.__dict__)
        state.pop("_fn", None)
        return state


def _cosine_source(doc: str, lr: float, min_lr: float, warmup: int, total: int,
                   generic: bool = False) -> str:
    """``schedule_lr(step)``: linear warmup over ``warmup`` steps, then cosine to min_lr.

    ``generic``: ``schedule_lr(step, lr, min_lr, warmup, total)`` instead, the numbers
    passed at run time (as float64; ``warmup`` may be 0) so one compiled function serves
    every CosineDecay and WarmupCosine; the arithmetic is the same, operation for operation.
    """
    if generic:
        return ("def schedule_lr(step, lr, min_lr, warmup, total):\n"
                f'    """{doc}"""\n'
                "    if step <= warmup:\n"
                "        return lr * step / warmup\n"
                "    t = step - (1.0 + warmup)\n"
                "    if t >= total - warmup:\n"
                "        return min_lr\n"
                "    return min_lr + (lr - min_lr) * 0.5 * "
                "(1.0 + math.cos(math.pi * t / (total - warmup)))\n")
    lines = ["def schedule_lr(step):", f'    """{doc}"""']
    if warmup:
        lines += [f"    if step <= {warmup}:",
                  f"        return {lr!r} * step / {float(warmup)!r}"]
    lines += [f"    t = step - {float(1 + warmup)!r}",
              f"    if t >= {float(total - warmup)!r}:",
              f"        return {min_lr!r}",
              f"    return {min_lr!r} + ({lr!r} - {min_lr!r}) * 0.5 * "
              f"(1.0 + math.cos(math.pi * t / {float(total - warmup)!r}))"]
    return "\n".join(lines) + "\n"


GENERIC_DOC = ("lr of update `step` (1, 2, ...): linear up to lr over `warmup` steps "
               "(none if 0), then cosine to min_lr at `total` steps.")


class CosineDecay(_PerStep):
    """Cosine from ``lr`` down to ``min_lr`` over ``total`` optimizer steps, then
    ``min_lr`` (PyTorch ``CosineAnnealingLR(T_max=total, eta_min=min_lr)``).  Per step:
    update ``step`` uses ``min_lr + (lr - min_lr) * (1 + cos(pi * (step - 1) / total)) / 2``."""

    def __init__(self, lr, total, min_lr=0.0):
        super().__init__(lr)
        self.total = _int(total, "total (steps)", 1)
        self.min_lr = _min_lr(min_lr, self.initial)

    def source(self, generic: bool = False) -> str:
        if generic:
            return _cosine_source(GENERIC_DOC, 0, 0, 0, 0, generic=True)
        return _cosine_source(
            f"CosineDecay: lr of update `step` (1, 2, ...), cosine from {self.initial!r} "
            f"to {self.min_lr!r} over {self.total} steps.",
            self.initial, self.min_lr, 0, self.total)

    def _args(self):
        return f"lr={self.initial!r}, total={self.total}, min_lr={self.min_lr!r}"


class WarmupCosine(_PerStep):
    """Linear warmup then cosine decay, counted in optimizer steps (per step).

    Steps 1..``warmup``: ``lr * step / warmup`` (from ``lr / warmup`` up to ``lr``).
    Then, with ``t = step - 1``, ``min_lr + (lr - min_lr) * (1 + cos(pi * (t - warmup) /
    (total - warmup))) / 2`` down to ``min_lr``, reached after ``total`` updates and kept.
    """

    def __init__(self, lr, warmup, total, min_lr=0.0):
        super().__init__(lr)
        self.warmup = _int(warmup, "warmup (steps)", 0)
        self.total = _int(total, "total (steps)", 1)
        if self.total <= self.warmup:
            raise ValueError(f"total must be greater than warmup={self.warmup} "
                             f"(both in steps), got {total!r}")
        self.min_lr = _min_lr(min_lr, self.initial)

    def source(self, generic: bool = False) -> str:
        if generic:
            return _cosine_source(GENERIC_DOC, 0, 0, 0, 0, generic=True)
        return _cosine_source(
            f"WarmupCosine: lr of update `step` (1, 2, ...), linear up to {self.initial!r} "
            f"over {self.warmup} steps, then cosine to {self.min_lr!r} at {self.total} steps.",
            self.initial, self.min_lr, self.warmup, self.total)

    def _args(self):
        return (f"lr={self.initial!r}, warmup={self.warmup}, total={self.total}, "
                f"min_lr={self.min_lr!r}")


class ReduceOnPlateau(Schedule):
    """Multiply the lr by ``factor`` when ``monitor`` stops improving (PyTorch
    ``ReduceLROnPlateau``).  Per epoch and stateful.

    After every epoch ``fit`` calls ``on_epoch_end(logs)`` with that epoch's logs
    (``{"loss": ..., "val_loss": ...}``); it returns the lr for the next epoch, which
    ``value()`` returns from then on.  An epoch improves when ``current < best -
    min_delta`` (mode "min") or ``current > best + min_delta`` (mode "max"): absolute,
    as ``threshold_mode="abs"`` in PyTorch; ``threshold_mode="rel"`` compares with
    ``best * (1 -/+ min_delta)`` instead.  After more than ``patience`` epochs in a row
    without improvement the lr becomes ``max(lr * factor, min_lr)`` (changes smaller
    than 1e-8 are ignored, as in PyTorch) and the count starts again.  A NaN value never
    improves.  ``reset()`` returns to the initial state.
    """

    EPS = 1e-8

    def __init__(self, lr, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4,
                 mode="min", min_lr=0.0, *, threshold_mode="abs"):
        super().__init__(lr)
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be the name of a logged value such as "
                             f"'val_loss', got {monitor!r}")
        self.monitor = monitor
        if not _real(factor) or not 0 < factor < 1:
            raise ValueError(f"factor must be a number in (0, 1), got {factor!r}")
        self.factor = float(factor)
        self.patience = _int(patience, "patience", 0)
        self.min_delta = _non_negative(min_delta, "min_delta")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.mode = mode
        if threshold_mode not in ("abs", "rel"):
            raise ValueError(f"threshold_mode must be 'abs' or 'rel', got {threshold_mode!r}")
        self.threshold_mode = threshold_mode
        self.min_lr = _min_lr(min_lr, self.initial)
        self.reset()

    def reset(self):
        """Back to the start: lr = initial, no best value yet, no bad epochs."""
        self.lr = self.initial
        self.best = math.inf if self.mode == "min" else -math.inf
        self.bad_epochs = 0

    def value(self, epoch: int, step: int) -> float:
        _check_position(epoch, step)
        return self.lr

    def _improves(self, current: float) -> bool:
        d, best = self.min_delta, self.best
        if self.mode == "min":
            return current < (best * (1 - d) if self.threshold_mode == "rel" else best - d)
        return current > (best * (1 + d) if self.threshold_mode == "rel" else best + d)

    def on_epoch_end(self, logs: dict) -> float:
        """Take one epoch's logs into account; returns the lr for the next epoch."""
        if not isinstance(logs, dict) or self.monitor not in logs:
            have = sorted(logs) if isinstance(logs, dict) else logs
            hint = (" (pass validation data to fit, or monitor 'loss')"
                    if self.monitor.startswith("val_") else "")
            raise ValueError(f"ReduceOnPlateau monitors {self.monitor!r}, which is not in "
                             f"the epoch's logs {have!r}{hint}")
        current = logs[self.monitor]
        if isinstance(current, bool) or not isinstance(current, numbers.Real):
            raise ValueError(f"ReduceOnPlateau: logs[{self.monitor!r}] must be a number, "
                             f"got {current!r}")
        current = float(current)
        if self._improves(current):
            self.best = current
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            new = max(self.lr * self.factor, self.min_lr)
            if self.lr - new > self.EPS:
                self.lr = new
            self.bad_epochs = 0
        return self.lr

    def _args(self):
        return (f"lr={self.initial!r}, monitor={self.monitor!r}, factor={self.factor!r}, "
                f"patience={self.patience}, min_delta={self.min_delta!r}, mode={self.mode!r}, "
                f"min_lr={self.min_lr!r}, threshold_mode={self.threshold_mode!r}")


def as_schedule(lr) -> Schedule:
    """A schedule passes through; a positive number becomes ``Constant(lr)``."""
    if isinstance(lr, Schedule):
        return lr
    if _real(lr):
        return Constant(lr)
    raise ValueError(f"lr must be a positive number or a graphnn schedule such as "
                     f"gn.schedules.CosineDecay(0.1, total=1000), got {lr!r}")
