"""graphnn.sklearn: scikit-learn's own estimator checks, plus pickling, clone, labels,
DataFrames, sample weights, partial_fit/warm_start and a parallel grid search.

Oracles: scikit-learn's ``parametrize_with_checks``; a float64 NumPy forward pass from the
fitted parameters; the estimator before pickling (bit for bit); repeated rows for integer
sample weights (full-batch training, where the two are the same loss); a single longer
``fit`` for ``partial_fit``/``warm_start`` (the same epochs).

Every distinct graph is a kernel compile (seconds; then cached on disk).  scikit-learn's
checks fit 18 graphs (their data has many feature and class counts); the other tests share
few (mostly 64 digits features, 8 hidden units, 10 classes).
"""
from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone                                     # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline                              # noqa: E402
from sklearn.preprocessing import StandardScaler                   # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from graphnn.sklearn import GraphNNClassifier, GraphNNRegressor    # noqa: E402

CHECK_ARGS = dict(hidden_layer_sizes=(8,), optimizer="adam", lr=0.02, epochs=40, batch_size=16,
                  random_state=0)
EXPECTED_FAILURES = {
    # Mini-batch training: a row repeated twice can land in two batches (two smaller
    # steps) where a weight of 2 is one step, so the fitted networks differ.
    "check_sample_weight_equivalence_on_dense_data":
        "mini-batch SGD: weight 2 is not the same steps as a repeated row",
}


@parametrize_with_checks([GraphNNClassifier(**CHECK_ARGS), GraphNNRegressor(**CHECK_ARGS)],
                         expected_failed_checks=lambda est: EXPECTED_FAILURES)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- shared data and models ---------------------------------------------------------------
ARGS = dict(hidden_layer_sizes=(8,), optimizer="adam", lr=0.02, epochs=4, batch_size=32,
            random_state=0)


@pytest.fixture(scope="module")
def data(digits):
    X_train, X_test, y_train, y_test = digits
    return X_train[:600], X_test[:200], y_train[:600], y_test[:200]


@pytest.fixture(scope="module")
def fitted(data):
    X, _, y, _ = data
    return GraphNNClassifier(**ARGS).fit(X, y)


def test_import_graphnn_does_not_import_sklearn():
    code = "import sys, graphnn; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _numpy_forward(params, X, hidden_act):
    """The MLP in float64 NumPy from the fitted parameters (the oracle)."""
    h = X @ params["dense.weight"].astype(np.float64) + params["dense.bias"]
    h = hidden_act(h)
    return h @ params["dense_1.weight"].astype(np.float64) + params["dense_1.bias"]


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_predict_proba_and_predict_match_numpy(dtype, tol, fitted, data):
    X, X_test, y, _ = data
    clf = fitted if dtype == "float32" else GraphNNClassifier(**dict(ARGS, dtype=dtype)).fit(X, y)
    assert clf.net_.dtype == np.dtype(dtype)
    expected = _softmax(_numpy_forward(clf.net_.get_params(), X_test, lambda h: np.maximum(h, 0)))
    np.testing.assert_allclose(clf.predict_proba(X_test), expected, atol=tol)
    assert np.array_equal(clf.predict(X_test), clf.classes_[expected.argmax(axis=1)])


def test_pickle_and_deepcopy_predict_bit_for_bit_and_resume_exactly(fitted, data):
    X, X_test, y, _ = data
    proba = fitted.predict_proba(X_test)
    blob = pickle.dumps(fitted)
    assert b"numba" not in blob and b"CPUDispatcher" not in blob   # no compiled code inside
    assert pickle.loads(blob)._network._net is None       # compiled on first use
    for other in (pickle.loads(blob), copy.deepcopy(fitted)):
        assert np.array_equal(other.predict_proba(X_test), proba)
        assert np.array_equal(other.predict(X_test), fitted.predict(X_test))
        assert other.n_features_in_ == 64 and list(other.classes_) == list(range(10))
    # one more epoch on the original and on a copy: optimizer state, step and the
    # shuffling generator travel too, so they stay identical
    a, b = clone(fitted).fit(X, y), pickle.loads(pickle.dumps(clone(fitted).fit(X, y)))
    a.partial_fit(X, y)
    b.partial_fit(X, y)
    for name, value in a.net_.get_params().items():
        assert np.array_equal(b.net_.get_params()[name], value), name
    assert a.net_.step == b.net_.step and a.net_.epoch == b.net_.epoch


def test_clone_and_nested_params_in_a_pipeline(data):
    X, X_test, y, _ = data
    pipe = Pipeline([("scale", StandardScaler()), ("clf", GraphNNClassifier(**ARGS))])
    pipe.set_params(clf__hidden_layer_sizes=(8,), clf__lr=0.5, clf__optimizer="sgd",
                    clf__batch_size=64)
    twin = clone(pipe)
    assert twin.get_params()["clf__lr"] == 0.5 and twin.get_params()["clf__batch_size"] == 64
    assert twin.named_steps["clf"] is not pipe.named_steps["clf"]
    assert not hasattr(twin.named_steps["clf"], "n_features_in_")
    p1 = pipe.fit(X, y).predict_proba(X_test)
    p2 = twin.fit(X, y).predict_proba(X_test)
    assert np.array_equal(p1, p2)               # same random_state: same network
    params = GraphNNRegressor(**ARGS).get_params()
    assert set(CHECK_ARGS) <= set(params) and {"dropout", "early_stopping", "warm_start",
                                               "dtype", "validation_fraction"} <= set(params)


def test_string_labels_map_back(data):
    X, X_test, y, _ = data
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    clf = GraphNNClassifier(**ARGS).fit(X, names[y])
    assert list(clf.classes_) == sorted(names)
    ints = GraphNNClassifier(**ARGS).fit(X, np.argsort(np.argsort(names))[y])
    # the labels' sorted order is the class order: same encoded problem, same network
    assert np.array_equal(clf.predict(X_test), clf.classes_[ints.predict(X_test)])
    assert clf.predict(X_test).dtype == names.dtype
    assert clf.score(X_test, names[data[3]]) == ints.score(
        X_test, np.argsort(np.argsort(names))[data[3]])


def test_binary_cross_entropy_string_labels(data):
    X, X_test, y, y_test = data
    labels = np.where(y % 2, "odd", "even")
    clf = GraphNNClassifier(**ARGS, loss="binary_cross_entropy").fit(X, labels)
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2) and np.allclose(proba.sum(axis=1), 1)
    assert set(clf.predict(X_test)) <= {"odd", "even"}
    assert clf.score(X_test, np.where(y_test % 2, "odd", "even")) > 0.6


def test_dataframe_feature_names(data):
    pd = pytest.importorskip("pandas")
    X, X_test, y, _ = data
    columns = [f"pixel_{i}" for i in range(64)]
    clf = GraphNNClassifier(**ARGS).fit(pd.DataFrame(X, columns=columns), pd.Series(y))
    assert list(clf.feature_names_in_) == columns and clf.n_features_in_ == 64
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        plain = clf.predict(X_test)
    assert np.array_equal(clf.predict(pd.DataFrame(X_test, columns=columns)), plain)
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(pd.DataFrame(X_test, columns=columns[::-1]))


def test_float64_input_to_float32_model_without_warnings(data):
    X, X_test, y, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = GraphNNClassifier(**ARGS).fit(X.astype(np.float64), y)
        clf.predict(X_test.astype(np.float64))
    assert clf.net_.dtype == np.float32


def test_sample_weight_equals_repeated_rows_in_full_batch(data):
    """With one batch per epoch and no shuffling, weight k is exactly k copies of the row
    (the loss is the weighted mean either way); zero weight is leaving the row out."""
    X, X_test, y, _ = data
    X, y = X[:120], y[:120]
    w = np.tile([0, 1, 2], 40)
    full = dict(ARGS, optimizer="sgd", lr=0.5, epochs=5, batch_size=1000, shuffle=False)
    weighted = GraphNNClassifier(**full).fit(X, y, sample_weight=w)
    repeated = GraphNNClassifier(**full).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    assert set(np.unique(y[w > 0])) == set(range(10))     # same classes_ either way
    np.testing.assert_allclose(weighted.predict_proba(X_test), repeated.predict_proba(X_test),
                               atol=2e-6)
    plain = GraphNNClassifier(**full).fit(X, y)
    assert not np.allclose(plain.predict_proba(X_test), weighted.predict_proba(X_test),
                           atol=1e-3)


def test_partial_fit_and_warm_start_continue_without_reinitialising(fitted, data):
    X, X_test, y, _ = data
    with pytest.raises(ValueError, match="classes must be passed"):
        GraphNNClassifier(**ARGS).partial_fit(X, y)
    stepwise = GraphNNClassifier(**ARGS)
    for _ in range(ARGS["epochs"]):
        stepwise.partial_fit(X, y, classes=np.arange(10))
    assert np.array_equal(stepwise.predict_proba(X_test), fitted.predict_proba(X_test))
    warm = GraphNNClassifier(**dict(ARGS, epochs=2, warm_start=True)).fit(X, y).fit(X, y)
    assert np.array_equal(warm.predict_proba(X_test), fitted.predict_proba(X_test))
    assert len(warm.loss_curve_) == 4 and warm.n_iter_ == 2
    cold = GraphNNClassifier(**dict(ARGS, epochs=2)).fit(X, y).fit(X, y)   # restarts
    assert len(cold.loss_curve_) == 2
    # new optimizer settings on a warm start keep the weights (a tiny lr barely moves them)
    before = warm.net_.get_params()
    warm.set_params(optimizer="sgd", lr=1e-12, epochs=1).fit(X, y)
    assert warm.net_.optimizer.config()["name"] == "SGD" and len(warm.loss_curve_) == 5
    for name, value in warm.net_.get_params().items():
        np.testing.assert_allclose(value, before[name], atol=1e-6)
    with pytest.raises(ValueError, match="changed since the network was fitted"):
        warm.set_params(hidden_layer_sizes=(9,)).fit(X, y)
    with pytest.raises(ValueError, match=r"not in classes_.*\[10\]"):
        stepwise.partial_fit(X, np.where(y == 0, 10, y))


def test_regressor_1d_and_2d_targets(data):
    X, X_test, _, _ = data
    rng = np.random.default_rng(0)
    W = rng.normal(size=(64, 2))
    Y = X @ W
    args = dict(ARGS, hidden_layer_sizes=(8,), activation="linear", epochs=60)
    one = GraphNNRegressor(**args).fit(X, Y[:, 0])
    assert one.predict(X_test).shape == (len(X_test),) and one.n_outputs_ == 1
    assert one.predict(X_test).dtype == np.float64
    np.testing.assert_allclose(one.predict(X_test),
                               _numpy_forward(one.net_.get_params(), X_test, lambda h: h)[:, 0],
                               rtol=1e-5, atol=1e-5)
    assert one.score(X_test, X_test @ W[:, 0]) > 0.95
    two = GraphNNRegressor(**args).fit(X, Y)
    assert two.predict(X_test).shape == (len(X_test), 2) and two.n_outputs_ == 2
    assert two.score(X_test, X_test @ W) > 0.95


def test_early_stopping_and_dropout(data):
    X, _, y, _ = data
    clf = GraphNNClassifier(**dict(ARGS, lr=0.05, epochs=300, dropout=0.1, early_stopping=True,
                                   patience=2, validation_fraction=0.2)).fit(X, y)
    assert clf.n_iter_ < 300
    assert "val_loss" in clf.history_ and len(clf.history_["val_loss"]) == clf.n_iter_
    best = int(np.argmin(clf.history_["val_loss"]))
    assert clf.n_iter_ == best + 3                        # stopped 2 epochs after the best
    assert "Dropout" in clf.net_.summary()


@pytest.mark.parametrize("bad, message", [
    (dict(optimizer="lbfgs"), "optimizer must be one of"),
    (dict(hidden_layer_sizes=(8, 0)), "hidden_layer_sizes"),
    (dict(activation=["relu", "tanh"]), "activation has 2 entries"),
    (dict(dropout=1.0), "dropout"),
    (dict(loss="mse"), "loss must be"),
    (dict(epochs=0), "epochs"),
    (dict(verbose=3), "verbose"),
    (dict(dtype="float16"), "dtype"),
    (dict(early_stopping=True, validation_fraction=1.5), "validation_fraction"),
])
def test_bad_hyperparameters_are_clear_errors_at_fit(bad, message, data):
    X, _, y, _ = data
    clf = GraphNNClassifier(**dict(ARGS, **bad))         # __init__ only stores
    with pytest.raises(ValueError, match=message):
        clf.fit(X, y)
    assert not hasattr(clf, "n_features_in_")            # checked before anything changed


def test_cross_val_score(data):
    X, _, y, _ = data
    scores = cross_val_score(GraphNNClassifier(**ARGS), X, y, cv=3)
    assert scores.shape == (3,) and (scores > 0.5).all()


def test_grid_search_two_processes_on_digits(digits):
    X_train, X_test, y_train, y_test = digits
    search = GridSearchCV(GraphNNClassifier(**dict(ARGS, epochs=5)),
                          {"hidden_layer_sizes": [(8,), (16,)], "lr": [0.005, 0.02]},
                          cv=2, n_jobs=2)
    search.fit(X_train, y_train)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["hidden_layer_sizes"] in [(8,), (16,)]
    assert search.score(X_test, y_test) > 0.8
