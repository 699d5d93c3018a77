"""Softmax over each row: y_j = exp(x_j - max x) / sum_k exp(x_k - max x).

Backward: dx = y * (dy - sum_k dy_k y_k), the Jacobian-vector product of softmax.
Followed by the cross-entropy loss, the compiler skips this node in training and
uses the fused, stable form on the logits instead (ops/losses.py).
"""
from __future__ import annotations

from .. import ir
from ..graph import Node


class Softmax(Node):
    """Row-wise softmax: turns logits into probabilities."""

    kind = "softmax"
    activation = "softmax"

    def out_width(self, in_widths):
        return in_widths[0]

    def forward(self, L):
        return [ir.Softmax(L.out(self), L.out(self.inputs[0]), note="y = softmax(x) over each row")]

    def backward(self, L):
        x = self.inputs[0]
        if not L.needs_grad(x):
            return []
        gx, acc = L.grad_target(x)
        return [ir.SoftmaxGrad(gx, L.grad(self), L.out(self), acc=acc,
                               note="dx = y * (dy - sum(dy * y))")]


# Scalar-loop sources shared by the backends (pasted into the generated module).
SOFTMAX_SOURCE = ('''
def softmax_rows(x, y):
    """y = softmax(x) row by row; the row maximum is subtracted so exp never overflows."""
    n, k = x.shape
    for i in range(n):
        m = x[i, 0]
        for j in range(1, k):
            m = max(m, x[i, j])
        s = zero
        for j in range(k):
            e = math.exp(x[i, j] - m)
            y[i, j] = e
            s += e
        r = one / s
        for j in range(k):
            y[i, j] *= r'''.strip("\n"), '''
def softmax_rows_grad(gy, y, gx, acc):
    """gx (= or +=) y * (gy - sum(gy * y)) row by row."""
    n, k = y.shape
    for i in range(n):
        dot = zero
        for j in range(k):
            dot += gy[i, j] * y[i, j]
        for j in range(k):
            g = y[i, j] * (gy[i, j] - dot)
            if acc:
                gx[i, j] += g
            else:
                gx[i, j] = g'''.strip("\n"))
