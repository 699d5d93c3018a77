"""File readers: IDX (the MNIST family), .npy, .npz and CSV, each validated as it is read.

Every reader raises ``DataFormatError`` (a ``ValueError``) naming the file and the problem for
truncated, malformed or inconsistent files, and ``FileNotFoundError`` naming a missing path.
Gzipped files are recognised by their magic bytes.
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
from typing import BinaryIO, Union

import numpy as np


#: a path argument: a string or any os.PathLike
PathLike = Union[str, "os.PathLike[str]"]


class DataFormatError(ValueError):
    """A data file is unreadable: truncated, malformed, of the wrong format or inconsistent."""


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
