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
    """Base: subclasses give ``state_slots`` and ``source()``.

    ``source()`` defines ``def <name>_update(i, params, grads, state, lr, step)``: the
    update of parameter i at step ``step`` (1, 2, ...).  Backends run it over every i
    (a loop on the CPU, a thread per i on the GPU).  Hyperparameters are constants
    pasted into the source.
    """

    name = "optimizer"

    state_slots = 0

    def __init__(self, lr: float):
        self.lr = _check_lr(lr)

    def source(self) -> str:
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr})"


class SGD(Optimizer):
    """Plain gradient descent: w <- w - lr * dL/dw."""

    name = "sgd"

    def source(self) -> str:
        return '''
def sgd_update(i, params, grads, state, lr, step):
    """Gradient descent: parameter i takes a step against its gradient."""
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
