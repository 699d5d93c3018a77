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


# Per-row sources shared by the backends (pasted into the generated module; the CPU
# loops over rows, the GPU runs a thread per row).
SOFTMAX_SOURCE = ('''
def softmax_row(x, y, i):
    """y[i] = softmax(x[i]); the row maximum is subtracted so exp never overflows."""
    k = x.shape[1]
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
def softmax_row_grad(gy, y, gx, i, acc):
    """gx[i] (= or +=) y[i] * (gy[i] - sum(gy[i] * y[i]))."""
    k = y.shape[1]
    dot = zero
    for j in range(k):
        dot += gy[i, j] * y[i, j]
    for j in range(k):
        g = y[i, j] * (gy[i, j] - dot)
        if acc:
            gx[i, j] += g
        else:
            gx[i, j] = g'''.strip("\n"))
