"""Optimizers: 10 steps from the same start and gradients agree with PyTorch's torch.optim
(when installed) and always with a NumPy transcription of the published update rules."""
import numpy as np
import pytest

import graphnn as gn

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.5, weight_decay=0.05)),
]


def numpy_reference(name, kw, p, grads):
    """The update equations as published (PyTorch docs), transcribed independently."""
    p = p.copy()
    lr, wd = kw["lr"], kw.get("weight_decay", 0.0)
    m = np.zeros_like(p); v = np.zeros_like(p); b = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if name == "SGD":
            g = g + wd * p
            mu = kw.get("momentum", 0.0)
            if mu:
                b = g.copy() if t == 1 else mu * b + g
                g = g + mu * b if kw.get("nesterov") else b
            p = p - lr * g
        elif name in ("Adam", "AdamW"):
            b1, b2 = kw.get("betas", (0.9, 0.999))
            eps = kw.get("eps", 1e-8)
            wd = kw.get("weight_decay", 0.01 if name == "AdamW" else 0.0)
            if name == "AdamW":
                p = p * (1 - lr * wd)
            else:
                g = g + wd * p
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        elif name == "RMSprop":
            alpha, eps, mu = kw.get("alpha", 0.99), kw.get("eps", 1e-8), kw.get("momentum", 0.0)
            g = g + wd * p
            v = alpha * v + (1 - alpha) * g * g
            avg = np.sqrt(v) + eps
            if mu:
                b = mu * b + g / avg
                p = p - lr * b
            else:
                p = p - lr * g / avg
    return p


def _setup(name, kw, seed=0):
    net = gn.Sequential([gn.Dense(3)], input_dim=4).compile(
        loss="mse", optimizer=getattr(gn, name)(**kw), seed=seed, dtype="float64")
    rng = np.random.default_rng(seed)
    p0 = net.get_params()
    grads = [{k: rng.normal(size=v.shape) for k, v in p0.items()} for _ in range(10)]
    for g in grads:
        net.apply_gradients(g)
    return net, p0, grads


@pytest.mark.parametrize("name, kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_numpy_transcription(name, kw):
    net, p0, grads = _setup(name, kw)
    after = net.get_params()
    for k in p0:
        expected = numpy_reference(name, kw, p0[k], [g[k] for g in grads])
        np.testing.assert_allclose(after[k], expected, rtol=1e-6, atol=1e-12)
        assert not np.allclose(after[k], p0[k])          # the optimizer did move


@pytest.mark.parametrize("name, kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_torch(name, kw):
    torch = pytest.importorskip("torch")
    net, p0, grads = _setup(name, kw)
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in p0.items()}
    opt = getattr(torch.optim, name)(list(tensors.values()), **kw)
    for g in grads:
        opt.zero_grad()
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k], dtype=torch.float64)
        opt.step()
    after = net.get_params()
    for k, t in tensors.items():
        np.testing.assert_allclose(after[k], t.detach().numpy(), rtol=1e-6, atol=1e-12)


def test_float32_update_stays_float32_and_trains(digits):
    Xtr, Xte, ytr, yte = digits
    model = gn.Sequential([gn.Dense(128, activation="relu"), gn.Dense(10)], input_dim=64)
    net = model.compile(loss="cross_entropy", optimizer=gn.Adam(lr=1e-3), seed=0)
    net.fit(Xtr, ytr, epochs=20, batch_size=32)
    assert net.params.dtype == np.float32 and net.state.dtype == np.float32
    assert net.evaluate(Xte, yte)["accuracy"] >= 0.96


@pytest.mark.parametrize("make, match", [
    (lambda: gn.SGD(lr=0), "lr"), (lambda: gn.SGD(lr=0.1, momentum=1.0), "momentum"),
    (lambda: gn.SGD(lr=0.1, nesterov=True), "nesterov"), (lambda: gn.Adam(betas=(0.9,)), "betas"),
    (lambda: gn.Adam(eps=-1), "eps"), (lambda: gn.RMSprop(alpha=2), "alpha"),
    (lambda: gn.AdamW(weight_decay=float("nan")), "weight_decay"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_apply_gradients_validates(small_regressor):
    before = small_regressor.get_params()
    with pytest.raises(ValueError, match="missing"):
        small_regressor.apply_gradients({"dense.weight": np.zeros((3, 5))})
    bad = {k: np.full(v.shape, np.nan) for k, v in before.items()}
    with pytest.raises(ValueError, match="finite"):
        small_regressor.apply_gradients(bad)
    after = small_regressor.get_params()
    assert all(np.array_equal(before[k], after[k]) for k in before)
