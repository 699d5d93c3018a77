"""Feature scaling: ``Standardizer`` (fit on the training part, apply to the rest).
"""
from __future__ import annotations



import numpy as np


class NotFittedError(ValueError, AttributeError):
    """A transformer was used before ``fit``."""


class Standardizer:
    """Scale each column to mean 0 and standard deviation 1: ``(X - mean_) / scale_``.

    Statistics are computed in float64 (population standard deviation).  A column with zero
    variance gets ``scale_ = 1``, so it transforms to zeros and inverts to its mean.  Float
    inputs keep their dtype (float32 stays float32); other real inputs become float64.

        s = Standardizer().fit(X_train)
        X_train_s, X_test_s = s.transform(X_train), s.transform(X_test)
        X_back = s.inverse_transform(X_test_s)

    Attributes (after ``fit``): ``mean_`` and ``scale_`` (float64, one per column),
    ``n_features_`` (the width every later call must match).
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.n_features_: int | None = None

    def __repr__(self) -> str:
        state = f"n_features_={self.n_features_}" if self.n_features_ is not None else "unfitted"
        return f"Standardizer({state})"

    @staticmethod
    def _as_matrix(X, what: str) -> np.ndarray:
        arr = np.asarray(X)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                       or arr.dtype == np.bool_) \
                or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"{what} must hold real numbers, got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(f"{what} must be 2-D (rows, columns), got shape {arr.shape}"
                             + ("; for one column use X.reshape(-1, 1)" if arr.ndim == 1 else ""))
        if not np.isfinite(arr).all():
            raise ValueError(f"{what} contains NaN or Inf")
        return arr

    def fit(self, X) -> "Standardizer":
        """Learn each column's mean and standard deviation from ``X`` (rows, columns); returns self."""
        arr = self._as_matrix(X, "X")
        if arr.shape[0] == 0:
            raise ValueError("X is empty (0 rows); cannot fit a Standardizer")
        a = arr.astype(np.float64)
        mean = a.mean(axis=0)
        std = a.std(axis=0)
        exact = np.ptp(a, axis=0) == 0
        mean = np.where(exact, a[0], mean)       # a constant column maps to exactly 0 and back
        constant = exact | (std <= 10 * np.finfo(np.float64).eps * np.abs(mean))
        self.mean_ = mean
        self.scale_ = np.where(constant, 1.0, std)
        self.n_features_ = arr.shape[1]
        return self

    def _check_fitted(self, X, method: str) -> np.ndarray:
        if self.n_features_ is None:
            raise NotFittedError(f"this Standardizer is not fitted yet; call fit(X) before {method}()")
        arr = self._as_matrix(X, "X")
        if arr.shape[1] != self.n_features_:
            raise ValueError(f"X has {arr.shape[1]} columns, but this Standardizer was fitted "
                             f"on {self.n_features_}")
        return arr

    @staticmethod
    def _out_dtype(arr: np.ndarray):
        return arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64

    def transform(self, X) -> np.ndarray:
        """``(X - mean_) / scale_``, a new array of X's float dtype (float64 for other inputs)."""
        arr = self._check_fitted(X, "transform")
        out = (arr.astype(np.float64) - self.mean_) / self.scale_
        return out.astype(self._out_dtype(arr), copy=False)

    def fit_transform(self, X) -> np.ndarray:
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)

    def inverse_transform(self, X) -> np.ndarray:
        """Undo ``transform``: ``X * scale_ + mean_``."""
        arr = self._check_fitted(X, "inverse_transform")
        out = arr.astype(np.float64) * self.scale_ + self.mean_
        return out.astype(self._out_dtype(arr), copy=False)
