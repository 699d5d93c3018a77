"""Optimizers: how a gradient becomes a parameter update, as generated code.

An optimizer works on the whole flat parameter buffer at once (every weight and
bias side by side), so its update is one loop, fused into the compiled training
step.  ``state`` is a flat buffer of ``state_slots`` x the parameter count
(momentum, moments ...), part of the model's state.  Computing gradients and
applying the update are separate generated functions, so a data-parallel trainer
can sum the gradient buffer across processes in between.
"""
from __future__ import annotations

import math
import numbers


def _check_lr(lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"learning rate lr must be a positive number, got {lr!r}")
    return float(lr)


class Optimizer:
    """Base: subclasses give ``state_slots`` and ``update_source()``."""

    state_slots = 0

    def __init__(self, lr: float):
        self.lr = _check_lr(lr)

    def update_source(self) -> str:
        """Source of ``def update(params, grads, state, lr)``, in the generated module's terms."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr})"


class SGD(Optimizer):
    """Plain gradient descent: w <- w - lr * dL/dw."""

    def update_source(self) -> str:
        return '''
def update(params, grads, state, lr):
    """Gradient descent: every parameter takes a step against its gradient."""
    for i in range(params.size):
        params[i] -= lr * grads[i]
'''.strip("\n")


def check_optimizer(opt) -> Optimizer:
    if opt is None:
        return SGD(0.01)
    if isinstance(opt, Optimizer):
        return opt
    if isinstance(opt, str) and opt.lower() == "sgd":
        return SGD(0.01)
    raise ValueError(f"optimizer must be a graphnn optimizer such as gn.SGD(lr=0.1), got {opt!r}")
