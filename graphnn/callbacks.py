"""Callbacks: Python hooks that ``fit`` calls between epochs, and its progress display.

The protocol (Keras-like).  ``fit`` wraps its ``callbacks=`` in a ``CallbackList``,
which calls on every callback, in order::

    set_model(net)                      once, before training
    on_train_begin(logs=None)
    for each epoch (0-based):
        on_epoch_begin(epoch, logs=None)
        ... the compiled epoch runs ...
        on_epoch_end(epoch, logs)       logs: {"loss": ..., "val_loss": ..., ...}
        stop if net.stop_training
    on_train_end(logs=None)

A callback reaches the model as ``self.model``; it stops training by setting
``self.model.stop_training = True`` (``fit`` sets it to False before
``on_train_begin`` and checks it after every ``on_epoch_end``).  Callbacks run in
Python between compiled epochs, never inside a kernel.

Monitored values (``monitor=``) are keys of the epoch's logs.  ``mode="auto"`` means
"max" for names containing ``acc``, ``auc``, ``precision``, ``recall`` or ``f1`` and
"min" otherwise.  A monitored key missing from the logs is a ValueError that lists
the keys there are (monitoring ``val_loss`` needs validation data).

Progress: ``make_progress(verbose, epochs, steps_per_epoch)`` gives ``fit`` an
object with ``epoch_begin(epoch)``, ``update(steps_done, rows_done, running_loss)``,
``epoch_end(epoch, logs, seconds)`` and ``close()``.
"""
from __future__ import annotations

import csv
import math
import numbers
import os
import string
import sys
import time

from .validate import positive_int

__all__ = ["Callback", "CallbackList", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN",
           "CSVLogger", "LambdaCallback", "Progress", "ProgressLine", "ProgressBar",
           "make_progress"]


class Callback:
    """Base class: every hook does nothing.  Subclass it and override the hooks you need.

    ``epoch`` is 0-based.  ``logs`` of ``on_epoch_end`` is a dict of that epoch's
    numbers (mean training ``loss`` and whatever else ``fit`` measured); the other
    hooks' ``logs`` may be None.
    """

    model = None

    def set_model(self, net) -> None:
        self.model = net

    def on_train_begin(self, logs=None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        pass

    def on_train_end(self, logs=None) -> None:
        pass


class CallbackList(Callback):
    """Many callbacks as one: each hook is called on each callback, in the given order.

    ``callbacks`` is None, one Callback, or an iterable of Callbacks; anything else is a
    ValueError naming the offending entry.
    """

    def __init__(self, callbacks=None):
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, Callback) or isinstance(callbacks, (str, bytes)) \
                or not hasattr(callbacks, "__iter__"):
            callbacks = [callbacks]
        self.callbacks: list[Callback] = []
        for i, cb in enumerate(callbacks):
            self.append(cb, i)

    def append(self, callback: Callback, _index: int | None = None) -> None:
        where = f"callbacks[{_index if _index is not None else len(self.callbacks)}]"
        if isinstance(callback, type) and issubclass(callback, Callback):
            raise ValueError(f"{where} is the class {callback.__name__}; pass an instance, "
                             f"e.g. {callback.__name__}()")
        if not isinstance(callback, Callback):
            from .schedules import Schedule
            hint = (" (a learning-rate schedule goes to the optimizer: "
                    f"gn.SGD(lr={type(callback).__name__}(...)))"
                    if isinstance(callback, Schedule) else
                    " (subclass graphnn.callbacks.Callback, or wrap a function in LambdaCallback)")
            raise ValueError(f"{where} must be a graphnn Callback, got {callback!r}{hint}")
        self.callbacks.append(callback)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)

    def set_model(self, net) -> None:
        self.model = net
        for cb in self.callbacks:
            cb.set_model(net)

    def on_train_begin(self, logs=None) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None) -> None:
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def __repr__(self):
        return f"CallbackList({self.callbacks!r})"


# -- monitoring ----------------------------------------------------------------------------
_MAX_WORDS = ("acc", "auc", "precision", "recall", "f1")


def _mode(mode, monitor) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"monitor must be the name of a logged value such as 'val_loss', "
                         f"got {monitor!r}")
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if any(w in monitor.lower() for w in _MAX_WORDS) else "min"
    return mode


def _monitored(logs, monitor: str, who: str) -> float:
    if not isinstance(logs, dict) or monitor not in logs:
        have = sorted(logs) if isinstance(logs, dict) else logs
        hint = (" (pass validation data to fit, or monitor 'loss')"
                if monitor.startswith("val_") else "")
        raise ValueError(f"{who} monitors {monitor!r}, which is not in the epoch's logs "
                         f"{have!r}{hint}")
    value = logs[monitor]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{who}: logs[{monitor!r}] must be a number, got {value!r}")
    return float(value)


class _Monitor(Callback):
    """Keeps the best value of ``monitor``; ``_improves`` says whether a value beats it."""

    def __init__(self, monitor, mode, min_delta=0.0):
        self.mode = _mode(mode, monitor)
        self.monitor = monitor
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) \
                or not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        self.min_delta = float(min_delta)
        self._reset_best()

    def _reset_best(self):
        self.best = math.inf if self.mode == "min" else -math.inf

    def _improves(self, current: float) -> bool:        # NaN never improves
        if self.mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta


# -- the callbacks -------------------------------------------------------------------------
class EarlyStopping(_Monitor):
    """Stop training when ``monitor`` has stopped improving.

    An epoch improves when its value beats the best so far by more than ``min_delta``
    (absolute): ``current < best - min_delta`` in mode "min", ``current > best +
    min_delta`` in mode "max".  Training stops at the end of the epoch that is the
    ``patience``-th in a row without improvement (Keras' rule; ``patience=0`` and ``1``
    both stop at the first epoch that does not improve).  With ``restore_best`` the
    parameters of the best epoch (``net.get_params()`` taken when it ended) are put back
    with ``net.set_params`` at the end of training, whether or not it stopped early.

    After training: ``best`` (the best value), ``best_epoch`` (0-based, None if no epoch
    had a number that improved), ``stopped_epoch`` (0-based epoch at which it stopped
    training, None if it did not), ``wait`` (epochs since the last improvement).
    State is reset by ``on_train_begin``, so one instance can serve several fits.
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best=True):
        super().__init__(monitor, mode, min_delta)
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) \
                or patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        self.patience = int(patience)
        if not isinstance(restore_best, bool):
            raise ValueError(f"restore_best must be True or False, got {restore_best!r}")
        self.restore_best = restore_best
        self.on_train_begin()

    def on_train_begin(self, logs=None) -> None:
        self._reset_best()
        self.wait = 0
        self.best_epoch = None
        self.stopped_epoch = None
        self.best_params = None

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        current = _monitored(logs, self.monitor, "EarlyStopping")
        if self._improves(current):
            self.best = current
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best:
                self.best_params = self.model.get_params()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None) -> None:
        if self.restore_best and self.best_params is not None:
            self.model.set_params(self.best_params)

    def __repr__(self):
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta!r}, mode={self.mode!r}, "
                f"restore_best={self.restore_best})")


def _check_path(path, who: str) -> str:
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise ValueError(f"{who} path must be a non-empty string or path, got {path!r}")
    return path


class ModelCheckpoint(_Monitor):
    """Save the model with ``net.save(path)`` at the end of every epoch, or with
    ``save_best_only`` only at epochs where ``monitor`` improves on the best so far
    (strictly; the best is kept across fits, as in Keras).

    ``path`` is formatted like Keras' ``filepath``: ``{epoch}`` is the 1-based epoch
    number and every log key can be named, with a format spec:
    ``"ckpt/digits-{epoch:02d}-{val_loss:.3f}.npz"``.  ``saved`` lists the paths written.
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto"):
        super().__init__(monitor, mode)
        self.path = _check_path(path, "ModelCheckpoint")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.path) if f is not None]
        except ValueError as e:
            raise ValueError(f"ModelCheckpoint path {self.path!r} is not a valid format "
                             f"string: {e}") from None
        for f in fields:
            if f == "" or f.split(".")[0].split("[")[0].isdigit():
                raise ValueError(f"ModelCheckpoint path {self.path!r}: use named fields such "
                                 "as {epoch} or {val_loss}, not positional ones ({} or {0})")
            if not f.isidentifier():     # {epoch.__class__}: attribute and index lookups
                raise ValueError(f"ModelCheckpoint path {self.path!r}: field {{{f}}} may only "
                                 "name a logged value, such as {epoch} or {val_loss} (no "
                                 "attribute or index lookups)")
        if not isinstance(save_best_only, bool):
            raise ValueError(f"save_best_only must be True or False, got {save_best_only!r}")
        self.save_best_only = save_best_only
        self.saved: list[str] = []

    def folder(self) -> str:
        """The folder the checkpoints go to (the part of ``path`` before any ``{field}``)."""
        static = self.path.split("{", 1)[0]
        head = os.path.dirname(static) if "{" in self.path else os.path.dirname(self.path)
        return head or "."

    def on_train_begin(self, logs=None) -> None:
        """Check the folder now, not after the first epoch has trained."""
        folder = self.folder()
        if not os.path.isdir(folder):
            what = "is not a folder" if os.path.exists(folder) else "does not exist"
            raise ValueError(f"ModelCheckpoint path {self.path!r}: the folder {folder!r} {what}; "
                             "create it first")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(f"ModelCheckpoint path {self.path!r}: the folder {folder!r} is not "
                             "writable")

    def filename(self, epoch: int, logs: dict) -> str:
        """The path for 0-based ``epoch`` with these logs."""
        values = dict(logs or {})
        values["epoch"] = epoch + 1
        try:
            return self.path.format_map(values)
        except KeyError as e:
            raise ValueError(f"ModelCheckpoint path {self.path!r} names {{{e.args[0]}}}, which "
                             f"is not in the logs (available: {', '.join(sorted(values))})"
                             ) from None
        except (ValueError, TypeError, IndexError, AttributeError) as e:
            raise ValueError(f"ModelCheckpoint path {self.path!r} could not be formatted "
                             f"with the logs {values!r}: {e}") from None

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if not self._improves(current):
                return
            self.best = current
        name = self.filename(epoch, logs)
        self.model.save(name)
        self.saved.append(name)

    def __repr__(self):
        return (f"ModelCheckpoint({self.path!r}, monitor={self.monitor!r}, "
                f"save_best_only={self.save_best_only}, mode={self.mode!r})")


class TerminateOnNaN(Callback):
    """Stop training as soon as an epoch's ``logs["loss"]`` is NaN or infinite.
    ``stopped_epoch``: the 0-based epoch where it stopped, or None."""

    def __init__(self):
        self.stopped_epoch = None

    def on_train_begin(self, logs=None) -> None:
        self.stopped_epoch = None

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        loss = (logs or {}).get("loss")
        if isinstance(loss, numbers.Real) and not math.isfinite(loss):
            self.stopped_epoch = epoch
            self.model.stop_training = True


def _cell(value) -> str:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return repr(float(value))
    return str(value)


class CSVLogger(Callback):
    """One CSV row per epoch: ``epoch`` (1-based, as the progress display and the plots
    count) then the logs' keys, sorted.

    The file is complete after every epoch (each row is written and the file closed).
    If a key appears in a later epoch, the file is rewritten with the wider header and
    earlier rows get empty cells there.  ``append=True`` keeps an existing file's rows
    (and its columns); otherwise ``on_train_begin`` starts the file afresh.
    """

    def __init__(self, path, append=False, separator=","):
        self.path = _check_path(path, "CSVLogger")
        if not isinstance(append, bool):
            raise ValueError(f"append must be True or False, got {append!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator must be one character, got {separator!r}")
        self.append = append
        self.separator = separator
        self.columns: list[str] | None = None
        self._rows: list[dict] = []

    def on_train_begin(self, logs=None) -> None:
        self.columns, self._rows = None, []
        if self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, newline="") as f:
                rows = list(csv.reader(f, delimiter=self.separator))
            if rows:
                self.columns = rows[0]
                self._rows = [dict(zip(rows[0], r)) for r in rows[1:]]
        elif not self.append:
            open(self.path, "w").close()

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        logs = logs or {}
        row = {"epoch": str(epoch + 1)}
        row.update((k, _cell(v)) for k, v in logs.items() if k != "epoch")
        old = self.columns or []
        columns = ["epoch"] + sorted((set(old) | set(row)) - {"epoch"})
        self._rows.append(row)
        if columns != self.columns:               # first row, or new keys: write it all
            self.columns = columns
            with open(self.path, "w", newline="") as f:
                writer = csv.DictWriter(f, columns, restval="", delimiter=self.separator)
                writer.writeheader()
                writer.writerows(self._rows)
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, columns, restval="", delimiter=self.separator).writerow(row)

    def __repr__(self):
        return f"CSVLogger({self.path!r}, append={self.append})"


class LambdaCallback(Callback):
    """A callback from plain functions: ``on_epoch_begin(epoch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_train_begin(logs)``, ``on_train_end(logs)``;
    leave out the ones you do not need."""

    def __init__(self, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_epoch_begin=None):
        for name, fn in [("on_epoch_end", on_epoch_end), ("on_train_begin", on_train_begin),
                         ("on_train_end", on_train_end), ("on_epoch_begin", on_epoch_begin)]:
            if fn is not None and not callable(fn):
                raise ValueError(f"LambdaCallback {name} must be a function or None, "
                                 f"got {fn!r}")
        self._epoch_end, self._train_begin = on_epoch_end, on_train_begin
        self._train_end, self._epoch_begin = on_train_end, on_epoch_begin

    def on_train_begin(self, logs=None) -> None:
        if self._train_begin is not None:
            self._train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if self._epoch_begin is not None:
            self._epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        if self._epoch_end is not None:
            self._epoch_end(epoch, logs)

    def on_train_end(self, logs=None) -> None:
        if self._train_end is not None:
            self._train_end(logs)


# -- progress display ----------------------------------------------------------------------
def _number(v) -> str:
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return str(int(v))
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        return f"{float(v):.4g}"
    return str(v)


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s >= 100 else f"{s:.3g} s"


def _logs_text(logs) -> str:
    """``loss 0.1234 - val_loss 0.2345 - ...``: ``loss`` first, then the logs' order."""
    logs = logs or {}
    keys = (["loss"] if "loss" in logs else []) + [k for k in logs if k != "loss"]
    return " - ".join(f"{k} {_number(logs[k])}" for k in keys)


class Progress:
    """What ``fit`` reports progress to; this base one shows nothing (``verbose=0``).

    ``epoch_begin(epoch)``: a 0-based epoch starts.  ``update(steps_done, rows_done,
    running_loss)``: so far in this epoch, ``steps_done`` steps over ``rows_done`` rows,
    with mean loss ``running_loss`` (cumulative within the epoch, not increments).
    ``epoch_end(epoch, logs, seconds)``: the epoch ended with these logs after
    ``seconds``.  ``close()``: training is over (also on error: use ``with``).
    """

    def __init__(self, epochs: int, steps_per_epoch: int):
        self.epochs = positive_int(epochs, "epochs")
        self.steps_per_epoch = positive_int(steps_per_epoch, "steps_per_epoch")

    def epoch_begin(self, epoch: int) -> None:
        pass

    def update(self, steps_done: int, rows_done: int, running_loss: float) -> None:
        pass

    def epoch_end(self, epoch: int, logs: dict, seconds: float) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ProgressLine(Progress):
    """``verbose=2``: one line per epoch on stdout (or ``file``):
    ``epoch 3/20 - loss 0.1234 - val_loss 0.2345 - 0.05 s``."""

    def __init__(self, epochs: int, steps_per_epoch: int, file=None):
        super().__init__(epochs, steps_per_epoch)
        self.file = file

    def line(self, epoch: int, logs: dict, seconds: float) -> str:
        text = _logs_text(logs)
        return (f"epoch {epoch + 1}/{self.epochs}" + (f" - {text}" if text else "")
                + f" - {_seconds(seconds)}")

    def epoch_end(self, epoch: int, logs: dict, seconds: float) -> None:
        print(self.line(epoch, logs, seconds), file=self.file or sys.stdout, flush=True)


class ProgressBar(Progress):
    """``verbose=1``: a tqdm bar per epoch (on stderr, or ``file``) counting steps and
    showing the running loss and the throughput in rows/s; at the end of the epoch it
    shows the epoch's logs and time and stays on screen."""

    BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"

    def __init__(self, epochs: int, steps_per_epoch: int, file=None):
        super().__init__(epochs, steps_per_epoch)
        from tqdm import tqdm                   # a required dependency; imported on first use
        self._tqdm = tqdm
        self.file = file
        self.bar = None
        self._t0 = time.perf_counter()
        self._rate = None

    def epoch_begin(self, epoch: int) -> None:
        self._close_bar()
        self._t0 = time.perf_counter()
        self._rate = None
        self.bar = self._tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.epochs}",
                              unit="step", file=self.file, leave=True,
                              bar_format=self.BAR_FORMAT)

    def update(self, steps_done: int, rows_done: int, running_loss: float) -> None:
        if self.bar is None:
            return
        elapsed = time.perf_counter() - self._t0
        if elapsed > 0:
            self._rate = rows_done / elapsed
        rate = f", {self._rate:,.0f} rows/s" if self._rate is not None else ""
        self.bar.set_postfix_str(f"loss {_number(running_loss)}{rate}", refresh=False)
        self.bar.update(max(0, min(steps_done, self.steps_per_epoch) - self.bar.n))

    def epoch_end(self, epoch: int, logs: dict, seconds: float) -> None:
        if self.bar is None:
            self.epoch_begin(epoch)
        text = _logs_text(logs)
        rate = f" - {self._rate:,.0f} rows/s" if self._rate is not None else ""
        self.bar.set_postfix_str((f"{text} - " if text else "") + _seconds(seconds) + rate,
                                 refresh=False)
        self.bar.update(self.steps_per_epoch - self.bar.n)
        self._close_bar()

    def _close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self._close_bar()


def make_progress(verbose, epochs: int, steps_per_epoch: int, file=None) -> Progress:
    """The progress display ``fit`` uses: ``verbose`` 0 silent, 1 a tqdm bar per epoch,
    2 one line per epoch."""
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    if verbose == 2:
        return ProgressLine(epochs, steps_per_epoch, file)
    if verbose == 1:
        return ProgressBar(epochs, steps_per_epoch, file)
    return Progress(epochs, steps_per_epoch)
