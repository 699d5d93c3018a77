"""Merges: Add (elementwise sum of equal-width inputs) and Concatenate (side by side).

Backward: the sum hands its gradient unchanged to every input; concatenation hands
each input its own block of columns.
"""
from __future__ import annotations

from .. import ir
from ..graph import Node


class Add(Node):
    """y = x1 + x2 + ...; all inputs must have the same width: ``Add()([a, b])``."""

    kind = "add"
    n_inputs = None

    def out_width(self, in_widths):
        for w in in_widths[1:]:
            if w != in_widths[0]:
                raise ValueError(
                    f"{self._label()} adds inputs of different shapes: (None, {in_widths[0]}) "
                    f"and (None, {w}); every input of Add must have the same width "
                    "(use Concatenate to join different widths)")
        return in_widths[0]

    def forward(self, L):
        return [ir.Sum(L.out(self), tuple(L.out(i) for i in self.inputs), note="y = sum of inputs")]

    def backward(self, L):
        steps = []
        for k, i in enumerate(self.inputs):
            if L.needs_grad(i):
                gx, acc = L.grad_target(i)
                steps.append(ir.Copy(gx, L.grad(self), acc=acc,
                                     note=f"d(input {k}) {'+=' if acc else '='} dy"))
        return steps


class Concatenate(Node):
    """y = [x1 | x2 | ...], inputs side by side along the feature axis."""

    kind = "concatenate"
    n_inputs = None

    def out_width(self, in_widths):
        return sum(in_widths)

    def _offsets(self):
        col, out = 0, []
        for i in self.inputs:
            out.append(col)
            col += i.width
        return out

    def forward(self, L):
        y = L.out(self)
        return [ir.Place(y, L.out(i), c, note=f"y's block of columns {k} = input {k}")
                for k, (i, c) in enumerate(zip(self.inputs, self._offsets()))]

    def backward(self, L):
        steps = []
        for k, (i, c) in enumerate(zip(self.inputs, self._offsets())):
            if L.needs_grad(i):
                gx, acc = L.grad_target(i)
                steps.append(ir.Copy(gx, L.grad(self), col0=c, acc=acc,
                                     note=f"d(input {k}) {'+=' if acc else '='} "
                                          f"dy's block of columns {k}"))
        return steps
