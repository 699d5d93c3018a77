"""An independent NumPy oracle for graphnn models, written from the math.

Only the public graph structure is read from graphnn (``model.nodes``, ``model.names``,
each node's ``.inputs``, ``.width``, ``.activation``, ``.use_bias`` and its public
class); every number is computed here, in float64 unless the arrays passed in are
of another dtype.

    forward(model, params, X)                 -> the model's output (what predict returns)
    forward_all(model, params, X)             -> (outputs, pre_activations) for every node
    loss(name, out, y)                        -> mean loss, ``out`` taken as logits for the
                                                 classification losses
    model_loss(model, params, X, y, name)     -> the loss graphnn trains on, including the
                                                 fusion of a final softmax / sigmoid
"""
from __future__ import annotations

import numpy as np
from scipy.special import erf

import graphnn as gn

LEAKY_SLOPE = 0.01


# -- activations ----------------------------------------------------------------------------
def sigmoid(x):
    x = np.asarray(x)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def softmax(x):
    x = np.asarray(x)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(x):
    x = np.asarray(x)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "leaky_relu": lambda x: np.where(x > 0, x, LEAKY_SLOPE * x),
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "softmax": softmax,
    "softplus": lambda x: np.logaddexp(0.0, x),
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / np.sqrt(2.0))),
    "linear": lambda x: x,
}

# the nodes that apply an activation to their single input (no parameters)
ACTIVATION_NODES = (gn.ReLU, gn.LeakyReLU, gn.Sigmoid, gn.Tanh, gn.Softplus, gn.GELU,
                    gn.Linear)


def activate(name: str, x):
    if name is None:
        name = "linear"
    return ACTIVATIONS[name](x)


# -- the forward pass ------------------------------------------------------------------------
def forward_all(model, params, X):
    """Every node's output, and every activating node's pre-activation.

    Returns ``(outs, pre)``: dicts node -> array.  ``pre[node]`` is the value the node's
    activation is applied to (``x @ W + b`` for Dense, the input for an activation or
    Softmax node).
    """
    X = np.asarray(X)
    outs, pre = {}, {}
    for node in model.nodes:
        ins = [outs[i] for i in node.inputs]
        if isinstance(node, gn.Input):
            outs[node] = X
        elif isinstance(node, gn.Dense):
            name = model.names[node]
            z = ins[0] @ np.asarray(params[name + ".weight"])
            if node.use_bias:
                z = z + np.asarray(params[name + ".bias"])
            pre[node] = z
            outs[node] = activate(node.activation, z)
        elif isinstance(node, gn.Softmax):
            pre[node] = ins[0]
            outs[node] = softmax(ins[0])
        elif isinstance(node, ACTIVATION_NODES):
            pre[node] = ins[0]
            outs[node] = activate(node.activation, ins[0])
        elif isinstance(node, gn.Add):
            total = ins[0].copy()
            for a in ins[1:]:
                total = total + a
            outs[node] = total
        elif isinstance(node, gn.Concatenate):
            outs[node] = np.concatenate(ins, axis=1)
        elif isinstance(node, gn.Dropout):          # predict: the identity
            outs[node] = ins[0]
        else:
            raise TypeError(f"reference: unknown node type {type(node).__name__}")
    return outs, pre


def forward(model, params, X):
    """The model's output for every row of X (what ``net.predict`` computes)."""
    outs, _ = forward_all(model, params, X)
    return outs[model.output]


# -- losses ----------------------------------------------------------------------------------
def loss(name: str, out, y):
    """Mean loss; for the classification losses ``out`` are logits."""
    out = np.asarray(out)
    if name == "mse":
        y = np.asarray(y, dtype=out.dtype).reshape(out.shape)
        return float(np.mean((out - y) ** 2))
    if name == "cross_entropy":
        labels = np.asarray(y).astype(np.int64).reshape(-1)
        lsm = log_softmax(out)
        return float(-np.mean(lsm[np.arange(out.shape[0]), labels]))
    if name == "binary_cross_entropy":
        t = np.asarray(y, dtype=out.dtype).reshape(out.shape)
        # -[t log s + (1 - t) log(1 - s)], s = sigmoid(z), in the stable logits form
        per = np.maximum(out, 0.0) - out * t + np.log1p(np.exp(-np.abs(out)))
        return float(np.mean(per))
    raise ValueError(f"reference: unknown loss {name!r}")


FUSES = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}


def fused(model, loss_name: str) -> bool:
    """True when the model's final activation is the one ``loss_name`` contains."""
    act = FUSES.get(loss_name)
    return act is not None and getattr(model.output, "activation", None) == act


def training_output(model, params, X, loss_name: str):
    """What the loss reads: the output, or the pre-activation logits when fused."""
    outs, pre = forward_all(model, params, X)
    if fused(model, loss_name):
        return pre[model.output]
    return outs[model.output]


def model_loss(model, params, X, y, loss_name: str) -> float:
    """The mean loss graphnn trains on, softmax / sigmoid fused into the loss if final."""
    return loss(loss_name, training_output(model, params, X, loss_name), y)


def numerical_grads(model, params, X, y, loss_name: str, eps: float = 1e-6):
    """Central finite differences of ``model_loss`` for every parameter (float64)."""
    base = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    grads = {}
    for name, value in base.items():
        g = np.zeros_like(value)
        flat, gflat = value.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = model_loss(model, base, X, y, loss_name)
            flat[i] = old - eps
            down = model_loss(model, base, X, y, loss_name)
            flat[i] = old
            gflat[i] = (up - down) / (2 * eps)
        grads[name] = g
    return grads
