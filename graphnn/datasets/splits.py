"""Seeded train/test (and train/validation/test) splits, optionally stratified by class.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

from .generators import Seed, _rng


def _part_size(size, n: int, what: str) -> int:
    """A part's row count from a fraction of ``n`` (rounded up) or an absolute count."""
    if isinstance(size, bool):
        raise ValueError(f"{what} must be a fraction in (0, 1) or a row count, got {size!r}")
    if isinstance(size, numbers.Integral):
        if not 1 <= size < n:
            raise ValueError(f"{what} as a row count must be in 1..{n - 1} for {n} rows, got {size}")
        return int(size)
    if isinstance(size, numbers.Real) and 0.0 < size < 1.0:
        return max(1, math.ceil(float(size) * n - 1e-9))
    raise ValueError(f"{what} must be a fraction in (0, 1) or a row count, got {size!r}")


def _apportion(total: int, weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Integers summing to ``total``, each <= its cap, as close as possible to
    ``total * weights / weights.sum()`` (largest remainders get the leftover units)."""
    quota = total * weights / weights.sum()
    alloc = np.minimum(np.floor(quota).astype(np.int64), caps)
    left = total - int(alloc.sum())
    remainder = quota - alloc
    while left > 0:
        room = alloc < caps
        order = np.argsort(-np.where(room, remainder, -np.inf), kind="stable")
        for i in order[:min(left, int(room.sum()))]:
            alloc[i] += 1
            remainder[i] -= 1.0
            left -= 1
    return alloc


def _check_xy(X, y) -> tuple[np.ndarray, np.ndarray | None, int]:
    X = np.asarray(X)
    if X.ndim == 0:
        raise ValueError(f"X must be an array with one row per sample, got a scalar {X!r}")
    n = len(X)
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 0 or len(y) != n:
            raise ValueError(f"X has {n} rows but y has shape {y.shape}; they must have the "
                             "same length")
    return X, y, n


def _split_indices(n: int, sizes: Sequence[int], y: np.ndarray | None, stratify: bool,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices for each part: ``sizes`` are the held-out parts (e.g. [val, test]); the
    rest is returned first, as the training part."""
    if sum(sizes) >= n:
        raise ValueError(f"the held-out parts take {sum(sizes)} of {n} rows, leaving none for "
                         "training; use smaller sizes")
    if not stratify:
        perm = rng.permutation(n)
        bounds = np.cumsum([0, *sizes])
        held = [perm[bounds[i]:bounds[i + 1]] for i in range(len(sizes))]
        return [perm[bounds[-1]:], *held]
    if y is None:
        raise ValueError("stratify=True needs labels y")
    if y.ndim != 1:
        raise ValueError(f"stratify=True needs 1-D class labels, got y of shape {y.shape}")
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    pools = [rng.permutation(np.flatnonzero(inverse == k)) for k in range(len(counts))]
    taken = np.zeros(len(counts), np.int64)
    held = []
    for size in sizes:
        alloc = _apportion(size, counts.astype(np.float64), counts - taken)
        held.append(np.concatenate([pools[k][taken[k]:taken[k] + alloc[k]]
                                    for k in range(len(counts))]))
        taken += alloc
    train = np.concatenate([pools[k][taken[k]:] for k in range(len(counts))])
    return [rng.permutation(part) for part in (train, *held)]


def train_test_split(X, y=None, test_size: float | int = 0.25, seed: Seed = 0,
                     stratify: bool = False):
    """Shuffle the rows and split them into a training part and a test part.

    Args:
        X: features, one row per sample (any array with a first axis).
        y: labels, one per row, or ``None``.
        test_size: a fraction of the rows in (0, 1), rounded up, or a row count.
        seed: int, ``numpy.random.Generator`` or ``None`` (fresh entropy).
        stratify: keep each class's share of ``y`` the same in both parts (each class's
            test count is within one row of its exact proportion).

    Returns:
        ``(X_train, X_test, y_train, y_test)`` (scikit-learn's order), or
        ``(X_train, X_test)`` when ``y`` is ``None``.  The parts are disjoint copies that
        together hold every row exactly once, in shuffled order.
    """
    X, y, n = _check_xy(X, y)
    if n < 2:
        raise ValueError(f"need at least 2 rows to split, got {n}")
    n_test = _part_size(test_size, n, "test_size")
    train, test = _split_indices(n, [n_test], y, stratify, _rng(seed))
    if y is None:
        return X[train], X[test]
    return X[train], X[test], y[train], y[test]


def train_val_test_split(X, y=None, val_size: float | int = 0.15, test_size: float | int = 0.15,
                         seed: Seed = 0, stratify: bool = False):
    """Shuffle the rows and split them into training, validation and test parts.

    Args:
        X: features, one row per sample.
        y: labels, one per row, or ``None``.
        val_size, test_size: each a fraction of all rows in (0, 1), rounded up, or a row count.
        seed: int, ``numpy.random.Generator`` or ``None`` (fresh entropy).
        stratify: keep each class's share of ``y`` in every part.

    Returns:
        ``(X_train, X_val, X_test, y_train, y_val, y_test)``, or ``(X_train, X_val, X_test)``
        when ``y`` is ``None``.  Disjoint copies covering every row exactly once.
    """
    X, y, n = _check_xy(X, y)
    if n < 3:
        raise ValueError(f"need at least 3 rows for three parts, got {n}")
    n_val = _part_size(val_size, n, "val_size")
    n_test = _part_size(test_size, n, "test_size")
    train, val, test = _split_indices(n, [n_val, n_test], y, stratify, _rng(seed))
    if y is None:
        return X[train], X[val], X[test]
    return X[train], X[val], X[test], y[train], y[val], y[test]
