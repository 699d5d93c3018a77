"""Initializers: each draw's variance (and mean, and range) against its formula."""
import math

import numpy as np
import pytest

import graphnn as gn
from graphnn.init import initialize

FAN_IN, FAN_OUT = 300, 200
SHAPE = (FAN_IN, FAN_OUT)            # 60,000 draws: the sample variance is within ~1.2% (2 sd)

EXPECTED_VAR = {
    "glorot_uniform": 2.0 / (FAN_IN + FAN_OUT),     # U(-a, a), a^2 / 3 = 6 / (in + out) / 3
    "glorot_normal": 2.0 / (FAN_IN + FAN_OUT),
    "he_uniform": 2.0 / FAN_IN,
    "he_normal": 2.0 / FAN_IN,
    "lecun_normal": 1.0 / FAN_IN,
}


@pytest.mark.parametrize("name", list(EXPECTED_VAR))
def test_variance_matches_formula(name):
    w = initialize(name, SHAPE, np.random.default_rng(0), "w")
    assert w.shape == SHAPE
    assert abs(w.mean()) < 4 * math.sqrt(EXPECTED_VAR[name] / w.size)
    assert w.var() == pytest.approx(EXPECTED_VAR[name], rel=0.03)
    if name.endswith("uniform"):
        limit = math.sqrt(3 * EXPECTED_VAR[name])
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit


def test_constants_and_callables_and_model_wiring():
    d = gn.Dense(3, kernel_init=0.5, bias_init="ones")
    net = gn.Model(x := gn.Input(2), d(x)).compile(loss="mse")
    p = net.get_params()
    assert np.all(p["dense.weight"] == 0.5) and np.all(p["dense.bias"] == 1.0)
    custom = gn.Dense(2, kernel_init=lambda shape, rng: np.arange(np.prod(shape)).reshape(shape))
    net = gn.Model(x2 := gn.Input(3), custom(x2)).compile(loss="mse")
    assert np.array_equal(net.get_params()["dense.weight"], np.arange(6).reshape(3, 2))
    assert np.all(net.get_params()["dense.bias"] == 0)              # zeros by default


def test_bad_initializers():
    with pytest.raises(ValueError, match="not an initializer"):
        gn.Dense(2, kernel_init="uniformish")
    bad = gn.Dense(2, kernel_init=lambda shape, rng: np.zeros((1, 1)))
    with pytest.raises(ValueError, match=r"returned shape \(1, 1\), expected \(3, 2\)"):
        gn.Model(x := gn.Input(3), bad(x)).compile(loss="mse")
