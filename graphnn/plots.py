"""Plots for runs and examples, with matplotlib if it is installed (an optional extra).

Every function draws with matplotlib's object interface and the Agg canvas (no window,
no pyplot state), writes a PNG and returns its path.  Without matplotlib they raise
``PlotsUnavailable`` (an ImportError) whose message says how to install it; callers
that can do without plots catch it and print ``PlotsUnavailable.message``.

    plot_history(history, out_dir)            # loss.png, accuracy.png (train and val)
    preload()                                 # import matplotlib in the background
    plot_fits(x, target, fits, path)          # curves against a target curve
    plot_decision_boundary(predict, X, y, path)
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

__all__ = ["PlotsUnavailable", "available", "plot_history", "plot_fits",
           "plot_decision_boundary", "INSTALL"]

INSTALL = 'pip install matplotlib (or pip install "graphnn[plot]")'


class PlotsUnavailable(ImportError):
    """matplotlib is not installed."""

    message = f"plots skipped: matplotlib is not installed ({INSTALL})"

    def __init__(self):
        super().__init__(self.message)


def _figure(width=6.4, height=4.0):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotsUnavailable() from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def preload() -> threading.Thread:
    """Import matplotlib (and let it build its font cache, on a machine's first run) in a
    background thread, so plots drawn later do not wait for it: about half a second,
    which ``graphnn train`` overlaps with a machine's first compile (Python's GIL lets the
    import run while the compile waits on LLVM or its helper process).  Any failure is
    left for the plotting call to report (``PlotsUnavailable``).  Not a daemon: a process
    that ends early waits for the import, rather than stopping it while matplotlib
    writes its font cache under a lock file (left behind, it stalls every later import)."""
    def load():
        try:
            _figure()
        except Exception:        # noqa: BLE001 - the plotting call reports it
            pass
    thread = threading.Thread(target=load, name="graphnn-plots-preload")
    thread.start()
    return thread


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        _figure()
    except PlotsUnavailable:
        return False
    return True


def _save(fig, path) -> Path:
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _curve(history: dict, key: str, title: str, ylabel: str, path) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    for k, style in ((key, "-"), (f"val_{key}", "--")):
        values = history.get(k)
        if values:
            epochs = np.arange(1, len(values) + 1)
            ax.plot(epochs, values, style, marker="o" if len(values) < 30 else None,
                    markersize=3, label="validation" if k.startswith("val_") else "training")
    ax.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))     # epochs are whole numbers
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_history(history: dict, out_dir) -> list[Path]:
    """``loss.png`` (training and validation loss per epoch) and, when accuracy was
    measured, ``accuracy.png``, in ``out_dir``.  ``history``: ``History.history``."""
    out_dir = Path(os.fspath(out_dir))
    paths = [_curve(history, "loss", "loss per epoch", "loss", out_dir / "loss.png")]
    if history.get("accuracy") or history.get("val_accuracy"):
        paths.append(_curve(history, "accuracy", "accuracy per epoch", "accuracy",
                            out_dir / "accuracy.png"))
    return paths


def plot_fits(x, target, fits: dict, path, title: str = "", points=None) -> Path:
    """Curves ``fits`` (label -> y over ``x``) drawn against the ``target`` curve, with
    optional training ``points`` (X, y) behind them."""
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    x = np.ravel(x)
    if points is not None:
        ax.scatter(np.ravel(points[0]), np.ravel(points[1]), s=6, color="0.75",
                   label="training data", zorder=1)
    ax.plot(x, np.ravel(target), color="black", linewidth=2.5, label="target", zorder=2)
    for label, y in fits.items():
        ax.plot(x, np.ravel(y), linewidth=1.3, label=str(label), zorder=3)
    ax.set_title(title)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def plot_decision_boundary(predict, X, y, path, title: str = "", resolution: int = 200
                           ) -> Path:
    """The class ``predict`` gives over a grid covering ``X`` (two features), shaded,
    with the points of ``X`` coloured by their label ``y``.  ``predict(grid)`` returns
    one row of scores per grid point (argmax taken) or one score per point (> 0)."""
    X = np.asarray(X)
    y = np.asarray(y).ravel()
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"plot_decision_boundary needs two features, got X of shape {X.shape}")
    fig = _figure(6.0, 5.0)
    ax = fig.add_subplot()
    pad = 0.1 * (X.max(axis=0) - X.min(axis=0)) + 1e-9
    lo, hi = X.min(axis=0) - pad, X.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    scores = np.asarray(predict(grid))
    cls = (scores.argmax(axis=1) if scores.ndim == 2 and scores.shape[1] > 1
           else (scores.ravel() > 0).astype(int))
    k = int(max(cls.max(), y.max())) + 1
    ax.contourf(gx, gy, cls.reshape(gx.shape), levels=np.arange(-0.5, k), cmap="coolwarm",
                alpha=0.35)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", s=10, edgecolors="k", linewidths=0.3,
               vmin=0, vmax=k - 1)
    ax.set_title(title)
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    return _save(fig, path)
