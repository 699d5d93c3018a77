"""Run files: a TOML description of one training run, checked before anything runs.

A run file names the data, the model (a stack of layers), the loss, the optimizer and
the training options; ``graphnn train RUN.toml`` carries it out.  Every key has a
default, so an empty file (or no file at all) is the built-in run: an MLP 64-128-10
with ReLU on the handwritten digits, cross-entropy, SGD with lr 0.1, batches of 32,
20 epochs, seed 0.

    name = "digits"              # the output folder runs/<name>-<timestamp>; default: the
                                 # run file's name (digits.toml: "digits"), else the source
    seed = 0                     # weights, shuffling and dropout
    dtype = "float32"            # or "float64"
    device = "cpu"               # or "cuda"
    threads = 0                  # BLAS threads; 0 leaves the default
    epochs = 20
    batch_size = 32
    shuffle = true
    verbose = 1                  # 0 silent, 1 progress bar, 2 one line per epoch
    loss = "cross_entropy"       # mse | cross_entropy | binary_cross_entropy; default
                                 # mse for the sine and line data, else cross_entropy
    metrics = ["accuracy"]       # accuracy (classification), mse, mae (regression)

    [data]
    source = "digits"            # digits | fashion_mnist | moons | xor | spirals | sine |
                                 # line | npz | npy | csv
    test_size = 0.25             # fraction (or row count) held out as the test set; 0: none
    stratify = true
    standardize = false          # scale features with statistics of the training part
    seed = 0                     # the split and the generators

    [model]
    name = "sequential"
    layers = [
        {type = "Dense", units = 128, activation = "relu"},
        {type = "Dense", units = 10},      # the last layer's units may be left out
    ]

    [optimizer]
    name = "SGD"                 # SGD | Adam | AdamW | RMSprop, with their hyperparameters
    lr = 0.1                     # (SGD's default here; the others' own, e.g. Adam 0.001)
                                 # or a schedule: {type = "CosineDecay", lr = 0.1}

    [validation]
    split = 0.0                  # fraction of the training rows held out each epoch
    use_test = false             # or validate on the test set

    [callbacks]
    early_stopping = false       # or true, or {monitor = "val_loss", patience = 3, ...}
    checkpoint = false           # or true, or {path = "best.gnn", save_best_only = true, ...}
    csv = true                   # metrics.csv, or {path = ..., separator = ...}
    terminate_on_nan = false

``load_run(path, sets)`` reads a file, applies ``--set key=value`` overrides and checks
every key, type and name, raising ``RunFileError`` (naming the file, the key and what is
allowed) before any data is read or any model compiled.  The returned ``Run`` loads the
data (``load_data``) and builds the model, optimizer and callbacks from the checked
values; ``resolved()`` is the run with every default filled in, as written to
``run.toml``.
"""
from __future__ import annotations

import copy
import inspect
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:                                   # pragma: no cover
    import tomli as tomllib

__all__ = ["RunFileError", "Run", "Data", "load_run", "parse_set", "apply_sets", "dumps",
           "SOURCES", "LAYER_TYPES", "SCHEDULES"]


class RunFileError(ValueError):
    """A run file (or a --set override) is wrong: the message names where, the key and
    what is allowed."""

    def __init__(self, message: str, where: str | None = None, key: str | None = None):
        self.where, self.key, self.detail = where, key, message
        text = message
        if key:
            text = f"{key}: {text}"
        if where:
            text = f"{where}: {text}"
        super().__init__(text)


# ---------------------------------------------------------------------------------------
# the default run and the vocabulary
# ---------------------------------------------------------------------------------------

#: the built-in run (``graphnn train`` without a file); examples/runs/digits.toml is a copy
BUILTIN_RUN = Path(__file__).resolve().parent / "runs" / "digits.toml"

DEFAULT_LAYERS = [{"type": "Dense", "units": 128, "activation": "relu"},
                  {"type": "Dense"}]          # units from the data: 10 classes for the digits

_COMMON_SPLIT = {"test_size": 0.25, "stratify": None, "standardize": False, "seed": 0}

#: data source -> (its own keys with their defaults, the kind of targets it makes: "labels",
#: "values", or None for files, whose loss decides).  A default of ``None`` is filled in by
#: ``_check_data``; a ``REQUIRED`` key must be given.
REQUIRED = object()
SOURCES = {
    "digits": ({}, "labels"),
    "fashion_mnist": ({"path": None, "train_rows": 0, "test_rows": 0, "standardize": False},
                      "labels"),
    "moons": ({"n": 1000, "noise": 0.2}, "labels"),
    "xor": ({"n": 400, "noise": 0.2}, "labels"),
    "spirals": ({"n": 600, "classes": 2, "noise": 0.1, "turns": 1.0}, "labels"),
    "sine": ({"n": 400, "noise": 0.05, "x_range": [-math.pi, math.pi]}, "values"),
    "line": ({"n": 200, "m": 2.0, "c": 1.0, "noise": 0.1, "x_range": [-1.0, 1.0]}, "values"),
    "npz": ({"path": REQUIRED, "x_key": "X", "y_key": "y"}, None),
    "npy": ({"path": REQUIRED, "labels": REQUIRED}, None),
    "csv": ({"path": REQUIRED, "label_column": -1, "header": "auto", "delimiter": ","}, None),
}
_NO_SPLIT = ("fashion_mnist",)          # sources with their own test set

LAYER_TYPES = ("Dense", "Dropout", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softplus", "GELU",
               "Linear", "Softmax")
SCHEDULES = ("Constant", "StepDecay", "ExponentialDecay", "CosineDecay", "WarmupCosine",
             "ReduceOnPlateau")
_PER_STEP_TOTAL = ("CosineDecay", "WarmupCosine")   # total may be left out: the whole run
OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop")
TOP_KEYS = ("name", "seed", "dtype", "device", "threads", "epochs", "batch_size", "shuffle",
            "verbose", "loss", "metrics", "data", "model", "optimizer", "validation",
            "callbacks", "graphnn_version")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------------------
# reading, --set, writing
# ---------------------------------------------------------------------------------------

def read_toml(path) -> dict:
    """The table in a TOML file, or RunFileError (missing, unreadable, bad TOML)."""
    p = Path(os.fspath(path))
    if not p.exists():
        raise RunFileError(f"no such run file: {str(p)!r}")
    if not p.is_file():
        raise RunFileError(f"{str(p)!r} is not a file")
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise RunFileError(f"not valid TOML: {e}", str(p)) from None
    except UnicodeDecodeError:
        raise RunFileError("is not a text file, so not a TOML run file (a checkpoint such as "
                           "model.gnn? the run file is the run.toml beside it)", str(p)) from None
    except OSError as e:
        raise RunFileError(f"cannot be read: {e}", str(p)) from None


def parse_value(text: str):
    """A --set value as a TOML value (``0.05``, ``true``, ``[1, 2]``, ``{type = "X"}``,
    ``"text"``); anything that is not valid TOML is taken as a plain string (``moons``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(item: str) -> tuple[list[str], object]:
    """``"optimizer.lr=0.05"`` -> (["optimizer", "lr"], 0.05)."""
    key, eq, value = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not eq or not key or any(not p.strip() for p in parts):
        raise RunFileError(f"--set takes key=value with a dotted key, such as "
                           f"optimizer.lr=0.05 or model.layers.0.units=64; got {item!r}")
    return [p.strip() for p in parts], parse_value(value.strip())


def apply_sets(doc: dict, sets) -> set[str]:
    """Apply ``--set`` items to ``doc`` in place; returns the dotted keys they set.

    Missing tables are created; a number indexes a list (``model.layers.0.units``);
    ``model.layers`` not in the file means the default layers.
    """
    touched = set()
    for item in sets or ():
        parts, value = parse_set(item)
        node = doc
        for i, part in enumerate(parts[:-1]):
            where = ".".join(parts[:i + 1])
            if isinstance(node, dict):
                if part not in node:
                    if where == "model.layers":
                        node[part] = copy.deepcopy(DEFAULT_LAYERS)
                    elif parts[i + 1].isdigit():
                        raise RunFileError(f"{where} is not set, so {where}.{parts[i + 1]} "
                                           "cannot be indexed", f"--set {item}")
                    else:
                        node[part] = {}
                child = node[part]
                promoted = _promote(child, where)
                if promoted is not None:          # true/false or a number becomes a table
                    node[part] = child = promoted
                node = child
            elif isinstance(node, list):
                node = _list_item(node, part, parts, i, item)
            if not isinstance(node, (dict, list)):
                raise RunFileError(f"{where} is a {_kind(node)}, not a table, so it has no "
                                   f"key {parts[i + 1]!r}", f"--set {item}")
        last = parts[-1]
        if isinstance(node, dict):
            node[last] = value
        else:
            if not last.isdigit() or int(last) > len(node):
                raise RunFileError(f"{'.'.join(parts[:-1])} is a list of {len(node)}; index "
                                   f"with 0..{len(node)} (== {len(node)} appends)",
                                   f"--set {item}")
            if int(last) == len(node):
                node.append(value)
            else:
                node[int(last)] = value
        touched.add(".".join(parts))
    return touched


def _promote(value, where: str):
    """Setting a key inside a callback given as true/false, or inside a number lr, turns
    it into a table: ``callbacks.early_stopping.patience=3``, ``optimizer.lr.type=...``."""
    if isinstance(value, bool) and where.startswith("callbacks."):
        return {}
    if where == "optimizer.lr" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"lr": value}
    return None


def _list_item(node: list, part: str, parts, i, item):
    where = ".".join(parts[:i])
    if not part.isdigit() or int(part) >= len(node):
        raise RunFileError(f"{where} is a list of {len(node)}; index it with 0..{len(node) - 1}",
                           f"--set {item}")
    return node[int(part)]


def dumps(doc: dict) -> str:
    """``doc`` as TOML text (tomli-w, a required dependency)."""
    import tomli_w
    return tomli_w.dumps(doc)


# ---------------------------------------------------------------------------------------
# checking
# ---------------------------------------------------------------------------------------

def _kind(v) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "table"
    return type(v).__name__


class _Checker:
    """Reports errors with the file (or the --set item) a key came from."""

    def __init__(self, path: str | None, touched: set[str], sets):
        self.path = path
        self.touched = touched
        self.sets = list(sets or ())

    def where(self, key: str) -> str:
        parts = key.split(".")
        hits = [".".join(parts[:n]) for n in range(len(parts), 0, -1)
                if ".".join(parts[:n]) in self.touched]
        hits += sorted(t for t in self.touched if t.startswith(key + "."))
        if hits:
            items = [s for s in self.sets if s.partition("=")[0].strip() == hits[0]]
            return f"--set {items[-1]}" if items else "--set"
        return self.path or "the built-in run"

    def error(self, key: str, message: str) -> RunFileError:
        return RunFileError(message, self.where(key), key)

    # -- key sets ---------------------------------------------------------------------
    def keys(self, table: dict, allowed, key: str, what: str):
        for k in table:
            if k not in allowed:
                full = f"{key}.{k}" if key else k
                near = _near(k, allowed)
                raise self.error(full, f"unknown key{near}; allowed in {what}: "
                                       + ", ".join(allowed))

    def table(self, doc: dict, k: str, key: str) -> dict:
        v = doc.get(k, {})
        if not isinstance(v, dict):
            raise self.error(key, f"must be a table, got {_kind(v)} {v!r}")
        return v

    # -- scalar types ------------------------------------------------------------------
    def int(self, v, key, low=None, high=None):
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(key, f"must be an integer, got {_kind(v)} {v!r}")
        if (low is not None and v < low) or (high is not None and v > high):
            rng = (f">= {low}" if high is None else f"in {low}..{high}")
            raise self.error(key, f"must be an integer {rng}, got {v}")
        return v

    def number(self, v, key, low=None, low_open=False, high=None, high_open=False):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.error(key, f"must be a number, got {_kind(v)} {v!r}")
        bad = ((low is not None and (v < low or (low_open and v == low)))
               or (high is not None and (v > high or (high_open and v == high))))
        if bad:
            lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
            hi = "" if high is None else f"{high}" + (")" if high_open else "]")
            rng = f"in {lo}, {hi}" if low is not None and high is not None else (
                f"{'>' if low_open else '>='} {low}" if low is not None else
                f"{'<' if high_open else '<='} {high}")
            raise self.error(key, f"must be a number {rng}, got {v!r}")
        return float(v)

    def bool(self, v, key):
        if not isinstance(v, bool):
            raise self.error(key, f"must be true or false, got {_kind(v)} {v!r}")
        return v

    def str(self, v, key):
        if not isinstance(v, str):
            raise self.error(key, f"must be a string, got {_kind(v)} {v!r}")
        return v

    def choice(self, v, key, allowed, what="", fold=False):
        if isinstance(v, str):
            if v in allowed:
                return v
            if fold:
                for a in allowed:
                    if a.lower() == v.lower():
                        return a
        near = _near(v, allowed) if isinstance(v, str) else ""
        raise self.error(key, f"unknown {what or 'value'} {v!r}{near}; allowed: "
                              + ", ".join(map(str, allowed)))


def _blame(key: str, names, message: str) -> str:
    """The key (``key.<name>``) a constructor's error message is about, else ``key``."""
    for n in sorted(names, key=len, reverse=True):
        if re.match(rf"^(?:\w+ )?{re.escape(n)}\b", message) or f" {n}=" in message:
            return f"{key}.{n}"
    return key


#: what a word usually means where spelling alone misleads ("mnist" is closer to "moons"
#: by edit distance); the value is what to suggest, if it is allowed there
_MEANING = {"mnist": "fashion_mnist", "fmnist": "fashion_mnist", "fashion": "fashion_mnist",
            "sin": "sine", "linear": "line", "regression": "line", "spiral": "spirals",
            "ce": "cross_entropy", "crossentropy": "cross_entropy", "bce": "binary_cross_entropy",
            "l2": "mse", "float": "float32", "gpu": "cuda", "adamw": "AdamW"}


def _near(word, allowed) -> str:
    """`` (did you mean 'x'?)``: the same word in another case, a known meaning, a name
    that contains the word (``mnist`` in ``fashion_mnist``), else the closest spelling."""
    import difflib
    if not isinstance(word, str):
        return ""
    names = [str(a) for a in allowed]
    w = word.lower().replace("-", "_")
    m = [a for a in names if a.lower() == w]
    if not m and _MEANING.get(w) in names:
        m = [_MEANING[w]]
    if not m and len(w) >= 3:
        m = [a for a in names if w in a.lower()]
    if not m:
        m = difflib.get_close_matches(word, names, n=1)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _signature_defaults(cls, skip=("self", "lr", "name")) -> dict:
    """Constructor keyword defaults of ``cls`` (REQUIRED where there is none)."""
    out = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        d = p.default
        if d is inspect.Parameter.empty:
            d = REQUIRED
        elif isinstance(d, tuple):
            d = list(d)
        out[name] = d
    return out


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------

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

    def __init__(self, doc: dict, path: str | None = None):
        self.doc = doc                    # every key present, checked
        self.path = path

    # -- views ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.doc["name"]

    def __getitem__(self, k):
        return self.doc[k]

    def resolved(self) -> dict:
        """The run with every default filled in and the graphnn version: ``run.toml``."""
        from . import __version__
        return {"graphnn_version": __version__, **copy.deepcopy(self.doc)}

    def dumps(self) -> str:
        """``resolved()`` as TOML, with a comment saying what it is."""
        return ("# The run as resolved by graphnn: every default filled in.\n"
                "# `graphnn train run.toml` runs it again.\n" + dumps(self.resolved()))

    @property
    def targets(self) -> str:
        from .ops.losses import LOSSES
        return LOSSES[self.doc["loss"]].targets

    # -- data ----------------------------------------------------------------------------
    def load_data(self) -> Data:
        """Read or generate the data, split off the test part, standardize if asked."""
        from . import datasets as ds
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
        from .datasets import Standardizer
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
            raise RunFileError(f"{d['n']:,} rows need about {size_text(need)} of memory to "
                               f"generate, more than the {size_text(have)} available",
                               self.path, "data.n")

    def check_model_memory(self, in_dim: int) -> None:
        """Refuse (RunFileError) a model whose parameters and workspace would not fit."""
        from . import optim
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
        raise RunFileError(f"the model needs about {size_text(need)} of memory (parameters, "
                           f"gradients and optimizer state {size_text(params)}, workspace "
                           f"{size_text(arena)}), more than the {size_text(have)} available",
                           self.path, f"model.layers.{blame[widest]}.units")

    def check_data(self, data: Data) -> None:
        """Check the data against the model before compiling: features, target shapes and
        class labels against the output width, as ``fit`` would (RunFileError)."""
        from .ops.losses import LOSSES
        from .validate import as_inputs, check_lengths
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
                raise RunFileError(f"the {part} data does not fit the model: {e}"
                                   + (f" (the data's targets need {self.out_dim(data)} "
                                      "outputs; leave the last layer's units out to take "
                                      "them from the data)" if self.out_dim(data) != width
                                      else ""), self.path, key) from None

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
        import graphnn as gn
        layers = []
        for spec in self.doc["model"]["layers"]:
            args = {k: v for k, v in spec.items() if k != "type"}
            if spec["type"] == "Dense" and args.get("units") is None:
                args["units"] = 1            # placeholder while checking; filled from data
            layers.append(getattr(gn, spec["type"])(**args))
        return layers

    def build_model(self, in_dim: int):
        import graphnn as gn
        return gn.Sequential(self.build_layers(), input_dim=in_dim,
                             name=self.doc["model"]["name"])

    def build_optimizer(self):
        from . import optim, schedules
        cfg = dict(self.doc["optimizer"])
        cls = optim.OPTIMIZERS[cfg.pop("name")]
        lr = cfg.pop("lr")
        if isinstance(lr, dict):
            s = dict(lr)
            kind = getattr(schedules, s.pop("type"))
            if s.get("total") is None and "total" in inspect.signature(kind.__init__).parameters:
                s["total"] = int(s.get("warmup", 0)) + 1   # placeholder while checking
            lr = kind(s.pop("lr"), **s)
        if "betas" in cfg:
            cfg["betas"] = tuple(cfg["betas"])
        return cls(lr, **cfg)

    def build_callbacks(self, out_dir) -> list:
        from . import callbacks as cb
        c = self.doc["callbacks"]
        out = []
        if c["csv"]:
            path = Path(out_dir) / c["csv"]["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            out.append(cb.CSVLogger(str(path), separator=c["csv"]["separator"]))
        if c["early_stopping"]:
            out.append(cb.EarlyStopping(**c["early_stopping"]))
        if c["checkpoint"]:
            args = dict(c["checkpoint"])
            args["path"] = str(Path(out_dir) / args["path"])
            ck = cb.ModelCheckpoint(**args)
            Path(ck.folder()).mkdir(parents=True, exist_ok=True)   # inside out_dir (checked)
            out.append(ck)
        if c["terminate_on_nan"]:
            out.append(cb.TerminateOnNaN())
        return out

    def compile(self, in_dim: int):
        """Build the model and optimizer and compile them (seconds, cached on disk)."""
        model = self.build_model(in_dim)
        return model.compile(loss=self.doc["loss"], optimizer=self.build_optimizer(),
                             seed=self.doc["seed"], dtype=self.doc["dtype"],
                             device=self.doc["device"], metrics=self.doc["metrics"])

    def fit_args(self, data: Data) -> dict:
        v = self.doc["validation"]
        args = {"epochs": self.doc["epochs"], "batch_size": self.doc["batch_size"],
                "shuffle": self.doc["shuffle"], "verbose": self.doc["verbose"]}
        if v["use_test"]:
            args["validation_data"] = (data.X_test, data.y_test)
        elif v["split"]:
            args["validation_split"] = v["split"]
        return args


# ---------------------------------------------------------------------------------------
# load_run: read, override, check, fill defaults
# ---------------------------------------------------------------------------------------

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
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(os.fspath(path or BUILTIN_RUN)).stem)
    resolved = _check(doc, chk, base, stem or None)
    return Run(resolved, where)


def _check(doc: dict, chk: _Checker, base: Path, default_name: str | None = None) -> dict:
    from .ops.losses import LOSSES
    chk.keys(doc, TOP_KEYS, "", "a run file (top level)")
    out: dict = {}
    data_in = chk.table(doc, "data", "data")
    source = chk.choice(data_in.get("source", "digits"), "data.source", tuple(SOURCES),
                        "data source", fold=True)
    name = doc.get("name", default_name or source)
    chk.str(name, "name")
    if not _NAME.match(name):
        raise chk.error("name", f"must be letters, digits, '_', '-' or '.' (it names the "
                                f"output folder), got {name!r}")
    out["name"] = name
    out["seed"] = chk.int(doc.get("seed", 0), "seed", 0)
    out["dtype"] = chk.choice(doc.get("dtype", "float32"), "dtype", ("float32", "float64"),
                              "dtype")
    out["device"] = chk.choice(doc.get("device", "cpu"), "device", ("cpu", "cuda"), "device")
    out["threads"] = chk.int(doc.get("threads", 0), "threads", 0)
    out["epochs"] = chk.int(doc.get("epochs", 20), "epochs", 1)
    out["batch_size"] = chk.int(doc.get("batch_size", 32), "batch_size", 1)
    out["shuffle"] = chk.bool(doc.get("shuffle", True), "shuffle")
    out["verbose"] = chk.int(doc.get("verbose", 1), "verbose", 0, 2)

    kind = SOURCES[source][1]
    default_loss = "mse" if kind == "values" else "cross_entropy"
    loss = chk.choice(doc.get("loss", default_loss), "loss", tuple(LOSSES), "loss")
    out["loss"] = loss
    lossobj = LOSSES[loss]
    allowed_metrics = (["accuracy"] if lossobj.correct else []) + (
        ["mse", "mae"] if lossobj.targets == "values" else [])
    metrics = doc.get("metrics", ["accuracy"] if lossobj.correct else [])
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list):
        raise chk.error("metrics", f"must be a list of names, got {_kind(metrics)} {metrics!r}")
    for m in metrics:
        if m not in allowed_metrics:
            raise chk.error("metrics", f"metric {m!r} is not available with loss {loss!r}; available: "
                            + (", ".join(allowed_metrics) or "none"))
    out["metrics"] = list(dict.fromkeys(metrics))

    out["data"] = _check_data(data_in, source, chk, base)
    out["model"] = _check_model(chk.table(doc, "model", "model"), chk)
    val = _check_validation(chk.table(doc, "validation", "validation"), out["data"], chk)
    out["optimizer"] = _check_optimizer(chk.table(doc, "optimizer", "optimizer"), chk, val,
                                        out["metrics"])
    out["validation"] = val
    out["callbacks"] = _check_callbacks(chk.table(doc, "callbacks", "callbacks"), chk, val,
                                        out["metrics"])
    return out


def _check_data(d: dict, source: str, chk: _Checker, base: Path) -> dict:
    own, kind = SOURCES[source]
    common = {} if source in _NO_SPLIT else dict(_COMMON_SPLIT)
    allowed = ("source", *common, *own)
    chk.keys(d, allowed, "data", f"[data] with source = {source!r}")
    out = {"source": source}
    if source == "digits":
        import importlib.util
        if importlib.util.find_spec("sklearn") is None:
            raise chk.error("data.source", "the digits data set ships with scikit-learn, "
                                           "which is not installed: pip install scikit-learn "
                                           '(or pip install "graphnn[examples]")')
    if source not in _NO_SPLIT:
        ts = d.get("test_size", 0.25)
        if isinstance(ts, int) and not isinstance(ts, bool):
            out["test_size"] = chk.int(ts, "data.test_size", 0)
        else:
            out["test_size"] = chk.number(ts, "data.test_size", 0.0, False, 1.0, True)
        strat = d.get("stratify", kind == "labels")
        out["stratify"] = chk.bool(strat, "data.stratify")
        out["standardize"] = chk.bool(d.get("standardize", False), "data.standardize")
        out["seed"] = chk.int(d.get("seed", 0), "data.seed", 0)
    for k, default in own.items():
        key = f"data.{k}"
        if k not in d and default is REQUIRED:
            raise chk.error(key, f"missing: data source {source!r} needs "
                                 + ", ".join(f"data.{x}" for x, v in own.items() if v is REQUIRED))
        v = d.get(k, default)
        if k in ("path", "labels"):
            if v is None:                                  # fashion_mnist's default folder
                from .datasets import FASHION_MNIST_DIR
                v = FASHION_MNIST_DIR
            chk.str(v, key)
            p = Path(v).expanduser()
            if not p.is_absolute():
                p = (Path.cwd() if chk.where(key).startswith("--set") or chk.path is None
                     else base) / p
            if source == "fashion_mnist":
                if not p.is_dir():
                    from .datasets.loaders import _FASHION_INSTALL
                    raise chk.error(key, f"Fashion-MNIST folder {str(p)!r} not found; install "
                                         f"the data set with `{_FASHION_INSTALL}` or set "
                                         "data.path to a folder with its four IDX files")
            elif not p.is_file():
                raise chk.error(key, f"data file {str(p)!r} not found")
            v = str(p)
        elif k in ("n", "classes"):
            v = chk.int(v, key, 2 if k == "classes" else 1)
        elif k in ("train_rows", "test_rows"):
            v = chk.int(v, key, 0)
        elif k in ("noise",):
            v = chk.number(v, key, 0.0)
        elif k in ("m", "c"):
            v = chk.number(v, key)
        elif k == "turns":
            v = chk.number(v, key, 0.0, True)
        elif k == "x_range":
            if not isinstance(v, list) or len(v) != 2:
                raise chk.error(key, f"must be a pair [low, high], got {v!r}")
            v = [chk.number(v[0], key), chk.number(v[1], key)]
            if not v[0] < v[1]:
                raise chk.error(key, f"must have low < high, got {v!r}")
        elif k == "standardize":
            v = chk.bool(v, key)
        elif k in ("x_key", "y_key", "delimiter"):
            v = chk.str(v, key)
            if k == "delimiter" and len(v) != 1:
                raise chk.error(key, f"must be one character, got {v!r}")
        elif k == "label_column":
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise chk.error(key, f"must be a column index or a column name, got "
                                     f"{_kind(v)} {v!r}")
        elif k == "header":
            if v not in (True, False, "auto"):
                raise chk.error(key, f'must be true, false or "auto", got {v!r}')
        out[k] = v
    return out


_LAYER_ARGS = {"Dense": {"units": None, "activation": "linear", "use_bias": True,
                         "kernel_init": "glorot_uniform", "bias_init": "zeros"},
               "Dropout": {"rate": REQUIRED}}


def _check_model(m: dict, chk: _Checker) -> dict:
    from .init import INITIALIZERS
    from .ops.activations import ACTIVATIONS, ROWWISE
    chk.keys(m, ("name", "layers"), "model", "[model]")
    name = chk.str(m.get("name", "sequential"), "model.name")
    layers = m.get("layers", copy.deepcopy(DEFAULT_LAYERS))
    if not isinstance(layers, list) or not layers:
        raise chk.error("model.layers", "must be a non-empty list of layer tables such as "
                                        '{type = "Dense", units = 10}, got ' + repr(layers))
    out_layers = []
    for i, spec in enumerate(layers):
        key = f"model.layers.{i}"
        if not isinstance(spec, dict):
            raise chk.error(key, f"must be a table such as {{type = \"Dense\", units = 10}}, "
                                 f"got {_kind(spec)} {spec!r}")
        if "type" not in spec:
            raise chk.error(key + ".type", "missing: every layer needs a type, one of "
                                           + ", ".join(LAYER_TYPES))
        t = chk.choice(spec["type"], key + ".type", LAYER_TYPES, "layer type", fold=True)
        args = _LAYER_ARGS.get(t, {})
        chk.keys(spec, ("type", *args, "name"), key, f"a {t} layer")
        layer = {"type": t}
        for k, default in args.items():
            v = spec.get(k, default)
            if v is REQUIRED:
                raise chk.error(f"{key}.{k}", f"missing: a {t} layer needs {k}")
            if k == "units":
                if v is None and i != len(layers) - 1:
                    raise chk.error(f"{key}.units", "missing: only the last layer's units may "
                                                    "be left out (they come from the data)")
                if v is not None:
                    v = chk.int(v, f"{key}.units", 1)
            elif k == "activation":
                known = sorted(list(ACTIVATIONS) + list(ROWWISE))
                v = chk.choice(v, f"{key}.activation", known, "activation")
            elif k == "use_bias":
                v = chk.bool(v, f"{key}.use_bias")
            elif k in ("kernel_init", "bias_init"):
                if isinstance(v, str):
                    v = chk.choice(v, f"{key}.{k}", list(INITIALIZERS), "initializer")
                else:
                    v = chk.number(v, f"{key}.{k}")
            elif k == "rate":
                v = chk.number(v, f"{key}.rate", 0.0, False, 1.0, True)
            if v is not None:
                layer[k] = v
        if "name" in spec:
            layer["name"] = chk.str(spec["name"], f"{key}.name")
        out_layers.append(layer)
    if out_layers[-1]["type"] == "Dropout":
        raise chk.error(f"model.layers.{len(layers) - 1}", "a model cannot end in Dropout")
    # build the layers: names and remaining rules are checked by the layers themselves
    import graphnn as gn
    for i, spec in enumerate(out_layers):
        args = {k: v for k, v in spec.items() if k != "type"}
        if spec["type"] == "Dense":
            args.setdefault("units", 1)          # the last layer's may come from the data
        try:
            getattr(gn, spec["type"])(**args)
        except ValueError as e:
            raise chk.error(_blame(f"model.layers.{i}", list(args), str(e)), str(e)) from None
    try:
        Run({"model": {"name": name, "layers": out_layers}}).build_model(1)
    except ValueError as e:
        raise chk.error("model.layers", str(e)) from None
    return {"name": name, "layers": out_layers}


def _check_validation(v: dict, data: dict, chk: _Checker) -> dict:
    chk.keys(v, ("split", "use_test"), "validation", "[validation]")
    split = chk.number(v.get("split", 0.0), "validation.split", 0.0, False, 1.0, True)
    use_test = chk.bool(v.get("use_test", False), "validation.use_test")
    if split and use_test:
        raise chk.error("validation", "set either validation.split or validation.use_test, "
                                      "not both")
    if use_test and data.get("test_size", 1) == 0:
        raise chk.error("validation.use_test", "the run has no test set (data.test_size = 0)")
    return {"split": split, "use_test": use_test}


def _monitors(val: dict, metrics) -> list[str]:
    names = ["loss", *metrics]
    if val["split"] or val["use_test"]:
        names += [f"val_{n}" for n in names]
    return names


def _check_monitor(v, key, chk, val, metrics):
    chk.str(v, key)
    allowed = _monitors(val, metrics)
    if v not in allowed:
        hint = (" (val_* values need validation: set validation.split or validation.use_test)"
                if v.startswith("val_") and not (val["split"] or val["use_test"]) else "")
        raise chk.error(key, f"cannot monitor {v!r}; this run logs: {', '.join(allowed)}{hint}")
    return v


def _check_optimizer(o: dict, chk: _Checker, val: dict, metrics) -> dict:
    from . import optim
    name = chk.choice(o.get("name", "SGD"), "optimizer.name", OPTIMIZERS, "optimizer",
                      fold=True)
    cls = optim.OPTIMIZERS[name]
    params = _signature_defaults(cls)
    chk.keys(o, ("name", "lr", *params), "optimizer", f"[optimizer] for {name}")
    out = {"name": name}
    lr = o.get("lr", 0.1 if cls is optim.SGD else  # SGD: the built-in run's 0.1
               inspect.signature(cls.__init__).parameters["lr"].default)
    if isinstance(lr, dict):
        out["lr"] = _check_schedule(lr, chk, val, metrics)
    else:
        out["lr"] = chk.number(lr, "optimizer.lr", 0.0, True)
    for k, default in params.items():
        v = o.get(k, default)
        key = f"optimizer.{k}"
        if k == "betas":
            if not isinstance(v, list) or len(v) != 2:
                raise chk.error(key, f"must be a pair [beta1, beta2], got {v!r}")
            v = [chk.number(v[0], key), chk.number(v[1], key)]
        elif k == "nesterov":
            v = chk.bool(v, key)
        else:
            v = chk.number(v, key)
        out[k] = v
    try:
        Run({"optimizer": out}).build_optimizer()
    except ValueError as e:
        msg = str(e)
        k = _blame("optimizer", list(params), msg)
        if k == "optimizer" and isinstance(out["lr"], dict):
            k = _blame("optimizer.lr", list(out["lr"]), msg)
        raise chk.error(k, msg) from None
    return out


def _check_schedule(s: dict, chk: _Checker, val: dict, metrics) -> dict:
    from . import schedules
    key = "optimizer.lr"
    if "type" not in s:
        raise chk.error(key + ".type", "missing: a schedule table needs a type, one of "
                                       + ", ".join(SCHEDULES))
    t = chk.choice(s["type"], key + ".type", SCHEDULES, "schedule", fold=True)
    params = _signature_defaults(getattr(schedules, t))
    chk.keys(s, ("type", "lr", *params), key, f"a {t} schedule")
    if "lr" not in s:
        raise chk.error(key + ".lr", f"missing: the {t} schedule needs lr, the initial "
                                     "learning rate")
    out = {"type": t, "lr": chk.number(s["lr"], key + ".lr", 0.0, True)}
    for k, default in params.items():
        k_key = f"{key}.{k}"
        v = s.get(k, default)
        if v is REQUIRED and k == "total" and t in _PER_STEP_TOTAL:
            continue                               # the whole run, filled from the data
        if v is REQUIRED:
            raise chk.error(k_key, f"missing: the {t} schedule needs {k}")
        if k == "monitor":
            if k not in s:
                v = "val_loss" if (val["split"] or val["use_test"]) else "loss"
            v = _check_monitor(v, k_key, chk, val, metrics)
        elif k == "mode":
            v = chk.choice(v, k_key, ("min", "max"), "mode")
        elif k == "threshold_mode":
            v = chk.choice(v, k_key, ("abs", "rel"), "threshold_mode")
        elif k in ("step_size", "total", "warmup", "patience"):
            v = chk.int(v, k_key, 0)
        else:
            v = chk.number(v, k_key)
        out[k] = v
    return out


_CALLBACK_ARGS = {
    "early_stopping": {"monitor": None, "patience": 0, "min_delta": 0.0, "mode": "auto",
                       "restore_best": True},
    "checkpoint": {"path": "best.gnn", "monitor": None, "save_best_only": True, "mode": "auto"},
    "csv": {"path": "metrics.csv", "separator": ","},
}


def _inside_output(path: str, key: str, chk: _Checker) -> str:
    """A file the run writes: relative to the output folder, and never outside it."""
    p = Path(path)
    if not path.strip() or p.is_absolute() or path.startswith("~") or ".." in p.parts:
        raise chk.error(key, f"must be a file name inside the output folder (relative, no "
                             f"'..'), got {path!r}")
    return path


def _check_callbacks(c: dict, chk: _Checker, val: dict, metrics) -> dict:
    from . import callbacks as cb
    chk.keys(c, (*_CALLBACK_ARGS, "terminate_on_nan"), "callbacks", "[callbacks]")
    out = {}
    default_monitor = "val_loss" if (val["split"] or val["use_test"]) else "loss"
    for name, args in _CALLBACK_ARGS.items():
        key = f"callbacks.{name}"
        v = c.get(name, name == "csv")
        if isinstance(v, bool):
            if not v:
                out[name] = False
                continue
            v = {}
        if not isinstance(v, dict):
            raise chk.error(key, f"must be true, false or a table of options "
                                 f"({', '.join(args)}), got {_kind(v)} {v!r}")
        chk.keys(v, tuple(args), key, f"callbacks.{name}")
        res = {}
        for k, default in args.items():
            a = v.get(k, default)
            k_key = f"{key}.{k}"
            if k == "monitor":
                a = _check_monitor(a if a is not None else default_monitor, k_key, chk, val,
                                   metrics)
            elif k == "mode":
                a = chk.choice(a, k_key, ("auto", "min", "max"), "mode")
            elif k == "path":
                a = _inside_output(chk.str(a, k_key), k_key, chk)
            elif k == "separator":
                a = chk.str(a, k_key)
            elif k == "patience":
                a = chk.int(a, k_key, 0)
            elif k == "min_delta":
                a = chk.number(a, k_key, 0.0)
            else:
                a = chk.bool(a, k_key)
            res[k] = a
        if name == "checkpoint":
            import string
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(res["path"]) if f]
            except ValueError:
                fields = []                  # reported by ModelCheckpoint just below
            known = ["epoch", *_monitors(val, metrics)]
            for f in fields:
                base_name = re.split(r"[.\[]", f)[0]
                if base_name not in known and not base_name.isdigit():
                    raise chk.error(f"{key}.path", f"names {{{f}}}, which this run does not "
                                                   f"log; it can name: {', '.join(known)}")
        try:
            if name == "early_stopping":
                cb.EarlyStopping(**res)
            elif name == "checkpoint":
                cb.ModelCheckpoint(**res)
            else:
                cb.CSVLogger(res["path"], separator=res["separator"])
        except ValueError as e:
            raise chk.error(_blame(key, list(res), str(e)), str(e)) from None
        out[name] = res
    out["terminate_on_nan"] = chk.bool(c.get("terminate_on_nan", False),
                                       "callbacks.terminate_on_nan")
    return out
