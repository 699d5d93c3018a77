"""Checks at the Python boundary, before any kernel runs.

Numba does no bounds checking, so a wrong shape or an out-of-range label that
reached a kernel would read or write the wrong memory.  Everything here turns
user input into contiguous, writable arrays of the model's dtype, or raises a
ValueError that says what was wrong and what was expected.
"""
from __future__ import annotations

import numbers
import re

import numpy as np


def as_inputs(X, width: int, dtype, what: str = "X") -> np.ndarray:
    """X as a C-contiguous (rows, width) array of ``dtype`` with finite values."""
    try:
        arr = np.asarray(X)
    except Exception as e:   # ragged lists and the like
        raise ValueError(f"{what} could not be read as an array: {e}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{what} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = (f"; for one feature per row use {what}.reshape(-1, 1)"
                if arr.ndim == 1 and width == 1 else
                f"; for a single row use {what}.reshape(1, -1)" if arr.ndim == 1 else "")
        raise ValueError(f"{what} must be 2-D (rows, {width} features), got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{what} is empty (0 rows); pass at least one row")
    if arr.shape[1] != width:
        raise ValueError(f"{what} has {arr.shape[1]} features per row, but the model's Input "
                         f"expects {width}")
    with np.errstate(over="ignore"):          # overflow to inf is reported just below
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not out.flags.writeable:
        out = out.copy()
    _check_finite(out, what, f"after conversion to {np.dtype(dtype).name}")
    return out


def _check_finite(arr: np.ndarray, what: str, when: str = ""):
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        where = ", ".join(str(i) for i in bad)
        raise ValueError(f"{what} contains NaN or Inf (first at index [{where}]"
                         f"{', ' + when if when else ''}); remove or impute those values")


def check_lengths(X: np.ndarray, y) -> None:
    n_y = len(y) if hasattr(y, "__len__") else None
    if n_y is None:
        raise ValueError(f"y must be an array with one entry per row of X, got {type(y).__name__}")
    if n_y != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {n_y}; they must have the same length")


def positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def as_dtype(dtype) -> np.dtype:
    try:
        dt = None if dtype is None else np.dtype(dtype)     # np.dtype(None) is float64
    except (TypeError, ValueError):
        dt = None
    # ``dt in (...)`` would not do: NumPy compares np.dtype(float64) == None as True
    if dt is None or dt.type not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


# -- names: data only (never code), kept short and printable so messages, files and
# checkpoints stay readable; one rule for building a graph, saving and loading it.
MAX_NAME = 256                # characters of a model or layer name
_LAYER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def model_name_problem(name) -> str | None:
    """Why ``name`` cannot be a saved model's name, or None.  Printable text without
    double quotes or backslashes, at most MAX_NAME characters."""
    if not isinstance(name, str) or not name:
        return f"must be a non-empty string, got {_short(name)}"
    if len(name) > MAX_NAME:
        return f"is {len(name)} characters long; at most {MAX_NAME} are allowed"
    if not name.isprintable() or '"' in name or "\\" in name:
        return (f"{_short(name)} has a control character, a double quote or a backslash; "
                "use printable text without them")
    return None


def layer_name_problem(name) -> str | None:
    """Why ``name`` cannot be a saved layer's name, or None: an identifier of at most
    MAX_NAME characters (letters, digits and '_', not starting with a digit)."""
    if not isinstance(name, str) or not _LAYER_NAME.match(name):
        return f"{_short(name)} is not a layer name (letters, digits and '_', not starting with a digit)"
    if len(name) > MAX_NAME:
        return f"is {len(name)} characters long; at most {MAX_NAME} are allowed"
    return None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
