"""Training end to end: known solutions are found, results are reproducible."""
import numpy as np
import pytest

import graphnn as gn


def test_line_is_recovered():
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(200, 1))
    y = 1.7 * X - 0.4
    net = gn.Sequential([gn.Dense(1)], input_dim=1).compile(
        loss="mse", optimizer=gn.SGD(lr=0.05), seed=3, dtype="float64")
    hist = net.fit(X, y, epochs=60, batch_size=16)
    p = net.get_params()
    assert abs(p["dense.weight"][0, 0] - 1.7) < 1e-3
    assert abs(p["dense.bias"][0] + 0.4) < 1e-3
    assert hist.history["loss"][-1] < hist.history["loss"][0] * 1e-3
    assert len(hist.history["loss"]) == 60 and hist.epoch == list(range(60))


def test_xor_with_2_4_1_tanh():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([[0], [1], [1], [0]], dtype=float)
    net = gn.Sequential([gn.Dense(4, activation="tanh"), gn.Dense(1)], input_dim=2).compile(
        loss="mse", optimizer=gn.SGD(lr=0.2), seed=0)
    net.fit(X, y, epochs=2000, batch_size=4)
    pred = net.predict(X)
    assert np.all((pred > 0.5) == (y > 0.5)), pred
    assert np.abs(pred - y).max() < 0.2


def test_digits_mlp_reaches_95_percent(digits):
    Xtr, Xte, ytr, yte = digits
    model = gn.Sequential([gn.Dense(128, activation="relu"), gn.Dense(10)], input_dim=64)
    net = model.compile(loss="cross_entropy", optimizer=gn.SGD(lr=0.1), seed=0)
    hist = net.fit(Xtr, ytr, epochs=20, batch_size=32)
    result = net.evaluate(Xte, yte)
    assert result["accuracy"] >= 0.95, result
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    # accuracy from evaluate agrees with argmax of predict
    assert result["accuracy"] == pytest.approx(np.mean(net.predict(Xte).argmax(1) == yte))


def _trained(seed, X, y, epochs=3):
    x = gn.Input(X.shape[1])
    h = gn.Dense(8, activation="relu")(x)
    h = gn.Concatenate()([h, gn.Dense(4, activation="tanh")(x)])
    net = gn.Model(x, gn.Dense(3)(h)).compile(loss="cross_entropy", optimizer=gn.SGD(0.1), seed=seed)
    net.fit(X, y, epochs=epochs, batch_size=7)
    return net


def test_same_seed_is_bit_identical_and_other_seed_differs():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 5)), rng.integers(0, 3, 50)
    a, b, c = _trained(11, X, y), _trained(11, X, y), _trained(12, X, y)
    pa, pb, pc = a.get_params(), b.get_params(), c.get_params()
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert not all(np.array_equal(pa[k], pc[k]) for k in pa)


def test_epoch_loss_weights_the_last_smaller_batch():
    """With lr tiny enough that parameters barely move, the epoch loss must equal the
    loss over all rows, which it only does if the 1-row last batch is weighted by 1/N."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(21, 3)), rng.normal(size=(21, 2)) * 10
    y[-1] = 1000.0     # make the rows unequal so a wrong weighting shows
    net = gn.Sequential([gn.Dense(2)], input_dim=3).compile(
        loss="mse", optimizer=gn.SGD(lr=1e-12), seed=0, dtype="float64")
    expected = net.evaluate(X, y)["loss"]
    hist = net.fit(X, y, epochs=1, batch_size=10, shuffle=False)   # batches of 10, 10, 1
    assert hist.history["loss"][0] == pytest.approx(expected, rel=1e-6)


def test_one_step_matches_manual_sgd():
    """fit with one full batch = params - lr * loss_and_grads gradients."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(9, 3)), rng.integers(0, 4, 9)
    net = gn.Sequential([gn.Dense(5, activation="sigmoid"), gn.Dense(4)], input_dim=3).compile(
        loss="cross_entropy", optimizer=gn.SGD(lr=0.3), seed=2, dtype="float64")
    before = net.get_params()
    _, grads = net.loss_and_grads(X, y)
    net.fit(X, y, epochs=1, batch_size=9)
    after = net.get_params()
    for k in before:
        np.testing.assert_allclose(after[k], before[k] - 0.3 * grads[k], rtol=1e-12, atol=1e-14)


def test_divergence_restores_last_good_parameters():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(32, 2)) * 1e3, rng.normal(size=(32, 1)) * 1e3
    net = gn.Sequential([gn.Dense(8, activation="relu"), gn.Dense(1)], input_dim=2).compile(
        loss="mse", optimizer=gn.SGD(lr=10.0), seed=0)
    before = net.get_params()
    with pytest.raises(gn.DivergenceError, match="epoch 1"):
        net.fit(X, y, epochs=5, batch_size=8)
    after = net.get_params()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_examples_run():
    import runpy, pathlib
    root = pathlib.Path(__file__).resolve().parent.parent
    ns = runpy.run_path(str(root / "examples" / "linear_regression.py"))
    m, c = ns["main"]()
    assert abs(m - 3.0) < 1e-3 and abs(c + 2.0) < 1e-3
