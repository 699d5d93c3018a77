"""The checked run: loading its data, checks before compiling, building the model,
optimizer and callbacks; and ``load_run``, which reads, overrides and checks a run file.
"""
from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .build import build_callbacks, build_layers, build_model, build_optimizer
from .errors import RunFileError
from .overrides import apply_sets, dumps, read_toml
from .schema import _Checker, _check
from .vocabulary import BUILTIN_RUN, SOURCES, _PER_STEP_TOTAL


@dataclass
class Data:
    """The run's data: training part, test part (None without one), input and output width,
    and the Standardizer fitted on the training part (None unless ``standardize``)."""
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    standardizer: object = None

    @property
    def in_dim(self) -> int:
        return int(self.X_train.shape[1])


class Run:
    """A checked run file: ``resolved()``, ``load_data()``, ``build_model(...)``,
    ``build_optimizer(...)``, ``build_callbacks(...)``, ``compile(...)``."""

    def __init__(self, doc: dict, path: str | None = None, checker: _Checker | None = None):
        self.doc = doc                    # every key present, checked
        self.path = path
        self._checker = checker           # says whether a key came from the file or a --set

    def _error(self, message: str, key: str) -> RunFileError:
        """A RunFileError naming where ``key`` was set (the file or a --set item)."""
        where = self._checker.where(key) if self._checker is not None else self.path
        return RunFileError(message, where, key)

    # -- views ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.doc["name"]

    def __getitem__(self, k):
        return self.doc[k]

    def resolved(self) -> dict:
        """The run with every default filled in and the graphnn version: ``run.toml``."""
        from ..version import __version__
        return {"graphnn_version": __version__, **copy.deepcopy(self.doc)}

    def dumps(self) -> str:
        """``resolved()`` as TOML, with a comment saying what it is."""
        return ("# The run as resolved by graphnn: every default filled in.\n"
                "# `graphnn train run.toml` runs it again.\n" + dumps(self.resolved()))

    @property
    def targets(self) -> str:
        from ..ops.losses import LOSSES
        return LOSSES[self.doc["loss"]].targets

    # -- data ----------------------------------------------------------------------------
    def load_data(self) -> Data:
        """Read or generate the data, split off the test part, standardize if asked."""
        from .. import datasets as ds
        d = self.doc["data"]
        src = d["source"]
        try:
            if src == "fashion_mnist":
                (Xtr, ytr), (Xte, yte) = ds.load_fashion_mnist(d["path"])
                if d["train_rows"]:
                    Xtr, ytr = Xtr[:d["train_rows"]], ytr[:d["train_rows"]]
                if d["test_rows"]:
                    Xte, yte = Xte[:d["test_rows"]], yte[:d["test_rows"]]
                return self._finish(Xtr, ytr, Xte, yte)
            X, y = self._read_source(ds, d)
        except ImportError as e:
            raise RunFileError(str(e), self.path, "data.source") from None
        except FileNotFoundError as e:
            raise RunFileError(str(e).strip("'\""), self.path, "data.path") from None
        except ValueError as e:
            if isinstance(e, RunFileError):
                raise
            raise RunFileError(f"{e}", self.path, "data") from None
        y = self._shape_targets(y)
        n = len(X)
        if d["test_size"] == 0:
            return self._finish(X, y, None, None)
        stratify = d["stratify"] and y.ndim == 1
        try:
            Xtr, Xte, ytr, yte = ds.train_test_split(X, y, test_size=d["test_size"],
                                                     seed=d["seed"], stratify=stratify)
        except ValueError as e:
            raise RunFileError(f"{e} ({n} rows)", self.path, "data.test_size") from None
        return self._finish(Xtr, ytr, Xte, yte)

    def _read_source(self, ds, d):
        src = d["source"]
        if src == "digits":
            return ds.load_digits()
        if src in ("moons", "xor", "spirals", "sine", "line"):
            maker = getattr(ds, f"make_{src}")
            args = {k: (tuple(v) if isinstance(v, list) else v)
                    for k, v in d.items() if k in SOURCES[src][0]}
            return maker(seed=d["seed"], **args)
        if src == "npz":
            return ds.read_npz(d["path"], x_key=d["x_key"], y_key=d["y_key"])
        if src == "npy":
            X, y = ds.read_npy(d["path"]), ds.read_npy(d["labels"])
            if X.ndim != 2:
                raise ValueError(f"{d['path']!r} holds an array of shape {X.shape}; the features "
                                 "must be 2-D (rows, features)")
            if len(y) != len(X):
                raise ValueError(f"{d['path']!r} has {len(X)} rows but {d['labels']!r} has "
                                 f"{len(y)} labels")
            return X, y
        if src == "csv":
            return ds.read_csv(d["path"], label_column=d["label_column"], header=d["header"],
                               delimiter=d["delimiter"])
        raise AssertionError(src)           # pragma: no cover - checked before

    def _shape_targets(self, y):
        y = np.asarray(y)
        if self.targets == "values" and y.ndim == 1:
            y = y.reshape(-1, 1).astype(np.float64)
        return y

    def _finish(self, Xtr, ytr, Xte, yte) -> Data:
        from ..datasets import Standardizer
        ytr = self._shape_targets(ytr)
        yte = None if yte is None else self._shape_targets(yte)
        Xtr = np.asarray(Xtr)
        if Xtr.ndim != 2:
            raise RunFileError(f"the features must be 2-D (rows, features), got shape "
                               f"{Xtr.shape}", self.path, "data")
        scaler = None
        if self.doc["data"].get("standardize"):
            scaler = Standardizer().fit(Xtr)
            Xtr = scaler.transform(Xtr)
            if Xte is not None:
                Xte = scaler.transform(Xte)
        return Data(Xtr, ytr, Xte, yte, scaler)

    def out_dim(self, data: Data) -> int:
        """Width of the model's output the data asks for: classes, or target columns."""
        if self.targets == "labels":
            ys = [data.y_train] + ([data.y_test] if data.y_test is not None else [])
            top = max(int(np.max(y)) for y in ys if y.size) if any(y.size for y in ys) else 1
            return max(top + 1, 2)
        return int(data.y_train.shape[1]) if data.y_train.ndim == 2 else 1

    # -- checks before anything big is allocated or compiled -----------------------------
    def check_data_memory(self) -> None:
        """Refuse (RunFileError) a generated data set larger than the available memory."""
        from .memory import available_bytes, data_bytes, size_text
        d = self.doc["data"]
        if "n" not in d:
            return
        features = {"sine": 1, "line": 1}.get(d["source"], 2)
        need = data_bytes(d["n"], features)
        have = available_bytes()
        if have is not None and need > have:
            raise self._error(f"{d['n']:,} rows need about {size_text(need)} of memory to "
                              f"generate, more than the {size_text(have)} available", "data.n")

    def check_model_memory(self, in_dim: int) -> None:
        """Refuse (RunFileError) a model whose parameters and workspace would not fit."""
        from .. import optim
        from .memory import available_bytes, model_bytes, size_text
        widths, blame = [in_dim], {}
        for i, spec in enumerate(self.doc["model"]["layers"]):
            if spec["type"] == "Dense":
                widths.append(int(spec.get("units") or 1))
                blame[len(widths) - 1] = i
        itemsize = np.dtype(self.doc["dtype"]).itemsize
        slots = optim.OPTIMIZERS[self.doc["optimizer"]["name"]].state_slots
        params, arena, need = model_bytes(widths, itemsize, slots, self.doc["batch_size"])
        have = available_bytes()
        if have is None or need <= have:
            return
        widest = max(range(1, len(widths)), key=lambda k: widths[k - 1] * widths[k] + widths[k])
        raise self._error(f"the model needs about {size_text(need)} of memory (parameters, "
                          f"gradients and optimizer state {size_text(params)}, workspace "
                          f"{size_text(arena)}), more than the {size_text(have)} available",
                          f"model.layers.{blame[widest]}.units")

    def check_data(self, data: Data) -> None:
        """Check the data against the model before compiling: features, target shapes and
        class labels against the output width, as ``fit`` would (RunFileError)."""
        from ..ops.losses import LOSSES
        from ..validate import as_inputs, check_lengths
        loss = LOSSES[self.doc["loss"]]
        layers = self.doc["model"]["layers"]
        dense = [i for i, s in enumerate(layers) if s["type"] == "Dense"]
        width = int(layers[dense[-1]]["units"]) if dense else data.in_dim
        key = f"model.layers.{dense[-1]}.units" if dense else "model.layers"
        parts = [("training", data.X_train, data.y_train)]
        if data.X_test is not None:
            parts.append(("test", data.X_test, data.y_test))
        for part, X, y in parts:
            try:
                X = as_inputs(X, data.in_dim, self.doc["dtype"], what=f"the {part} features")
                check_lengths(X, y)
                loss.check_targets(y, X.shape[0], width, np.dtype(self.doc["dtype"]))
            except ValueError as e:
                hint = (f" (the data's targets need {self.out_dim(data)} outputs; leave the "
                        "last layer's units out to take them from the data)"
                        if self.out_dim(data) != width else "")
                raise self._error(f"the {part} data does not fit the model: {e}{hint}",
                                  key) from None

    # -- building ------------------------------------------------------------------------
    def fill_from_data(self, data: Data) -> None:
        """Fill what only the data can say: the last layer's units (when left out) and the
        length of a per-step schedule (when left out)."""
        last = self.doc["model"]["layers"][-1]
        if last["type"] == "Dense" and last.get("units") is None:
            last["units"] = self.out_dim(data)
        lr = self.doc["optimizer"]["lr"]
        if isinstance(lr, dict) and lr["type"] in _PER_STEP_TOTAL and lr.get("total") is None:
            rows = data.X_train.shape[0]
            split = self.doc["validation"]["split"]
            if split:
                rows -= int(round(rows * split))
            steps = math.ceil(rows / max(1, min(self.doc["batch_size"], rows)))
            lr["total"] = max(steps * self.doc["epochs"], int(lr.get("warmup", 0)) + 1)

    def build_layers(self) -> list:
        return build_layers(self.doc)

    def build_model(self, in_dim: int):
        return build_model(self.doc, in_dim)

    def build_optimizer(self):
        return build_optimizer(self.doc)

    def build_callbacks(self, out_dir) -> list:
        return build_callbacks(self.doc, out_dir)

    def compile(self, in_dim: int, verbose: int = 0):
        """Build the model and optimizer and compile them (seconds for a new architecture,
        cached on disk; ``verbose=1`` says so on stderr when it happens)."""
        model = self.build_model(in_dim)
        return model.compile(loss=self.doc["loss"], optimizer=self.build_optimizer(),
                             seed=self.doc["seed"], dtype=self.doc["dtype"],
                             device=self.doc["device"], metrics=self.doc["metrics"],
                             verbose=verbose)

    def fit_args(self, data: Data) -> dict:
        v = self.doc["validation"]
        args = {"epochs": self.doc["epochs"], "batch_size": self.doc["batch_size"],
                "shuffle": self.doc["shuffle"], "verbose": self.doc["verbose"]}
        if v["use_test"]:
            args["validation_data"] = (data.X_test, data.y_test)
        elif v["split"]:
            args["validation_split"] = v["split"]
        return args


def load_run(path=None, sets=()) -> Run:
    """Read ``path`` (None: the built-in run), apply ``--set`` items, check every key and
    fill every default.  Raises RunFileError; reads no data and compiles nothing."""
    if path is None:
        doc = read_toml(BUILTIN_RUN)    # the built-in run: one definition, a file
        where = None
        base = Path.cwd()
    else:
        doc = read_toml(path)
        where = str(path)
        base = Path(os.fspath(path)).resolve().parent
    touched = apply_sets(doc, sets)
    chk = _Checker(where, touched, sets)
    # the name defaults to the file's; the built-in run's to its data source
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(os.fspath(path)).stem) if path else None
    resolved = _check(doc, chk, base, stem or None)
    return Run(resolved, where, chk)
