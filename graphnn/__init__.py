"""graphnn: a static graph of layers, compiled to fused Numba kernels, trained by a scheduler.

    import graphnn as gn
    model = gn.Sequential([gn.Dense(128, activation="relu"), gn.Dense(10)], input_dim=64)
    net = model.compile(loss="cross_entropy", optimizer=gn.SGD(lr=0.1), seed=0)
    net.fit(X, y, epochs=20, batch_size=32)
"""
from .io import CheckpointError
from . import callbacks, schedules
from .graph import Input, Node
from .model import CompiledModel, Model, Sequential, load
from .ops.activations import GELU, LeakyReLU, Linear, ReLU, Sigmoid, Softplus, Tanh
from .ops.dense import Dense
from .ops.dropout import Dropout
from .ops.merge import Add, Concatenate
from .ops.softmax import Softmax
from .optim import SGD, Adam, AdamW, Optimizer, RMSprop
from .threads import get_num_threads, set_num_threads
from .train import DivergenceError, History

from .version import __version__

__all__ = [
    "Input", "Model", "Node", "Sequential", "CompiledModel", "Dense", "Dropout", "ReLU", "LeakyReLU",
    "Sigmoid", "Tanh", "Softplus", "GELU", "Linear", "Softmax", "Add", "Concatenate",
    "SGD", "Adam", "AdamW", "RMSprop", "Optimizer", "History", "DivergenceError", "load", "CheckpointError",
    "set_num_threads", "get_num_threads", "callbacks", "distributed", "schedules", "__version__",
    "check_gradients", "datasets",
]

#: Submodules and functions imported on first use, so that ``import graphnn`` stays fast
#: while ``gn.datasets.make_moons`` and ``gn.check_gradients`` work after ``import graphnn as gn``.
_LAZY = {"datasets": ("graphnn.datasets", None), "distributed": ("graphnn.distributed", None),
         "runfile": ("graphnn.runfile", None),
         "plots": ("graphnn.plots", None), "check_gradients": ("graphnn.gradcheck", "check_gradients")}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = importlib.import_module(module)
        if attr is not None:
            value = getattr(value, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'graphnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
