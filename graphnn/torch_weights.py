"""Weights trained elsewhere: a PyTorch ``nn.Sequential`` of ``nn.Linear`` layers into the
``Dense`` layers of a compiled graphnn model of the same shape.

The source is a ``state_dict`` (name -> tensor or array, or the module itself), or the
path of a ``.safetensors`` file of one, read by ``io.read_safetensors`` without PyTorch.
PyTorch keys are ``<layer>.weight`` / ``<layer>.bias``; ``nn.Linear.weight`` is
(out_features, in_features) and becomes graphnn's (in, out) ``dense.weight`` transposed.

Layers pair up in order (the dict's order; a file's layer names in natural order,
"2" before "10", as a file has none) or by an explicit ``mapping`` {graphnn layer:
PyTorch layer}.  Every check (layer count, names, shapes, a bias on one side only,
finite real values) runs before any parameter changes.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Mapping

import numpy as np

from .io import read_safetensors


def load_torch_weights(net, source, mapping: Mapping[str, str] | None = None) -> None:
    """Copy the weights of PyTorch ``nn.Linear`` layers into ``net``'s Dense layers.

    ``source``: a state_dict, an ``nn.Module`` (its ``state_dict()``), or a path to a
    ``.safetensors`` file.  ``mapping``: {graphnn layer name: PyTorch layer name};
    without it every Dense layer takes the PyTorch layer at the same position, the
    counts must agree and every PyTorch tensor must belong to an nn.Linear; with it only
    the mapped layers change (other PyTorch layers are ignored).  Other parameters and
    the optimizer state are left as they are.  ``ValueError`` on any mismatch, before
    anything changes.
    """
    groups = _torch_layers(source)
    dense = _dense_layers(net)
    if mapping is None:
        for layer in groups:
            _linear(groups, layer)
        if len(groups) != len(dense):
            raise ValueError(
                f"the PyTorch weights have {len(groups)} Linear layers ({_names(groups)}), the "
                f"model has {len(dense)} Dense layers ({_names(dense)}); they pair up in "
                "order, so the counts must agree (or pass mapping={graphnn layer: torch layer})")
        pairs = list(zip(dense, groups))
    else:
        if not isinstance(mapping, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
            raise ValueError(f"mapping must be a dict {{graphnn layer name: PyTorch layer "
                             f"name}}, got {mapping!r}")
        for ours, theirs in mapping.items():
            if ours not in dense:
                raise ValueError(f"mapping names {ours!r}, which is not a Dense layer of the "
                                 f"model ({_names(dense)})")
            if theirs not in groups:
                raise ValueError(f"mapping names PyTorch layer {theirs!r}, which is not in the "
                                 f"weights ({_names(groups)})")
        used = list(mapping.values())
        twice = next((v for v in used if used.count(v) > 1), None)
        if twice is not None:
            raise ValueError(f"mapping uses PyTorch layer {twice!r} for two graphnn layers")
        pairs = list(mapping.items())
    params = net.get_params()
    for ours, theirs in pairs:
        _check_pair(dense[ours], ours, _linear(groups, theirs), theirs, params)
    net.set_params(params)


def _names(d) -> str:
    names = list(d)
    return ", ".join(names) if names else "none"


def _dense_layers(net) -> "OrderedDict[str, dict]":
    """Layer name -> {local name: shape} for every layer with a weight, in graph order."""
    layers: OrderedDict[str, dict] = OrderedDict()
    for slot in net.plan.params:
        layer, local = slot.name.rsplit(".", 1)
        layers.setdefault(layer, {})[local] = tuple(slot.shape)
    return OrderedDict((k, v) for k, v in layers.items() if "weight" in v)


def _torch_layers(source) -> "OrderedDict[str, dict]":
    """PyTorch layer name -> {"weight": array, "bias": array}, in the order they pair up."""
    if isinstance(source, (str, os.PathLike)):
        _, tensors = read_safetensors(source)
        keys = sorted(tensors, key=_natural)
    else:
        if callable(getattr(source, "state_dict", None)):
            source = source.state_dict()
        if not isinstance(source, Mapping):
            raise ValueError("source must be a PyTorch state_dict (name -> tensor or array), an "
                             f"nn.Module or the path of a .safetensors file, got "
                             f"{type(source).__name__}")
        tensors, keys = source, list(source)
    groups: OrderedDict[str, dict] = OrderedDict()
    for key in keys:
        if not isinstance(key, str) or "." not in key:
            raise ValueError(f"PyTorch weight name {key!r} is not '<layer>.<tensor>' such as "
                             "'0.weight'")
        layer, local = key.rsplit(".", 1)
        groups.setdefault(layer, {})[local] = tensors[key]
    return groups


def _linear(groups: dict, layer: str) -> dict:
    """The weight (and bias) of PyTorch layer ``layer`` as arrays, checked to be an nn.Linear's."""
    parts = groups[layer]
    other = [local for local in parts if local not in ("weight", "bias")]
    if other:
        raise ValueError(f"PyTorch tensor {layer}.{other[0]} is not part of an nn.Linear layer "
                         "(only weight and bias are); only nn.Sequential models of nn.Linear "
                         "layers (and parameter-free activations) can be loaded, or pass a "
                         "mapping that leaves this layer out")
    if "weight" not in parts:
        raise ValueError(f"PyTorch layer {layer!r} has a bias but no weight")
    return {local: _as_array(value, f"{layer}.{local}") for local, value in parts.items()}


def _natural(key: str):
    """Sort key: digit runs compare as numbers ("2.weight" before "10.weight")."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", key)]


def _as_array(value, key: str) -> np.ndarray:
    """A tensor (any device, with or without grad, bfloat16 too) or array as NumPy."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):          # a torch.Tensor
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        value = value.numpy()
    arr = np.asarray(value)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"PyTorch tensor {key!r} must hold floating-point numbers, "
                         f"got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"PyTorch tensor {key!r} holds NaN or Inf")
    return arr


def _check_pair(shapes: dict, ours: str, parts: dict, theirs: str, params: dict) -> None:
    """Check one Dense layer against one nn.Linear and put its values into ``params``."""
    n_in, n_out = shapes["weight"]
    weight = parts["weight"]
    if weight.shape != (n_out, n_in):
        raise ValueError(
            f"layer {ours!r} is Dense({n_out}) on {n_in} inputs and needs an nn.Linear({n_in}, "
            f"{n_out}) weight of shape ({n_out}, {n_in}) (out_features, in_features); "
            f"PyTorch {theirs}.weight has shape {tuple(weight.shape)}")
    has_bias = "bias" in shapes
    if has_bias and "bias" not in parts:
        raise ValueError(f"missing bias: layer {ours!r} has a bias, PyTorch layer {theirs!r} "
                         "has none (nn.Linear(bias=False)); build the layer with "
                         "use_bias=False")
    if not has_bias and "bias" in parts:
        raise ValueError(f"PyTorch {theirs}.bias has no place: layer {ours!r} has "
                         "use_bias=False")
    params[f"{ours}.weight"] = weight.T
    if has_bias:
        if parts["bias"].shape != (n_out,):
            raise ValueError(f"layer {ours!r} needs a bias of shape ({n_out},); PyTorch "
                             f"{theirs}.bias has shape {tuple(parts['bias'].shape)}")
        params[f"{ours}.bias"] = parts["bias"]
