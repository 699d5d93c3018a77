"""graphnn: a static graph of layers, compiled to fused Numba kernels, trained by a scheduler.

    import graphnn as gn
    model = gn.Sequential([gn.Dense(128, activation="relu"), gn.Dense(10)], input_dim=64)
    net = model.compile(loss="cross_entropy", optimizer=gn.SGD(lr=0.1), seed=0)
    net.fit(X, y, epochs=20, batch_size=32)
"""
from .io import CheckpointError
from . import callbacks, distributed, schedules
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

__version__ = "0.1.0"

__all__ = [
    "Input", "Model", "Node", "Sequential", "CompiledModel", "Dense", "Dropout", "ReLU", "LeakyReLU",
    "Sigmoid", "Tanh", "Softplus", "GELU", "Linear", "Softmax", "Add", "Concatenate",
    "SGD", "Adam", "AdamW", "RMSprop", "Optimizer", "History", "DivergenceError", "load", "CheckpointError",
    "set_num_threads", "get_num_threads", "callbacks", "distributed", "schedules", "__version__",
]
