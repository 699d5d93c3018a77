"""The glue's views and kernel addresses (graphnn/compile/views.py): the compiled
intrinsics and their Python twins agree, and nothing reads outside its buffer."""
import numpy as np
import pytest
from numba import njit

from graphnn.compile import library
from graphnn.compile.views import kernel, python_vector, python_view, vector, view


@njit
def _view(flat, start, rows, cols):
    return view(flat, start, rows, cols)


@njit
def _vector(flat, start, size):
    return vector(flat, start, size)


@njit
def _colsum(addresses, index, out, g):
    f = kernel(addresses, index, "colsum", np.float64)
    f(out, g)


@pytest.mark.parametrize("start,rows,cols", [(0, 3, 4), (2, 2, 5), (11, 1, 1), (5, 0, 3)])
def test_views_match_numpy(start, rows, cols):
    flat = np.arange(12.0)
    got = _view(flat, start, rows, cols)
    np.testing.assert_array_equal(got, flat[start:start + rows * cols].reshape(rows, cols))
    np.testing.assert_array_equal(python_view(flat, start, rows, cols), got)
    got[...] = -1                                        # a view, not a copy
    assert (flat[start:start + rows * cols] == -1).all()
    np.testing.assert_array_equal(_vector(flat, start, rows), python_vector(flat, start, rows))


@pytest.mark.parametrize("start,rows,cols", [(-1, 1, 1), (0, 4, 4), (10, 1, 3), (0, -1, 2),
                                             (0, 2, -1), (12, 1, 1)])
def test_views_never_leave_their_buffer(start, rows, cols):
    flat = np.arange(12.0)
    for make in (_view, python_view):
        with pytest.raises(IndexError, match="leave its buffer"):
            make(flat, start, rows, cols)
    with pytest.raises(IndexError, match="leave its buffer"):
        _vector(flat, start, rows * cols if rows * cols > 0 else -1)


def test_views_refuse_other_buffers():
    """Only a writable 1-D C array can be viewed (a strided one would be read wrongly)."""
    with pytest.raises(Exception, match="view"):
        _view(np.arange(24.0)[::2], 0, 2, 2)
    ro = np.arange(4.0)
    ro.setflags(write=False)
    with pytest.raises(Exception, match="view"):
        _view(ro, 0, 2, 2)


def test_kernel_addresses_are_checked():
    lib = library.library("float64")
    addresses = np.array([lib.address("colsum")], np.int64)
    out, g = np.zeros(3), np.arange(6.0).reshape(2, 3)
    _colsum(addresses, 0, out, g)
    np.testing.assert_array_equal(out, [3.0, 5.0, 7.0])
    for index in (1, -1):
        with pytest.raises(IndexError, match="no such kernel"):
            _colsum(addresses, index, out, g)
