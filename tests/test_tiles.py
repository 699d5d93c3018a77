"""The vector-tile products (graphnn/compile/tiles.py): the library's matmul and
matmul_at against a float64 NumPy product on a sweep of shapes (edges included), both
paths (tiles and BLAS), the intrinsic's bounds checks, and determinism."""
import numpy as np
import pytest
from numba import njit

from graphnn.compile import library
from graphnn.compile.tiles import OUTSIDE, TILE_BATCH, TILE_COLS, TILE_WORK, tile

ROWS = [1, 2, 3, 4, 5, 7, 8, 31, 32, 33]
DEPTHS = [0, 1, 2, 3, 17, 32]
WIDTHS = [1, 10, 16, 32, 48, 100]


def _reference(a, b, at):
    return (a.astype(np.float64).T if at else a.astype(np.float64)) @ b.astype(np.float64)


def _tiled(n, K, m, at):
    """Whether the kernel takes the tile path for this product (else BLAS)."""
    batch = K if at else n
    return batch <= TILE_BATCH and m % TILE_COLS == 0 and n * K * m <= TILE_WORK


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("at", [False, True])
def test_products_match_numpy(dtype, at):
    kernel = library.library(dtype).kernel("matmul_at" if at else "matmul")
    rng = np.random.default_rng(0)
    eps = np.finfo(dtype).eps
    tiled = 0
    for n in ROWS:
        for K in DEPTHS:
            for m in WIDTHS:
                a = rng.standard_normal((K, n) if at else (n, K)).astype(dtype)
                b = rng.standard_normal((K, m)).astype(dtype)
                out = np.full((n, m), np.nan, dtype)     # every element must be written
                kernel(a, b, out)
                ref = _reference(a, b, at)
                bound = 4 * eps * (K + 1) * (np.abs(a).max(initial=0) * np.abs(b).max(initial=0) + 1)
                err = np.abs(out - ref).max()
                assert err <= bound, (n, K, m, err, bound)
                tiled += _tiled(n, K, m, at)
    assert tiled > 100          # the sweep exercises the tiles, not only BLAS


@pytest.mark.parametrize("at", [False, True])
def test_large_products_go_to_blas(at):
    """Past the batch or work limits the kernel is BLAS: the result is what np.dot gives."""
    kernel = library.library("float32").kernel("matmul_at" if at else "matmul")
    rng = np.random.default_rng(1)
    for n, K, m in [(64, 32, 32), (32, 784, 128)] if not at else [(32, 64, 32), (784, 32, 128)]:
        assert not _tiled(n, K, m, at)
        a = rng.standard_normal((K, n) if at else (n, K)).astype(np.float32)
        b = rng.standard_normal((K, m)).astype(np.float32)
        out = np.empty((n, m), np.float32)
        kernel(a, b, out)
        np.testing.assert_allclose(out, (a.T if at else a) @ b, rtol=1e-5, atol=1e-4)


def test_tiles_are_deterministic_and_row_independent():
    """Same inputs, same bits; a row's result does not depend on the batch around it (the
    repeated rows of a last, partial block compute the same numbers)."""
    kernel = library.library("float32").kernel("matmul")
    rng = np.random.default_rng(2)
    a = rng.standard_normal((7, 32)).astype(np.float32)
    b = rng.standard_normal((32, 48)).astype(np.float32)
    first, again, alone = (np.empty((7, 48), np.float32) for _ in range(3))
    kernel(a, b, first)
    kernel(a, b, again)
    assert first.tobytes() == again.tobytes()
    for i in range(7):
        kernel(np.ascontiguousarray(a[i:i + 1]), b, alone[i:i + 1])
    assert alone.tobytes() == first.tobytes()


@pytest.mark.parametrize("at", [False, True])
def test_mismatched_shapes_are_refused(at):
    kernel = library.library("float32").kernel("matmul_at" if at else "matmul")
    a = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="do not match"):
        kernel(a, np.ones((5, 16), np.float32), np.empty((4 if not at else 3, 16), np.float32))
    with pytest.raises(ValueError, match="do not match"):
        kernel(a, np.ones((4 if at else 3, 16), np.float32), np.empty((9, 16), np.float32))


@njit
def _tile(a, b, out, i, j, a_row, a_k):
    tile(a, b, out, i, j, a_row, a_k)


def test_tile_block_matches_numpy():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 5))
    b = rng.standard_normal((5, 32))
    out = np.zeros((6, 32))
    _tile(a, b, out, 4, 16, 5, 1)                     # rows 4, 5 (then 5 again), columns 16..31
    expect = np.zeros((6, 32))
    expect[4:, 16:] = a[4:] @ b[:, 16:]
    np.testing.assert_allclose(out, expect, rtol=1e-13, atol=1e-13)
    assert "llvm.fma.v16f64" in _tile.inspect_llvm(_tile.signatures[0])   # vector code


@pytest.mark.parametrize("i,j,a_row,a_k,a_shape,b_shape", [
    (-1, 0, 4, 1, (4, 4), (4, 16)),       # a row before the first
    (4, 0, 4, 1, (4, 4), (4, 16)),        # a row past the last
    (0, -16, 4, 1, (4, 4), (4, 16)),      # a column before the first
    (0, 8, 4, 1, (4, 4), (4, 16)),        # the block's columns run past out's width
    (0, 0, 5, 1, (4, 4), (4, 16)),        # a's reads run past its end (row stride too big)
    (0, 0, 4, 2, (4, 4), (4, 16)),        # ... (k stride too big)
    (0, 0, -4, 1, (4, 4), (4, 16)),       # a negative stride
    (0, 0, 4, 1, (4, 4), (4, 32)),        # b is wider than out
    (0, 0, 4, 1, (4, 4), (9, 16)),        # b has more rows (k) than a can give
])
def test_tile_refuses_to_leave_its_arrays(i, j, a_row, a_k, a_shape, b_shape):
    a, b, out = np.ones(a_shape), np.ones(b_shape), np.zeros((4, 16))
    with pytest.raises(IndexError, match=OUTSIDE):
        _tile(a, b, out, i, j, a_row, a_k)
    assert not out.any()
