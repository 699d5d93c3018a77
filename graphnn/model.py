"""The user-facing model: ``Model``/``Sequential`` (a graph that compiles) and
``CompiledModel`` (the compiled engine plus training and checkpoints).

This module sits on top of the engine stack and only imports downward:
graph -> plan -> generated kernels -> ``engine.Engine`` -> ``train`` (epochs) and
``io`` (checkpoint format) -> here.  Nothing below imports it.
"""
from __future__ import annotations

from typing import Sequence

from . import io, torch_weights, train
from .engine import Engine
from .graph import Graph, Input, Node


class CompiledModel(Engine):
    """A model compiled for one loss, optimizer, dtype and device; see ``Model.compile``."""

    def fit(self, X, y, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
            verbose: int = 0, validation_data=None, validation_split: float = 0.0,
            callbacks=None, class_weight=None, sample_weight=None, distributed=False):
        """Train on (X, y); returns a History (``history.history["loss"]``, one value per epoch,
        plus metrics and ``val_*`` entries).  See ``graphnn.train.fit``.

        ``distributed``: False (one process), or data-parallel over the MPI ranks this
        script was started on (``mpiexec -n 4 python script.py``): True or "whole" when
        every rank passes the whole data set, "local" when each passes only its own rows.
        ``batch_size`` is then the global batch; see ``graphnn.distributed.fit``."""
        if distributed not in (False, None, True, "whole", "local"):
            raise ValueError("distributed must be False, True, 'whole' or 'local', "
                             f"got {distributed!r}")
        if distributed:
            from . import distributed as mpi
            return mpi.fit(self, X, y, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                           verbose=verbose, validation_data=validation_data,
                           validation_split=validation_split, callbacks=callbacks,
                           class_weight=class_weight, sample_weight=sample_weight,
                           data="whole" if distributed is True else distributed)
        return train.fit(self, X, y, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                         verbose=verbose, validation_data=validation_data,
                         validation_split=validation_split, callbacks=callbacks,
                         class_weight=class_weight, sample_weight=sample_weight)

    def save(self, path) -> None:
        """Write a checkpoint (graph, parameters, optimizer state, dtype) atomically."""
        io.save(self, path)

    def to_onnx(self, path, opset: int | None = None):
        """Write the inference graph (Dropout left out) as an ONNX file; returns the
        ``onnx.ModelProto``.  Needs ``pip install "graphnn[onnx]"``; see ``graphnn.onnx_export``."""
        from . import onnx_export
        return onnx_export.export(self, path, opset=opset)

    def load_torch_weights(self, source, mapping=None) -> None:
        """Copy the weights of a PyTorch ``nn.Sequential`` of ``nn.Linear`` layers (a
        state_dict, the module, or a ``.safetensors`` file of one) into the Dense layers;
        see ``graphnn.torch_weights``."""
        torch_weights.load_torch_weights(self, source, mapping)


def load(path) -> CompiledModel:
    """Rebuild the compiled model saved in ``path``: same outputs, and ``fit`` resumes exactly."""
    return io.load(path, CompiledModel, Model)


class Model(Graph):
    """A network: the nodes between one ``Input`` and one output node.

    >>> x = Input(4); model = Model(x, Dense(2)(x))
    """

    def compile(self, loss: str = "mse", optimizer=None, seed: int | None = 0,
                dtype="float32", device: str = "cpu", metrics=None,
                verbose: int = 0) -> CompiledModel:
        """Lower the graph, generate its kernels and return a trainable network.

        ``metrics``: names reported by ``fit``/``evaluate`` besides the loss, from
        "accuracy" (classification losses), "mse" and "mae" (value targets).
        ``verbose=1``: say so (on stderr) when the kernels must be compiled, not loaded.
        """
        return CompiledModel(self, loss=loss, optimizer=optimizer, seed=seed,
                             dtype=dtype, device=device, metrics=metrics, verbose=verbose)


def Sequential(layers: Sequence[Node], input_dim: int | None = None,
               name: str = "sequential") -> Model:
    """A chain of layers: ``Sequential([Dense(128, activation="relu"), Dense(10)], input_dim=64)``."""
    layers = list(layers)
    if layers and isinstance(layers[0], Input):
        if input_dim is not None and input_dim != layers[0].width:
            raise ValueError(f"input_dim={input_dim} disagrees with the first Input "
                             f"of width {layers[0].width}")
        x, layers = layers[0], layers[1:]
    elif input_dim is None:
        raise ValueError("Sequential needs input_dim=<number of features> "
                         "(or a gn.Input as its first layer)")
    else:
        x = Input(input_dim)
    if not layers:
        raise ValueError("Sequential needs at least one layer after the input")
    h: Node = x
    for layer in layers:
        if not isinstance(layer, Node):
            raise ValueError(f"Sequential takes graphnn layers, got {layer!r}")
        h = layer(h)
    return Model(x, h, name=name)
