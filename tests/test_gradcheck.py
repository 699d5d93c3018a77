"""``gn.check_gradients``: it passes a right backward pass and catches a wrong one.

The oracle is independent of the engine's kernels: the check itself is float64 central
differences, and the broken case swaps in gradients we know are wrong.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphnn as gn


@pytest.fixture(scope="module")
def nets():
    model = gn.Sequential([gn.Dense(4, activation="tanh"), gn.Dense(3)], input_dim=2)
    return {dt: model.compile(loss="cross_entropy", optimizer=gn.SGD(lr=0.1), seed=0, dtype=dt)
            for dt in ("float64", "float32")}


def data():
    rng = np.random.default_rng(1)
    return rng.normal(size=(6, 2)), np.array([0, 1, 2, 0, 1, 2])


def test_right_gradients_pass_in_float64_and_float32(nets):
    X, y = data()
    before = nets["float64"].get_params()
    report = gn.check_gradients(nets["float64"], X, y)
    assert report.ok() and report.worst < 1e-6, str(report)
    assert [p.name for p in report.params] == list(before)
    assert all(p.checked == np.prod(p.shape) for p in report.params)
    for k, v in nets["float64"].get_params().items():        # the net is left unchanged
        np.testing.assert_array_equal(v, before[k])
    r32 = gn.check_gradients(nets["float32"], X, y, entries=3)
    assert r32.dtype == "float32" and r32.ok(), str(r32)
    assert all(p.checked == min(3, np.prod(p.shape)) for p in r32.params)
    assert "worst relative error" in str(r32)


def test_a_wrong_gradient_is_reported_for_its_parameter(nets, monkeypatch):
    net = nets["float64"]
    X, y = data()
    real = type(net).loss_and_grads

    def broken(self, X, y):
        loss, grads = real(self, X, y)
        name = list(grads)[-1]                                # the last bias
        grads[name] = grads[name] * 1.5
        return loss, grads

    monkeypatch.setattr(type(net), "loss_and_grads", broken)
    report = gn.check_gradients(net, X, y)
    assert not report.ok()
    worst = max(report.params, key=lambda p: p.worst)
    assert worst.name == list(net.get_params())[-1]
    assert worst.worst > 0.2                                  # |1.5 g - g| / |1.5 g| = 1/3
    assert all(p.worst < 1e-6 for p in report.params if p is not worst)
    assert "MISMATCH" in str(report)


def test_bad_arguments(nets):
    X, y = data()
    with pytest.raises(ValueError, match="compiled network"):
        gn.check_gradients(gn.Sequential([gn.Dense(2)], input_dim=2), X, y)
    with pytest.raises(ValueError, match="eps must be"):
        gn.check_gradients(nets["float64"], X, y, eps=0)
    model = gn.Sequential([gn.Dense(4), gn.Dropout(0.5), gn.Dense(3)], input_dim=2)
    net = model.compile(loss="cross_entropy", seed=0, dtype="float64")
    with pytest.raises(ValueError, match="Dropout"):
        gn.check_gradients(net, X, y)


def test_import_graphnn_reaches_lazy_modules():
    import subprocess
    import sys
    code = ("import sys, graphnn as gn; assert 'graphnn.datasets' not in sys.modules; "
            "X, y = gn.datasets.make_moons(10); assert X.shape == (10, 2); "
            "assert callable(gn.check_gradients); assert 'datasets' in dir(gn); "
            "import graphnn.runfile; assert gn.runfile.load_run")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
