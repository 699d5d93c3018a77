"""blas.gemm: BLAS's product as an intrinsic, against np.dot (the same BLAS call: the same
bits) and NumPy in float64, and its refusals."""
import re

import numpy as np
import pytest
from numba import njit

from graphnn.compile.blas import SHAPES, gemm


@njit(_nrt=False)
def _ab(a, b, out):
    gemm(a, b, out)


@njit(_nrt=False)
def _at(a, b, out):
    gemm(a.T, b, out)


@njit(_nrt=False)
def _bt(a, b, out):
    gemm(a, b.T, out)


@njit(_nrt=False)
def _atbt(a, b, out):
    gemm(a.T, b.T, out)


@njit
def _dot(a, b, out, t):
    if t == 0:
        np.dot(a, b, out)
    elif t == 1:
        np.dot(a.T, b, out)
    elif t == 2:
        np.dot(a, b.T, out)
    else:
        np.dot(a.T, b.T, out)


KERNELS = [_ab, _at, _bt, _atbt]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("t", range(4))
@pytest.mark.parametrize("m,k,n", [(5, 7, 3), (64, 300, 40), (1, 1, 1), (33, 784, 10),
                                   (1, 300, 40), (40, 300, 1), (1, 300, 1),   # vectors
                                   (0, 3, 4), (3, 0, 4), (3, 4, 0)])
def test_gemm_matches_np_dot(dtype, t, m, k, n):
    """Every transpose, one-row and one-column operands (np.dot calls a matrix-vector or a
    dot product there) and empty shapes included: np.dot's bits, and the float64
    product's value.  out is rows inside a larger NaN buffer: every number of out written
    (no terms: zeros), none around it."""
    rng = np.random.default_rng(m * 100 + k + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    A = np.ascontiguousarray(a.T) if t in (1, 3) else a
    B = np.ascontiguousarray(b.T) if t in (2, 3) else b
    buffer = np.full((m + 2, n), np.nan, dtype)
    out = buffer[1:m + 1]                          # C-contiguous rows, a row either side
    KERNELS[t](A, B, out)
    assert np.isnan(buffer[0]).all() and np.isnan(buffer[-1]).all()
    expect = np.full((m, n), np.nan, dtype)
    _dot(A, B, expect, t)
    assert np.array_equal(out, expect)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    assert np.allclose(out, exact, rtol=1e-4, atol=1e-4 * max(1, k))


@pytest.mark.parametrize("a_shape,b_shape,out_shape", [
    ((2, 3), (4, 2), (2, 2)),          # inner sizes differ
    ((2, 3), (3, 2), (3, 2)),          # out has the wrong rows
    ((2, 3), (3, 2), (2, 3)),          # ... columns
    ((0, 1 << 31), (1 << 31, 0), (0, 0)),   # an inner size past BLAS's 32-bit integers
    ((1 << 31, 0), (0, 0), (1 << 31, 0)),   # rows past them (no bytes in any array)
    ((0, 0), (0, 1 << 31), (0, 1 << 31)),   # columns past them
])
def test_gemm_refuses_shapes(a_shape, b_shape, out_shape):
    out = np.zeros(out_shape, np.float32)
    with pytest.raises(ValueError, match=re.escape(SHAPES)):
        _ab(np.ones(a_shape, np.float32), np.ones(b_shape, np.float32), out)
    assert not out.any()


def test_gemm_types_only_contiguous_float_arrays():
    """A strided view (neither C nor F layout), mixed dtypes, float16, a read-only or
    F-layout out: no such gemm (a typing error, never a copy or a write to a read-only
    array)."""
    from numba.core.errors import TypingError
    a = np.ones((4, 6), np.float32)
    b = np.ones((6, 2), np.float32)
    out = np.zeros((4, 2), np.float32)
    readonly = np.zeros((4, 2), np.float32)
    readonly.flags.writeable = False
    for args in [(a[:, ::2], np.ones((3, 2), np.float32), out),
                 (a, b.astype(np.float64), out),
                 (a.astype(np.float16), b.astype(np.float16), out.astype(np.float16)),
                 (a, b, readonly),
                 (a, b, np.asfortranarray(out))]:
        with pytest.raises(TypingError):
            _ab(*args)
    assert not out.any()
