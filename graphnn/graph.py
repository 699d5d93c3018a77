"""The static graph: nodes, how they connect, shape inference and structure checks.

Every sample is a vector, so a node's shape is one integer, its width; a batch of
samples is a matrix (rows, width).  Shapes are inferred the moment a node is
connected (``Dense(10)(x)``), so a mismatch is reported where it is made.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from .validate import layer_name_problem, model_name_problem, positive_int



class Node:
    """One vertex of the graph: a layer applied to the outputs of other nodes.

    A node is connected once (calling it on its inputs); a layer object cannot be
    reused at two places in a graph.  Subclasses define ``kind`` (the default name
    stem), ``out_width(in_widths)`` (the shape rule) and the lowering hooks read by
    the compiler (``forward``/``backward``, see ``graphnn.compile.plan``).
    """

    kind = "node"
    n_inputs: int | None = 1          # None: any number >= 2

    def __init__(self, name: str | None = None):
        if name is not None and layer_name_problem(name):
            raise ValueError(f"layer name not valid: {layer_name_problem(name)}")
        self.name = name
        self.inputs: list[Node] = []
        self.width: int | None = None
        self._connected = False

    # -- connection -----------------------------------------------------------------
    def __call__(self, inputs: "Node | Sequence[Node]") -> "Node":
        if self._connected:
            raise ValueError(
                f"{self._label()} is already connected to the graph; a layer object is "
                "used once: create a new layer for each place in the graph")
        ins = [inputs] if isinstance(inputs, Node) else list(inputs) \
            if isinstance(inputs, (list, tuple)) else None
        if ins is None or not all(isinstance(i, Node) for i in ins):
            raise ValueError(f"{self._label()} must be called on a node or a list of nodes, "
                             f"got {type(inputs).__name__}")
        if self.n_inputs is None and len(ins) < 2:
            raise ValueError(f"{self._label()} merges two or more inputs, got {len(ins)}")
        if self.n_inputs is not None and len(ins) != self.n_inputs:
            raise ValueError(f"{self._label()} takes {self.n_inputs} input, got {len(ins)}")
        for i in ins:
            if i.width is None:
                raise ValueError(
                    f"{self._label()} was given {i._label()} as input, but that layer has "
                    "not been called on an input yet, so its output shape is unknown")
        self.width = self.out_width([i.width for i in ins])
        self.inputs = ins
        self._connected = True
        return self

    def out_width(self, in_widths: list[int]) -> int:   # the shape rule
        raise NotImplementedError

    # -- description ----------------------------------------------------------------
    def _label(self) -> str:
        return f"{type(self).__name__} '{self.name}'" if self.name else type(self).__name__

    def describe(self) -> str:
        """A short description for summaries and generated-code comments."""
        return type(self).__name__

    def config(self) -> dict:
        """The constructor arguments (besides ``name``) that rebuild this node; JSON-safe."""
        return {}

    def param_shapes(self, in_widths: list[int]) -> dict[str, tuple[int, ...]]:
        """Trainable parameters of this node: local name -> shape."""
        return {}

    def __repr__(self) -> str:
        return f"<{self._label()} width={self.width}>"


class Input(Node):
    """The graph's entry: a batch of rows with ``width`` features each."""

    kind = "input"
    n_inputs = 0

    def __init__(self, width: int, name: str | None = None):
        super().__init__(name)
        self.width = positive_int(width, "Input width")
        self._connected = True

    def describe(self) -> str:
        return "Input"

    def config(self) -> dict:
        return {"width": self.width}


def topological_order(output: Node) -> list[Node]:
    """Nodes reachable backwards from ``output``, every node after its inputs.

    Raises ``ValueError`` on a cycle (possible only by editing ``.inputs`` by hand).
    """
    order: list[Node] = []
    state: dict[int, int] = {}          # id -> 1 visiting, 2 done
    stack: list[tuple[Node, int]] = [(output, 0)]
    while stack:
        node, i = stack.pop()
        if i == 0:
            if state.get(id(node)) == 2:
                continue
            state[id(node)] = 1
        if i < len(node.inputs):
            stack.append((node, i + 1))
            child = node.inputs[i]
            s = state.get(id(child))
            if s == 1:
                raise ValueError(f"the graph has a cycle through {child._label()}; "
                                 "a network must be a directed acyclic graph")
            if s is None:
                stack.append((child, 0))
        else:
            state[id(node)] = 2
            order.append(node)
    return order


def assign_names(order: Iterable[Node]) -> dict[Node, str]:
    """Names for the model: explicit ones kept, the others ``dense``, ``dense_1``, ...

    Counting is per model in graph order, so the same architecture always gets
    the same parameter names however many models a program builds.
    """
    order = list(order)
    names: dict[Node, str] = {}
    taken = {n.name for n in order if n.name}
    seen: set[str] = set()
    for n in order:
        if n.name:
            if n.name in seen:
                raise ValueError(f"two layers are named {n.name!r}; layer names must be unique")
            seen.add(n.name)
    counters: dict[str, int] = {}
    for n in order:
        if n.name:
            names[n] = n.name
            continue
        k = counters.get(n.kind, 0)
        while True:
            cand = n.kind if k == 0 else f"{n.kind}_{k}"
            k += 1
            if cand not in taken:
                break
        counters[n.kind] = k
        taken.add(cand)
        names[n] = cand
    return names


class Graph:
    """The structure of a network: the nodes between one ``Input`` and one output node,
    in topological order, with their names.  ``graphnn.model.Model`` adds ``compile``."""

    def __init__(self, inputs: Input, outputs: Node, name: str = "model"):
        if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
            inputs = inputs[0]
        if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
            outputs = outputs[0]
        if not isinstance(inputs, Input):
            raise ValueError(f"Model inputs must be one gn.Input node, got {inputs!r}")
        if not isinstance(outputs, Node) or outputs.width is None:
            raise ValueError(f"Model outputs must be one connected node, got {outputs!r}")
        if model_name_problem(name):
            raise ValueError(f"model name {model_name_problem(name)}")
        self.input = inputs
        self.output = outputs
        self.name = name
        self.nodes = topological_order(outputs)
        for n in self.nodes:
            if isinstance(n, Input) and n is not inputs:
                raise ValueError(
                    f"the output depends on {n._label()}, which is not the model's input; "
                    "a model has exactly one Input")
        if inputs not in self.nodes:
            raise ValueError("the output does not depend on the model's Input: "
                             "connect the layers from the Input to the output")
        self.names = assign_names(self.nodes)
