"""Run files in and out: reading TOML, ``--set key=value`` overrides, writing TOML.
"""
from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:                                   # pragma: no cover
    import tomli as tomllib

from .errors import RunFileError, _kind
from .vocabulary import DEFAULT_LAYERS


def read_toml(path) -> dict:
    """The table in a TOML file, or RunFileError (missing, unreadable, bad TOML)."""
    p = Path(os.fspath(path))
    if not p.exists():
        raise RunFileError(f"no such run file: {str(p)!r}")
    if not p.is_file():
        raise RunFileError(f"{str(p)!r} is not a file")
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise RunFileError(f"not valid TOML: {e}", str(p)) from None
    except UnicodeDecodeError:
        raise RunFileError("is not a text file, so not a TOML run file (a checkpoint such as "
                           "model.gnn? the run file is the run.toml beside it)", str(p)) from None
    except OSError as e:
        raise RunFileError(f"cannot be read: {e}", str(p)) from None


def parse_value(text: str):
    """A --set value as a TOML value (``0.05``, ``true``, ``[1, 2]``, ``{type = "X"}``,
    ``"text"``); anything that is not valid TOML is taken as a plain string (``moons``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(item: str) -> tuple[list[str], object]:
    """``"optimizer.lr=0.05"`` -> (["optimizer", "lr"], 0.05)."""
    key, eq, value = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not eq or not key or any(not p.strip() for p in parts):
        raise RunFileError(f"--set takes key=value with a dotted key, such as "
                           f"optimizer.lr=0.05 or model.layers.0.units=64; got {item!r}")
    return [p.strip() for p in parts], parse_value(value.strip())


def apply_sets(doc: dict, sets) -> set[str]:
    """Apply ``--set`` items to ``doc`` in place; returns the dotted keys they set.

    Missing tables are created; a number indexes a list (``model.layers.0.units``);
    ``model.layers`` not in the file means the default layers.
    """
    touched = set()
    for item in sets or ():
        parts, value = parse_set(item)
        node = doc
        for i, part in enumerate(parts[:-1]):
            where = ".".join(parts[:i + 1])
            if isinstance(node, dict):
                if part not in node:
                    if where == "model.layers":
                        node[part] = copy.deepcopy(DEFAULT_LAYERS)
                    elif parts[i + 1].isdigit():
                        raise RunFileError(f"{where} is not set, so {where}.{parts[i + 1]} "
                                           "cannot be indexed", f"--set {item}")
                    else:
                        node[part] = {}
                child = node[part]
                promoted = _promote(child, where)
                if promoted is not None:          # true/false or a number becomes a table
                    node[part] = child = promoted
                node = child
            elif isinstance(node, list):
                node = _list_item(node, part, parts, i, item)
            if not isinstance(node, (dict, list)):
                raise RunFileError(f"{where} is a {_kind(node)}, not a table, so it has no "
                                   f"key {parts[i + 1]!r}", f"--set {item}")
        last = parts[-1]
        if isinstance(node, dict):
            node[last] = value
        else:
            if not last.isdigit() or int(last) > len(node):
                raise RunFileError(f"{'.'.join(parts[:-1])} is a list of {len(node)}; index "
                                   f"with 0..{len(node)} (== {len(node)} appends)",
                                   f"--set {item}")
            if int(last) == len(node):
                node.append(value)
            else:
                node[int(last)] = value
        touched.add(".".join(parts))
    return touched


def _promote(value, where: str):
    """Setting a key inside a callback given as true/false, or inside a number lr, turns
    it into a table: ``callbacks.early_stopping.patience=3``, ``optimizer.lr.type=...``."""
    if isinstance(value, bool) and where.startswith("callbacks."):
        return {}
    if where == "optimizer.lr" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"lr": value}
    return None


def _list_item(node: list, part: str, parts, i, item):
    where = ".".join(parts[:i])
    if not part.isdigit() or int(part) >= len(node):
        raise RunFileError(f"{where} is a list of {len(node)}; index it with 0..{len(node) - 1}",
                           f"--set {item}")
    return node[int(part)]


def dumps(doc: dict) -> str:
    """``doc`` as TOML text (tomli-w, a required dependency)."""
    import tomli_w
    return tomli_w.dumps(doc)
