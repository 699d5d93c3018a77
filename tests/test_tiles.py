"""The vector-tile products (graphnn/compile/tiles.py): the library's matmul, matmul_at
and matmul_bt against a float64 NumPy product on a sweep of shapes (edges included), both
paths (tiles and BLAS), the intrinsics' bounds checks, and determinism."""
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from graphnn.compile import library
from graphnn.compile.tiles import (DEPTH, ONE_UNIT, OUTSIDE, TILE_BATCH, TILE_COLS, TILE_WORK,
                                   TILED, tile, tile_bt, tile_limit)

ROWS = [0, 1, 2, 3, 4, 5, 7, 8, 31, 32, 33]
DEPTHS = [0, 1, 2, 3, 17, 32, DEPTH, DEPTH + 44]      # the last: two passes over out
WIDTHS = [0, 1, 10, 16, 32, 48, 64, 100]
SHAPES = {"": ("n, K", "K, m"), "_at": ("K, n", "K, m"), "_bt": ("n, K", "m, K")}
assert set(SHAPES) == set(TILED)


def _operands(t, n, K, m, rng, dtype):
    """a and b of matmul{t} for an (n x m) output with depth K."""
    size = dict(n=n, K=K, m=m)
    return [rng.standard_normal([size[d] for d in shape.split(", ")]).astype(dtype)
            for shape in SHAPES[t]]


def _reference(a, b, t):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a.T if t == "_at" else a) @ (b.T if t == "_bt" else b)


@njit
def _limit(a):
    return tile_limit(a)


def _tiled(n, K, m, t, dtype="float32"):
    """Whether the kernel takes the tile path for this product (else BLAS)."""
    batch = K if t == "_at" else n
    limit = _limit(np.zeros((1, 1), dtype))
    return batch <= TILE_BATCH and m % TILE_COLS == 0 and n * K * m <= limit


def test_tile_limit_is_one_of_the_documented():
    assert _limit(np.zeros((1, 1), np.float32)) in TILE_WORK.values()
    assert _limit(np.zeros((1, 1), np.float64)) == _limit(np.zeros((1, 1), np.float32))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("t", list(TILED))
def test_products_match_numpy(dtype, t):
    kernel = library.library(dtype).kernel(f"matmul{t}")
    rng = np.random.default_rng(0)
    eps = np.finfo(dtype).eps
    tiled = 0
    for n in ROWS:
        for K in DEPTHS:
            for m in WIDTHS:
                a, b = _operands(t, n, K, m, rng, dtype)
                out = np.full((n, m), np.nan, dtype)     # every element must be written
                kernel(a, b, out)
                bound = 4 * eps * (K + 1) * (np.abs(a).max(initial=0)
                                             * np.abs(b).max(initial=0) + 1)
                err = np.abs(out - _reference(a, b, t)).max(initial=0)
                assert err <= bound, (n, K, m, err, bound)
                tiled += _tiled(n, K, m, t, dtype)
    assert tiled > 100          # the sweep exercises the tiles, not only BLAS
    # the kernel calls the tiles (on AVX-512 OpenBLAS even the bits agree, each output a
    # chain of FMAs in k order; ONE_UNIT's dot products sum in another order)
    assert TILED[t][2] in library.source(dtype)
    if t == "":     # outputs of one column (m == 1 above, up to 32 rows) are dot products
        assert ONE_UNIT.strip("\n") in library.source(dtype)


@pytest.mark.parametrize("t", list(TILED))
def test_large_products_go_to_blas(t):
    """Past the batch or work limits the kernel is BLAS: the result is what np.dot gives."""
    kernel = library.library("float32").kernel(f"matmul{t}")
    rng = np.random.default_rng(1)
    shapes = [(64, 32, 32), (32, 2048, 256)] if t != "_at" else [(32, 64, 32), (2048, 32, 256)]
    for n, K, m in shapes:
        assert not _tiled(n, K, m, t)
        a, b = _operands(t, n, K, m, rng, np.float32)
        out = np.empty((n, m), np.float32)
        kernel(a, b, out)
        np.testing.assert_allclose(out, _reference(a, b, t), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("t", ["", "_bt"])       # (a^T @ b sums over the batch)
def test_tiles_are_deterministic_and_row_independent(t):
    """Same inputs, same bits; a row's result does not depend on the batch around it (the
    repeated rows of a last, partial block compute the same numbers)."""
    kernel = library.library("float32").kernel(f"matmul{t}")
    a, b = _operands(t, 7, DEPTH + 44, 48, np.random.default_rng(2), np.float32)
    first, again, alone = (np.empty((7, 48), np.float32) for _ in range(3))
    kernel(a, b, first)
    kernel(a, b, again)
    assert first.tobytes() == again.tobytes()
    for i in range(7):
        kernel(np.ascontiguousarray(a[i:i + 1]), b, alone[i:i + 1])
    assert alone.tobytes() == first.tobytes()


@pytest.mark.parametrize("t", list(TILED))
def test_mismatched_shapes_are_refused(t):
    kernel = library.library("float32").kernel(f"matmul{t}")
    rng = np.random.default_rng(3)
    a, b = _operands(t, 4, 3, 16, rng, np.float32)
    taller = np.ones((b.shape[0] + 1, b.shape[1]), np.float32)
    wider = np.ones((b.shape[0], b.shape[1] + 16), np.float32)
    for bad_b, out_shape in [(b, (5, 16)), (b, (4, 32)), (taller, (4, 16)), (wider, (4, 16))]:
        with pytest.raises(ValueError, match="do not match"):
            kernel(a, bad_b, np.empty(out_shape, np.float32))
    a, b = _operands(t, 4, 3, 1, rng, np.float32)          # one column (ONE_UNIT for a @ b)
    taller = np.ones((b.shape[0] + 1, b.shape[1]), np.float32)
    for bad_b, out_shape in [(b, (5, 1)), (b, (4, 2)), (taller, (4, 1))]:
        with pytest.raises(ValueError, match="do not match"):
            kernel(a, bad_b, np.empty(out_shape, np.float32))


@njit
def _tile(a, b, out, a_row, a_k):
    tile(a, b, out, a_row, a_k)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("at", [False, True])
def test_tile_matches_numpy(dtype, at):
    """The intrinsic alone: 13 rows (whole blocks of 8 or 4 rows, then a part block whose
    extra rows repeat the last), 80 columns (two wide panels and one narrow where a row
    holds two vectors), a depth of two passes over out, strides of a given explicitly."""
    rng = np.random.default_rng(3)
    K = DEPTH + 3
    a = rng.standard_normal((K, 13) if at else (13, K)).astype(dtype)
    b = rng.standard_normal((K, 80)).astype(dtype)
    out = np.zeros((13, 80), dtype)
    _tile(a, b, out, *((1, 13) if at else (K, 1)))
    expect = (a.T if at else a).astype(np.float64) @ b.astype(np.float64)
    bound = 4 * np.finfo(dtype).eps * (K + 1) * np.abs(a).max() * np.abs(b).max()
    assert np.abs(out - expect).max() <= bound
    sig = next(s for s in _tile.signatures if str(s[0].dtype) == dtype)
    ir = _tile.inspect_llvm(sig)
    assert f"llvm.fma.v16{'f32' if dtype == 'float32' else 'f64'}" in ir    # vector code


HUGE = (1 << 63) // 3 + 1        # 3 * HUGE wraps past 2**63 to a negative number


@pytest.mark.parametrize("a_row,a_k,a_shape,b_shape,out_shape", [
    (4, 1, (4, 4), (4, 8), (4, 8)),        # out's width is not a multiple of TILE_COLS
    (5, 1, (4, 4), (4, 16), (4, 16)),      # a's reads run past its end (row stride too big)
    (4, 2, (4, 4), (4, 16), (4, 16)),      # ... (k stride too big)
    (-4, 1, (4, 4), (4, 16), (4, 16)),     # a negative stride
    (4, -1, (4, 4), (4, 16), (4, 16)),     # ...
    (4, 1, (4, 4), (4, 32), (4, 16)),      # b is wider than out
    (4, 1, (4, 4), (9, 16), (4, 16)),      # b has more rows (k) than a can give
    (HUGE, 1, (4, 4), (4, 16), (4, 16)),   # (n-1) * a_row wraps to a negative number
    (4, HUGE, (4, 4), (4, 16), (4, 16)),   # (K-1) * a_k wraps
    (1 << 62, 1 << 62, (4, 4), (2, 16), (2, 16)),   # their sum wraps
])
def test_tile_refuses_to_leave_its_arrays(a_row, a_k, a_shape, b_shape, out_shape):
    a, b, out = np.ones(a_shape), np.ones(b_shape), np.zeros(out_shape)
    with pytest.raises(IndexError, match=OUTSIDE):
        _tile(a, b, out, a_row, a_k)
    assert not out.any()


@njit
def _tile_bt(a, b, out):
    tile_bt(a, b, out)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tile_bt_matches_numpy(dtype):
    """a @ b^T: 13 rows, 80 columns (b's rows: packed panels two vectors and one vector
    wide), a depth of two chunks (the packed buffer holds one)."""
    rng = np.random.default_rng(4)
    K = DEPTH + 3
    a = rng.standard_normal((13, K)).astype(dtype)
    b = rng.standard_normal((80, K)).astype(dtype)
    out = np.zeros((13, 80), dtype)
    _tile_bt(a, b, out)
    expect = a.astype(np.float64) @ b.astype(np.float64).T
    bound = 4 * np.finfo(dtype).eps * (K + 1) * np.abs(a).max() * np.abs(b).max()
    assert np.abs(out - expect).max() <= bound


@pytest.mark.parametrize("a_shape,b_shape,out_shape", [
    ((4, 4), (8, 4), (4, 8)),          # out's width is not a multiple of TILE_COLS
    ((4, 4), (32, 4), (4, 16)),        # b has more rows than out has columns
    ((4, 3), (16, 4), (4, 16)),        # a has fewer columns than b (its reads would leave it)
    ((3, 4), (16, 4), (4, 16)),        # a has fewer rows than out
    ((2, 8), (16, 4), (4, 16)),        # a holds enough numbers, but in another shape
])
def test_tile_bt_refuses_to_leave_its_arrays(a_shape, b_shape, out_shape):
    a, b, out = np.ones(a_shape), np.ones(b_shape), np.zeros(out_shape)
    with pytest.raises(IndexError, match=OUTSIDE):
        _tile_bt(a, b, out)
    assert not out.any()


# The intrinsics' tests again, compiled for a CPU without AVX-512 (4 x 16 blocks, one
# vector per row): the block shape follows the target, and each shape must be right.
NO_AVX512 = r"""
import sys
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", sys.argv[1], "-k",
                      "tile_matches or tile_bt_matches or refuses or row_independent or wide"]))
"""


def _float32_asm(name):
    """The machine code of float32 library kernel ``name``, compiled here (not cached)."""
    namespace = {"__name__": "asm_check"}
    exec(compile(library.source(np.float32), "<asm_check>", "exec"), namespace)
    kernel = namespace[name]
    kernel.compile(library.signature(name, np.float32).args)
    return next(iter(kernel.inspect_asm().values()))


def test_wide_vectors_for_arithmetic_activations_only():
    """float32 tanh's kernels run on 512-bit vectors where the target has AVX-512
    (vectors.wide_vectors); ReLU's, bound by memory, keep LLVM's 256-bit preference."""
    from numba.core.registry import cpu_target
    from graphnn.compile.vectors import avx512
    wide = avx512(cpu_target.target_context)
    for name in ("bias_act_tanh", "act_grad_tanh"):
        assert ("zmm" in _float32_asm(name)) == wide, name
    assert "zmm" not in _float32_asm("bias_act_relu")


def test_tiles_without_avx512(tmp_path):
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="",
               GRAPHNN_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", NO_AVX512, __file__], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
