"""Losses: how far the output is from the target, and the gradient that starts backprop.

Each loss is one per-row function ``<name>_row(z, y, g, i, n)`` returning row i's
share of the mean loss over n rows and writing that row of g = d(mean loss)/dz, so
the value and the backward seed come from the same arithmetic.  A backend runs it
over the rows (a loop on the CPU, a thread per row on the GPU).  Classification
losses take z as logits and add ``<name>_row_correct(z, y, i)`` for accuracy.

When the graph ends in the activation a loss already contains (softmax for
cross-entropy, sigmoid for binary cross-entropy) the compiler drops that activation
in training and feeds the logits here: one softmax, and no log(0) for logits of
+-1000.  Sources are pasted into the generated module like the activations'.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Loss:
    name: str
    targets: str             # "labels": int class per row; "values": same shape as the output
    fuses: str | None        # the output activation this loss absorbs in training
    source: str              # def <name>_row(z, y, g, i, n) -> row i's share of the mean loss
    correct: str | None      # def <name>_row_correct(z, y, i) -> correct elements in row i
    needs: tuple = ()        # activations whose scalar functions the source calls
    formula: str = ""

    def check_targets(self, y: np.ndarray, n_rows: int, out_width: int, dtype) -> np.ndarray:
        """Targets as a contiguous array the kernels can read, or a ValueError saying why not."""
        return _CHECKS[self.targets](self, y, n_rows, out_width, dtype)


def _check_labels(loss, y, n, k, dtype):
    if k < 2:
        raise ValueError(f"{loss.name} needs an output of at least 2 classes (logits), "
                         f"the model's output has width {k}; use binary_cross_entropy for one logit")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{loss.name} expects y as integer class labels of shape ({n},), "
                         f"got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
            or y.dtype == np.bool_):
        raise ValueError(f"{loss.name} expects integer class labels, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)):
            raise ValueError(f"y contains NaN or Inf; {loss.name} expects integer class labels")
        if np.any(y != np.round(y)):
            bad = y[y != np.round(y)][0]
            raise ValueError(f"{loss.name} expects integer class labels 0..{k - 1}, "
                             f"got the non-integer value {bad}")
    labels = _writable(np.ascontiguousarray(y, dtype=np.int64))
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        bad = labels[(labels < 0) | (labels >= k)][0]
        raise ValueError(f"class label {bad} is out of range: the model has {k} outputs, "
                         f"so labels must be in 0..{k - 1}")
    return labels


def _check_values(loss, y, n, k, dtype):
    y = np.asarray(y)
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_) or \
            np.issubdtype(y.dtype, np.complexfloating):
        raise ValueError(f"{loss.name} expects real-valued targets, got dtype {y.dtype}")
    if y.ndim == 1 and k == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != k:
        raise ValueError(f"{loss.name} expects targets of shape ({n}, {k}) like the model's "
                         f"output, got shape {y.shape}")
    with np.errstate(over="ignore"):
        t = _writable(np.ascontiguousarray(y, dtype=dtype))
    if not np.all(np.isfinite(t)):
        raise ValueError("y contains NaN or Inf (after conversion to "
                         f"{np.dtype(dtype).name}); clean or rescale the targets")
    if loss.name == "binary_cross_entropy" and (t.min() < 0 or t.max() > 1):
        raise ValueError("binary_cross_entropy expects targets in [0, 1] (0 or 1 per output), "
                         f"got values from {t.min()} to {t.max()}")
    return t


def _writable(a: np.ndarray) -> np.ndarray:
    """A read-only array copied: the kernels are compiled for writable arrays only."""
    return a if a.flags.writeable else a.copy()


_CHECKS = {"labels": _check_labels, "values": _check_values}


LOSSES: dict[str, Loss] = {l.name: l for l in [
    Loss("mse", "values", None, '''
def mse_row(z, t, g, i, n):
    """Row i's share of mean((z - t)^2) over all n * k elements; g[i] = its gradient."""
    k = z.shape[1]
    scale = two / real(n * k)
    total = zero
    for j in range(k):
        d = z[i, j] - t[i, j]
        total += d * d
        g[i, j] = scale * d
    return total * (one / real(n * k))     # the reciprocal is the same for every row
'''.strip("\n"), None, formula="mean((y - t)^2)"),

    Loss("cross_entropy", "labels", "softmax", '''
def cross_entropy_row(z, labels, g, i, n):
    """Row i's share of mean(-log softmax(z)[label]); g[i] = (softmax(z[i]) - onehot) / n.

    log-sum-exp with the row maximum subtracted: exact for logits of any size.
    """
    k = z.shape[1]
    m = z[i, 0]
    for j in range(1, k):
        m = max(m, z[i, j])
    s = zero
    for j in range(k):
        e = math.exp(z[i, j] - m)
        g[i, j] = e
        s += e
    scale = one / real(n)
    r = scale / s
    for j in range(k):
        g[i, j] *= r
    g[i, labels[i]] -= scale
    return (math.log(s) + m - z[i, labels[i]]) * scale
'''.strip("\n"), '''
def cross_entropy_row_correct(z, labels, i):
    """1 if row i's largest logit is its label's."""
    best = 0
    for j in range(1, z.shape[1]):
        if z[i, j] > z[i, best]:
            best = j
    return 1 if best == labels[i] else 0
'''.strip("\n"), formula="mean(-log softmax(z)[label])"),

    Loss("binary_cross_entropy", "values", "sigmoid", '''
def binary_cross_entropy_row(z, t, g, i, n):
    """Row i's share of mean(-[t log s + (1-t) log(1-s)]), s = sigmoid(z), from the logits:
    max(z, 0) - z t + log(1 + exp(-|z|));  g = (s - t) / (n * k)."""
    k = z.shape[1]
    scale = one / real(n * k)
    total = zero
    for j in range(k):
        x = z[i, j]
        total += max(x, zero) - x * t[i, j] + math.log1p(math.exp(-abs(x)))
        g[i, j] = scale * (sigmoid(x) - t[i, j])
    return total * scale
'''.strip("\n"), '''
def binary_cross_entropy_row_correct(z, t, i):
    """Elements of row i where sigmoid(z) >= 0.5 (z >= 0) agrees with the target."""
    hits = 0
    for j in range(z.shape[1]):
        if (z[i, j] >= zero) == (t[i, j] >= half):
            hits += 1
    return hits
'''.strip("\n"), needs=("sigmoid",), formula="mean(BCE(sigmoid(z), t))"),
]}


def check_loss(name) -> Loss:
    if isinstance(name, str) and name in LOSSES:
        return LOSSES[name]
    raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(LOSSES)}")
