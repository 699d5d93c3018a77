"""Offline data sets: Fashion-MNIST from Debian's package, scikit-learn's 8x8 digits.

Nothing is downloaded: a missing data set is an error that names the install command.
"""
from __future__ import annotations

import gzip
import importlib.util
import io
import os
import warnings
import zlib
from pathlib import Path

import numpy as np

from .readers import DataFormatError, PathLike, read_idx


#: Where Debian's ``dataset-fashion-mnist`` package installs the four gzipped IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist/"
_FASHION_INSTALL = "sudo apt-get install dataset-fashion-mnist"
_SKLEARN_INSTALL = "pip install scikit-learn"  # or: pip install "graphnn[examples]"


_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx(directory: Path, stem: str) -> Path:
    """``stem`` or ``stem.gz`` (or MNIST's dotted ``...-images.idx3-ubyte`` spelling) in ``directory``."""
    dotted = stem.replace("-idx", ".idx")
    candidates = [stem + ".gz", stem, dotted + ".gz", dotted]
    for c in candidates:
        if (directory / c).is_file():
            return directory / c
    raise FileNotFoundError(f"Fashion-MNIST directory {str(directory)!r} has no {stem}(.gz) "
                            f"(looked for {candidates}); install the full data set with "
                            f"`{_FASHION_INSTALL}`")


def load_fashion_mnist(path: PathLike | None = None, kind: str = "both"):
    """Load Fashion-MNIST (Zalando's 28x28 grey clothing images, 10 classes) from IDX files.

    Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte`` (each plain or ``.gz``) from ``path``, by default
    ``/usr/share/datasets/fashion-mnist/``, where Debian's ``dataset-fashion-mnist`` package
    installs the four ``.gz`` files (``sudo apt-get install dataset-fashion-mnist``).
    Nothing is downloaded.

    Args:
        path: directory holding the files; ``None`` for the Debian location.
        kind: ``"both"``, ``"train"`` or ``"test"``.

    Returns:
        ``kind="both"``: ``((X_train, y_train), (X_test, y_test))``; ``"train"`` or
        ``"test"``: that one ``(X, y)`` pair.  ``X`` is float32 of shape ``(rows, 784)``,
        pixel values scaled to [0, 1]; ``y`` is int64 of shape ``(rows,)`` with classes 0..9
        (0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt,
        7 Sneaker, 8 Bag, 9 Ankle boot).  The full set has 60,000 training and 10,000 test rows.

    Raises:
        FileNotFoundError: the directory or a file is missing (the message names the
            directory and the install command).
        DataFormatError: a file is corrupt, or images and labels do not match.
    """
    if kind not in ("both", "train", "test"):
        raise ValueError(f'kind must be "both", "train" or "test", got {kind!r}')
    directory = Path(os.fspath(path)) if path is not None else Path(FASHION_MNIST_DIR)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST directory {str(directory)!r} not found. Install the data set with "
            f"`{_FASHION_INSTALL}` (it goes to {FASHION_MNIST_DIR}), or pass path= a directory "
            "holding train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), "
            "t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz)")
    parts = ("train", "test") if kind == "both" else (kind,)
    files = {part: tuple(_find_idx(directory, stem) for stem in _FASHION_FILES[part])
             for part in parts}          # every file located before any is read
    out = tuple(_load_fashion_part(*files[part]) for part in parts)
    return out if kind == "both" else out[0]


def _load_fashion_part(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataFormatError(f"{str(images_path)!r} should hold uint8 images of 28 x 28, "
                              f"got {images.dtype} of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataFormatError(f"{str(labels_path)!r} should hold one uint8 label per image, "
                              f"got {labels.dtype} of shape {labels.shape}")
    if len(labels) != len(images):
        raise DataFormatError(f"{str(images_path)!r} holds {len(images)} images but "
                              f"{str(labels_path)!r} holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataFormatError(f"{str(labels_path)!r} holds label {int(labels.max())}; "
                              "Fashion-MNIST classes are 0..9")
    X = images.reshape(len(images), 28 * 28).astype(np.float32)
    X /= np.float32(255.0)
    return X, labels.astype(np.int64)


def _require_sklearn(what: str):
    try:
        import sklearn  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{what} needs scikit-learn, an optional dependency of graphnn: "
                          f"`{_SKLEARN_INSTALL}` (or `pip install \"graphnn[examples]\"`)") from e


_DIGITS_MAX_BYTES = 1 << 20     # the file holds 264,712 bytes uncompressed


def _digits_file() -> Path | None:
    """scikit-learn's ``datasets/data/digits.csv.gz``, found without importing scikit-learn
    (``import sklearn.datasets`` takes about 1.5 s: most of a warm ``graphnn train``).
    Only an installed package counts (``spec.origin`` is its ``__init__.py``), not a bare
    ``sklearn`` folder on the path."""
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith("__init__.py"):
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def _read_digits_file(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The file as scikit-learn's loader reads it (64 pixel columns, 0..16, then the label);
    None when it is not exactly that (or longer than 1 MiB uncompressed), so that
    scikit-learn's own loader decides."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(_DIGITS_MAX_BYTES + 1)
        if len(raw) > _DIGITS_MAX_BYTES:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # "input contained no data"
            data = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, EOFError, ValueError, zlib.error):
        return None
    if (data.shape != (1797, 65) or not np.all((data >= 0) & (data <= 16))
            or not np.all(data == np.floor(data)) or data[:, -1].max() > 9):
        return None
    return data[:, :-1] / 16.0, data[:, -1].astype(np.int64)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits (1,797 images of 8x8), which ship with scikit-learn.

    The file is read straight from the installed scikit-learn, without importing it; if it is
    missing or not as expected, scikit-learn's own ``load_digits`` reads it.

    Returns:
        ``(X, y)``: ``X`` float64 of shape ``(1797, 64)``, pixel values divided by 16 so they
        lie in [0, 1]; ``y`` int64 of shape ``(1797,)`` with classes 0..9.

    Raises:
        ImportError: scikit-learn is not installed (``pip install scikit-learn``).
    """
    path = _digits_file()
    read = _read_digits_file(path) if path is not None else None
    if read is not None:
        return read
    _require_sklearn("load_digits()")
    from sklearn.datasets import load_digits as _sk_load_digits
    X, y = _sk_load_digits(return_X_y=True)
    return np.asarray(X, dtype=np.float64) / 16.0, np.asarray(y, dtype=np.int64)
