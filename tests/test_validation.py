"""Bad input gets a ValueError that says what is wrong, before any kernel runs,
and a failed call leaves the parameters exactly as they were."""
import numpy as np
import pytest

rng = np.random.default_rng(0)
X = rng.normal(size=(20, 4))
y = rng.integers(0, 3, size=20)
Xr = rng.normal(size=(20, 3))
yr = rng.normal(size=(20, 2))


def _with_nan(a, value=np.nan):
    a = np.array(a, dtype=float)
    a.flat[5] = value
    return a


CLASSIFIER_CASES = [
    ("wrong number of features", lambda: (X[:, :3], y), "3 features per row.*expects 4"),
    ("X 1-D", lambda: (X[0], y[:1]), "must be 2-D"),
    ("X 3-D", lambda: (X.reshape(20, 2, 2), y), "must be 2-D"),
    ("lengths differ", lambda: (X, y[:-1]), "20 rows but y has 19"),
    ("NaN in X", lambda: (_with_nan(X), y), "NaN or Inf"),
    ("Inf in X", lambda: (_with_nan(X, np.inf), y), "NaN or Inf"),
    ("overflow to float32 inf", lambda: (_with_nan(X, 1e39), y), "NaN or Inf"),
    ("label too large", lambda: (X, np.where(np.arange(20) == 3, 3, y)), "label 3 is out of range.*0..2"),
    ("negative label", lambda: (X, np.where(np.arange(20) == 3, -1, y)), "label -1 is out of range"),
    ("non-integer label", lambda: (X, y + 0.5), "non-integer"),
    ("NaN label", lambda: (X, _with_nan(y)), "NaN or Inf"),
    ("labels 2-D", lambda: (X, np.zeros((20, 3))), "integer class labels of shape"),
    ("empty", lambda: (X[:0], y[:0]), "empty"),
    ("strings", lambda: (np.full((20, 4), "a"), y), "real numbers"),
]


@pytest.mark.parametrize("case, make, match", CLASSIFIER_CASES, ids=[c[0] for c in CLASSIFIER_CASES])
def test_bad_classifier_input(small_classifier, case, make, match):
    net = small_classifier
    before = net.get_params()
    Xb, yb = make()
    for call in (lambda: net.fit(Xb, yb, epochs=1), lambda: net.evaluate(Xb, yb),
                 lambda: net.loss_and_grads(Xb, yb)):
        with pytest.raises(ValueError, match=match):
            call()
    after = net.get_params()
    assert all(np.array_equal(before[k], after[k]) for k in before)


REGRESSOR_CASES = [
    ("target width", lambda: (Xr, yr[:, :1]), r"shape \(20, 2\)"),
    ("NaN target", lambda: (Xr, _with_nan(yr)), "NaN or Inf"),
    ("lengths", lambda: (Xr[:5], yr), "5 rows but y has 20"),
]


@pytest.mark.parametrize("case, make, match", REGRESSOR_CASES, ids=[c[0] for c in REGRESSOR_CASES])
def test_bad_regressor_input(small_regressor, case, make, match):
    before = small_regressor.get_params()
    Xb, yb = make()
    with pytest.raises(ValueError, match=match):
        small_regressor.fit(Xb, yb)
    after = small_regressor.get_params()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_predict_validates(small_classifier):
    with pytest.raises(ValueError, match="expects 4"):
        small_classifier.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="single row"):
        small_classifier.predict(np.zeros(4))


def test_fit_arguments(small_classifier):
    for kwargs, match in [(dict(epochs=0), "epochs"), (dict(batch_size=0), "batch_size"),
                          (dict(batch_size=2.5), "batch_size"), (dict(verbose=5), "verbose")]:
        with pytest.raises(ValueError, match=match):
            small_classifier.fit(X, y, **kwargs)


def test_any_dtype_and_layout_is_accepted(small_classifier):
    net = small_classifier
    ref = net.predict(X)
    for variant in (np.asfortranarray(X), X.astype(np.float32), X.tolist(),
                    np.repeat(X, 2, axis=0)[::2]):
        np.testing.assert_allclose(net.predict(variant), ref, rtol=1e-6)
    readonly = X.copy()
    readonly.flags.writeable = False
    np.testing.assert_allclose(net.predict(readonly), ref, rtol=1e-6)
    assert net.predict(X.astype(np.int64)).dtype == np.float32
    net.evaluate(X, y.astype(np.int32))           # any integer dtype for labels
    net.evaluate(X, y.astype(np.float64))         # integral floats are labels too


def test_set_params_validation(small_classifier):
    net = small_classifier
    p = net.get_params()
    bad_shape = dict(p, **{"dense.weight": np.zeros((3, 3))})
    with pytest.raises(ValueError, match=r"dense.weight has shape \(3, 3\), expected \(4, 6\)"):
        net.set_params(bad_shape)
    missing = dict(p)
    del missing["dense_1.bias"]
    with pytest.raises(ValueError, match="missing.*dense_1.bias"):
        net.set_params(missing)
    with pytest.raises(ValueError, match="unknown.*extra"):
        net.set_params(dict(p, extra=np.zeros(2)))
    nan = dict(p, **{"dense.bias": np.full(6, np.nan)})
    with pytest.raises(ValueError, match="finite"):
        net.set_params(nan)
    after = net.get_params()
    assert all(np.array_equal(p[k], after[k]) for k in p)   # failed calls changed nothing
    p2 = {k: v + 1.0 for k, v in p.items()}
    net.set_params(p2)
    assert all(np.allclose(net.get_params()[k], p2[k]) for k in p)
    net.set_params(p)


def test_binary_cross_entropy_targets_range():
    import graphnn as gn
    net = gn.Sequential([gn.Dense(1)], input_dim=2).compile(loss="binary_cross_entropy")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        net.evaluate(np.zeros((3, 2)), np.array([0.0, 2.0, 1.0]))


@pytest.mark.parametrize("dtype", ["float13", "float16", "int32", np.complex64, "bogus", None])
def test_only_float32_and_float64_compile(dtype):
    """Issue 9: any dtype but float32/float64 is a ValueError in compile (float13 was let
    through: NumPy compares np.dtype(float64) == None as True)."""
    import graphnn as gn
    from graphnn.validate import as_dtype
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        as_dtype(dtype)
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        gn.Sequential([gn.Dense(2)], input_dim=2).compile(loss="mse", dtype=dtype)
    assert as_dtype("float32") == np.float32 and as_dtype(np.float64) == np.float64


@pytest.mark.parametrize("weight, match", [
    (1e-50, "underflows to zero in float32"),
    (1e-40, "subnormal in float32"),
    (1e39, "overflow float32"),
    (1e38, "overflow float32"),                  # each fits; their sum (20 rows) does not
    (np.inf, "finite"),
    (np.nan, "finite"),
])
def test_sample_weights_checked_in_the_model_dtype(small_classifier, weight, match):
    """Issue 9: weights are checked in the model's dtype, not float64 then cast."""
    net = small_classifier
    before = net.get_params()
    with pytest.raises(ValueError, match=match) as e:
        net.fit(X, y, epochs=1, sample_weight=np.full(len(X), weight))
    assert "weight" in str(e.value)
    after = net.get_params()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # in range, mixed sizes: fine (only the ratios matter)
    net.fit(X, y, epochs=1, sample_weight=np.r_[np.full(10, 1e-30), np.full(10, 1e30)])
    net.set_params(before)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_read_only_data_is_accepted(loss):
    """Read-only inputs and targets (memory-mapped data sets, arrays of other libraries)
    train, evaluate and give gradients like writable ones: graphnn copies them."""
    import graphnn as gn
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4))
    y = np.arange(20) % 3 if loss == "cross_entropy" else rng.normal(size=(20, 3))
    nets = [gn.Sequential([gn.Dense(5, activation="tanh"), gn.Dense(3)], input_dim=4).compile(
        loss=loss, dtype="float64", seed=0) for _ in range(2)]
    ro_X, ro_y = X.copy(), y.copy()
    ro_X.setflags(write=False)
    ro_y.setflags(write=False)
    for net, (a, b) in zip(nets, [(X, y), (ro_X, ro_y)]):
        net.fit(a, b, epochs=2, batch_size=8, sample_weight=np.linspace(1, 2, 20), verbose=0)
    assert nets[0].evaluate(X, y) == nets[1].evaluate(ro_X, ro_y)
    np.testing.assert_array_equal(nets[0].loss_and_grads(X, y)[1]["dense.weight"],
                                  nets[1].loss_and_grads(ro_X, ro_y)[1]["dense.weight"])
