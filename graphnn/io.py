"""Checkpoints: one file with the graph, parameters, optimizer state, dtype and version.

Layout (little-endian):
    8 bytes   magic b"GRAPHNN\\0"
    4 bytes   format version (uint32)
    8 bytes   header length H (uint64)
    H bytes   header: JSON (graph description, loss, optimizer config, dtype, step,
              the shuffling generator's state, array table)
    ...       the arrays' raw bytes (parameters, optimizer state), as the table says
    32 bytes  SHA-256 of everything before it

Written atomically (temporary file in the same directory, fsync, rename), so a crash
mid-write leaves the previous checkpoint intact.  Read back only after the checksum
verifies; the header is JSON and node types come from a fixed table, so loading a
file never executes code from it.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile

import numpy as np

from .graph import Graph, Input
from .ops import activations, dense, dropout, merge, softmax
from .optim import from_config

MAGIC = b"GRAPHNN\0"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQ")

NODE_TYPES = {cls.__name__: cls for cls in (
    Input, dense.Dense, dropout.Dropout, merge.Add, merge.Concatenate, softmax.Softmax,
    activations.ReLU, activations.LeakyReLU, activations.Sigmoid, activations.Tanh,
    activations.Softplus, activations.GELU, activations.Linear)}


class CheckpointError(ValueError):
    """The file is not a readable graphnn checkpoint (truncated, corrupted or foreign)."""


def describe_graph(model: Graph) -> dict:
    nodes = []
    for n in model.nodes:
        if type(n).__name__ not in NODE_TYPES:
            raise ValueError(f"cannot save a model containing {type(n).__name__} nodes")
        nodes.append({"name": model.names[n], "type": type(n).__name__, "config": n.config(),
                      "inputs": [model.names[i] for i in n.inputs]})
    return {"name": model.name, "nodes": nodes, "input": model.names[model.input],
            "output": model.names[model.output]}


def build_graph(desc: dict, graph_cls=Graph) -> Graph:
    built = {}
    for spec in desc["nodes"]:
        cls = NODE_TYPES.get(spec["type"])
        if cls is None:
            raise CheckpointError(f"unknown node type {spec['type']!r} in checkpoint")
        if cls is Input:
            node = Input(spec["config"]["width"], name=spec["name"])
        else:
            node = cls(**spec["config"], name=spec["name"])
            ins = [built[i] for i in spec["inputs"]]
            node(ins if len(ins) > 1 or getattr(cls, "n_inputs", 1) is None else ins[0])
        built[spec["name"]] = node
    return graph_cls(built[desc["input"]], built[desc["output"]], name=desc["name"])


def save(net, path) -> None:
    """Write ``net`` to ``path`` atomically."""
    from . import __version__
    host = net.backend.to_host
    arrays = {"params": host(net.params), "state": host(net.state)}
    table, offset = [], 0
    for name, arr in arrays.items():
        table.append({"name": name, "offset": offset, "nbytes": arr.nbytes, "size": arr.size})
        offset += arr.nbytes
    header = {
        "graphnn": __version__, "dtype": net.dtype.name, "loss": net.loss.name,
        "optimizer": net.optimizer.config(), "graph": describe_graph(net.model),
        "seed": net.seed, "step": net.step, "epoch": getattr(net, "epoch", 0),
        "rng": net.rng.bit_generator.state, "arrays": table,
    }
    head = json.dumps(header).encode()
    parts = [_PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)), head] + [
        np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        for a in arrays.values()]
    body = b"".join(parts)
    data = body + hashlib.sha256(body).digest()
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".graphnn-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:                                  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def read(path) -> tuple[dict, dict]:
    """Header and arrays of a checkpoint, after verifying magic, version and checksum."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    where = f"{path!r} is not a graphnn checkpoint"
    if len(data) < _PREFIX.size + 32:
        raise CheckpointError(f"{where}: only {len(data)} bytes (truncated?)")
    magic, version, hlen = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError(f"{where}: wrong magic bytes {magic!r}")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path!r} has checkpoint format {version}; this graphnn reads "
                              f"format {FORMAT_VERSION}")
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{path!r} is corrupted or truncated: its checksum does not match")
    try:
        header = json.loads(body[_PREFIX.size:_PREFIX.size + hlen])
        dtype = np.dtype(header["dtype"]).newbyteorder("<")
        start = _PREFIX.size + hlen
        arrays = {}
        for entry in header["arrays"]:
            lo = start + entry["offset"]
            raw = body[lo:lo + entry["nbytes"]]
            if len(raw) != entry["nbytes"] or entry["nbytes"] != entry["size"] * dtype.itemsize:
                raise CheckpointError(f"{path!r}: array {entry['name']} is incomplete")
            arrays[entry["name"]] = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path!r}: malformed checkpoint header ({e})") from None
    return header, arrays


def load(path, cls, graph_cls=Graph):
    """Rebuild the compiled model saved in ``path`` as a ``cls`` (``model.CompiledModel``;
    passed in because this module sits below it): same outputs, ``fit`` resumes exactly."""
    header, arrays = read(path)
    try:
        model = build_graph(header["graph"], graph_cls)
        optimizer = from_config(header["optimizer"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path!r}: malformed graph or optimizer description ({e})") from None
    net = cls(model, loss=header["loss"], optimizer=optimizer, seed=header["seed"],
                        dtype=header["dtype"])
    if arrays["params"].size != net.plan.n_params or arrays["state"].size != net.state.size:
        raise CheckpointError(f"{path!r}: stored arrays do not fit the stored graph")
    net._put(net.params, arrays["params"])
    net._put(net.state, arrays["state"])
    net.step = int(header["step"])
    net.epoch = int(header.get("epoch", 0))
    net.rng.bit_generator.state = header["rng"]
    return net
