"""Compile once per architecture: models that differ only in widths, input width, batch
size or hyperparameters generate the same kernel source and reuse the kernels compiled
for the first one (counted with Numba's compile events), and still compute the right
numbers (checked against the NumPy oracle in tests/reference.py)."""
import os

import numpy as np
import pytest
from numba.core import event

import graphnn as gn
from graphnn.compile import cache

import reference as ref

F64 = dict(loss="cross_entropy", dtype="float64", seed=0)


def _build(d, w1, w2, rate=0.25, name="model", dropout=True):
    """One structure: two branches (tanh, relu), a dropout, a concatenation, 3 logits.
    ``dropout=False``: the same without the Dropout node (for the oracle, which has no
    dropout: outside training it is the identity; the parameter names are the same)."""
    x = gn.Input(d)
    a = gn.Dense(w1, activation="tanh")(x)
    b = gn.Dense(w2, activation="relu")(x)
    b = gn.Dropout(rate)(b) if dropout else b
    return gn.Model(x, gn.Dense(3)(gn.Concatenate()([a, b])), name=name)


def _data(d, rows=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, d)), np.arange(rows) % 3


@pytest.fixture(scope="module")
def first():
    """The architecture compiled (and every kernel used) once, before anything is counted."""
    net = _build(5, 7, 6).compile(optimizer=gn.SGD(0.1, momentum=0.9), **F64)
    X, y = _data(5)
    net.fit(X, y, epochs=1, batch_size=8)
    net.evaluate(X, y)
    net.predict(X)
    net.loss_and_grads(X, y)
    net.apply_gradients(net.loss_and_grads(X, y)[1])
    return net


def _compiles(fn):
    """The number of Numba compiles while fn() runs."""
    with event.install_recorder("numba:compile") as rec:
        fn()
    return len(rec.buffer)


def test_width_batch_and_hyperparameter_variants_compile_nothing(first):
    variants = [(5, 7, 6, 0.25, 0.1, 0.9, 8), (3, 12, 2, 0.5, 0.02, 0.5, 5),
                (9, 1, 17, 0.1, 0.3, 0.99, 24), (1, 4, 4, 0.0, 0.05, 0.1, 1)]
    for d, w1, w2, rate, lr, momentum, batch in variants:
        X, y = _data(d, seed=d)

        def run():
            net = _build(d, w1, w2, rate).compile(optimizer=gn.SGD(lr, momentum=momentum), **F64)
            net.fit(X, y, epochs=2, batch_size=batch)
            net.evaluate(X, y)
            net.loss_and_grads(X, y)
            run.net = net
        assert _compiles(run) == 0, (d, w1, w2, batch)
        net = run.net
        assert net.source() == first.source()
        assert cache.key(net.source()) == cache.key(first.source())
        p, twin = net.get_params(), _build(d, w1, w2, dropout=False)
        np.testing.assert_allclose(net.predict(X), ref.forward(twin, p, X), rtol=1e-10,
                                   atol=1e-12)
        assert net.evaluate(X, y)["loss"] == pytest.approx(
            ref.model_loss(twin, p, X, y, "cross_entropy"), rel=1e-10)


def test_variant_gradients_match_finite_differences(first):
    """A reused module reads its shapes from the layout: the gradient of a variant with
    other widths (dropout off, so it is deterministic) matches finite differences."""
    X, y = _data(4, rows=10, seed=3)
    net = _build(4, 3, 5, rate=0.0).compile(optimizer=gn.SGD(0.1, momentum=0.9), **F64)
    loss, grads = net.loss_and_grads(X, y)
    p, twin = net.get_params(), _build(4, 3, 5, dropout=False)
    assert loss == pytest.approx(ref.model_loss(twin, p, X, y, "cross_entropy"), rel=1e-10)
    num = ref.numerical_grads(twin, p, X, y, "cross_entropy")
    for k in grads:
        np.testing.assert_allclose(grads[k], num[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_optimizer_hyperparameters_are_read_at_run_time():
    """Adam with other betas / eps / weight decay shares the compiled update; one step from
    known gradients matches the formula in float64."""
    def model():
        x = gn.Input(3)
        return gn.Model(x, gn.Dense(2)(x))
    g = {"dense.weight": np.full((3, 2), 0.5), "dense.bias": np.array([-1.0, 2.0])}
    nets, counts = [], []
    for lr, b1, b2, eps, wd in [(0.1, 0.9, 0.999, 1e-8, 0.0), (0.01, 0.5, 0.9, 1e-3, 0.1),
                                (0.2, 0.8, 0.99, 0.5, 0.01)]:
        def run():
            net = model().compile(loss="mse", dtype="float64",
                                  optimizer=gn.Adam(lr, betas=(b1, b2), eps=eps, weight_decay=wd))
            p0 = net.get_params()
            net.apply_gradients(g)
            run.result = net, p0
        counts.append(_compiles(run))
        net, p0 = run.result
        for k in g:
            gk = g[k] + wd * p0[k]
            m, v = (1 - b1) * gk, (1 - b2) * gk * gk
            want = p0[k] - (lr / (1 - b1)) * m / (np.sqrt(v) / np.sqrt(1 - b2) + eps)
            np.testing.assert_allclose(net.get_params()[k], want, rtol=1e-12, err_msg=k)
        nets.append(net)
    assert counts[1:] == [0, 0]
    assert len({n.source() for n in nets}) == 1


def test_cosine_schedules_share_one_module():
    """CosineDecay and WarmupCosine of any length run one compiled function; the lr each
    step used is the schedule's own value()."""
    sources = set()
    for sched in [gn.schedules.CosineDecay(0.1, 7), gn.schedules.WarmupCosine(0.3, 2, 5, 0.01)]:
        x = gn.Input(2)
        net = gn.Model(x, gn.Dense(1, use_bias=False, kernel_init="zeros")(x)).compile(
            loss="mse", dtype="float64", optimizer=gn.SGD(sched))
        # loss (w x - 1)^2 with x = 1 on one row: dL/dw = 2 (w - 1); track w by hand
        X, y = np.ones((1, 2)), np.ones((1, 1))
        w = np.zeros(2)
        for step in range(1, 8):
            w = w - sched.value(0, step) * 2 * (w.sum() - 1)
        net.fit(X, y, epochs=7, batch_size=1, shuffle=False)
        np.testing.assert_allclose(net.get_params()["dense.weight"][:, 0], w, rtol=1e-12)
        sources.add(net.source())
    assert len(sources) == 1


def test_dropout_masks_follow_row0(first):
    """loss_and_grads(..., row0=k) on rows k.. draws the masks the whole batch draws for
    those rows (a data-parallel process gets the masks one process would)."""
    net = _build(5, 4, 6, rate=0.5).compile(optimizer=gn.SGD(0.1, momentum=0.9), **F64)
    X, y = _data(5, rows=12)
    Y = net.loss.check_targets(y, 12, 3, net.dtype)
    net._ensure_arena(12)
    dev, empty = net.backend, np.zeros(0)
    col, width = net.plan.arena[next(k for k in net.plan.arena if k.startswith("mask_"))]

    def mask(n):
        cap = net.arena.size // net.plan.arena_width
        return net.arena[cap * col: cap * col + n * width].reshape(n, width).copy()
    dev.loss_and_grads(net.params, net.grads, net.arena, X, Y, empty, 12345)
    whole = mask(12)
    dev.loss_and_grads(net.params, net.grads, net.arena, X[5:], Y[5:], empty, 12345, row0=5)
    np.testing.assert_array_equal(mask(7), whole[5:])
    assert (whole == 0).any() and (whole != 0).any()
    dev.loss_and_grads(net.params, net.grads, net.arena, X[5:], Y[5:], empty, 12345)
    assert not np.array_equal(mask(7), whole[5:])       # row0=0: other rows' masks


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm")
def test_many_width_variants_use_little_memory(first):
    """20 more widths of one architecture: no compile, and well under 1 MiB each (a compile
    kept about 26 MiB per model before)."""
    X, y = _data(5)
    nets = []

    def run():
        for k in range(20):
            net = _build(5, 3 + k, 20 - k).compile(optimizer=gn.SGD(0.1, momentum=0.9), **F64)
            net.fit(X, y, epochs=1, batch_size=8)
            nets.append(net)
    _build(5, 2, 2).compile(optimizer=gn.SGD(0.1, momentum=0.9), **F64).fit(X, y)   # warm
    before = _rss()
    assert _compiles(run) == 0
    grown = _rss() - before
    assert grown < 20 * 2 ** 20, f"{grown / 2 ** 20:.1f} MiB for 20 models"


def test_compile_message_only_when_compiling(capsys, monkeypatch, tmp_path):
    """compile(verbose=1) says it is compiling for a structure not compiled yet, and is
    silent for a second model of that structure (other widths).  An empty cache folder:
    a machine that ran this suite before has this structure in its own cache."""
    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(tmp_path))
    def build(w):
        x = gn.Input(3)
        h = gn.Dense(w, activation="softplus")(gn.Dense(w + 1, activation="leaky_relu")(x))
        return gn.Model(x, gn.Dense(2, activation="gelu")(h))
    opt = lambda: gn.RMSprop(0.01, momentum=0.5)           # noqa: E731
    net = build(4).compile(loss="mse", dtype="float64", optimizer=opt(), verbose=1)
    err = capsys.readouterr().err
    assert net.compiled_new and "compiling kernels for this architecture" in err
    assert "first time; cached afterwards" in err and err.rstrip().endswith(" s")
    net2 = build(9).compile(loss="mse", dtype="float64", optimizer=opt(), verbose=1)
    assert not net2.compiled_new and capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="verbose"):
        build(3).compile(verbose=3)


def _compiled_functions(fn) -> list:
    """The dispatchers Numba compiles while fn() runs."""
    with event.install_recorder("numba:compile") as rec:
        fn()
    return [e.data["dispatcher"] for _, e in rec.buffer if e.is_start]


def test_a_new_architecture_compiles_only_its_glue(first, monkeypatch):
    """With the library kernels it calls compiled, a new structure (another depth, another
    branch layout) compiles its glue's train_step and nothing of the library, and trains
    to the oracle's numbers.  The cache is off, so the glue compiles whatever the
    machine's cache holds."""
    monkeypatch.setenv("GRAPHNN_NO_CACHE", "1")
    def build(d):
        x = gn.Input(d)
        h = gn.Dense(6, activation="relu")(gn.Dense(5, activation="tanh")(x))
        h = gn.Dense(4, activation="relu")(h)
        return gn.Model(x, gn.Dense(3)(gn.Concatenate()([h, gn.Dense(2, activation="tanh")(x)])))
    X, y = _data(4)
    run = lambda: run.__dict__.update(net=build(4).compile(**F64))    # noqa: E731
    compiled = _compiled_functions(run)
    net = run.net
    library = list(net.backend.library.namespace.values())
    assert net.backend.glue["train_step"] in compiled
    assert not [k for k in compiled if any(k is v for v in library)]
    p, twin = net.get_params(), build(4)
    fitted = _compiled_functions(lambda: net.fit(X, y, epochs=1, batch_size=8))
    assert fitted == []
    np.testing.assert_allclose(net.predict(X), ref.forward(twin, net.get_params(), X),
                               rtol=1e-10, atol=1e-12)
    assert p.keys() == net.get_params().keys()


def test_library_kernels_refuse_other_types():
    """A library kernel is compiled for one signature and then refuses to compile another
    (a silent second compile would cost seconds, every time)."""
    from graphnn.compile import library
    k = library.library("float64").kernel("colsum")
    with pytest.raises(TypeError):
        k(np.zeros(3, np.float32), np.ones((2, 3), np.float32))
    out = np.zeros(3)
    k(out, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(out, [3.0, 5.0, 7.0])
