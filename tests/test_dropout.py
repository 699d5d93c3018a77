"""Dropout: identity outside training, masks at the right rate, exact gradient for its mask,
reproducible from the seed."""
import numpy as np
import pytest

import graphnn as gn


def _net(rate=0.4, seed=0, dtype="float64"):
    x = gn.Input(6)
    h = gn.Dense(50, activation="tanh")(x)
    d = gn.Dropout(rate)(h)
    return gn.Model(x, gn.Dense(3)(d)).compile(loss="mse", optimizer=gn.SGD(0.05), seed=seed,
                                                dtype=dtype)


def _arena_block(net, name, n):
    col, width = net.plan.arena[name]
    cap = net.arena.size // net.plan.arena_width
    return net.arena[cap * col: cap * col + n * width].reshape(n, width)


def test_identity_in_predict_and_evaluate():
    net = _net()
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 6)), rng.normal(size=(20, 3))
    p = net.get_params()
    ref = np.tanh(X @ p["dense.weight"] + p["dense.bias"]) @ p["dense_1.weight"] + p["dense_1.bias"]
    np.testing.assert_allclose(net.predict(X), ref, rtol=1e-12)
    np.testing.assert_allclose(net.evaluate(X, y)["loss"], np.mean((ref - y) ** 2), rtol=1e-12)


def test_mask_rate_and_gradient_for_the_drawn_mask():
    net = _net(rate=0.4)
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 3))
    loss, grads = net.loss_and_grads(X, y)
    mask = _arena_block(net, "mask_dropout", 40).copy()
    assert set(np.unique(mask)) <= {0.0, 1 / 0.6}
    assert abs(np.mean(mask == 0) - 0.4) < 0.05          # 2,000 draws: 0.4 +- 0.011 (1 sd)
    p = net.get_params()

    def f(params):
        h = np.tanh(X @ params["dense.weight"] + params["dense.bias"]) * mask
        out = h @ params["dense_1.weight"] + params["dense_1.bias"]
        return np.mean((out - y) ** 2)

    assert loss == pytest.approx(f(p), rel=1e-12)
    for name in p:
        num = np.zeros_like(p[name])
        for idx in np.ndindex(p[name].shape):
            up = {k: v.copy() for k, v in p.items()}
            dn = {k: v.copy() for k, v in p.items()}
            up[name][idx] += 1e-6
            dn[name][idx] -= 1e-6
            num[idx] = (f(up) - f(dn)) / 2e-6
        np.testing.assert_allclose(grads[name], num, rtol=1e-5, atol=1e-8)


def test_reproducible_and_seed_dependent():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(30, 6)), rng.normal(size=(30, 3))
    a, b, c = _net(seed=5), _net(seed=5), _net(seed=6)
    c.set_params(a.get_params())                 # same start, different dropout stream
    for net in (a, b, c):
        net.fit(X, y, epochs=3, batch_size=8)
    pa, pb, pc = a.get_params(), b.get_params(), c.get_params()
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert not all(np.array_equal(pa[k], pc[k]) for k in pa)


def test_bad_rate():
    for rate in (-0.1, 1.0, "half"):
        with pytest.raises(ValueError, match="rate"):
            gn.Dropout(rate)
