"""scikit-learn estimators: ``GraphNNClassifier`` and ``GraphNNRegressor``.

An MLP (``hidden_layer_sizes`` Dense layers, optional Dropout after each) compiled by
graphnn, behind scikit-learn's estimator API, so it goes into ``Pipeline``,
``GridSearchCV``, ``cross_val_score`` and ``clone``:

    from graphnn.sklearn import GraphNNClassifier
    clf = GraphNNClassifier(hidden_layer_sizes=(64,), optimizer="adam", lr=1e-2, epochs=30,
                            random_state=0).fit(X, y)
    clf.predict(X), clf.predict_proba(X), clf.score(X, y), clf.net_.summary()

``__init__`` only stores its arguments; they are checked when ``fit`` runs.  The fitted
network lives in a small holder that pickles (and deep-copies) as a description: the
graph (``io.describe_graph``), the optimizer's config, parameters, optimizer state,
step, epoch and the generator's state, never compiled code.  An unpickled estimator
compiles again on first use (from graphnn's on-disk kernel cache) and predicts bit for
bit as before; ``fit`` on it with ``warm_start`` continues exactly.

This module imports scikit-learn; ``import graphnn`` does not import it.
"""
from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (_check_sample_weight, check_is_fitted,
                                      validate_data)

from . import io
from .callbacks import EarlyStopping
from .model import CompiledModel, Model, Sequential
from .ops.dense import Dense
from .ops.dropout import Dropout
from .optim import OPTIMIZERS
from .validate import as_dtype

__all__ = ["GraphNNClassifier", "GraphNNRegressor"]

_OPTIMIZERS = {name.lower(): name for name in OPTIMIZERS}      # "sgd" -> "SGD", ...


class _Network:
    """Holds a fitted ``CompiledModel``; pickles as its checkpoint (``io.to_bytes``: the
    graph, optimizer, parameters, optimizer state, step counters and generator state) with
    its metrics, and compiles lazily when unpickled.

    The estimator keeps one holder for its whole fitted life, so compiling on first use
    after unpickling does not change the estimator's ``__dict__``.
    """

    def __init__(self, net):
        self._net = net
        self._saved = None

    @property
    def net(self):
        if self._net is None:
            blob, metrics = self._saved
            ck = io.from_bytes(blob, "the pickled network", Model)
            self._net = io.build(ck, CompiledModel, "the pickled network", metrics=metrics)
            self._saved = None
        return self._net

    def __getstate__(self):
        if self._net is None:
            return self._saved
        return io.to_bytes(self._net), list(self._net.metrics)

    def __setstate__(self, state):
        self._net, self._saved = None, state


class _GraphNNBase(BaseEstimator):
    """Shared hyperparameters, fitting and prediction of the two estimators."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", dropout=0.0, loss=None,
                 optimizer="adam", lr=1e-3, momentum=0.0, nesterov=False, betas=(0.9, 0.999),
                 eps=1e-8, weight_decay=0.0, epochs=200, batch_size=32, shuffle=True,
                 early_stopping=False, validation_fraction=0.1, patience=10, min_delta=0.0,
                 random_state=None, verbose=0, warm_start=False, dtype="float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.dropout = dropout
        self.loss = loss
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.min_delta = min_delta
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.dtype = dtype

    # -- building the network ------------------------------------------------------------
    @property
    def net_(self):
        """The fitted ``graphnn.CompiledModel`` (``summary()``, ``get_params()``, ``source()``)."""
        check_is_fitted(self, "_network")
        return self._network.net

    def _hidden(self) -> list[tuple[int, object]]:
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            sizes = list(sizes)
        except TypeError:
            raise ValueError("hidden_layer_sizes must be a sequence of positive integers, "
                             f"got {self.hidden_layer_sizes!r}") from None
        if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes):
            raise ValueError("hidden_layer_sizes must be a sequence of positive integers, "
                             f"got {self.hidden_layer_sizes!r}")
        acts = self.activation
        if isinstance(acts, str) or acts is None:
            acts = [acts] * len(sizes)
        acts = list(acts)
        if len(acts) != len(sizes):
            raise ValueError(f"activation has {len(acts)} entries for {len(sizes)} hidden "
                             "layers; give one name, or one per hidden layer")
        return [(int(s), a) for s, a in zip(sizes, acts)]

    def _make_optimizer(self):
        name = self.optimizer.lower() if isinstance(self.optimizer, str) else None
        if name not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(sorted(_OPTIMIZERS))}, "
                             f"got {self.optimizer!r}")
        cls = OPTIMIZERS[_OPTIMIZERS[name]]
        if name == "sgd":
            return cls(self.lr, momentum=self.momentum, nesterov=self.nesterov,
                       weight_decay=self.weight_decay)
        if name == "rmsprop":
            return cls(self.lr, eps=self.eps, momentum=self.momentum,
                       weight_decay=self.weight_decay)
        return cls(self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)

    def _seed(self):
        if isinstance(self.random_state, numbers.Integral) and not isinstance(
                self.random_state, bool):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _check_dropout(self) -> float:
        rate = self.dropout
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {rate!r}")
        return float(rate)

    def _settings(self) -> dict:
        """Every hyperparameter checked, before anything is fitted or changed."""
        loss = self.loss or self._LOSSES[0]
        if loss not in self._LOSSES:
            raise ValueError(f"loss must be {' or '.join(map(repr, self._LOSSES))} (or None for "
                             f"{self._LOSSES[0]!r}), got {self.loss!r}")
        settings = {"loss": loss, "hidden": self._hidden(), "dropout": self._check_dropout(),
                    "optimizer": self._make_optimizer(), "dtype": as_dtype(self.dtype),
                    "epochs": _positive_int(self.epochs, "epochs"),
                    "batch_size": _positive_int(self.batch_size, "batch_size")}
        if self.verbose not in (0, 1, 2):          # True and False are 1 and 0
            raise ValueError(f"verbose must be 0, 1 or 2, got {self.verbose!r}")
        if self.early_stopping:
            frac = self.validation_fraction
            if isinstance(frac, bool) or not isinstance(frac, numbers.Real) \
                    or not 0 < frac < 1:
                raise ValueError(f"validation_fraction must be in (0, 1), got {frac!r}")
            _positive_int(self.patience, "patience")
        return settings

    def _build(self, n_in: int, n_out: int, loss: str, last: str | None, settings: dict):
        layers = []
        rate = settings["dropout"]
        for units, act in settings["hidden"]:
            layers.append(Dense(units, activation=act))
            if rate:
                layers.append(Dropout(rate))
        layers.append(Dense(n_out, activation=last))
        model = Sequential(layers, input_dim=n_in, name=type(self).__name__)
        return model.compile(loss=loss, optimizer=settings["optimizer"], seed=self._seed(),
                             dtype=settings["dtype"])

    # -- fitting ---------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight, partial: bool, classes=None):
        settings = self._settings()
        fresh = not hasattr(self, "_network") or not (partial or self.warm_start)
        X, y = validate_data(self, X, y, reset=fresh, dtype=[np.float64, np.float32],
                             **self._y_validation())
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        Y, n_out, last = self._targets(y, fresh, partial, classes, settings["loss"])
        loss = settings["loss"]
        key = (X.shape[1], n_out, loss, repr(settings["hidden"]), settings["dropout"],
               settings["dtype"].name)
        if not fresh and key != self._network_key:
            raise ValueError("hidden_layer_sizes, activation, dropout, loss or dtype changed "
                             "since the network was fitted, so it cannot continue; call fit "
                             "with warm_start=False to start a new one")
        # the optimizer's settings as built (its config() also holds a schedule's running
        # state, which training changes: compare the settings, not the live optimizer)
        opt_key = settings["optimizer"].config()
        if fresh:
            self._network = _Network(self._build(X.shape[1], n_out, loss, last, settings))
            self._network_key = key
            self._optimizer_key = opt_key
            self.loss_curve_ = []
        net = self._network.net
        if opt_key != getattr(self, "_optimizer_key", opt_key):
            params = net.get_params()           # new optimizer settings: same weights
            net = self._build(X.shape[1], n_out, loss, last, settings)
            net.set_params(params)
            self._network = _Network(net)
            self._optimizer_key = opt_key

        epochs = 1 if partial else settings["epochs"]
        callbacks, validation = None, None
        if self.early_stopping and not partial:
            X, Y, sample_weight, validation = self._split(X, Y, sample_weight)
            callbacks = [EarlyStopping(monitor="val_loss", patience=int(self.patience),
                                       min_delta=self.min_delta, restore_best=True)]
        history = net.fit(X, Y, epochs=epochs, batch_size=settings["batch_size"],
                          shuffle=bool(self.shuffle), verbose=int(self.verbose),
                          validation_data=validation, callbacks=callbacks,
                          sample_weight=sample_weight)
        self.history_ = history.history
        self.loss_curve_ = self.loss_curve_ + history.history["loss"]
        self.n_iter_ = len(history.epoch)
        return self

    def _split(self, X, Y, sample_weight):
        stratify = Y if self._stratify else None
        parts = train_test_split(X, Y, *([] if sample_weight is None else [sample_weight]),
                                 test_size=self.validation_fraction, random_state=self._seed(),
                                 stratify=stratify)
        Xt, Xv, Yt, Yv = parts[:4]
        return Xt, Yt, (parts[4] if sample_weight is not None else None), (Xv, Yv)

    def _output(self, X) -> np.ndarray:
        check_is_fitted(self, "_network")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._network.net.predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


class GraphNNClassifier(ClassifierMixin, _GraphNNBase):
    """A graphnn MLP classifier with scikit-learn's API.

    Arguments (all stored as given and checked by ``fit``):
        hidden_layer_sizes: widths of the hidden Dense layers, e.g. ``(64, 32)``.
        activation: one name for every hidden layer, or one per layer ("relu", "tanh",
            "sigmoid", "gelu", "softplus", "leaky_relu", "linear").
        dropout: rate of a Dropout node after each hidden layer (0: none).
        loss: "cross_entropy" (softmax over one logit per class; what None means) or
            "binary_cross_entropy" (two classes, one sigmoid output).
        optimizer: "sgd", "adam", "adamw" or "rmsprop", with ``lr``, ``momentum`` and
            ``nesterov`` (sgd, rmsprop), ``betas`` (adam, adamw), ``eps``, ``weight_decay``.
        epochs, batch_size, shuffle: the training loop of ``fit`` (``partial_fit`` runs
            one epoch).
        early_stopping, validation_fraction, patience, min_delta: hold out a stratified
            ``validation_fraction`` of the rows, stop after ``patience`` epochs without
            the validation loss improving by ``min_delta``, keep the best epoch's weights.
        random_state: int (reproducible bit for bit), RandomState or None.
        verbose: 0 quiet, 1 progress bar, 2 a line per epoch.
        warm_start: ``fit`` continues from the previous fit instead of starting anew (the
            layers, dropout, loss and dtype must be unchanged; new optimizer settings keep
            the weights and start the optimizer's state afresh).
        dtype: "float32" (default) or "float64"; inputs of any real dtype are converted.

    Fitted attributes: ``classes_``, ``n_features_in_``, ``feature_names_in_`` (DataFrames),
    ``net_`` (the ``graphnn.CompiledModel``), ``history_``, ``loss_curve_``, ``n_iter_``.
    """

    _stratify = True
    _LOSSES = ("cross_entropy", "binary_cross_entropy")

    def _y_validation(self) -> dict:
        return {}

    def _targets(self, y, fresh: bool, partial: bool, classes, loss: str):
        check_classification_targets(y)
        labels = getattr(self, "classes_", None)
        if fresh:
            if partial and classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            labels = np.unique(y) if classes is None else np.unique(np.asarray(classes))
            if labels.size < 2:
                raise ValueError(f"{type(self).__name__} needs at least 2 classes in y; "
                                 f"got 1 class ({labels[0]!r})" if labels.size else
                                 "y has no classes")
            if loss == "binary_cross_entropy" and labels.size != 2:
                raise ValueError("loss='binary_cross_entropy' needs exactly 2 classes, "
                                 f"got {labels.size}; use 'cross_entropy'")
        idx = np.minimum(np.searchsorted(labels, y), labels.size - 1)
        unknown = labels[idx] != y
        if unknown.any():
            raise ValueError(f"y contains labels not in classes_ {labels.tolist()}: "
                             f"{np.unique(np.asarray(y)[unknown]).tolist()}")
        self.classes_ = labels
        if loss == "cross_entropy":
            return idx.astype(np.int64), labels.size, "softmax"
        return idx.astype(np.float64).reshape(-1, 1), 1, "sigmoid"

    def fit(self, X, y, sample_weight=None):
        """Train a new network on (X, y) (or continue one, with ``warm_start=True``)."""
        return self._fit(X, y, sample_weight, partial=False)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), continuing from the previous call (``classes=`` on the first)."""
        return self._fit(X, y, sample_weight, partial=True, classes=classes)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (rows, len(classes_)), columns in ``classes_`` order."""
        out = self._output(X).astype(np.float64)
        if out.shape[1] == 1:                   # one sigmoid output: P(classes_[1])
            out = np.hstack([1.0 - out, out])
        return out

    def predict_log_proba(self, X) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row, as a label from ``classes_``."""
        check_is_fitted(self, "_network")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags


class GraphNNRegressor(RegressorMixin, _GraphNNBase):
    """A graphnn MLP regressor (mean squared error) with scikit-learn's API.

    The arguments are those of ``GraphNNClassifier``; ``loss`` is "mse" (what None means;
    graphnn's one loss for values).  ``y`` may be 1-D (``predict`` returns 1-D) or 2-D with
    one column per output (``predict`` returns 2-D).
    """

    _stratify = False
    _LOSSES = ("mse",)

    def _y_validation(self) -> dict:
        return {"multi_output": True, "y_numeric": True}

    def _targets(self, y, fresh: bool, partial: bool, classes, loss: str):
        Y = np.asarray(y, dtype=np.float64)
        if fresh:
            self.n_outputs_ = 1 if Y.ndim == 1 else Y.shape[1]
            self._y_ndim = Y.ndim
        Y = Y.reshape(Y.shape[0], -1)
        if Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} outputs, but {type(self).__name__} was "
                             f"fitted with {self.n_outputs_}")
        return Y, self.n_outputs_, None

    def fit(self, X, y, sample_weight=None):
        """Train a new network on (X, y) (or continue one, with ``warm_start=True``)."""
        return self._fit(X, y, sample_weight, partial=False)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the previous call."""
        return self._fit(X, y, sample_weight, partial=True)

    def predict(self, X) -> np.ndarray:
        """Predicted values as float64 (the network's values, exactly): 1-D if ``fit`` saw a
        1-D y, else (rows, outputs)."""
        out = self._output(X).astype(np.float64)
        return out.ravel() if self._y_ndim == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
