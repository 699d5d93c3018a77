"""The scheduler: epochs over shuffled mini-batches, one compiled call per epoch.

Per epoch: draw a permutation of the rows from the model's seeded generator, then
hand the whole epoch to the generated ``train_epoch`` (gather batch, forward, loss,
backward, update, for every batch).  The last batch may be smaller; the epoch's
loss is the mean over rows (each batch's mean loss weighted by its row count).
"""
from __future__ import annotations

import math
import time

import numpy as np

from .validate import positive_int


class History:
    """What ``fit`` returns: ``history["loss"]`` (one value per epoch) and ``epoch``."""

    def __init__(self):
        self.history: dict[str, list[float]] = {"loss": []}
        self.epoch: list[int] = []

    def __repr__(self):
        return f"<History epochs={len(self.epoch)} keys={list(self.history)}>"


class DivergenceError(FloatingPointError):
    """Training produced a NaN or Inf loss; the parameters were restored."""


def fit(net, X, y, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
        verbose: int = 0) -> History:
    X, Y = net._data(X, y)
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    rows = X.shape[0]
    batch_size = min(batch_size, rows)
    n_batches = math.ceil(rows / batch_size)
    net._ensure_arena(batch_size)
    dev = net.backend
    X, Y = dev.to_device(X), dev.to_device(Y)         # the data stays there for the whole fit
    xbuf = dev.to_device(np.empty(batch_size * X.shape[1], net.dtype))
    ybuf = dev.to_device(np.empty(batch_size * (1 if Y.ndim == 1 else Y.shape[1]), Y.dtype))
    lr = net.dtype.type(net.optimizer.lr)
    history = History()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = dev.to_device(net.rng.permutation(rows) if shuffle else np.arange(rows))
        good = net._snapshot()
        total = dev.train_epoch(net.params, net.grads, net.state, net.arena, X, Y, order,
                                0, n_batches, batch_size, lr, net.step,
                                int(net.rng.integers(2**31)), xbuf, ybuf)
        loss = total / rows
        if not math.isfinite(loss) or not np.isfinite(dev.to_host(net.params)).all():
            net._restore(good)
            raise DivergenceError(
                f"the loss became {loss} in epoch {epoch + 1}; the parameters from the end of "
                f"epoch {epoch} were restored. Lower the learning rate or rescale the inputs.")
        net.step += n_batches
        net.epoch += 1
        history.history["loss"].append(float(loss))
        history.epoch.append(epoch)
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}  loss {loss:.6g}  "
                  f"{rows / (time.perf_counter() - t0):,.0f} rows/s")
    return history
