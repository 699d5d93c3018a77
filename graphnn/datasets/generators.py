"""Toy data generators (NumPy only): lines, XOR, moons, spirals, a sine.

Each takes ``seed`` (an int, a ``numpy.random.Generator`` or None) and uses its own
Generator; the global NumPy random state is never touched.  Shapes in each docstring.
"""
from __future__ import annotations

import math
import numbers
from typing import Union

import numpy as np


#: a seed: an int, a Generator (used as is), or None for fresh OS entropy
Seed = Union[int, np.random.Generator, None]


def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    raise ValueError(f"seed must be an int, a numpy.random.Generator or None, got {seed!r}")


def _count(n, what: str = "n", minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _real(value, what: str, nonnegative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if nonnegative and value < 0:
        raise ValueError(f"{what} must be >= 0, got {value!r}")
    return float(value)


def _interval(r, what: str) -> tuple[float, float]:
    try:
        lo, hi = r
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a pair (low, high), got {r!r}") from None
    lo, hi = _real(lo, f"{what}[0]"), _real(hi, f"{what}[1]")
    if not lo < hi:
        raise ValueError(f"{what} must have low < high, got {r!r}")
    return lo, hi


def make_line(n: int = 100, m: float = 2.0, c: float = 1.0, noise: float = 0.1, seed: Seed = 0,
              x_range: tuple[float, float] = (-1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Points on the line ``y = m x + c`` plus Gaussian noise: the one-neuron regression.

    ``x`` is uniform on ``x_range``; ``y = m x + c + noise * N(0, 1)``.

    Returns:
        ``(X, y)``, both float64 of shape ``(n, 1)``.
    """
    n = _count(n)
    m, c = _real(m, "m"), _real(c, "c")
    noise = _real(noise, "noise", nonnegative=True)
    lo, hi = _interval(x_range, "x_range")
    rng = _rng(seed)
    X = rng.uniform(lo, hi, size=(n, 1))
    y = m * X + c + noise * rng.standard_normal((n, 1))
    return X, y


def make_xor(n: int = 200, noise: float = 0.2, seed: Seed = 0) -> tuple[np.ndarray, np.ndarray]:
    """The XOR problem: four Gaussian blobs at the corners (+-1, +-1), labelled by XOR of signs.

    Corners are dealt out in turn (so each holds n/4 rows, give or take one) and the rows
    shuffled; ``noise`` is the standard deviation of each blob.  A point's label is 1 when
    its corner's coordinates have different signs, 0 otherwise; with ``noise`` well under 1
    that is ``x0 * x1 < 0``.  No line separates the classes.

    Returns:
        ``(X, y)``: ``X`` float64 of shape ``(n, 2)``, ``y`` int64 of shape ``(n,)`` in {0, 1}.
    """
    n = _count(n)
    noise = _real(noise, "noise", nonnegative=True)
    rng = _rng(seed)
    corners = np.array([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])
    which = rng.permutation(np.arange(n) % 4)
    X = corners[which] + noise * rng.standard_normal((n, 2))
    y = (which >= 2).astype(np.int64)
    return X, y


def make_moons(n: int = 200, noise: float = 0.1, seed: Seed = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (the same construction as scikit-learn's ``make_moons``).

    Class 0 (``n // 2`` points): the upper half of the unit circle, ``(cos t, sin t)``,
    ``t`` evenly spaced over [0, pi].  Class 1 (the other ``n - n // 2``): the lower half
    circle shifted to ``(1 - cos t, 0.5 - sin t)``.  Rows are shuffled, then Gaussian noise
    of standard deviation ``noise`` is added to every coordinate.

    Returns:
        ``(X, y)``: ``X`` float64 of shape ``(n, 2)``, ``y`` int64 of shape ``(n,)`` in {0, 1}.
    """
    n = _count(n, minimum=2)
    noise = _real(noise, "noise", nonnegative=True)
    rng = _rng(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0.0, np.pi, n_out)
    t_in = np.linspace(0.0, np.pi, n_in)
    X = np.concatenate([np.column_stack([np.cos(t_out), np.sin(t_out)]),
                        np.column_stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)])])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    order = rng.permutation(n)
    X, y = X[order], y[order]
    if noise > 0:
        X += noise * rng.standard_normal(X.shape)
    return X, y


def make_spirals(n: int = 300, classes: int = 2, noise: float = 0.1, seed: Seed = 0,
                 turns: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms, one per class.

    Rows are dealt to the classes in turn (each gets n/classes, give or take one).  Along
    arm ``k`` the radius ``r`` runs evenly from 0 to 1 and the angle is
    ``2 pi (turns * r + k / classes)``; the point is ``r (cos angle, sin angle)`` plus
    Gaussian noise of standard deviation ``noise`` on each coordinate.  Rows are shuffled.

    Returns:
        ``(X, y)``: ``X`` float64 of shape ``(n, 2)``, ``y`` int64 of shape ``(n,)`` in
        ``0..classes-1``.
    """
    classes = _count(classes, "classes", minimum=2)
    n = _count(n, minimum=classes)
    noise = _real(noise, "noise", nonnegative=True)
    turns = _real(turns, "turns")
    if turns <= 0:
        raise ValueError(f"turns must be > 0, got {turns!r}")
    rng = _rng(seed)
    y = np.arange(n, dtype=np.int64) % classes
    r = np.empty(n)
    for k in range(classes):
        idx = np.flatnonzero(y == k)
        r[idx] = np.linspace(0.0, 1.0, len(idx))
    angle = 2.0 * np.pi * (turns * r + y / classes)
    X = r[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    order = rng.permutation(n)
    X, y = X[order], y[order]
    if noise > 0:
        X += noise * rng.standard_normal(X.shape)
    return X, y


def make_sine(n: int = 200, noise: float = 0.1, seed: Seed = 0,
              x_range: tuple[float, float] = (-math.pi, math.pi)) -> tuple[np.ndarray, np.ndarray]:
    """Noisy samples of ``y = sin(x)``, ``x`` uniform on ``x_range``: a smooth non-linear regression.

    Returns:
        ``(X, y)``, both float64 of shape ``(n, 1)``; ``y = sin(X) + noise * N(0, 1)``.
    """
    n = _count(n)
    noise = _real(noise, "noise", nonnegative=True)
    lo, hi = _interval(x_range, "x_range")
    rng = _rng(seed)
    X = rng.uniform(lo, hi, size=(n, 1))
    y = np.sin(X) + noise * rng.standard_normal((n, 1))
    return X, y
