"""graphnn.datasets: readers round-trip and fail clearly, generators, splits, Standardizer."""
import gzip
import math
import os
import struct
import sys

import numpy as np
import pytest

from graphnn import datasets as ds
from graphnn.datasets import DataFormatError, NotFittedError


# ----------------------------------------------------------------------------- IDX

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
             np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(arr: np.ndarray, code: int | None = None) -> bytes:
    """An IDX file written by hand: magic 00 00 <type> <ndim>, big-endian dims, big-endian data."""
    code = IDX_CODES[arr.dtype.type] if code is None else code
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path, data: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def sample(dtype, shape=(3, 4, 5)):
    rng = np.random.default_rng(1)
    if np.issubdtype(dtype, np.floating):
        return rng.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("dtype", list(IDX_CODES), ids=lambda t: t.__name__)
def test_idx_round_trip(tmp_path, dtype, gz):
    arr = sample(dtype)
    path = write(tmp_path / ("a.idx" + (".gz" if gz else "")), idx_bytes(arr), gz)
    back = ds.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == arr.shape and np.array_equal(back, arr)
    assert back.flags.writeable


def test_idx_gzip_detected_by_content_and_1d(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    path = write(tmp_path / "labels-idx1-ubyte", idx_bytes(labels), gz=True)  # no .gz suffix
    assert np.array_equal(ds.read_idx(str(path)), labels)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_idx_truncated_payload(tmp_path, gz):
    data = idx_bytes(sample(np.int16))
    path = write(tmp_path / "cut.idx", data[:-3], gz)
    with pytest.raises(DataFormatError, match="truncated") as e:
        ds.read_idx(path)
    msg = str(e.value)
    assert str(path) in msg and "size mismatch" in msg and "3 x 4 x 5" in msg and "120 bytes" in msg


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_idx_payload_longer_than_header(tmp_path, gz):
    path = write(tmp_path / "long.idx", idx_bytes(sample(np.uint8)) + b"\0\0", gz)
    with pytest.raises(DataFormatError, match="longer than its header") as e:
        ds.read_idx(path)
    assert "size mismatch" in str(e.value) and "found 62" in str(e.value)


def test_idx_wrong_magic(tmp_path):
    path = write(tmp_path / "text.idx", b"hello, this is not IDX")
    with pytest.raises(DataFormatError, match="not an IDX file: wrong magic number 0x68656c6c"):
        ds.read_idx(path)


def test_idx_unknown_type_code(tmp_path):
    path = write(tmp_path / "bad.idx", idx_bytes(sample(np.uint8), code=0x0A))
    with pytest.raises(DataFormatError, match="unknown type code 0x0A"):
        ds.read_idx(path)


def test_idx_truncated_header(tmp_path):
    with pytest.raises(DataFormatError, match="truncated.*magic"):
        ds.read_idx(write(tmp_path / "short.idx", b"\0\0"))
    header_only = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">I", 60000)
    with pytest.raises(DataFormatError, match="truncated in its header: 3 dimensions need 12 bytes"):
        ds.read_idx(write(tmp_path / "dims.idx", header_only))


def test_idx_zero_dimensions(tmp_path):
    with pytest.raises(DataFormatError, match="0 dimensions"):
        ds.read_idx(write(tmp_path / "z.idx", struct.pack(">BBBB", 0, 0, 0x08, 0)))


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_idx_absurd_dims_fail_fast(tmp_path, gz):
    """A corrupt header announcing ~10^19 bytes must be reported, not allocated."""
    data = struct.pack(">BBBB", 0, 0, 0x0E, 2) + struct.pack(">II", 2**32 - 1, 2**32 - 1) + b"\0" * 16
    with pytest.raises(DataFormatError, match="truncated"):
        ds.read_idx(write(tmp_path / "huge.idx", data, gz))


def test_idx_corrupt_gzip(tmp_path):
    data = gzip.compress(idx_bytes(sample(np.float32)))
    path = write(tmp_path / "cut.idx.gz", data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="corrupt or truncated gzip") as e:
        ds.read_idx(path)
    assert str(path) in str(e.value)


def test_missing_files_name_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "file.bin"
    for reader in (ds.read_idx, ds.read_npy, ds.read_npz, ds.read_csv):
        with pytest.raises(FileNotFoundError, match="nowhere"):
            reader(missing)
    with pytest.raises(DataFormatError, match="not a regular file"):
        ds.read_idx(tmp_path)


# ----------------------------------------------------------------------------- NPY / NPZ

@pytest.mark.parametrize("arr", [np.arange(12, dtype=np.float32).reshape(3, 4),
                                 np.arange(5, dtype=np.int64),
                                 np.asfortranarray(np.eye(3))], ids=["f32", "i64", "fortran"])
def test_npy_round_trip(tmp_path, arr):
    path = tmp_path / "a.npy"
    np.save(path, arr)
    back = ds.read_npy(path)
    assert back.dtype == arr.dtype and np.array_equal(back, arr) and back.flags.writeable
    gz = write(tmp_path / "a.npy.gz", path.read_bytes(), gz=True)
    assert np.array_equal(ds.read_npy(gz), arr)


def test_npy_errors(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(100.0))
    data = path.read_bytes()
    with pytest.raises(DataFormatError, match="truncated") as e:
        ds.read_npy(write(tmp_path / "cut.npy", data[:-8]))
    assert "cut.npy" in str(e.value)
    with pytest.raises(DataFormatError, match="longer than its header.*needs 800 bytes of data, found 804"):
        ds.read_npy(write(tmp_path / "long.npy", data + b"\0" * 4))
    with pytest.raises(DataFormatError, match="not a .npy file: wrong magic"):
        ds.read_npy(write(tmp_path / "text.npy", b"1,2,3\n"))
    with pytest.raises(DataFormatError, match="empty file"):
        ds.read_npy(write(tmp_path / "empty.npy", b""))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match="Python objects"):
        ds.read_npy(tmp_path / "obj.npy")


@pytest.mark.parametrize("saver", [np.savez, np.savez_compressed])
def test_npz_round_trip(tmp_path, saver):
    X, y = np.random.default_rng(0).normal(size=(6, 3)), np.arange(6)
    saver(tmp_path / "d.npz", X=X, y=y, features=X * 2, target=y + 1)
    X2, y2 = ds.read_npz(tmp_path / "d.npz")
    assert np.array_equal(X2, X) and np.array_equal(y2, y)
    F, t = ds.read_npz(tmp_path / "d.npz", x_key="features", y_key="target")
    assert np.array_equal(F, X * 2) and np.array_equal(t, y + 1)
    X3, none = ds.read_npz(tmp_path / "d.npz", y_key=None)
    assert none is None and np.array_equal(X3, X)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 2)), y=np.zeros(3))
    with pytest.raises(DataFormatError, match=r"has shape \(4, 2\) but 'y' has shape \(3,\)"):
        ds.read_npz(tmp_path / "d.npz")
    with pytest.raises(DataFormatError, match=r"no array 'labels'; it holds \['X', 'y'\]"):
        ds.read_npz(tmp_path / "d.npz", y_key="labels")
    data = (tmp_path / "d.npz").read_bytes()
    with pytest.raises(DataFormatError, match="cut.npz.*truncated or corrupt"):
        ds.read_npz(write(tmp_path / "cut.npz", data[: len(data) // 2]))
    with pytest.raises(DataFormatError, match="not an .npz archive: wrong magic"):
        ds.read_npz(write(tmp_path / "x.npz", b"\x93NUMPY not a zip"))


# ----------------------------------------------------------------------------- CSV

def test_csv_with_header_label_last(tmp_path):
    path = write(tmp_path / "d.csv", b"a,b,label\n1,2,0\n3.5,-4,1\n\n5,6e1,2\n")
    X, y = ds.read_csv(path)
    assert X.dtype == np.float64 and X.shape == (3, 2)
    assert np.array_equal(X, [[1, 2], [3.5, -4], [5, 60]])
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2]


def test_csv_without_header_and_options(tmp_path):
    path = write(tmp_path / "d.csv", b"1;2;0.5\n3;4;1.5\n", gz=True)
    X, y = ds.read_csv(path, delimiter=";")
    assert X.shape == (2, 2) and y.dtype == np.float64 and y.tolist() == [0.5, 1.5]
    X, y = ds.read_csv(path, delimiter=";", label_column=0)
    assert np.array_equal(X, [[2, 0.5], [4, 1.5]]) and y.tolist() == [1, 3]
    X, none = ds.read_csv(path, delimiter=";", label_column=None)
    assert none is None and X.shape == (2, 3)


def test_csv_label_by_name_and_numeric_header(tmp_path):
    path = write(tmp_path / "d.csv", "\ufeffx1, species ,x2\n0.1,2,0.3\n0.4,1,0.6\n".encode())
    X, y = ds.read_csv(path, label_column="species")
    assert np.allclose(X, [[0.1, 0.3], [0.4, 0.6]]) and y.tolist() == [2, 1]
    numeric = write(tmp_path / "n.csv", b"1,2,3\n4,5,6\n")
    assert ds.read_csv(numeric)[0].shape == (2, 2)                 # auto: no header
    X, y = ds.read_csv(numeric, header=True, label_column="3")
    assert X.tolist() == [[4, 5]] and y.tolist() == [6]


def test_csv_non_numeric_cell_names_line_and_column(tmp_path):
    path = write(tmp_path / "d.csv", b"a,b,c\n1,2,3\n\n4,oops,6\n")
    with pytest.raises(DataFormatError) as e:
        ds.read_csv(path)
    msg = str(e.value)
    assert "d.csv" in msg and "line 4" in msg and "column 2 ('b')" in msg and "'oops'" in msg
    with pytest.raises(DataFormatError, match=r"line 2, column 1: an empty cell"):
        ds.read_csv(write(tmp_path / "e.csv", b"1,2\n,3\n"), header=False)


def test_csv_malformed(tmp_path):
    with pytest.raises(DataFormatError, match=r"r.csv'?, line 3: 2 columns, but the header has 3"):
        ds.read_csv(write(tmp_path / "r.csv", b"a,b,c\n1,2,3\n4,5\n"))
    with pytest.raises(DataFormatError, match="has no header row"):
        ds.read_csv(write(tmp_path / "n.csv", b"1,2\n3,4\n"), label_column="y")
    with pytest.raises(DataFormatError, match=r"no column named 'y'; its columns are \['a', 'b'\]"):
        ds.read_csv(write(tmp_path / "h.csv", b"a,b\n1,2\n"), label_column="y")
    with pytest.raises(DataFormatError, match="header row but no data rows"):
        ds.read_csv(write(tmp_path / "o.csv", b"a,b\n"))
    with pytest.raises(DataFormatError, match="empty"):
        ds.read_csv(write(tmp_path / "z.csv", b"\n\n"))
    with pytest.raises(DataFormatError, match="not UTF-8"):
        ds.read_csv(write(tmp_path / "b.csv", b"\xff\xfe1,2\n"))
    with pytest.raises(ValueError, match="out of range"):
        ds.read_csv(write(tmp_path / "k.csv", b"1,2\n"), label_column=5)
    with pytest.raises(ValueError, match="header must be"):
        ds.read_csv(tmp_path / "k.csv", header="yes")


# ----------------------------------------------------------------------------- Fashion-MNIST

def write_fashion_dir(directory, n_train=7, n_test=3, gz=True):
    directory.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        labels = (np.arange(n) % 10).astype(np.uint8)
        write(directory / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images), gz)
        write(directory / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels), gz)
    return directory


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_fashion_mnist_from_a_directory(tmp_path, gz):
    d = write_fashion_dir(tmp_path / "fm", gz=gz)
    (X, y), (Xt, yt) = ds.load_fashion_mnist(d)
    assert X.shape == (7, 784) and X.dtype == np.float32 and Xt.shape == (3, 784)
    assert y.dtype == np.int64 and y.tolist() == list(range(7)) and yt.tolist() == [0, 1, 2]
    assert X.min() == 0.0 and X.max() == 1.0
    raw = ds.read_idx(d / f"train-images-idx3-ubyte{'.gz' if gz else ''}")
    assert np.array_equal(X, raw.reshape(7, 784) / np.float32(255))
    Xtr, _ = ds.load_fashion_mnist(str(d), kind="train")
    Xte, _ = ds.load_fashion_mnist(d, kind="test")
    assert Xtr.shape == (7, 784) and Xte.shape == (3, 784)


def test_fashion_mnist_missing(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        ds.load_fashion_mnist(tmp_path / "absent")
    assert "absent" in str(e.value) and "sudo apt-get install dataset-fashion-mnist" in str(e.value)
    d = write_fashion_dir(tmp_path / "fm")
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        ds.load_fashion_mnist(d)
    assert ds.load_fashion_mnist(d, kind="train")[0].shape == (7, 784)
    with pytest.raises(ValueError, match="kind"):
        ds.load_fashion_mnist(d, kind="val")


def test_fashion_mnist_inconsistent_files(tmp_path):
    d = write_fashion_dir(tmp_path / "fm")
    write(d / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(5, np.uint8)), gz=True)
    with pytest.raises(DataFormatError, match="7 images but .* 5 labels"):
        ds.load_fashion_mnist(d, kind="train")
    write(d / "train-labels-idx1-ubyte.gz", idx_bytes(np.full(7, 12, np.uint8)), gz=True)
    with pytest.raises(DataFormatError, match="label 12"):
        ds.load_fashion_mnist(d, kind="train")


@pytest.mark.skipif(not os.path.isdir(ds.FASHION_MNIST_DIR),
                    reason=f"Fashion-MNIST not installed at {ds.FASHION_MNIST_DIR} "
                           "(sudo apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_real_files():
    (X, y), (Xt, yt) = ds.load_fashion_mnist()
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    assert X.dtype == Xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
    assert y.shape == (60000,) and yt.shape == (10000,)
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert set(np.unique(y)) == set(np.unique(yt)) == set(range(10))
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(yt).tolist() == [1000] * 10
    assert y[:4].tolist() == [9, 0, 0, 3]           # ankle boot, T-shirt, T-shirt, dress


# ----------------------------------------------------------------------------- digits

def test_load_digits():
    pytest.importorskip("sklearn")
    X, y = ds.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64 and 0 <= X.min() and X.max() == 1.0
    assert y.shape == (1797,) and y.dtype == np.int64 and set(y.tolist()) == set(range(10))


def test_load_digits_reads_the_file_as_sklearn_does_without_importing_it(tmp_path):
    """The file is read straight from the installed scikit-learn (its import takes ~1.5 s);
    the arrays equal scikit-learn's own loader's, and sklearn is never imported."""
    sk = pytest.importorskip("sklearn.datasets")
    import subprocess
    code = ("import sys; from graphnn import datasets as ds; X, y = ds.load_digits(); "
            "import numpy as np; np.save(sys.argv[1], X); np.save(sys.argv[2], y); "
            "print('sklearn' in sys.modules)")
    xp, yp = tmp_path / "X.npy", tmp_path / "y.npy"
    run = subprocess.run([sys.executable, "-c", code, str(xp), str(yp)], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
    X, y = np.load(xp), np.load(yp)
    Xs, ys = sk.load_digits(return_X_y=True)
    np.testing.assert_array_equal(X, Xs / 16.0)
    np.testing.assert_array_equal(y, ys)
    assert X.dtype == np.float64 and y.dtype == np.int64


def _digits_text(pixel=b"0", label=b"3") -> bytes:
    """1,797 well-formed rows, the first with `pixel` and `label` in place of its own."""
    row = b",".join([b"1"] * 64 + [b"3"]) + b"\n"
    first = b",".join([pixel] + [b"1"] * 63 + [label]) + b"\n"
    return first + row * 1796


def _flip(data: bytes, at: int) -> bytes:
    """`data` with the byte at `at` inverted (in a gzip member's deflate stream, so that
    zlib itself fails, not the gzip trailer check)."""
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


@pytest.mark.parametrize("content", [
    b"", b"not gzip", gzip.compress(b"1,2,3\n"),
    _flip(gzip.compress(_digits_text()), 20),                   # damaged deflate data
    gzip.compress(_digits_text(pixel=b"17")),                   # pixel out of range
    gzip.compress(_digits_text(pixel=b"0.5")),                  # not an integer
    gzip.compress(_digits_text(pixel=b"nan")),
    gzip.compress(_digits_text(label=b"10")),                   # label out of range
    gzip.compress(_digits_text() + _digits_text()),             # too many rows
    gzip.compress(_digits_text() + b"\n" * (1 << 20)),          # over 1 MiB unpacked
], ids=["empty", "not-gzip", "short", "damaged", "pixel-17", "pixel-0.5", "nan", "label-10",
        "rows", "huge"])
def test_load_digits_falls_back_to_sklearn_on_an_unexpected_file(monkeypatch, tmp_path, content):
    sk = pytest.importorskip("sklearn.datasets")
    from graphnn.datasets import loaders
    bad = tmp_path / "digits.csv.gz"
    bad.write_bytes(content)
    assert loaders._read_digits_file(bad) is None
    monkeypatch.setattr(loaders, "_digits_file", lambda: bad)
    X, y = ds.load_digits()
    Xs, ys = sk.load_digits(return_X_y=True)
    np.testing.assert_array_equal(X, Xs / 16.0)
    np.testing.assert_array_equal(y, ys)


def test_load_digits_file_reader_accepts_a_well_formed_file(tmp_path):
    """The checks above refuse only what is wrong: the same rows, well formed, are read."""
    from graphnn.datasets import loaders
    good = tmp_path / "digits.csv.gz"
    good.write_bytes(gzip.compress(_digits_text(pixel=b"16", label=b"9")))
    X, y = loaders._read_digits_file(good)
    assert X.shape == (1797, 64) and X[0, 0] == 1.0 and X[1, 0] == 1 / 16
    assert y[0] == 9 and y[1] == 3


def test_a_bare_sklearn_folder_is_not_scikit_learn(monkeypatch, tmp_path):
    """A namespace-package `sklearn/` folder on the path (no __init__.py; what find_spec
    returns for one when scikit-learn is not installed) is not read."""
    import importlib.machinery
    from graphnn.datasets import loaders
    folder = tmp_path / "sklearn"
    (folder / "datasets" / "data").mkdir(parents=True)
    (folder / "datasets" / "data" / "digits.csv.gz").write_bytes(gzip.compress(_digits_text()))
    spec = importlib.machinery.ModuleSpec("sklearn", None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    monkeypatch.setattr(loaders.importlib.util, "find_spec", lambda name: spec)
    assert loaders._digits_file() is None
    (folder / "__init__.py").write_text("")
    spec.origin = str(folder / "__init__.py")           # the same folder as a package
    assert loaders._digits_file() == folder / "datasets" / "data" / "digits.csv.gz"


def test_load_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)      # makes `import sklearn` fail
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        ds.load_digits()


# ----------------------------------------------------------------------------- generators

GENERATORS = {
    "line": (ds.make_line, (1,), np.float64),
    "xor": (ds.make_xor, (), np.int64),
    "moons": (ds.make_moons, (), np.int64),
    "spirals": (ds.make_spirals, (), np.int64),
    "sine": (ds.make_sine, (1,), np.float64),
}


@pytest.mark.parametrize("name", list(GENERATORS))
def test_generator_shapes_dtypes_determinism(name):
    make, y_tail, y_dtype = GENERATORS[name]
    X, y = make(n=101, noise=0.1, seed=3)
    width = 1 if name in ("line", "sine") else 2
    assert X.shape == (101, width) and X.dtype == np.float64
    assert y.shape == (101, *y_tail) and y.dtype == y_dtype
    X2, y2 = make(n=101, noise=0.1, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    X3, _ = make(n=101, noise=0.1, seed=4)
    assert not np.array_equal(X, X3)
    X4, y4 = make(n=101, noise=0.1, seed=np.random.default_rng(3))
    assert np.array_equal(X4, X) and np.array_equal(y4, y)


def test_generators_leave_global_random_state_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    for make, _, _ in GENERATORS.values():
        make(n=20, seed=1)
    ds.train_test_split(np.arange(20), seed=1)
    assert np.array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_generator_argument_errors(name):
    make = GENERATORS[name][0]
    with pytest.raises(ValueError, match="n must be"):
        make(n=0)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        make(noise=-1.0)
    with pytest.raises(ValueError, match="seed must be"):
        make(seed="abc")


def test_make_line_points_lie_on_the_line():
    X, y = ds.make_line(n=500, m=-3.0, c=0.5, noise=0.05, seed=0)
    assert np.abs(y - (-3.0 * X + 0.5)).max() < 5 * 0.05
    slope, intercept = np.polyfit(X[:, 0], y[:, 0], 1)
    assert slope == pytest.approx(-3.0, abs=0.02) and intercept == pytest.approx(0.5, abs=0.02)
    X, y = ds.make_line(n=10, noise=0.0, x_range=(2, 5))
    assert np.array_equal(y, 2.0 * X + 1.0) and X.min() >= 2 and X.max() <= 5


def test_make_xor_labels_are_xor_of_signs():
    X, y = ds.make_xor(n=400, noise=0.2, seed=0)
    assert np.array_equal(y, (X[:, 0] * X[:, 1] < 0).astype(np.int64))
    assert np.bincount(y).tolist() == [200, 200]


def test_make_moons_two_balanced_half_circles():
    X, y = ds.make_moons(n=201, noise=0.0, seed=0)
    assert np.bincount(y).tolist() == [100, 101]
    upper, lower = X[y == 0], X[y == 1]
    assert np.allclose(np.hypot(upper[:, 0], upper[:, 1]), 1.0) and (upper[:, 1] >= -1e-12).all()
    assert np.allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1.0)
    assert (lower[:, 1] <= 0.5 + 1e-12).all()
    noisy, _ = ds.make_moons(n=201, noise=0.1, seed=0)
    assert 0.05 < np.std(noisy - X) < 0.15          # same shuffle, noise of the requested size


def test_make_moons_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.datasets")
    X, y = ds.make_moons(n=50, noise=0.0)
    Xs, ys = sk.make_moons(n_samples=50, noise=0.0, shuffle=False)
    key = lambda A, b: sorted(zip(np.round(A, 12).tolist(), b.tolist()))  # noqa: E731
    assert key(X, y) == key(Xs, ys)


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_make_spirals_arms(classes):
    n = 301
    X, y = ds.make_spirals(n=n, classes=classes, noise=0.0, seed=0, turns=1.5)
    counts = np.bincount(y, minlength=classes)
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    r = np.hypot(X[:, 0], X[:, 1])
    assert r.max() == pytest.approx(1.0) and r.min() == 0.0
    keep = r > 1e-9
    expected = 2 * np.pi * (1.5 * r + y / classes)
    diff = np.angle(np.exp(1j * (np.arctan2(X[:, 1], X[:, 0]) - expected)))
    assert np.abs(diff[keep]).max() < 1e-9
    with pytest.raises(ValueError, match="classes must be"):
        ds.make_spirals(classes=1)


def test_make_sine_follows_sine():
    X, y = ds.make_sine(n=300, noise=0.05, seed=0)
    assert -math.pi <= X.min() and X.max() <= math.pi
    assert np.abs(y - np.sin(X)).max() < 5 * 0.05
    X, y = ds.make_sine(n=5, noise=0.0, x_range=(0.0, 1.0))
    assert np.array_equal(y, np.sin(X)) and (0 <= X).all() and (X <= 1).all()
    with pytest.raises(ValueError, match="low < high"):
        ds.make_sine(x_range=(1.0, 0.0))


# ----------------------------------------------------------------------------- splits

def labelled(n=100, props=(0.6, 0.3, 0.1)):
    X = np.arange(n * 2, dtype=np.float64).reshape(n, 2)      # row i is [2i, 2i + 1]
    y = np.repeat(np.arange(len(props)), np.round(np.array(props) * n).astype(int))
    return X, y


def rows_of(X):
    return (X[:, 0] // 2).astype(int)


@pytest.mark.parametrize("stratify", [False, True])
def test_train_test_split_disjoint_and_complete(stratify):
    X, y = labelled()
    X_tr, X_te, y_tr, y_te = ds.train_test_split(X, y, test_size=0.25, seed=1, stratify=stratify)
    assert len(X_te) == 25 and len(X_tr) == 75
    tr, te = rows_of(X_tr), rows_of(X_te)
    assert not set(tr) & set(te) and sorted([*tr, *te]) == list(range(100))
    assert np.array_equal(y_tr, y[tr]) and np.array_equal(y_te, y[te])     # rows stay paired
    again = ds.train_test_split(X, y, test_size=0.25, seed=1, stratify=stratify)
    assert np.array_equal(again[1], X_te)
    assert not np.array_equal(ds.train_test_split(X, y, seed=2, stratify=stratify)[1], X_te)


def test_stratified_split_keeps_class_proportions():
    X, y = labelled(200, (0.7, 0.2, 0.1))
    _, _, y_tr, y_te = ds.train_test_split(X, y, test_size=0.3, seed=0, stratify=True)
    assert np.bincount(y_te).tolist() == [42, 12, 6] and np.bincount(y_tr).tolist() == [98, 28, 14]
    parts = ds.train_val_test_split(X, y, val_size=0.15, test_size=0.2, seed=0, stratify=True)
    X_tr, X_va, X_te, y_tr, y_va, y_te = parts
    assert (len(y_tr), len(y_va), len(y_te)) == (130, 30, 40)
    full = np.bincount(y) / len(y)
    for part in (y_tr, y_va, y_te):
        counts = np.bincount(part, minlength=3)
        assert np.abs(counts - full * len(part)).max() <= 1.0
    idx = [rows_of(p) for p in (X_tr, X_va, X_te)]
    assert sorted(np.concatenate(idx).tolist()) == list(range(200))


def test_train_val_test_split_plain_and_without_y():
    X, y = labelled()
    X_tr, X_va, X_te = ds.train_val_test_split(X, val_size=10, test_size=0.2, seed=0)
    assert (len(X_tr), len(X_va), len(X_te)) == (70, 10, 20)
    assert sorted(np.concatenate([rows_of(X_tr), rows_of(X_va), rows_of(X_te)]).tolist()) == list(range(100))
    a, b = ds.train_test_split(np.arange(10), test_size=3)
    assert len(b) == 3 and sorted([*a, *b]) == list(range(10))


def test_split_errors():
    X, y = labelled(10, (0.5, 0.5))
    for bad in (0, 0.0, 1.0, 10, -0.1, True, "half"):
        with pytest.raises(ValueError, match="test_size"):
            ds.train_test_split(X, y, test_size=bad)
    with pytest.raises(ValueError, match="10 rows but y has shape"):
        ds.train_test_split(X, y[:-1])
    with pytest.raises(ValueError, match="stratify=True needs labels"):
        ds.train_test_split(X, stratify=True)
    with pytest.raises(ValueError, match="leaving none for training"):
        ds.train_val_test_split(X, y, val_size=5, test_size=5)


# ----------------------------------------------------------------------------- Standardizer

def test_standardizer_scales_and_inverts():
    rng = np.random.default_rng(0)
    X = rng.normal(loc=[5.0, -3.0, 100.0], scale=[2.0, 0.01, 30.0], size=(500, 3))
    s = ds.Standardizer()
    Z = s.fit_transform(X)
    assert np.allclose(Z.mean(axis=0), 0.0, atol=1e-12) and np.allclose(Z.std(axis=0), 1.0)
    assert np.allclose(s.inverse_transform(Z), X, rtol=0, atol=1e-10)
    assert s.mean_.shape == s.scale_.shape == (3,) and s.n_features_ == 3
    Z32 = s.transform(X.astype(np.float32))
    assert Z32.dtype == np.float32 and np.allclose(Z32, Z, atol=1e-4)
    assert s.transform(np.ones((2, 3), dtype=np.int64)).dtype == np.float64


def test_standardizer_zero_variance_columns():
    X = np.column_stack([np.full(6, 0.1), np.arange(6.0), np.zeros(6)])
    s = ds.Standardizer().fit(X)
    Z = s.transform(X)
    assert np.isfinite(Z).all() and np.array_equal(Z[:, 0], np.zeros(6)) and (Z[:, 2] == 0).all()
    assert s.scale_[0] == 1.0 and s.scale_[2] == 1.0
    assert np.array_equal(s.inverse_transform(Z)[:, [0, 2]], X[:, [0, 2]])
    assert np.allclose(s.inverse_transform(Z), X)


def test_standardizer_errors():
    s = ds.Standardizer()
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        s.transform(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="not fitted"):            # NotFittedError is a ValueError
        s.inverse_transform(np.zeros((2, 2)))
    s.fit(np.arange(6.0).reshape(3, 2))
    with pytest.raises(ValueError, match="X has 3 columns, but this Standardizer was fitted on 2"):
        s.transform(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="2-D"):
        s.transform(np.zeros(2))
    with pytest.raises(ValueError, match="NaN"):
        ds.Standardizer().fit(np.array([[1.0], [np.nan]]))
    with pytest.raises(ValueError, match="empty"):
        ds.Standardizer().fit(np.zeros((0, 3)))
