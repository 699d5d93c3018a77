"""Dense: y = act(x @ W + b), the line y = m x + c for a whole batch of rows at once.

Shapes: x (n, in), W (in, out), b (out,), y (n, out).
Backward, with dz = dy * act'(z) the gradient at the pre-activation z:
    dW = x^T @ dz        (how each weight moved the loss, summed over the rows)
    db = sum_rows(dz)
    dx = dz @ W^T        (the error sent back to the layer below)
"""
from __future__ import annotations

from .. import ir
from ..graph import Node
from ..validate import positive_int
from .activations import ACTIVATIONS, check_activation


class Dense(Node):
    """A fully connected layer: ``Dense(128, activation="relu")``.

    Arguments: ``units`` outputs per row; ``activation`` a name (``"relu"``, ...,
    ``"softmax"``) or None for linear; ``use_bias``; ``kernel_init`` / ``bias_init``
    (``"glorot_uniform"`` and ``"zeros"`` by default, see ``graphnn.init``); ``name``.
    """

    kind = "dense"

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_init="glorot_uniform", bias_init="zeros", name: str | None = None):
        super().__init__(name)
        self.units = positive_int(units, "Dense units")
        self.activation = check_activation(activation)
        if not isinstance(use_bias, bool):
            raise ValueError(f"Dense use_bias must be True or False, got {use_bias!r}")
        self.use_bias = use_bias
        from ..init import check_initializer
        self.kernel_init = check_initializer(kernel_init, "kernel_init")
        self.bias_init = check_initializer(bias_init, "bias_init")

    # -- shape rule -----------------------------------------------------------------
    def out_width(self, in_widths):
        return self.units

    def param_shapes(self, in_widths):
        shapes = {"weight": (in_widths[0], self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def config(self) -> dict:
        init = lambda spec: spec if isinstance(spec, (str, float)) else "custom"
        return {"units": self.units, "activation": self.activation, "use_bias": self.use_bias,
                "kernel_init": init(self.kernel_init), "bias_init": init(self.bias_init)}

    def describe(self) -> str:
        return "Dense" + ("" if self.activation == "linear" else f" ({self.activation})")

    # -- lowering -------------------------------------------------------------------
    def _buffers(self, L):
        """z: pre-activation, y: output.  One buffer when y can overwrite z."""
        act = L.activation(self)
        y = L.out(self)
        if act == "linear" or (act in ACTIVATIONS and not ACTIVATIONS[act].grad_uses_x):
            return act, y, y
        return act, L.internal(self, "z", self.units), y

    def forward(self, L):
        act, z, y = self._buffers(L)
        x = L.out(self.inputs[0])
        W, b = L.param(self, "weight"), L.param(self, "bias") if self.use_bias else None
        steps = [ir.MatMul(z, x, W, note="z = x @ W")]
        if act == "softmax":
            if b is not None:
                steps.append(ir.BiasAct(z, z, b, "linear", note="z += b"))
            steps.append(ir.Softmax(y, z, note="y = softmax(z) over each row"))
        elif b is not None or act != "linear" or y is not z:
            if b is not None and y is not z:
                # the backward pass reads act'(z): keep z = x @ W + b, not just x @ W
                steps.append(ir.BiasAct(z, z, b, "linear", note="z += b"))
                b = None
            what = "z + b" if b is not None else "z"
            steps.append(ir.BiasAct(y, z, b, act,
                                    note=f"y = {what}" if act == "linear" else f"y = {act}({what})"))
        return steps

    def backward(self, L):
        act, z, y = self._buffers(L)
        x_node = self.inputs[0]
        x, W = L.out(x_node), L.param(self, "weight")
        dy = L.grad(self)
        db = L.param_grad(self, "bias") if self.use_bias else None
        steps = []
        if act == "softmax":
            dz = L.internal_grad(self, "z", self.units)
            steps.append(ir.SoftmaxGrad(dz, dy, y, note="dz = softmax'(z) dy"))
            if db is not None:
                steps.append(ir.ColSum(db, dz, note="db = sum of dz over rows"))
        elif act != "linear":
            dz = dy    # in place: dy is read only here
            steps.append(ir.ActGrad(dz, dy, z, y, act, colsum=db,
                                    note=f"dz = dy * {act}'(z)" + (", db = sum of dz over rows"
                                                                   if db is not None else "")))
        else:
            dz = dy
            if db is not None:
                steps.append(ir.ColSum(db, dz, note="db = sum of dz over rows"))
        steps.append(ir.MatMul(L.param_grad(self, "weight"), x, dz, ta=True, note="dW = x^T @ dz"))
        if L.needs_grad(x_node):
            dx, acc = L.grad_target(x_node)
            steps.append(ir.MatMul(dx, dz, W, tb=True, acc=acc,
                                   note="dx " + ("+=" if acc else "=") + " dz @ W^T"))
        return steps
