"""The scheduler: epochs over shuffled mini-batches, handed to the compiled loop in chunks.

Per epoch: draw a permutation of the rows from the model's seeded generator, then
call the backend's ``train_epoch`` (on the CPU the kernel library's epoch loop, which
calls the generated ``train_step``) on a chunk of batches at a time (gather batch,
forward, loss, backward, update, for every batch of the chunk).  Python runs only
between chunks: a chunk is the whole epoch unless a progress bar is shown, then it
is sized to take about 0.1 s.  The last batch may be smaller; the epoch's loss is
the mean over rows (each batch's mean loss weighted by its row count).

Around the loop: validation, metrics, learning-rate schedules, callbacks, and
divergence handling (a NaN/Inf loss restores the last good epoch and raises).
"""
from __future__ import annotations

import math
import numbers
import time

import numpy as np

from .callbacks import CallbackList, make_progress
from .ir import STATS_SIZE
from .validate import positive_int

PROGRESS_SECONDS = 0.1


class History:
    """What ``fit`` returns: ``history["loss"]`` (one value per epoch), metrics, ``epoch``."""

    def __init__(self):
        self.history: dict[str, list[float]] = {"loss": []}
        self.epoch: list[int] = []

    def append(self, epoch: int, logs: dict):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self):
        return f"<History epochs={len(self.epoch)} keys={list(self.history)}>"


class DivergenceError(FloatingPointError):
    """Training produced a NaN or Inf loss; the parameters were restored."""


def _row_weights(net, X, Y, class_weight, sample_weight):
    """One weight per row from sample_weight and/or class_weight, or None."""
    if class_weight is None and sample_weight is None:
        return None
    w = np.ones(X.shape[0])
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=float) if np.ndim(sample_weight) else None
        if sw is None or sw.shape != (X.shape[0],):
            raise ValueError(f"sample_weight must have one weight per row, shape ({X.shape[0]},)")
        w *= sw
    if class_weight is not None:
        if net.loss.targets != "labels" or not isinstance(class_weight, dict):
            raise ValueError("class_weight must be a dict label -> weight, for cross_entropy")
        k = net.model.output.width
        table = np.ones(k)
        for label, weight in class_weight.items():
            if not isinstance(label, numbers.Integral) or not 0 <= label < k:
                raise ValueError(f"class_weight has label {label!r}; labels are 0..{k - 1}")
            table[label] = weight
        w *= table[Y]
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("sample and class weights must be finite, non-negative and not all zero")
    return _in_model_dtype(w, net.dtype)


def _in_model_dtype(w: np.ndarray, dtype) -> np.ndarray:
    """The row weights in the model's dtype; weights that overflow it (or whose sum does)
    or that underflow to zero in it are a ValueError naming the weights."""
    dt = np.dtype(dtype)
    info = np.finfo(dt)
    with np.errstate(over="ignore", under="ignore"):
        out = np.ascontiguousarray(w, dtype=dt)
    if not np.isfinite(out).all() or w.sum() > info.max:
        big = float(w.max())
        raise ValueError(f"sample/class weights up to {big:.3g} overflow {dt.name} (largest "
                         f"{info.max:.3g}, and their sum must fit too): scale the weights down")
    lost = (w > 0) & (out == 0)
    if lost.any():
        i = int(np.argmax(lost))
        raise ValueError(f"sample/class weight {w[i]:.3g} (row {i}) underflows to zero in "
                         f"{dt.name} (smallest normal {info.tiny:.3g}): scale the weights up; "
                         "only their ratios matter")
    if (w > 0).any() and float(out[w > 0].min()) < info.tiny:
        i = int(np.argmax((w > 0) & (out < info.tiny)))
        raise ValueError(f"sample/class weight {w[i]:.3g} (row {i}) is subnormal in {dt.name} "
                         f"(smallest normal {info.tiny:.3g}): scale the weights up; only their "
                         "ratios matter")
    return out


def _validation(net, X, Y, validation_data, validation_split):
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        return X, Y, net._data(*validation_data)
    if not validation_split:
        return X, Y, None
    if not isinstance(validation_split, numbers.Real) or not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be in (0, 1), got {validation_split!r}")
    n_val = int(round(X.shape[0] * validation_split))
    if n_val < 1 or n_val >= X.shape[0]:
        raise ValueError(f"validation_split={validation_split} leaves no rows for "
                         f"{'validation' if n_val < 1 else 'training'} out of {X.shape[0]}")
    # the last rows, before any shuffling (as Keras does)
    return X[:-n_val], Y[:-n_val], (X[-n_val:], Y[-n_val:])


def prepare(net, X, y, epochs, batch_size, verbose, validation_data, validation_split,
            class_weight, sample_weight):
    """Validate fit's arguments and data (before any training) and split off validation:
    returns X, Y, row weights (or None), validation data (or None), epochs, batch_size.
    ``distributed.fit`` shares it."""
    X, Y = net._data(X, y)
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    weights = _row_weights(net, X, Y, class_weight, sample_weight)
    if weights is not None and validation_split:
        weights = weights[:X.shape[0] - int(round(X.shape[0] * validation_split))]
    X, Y, val = _validation(net, X, Y, validation_data, validation_split)
    return X, Y, weights, val, epochs, batch_size


def fit(net, X, y, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
        verbose: int = 0, validation_data=None, validation_split: float = 0.0,
        callbacks=None, class_weight=None, sample_weight=None) -> History:
    """Train ``net``; see ``CompiledModel.fit``.  Everything is validated before training."""
    X, Y, weights, val, epochs, batch_size = prepare(
        net, X, y, epochs, batch_size, verbose, validation_data, validation_split,
        class_weight, sample_weight)
    cbs = CallbackList(callbacks)
    cbs.set_model(net)

    rows = X.shape[0]
    batch_size = min(batch_size, rows)
    n_batches = math.ceil(rows / batch_size)
    net._ensure_arena(batch_size)
    dev = net.backend
    put = dev.to_device
    Xd, Yd = put(X), put(Y)                   # the data stays there for the whole fit
    Wd = put(weights if weights is not None else np.zeros(0, net.dtype))
    xbuf = put(np.empty(batch_size * X.shape[1], net.dtype))
    ybuf = put(np.empty(batch_size * (1 if Y.ndim == 1 else Y.shape[1]), Y.dtype))
    wbuf = put(np.empty(batch_size if weights is not None else 0, net.dtype))
    losses = np.zeros(n_batches)
    schedule = net.optimizer.schedule
    history = History()
    net.stop_training = False
    chunk = n_batches if verbose != 1 else 1
    cbs.on_train_begin()
    try:
        with make_progress(verbose, epochs, n_batches) as progress:
            for epoch in range(epochs):
                cbs.on_epoch_begin(epoch)
                progress.epoch_begin(epoch)
                t0 = time.perf_counter()
                good = net._snapshot()
                lr = net.dtype.type(schedule.value(net.epoch, net.step + 1))
                order = put(net.rng.permutation(rows) if shuffle else np.arange(rows))
                seed = int(net.rng.integers(2**31))
                stats = np.zeros(STATS_SIZE if net.metrics else 0)   # empty: no sums
                total, first = 0.0, 0
                while first < n_batches:
                    last = min(first + chunk, n_batches)
                    tc = time.perf_counter()
                    with net._lock:       # other threads' predict sees whole chunks only
                        total += dev.train_epoch(net.params, net.grads, net.state, net.arena,
                                                 Xd, Yd, Wd, order, first, last, batch_size, lr,
                                                 net.step + first, seed, xbuf, ybuf, wbuf,
                                                 losses, stats)
                    if verbose == 1:      # size chunks so the bar moves about every 0.1 s
                        per_batch = (time.perf_counter() - tc) / (last - first)
                        chunk = max(1, int(PROGRESS_SECONDS / max(per_batch, 1e-9)))
                        done = min(last * batch_size, rows)
                        progress.update(last, done, total / done)
                    first = last
                loss = total / rows
                if not math.isfinite(loss) or not dev.all_finite(net.params):
                    bad = np.flatnonzero(~np.isfinite(losses))
                    where = f", step {bad[0] + 1} of {n_batches}" if bad.size else ""
                    net._restore(good)
                    restored = (f"the parameters from the end of epoch {net.epoch} were "
                                "restored" if net.epoch else "the initial parameters (from "
                                "before training) were restored")
                    raise DivergenceError(
                        f"the loss became {loss} in epoch {net.epoch + 1}{where}; {restored}. "
                        "Lower the learning rate or rescale the inputs.")
                net.step += n_batches
                net.epoch += 1
                logs = {"loss": float(loss), **net._metric_logs(stats, rows)}
                if val is not None:
                    logs.update(net._evaluate(*val, prefix="val_"))
                if hasattr(schedule, "on_epoch_end"):
                    schedule.on_epoch_end(logs)
                    logs["lr"] = float(schedule.value(net.epoch, net.step + 1))
                progress.epoch_end(epoch, logs, time.perf_counter() - t0)
                history.append(epoch, logs)
                cbs.on_epoch_end(epoch, logs)
                if net.stop_training:
                    break
    finally:
        cbs.on_train_end()
    return history
