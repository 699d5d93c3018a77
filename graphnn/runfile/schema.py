"""Checking a run file: every key, type, range and name, with messages that name the file (or
the --set item), the key and what is allowed, before any data is read or model compiled.

The result is the run with every default filled in (what ``run.toml`` records).
"""
from __future__ import annotations

import copy
import inspect
import math
import re
from pathlib import Path

from .build import build_model, build_optimizer
from ..validate import layer_name_problem, model_name_problem
from .errors import RunFileError, _kind
from .vocabulary import (_COMMON_SPLIT, _NAME, _NO_SPLIT, _PER_STEP_TOTAL, DEFAULT_LAYERS,
                         LAYER_TYPES, OPTIMIZERS, REQUIRED, SCHEDULES, SOURCES, TOP_KEYS)


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


def _check(doc: dict, chk: _Checker, base: Path, default_name: str | None = None) -> dict:
    from ..ops.losses import LOSSES
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
                from ..datasets import FASHION_MNIST_DIR
                v = FASHION_MNIST_DIR
            chk.str(v, key)
            p = Path(v).expanduser()
            if not p.is_absolute():
                p = (Path.cwd() if chk.where(key).startswith("--set") or chk.path is None
                     else base) / p
            if source == "fashion_mnist":
                if not p.is_dir():
                    from ..datasets.loaders import _FASHION_INSTALL
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
    from ..init import INITIALIZERS
    from ..ops.activations import ACTIVATIONS, ROWWISE
    chk.keys(m, ("name", "layers"), "model", "[model]")
    name = chk.str(m.get("name", "sequential"), "model.name")
    if model_name_problem(name):
        raise chk.error("model.name", model_name_problem(name))
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
            if layer_name_problem(layer["name"]):
                raise chk.error(f"{key}.name", layer_name_problem(layer["name"]))
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
        build_model({"model": {"name": name, "layers": out_layers}}, 1)
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
    from .. import optim
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
        build_optimizer({"optimizer": out})
    except ValueError as e:
        msg = str(e)
        k = _blame("optimizer", list(params), msg)
        if k == "optimizer" and isinstance(out["lr"], dict):
            k = _blame("optimizer.lr", list(out["lr"]), msg)
        raise chk.error(k, msg) from None
    return out


def _check_schedule(s: dict, chk: _Checker, val: dict, metrics) -> dict:
    from .. import schedules
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
    from .. import callbacks as cb
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
