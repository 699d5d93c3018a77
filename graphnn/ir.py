"""The kernel-level instructions a graph is lowered to.

Each op (``graphnn/ops``) states its forward and backward pass as a short list of
these instructions over named buffers; each backend (``graphnn/compile``) knows how to
emit every instruction once.  This is the contract between the two: adding an op
means writing its rules in terms of these, adding a backend means emitting these.

A ``Buf`` is a (rows, width) matrix view; rows is the batch size at run time.  ``acc``
on an instruction that writes a gradient means "add into" instead of "overwrite":
a node read by several consumers receives the sum of their gradients.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# The metric sums a loss's stats code (either backend) adds into one float64 vector of a
# batch or an epoch: metric -> its slot (accuracy: the count of correct rows; mse and mae:
# the sums of squared and of absolute errors).  An empty vector: no metric was asked for,
# nothing is added.
METRIC_SUMS = {"accuracy": 0, "mse": 1, "mae": 2}
STATS_SIZE = len(METRIC_SUMS)


@dataclass(frozen=True)
class Buf:
    """A named matrix: an activation or gradient in the arena, a parameter, or the input."""
    name: str
    width: int            # columns; for parameters: the trailing dimension
    kind: str             # "input" | "arena" | "scratch" | "param" | "grad"
    rows: Optional[int] = None   # fixed rows (parameters); None = batch rows

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True)
class MatMul:
    """out (=|+=) op(a) @ op(b), op = transpose when ``ta``/``tb``."""
    out: Buf
    a: Buf
    b: Buf
    ta: bool = False
    tb: bool = False
    acc: bool = False
    note: str = ""


@dataclass(frozen=True)
class BiasAct:
    """out = act(z + bias) row by row; ``out`` may be ``z`` itself (in place).

    ``bias`` None means no bias; ``act`` is an activation name ("linear" = identity).
    """
    out: Buf
    z: Buf
    bias: Optional[Buf]
    act: str
    note: str = ""


@dataclass(frozen=True)
class ActGrad:
    """gx (=|+=) gy * act'(x, y); also ``colsum`` = column sums of the result if given.

    x is the activation's input and y its output (either may be unused by ``act``);
    ``gx`` may be ``gy`` itself (in place).  The column sums are the bias gradient
    of a Dense layer whose activation this is.
    """
    gx: Buf
    gy: Buf
    x: Buf
    y: Buf
    act: str
    acc: bool = False
    colsum: Optional[Buf] = None
    note: str = ""


@dataclass(frozen=True)
class ColSum:
    """out[j] = sum over rows of g[:, j] (a bias gradient)."""
    out: Buf
    g: Buf
    note: str = ""


@dataclass(frozen=True)
class Sum:
    """out = sum of ``ins`` elementwise."""
    out: Buf
    ins: tuple
    note: str = ""


@dataclass(frozen=True)
class Copy:
    """out[:, :] (=|+=) src[:, col0 : col0 + out.width] (a column block of src)."""
    out: Buf
    src: Buf
    col0: int = 0
    acc: bool = False
    note: str = ""


@dataclass(frozen=True)
class Place:
    """out[:, col0 : col0 + src.width] = src (concatenation, column block by block)."""
    out: Buf
    src: Buf
    col0: int
    note: str = ""


@dataclass(frozen=True)
class Softmax:
    """out = softmax(x) over each row, computed stably (max subtracted)."""
    out: Buf
    x: Buf
    note: str = ""


@dataclass(frozen=True)
class SoftmaxGrad:
    """gx (=|+=) y * (gy - sum(gy * y) over the row), y = softmax output."""
    gx: Buf
    gy: Buf
    y: Buf
    acc: bool = False
    note: str = ""


@dataclass(frozen=True)
class Dropout:
    """In training: mask = (u >= rate) / (1 - rate) with u = uniform(key + salt, i, j),
    out = x * mask.  Otherwise out = x.  The mask is kept for the backward pass.
    ``salt`` numbers the dropout nodes of the graph (1, 2, ...)."""
    out: Buf
    x: Buf
    mask: Buf
    rate: float
    salt: int
    note: str = ""


@dataclass(frozen=True)
class Mul:
    """gx (=|+=) gy * m elementwise (the backward of a fixed mask)."""
    gx: Buf
    gy: Buf
    m: Buf
    acc: bool = False
    note: str = ""


@dataclass
class Program:
    """An ordered list of instructions with a title, one per generated function part."""
    title: str
    steps: list = field(default_factory=list)


@dataclass(frozen=True)
class Comment:
    """Not an instruction: a heading in the generated code (the node the next steps come from).

    ``text`` names the node for people (it holds user names and widths); code generators
    that must keep names and sizes out of code write the structural fields instead:
    ``node`` (its index in graph order), ``kind`` ("Dense (relu)"), ``inputs`` (their
    indices) and ``backward``."""
    text: str
    note: str = ""
    node: int = -1
    kind: str = ""
    inputs: tuple = ()
    backward: bool = False
