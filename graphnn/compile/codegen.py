"""Code-writing helpers shared by both code generators (``cpu.py`` and ``cuda/module.py``)."""
from __future__ import annotations

from ..ops.activations import ACTIVATIONS, with_dependencies

# How the CPU generators mark a small function Numba pastes into its callers.
INLINE_JIT = '@njit(inline="always", error_model="numpy")'

# Constants every generated module defines in its own dtype (``real(...)``).
NUMERIC_CONSTANTS = {"zero": 0.0, "one": 1.0, "two": 2.0, "half": 0.5}


def preamble(w, dtype, views: str, imports=(), constants=None):
    """The imports and constants a generated CPU module starts with: ``math``, NumPy,
    ``njit``, further ``imports`` (lines), the named ``graphnn.compile.views`` intrinsics,
    ``real`` (the module's dtype) and ``constants`` (name -> value; NUMERIC_CONSTANTS by
    default) in it."""
    for line in ("import math", "", "import numpy as np", "from numba import njit", "",
                 *imports, f"from graphnn.compile.views import {views}", "",
                 f"real = np.{dtype.name}"):
        w(line)
    for k, v in (NUMERIC_CONSTANTS if constants is None else constants).items():
        w(f"{k} = real({v!r})")


class Writer:
    """Lines of code with indentation."""

    def __init__(self):
        self.lines: list[str] = []
        self.depth = 0

    def __call__(self, line: str = ""):
        self.lines.append(("    " * self.depth + line) if line else "")

    def block(self, header: str):
        self(header)
        return _Indent(self)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class _Indent:
    def __init__(self, w):
        self.w = w

    def __enter__(self):
        self.w.depth += 1

    def __exit__(self, *exc):
        self.w.depth -= 1


def activations_used(plan, extra=()) -> list:
    """The activations whose scalar math a generated module needs (those its instructions
    and loss call, plus ``extra``, with their dependencies; the identity is written inline)."""
    names = set(extra)
    for s in plan.forward + plan.train_forward + plan.backward:
        act = getattr(s, "act", None)
        if act:
            names.add(act)
    names.update(plan.loss.needs)
    names.discard("linear")
    return with_dependencies(sorted(n for n in names if n in ACTIVATIONS))
