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


The package, one module per concern: ``vocabulary`` (the built-in run, sources, layer types),
``overrides`` (TOML in and out, ``--set``), ``schema`` (the checks), ``build`` (model,
optimizer and callbacks from a checked run), ``memory`` (estimates before allocating) and
``run`` (``Run``, ``Data``, ``load_run``).
"""
from .errors import RunFileError
from .overrides import apply_sets, dumps, parse_set, parse_value, read_toml, tomllib
from .run import Data, Run, load_run
from .vocabulary import BUILTIN_RUN, LAYER_TYPES, SCHEDULES, SOURCES

__all__ = ["RunFileError", "Run", "Data", "load_run", "parse_set", "parse_value", "apply_sets",
           "dumps", "read_toml", "SOURCES", "LAYER_TYPES", "SCHEDULES", "BUILTIN_RUN"]
