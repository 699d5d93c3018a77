"""The glue's views and kernel addresses (graphnn/compile/views.py): the compiled
intrinsics and their Python twins agree, and nothing reads outside its buffer."""
import re

import numpy as np
import pytest
from numba import njit

from graphnn.compile import library
from graphnn.compile.views import (at, block, kernel, matrix, python_at, python_block,
                                   python_matrix, python_vec, python_vector, python_view,
                                   rows_view, step_function, vec, vector, view)


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


@njit
def _rows_view(matrix, start, rows):
    return rows_view(matrix, start, rows)


def test_rows_views_match_numpy_and_stay_inside():
    """rows_view: the epoch loop's batch of rows in their own order, as a view of X."""
    X = np.arange(15.0).reshape(5, 3)
    for start, rows in ((0, 5), (1, 2), (4, 1), (5, 0), (2, 0)):
        got = _rows_view(X, start, rows)
        np.testing.assert_array_equal(got, X[start:start + rows])
        assert got.flags.c_contiguous and (rows == 0 or np.shares_memory(got, X))
    for start, rows in ((-1, 1), (6, 0), (4, 2), (0, 6), (0, -1), (1 << 62, 1), (1, 1 << 62)):
        with pytest.raises(IndexError, match="leave its buffer"):
            _rows_view(X, start, rows)
    with pytest.raises(Exception, match="rows_view"):
        _rows_view(np.arange(24.0).reshape(4, 6)[:, ::2], 0, 2)       # not C-contiguous


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


@njit
def _matmul(addresses, a, b, out):
    f = kernel(addresses, 0, "matmul", np.float64)
    f(a, b, out)


def test_kernel_calls_propagate_errors_and_refuse_null():
    """A kernel called through its address raises into its caller as it would from Python
    (Numba's calling convention), and an address of 0 is an IndexError, never a call."""
    lib = library.library("float64")
    addresses = np.array([lib.address("matmul")], np.int64)
    a, b, out = np.ones((2, 3)), np.ones((3, 4)), np.zeros((2, 4))
    _matmul(addresses, a, b, out)
    np.testing.assert_array_equal(out, np.full((2, 4), 3.0))
    with pytest.raises(ValueError, match="do not match"):
        _matmul(addresses, a, np.ones((2, 4)), out)
    with pytest.raises(IndexError, match="no such kernel"):
        _matmul(np.zeros(1, np.int64), a, b, out)


def test_train_step_calls_kernels_directly(monkeypatch):
    """train_step's compiled code calls the kernels at their addresses and nothing else:
    no call site carries Numba's first-class-function fallback through the Python C API
    (it was a quarter of what a new architecture compiled).  Compiled in memory, and of a
    structure no other test builds, so its IR is at hand (code loaded from the disk cache
    has none)."""
    import graphnn as gn
    monkeypatch.setenv("GRAPHNN_NO_CACHE", "1")
    net = gn.Sequential([gn.Dense(8, activation="gelu"), gn.Dense(5, activation="sigmoid"),
                         gn.Dense(3, activation="softplus")], input_dim=4).compile(
        loss="mse", optimizer=gn.SGD(0.1), dtype="float64")
    net.fit(np.zeros((8, 4)), np.zeros((8, 3)), epochs=1, batch_size=4)
    step = net.backend.glue["train_step"]
    (overload,) = step.overloads.values()
    code = overload.library.get_llvm_str()
    assert "train_step" in code
    for api in ("numba_gil_ensure", "PyImport_ImportModule", "PyObject_CallFunctionObjArgs"):
        assert api not in code
    # every check with the same error branches to one raise block (views._raise_if): each
    # error's constant is defined once and stored once, however many views there are
    raised = re.findall(r"@\.const\.picklebuf\.[0-9a-f]+", code)
    assert raised and all(raised.count(r) == 2 for r in set(raised)), raised


@njit
def _at(array, index):
    return at(array, index)


def test_layout_reads_are_checked():
    """at() reads like indexing, and an index outside the array is an IndexError in
    compiled and in Python glue alike (Numba's own indexing would read anything)."""
    layout = np.array([7, 8, 9], np.int64)
    hyper = np.array([0.5, 0.25])
    for read in (_at, python_at):
        assert [read(layout, i) for i in range(3)] == [7, 8, 9]
        assert read(hyper, 1) == 0.25
        for index in (3, -1, 100):
            with pytest.raises(IndexError, match="outside"):
                read(layout, index)


@njit
def _step_of(address):
    step = step_function(address, np.float64, "labels")
    return step is not None


def test_step_address_zero_is_refused():
    """The epoch loop refuses a train_step address of 0 (never compiled) with an
    IndexError instead of calling into nothing."""
    with pytest.raises(IndexError, match="no train_step"):
        _step_of(0)


def test_epoch_loop_refuses_a_missing_step():
    """The library's epoch loop, called with a train_step address of 0 or with batches that
    do not fit its arrays, stops with an error before any batch (Numba checks no index)."""
    import graphnn as gn
    net = gn.Sequential([gn.Dense(3)], input_dim=2).compile(
        loss="cross_entropy", optimizer=gn.SGD(0.1), dtype="float64")
    b = net.backend
    loop = b.library.kernel(b.epoch_kernel)
    X, y = np.zeros((4, 2)), np.zeros(4, np.int64)
    def run(step, first=0, last=1, batch_size=4, order=np.arange(4), losses=np.zeros(1)):
        loop(b.kernels, step, net.params, net.grads, net.state, np.zeros(64), X, y,
             np.zeros(0), order, first, last, batch_size, 0.1, 0, 0, np.zeros(8),
             np.zeros(4, np.int64), np.zeros(4), losses, np.zeros(3), b.layout, b.hyper)
    with pytest.raises(IndexError, match="no train_step"):
        run(0)
    # batches that do not fit the arrays are refused before any is gathered
    assert b._step != 0                      # compiled with the model: a real train_step
    for bad in (dict(last=2), dict(first=-1), dict(batch_size=0), dict(order=np.arange(3)),
                dict(last=3, batch_size=2, losses=np.zeros(3)),
                # (last - 1) * batch_size would wrap to a small number
                dict(first=2, last=3, batch_size=2**63 - 2**39, losses=np.zeros(3)),
                dict(first=1, last=2, batch_size=2**62, losses=np.zeros(2))):
        with pytest.raises(IndexError, match="do not fit"):
            run(b._step, **bad)
    run(b._step, last=2, batch_size=2, losses=np.zeros(2))      # and batches that fit run


def test_rows_in_order_are_passed_uncopied_with_the_same_result():
    """A batch whose rows come in their own order (no shuffle) goes to train_step as views
    of X, Y and W; any other order is gathered.  The two give the same bits: X and Y
    doubled, an order naming the second copy of every row gathers what the views show."""
    import graphnn as gn
    rng = np.random.default_rng(3)
    for loss, y in (("cross_entropy", rng.integers(0, 3, 12)),
                    ("mse", rng.standard_normal((12, 3)))):
        X, W = rng.standard_normal((12, 4)), rng.random(12)
        X0, y0, W0 = X.copy(), y.copy(), W.copy()
        results = []
        for double in (False, True):
            net = gn.Sequential([gn.Dense(5, activation="tanh"), gn.Dense(3)], input_dim=4)
            net = net.compile(loss=loss, optimizer=gn.SGD(0.1), dtype="float64", seed=1)
            b = net.backend
            net._ensure_arena(4)
            Xd, yd, Wd = (np.concatenate([a, a]) if double else a for a in (X, y, W))
            order = np.concatenate([np.arange(12, 24), np.arange(12)]) if double else \
                np.arange(12)
            losses, xbuf = np.zeros(3), np.full(16, np.nan)
            b.train_epoch(net.params, net.grads, net.state, net.arena, Xd, yd, Wd, order, 0,
                          3, 4, 0.1, 0, 7, xbuf, np.zeros(4 * (1 if y.ndim == 1 else 3),
                                                          y.dtype),
                          np.zeros(4), losses, np.zeros(3))
            assert np.isnan(xbuf).all() != double          # in order: nothing gathered
            results.append((net.params.copy(), losses))
        np.testing.assert_array_equal(results[0][0], results[1][0])
        np.testing.assert_array_equal(results[0][1], results[1][1])
        # the views are read, never written
        for a, a0 in ((X, X0), (y, y0), (W, W0)):
            np.testing.assert_array_equal(a, a0)


def test_no_instruction_writes_the_input():
    """Batches in order are views of the user's X: no op may write its input buffer (the
    plan's instructions, in every pass, for ops that could be tempted to work in place)."""
    import dataclasses
    import graphnn as gn
    from graphnn.compile.plan import lower
    from graphnn.ops.losses import LOSSES
    written = {"out", "gx", "colsum", "mask"}
    checked = 0
    x = gn.Input(6)
    graphs = [gn.Model(x, gn.Dense(3)(gn.ReLU()(x))),
              gn.Model(x, gn.Dense(3)(gn.Dropout(0.5)(x))),
              gn.Model(x, gn.Softmax()(gn.Concatenate()([x, gn.Dense(4)(x)]))),
              gn.Model(x, gn.Add()([x, gn.Dense(6, activation="tanh")(x)])),
              gn.Model(x, gn.Sigmoid()(gn.Dense(1)(gn.Tanh()(x))))]
    for graph in graphs:
        for loss in ("mse", "cross_entropy", "binary_cross_entropy"):
            try:
                plan = lower(graph, LOSSES[loss])
            except ValueError:
                continue                         # e.g. a loss the output cannot take
            assert plan.dlogits.kind != "input"
            for step in plan.forward + plan.train_forward + plan.backward:
                for f in dataclasses.fields(step) if dataclasses.is_dataclass(step) else ():
                    buf = getattr(step, f.name)
                    if f.name in written and buf is not None:
                        assert buf.kind != "input", (type(step).__name__, f.name)
                        checked += 1
    assert checked > 50


def test_narrow_paths_give_the_same_bits():
    """colsum of fewer than 16 columns sums in registers, bias_act in place with one column
    runs down it: the same numbers as rows added in order and as the general path."""
    lib = library.library("float32")
    rng = np.random.default_rng(5)
    for k in (1, 3, 10, 15):
        g = rng.standard_normal((33, k)).astype(np.float32)
        out = np.zeros(k, np.float32)
        lib.kernel("colsum")(out, g)
        expect = np.zeros(k, np.float32)
        for i in range(g.shape[0]):                  # rows added in order, in float32
            expect = (expect + g[i]).astype(np.float32)
        np.testing.assert_array_equal(out, expect)
    z, b = rng.standard_normal((32, 1)).astype(np.float32) * 3, np.float32([0.25])
    for act in ("tanh", "linear", "sigmoid", "relu"):
        kernel = lib.kernel(f"bias_act_{act}")
        apart, inplace = np.zeros_like(z), z.copy()
        kernel(apart, z, b)                          # the general (not in place) path
        kernel(inplace, inplace, b)                  # in place, one column
        np.testing.assert_array_equal(inplace, apart)


def test_stats_kernels_add_nothing_into_empty_stats():
    """No metric asked for: fit passes empty stats and the loss's stats kernel adds
    nothing (and writes nowhere: Numba checks no index)."""
    lib = library.library("float64")
    z, labels, values = np.ones((3, 2)), np.zeros(3, np.int64), np.zeros((3, 2))
    guard = np.full(4, 7.0)
    for name, y in (("stats_cross_entropy", labels), ("stats_mse", values),
                    ("stats_binary_cross_entropy", values)):
        for size in (0, 1, 2):
            stats = guard[:size]
            lib.kernel(name)(z, y, stats)
            assert (guard == 7.0).all(), name
        stats = np.zeros(3)
        lib.kernel(name)(z, y, stats)
        assert stats.any(), name                        # with room, the sums are added


@pytest.mark.parametrize("src", [-1, 4, 1 << 62])
def test_gathers_refuse_a_row_outside_the_data(src):
    """The epoch's order comes from graphnn's shuffle, but the gather kernels are shared
    library code and Numba checks no index: a row number outside the data is an error."""
    from graphnn.compile import library
    lib = library.library("float64")
    order = np.array([0, src, 1], np.int64)
    X, Y, W = np.ones((4, 3)), np.arange(4), np.ones(4)
    x, y, w = np.zeros((3, 3)), np.zeros(3, np.int64), np.zeros(3)
    for name, args in (("gather_rows", (X, order, 0, x)), ("gather_labels", (Y, order, 0, y)),
                       ("gather_weights", (W, order, 0, w))):
        with pytest.raises(IndexError, match="outside the data"):
            lib.kernel(name)(*args)
    lib.kernel("gather_rows")(X, np.array([3, 0, 2]), 0, x)       # rows inside: gathered
    assert (x == 1).all()


def test_gathers_refuse_a_batch_that_does_not_fit():
    """A batch reaching past the order given, or rows of another width than the data's."""
    from graphnn.compile import library
    lib = library.library("float64")
    X, Y, W, order = np.ones((4, 3)), np.arange(4), np.ones(4), np.arange(4)
    for start, rows, width in ((3, 2, 3), (-1, 2, 3), (0, 2, 5), (0, 5, 3)):
        with pytest.raises(IndexError, match="does not fit"):
            lib.kernel("gather_rows")(X, order, start, np.zeros((rows, width)))
        if width == 3:
            with pytest.raises(IndexError, match="does not fit"):
                lib.kernel("gather_labels")(Y, order, start, np.zeros(rows, np.int64))
            with pytest.raises(IndexError, match="does not fit"):
                lib.kernel("gather_weights")(W, order, start, np.zeros(rows))


def test_no_compiled_glue_returns_a_view():
    """Views borrow their buffer (no reference of their own), so none may outlive the
    compiled call that made it: every compiled function of the glue and the library returns
    a number or nothing, never an array."""
    import numba
    import graphnn as gn
    x = gn.Input(4)
    h = gn.Dropout(0.2)(gn.Dense(5, activation="tanh")(x))
    net = gn.Model(x, gn.Dense(3)(gn.Concatenate()([h, gn.Dense(2)(x)]))).compile(
        loss="cross_entropy", optimizer=gn.Adam(0.01), dtype="float64")
    X, y = np.random.default_rng(0).normal(size=(12, 4)), np.arange(12) % 3
    net.fit(X, y, epochs=1, batch_size=4)
    _, grads = net.loss_and_grads(X, y)
    net.apply_gradients(grads)
    compiled = [(name, d) for ns in (net.backend.glue, net.backend.library.namespace,
                                     net.backend.updater.namespace)
                for name, d in ns.items() if getattr(d, "overloads", None)]
    assert {"train_step", "loss_and_grads", "apply_update", "train_epoch_labels"} <= {
        n for n, _ in compiled}
    def holds_array(t):
        return isinstance(t, numba.types.Array) or any(
            holds_array(e) for e in getattr(t, "types", ()) if isinstance(e, numba.types.Type))
    for name, d in compiled:
        for cres in d.overloads.values():
            assert not holds_array(cres.signature.return_type), name
    b = net.backend                   # forward() leaves its output in the arena, returns None
    assert b.glue["forward"](b.kernels, net.params, net.arena, X[:2], b.layout) is None


@njit
def _matrix(flat, layout, k):
    return matrix(flat, layout, k).copy()


@njit
def _vec(flat, layout, k):
    return vec(flat, layout, k).copy()


@njit
def _block(arena, layout, k, rows):
    return block(arena, layout, k, rows).copy()


def test_layout_views_match_numpy():
    """matrix/vec/block read their place and shape from layout: the same arrays as slicing."""
    flat = np.arange(40.0)
    layout = np.array([4, 3, 2, 5, 1, 3], np.int64)   # 4 arena columns; (2, 5) at 3; block 1..3
    for m, v, b in ((_matrix, _vec, _block), (python_matrix, python_vec, python_block)):
        np.testing.assert_array_equal(m(flat, layout, 1), flat[3:13].reshape(2, 5))
        np.testing.assert_array_equal(v(flat, layout, 1), flat[3:5])
        cap = 40 // 4                    # room for 10 rows; block at column 1, 3 wide, 2 rows
        np.testing.assert_array_equal(b(flat, layout, 4, 2), flat[cap:cap + 6].reshape(2, 3))


BIG = 2 ** 32


@pytest.mark.parametrize("layout,k,rows", [
    ([4, 30, 2, 6, 0, 0], 1, 0),          # matrix past the end of the buffer
    ([4, 3, 2, 5], 2, 0),                 # slots k..k+2 past the end of layout
    ([4, 3, 2, 5], -1, 0),                # negative slot
    ([4, 3, 2, 5], 2 ** 63 - 1, 0),       # a slot where k + 2 would wrap
    ([4, 0, BIG, BIG], 1, 0),             # rows * cols wraps to 0: must not pass as small
    ([4, 0, -BIG, -BIG], 1, 0),           # negative sizes whose product is positive
    ([0, 1, 3], 1, 2),                    # no arena columns: no rows
    ([4, 1, 3], 1, 11),                   # more rows than the block has room for (cap 10)
    ([4, 3, 2], 1, 10),                   # a block starting inside the arena, too wide for it
    ([4, 2 ** 62, 3], 1, 1),              # a column whose start column * cap would wrap
    ([4, -1, 3], 1, 1),                   # a negative column
])
def test_layout_views_never_leave_their_buffers(layout, k, rows):
    flat, layout = np.arange(40.0), np.array(layout, np.int64)
    messages = set()
    for fn in (_matrix, python_matrix) if rows == 0 else (_block, python_block):
        with pytest.raises(IndexError) as caught:
            fn(flat, layout, k) if rows == 0 else fn(flat, layout, k, rows)
        messages.add(str(caught.value))
    assert len(messages) == 1, messages        # compiled and Python: the same error


def test_code_addresses_check_the_return_type():
    """A Code call trusts its declared signature: an address is only handed out for code
    compiled with that return type (a result of another type would be written into a slot
    of the wrong size)."""
    from numba import types
    lib = library.library("float64")
    sig = library.signature("colsum", "float64")
    assert library.code_address(lib.kernel("colsum"), sig) == lib.address("colsum")
    with pytest.raises(TypeError, match="returns none"):
        library.code_address(lib.kernel("colsum"), types.float64(*sig.args))


def test_update_does_not_wait_for_another_threads_compile():
    """apply_gradients calls the optimizer's update without the compile lock once it is
    compiled: a step from one thread does not wait for a model compiling in another."""
    import threading
    import graphnn as gn
    net = gn.Sequential([gn.Dense(4, activation="tanh"), gn.Dense(2)], input_dim=3).compile(
        loss="cross_entropy", optimizer=gn.Adam(0.01), dtype="float64")
    X, y = np.random.default_rng(0).normal(size=(8, 3)), np.arange(8) % 2
    _, grads = net.loss_and_grads(X, y)
    net.apply_gradients(grads)                   # compiled (or loaded) here
    held, release, done = threading.Event(), threading.Event(), threading.Event()

    def compiling():                             # as a compile in another thread holds it
        with library._compile_lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=compiling)
    holder.start()
    try:
        assert held.wait(10)
        step = threading.Thread(target=lambda: (net.apply_gradients(grads), done.set()))
        step.start()
        assert done.wait(10)
    finally:
        release.set()
        holder.join()
        step.join()
