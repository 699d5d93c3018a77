"""ONNX export: a compiled model's inference graph as an ONNX file any ONNX runtime can serve.

The graph is walked in topological order and each layer becomes ONNX nodes through a
table keyed by layer type (``LAYERS``); activations, whether a ``Dense`` argument or a
node of their own, go through a second table keyed by activation name (``ACTIVATIONS``).
What is written computes what ``predict`` returns: ``Dropout`` is left out (the identity
outside training) and a final softmax or sigmoid is kept.  The batch dimension is
dynamic ("batch"); parameters become initializers in the model's dtype.

Names in the file are C identifiers, unique in the file: the graph input is named after
the ``Input`` layer ("input" by default), the output is "output", a parameter
"dense.weight" becomes the initializer "dense_weight" (its ``doc_string`` keeps the
graphnn name).  ``onnx`` is imported only here, and only when a model is exported.
"""
from __future__ import annotations

import re

import numpy as np

from .graph import Graph, Input
from .ops import activations as acts
from .ops.dense import Dense
from .ops.dropout import Dropout
from .ops.merge import Add, Concatenate
from .ops.softmax import Softmax

INSTALL = 'pip install "graphnn[onnx]"'
MIN_OPSET = 13        # Softmax over the last axis alone (older opsets flatten the trailing axes)
DEFAULT_OPSET = 17    # what the file declares unless a layer needs more (widely served)
GELU_OPSET = 20       # the Gelu operator; below, gelu is written with Erf
OUTPUT = "output"


def require_onnx():
    """The ``onnx`` module, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"ONNX export needs the onnx package: {INSTALL}") from e
    return onnx


class _Names:
    """Unique C-identifier names: characters outside [A-Za-z0-9_] become '_', a clash
    gets a suffix _1, _2, ..."""

    def __init__(self):
        self.taken: set[str] = set()

    def __call__(self, want: str) -> str:
        stem = re.sub(r"[^A-Za-z0-9_]", "_", want) or "_"
        if stem[0].isdigit():
            stem = "_" + stem
        name, k = stem, 0
        while name in self.taken:
            k += 1
            name = f"{stem}_{k}"
        self.taken.add(name)
        return name


class _Builder:
    """Collects ONNX nodes and initializers while the graph is walked."""

    def __init__(self, onnx, params: dict, dtype: np.dtype, opset: int):
        self.onnx = onnx
        self.params = params
        self.dtype = dtype
        self.opset = opset
        self.values = _Names()          # tensor names (inputs, outputs, initializers)
        self.node_names = _Names()
        self.nodes: list = []
        self.initializers: list = []
        self._consts: dict[float, str] = {}

    def op(self, op_type: str, inputs: list[str], layer: str, **attrs) -> str:
        """Append one node; returns the name of its output."""
        out = self.values(f"{layer}_{op_type.lower()}")
        self.nodes.append(self.onnx.helper.make_node(
            op_type, inputs, [out], name=self.node_names(f"{layer}_{op_type}"), **attrs))
        return out

    def param(self, key: str, shape: tuple) -> str:
        """The initializer holding the graphnn parameter ``key`` ("dense.weight")."""
        if key not in self.params:
            raise ValueError(f"the model has no parameter {key!r}; its parameters are "
                             f"{', '.join(self.params) or 'none'}")
        value = np.asarray(self.params[key])
        if value.shape != tuple(shape):
            raise ValueError(f"parameter {key!r} has shape {value.shape}, the graph "
                             f"needs {tuple(shape)}")
        return self._initializer(key, value, f"graphnn parameter {key}")

    def const(self, value: float) -> str:
        """A scalar constant in the model's dtype (shared by every node that uses it)."""
        if value not in self._consts:
            self._consts[value] = self._initializer(
                f"const_{value:g}", np.asarray(value, self.dtype), "constant")
        return self._consts[value]

    def _initializer(self, want: str, array: np.ndarray, doc: str) -> str:
        name = self.values(want)
        tensor = self.onnx.numpy_helper.from_array(
            np.ascontiguousarray(array, dtype=self.dtype), name)
        tensor.doc_string = doc
        self.initializers.append(tensor)
        return name


# -- activations: name -> rule(builder, x, layer) -> output name ----------------------------

def _unary(op_type: str, **attrs):
    return lambda b, x, layer: b.op(op_type, [x], layer, **attrs)


def _gelu(b: _Builder, x: str, layer: str) -> str:
    """x Phi(x), erf form: the Gelu operator from opset 20, below it x (1 + erf(x/sqrt 2)) / 2."""
    if b.opset >= GELU_OPSET:
        return b.op("Gelu", [x], layer, approximate="none")
    sqrt_half = acts.ACTIVATIONS["gelu"].constants["SQRT_HALF"]
    e = b.op("Erf", [b.op("Mul", [x, b.const(sqrt_half)], layer)], layer)
    return b.op("Mul", [b.op("Mul", [x, b.op("Add", [e, b.const(1.0)], layer)], layer),
                        b.const(0.5)], layer)


ACTIVATIONS = {
    "linear": lambda b, x, layer: x,
    "relu": _unary("Relu"),
    "leaky_relu": _unary("LeakyRelu", alpha=acts.ACTIVATIONS["leaky_relu"].constants["LEAKY_SLOPE"]),
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "softplus": _unary("Softplus"),
    "gelu": _gelu,
    "softmax": _unary("Softmax", axis=-1),        # over each row
}


# -- layers: type -> rule(builder, node, layer name, input names) -> output name ------------

def _dense(b: _Builder, node: Dense, layer: str, ins: list[str]) -> str:
    """y = act(x @ W + b): one Gemm (W is (in, out), as in ONNX), then the activation."""
    shapes = node.param_shapes([node.inputs[0].width])
    operands = [ins[0], b.param(f"{layer}.weight", shapes["weight"])]
    if node.use_bias:
        operands.append(b.param(f"{layer}.bias", shapes["bias"]))
    return ACTIVATIONS[node.activation](b, b.op("Gemm", operands, layer), layer)


def _add(b: _Builder, node: Add, layer: str, ins: list[str]) -> str:
    """x1 + x2 + ..., summed left to right as graphnn does."""
    total = ins[0]
    for x in ins[1:]:
        total = b.op("Add", [total, x], layer)
    return total


LAYERS = {
    Dense: _dense,
    Dropout: lambda b, node, layer, ins: ins[0],          # the identity outside training
    Add: _add,
    Concatenate: lambda b, node, layer, ins: b.op("Concat", ins, layer, axis=1),
    **{cls: lambda b, node, layer, ins: ACTIVATIONS[node.activation](b, ins[0], layer)
       for cls in (acts.ReLU, acts.LeakyReLU, acts.Sigmoid, acts.Tanh, acts.Softplus,
                   acts.GELU, acts.Linear, Softmax)},
}


def _activations_used(graph: Graph) -> set[str]:
    return {getattr(n, "activation", None) for n in graph.nodes}


def _check_opset(onnx, opset, graph: Graph) -> int:
    if opset is None:
        return GELU_OPSET if "gelu" in _activations_used(graph) else DEFAULT_OPSET
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an integer from {MIN_OPSET} to {newest} (the newest "
                         f"this onnx {onnx.__version__} knows), got {opset!r}")
    return int(opset)


def to_model(graph: Graph, params: dict, dtype, opset: int | None = None):
    """The ONNX ``ModelProto`` of ``graph`` with parameters ``params`` ("dense.weight" ->
    array of shape (in, out), ...), in ``dtype`` (float32 or float64).

    ``opset``: the ONNX operator set declared; None picks 17, or 20 when a gelu needs the
    Gelu operator.  The model passes ``onnx.checker.check_model(..., full_check=True)``.
    """
    onnx = require_onnx()
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"ONNX export writes float32 or float64 models, got {dtype}")
    opset = _check_opset(onnx, opset, graph)
    b = _Builder(onnx, params, dtype, opset)
    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    output_name = b.values(OUTPUT)
    input_name = b.values(graph.names[graph.input])
    out: dict = {}
    for node in graph.nodes:
        if isinstance(node, Input):
            out[node] = input_name
            continue
        rule = LAYERS.get(type(node))
        if rule is None:
            known = ", ".join(sorted(cls.__name__ for cls in LAYERS))
            raise ValueError(f"ONNX export has no rule for {node._label()} "
                             f"({type(node).__name__}); layers it exports: Input, {known}")
        out[node] = rule(b, node, graph.names[node], [out[i] for i in node.inputs])
    last = out[graph.output]
    if b.nodes and b.nodes[-1].output[0] == last:
        b.nodes[-1].output[0] = output_name          # the last node writes the output
    else:                                            # the output is an alias (Dropout, linear)
        b.nodes.append(onnx.helper.make_node("Identity", [last], [output_name],
                                             name=b.node_names("output_Identity")))
    g = onnx.helper.make_graph(
        b.nodes, _Names()(graph.name or "graph"),
        [onnx.helper.make_tensor_value_info(input_name, elem, ["batch", graph.input.width])],
        [onnx.helper.make_tensor_value_info(output_name, elem, ["batch", graph.output.width])],
        initializer=b.initializers)
    from .version import __version__
    model = onnx.helper.make_model(
        g, opset_imports=[onnx.helper.make_opsetid("", opset)], producer_name="graphnn",
        producer_version=__version__,
        doc_string=f"graphnn model {graph.name!r}: the inference graph (Dropout left out)")
    # onnx writes its newest IR version; runtimes accept the one the opset needs
    model.ir_version = onnx.helper.find_min_ir_version_for(model.opset_import)
    onnx.checker.check_model(model, full_check=True)
    return model


def export(net, path, opset: int | None = None):
    """Write ``net``'s inference graph to ``path`` as an ONNX file; returns the ModelProto.

    The model is built and checked before the file is opened, so a failure leaves no file.
    """
    model = to_model(net.model, net.get_params(), net.dtype, opset)
    data = model.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    return model
