"""Lowering: graph -> plan (ordered instructions over a planned set of buffers).

The plan is what every backend compiles.  It fixes
  * the parameter layout: every weight and bias a slice of one flat buffer, in graph
    order ("dense.weight", "dense.bias", "dense_1.weight", ...), gradients alike;
  * the arena layout: every activation and activation-gradient matrix a block of
    columns of one flat workspace sized for ``cap`` rows (the batch);
  * three instruction lists: the inference forward pass, the training forward pass
    (up to the logits the loss reads) and the backward pass (reverse graph order).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import ir
from ..graph import Input, Graph, Node
from ..ops.activations import ACTIVATIONS, ActivationNode
from ..ops.dropout import Dropout
from ..ops.losses import Loss
from ..ops.softmax import Softmax

# local parameter name -> short variable suffix in generated code
_PARAM_SUFFIX = {"weight": "W", "bias": "b"}


@dataclass
class ParamSlot:
    """One parameter tensor's place in the flat parameter buffer."""
    name: str            # "dense.weight"
    node: Node
    local: str           # "weight"
    shape: tuple
    offset: int
    var: str             # "dense_W" (its gradient: "dense_dW")

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass
class Plan:
    model: Graph
    loss: Loss
    names: dict                       # node -> name
    params: list                      # [ParamSlot] in graph order
    n_params: int
    arena: dict                       # buffer name -> (first column, width)
    arena_width: int                  # columns of the arena (its size is cap * arena_width)
    forward: list                     # inference instructions
    train_forward: list               # training forward, up to the logits
    backward: list                    # gradient instructions, reverse order
    output: ir.Buf                    # what forward() returns
    logits: ir.Buf                    # what the loss reads in training
    dlogits: ir.Buf                   # where the loss writes its gradient
    fused: str | None                 # e.g. "softmax + cross_entropy"
    dropout: bool                     # training forward draws random masks
    scratch_width: int = 0            # columns needed by accumulating matmuls (CPU)
    param_vars: dict = field(default_factory=dict)   # var -> ParamSlot (and grad var)
    roles: dict = field(default_factory=dict)        # arena buffer name -> (node index, role)


class Lowering:
    """The context an op's ``forward(L)`` / ``backward(L)`` asks for buffers."""

    def __init__(self, model: Graph, loss: Loss):
        self.model, self.loss = model, loss
        self.names = model.names
        self.order = model.nodes
        self.index = {node: k for k, node in enumerate(self.order)}
        # arena buffer name -> (index of its node, role): "h" output, "d" its gradient,
        # an op's tag ("z", "mask") or "d" + tag.  Code generators name buffers from
        # these, never from the user's names (those are for people, not for code).
        self.roles: dict[str, tuple[int, str]] = {}
        self.requires_grad: dict[Node, bool] = {}
        self.params: list[ParamSlot] = []
        offset = 0
        for node in self.order:
            shapes = node.param_shapes([i.width for i in node.inputs])
            for local, shape in shapes.items():
                var = f"{self.names[node]}_{_PARAM_SUFFIX.get(local, local)}"
                self.params.append(ParamSlot(f"{self.names[node]}.{local}", node, local,
                                             tuple(shape), offset, var))
                offset += self.params[-1].size
            self.requires_grad[node] = bool(shapes) or any(
                self.requires_grad[i] for i in node.inputs)
        self.n_params = offset
        self._slots = {(p.node, p.local): p for p in self.params}
        self.arena: dict[str, tuple[int, int]] = {}
        self.arena_width = 0
        self.scratch_width = 0
        self._written: set[Node] = set()
        self.train = False
        self.alias: dict[Node, Node] = {}
        self.fused_node, self.fused = self._find_fusion()

    # -- fusion of the output activation into the loss ---------------------------------
    def _find_fusion(self):
        out, act = self.model.output, self.loss.fuses
        if act is None or getattr(out, "activation", None) != act:
            return None, None
        return out, f"{act} + {self.loss.name}"

    # -- buffers (called by the ops) ---------------------------------------------------
    def name(self, node: Node) -> str:
        return self.names[node]

    def _arena_buf(self, name: str, width: int, node: Node | None = None,
                   role: str = "") -> ir.Buf:
        if node is not None:
            self.roles.setdefault(name, (self.index[node], role))
        if name not in self.arena:
            self.arena[name] = (self.arena_width, width)
            self.arena_width += width
        return ir.Buf(name, width, "arena")

    def out(self, node: Node) -> ir.Buf:
        """The matrix holding ``node``'s output."""
        node = self.alias.get(node, node)
        if isinstance(node, Input):
            return ir.Buf("x", node.width, "input")
        return self._arena_buf(f"h_{self.names[node]}", node.width, node, "h")

    def internal(self, node: Node, tag: str, width: int) -> ir.Buf:
        return self._arena_buf(f"{tag}_{self.names[node]}", width, node, tag)

    def grad(self, node: Node) -> ir.Buf:
        """The matrix holding dLoss/d(node's output)."""
        node = self.alias.get(node, node)
        return self._arena_buf(f"d_{self.names[node]}", node.width, node, "d")

    def internal_grad(self, node: Node, tag: str, width: int) -> ir.Buf:
        return self._arena_buf(f"d{tag}_{self.names[node]}", width, node, "d" + tag)

    def grad_target(self, node: Node) -> tuple[ir.Buf, bool]:
        """Where a consumer writes ``node``'s gradient, and whether to add to it.

        The first consumer in the backward sweep overwrites; later ones accumulate.
        """
        node = self.alias.get(node, node)
        acc = node in self._written
        self._written.add(node)
        buf = self.grad(node)
        if acc:
            self.scratch_width = max(self.scratch_width, buf.width)
        return buf, acc

    def needs_grad(self, node: Node) -> bool:
        return self.requires_grad[self.alias.get(node, node)]

    def param(self, node: Node, local: str) -> ir.Buf:
        p = self._slots[(node, local)]
        return ir.Buf(p.var, p.shape[-1], "param", p.shape[0] if len(p.shape) == 2 else None)

    def param_grad(self, node: Node, local: str) -> ir.Buf:
        p = self._slots[(node, local)]
        return ir.Buf(self.grad_var(p), p.shape[-1], "grad",
                      p.shape[0] if len(p.shape) == 2 else None)

    @staticmethod
    def grad_var(p: ParamSlot) -> str:
        head, _, tail = p.var.rpartition("_")
        return f"{head}_d{tail}"

    def activation(self, node: Node) -> str:
        """The node's activation as compiled now: linear for the fused output in training."""
        if self.train and node is self.fused_node:
            return "linear"
        return getattr(node, "activation", "linear")

    # -- the passes --------------------------------------------------------------------
    def _forward(self, train: bool) -> list:
        """Instructions of the forward pass; in inference, Dropout is the identity (aliased)."""
        self.train = train
        self.alias = {}
        steps = []
        for node in self.order:
            if isinstance(node, Input):
                continue
            if not train and isinstance(node, Dropout):
                self.alias[node] = self.alias.get(node.inputs[0], node.inputs[0])
                continue
            if train and node is self.fused_node and isinstance(node, (ActivationNode, Softmax)):
                self.alias[node] = self.alias.get(node.inputs[0], node.inputs[0])  # loss reads the input
                continue
            steps += [self._heading(node, "forward")] + node.forward(self)
        return steps

    def _heading(self, node: Node, direction: str) -> ir.Comment:
        ins = ", ".join(self.names[self.alias.get(i, i)] for i in node.inputs)
        return ir.Comment(f"{self.names[node]}: {node.describe()} of {ins}, {node.width} wide"
                          + (" (backward)" if direction == "backward" else ""),
                          node=self.index[node], kind=structural_kind(node),
                          inputs=tuple(self.index[self.alias.get(i, i)] for i in node.inputs),
                          backward=direction == "backward")

    def _backward(self) -> list:
        self.train = True
        steps = []
        for node in reversed(self.order):
            if isinstance(node, Input) or not self.requires_grad[node] or node in self.alias:
                continue
            steps += [self._heading(node, "backward")] + node.backward(self)
        return steps

    def lower(self) -> Plan:
        if self.n_params == 0:
            raise ValueError("the model has no trainable parameters: add a Dense layer")
        forward = self._forward(train=False)
        output = self.out(self.model.output)
        train_forward = self._forward(train=True)
        logits_node = self.alias.get(self.model.output, self.model.output)
        logits = self.out(logits_node)
        if not self.requires_grad[logits_node]:
            raise ValueError("the model's output does not depend on any trainable parameter")
        dlogits, _ = self.grad_target(logits_node)
        backward = self._backward()
        plan = Plan(self.model, self.loss, self.names, self.params, self.n_params,
                    dict(self.arena), self.arena_width, forward, train_forward, backward,
                    output, logits, dlogits, self.fused,
                    any(isinstance(st, ir.Dropout) for st in train_forward), self.scratch_width,
                    roles=dict(self.roles))
        for p in self.params:
            plan.param_vars[p.var] = p
            plan.param_vars[self.grad_var(p)] = p
        if plan.scratch_width:
            plan.arena["tmp"] = (plan.arena_width, plan.scratch_width)
            plan.arena_width += plan.scratch_width
        return plan


_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9]{0,39}")


def structural_kind(node: Node) -> str:
    """What a node is, for comments in generated code: its class and activation, e.g.
    "Dense (relu)".  Made only of identifiers that pass a strict pattern (class names
    from graphnn's tables, activation names from ``ACTIVATIONS``), never of names or
    numbers, so it can be pasted into code and is the same for every width."""
    kind = type(node).__name__
    kind = kind if _IDENT.fullmatch(kind) else "Node"
    act = getattr(node, "activation", None)
    if isinstance(act, str) and act != "linear" and (act in ACTIVATIONS or act == "softmax") \
            and kind.lower() != act.replace("_", ""):
        kind += f" ({act})"
    return kind


def lower(model: Graph, loss: Loss) -> Plan:
    """Lower ``model`` trained with ``loss`` into a plan."""
    return Lowering(model, loss).lower()
