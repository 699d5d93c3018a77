"""The run-file vocabulary: the built-in run, data sources with their keys and defaults,
layer types, schedules, optimizers and the top-level keys.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

#: the built-in run (``graphnn train`` without a file); examples/runs/digits.toml is a copy
BUILTIN_RUN = Path(__file__).resolve().parent.parent / "runs" / "digits.toml"

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
