"""Data for graphnn: file readers, offline data sets, toy generators, splits and scaling.

Nothing here downloads anything.  Everything that draws random numbers takes a ``seed``
(an int, a ``numpy.random.Generator``, or ``None`` for fresh OS entropy) and uses its own
``numpy.random.Generator``; the global NumPy random state is never touched.

Readers (each validates what it reads and raises ``DataFormatError``, a ``ValueError``,
naming the file and the problem, or ``FileNotFoundError`` naming a missing path)::

    read_idx(path)                       # IDX (the MNIST family's format), gzipped or not
    read_npz(path, x_key="X", y_key="y") # -> (X, y)
    read_npy(path)                       # -> array
    read_csv(path, label_column=-1, header="auto", delimiter=",")   # -> (X float64, y)

Data sets::

    load_fashion_mnist(path=None, kind="both")  # Debian's dataset-fashion-mnist, offline
    load_digits()                               # scikit-learn's 8x8 digits (optional extra)

Generators (no dependencies; shapes in each docstring)::

    make_line  make_xor  make_moons  make_spirals  make_sine

Helpers::

    train_test_split  train_val_test_split  Standardizer

One module per concern: ``readers`` (file formats), ``loaders`` (offline data sets),
``generators`` (toy data), ``splits`` and ``scaling``; this package re-exports them.
"""
from __future__ import annotations

from .generators import make_line, make_moons, make_sine, make_spirals, make_xor
from .loaders import FASHION_MNIST_DIR, load_digits, load_fashion_mnist
from .readers import DataFormatError, read_csv, read_idx, read_npy, read_npz
from .scaling import NotFittedError, Standardizer
from .splits import train_test_split, train_val_test_split

__all__ = [
    "DataFormatError", "NotFittedError",
    "read_idx", "read_npz", "read_npy", "read_csv",
    "load_fashion_mnist", "load_digits",
    "make_line", "make_xor", "make_moons", "make_spirals", "make_sine",
    "train_test_split", "train_val_test_split", "Standardizer",
    "FASHION_MNIST_DIR",
]
