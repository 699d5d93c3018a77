"""Dropout: in training, zero each input with probability ``rate`` and scale the rest by
1 / (1 - rate) so the expected output equals the input; outside training, the identity.

Backward: dx = dy * mask, the same mask the forward pass drew.

Randomness, the same on every backend: element (i, j) of dropout node number `salt` in
batch b keeps its input when ``uniform(dropout_key(seed, b) + salt, i, j) >= rate``, where
``seed`` is drawn once per epoch from the model's seeded generator and ``uniform`` is an
integer hash (no state, any thread order).  So runs are reproducible, and the CPU and
the GPU draw identical masks.
"""
from __future__ import annotations

import inspect
import numbers

from .. import ir
from ..graph import Node


class Dropout(Node):
    """``Dropout(0.5)(h)``: active in ``fit``, identity in ``predict``/``evaluate``."""

    kind = "dropout"

    def __init__(self, rate: float, name: str | None = None):
        super().__init__(name)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(f"Dropout rate must be a number in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def out_width(self, in_widths):
        return in_widths[0]

    def config(self) -> dict:
        return {"rate": self.rate}

    def describe(self) -> str:
        return f"Dropout ({self.rate:g})"

    def forward(self, L):
        mask = L.internal(self, "mask", self.width)
        salt = 1 + [n for n in L.order if isinstance(n, Dropout)].index(self)
        return [ir.Dropout(L.out(self), L.out(self.inputs[0]), mask, self.rate, salt,
                           note="y = x * mask, mask = (u >= rate) / (1 - rate)")]

    def backward(self, L):
        x = self.inputs[0]
        if not L.needs_grad(x):
            return []
        gx, acc = L.grad_target(x)
        return [ir.Mul(gx, L.grad(self), L.internal(self, "mask", self.width), acc=acc,
                       note="dx = dy * mask")]


# -- the random numbers, one source for every backend --------------------------------------
UNIT = 2.0 ** -24          # uniform(): 24 random bits -> [0, 1)

UNIFORM_SOURCE = '''
def uniform(key, i, j):
    """A uniform number in [0, 1) from (key, i, j): an integer hash, no state, the same
    in any thread order (integer arithmetic in int64, kept to 32 bits)."""
    h = (key ^ (i * 0x9E3779B1) ^ (j * 0x85EBCA77)) & 0xFFFFFFFF
    h = ((h ^ (h >> 16)) * 0x7FEB352D) & 0xFFFFFFFF
    h = ((h ^ (h >> 15)) * 0x846CA68B) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return real(h >> 8) * UNIT'''.strip("\n")

def dropout_key(seed, b):
    """The dropout key of batch b of an epoch (each dropout node adds its salt to it)."""
    return (seed * 1000003 + b * 7919) % 2 ** 31


# the same function pasted into the generated kernels, and called from Python by the
# data-parallel trainer: one definition
DROPOUT_KEY_SOURCE = inspect.getsource(dropout_key).strip("\n")

NEXT_KEY = 7919             # CompiledModel.loss_and_grads: key = (key + NEXT_KEY) % 2**31 per call
