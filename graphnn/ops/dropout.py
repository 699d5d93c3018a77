"""Dropout: in training, zero each input with probability ``rate`` and scale the rest by
1 / (1 - rate) so the expected output equals the input; outside training, the identity.

Backward: dx = dy * mask, the same mask the forward pass drew.  Masks come from the
model's seeded generator (a seed per compiled call), so runs are reproducible.
"""
from __future__ import annotations

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
        return [ir.Dropout(L.out(self), L.out(self.inputs[0]), mask, self.rate,
                           note=f"y = x * mask, mask = (u >= {self.rate:g}) / {1 - self.rate:g}")]

    def backward(self, L):
        x = self.inputs[0]
        if not L.needs_grad(x):
            return []
        gx, acc = L.grad_target(x)
        return [ir.Mul(gx, L.grad(self), L.internal(self, "mask", self.width), acc=acc,
                       note="dx = dy * mask")]
