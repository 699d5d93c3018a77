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
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import numbers
import os
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Sequence, Union

import numpy as np

__all__ = [
    "DataFormatError", "NotFittedError",
    "read_idx", "read_npz", "read_npy", "read_csv",
    "load_fashion_mnist", "load_digits",
    "make_line", "make_xor", "make_moons", "make_spirals", "make_sine",
    "train_test_split", "train_val_test_split", "Standardizer",
    "FASHION_MNIST_DIR",
]

PathLike = Union[str, "os.PathLike[str]"]
Seed = Union[int, np.random.Generator, None]

#: Where Debian's ``dataset-fashion-mnist`` package installs the four gzipped IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist/"
_FASHION_INSTALL = "sudo apt-get install dataset-fashion-mnist"
_SKLEARN_INSTALL = "pip install scikit-learn"  # or: pip install "graphnn[examples]"


class DataFormatError(ValueError):
    """A data file is unreadable: truncated, malformed, of the wrong format or inconsistent."""


class NotFittedError(ValueError, AttributeError):
    """A transformer was used before ``fit``."""


# ---------------------------------------------------------------------------------------
# file helpers
# ---------------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 24


def _existing_file(path: PathLike) -> Path:
    """``path`` as a Path to an existing regular file, or FileNotFoundError / DataFormatError."""
    p = Path(os.fspath(path))
    if not p.exists():
        raise FileNotFoundError(f"no such file: {str(p)!r}")
    if not p.is_file():
        raise DataFormatError(f"{str(p)!r} is not a regular file (a directory?)")
    return p


def _is_gzip(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _open_binary(p: Path) -> BinaryIO:
    """Open ``p`` for reading bytes, decompressing transparently when it is gzipped."""
    return gzip.open(p, "rb") if _is_gzip(p) else open(p, "rb")


def _read_up_to(f: BinaryIO, n: int) -> bytes:
    """Read up to ``n`` bytes (fewer only at end of file), in chunks, so a corrupt header
    announcing an absurd size cannot trigger one enormous allocation."""
    if n <= _CHUNK:
        return f.read(n)
    parts, left = [], n
    while left > 0:
        part = f.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


_DECOMPRESS_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


# ---------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------

#: IDX type code -> (name, big-endian dtype)
_IDX_TYPES = {
    0x08: ("unsigned byte", ">u1"),
    0x09: ("signed byte", ">i1"),
    0x0B: ("short (int16)", ">i2"),
    0x0C: ("int (int32)", ">i4"),
    0x0D: ("float (float32)", ">f4"),
    0x0E: ("double (float64)", ">f8"),
}


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the format of MNIST and Fashion-MNIST), gzipped or not.

    Layout: a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian
    uint32 dimension sizes, then the values, big-endian, C order.  Type codes: 0x08 uint8,
    0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.  Gzip compression is
    recognised by the file's content, whatever its name.

    Returns:
        A writable array of shape ``dims`` in native byte order (uint8, int8, int16, int32,
        float32 or float64).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFormatError: bad magic number, unknown type code, zero dimensions, a payload
            shorter or longer than the header's dimensions say, or a corrupt gzip stream.
    """
    p = _existing_file(path)
    name = str(p)
    compressed = _is_gzip(p)
    try:
        with (gzip.open(p, "rb") if compressed else open(p, "rb")) as f:
            head = f.read(4)
            if len(head) < 4:
                raise DataFormatError(f"IDX file {name!r} is truncated: {len(head)} bytes, "
                                      "too short for the 4-byte magic number")
            if head[0] != 0 or head[1] != 0:
                raise DataFormatError(
                    f"{name!r} is not an IDX file: wrong magic number 0x{head.hex()} "
                    "(the first two bytes must be zero)")
            code, ndim = head[2], head[3]
            if code not in _IDX_TYPES:
                known = ", ".join(f"0x{c:02X}" for c in _IDX_TYPES)
                raise DataFormatError(f"IDX file {name!r} has unknown type code 0x{code:02X} in "
                                      f"its magic number 0x{head.hex()} (known: {known})")
            if ndim == 0:
                raise DataFormatError(f"IDX file {name!r} declares 0 dimensions in its magic "
                                      f"number 0x{head.hex()}")
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DataFormatError(
                    f"IDX file {name!r} is truncated in its header: {ndim} dimensions need "
                    f"{4 * ndim} bytes of sizes, found {len(raw_dims)}")
            dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
            type_name, be = _IDX_TYPES[code]
            itemsize = np.dtype(be).itemsize
            expected = math.prod(dims) * itemsize
            if not compressed:
                # an uncompressed file's size is known: check before allocating anything
                actual = p.stat().st_size - 4 - 4 * ndim
                if actual != expected:
                    raise _idx_size_error(name, dims, type_name, expected, actual)
            payload = _read_up_to(f, expected)
            if len(payload) < expected:
                raise _idx_size_error(name, dims, type_name, expected, len(payload))
            extra = f.read(1)
            if extra:
                rest = 1 + len(f.read())
                raise _idx_size_error(name, dims, type_name, expected, expected + rest)
    except _DECOMPRESS_ERRORS as e:
        raise DataFormatError(f"IDX file {name!r} is a corrupt or truncated gzip stream: {e}") from None
    arr = np.frombuffer(payload, dtype=be).reshape(dims)
    return arr.astype(np.dtype(be).newbyteorder("="))


def _idx_size_error(name: str, dims, type_name: str, expected: int, actual: int) -> DataFormatError:
    what = "truncated" if actual < expected else "longer than its header says"
    shape = " x ".join(str(d) for d in dims)
    return DataFormatError(
        f"IDX file {name!r} is {what}: size mismatch, header dims {shape} of {type_name} "
        f"need {expected} bytes of data, found {actual}")


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def _npy_data_offset(head: bytes) -> int | None:
    """Byte offset of the array data in a .npy file, from its first 12 bytes."""
    if len(head) < 10:
        return None
    major = head[6]
    if major == 1:
        return 10 + int.from_bytes(head[8:10], "little")
    if major in (2, 3) and len(head) >= 12:
        return 12 + int.from_bytes(head[8:12], "little")
    return None


def read_npy(path: PathLike) -> np.ndarray:
    """Read one array from a NumPy ``.npy`` file (gzipped or not); pickled objects refused.

    Returns:
        The array, writable, with the dtype and shape stored in the file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFormatError: not a .npy file (wrong magic), a truncated or overlong payload,
            a corrupt header, or an object array (which would need unpickling).
    """
    p = _existing_file(path)
    name = str(p)
    try:
        with _open_binary(p) as f:
            data = f.read()
    except _DECOMPRESS_ERRORS as e:
        raise DataFormatError(f".npy file {name!r} is a corrupt or truncated gzip stream: {e}") from None
    if not data.startswith(_NPY_MAGIC):
        found = data[:6].hex() or "nothing (empty file)"
        raise DataFormatError(f"{name!r} is not a .npy file: wrong magic number "
                              f"(expected 0x{_NPY_MAGIC.hex()}, found 0x{found})")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        if "allow_pickle" in str(e):
            raise DataFormatError(f".npy file {name!r} holds Python objects (pickled data), "
                                  "which are not loaded: they could run code") from None
        raise DataFormatError(f".npy file {name!r} is truncated or corrupt: {e}") from None
    offset = _npy_data_offset(data[:12])
    if offset is not None and arr.dtype != object:
        expected, actual = arr.nbytes, len(data) - offset
        if actual != expected:
            what = "truncated" if actual < expected else "longer than its header says"
            raise DataFormatError(
                f".npy file {name!r} is {what}: size mismatch, header shape {arr.shape} of "
                f"{arr.dtype} needs {expected} bytes of data, found {actual}")
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr


def read_npz(path: PathLike, x_key: str = "X", y_key: str | None = "y"
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """Read features and labels from a NumPy ``.npz`` archive (``np.savez`` / ``savez_compressed``).

    Args:
        path: the archive.
        x_key: name of the feature array inside it.
        y_key: name of the label array, or ``None`` to read features only.

    Returns:
        ``(X, y)`` as stored (``y`` is ``None`` when ``y_key`` is ``None``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFormatError: not a zip/npz archive, a truncated or corrupt member, a missing key
            (the message lists the keys present), an object array, or X and y of different
            lengths.
    """
    p = _existing_file(path)
    name = str(p)
    with open(p, "rb") as f:
        head = f.read(4)
    if head[:4] not in _ZIP_MAGICS:
        found = head.hex() or "nothing (empty file)"
        raise DataFormatError(f"{name!r} is not an .npz archive: wrong magic number "
                              f"(expected a zip file, 0x504b0304, found 0x{found})")
    try:
        with open(p, "rb") as fh, np.load(fh, allow_pickle=False) as archive:
            keys = list(archive.files)
            wanted = [k for k in (x_key, y_key) if k is not None]
            for k in wanted:
                if k not in keys:
                    raise DataFormatError(f".npz archive {name!r} has no array {k!r}; "
                                          f"it holds {keys}")
            X = archive[x_key]
            y = archive[y_key] if y_key is not None else None
    except DataFormatError:
        raise
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        if "allow_pickle" in str(e):
            raise DataFormatError(f".npz archive {name!r} holds Python objects (pickled data), "
                                  "which are not loaded: they could run code") from None
        raise DataFormatError(f".npz archive {name!r} is truncated or corrupt: {e}") from None
    if y is not None and (X.ndim == 0 or y.ndim == 0 or len(X) != len(y)):
        raise DataFormatError(f".npz archive {name!r}: {x_key!r} has shape {X.shape} but "
                              f"{y_key!r} has shape {y.shape}; they need one label per row")
    return X, y


def read_csv(path: PathLike, label_column: int | str | None = -1, header: bool | str = "auto",
             delimiter: str = ",") -> tuple[np.ndarray, np.ndarray | None]:
    """Read a numeric CSV file (gzipped or not) into features and labels.

    Args:
        path: the file; blank lines are skipped, a UTF-8 byte-order mark is ignored.
        label_column: the column holding the labels: an index (negative counts from the
            end; default the last column), a column name from the header row, or ``None``
            for no labels.
        header: ``True`` (the first row names the columns), ``False`` (no header), or
            ``"auto"``: the first row is a header when any of its cells is not a number.
            An all-numeric header (e.g. ``1,2,3``) needs ``header=True``.
        delimiter: the field separator.

    Returns:
        ``(X, y)``: ``X`` float64 of shape ``(rows, columns - 1)`` (all columns when
        ``label_column`` is ``None``); ``y`` of shape ``(rows,)``, int64 when every label is
        integral, float64 otherwise; ``None`` when ``label_column`` is ``None``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFormatError: a non-numeric or empty cell (the message names the line and the
            column), rows of different lengths, no data rows, an unknown label column, or
            undecodable text.
        ValueError: bad arguments.
    """
    if header not in (True, False, "auto"):
        raise ValueError(f'header must be True, False or "auto", got {header!r}')
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter must be a single character, got {delimiter!r}")
    if label_column is not None and not isinstance(label_column, str) and (
            isinstance(label_column, bool) or not isinstance(label_column, numbers.Integral)):
        raise ValueError(f"label_column must be an int, a column name or None, got {label_column!r}")
    p = _existing_file(path)
    name = str(p)
    try:
        with _open_binary(p) as f:
            raw = f.read()
        text = raw.decode("utf-8-sig")
    except _DECOMPRESS_ERRORS as e:
        raise DataFormatError(f"CSV file {name!r} is a corrupt or truncated gzip stream: {e}") from None
    except UnicodeDecodeError as e:
        raise DataFormatError(f"CSV file {name!r} is not UTF-8 text: {e}") from None

    try:
        rows = [(reader_line, row) for reader_line, row in _csv_rows(text, delimiter)]
    except csv.Error as e:
        raise DataFormatError(f"CSV file {name!r} is malformed: {e}") from None
    if not rows:
        raise DataFormatError(f"CSV file {name!r} is empty: no rows")

    names: list[str] | None = None
    first_line, first = rows[0]
    if header is True or (header == "auto" and not all(_is_number(c) for c in first)):
        names = [c.strip() for c in first]
        rows = rows[1:]
    if not rows:
        raise DataFormatError(f"CSV file {name!r} has a header row but no data rows")

    ncols = len(names) if names is not None else len(rows[0][1])
    for line, row in rows:
        if len(row) != ncols:
            ref = "the header" if names is not None else f"line {rows[0][0]}"
            raise DataFormatError(f"CSV file {name!r}, line {line}: {len(row)} columns, but "
                                  f"{ref} has {ncols}")

    label_idx: int | None
    if label_column is None:
        label_idx = None
    elif isinstance(label_column, str):
        if names is None:
            raise DataFormatError(f"label_column {label_column!r} is a column name, but CSV "
                                  f"file {name!r} has no header row (pass header=True if its "
                                  "first row names the columns)")
        matches = [i for i, n in enumerate(names) if n == label_column]
        if not matches:
            raise DataFormatError(f"CSV file {name!r} has no column named {label_column!r}; "
                                  f"its columns are {names}")
        if len(matches) > 1:
            raise DataFormatError(f"CSV file {name!r} has {len(matches)} columns named "
                                  f"{label_column!r}; pass the column's index instead")
        label_idx = matches[0]
    else:
        if not -ncols <= label_column < ncols:
            raise ValueError(f"label_column {label_column} is out of range for CSV file "
                             f"{name!r} with {ncols} columns")
        label_idx = label_column % ncols
    if label_idx is not None and ncols < 2:
        raise DataFormatError(f"CSV file {name!r} has a single column: nothing is left for "
                              "features once the label column is taken (use label_column=None)")

    values = np.empty((len(rows), ncols), dtype=np.float64)
    for r, (line, row) in enumerate(rows):
        try:
            values[r] = [float(c) for c in row]
        except ValueError:
            for j, cell in enumerate(row):
                if not _is_number(cell):
                    col = f"column {j + 1}" + (f" ({names[j]!r})" if names is not None else "")
                    what = "an empty cell" if not cell.strip() else f"non-numeric value {cell.strip()!r}"
                    raise DataFormatError(f"CSV file {name!r}, line {line}, {col}: {what}") from None
            raise  # pragma: no cover - float() failed on a cell _is_number accepts

    if label_idx is None:
        return values, None
    y = values[:, label_idx]
    X = np.ascontiguousarray(np.delete(values, label_idx, axis=1))
    if np.isfinite(y).all() and np.array_equal(y, np.round(y)) and np.abs(y).max() < 2.0 ** 53:
        y = y.astype(np.int64)
    else:
        y = y.copy()
    return X, y


def _csv_rows(text: str, delimiter: str):
    """(physical line number, cells) for each non-blank CSV record."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    for row in reader:
        if not row or all(not c.strip() for c in row):
            continue
        yield reader.line_num, row


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------
# data sets
# ---------------------------------------------------------------------------------------

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


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits (1,797 images of 8x8), which ship with scikit-learn.

    Returns:
        ``(X, y)``: ``X`` float64 of shape ``(1797, 64)``, pixel values divided by 16 so they
        lie in [0, 1]; ``y`` int64 of shape ``(1797,)`` with classes 0..9.

    Raises:
        ImportError: scikit-learn is not installed (``pip install scikit-learn``).
    """
    _require_sklearn("load_digits()")
    from sklearn.datasets import load_digits as _sk_load_digits
    X, y = _sk_load_digits(return_X_y=True)
    return np.asarray(X, dtype=np.float64) / 16.0, np.asarray(y, dtype=np.int64)


# ---------------------------------------------------------------------------------------
# generators
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# scaling
# ---------------------------------------------------------------------------------------

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
