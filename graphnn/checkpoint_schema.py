"""What a checkpoint's header may hold, checked field by field before anything is built.

A checkpoint comes from a file, so its header is hostile input.  ``check_metadata``
reads every field of the header's ``__metadata__`` (a str -> str map; JSON where the
value is structured) against the schema below and returns plain, validated values:
the rebuilt graph, the optimizer, dtype, loss, counters and the generator state.
Node, optimizer and schedule types come from fixed tables, names must match a
pattern, numbers must be in range; any failure is a ``CheckpointError`` that names
the field.  Nothing read from a header is executed, imported or looked up by name
outside those tables.

``describe_graph`` / ``describe_optimizer`` are the inverse, used when saving; they
apply the same name rules, so graphnn never writes a file it would refuse to read.
"""
from __future__ import annotations

import inspect
import json
import math
import re

import numpy as np

from .graph import Graph, Input
from .ops import activations, dense, dropout, merge, softmax
from .ops.losses import LOSSES
from .optim import OPTIMIZERS, Optimizer
from . import schedules
from .validate import layer_name_problem, model_name_problem

FORMAT_VERSION = 2            # 1: graphnn 0.1's own layout (magic b"GRAPHNN\0"); 2: safetensors
DTYPES = {"float32": "F32", "float64": "F64"}      # model dtype -> safetensors dtype name

NODE_TYPES = {cls.__name__: cls for cls in (
    Input, dense.Dense, dropout.Dropout, merge.Add, merge.Concatenate, softmax.Softmax,
    activations.ReLU, activations.LeakyReLU, activations.Sigmoid, activations.Tanh,
    activations.Softplus, activations.GELU, activations.Linear)}
SCHEDULE_TYPES = {cls.__name__: cls for cls in (
    schedules.Constant, schedules.StepDecay, schedules.ExponentialDecay,
    schedules.CosineDecay, schedules.WarmupCosine, schedules.ReduceOnPlateau)}

MAX_NODES = 100_000
MAX_WIDTH = 2 ** 31 - 1       # Input width, Dense units
MAX_COUNT = 2 ** 62           # step, epoch (the kernels count steps in int64)
_COUNT = re.compile(r"(0|[1-9][0-9]{0,18})\Z")


class CheckpointError(ValueError):
    """The file is not a readable graphnn checkpoint (truncated, corrupted, foreign or
    with a header that breaks the schema)."""


def _fail(field: str, problem: str):
    raise CheckpointError(f"checkpoint field {field}: {problem}")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- saving -----------------------------------------------------------------------------
def describe_graph(model: Graph) -> dict:
    """The graph as JSON-safe data: name, nodes (name, type, config, inputs), input, output."""
    problem = model_name_problem(model.name)
    if problem:
        raise ValueError(f"cannot save the model: its name {problem}")
    nodes = []
    for n in model.nodes:
        if NODE_TYPES.get(type(n).__name__) is not type(n):
            raise ValueError(f"cannot save a model containing {type(n).__name__} nodes")
        problem = layer_name_problem(model.names[n])
        if problem:
            raise ValueError(f"cannot save the model: layer name {problem}")
        nodes.append({"name": model.names[n], "type": type(n).__name__, "config": n.config(),
                      "inputs": [model.names[i] for i in n.inputs]})
    return {"name": model.name, "nodes": nodes, "input": model.names[model.input],
            "output": model.names[model.output]}


def describe_optimizer(optimizer: Optimizer) -> dict:
    """``optimizer.config()`` with infinite floats (ReduceOnPlateau's initial ``best``)
    written as the strings "inf" / "-inf", so the JSON is standard."""
    if OPTIMIZERS.get(type(optimizer).__name__) is not type(optimizer):
        raise ValueError(f"cannot save a model trained with {type(optimizer).__name__}: "
                         f"checkpoints hold the built-in optimizers ({', '.join(OPTIMIZERS)})")
    kind = type(optimizer.schedule).__name__
    if SCHEDULE_TYPES.get(kind) is not type(optimizer.schedule):
        raise ValueError(f"cannot save a model with the schedule {kind}: checkpoints hold the "
                         f"built-in schedules ({', '.join(SCHEDULE_TYPES)})")
    cfg = optimizer.config()
    if isinstance(cfg.get("lr"), dict):
        cfg["lr"] = {k: (("inf" if v > 0 else "-inf") if isinstance(v, float) and math.isinf(v)
                         else v) for k, v in cfg["lr"].items()}
    return cfg


# -- reading ----------------------------------------------------------------------------
def check_metadata(meta: dict, graph_cls=Graph) -> dict:
    """Validate every field of a checkpoint's ``__metadata__`` (after its checksum);
    returns graph (built as ``graph_cls``), loss, optimizer, dtype, seed, step, epoch,
    rng (a generator state), dropout_key and graphnn_version."""
    required = ("graphnn_checkpoint", "graphnn_version", "dtype", "loss", "optimizer", "graph",
                "seed", "step", "epoch", "rng", "dropout_key", "sha256")
    for key in required:
        if key not in meta:
            _fail(key, "is missing")
    extra = sorted(set(meta) - set(required))
    if extra:
        _fail(extra[0], "is not part of a graphnn checkpoint")
    version = meta["graphnn_version"]
    if len(version) > 64 or not version.isprintable():
        _fail("graphnn_version", f"{_short(version)} is not a version string")
    dtype = meta["dtype"]
    if dtype not in DTYPES:
        _fail("dtype", f"{_short(dtype)} is not one of {', '.join(DTYPES)}")
    if meta["loss"] not in LOSSES:
        _fail("loss", f"{_short(meta['loss'])} is not a known loss ({', '.join(LOSSES)})")
    seed = _json(meta, "seed")
    if seed is not None and not _int_in(seed, 0, 2 ** 128):
        _fail("seed", f"must be null or an integer in [0, 2**128), got {_short(seed)}")
    return {
        "graphnn_version": version, "dtype": np.dtype(dtype), "loss": meta["loss"], "seed": seed,
        "step": _count(meta, "step", MAX_COUNT), "epoch": _count(meta, "epoch", MAX_COUNT),
        "dropout_key": _count(meta, "dropout_key", 2 ** 31),
        "rng": _check_rng(_json(meta, "rng")),
        "optimizer": _build_optimizer(_json(meta, "optimizer")),
        "graph": build_graph(_json(meta, "graph"), graph_cls),
    }


def _json(meta: dict, key: str):
    try:
        return json.loads(meta[key], parse_constant=_no_constant, parse_float=finite_float)
    except (ValueError, RecursionError) as e:
        _fail(key, f"is not valid JSON ({e})")


def _no_constant(name):
    raise ValueError(f"{name} is not allowed")


def finite_float(text: str) -> float:
    """A JSON number as a float; ``1e400`` (infinite as a float) is refused."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:30]} is out of range")
    return value


def _int_in(value, low: int, high: int) -> bool:
    return type(value) is int and low <= value < high


def _count(meta: dict, key: str, high: int) -> int:
    text = meta[key]
    if not _COUNT.match(text) or int(text) >= high:
        _fail(key, f"must be a whole number in [0, {high}), got {_short(text)}")
    return int(text)


def _check_rng(state) -> dict:
    """A PCG64 state as ``numpy.random.PCG64().state`` gives it."""
    if not isinstance(state, dict) or set(state) != {"bit_generator", "state", "has_uint32",
                                                       "uinteger"}:
        _fail("rng", "must be a PCG64 generator state {bit_generator, state, has_uint32, "
                     f"uinteger}}, got {_short(state)}")
    if state["bit_generator"] != "PCG64":
        _fail("rng.bit_generator", f"must be 'PCG64', got {_short(state['bit_generator'])}")
    inner = state["state"]
    if not isinstance(inner, dict) or set(inner) != {"state", "inc"}:
        _fail("rng.state", f"must be {{state, inc}}, got {_short(inner)}")
    for key in ("state", "inc"):
        if not _int_in(inner[key], 0, 2 ** 128):
            _fail(f"rng.state.{key}", f"must be an integer in [0, 2**128), got {_short(inner[key])}")
    if not _int_in(state["has_uint32"], 0, 2):
        _fail("rng.has_uint32", f"must be 0 or 1, got {_short(state['has_uint32'])}")
    if not _int_in(state["uinteger"], 0, 2 ** 32):
        _fail("rng.uinteger", f"must be an integer in [0, 2**32), got {_short(state['uinteger'])}")
    return state


def _arguments(cls, cfg: dict, field: str, skip: tuple) -> dict:
    """Constructor arguments of ``cls`` from ``cfg``: known names only, each of the JSON
    type its default has (a bool for a bool, a number for a number, a list for a tuple)."""
    params = inspect.signature(cls.__init__).parameters
    out = {}
    for key, value in cfg.items():
        p = params.get(key)
        if p is None or key in ("self", "name") + skip or p.kind in (p.VAR_POSITIONAL,
                                                                     p.VAR_KEYWORD):
            _fail(f"{field}.{key}", f"is not an argument of {cls.__name__}")
        default = p.default
        if isinstance(default, bool) and not isinstance(value, bool):
            _fail(f"{field}.{key}", f"must be true or false, got {_short(value)}")
        if _is_number(default) and not _is_number(value):
            _fail(f"{field}.{key}", f"must be a number, got {_short(value)}")
        if isinstance(default, tuple):
            if not isinstance(value, list):
                _fail(f"{field}.{key}", f"must be a list, got {_short(value)}")
            value = tuple(value)
        out[key] = value
    return out


def _construct(cls, field: str, *args, **kwargs):
    try:
        return cls(*args, **kwargs)
    except (ValueError, TypeError) as e:
        _fail(field, str(e))


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _pick(cfg, field: str, kind_key: str, table: dict, first: str):
    """The class, first argument and remaining fields of ``{kind_key: <name in table>,
    first: value, ...}``."""
    if not isinstance(cfg, dict):
        _fail(field, f"must be an object, got {_short(cfg)}")
    cfg = dict(cfg)
    kind = cfg.pop(kind_key, None)
    cls = table.get(kind) if isinstance(kind, str) else None
    if cls is None:
        _fail(f"{field}.{kind_key}", f"{_short(kind)} is not one of {', '.join(table)}")
    if first not in cfg:
        _fail(f"{field}.{first}", "is missing")
    return cls, cfg.pop(first), cfg


def _build_optimizer(cfg) -> Optimizer:
    cls, lr, cfg = _pick(cfg, "optimizer", "name", OPTIMIZERS, "lr")
    lr = _build_schedule(lr) if isinstance(lr, dict) else lr
    if not isinstance(lr, schedules.Schedule) and not _is_number(lr):
        _fail("optimizer.lr", f"must be a number or a schedule object, got {_short(lr)}")
    return _construct(cls, "optimizer", lr, **_arguments(cls, cfg, "optimizer", ("lr",)))


# running state a schedule keeps besides its constructor arguments: name -> check
_SCHEDULE_STATE = {"ReduceOnPlateau": {
    "lr": lambda v: _is_number(v) and v > 0,
    "best": lambda v: v in ("inf", "-inf") or _is_number(v),
    "bad_epochs": lambda v: _int_in(v, 0, MAX_COUNT)}}


def _build_schedule(cfg: dict):
    cls, initial, cfg = _pick(cfg, "optimizer.lr", "type", SCHEDULE_TYPES, "initial")
    state_checks = _SCHEDULE_STATE.get(cls.__name__, {})
    state = {k: cfg.pop(k) for k in list(cfg) if k in state_checks}
    sched = _construct(cls, "optimizer.lr", initial,
                       **_arguments(cls, cfg, "optimizer.lr", ("lr",)))
    for key, value in state.items():
        if not state_checks[key](value):
            _fail(f"optimizer.lr.{key}", f"has an impossible value {_short(value)}")
        setattr(sched, key, float(value) if isinstance(value, str) else value)
    return sched


def build_graph(desc, graph_cls=Graph) -> Graph:
    """Rebuild a graph from ``describe_graph``'s output, checking it as hostile input."""
    if not isinstance(desc, dict) or set(desc) != {"name", "nodes", "input", "output"}:
        _fail("graph", f"must be an object with name, nodes, input and output, got {_short(desc)}")
    problem = model_name_problem(desc["name"])
    if problem:
        _fail("graph.name", problem)
    specs = desc["nodes"]
    if not isinstance(specs, list) or not 1 <= len(specs) <= MAX_NODES:
        _fail("graph.nodes", f"must be a list of 1 to {MAX_NODES} nodes")
    built = {}
    for k, spec in enumerate(specs):
        built_name = _build_node(spec, f"graph.nodes[{k}]", built)
        if built_name == desc["input"] and not isinstance(built[built_name], Input):
            _fail("graph.input", f"{_short(desc['input'])} is not an Input node")
    inputs = [n for n in built.values() if isinstance(n, Input)]
    if len(inputs) != 1 or not isinstance(desc["input"], str) or desc["input"] not in built:
        _fail("graph.input", "must name the graph's one Input node")
    if not isinstance(desc["output"], str) or desc["output"] not in built:
        _fail("graph.output", f"{_short(desc['output'])} is not a node of the graph")
    try:
        graph = graph_cls(built[desc["input"]], built[desc["output"]], name=desc["name"])
    except ValueError as e:
        _fail("graph", str(e))
    if len(graph.nodes) != len(built):
        loose = [name for name, n in built.items() if n not in graph.names]
        _fail("graph.nodes", f"{', '.join(loose[:5])} do not lead to the output")
    return graph


def _build_node(spec, field: str, built: dict) -> str:
    if not isinstance(spec, dict) or set(spec) != {"name", "type", "config", "inputs"}:
        _fail(field, f"must be an object with name, type, config and inputs, got {_short(spec)}")
    name, kind, config, inputs = spec["name"], spec["type"], spec["config"], spec["inputs"]
    problem = layer_name_problem(name)
    if problem:
        _fail(f"{field}.name", problem)
    if name in built:
        _fail(f"{field}.name", f"{name!r} names two nodes")
    cls = NODE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        _fail(f"{field}.type", f"unknown node type {_short(kind)}; known: {', '.join(NODE_TYPES)}")
    if not isinstance(config, dict):
        _fail(f"{field}.config", f"must be an object, got {_short(config)}")
    for key in ("width", "units"):
        if key in config and not _int_in(config[key], 1, MAX_WIDTH + 1):
            _fail(f"{field}.config.{key}", f"must be an integer in [1, {MAX_WIDTH}], "
                                           f"got {_short(config[key])}")
    args = _arguments(cls, config, f"{field}.config", ())
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        _fail(f"{field}.inputs", f"must be a list of node names, got {_short(inputs)}")
    missing = [i for i in inputs if i not in built]
    if missing:
        _fail(f"{field}.inputs", f"{_short(missing[0])} is not an earlier node")
    if cls is Input:
        if inputs:
            _fail(f"{field}.inputs", "an Input node has no inputs")
        node = _construct(cls, field, name=name, **args)
    else:
        node = _construct(cls, field, name=name, **args)
        ins = [built[i] for i in inputs]
        try:
            node(ins if len(ins) > 1 or getattr(cls, "n_inputs", 1) is None else ins[0])
        except (ValueError, IndexError) as e:
            _fail(f"{field}.inputs", str(e) or "wrong number of inputs")
    built[name] = node
    return name

