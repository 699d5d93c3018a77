"""CUDA backend: plan -> one generated module of Numba ``@cuda.jit`` kernels and the
Python that launches them.

The module reads like the CPU one (``net.source()``): the scalar math of the
activations, losses, softmax and optimizer is pasted in from ``graphnn/ops`` and
``graphnn/optim`` and compiled as ``@cuda.jit(device=True)`` functions (the same source
strings the CPU backend compiles with ``@njit``); then come the kernels, one per kind
of instruction this plan uses, and the host functions (``forward``, ``backward``,
``train_step``, ``train_epoch``, ``predict``, ``evaluate``, ...) that launch them one
line per instruction, commented per node.

Kernels
  * matrix products: shared-memory tiles (``Tile``), each thread computing a small
    block of outputs in registers; the three shapes of a Dense layer (x @ W, x^T @ dz,
    dz @ W^T) with ragged edges; ``acc`` adds into the output; a bias + activation that
    follows the forward product on the same buffer runs in the product's epilogue.
  * elementwise (bias + activation, activation gradient, sums, copies, dropout): a
    thread per element, columns across a block's x threads.
  * column sums (bias gradients), fused into the activation gradient when the IR asks
    for both: a column strip per block, summed in shared memory in a fixed order, so
    training is deterministic (no float atomics anywhere but the reported loss).
  * per row (softmax, softmax gradient, loss): a thread per row running the shared
    per-row sources; the loss (and the metrics) are summed per block in shared memory
    and added atomically to the batch's slot of a device vector.
  * the optimizer: one launch over the flat parameter buffer.
  * the mini-batch gather from the device-resident X and Y through ``order``.

Nothing is copied between host and device during an epoch: ``train_epoch`` gathers,
steps and updates on the device and copies the per-batch losses and the metric sums
back once, at the end.  Each launch is configured once per shape (``launch_*``), each
buffer view made once per batch size (``bind``).

``numba.cuda`` is imported only when a ``CudaBackend`` is made (and by the generated
module), never by ``import graphnn``.  Under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1`` set before ``numba.cuda`` is first imported) it runs
without a GPU, with the small tiles of ``SIMULATOR_CONFIG`` unless ``CONFIG`` was set
(the simulator runs every thread in Python).
"""
from __future__ import annotations

import importlib.util
import linecache
import sys
from dataclasses import dataclass

import numpy as np

from .. import ir
from ..ops.activations import ACTIVATIONS, with_dependencies
from ..ops.dropout import DROPOUT_KEY_SOURCE, UNIFORM_SOURCE, UNIT
from ..ops.softmax import SOFTMAX_SOURCE
from .codegen import NUMERIC_CONSTANTS, Writer
from .plan import Plan

INSTALL_HINT = "pip install graphnn[cuda]"


# -- launch configuration ------------------------------------------------------------------
@dataclass(frozen=True)
class Tile:
    """A matrix-product tile: a block computes ``bm x bn`` outputs, ``bk`` deep per stage;
    each thread computes ``tm x tn`` of them (rows strided by bm/tm, columns by bn/tn)."""
    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    @property
    def threads(self) -> tuple[int, int]:
        """(x, y) threads per block: x along the output's columns."""
        return self.bn // self.tn, self.bm // self.tm

    def check(self):
        tx, ty = self.threads
        t = tx * ty
        ok = (self.bm % self.tm == 0 and self.bn % self.tn == 0 and t <= 1024
              and (self.bm * self.bk) % t == 0 and (self.bk * self.bn) % t == 0)
        if not ok:
            raise ValueError(f"bad matrix-product tile {self}: need bm % tm == bn % tn == 0, "
                             "at most 1024 threads, and both staged tiles divisible by the threads")
        return self


@dataclass(frozen=True)
class Config:
    """Kernel shapes.  ``big`` is used for a product when it gives at least one block per
    multiprocessor, ``small`` otherwise; ``block`` threads for every other kernel (a
    power of two)."""
    big: Tile = Tile(64, 64, 16, 4, 4)
    small: Tile = Tile(32, 32, 16, 2, 2)
    block: int = 256

    def check(self):
        self.big.check()
        self.small.check()
        if self.block < 1 or self.block & (self.block - 1) or self.block > 1024:
            raise ValueError(f"Config.block must be a power of two <= 1024, got {self.block}")
        return self


CONFIG = Config()
# under the simulator, when CONFIG is left as it is: few threads per block
SIMULATOR_CONFIG = Config(big=Tile(8, 8, 8, 2, 2), small=Tile(4, 4, 4, 1, 1), block=32)


# -- argument types (for precompile() and compile_ptx) -----------------------------------------
# M: real matrix (C order), V: real vector, R: real scalar, I: int64 scalar, L: int64 vector
def numba_types(codes, dtype) -> tuple:
    import numba
    real = numba.from_dtype(np.dtype(dtype))
    table = {"M": real[:, ::1], "V": real[::1], "R": real, "I": numba.int64,
             "L": numba.int64[::1]}
    return tuple(table[c] for c in codes)


@dataclass
class Kernel:
    name: str
    source: str
    codes: str          # argument types, one letter each (see numba_types)


# -- the module ----------------------------------------------------------------------------
class CudaModule:
    """Generates the source of the CUDA kernels and their launches for one plan and dtype."""

    def __init__(self, plan: Plan, optimizer, dtype, config: Config | None = None):
        self.plan, self.optimizer, self.dtype = plan, optimizer, np.dtype(dtype)
        self.config = (config or CONFIG).check()
        self.kernels: dict[str, Kernel] = {}
        self.launches: dict[str, int] = {}
        self.labels = plan.loss.targets == "labels"
        self.ycode = "L" if self.labels else "M"
        self._acts: set[str] = set()        # activations the kernels call
        self._text: str | None = None
        for s in plan.forward + plan.train_forward + plan.backward:
            if not isinstance(s, ir.Comment) and type(s) not in _SUPPORTED:
                raise ValueError(f"the CUDA backend cannot compile the instruction "
                                 f"{type(s).__name__} yet; use device='cpu'")
        self._host_text = self._host_source()

    def source(self) -> str:
        """The module: device functions, kernels (those of the plan, and any asked for with
        the ``k_*`` methods before the first call), launch helpers and host functions."""
        if self._text is None:
            self._text = self._generate()
        return self._text

    @property
    def launches_per_step(self) -> int:
        """Kernel launches in one training step: gather, forward, loss, backward, update."""
        return self.launches["train_step"] + 1

    def signature(self, name: str) -> tuple:
        return numba_types(self.kernels[name].codes, self.dtype)

    # -- kernels -------------------------------------------------------------------------
    def _add(self, name: str, source: str, codes: str) -> str:
        if name not in self.kernels:
            self.kernels[name] = Kernel(name, source.strip("\n"), codes)
        return name

    def _elementwise(self, name, args, codes, dims, body, doc):
        """A thread per element of the (rows, cols) matrix `dims`: j across the block's x
        threads, rows over the y threads and the grid (grid-stride)."""
        body = "\n".join("            " + line for line in body.strip("\n").splitlines())
        return self._add(name, f'''
@cuda.jit
def {name}({", ".join(args)}):
    """{doc}"""
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if j < {dims}.shape[1]:
        for i in range(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y, {dims}.shape[0],
                       cuda.gridDim.y * cuda.blockDim.y):
{body}''', codes)

    def _rowwise(self, name, args, codes, call, doc):
        return self._add(name, f'''
@cuda.jit
def {name}({", ".join(args)}):
    """{doc}"""
    i = cuda.grid(1)
    if i < {args[0]}.shape[0]:
        {call}''', codes)

    def k_matmul(self, ta: bool, tb: bool, epi: str, act: str = "linear",
                 bias: bool = False) -> str:
        """The product kernels (big and small tile) of op(a) @ op(b) with this epilogue:
        "set", "acc", "bias_act" (out = act(. + bias)) or "split" (out = ., y = act(. + bias)).
        Returns the base name (the kernels are <base>_big and <base>_small)."""
        self._acts.add(act)
        shape = ("t" if ta else "n") + ("t" if tb else "n")
        if shape == "tt":
            raise ValueError("the CUDA backend has no a^T @ b^T product")
        suffix = {"set": "", "acc": "_acc"}.get(epi)
        if suffix is None:
            suffix = ("_split" if epi == "split" else "") + ("_bias" if bias else "") + \
                     ("" if act == "linear" else f"_{act}")
        base = f"mm_{shape}{suffix}"
        for size, tile in (("big", self.config.big), ("small", self.config.small)):
            name = f"{base}_{size}"
            if name not in self.kernels:
                codes = "MMM" + ("V" if bias else "") + ("M" if epi == "split" else "")
                self._add(name, _matmul_source(name, shape, tile, epi, act, bias), codes)
        return base

    def k_bias_act(self, act: str, bias: bool) -> str:
        self._acts.add(act)
        name = ("bias_act_" if bias else "act_") + act
        v = "z[i, j]" + (" + b[j]" if bias else "")
        rhs = v if act == "linear" else f"{act}({v})"
        return self._elementwise(name, ["out", "z"] + (["b"] if bias else []),
                                 "MM" + ("V" if bias else ""), "out", f"out[i, j] = {rhs}",
                                 f"out = {act}(z{' + b' if bias else ''}), elementwise")

    def _grad_expr(self, act):
        return "gy[i, j]" if act == "linear" else f"gy[i, j] * {act}_grad(x[i, j], y[i, j])"

    def k_act_grad(self, act: str, acc: bool) -> str:
        self._acts.add(act)
        name = f"act_grad_{act}" + ("_acc" if acc else "")
        args = ["gx", "gy"] + ([] if act == "linear" else ["x", "y"])
        return self._elementwise(name, args, "M" * len(args), "gx",
                                 f"gx[i, j] {_assign(acc)} {self._grad_expr(act)}",
                                 f"gx {_assign(acc)} gy * {act}'(x, y), elementwise")

    def k_act_grad_colsum(self, act: str, acc: bool) -> str:
        self._acts.add(act)
        name = f"act_grad_{act}" + ("_acc" if acc else "") + "_colsum"
        args = ["gx", "gy"] + ([] if act == "linear" else ["x", "y"]) + ["colsum"]
        return self._add(name, f'''
@cuda.jit
def {name}({", ".join(args)}):
    """gx {_assign(acc)} g = gy * {act}'(x, y), and colsum[j] = sum over rows of g[:, j]
    (the bias gradient): a strip of columns per block, its y threads' partial sums added
    in shared memory in a fixed order."""
    part = cuda.shared.array(BLOCK, real)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    j = cuda.blockIdx.x * cuda.blockDim.x + tx
    s = zero
    if j < gx.shape[1]:
        for i in range(ty, gx.shape[0], cuda.blockDim.y):
            g = {self._grad_expr(act)}
            gx[i, j] {_assign(acc)} g
            s += g
    part[ty * cuda.blockDim.x + tx] = s
    cuda.syncthreads()
    if ty == 0 and j < gx.shape[1]:
        for r in range(1, cuda.blockDim.y):
            s += part[r * cuda.blockDim.x + tx]
        colsum[j] = s''', "M" * (len(args) - 1) + "V")

    def k_colsum(self) -> str:
        return self._add("colsum", '''
@cuda.jit
def colsum(out, g):
    """out[j] = sum over rows of g[:, j] (a bias gradient): a strip of columns per block,
    its y threads' partial sums added in shared memory in a fixed order."""
    part = cuda.shared.array(BLOCK, real)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    j = cuda.blockIdx.x * cuda.blockDim.x + tx
    s = zero
    if j < g.shape[1]:
        for i in range(ty, g.shape[0], cuda.blockDim.y):
            s += g[i, j]
    part[ty * cuda.blockDim.x + tx] = s
    cuda.syncthreads()
    if ty == 0 and j < g.shape[1]:
        for r in range(1, cuda.blockDim.y):
            s += part[r * cuda.blockDim.x + tx]
        out[j] = s''', "VM")

    def k_sum(self, k: int) -> str:
        ins = [f"a{r}" for r in range(k)]
        return self._elementwise(f"sum{k}", ["out"] + ins, "M" * (k + 1), "out",
                                 "out[i, j] = " + " + ".join(f"{a}[i, j]" for a in ins),
                                 f"out = {' + '.join(ins)}, elementwise")

    def k_copy(self, acc: bool) -> str:
        name = "copy_acc" if acc else "copy"
        return self._elementwise(name, ["out", "src", "col0"], "MMI", "out",
                                 f"out[i, j] {_assign(acc)} src[i, col0 + j]",
                                 f"out {_assign(acc)} src[:, col0 : col0 + out.shape[1]]")

    def k_place(self) -> str:
        return self._elementwise("place", ["out", "src", "col0"], "MMI", "src",
                                 "out[i, col0 + j] = src[i, j]",
                                 "out[:, col0 : col0 + src.shape[1]] = src")

    def k_mul(self, acc: bool) -> str:
        name = "mul_acc" if acc else "mul"
        return self._elementwise(name, ["gx", "gy", "m"], "MMM", "gx",
                                 f"gx[i, j] {_assign(acc)} gy[i, j] * m[i, j]",
                                 f"gx {_assign(acc)} gy * m, elementwise")

    def k_dropout(self) -> str:
        return self._elementwise("dropout", ["out", "x", "mask", "rate", "scale", "key"], "MMMRRI",
                                 "out", '''
m = scale if uniform(key, i, j) >= rate else zero
mask[i, j] = m
out[i, j] = x[i, j] * m''', "mask = scale where uniform(key, i, j) >= rate, else 0; out = x * mask")

    def k_softmax(self) -> str:
        return self._rowwise("softmax", ["out", "x"], "MM", "softmax_row(x, out, i)",
                             "out[i] = softmax(x[i]), a thread per row.")

    def k_softmax_grad(self, acc: bool) -> str:
        name = "softmax_grad_acc" if acc else "softmax_grad"
        return self._rowwise(name, ["gx", "gy", "y"], "MMM",
                             f"softmax_row_grad(gy, y, gx, i, {acc})",
                             f"gx[i] {_assign(acc)} y[i] * (gy[i] - sum(gy[i] * y[i])), "
                             "a thread per row.")

    def k_loss(self, weighted: bool) -> str:
        """The loss of a batch, a thread per row: the per-row source writes g = dLoss/dz and
        returns the row's share of the mean; the same thread adds up the metrics of its row.
        Each block sums its rows in shared memory and adds them atomically: the loss to
        out[slot], the correct count to hits[0], squared / absolute errors to errs[0:2]."""
        loss = self.plan.loss
        name = "loss_weighted" if weighted else "loss"
        args = "z, y, g, " + ("w, wsum, " if weighted else "") + "out, slot, hits, errs"
        values = loss.targets == "values"
        pred = "sigmoid(z[i, j])" if loss.name == "binary_cross_entropy" else "z[i, j]"
        L = ["@cuda.jit", f"def {name}({args}):",
             f'    """Batch loss ({loss.name}), a thread per row: {loss.name}_row writes row i of'
             ' g = dLoss/dz',
             "    and returns row i's share of the mean"
             + (", scaled by c = w[i] * n / sum(w) (g too)" if weighted else "") + ".",
             "    Metrics of the row: " + ("correct count" if loss.correct else "")
             + (", " if loss.correct and values else "")
             + ("squared and absolute error" if values else "") + ("none" if not (
                 loss.correct or values) else "") + ".",
             "    Each block sums its rows in shared memory, then adds them atomically to "
             'out[slot],\n    hits[0] and errs[0:2]."""',
             "    part = cuda.shared.array(BLOCK, real)"]
        if loss.correct:
            L.append("    good = cuda.shared.array(BLOCK, np.int64)")
        if values:
            L += ["    sq = cuda.shared.array(BLOCK, real)",
                  "    ab = cuda.shared.array(BLOCK, real)"]
        L += ["    t = cuda.threadIdx.x", "    i = cuda.blockIdx.x * cuda.blockDim.x + t",
              "    n = z.shape[0]", "    v = zero", "    h = 0", "    e2 = zero", "    e1 = zero",
              "    if i < n:", f"        v = {loss.name}_row(z, y, g, i, n)"]
        if weighted:
            L += ["        c = w[i] * real(n) / wsum[0] if wsum[0] > zero else zero",
                  "        v = c * v", "        for j in range(g.shape[1]):",
                  "            g[i, j] *= c"]
        if loss.correct:
            L.append(f"        h = {loss.name}_row_correct(z, y, i)")
        if values:
            L += ["        for j in range(z.shape[1]):", f"            d = {pred} - y[i, j]",
                  "            e2 += d * d", "            e1 += abs(d)"]
        L.append("    part[t] = v")
        if loss.correct:
            L.append("    good[t] = h")
        if values:
            L += ["    sq[t] = e2", "    ab[t] = e1"]
        L += ["    cuda.syncthreads()", "    if t == 0:", "        s = zero", "        k = 0",
              "        s2 = zero", "        s1 = zero", "        for r in range(cuda.blockDim.x):",
              "            s += part[r]"]
        if loss.correct:
            L.append("            k += good[r]")
        if values:
            L += ["            s2 += sq[r]", "            s1 += ab[r]"]
        L.append("        cuda.atomic.add(out, slot, s)")
        if loss.correct:
            L.append("        cuda.atomic.add(hits, 0, k)")
        if values:
            L += ["        cuda.atomic.add(errs, 0, s2)", "        cuda.atomic.add(errs, 1, s1)"]
        return self._add(name, "\n".join(L),
                         "M" + self.ycode + "M" + ("VV" if weighted else "") + "VILV")

    def k_wsum(self) -> str:
        return self._add("wsum", '''
@cuda.jit
def wsum(w, out):
    """out[0] = sum of the batch's row weights w: one block, its partial sums added in
    shared memory in a fixed order."""
    part = cuda.shared.array(BLOCK, real)
    t = cuda.threadIdx.x
    s = zero
    for i in range(t, w.shape[0], cuda.blockDim.x):
        s += w[i]
    part[t] = s
    cuda.syncthreads()
    if t == 0:
        for r in range(1, cuda.blockDim.x):
            s += part[r]
        out[0] = s''', "VV")

    def k_update(self) -> str:
        opt = self.optimizer
        return self._add("apply_update", f'''
@cuda.jit
def apply_update(params, grads, state, lr, step):
    """{type(opt).__name__} on the whole flat parameter buffer: a thread per parameter
    (grid-stride)."""
    for i in range(cuda.grid(1), params.size, cuda.gridsize(1)):
        {opt.name}_update(i, params, grads, state, lr, step)''', "VVVRI")

    def k_nonfinite(self) -> str:
        return self._add("flag_nonfinite", '''
@cuda.jit
def flag_nonfinite(x, flag):
    """flag[0] = 1 if any element of the flat buffer x is NaN or Inf (grid-stride)."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        if not math.isfinite(x[i]):
            flag[0] = 1''', "VL")

    def k_gather(self, weighted: bool) -> str:
        if self.labels:
            y = "        if j == 0:\n            y[r] = Y[src]"
        else:
            y = "        if j < y.shape[1]:\n            y[r, j] = Y[src, j]"
        if weighted:
            y += "\n        if j == 0:\n            w[r] = W[src]"
        name = "gather_weighted" if weighted else "gather"
        args = "X, Y, W, order, start, x, y, w" if weighted else "X, Y, order, start, x, y"
        return self._add(name, f'''
@cuda.jit
def {name}({args}):
    """The batch: row r of x (and y{", w" if weighted else ""}) = row order[start + r] of X (and Y{", W" if weighted else ""});
    a thread per column, rows over the y threads and the grid."""
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    for r in range(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y, x.shape[0],
                   cuda.gridDim.y * cuda.blockDim.y):
        src = order[start + r]
        if j < x.shape[1]:
            x[r, j] = X[src, j]
{y}''', "M" + self.ycode + ("V" if weighted else "") + "LI" + "M" + self.ycode
                         + ("V" if weighted else ""))

    def k_clear(self) -> str:
        return self._add("clear", '''
@cuda.jit
def clear(out, count, hits, errs):
    """out[:count] = 0, hits[0] = 0, errs[:] = 0: the accumulators of one call."""
    for i in range(cuda.grid(1), count, cuda.gridsize(1)):
        out[i] = zero
    if cuda.grid(1) == 0:
        hits[0] = 0
        for j in range(errs.shape[0]):
            errs[j] = zero''', "VILV")

    # -- host code ----------------------------------------------------------------------
    def _ref(self, b: ir.Buf) -> str:
        return "x" if b.kind == "input" else f"v.{b.name}"

    @staticmethod
    def _rows(b: ir.Buf) -> str:
        return "n" if b.rows is None else str(b.rows)

    def _steps(self, w: Writer, steps, count: str) -> None:
        """One launch line per instruction (a product and the bias + activation after it
        on the same buffer: one launch)."""
        r, rows = self._ref, self._rows
        i = 0
        while i < len(steps):
            s = steps[i]
            i += 1
            if isinstance(s, ir.Comment):
                w()
                w(f"# {s.text}")
                continue
            if s.note:
                w(f"# {s.note}")
            nxt = steps[i] if i < len(steps) else None
            self.launches[count] = self.launches.get(count, 0) + 1
            if isinstance(s, ir.MatMul):
                args = [r(s.out), r(s.a), r(s.b)]
                if (isinstance(nxt, ir.BiasAct) and not s.acc and nxt.z == s.out):
                    i += 1
                    if nxt.note:
                        w(f"# {nxt.note}   (in the product's epilogue)")
                    bias = nxt.bias is not None
                    args += [r(nxt.bias)] if bias else []
                    if nxt.out == s.out:
                        name = self.k_matmul(s.ta, s.tb, "bias_act", nxt.act, bias)
                    else:
                        name = self.k_matmul(s.ta, s.tb, "split", nxt.act, bias)
                        args.append(r(nxt.out))
                else:
                    name = self.k_matmul(s.ta, s.tb, "acc" if s.acc else "set")
                w(f'launch_mm("{name}", {rows(s.out)}, {s.out.width})({", ".join(args)})')
            elif isinstance(s, ir.BiasAct):
                name = self.k_bias_act(s.act, s.bias is not None)
                args = [r(s.out), r(s.z)] + ([r(s.bias)] if s.bias is not None else [])
                w(f'launch_ew("{name}", n, {s.out.width})({", ".join(args)})')
            elif isinstance(s, ir.ActGrad):
                args = [r(s.gx), r(s.gy)] + ([] if s.act == "linear" else [r(s.x), r(s.y)])
                if s.colsum is not None:
                    name = self.k_act_grad_colsum(s.act, s.acc)
                    w(f'launch_cols("{name}", n, {s.gx.width})({", ".join(args + [r(s.colsum)])})')
                else:
                    name = self.k_act_grad(s.act, s.acc)
                    w(f'launch_ew("{name}", n, {s.gx.width})({", ".join(args)})')
            elif isinstance(s, ir.ColSum):
                w(f'launch_cols("{self.k_colsum()}", n, {s.g.width})({r(s.out)}, {r(s.g)})')
            elif isinstance(s, ir.Sum):
                args = [r(s.out)] + [r(b) for b in s.ins]
                w(f'launch_ew("{self.k_sum(len(s.ins))}", n, {s.out.width})({", ".join(args)})')
            elif isinstance(s, ir.Copy):
                w(f'launch_ew("{self.k_copy(s.acc)}", n, {s.out.width})'
                  f'({r(s.out)}, {r(s.src)}, {s.col0})')
            elif isinstance(s, ir.Place):
                w(f'launch_ew("{self.k_place()}", n, {s.src.width})'
                  f'({r(s.out)}, {r(s.src)}, {s.col0})')
            elif isinstance(s, ir.Softmax):
                w(f'launch_rows("{self.k_softmax()}", n)({r(s.out)}, {r(s.x)})')
            elif isinstance(s, ir.SoftmaxGrad):
                w(f'launch_rows("{self.k_softmax_grad(s.acc)}", n)'
                  f'({r(s.gx)}, {r(s.gy)}, {r(s.y)})')
            elif isinstance(s, ir.Mul):
                w(f'launch_ew("{self.k_mul(s.acc)}", n, {s.gx.width})'
                  f'({r(s.gx)}, {r(s.gy)}, {r(s.m)})')
            elif isinstance(s, ir.Dropout):
                keep = 1.0 - s.rate
                with w.block("if training:"):
                    w(f'launch_ew("{self.k_dropout()}", n, {s.out.width})({r(s.out)}, {r(s.x)}, '
                      f'{r(s.mask)}, real({s.rate!r}), real({1 / keep!r}), key + {s.salt})')
                with w.block("else:"):
                    w(f'launch_ew("{self.k_copy(False)}", n, {s.out.width})({r(s.out)}, {r(s.x)}, 0)')

    def _header(self, w: Writer):
        p, c = self.plan, self.config
        desc = " -> ".join(f"{p.names[n]}({n.width})" for n in p.model.nodes)
        w(f'"""graphnn CUDA kernels for model {p.model.name!r}, {self.dtype.name}, '
          f'loss {p.loss.name}.')
        w()
        w(f"Graph: {desc}")
        w(f"Parameters: {p.n_params} values in one flat device buffer; gradients alike.")
        w("Arena: every activation and gradient is a block of columns of one device workspace")
        w("with room for `cap` rows; bind() cuts out (once per batch size) the views of n rows.")
        if p.fused:
            w(f"Fused: the output {p.fused}: training feeds the loss the logits.")
        w("Products: shared-memory tiles of BIG (or SMALL when BIG would leave")
        w("multiprocessors idle); other kernels: BLOCK threads per block.")
        w("Set at load: SMS (multiprocessors); device accumulators HITS (correct count),")
        w("ERRS (squared, absolute error), WSUM (a batch's total weight); EMPTY (no weights).")
        w('"""')
        w("import math")
        w("import warnings")
        w("from types import SimpleNamespace as Views")
        w()
        w("import numpy as np")
        w("from numba import cuda")
        w()
        w(f"real = np.{self.dtype.name}")
        consts = dict(NUMERIC_CONSTANTS)
        for a in self._activations():
            consts.update(a.constants)
        for k, v in consts.items():
            w(f"{k} = real({v!r})")
        w(f"UNIT = real({UNIT!r})       # uniform(): 24 random bits -> [0, 1)")
        w(f"ARENA_WIDTH = {p.arena_width}")
        w(f"N_PARAMS = {p.n_params}")
        for label, t in (("BIG", c.big), ("SMALL", c.small)):
            tx, ty = t.threads
            w(f"{label} = ({t.bm}, {t.bn}, {tx}, {ty})   # rows, columns per block; threads x, y "
              f"({t.bk} deep, {t.tm}x{t.tn} outputs per thread)")
        w(f"BLOCK = {c.block}")
        w("SMS = 1")
        w("SIMULATOR = False")
        w("HITS = ERRS = WSUM = EMPTY = None")
        w()

    def _activations(self):
        names = set()
        for s in self.plan.forward + self.plan.train_forward + self.plan.backward:
            act = getattr(s, "act", None)
            if act:
                names.add(act)
        names.update(self.plan.loss.needs)
        names.update(self._acts)
        names.discard("linear")
        return with_dependencies(sorted(n for n in names if n in ACTIVATIONS))

    def _device(self, w: Writer, source: str):
        w("@cuda.jit(device=True)")
        for line in source.splitlines():
            w(line)
        w()
        w()

    def _host_source(self) -> str:
        host = Writer()
        self._host(host)
        return host.text()

    def _generate(self) -> str:
        p, loss = self.plan, self.plan.loss
        w = Writer()
        self._header(w)
        w("# " + "-" * 16 + " scalar math (graphnn/ops, graphnn/optim) as device functions "
          + "-" * 16)
        w()
        for a in self._activations():
            self._device(w, a.forward)
            self._device(w, a.grad)
        if any(k.startswith("softmax") for k in self.kernels):
            for src in SOFTMAX_SOURCE:
                self._device(w, src)
        self._device(w, loss.source)
        if loss.correct:
            self._device(w, loss.correct)
        self._device(w, self.optimizer.source())
        if "dropout" in self.kernels:
            self._device(w, UNIFORM_SOURCE)
        w("# " + "-" * 36 + " kernels " + "-" * 36)
        w()
        for k in self.kernels.values():
            for line in k.source.splitlines():
                w(line)
            w()
            w()
        w("# " + "-" * 30 + " launch configuration " + "-" * 30)
        w()
        for line in LAUNCH_SOURCE.strip("\n").splitlines():
            w(line)
        w()
        w()
        return w.text() + self._host_text

    def _host(self, w: Writer):
        p, loss = self.plan, self.plan.loss
        k = p.logits.width
        # -- bind
        w("# " + "-" * 30 + " buffers " + "-" * 30)
        w()
        w("_bound = {}")
        w()
        w()
        with w.block("def view(arena, cap, col, n, width):"):
            w('"""Rows 0..n-1 of the arena block that starts at column `col`."""')
            w("start = cap * col")
            w("return arena[start:start + n * width].reshape(n, width)")
        w()
        w()
        with w.block("def bind(params, grads, arena, n):"):
            w('"""Device views of every parameter, gradient and arena block for n rows (made')
            w('once per buffers and n; views of a replaced arena are dropped)."""')
            w("key = (id(params), id(grads), id(arena), n)")
            w("v = _bound.get(key)")
            w("if v is not None and v.params is params and v.grads is grads and v.arena is arena:")
            w("    return v")
            w("for old in [k for k, e in _bound.items() if e.params is not params or e.arena is not arena]:")
            w("    del _bound[old]")
            w("cap = arena.size // ARENA_WIDTH")
            w("v = _bound[key] = Views(params=params, grads=grads, arena=arena)")
            for slot in p.params:
                rng = f"[{slot.offset}:{slot.offset + slot.size}]"
                shape = f".reshape{slot.shape}" if len(slot.shape) == 2 else ""
                w(f"v.{slot.var} = params{rng}{shape}   # {slot.name}")
            with w.block("if grads is not None:"):
                for slot in p.params:
                    rng = f"[{slot.offset}:{slot.offset + slot.size}]"
                    shape = f".reshape{slot.shape}" if len(slot.shape) == 2 else ""
                    w(f"v.{_grad_var(slot)} = grads{rng}{shape}   # {slot.name} gradient")
            for name, (col, width) in p.arena.items():
                if name != "tmp":
                    w(f"v.{name} = view(arena, cap, {col}, n, {width})")
            w("return v")
        w()
        w()
        w("_batches = {}")
        w()
        w()
        with w.block("def batch(xbuf, ybuf, wbuf, n, d):"):
            w('"""The batch buffers as an (n, d) input, n targets and n weights (or the empty')
            w('wbuf), made once per n."""')
            w("key = (id(xbuf), id(ybuf), id(wbuf), n)")
            w("hit = _batches.get(key)")
            with w.block("if hit is None or hit[0] is not xbuf or hit[1] is not ybuf or hit[2] is not wbuf:"):
                w("for old in [k for k, e in _batches.items() if e[0] is not xbuf]:")
                w("    del _batches[old]")
                ty = "ybuf[:n]" if self.labels else f"ybuf[:n * {k}].reshape(n, {k})"
                w(f"hit = _batches[key] = (xbuf, ybuf, wbuf, xbuf[:n * d].reshape(n, d), {ty},")
                w("                       wbuf[:n] if wbuf.size else wbuf)")
            w("return hit[3], hit[4], hit[5]")
        w()
        w()
        # -- forward / backward
        w("# " + "-" * 30 + " forward pass " + "-" * 30)
        w()
        self._pass(w, "forward", "v, x", p.forward, p.output,
                   "The graph's output for the rows of x (inference).")
        if p.fused or p.dropout:
            why = ", ".join(([f"stops at the logits ({p.fused} fused)"] if p.fused else [])
                            + (["dropout active when training"] if p.dropout else []))
            self._pass(w, "forward_logits", "v, x, training, key", p.train_forward, p.logits,
                       f"Forward pass as the loss sees it: {why}; `key` seeds dropout.")
        else:
            with w.block("def forward_logits(v, x, training, key):"):
                w('"""Forward pass as the loss sees it: the same as forward() for this graph."""')
                w("return forward(v, x)")
            w()
            w()
            self.launches["forward_logits"] = self.launches["forward"]
        w("# " + "-" * 30 + " backward pass " + "-" * 30)
        w()
        with w.block("def backward(v, x):"):
            w('"""Backpropagation: from dLoss/dlogits, in reverse graph order, '
              'every parameter\'s gradient."""')
            w("n = x.shape[0]")
            self.launches["backward"] = 0
            self._steps(w, p.backward, "backward")
        w()
        w()
        dz = f"v.{p.dlogits.name}"
        self.k_loss(False)
        self.k_loss(True)
        self.k_wsum()
        self.k_update()
        self.k_nonfinite()
        self.k_gather(False)
        self.k_gather(True)
        self.k_clear()
        self.k_copy(False)
        cols = "d" if self.labels else f"max(d, {k})"
        schedule = self.optimizer.schedule
        w("# " + "-" * 30 + " loss, update, step " + "-" * 30)
        w()
        if schedule.per_step:
            w("# the learning-rate schedule (graphnn/schedules), run on the host: one value per step")
            for line in schedule.source().strip("\n").splitlines():
                w(line)
            w()
            w()
        w(f"""
def batch_loss(v, z, y, w, out, slot):
    \"\"\"The loss of the batch (z, y) (weighted by w unless w is empty): its mean added to
    out[slot], dLoss/dz into {p.dlogits.name}, metrics into HITS and ERRS.\"\"\"
    n = z.shape[0]
    if w.size == 0:
        launch_rows("loss", n)(z, y, {dz}, out, slot, HITS, ERRS)
    else:
        launch_one("wsum", n)(w, WSUM)
        launch_rows("loss_weighted", n)(z, y, {dz}, w, WSUM, out, slot, HITS, ERRS)


def update(params, grads, state, lr, step):
    \"\"\"{type(self.optimizer).__name__} on the whole flat parameter buffer (one launch).\"\"\"
    launch_flat("apply_update", params.size)(params, grads, state, real(lr), step)


def all_finite(x):
    \"\"\"Whether every element of the flat device buffer x is finite: checked on the
    device, only a one-element flag comes back.\"\"\"
    flag = cuda.to_device(np.zeros(1, np.int64))
    launch_flat("flag_nonfinite", x.size)(x, flag)
    return int(flag.copy_to_host()[0]) == 0


def train_step(v, x, y, w, state, lr, step, key, out, slot):
    \"\"\"One step on the batch (x, y, w): forward, loss (its mean into out[slot]), backward,
    update.  Nothing comes back to the host.\"\"\"
    z = forward_logits(v, x, True, key)
    batch_loss(v, z, y, w, out, slot)
    backward(v, x)
    update(v.params, v.grads, state, lr, step)


def loss_and_grads(params, grads, arena, x, y, w, key):
    \"\"\"Mean {loss.name} loss over the rows of x (weighted by w if not empty; copied back),
    and its gradient in grads; key seeds the dropout masks.\"\"\"
    v = bind(params, grads, arena, x.shape[0])
    out = results(1)
    z = forward_logits(v, x, True, key)
    batch_loss(v, z, y, w, out, 0)
    backward(v, x)
    return float(out.copy_to_host()[0])


_out = None


def results(count):
    \"\"\"A device vector for `count` per-batch losses, zeroed, with HITS and ERRS.\"\"\"
    global _out
    if _out is None or _out.size < count:
        _out = cuda.device_array(max(count, 64), real)
    launch_flat("clear", count)(_out, count, HITS, ERRS)
    return _out


def add_stats(stats):
    \"\"\"stats += [correct, squared error, absolute error] from the device (two copies).\"\"\"
    errs = ERRS.copy_to_host()
    stats[0] += HITS.copy_to_host()[0]
    stats[1] += errs[0]
    stats[2] += errs[1]""".strip("\n"))
        w()
        w()
        w()
        self.launches["train_step"] = (self.launches["forward_logits"] + 1
                                       + self.launches["backward"] + 1)
        w("# " + "-" * 30 + " loops over the data " + "-" * 30)
        w()
        lr = "real(schedule_lr(s))" if schedule.per_step else "lr"
        w(f"""
def train_epoch(params, grads, state, arena, X, Y, W, order, first, last, batch_size, lr, step,
                seed, xbuf, ybuf, wbuf, losses, stats):
    \"\"\"Batches first..last-1 of an epoch: gather each batch's rows (in the shuffled order,
    with their weights if W is not empty) on the device and take a training step.  `step`
    counts the steps before this call, `seed` seeds the dropout masks.  The per-batch
    mean losses (into the host array losses[first:last]) and the metric sums (added to
    the host array stats) come back once, at the end.  Returns sum of loss * rows.\"\"\"
    rows, d = X.shape
    count = last - first
    out = results(count)
    lr = real(lr)
    weighted = W.size > 0
    for b in range(first, last):
        start = b * batch_size
        n = min(batch_size, rows - start)
        v = bind(params, grads, arena, n)
        x, y, w = batch(xbuf, ybuf, wbuf, n, d)
        if weighted:
            launch_ew("gather_weighted", n, {cols})(X, Y, W, order, start, x, y, w)
        else:
            launch_ew("gather", n, {cols})(X, Y, order, start, x, y)
        s = step + b - first + 1
        train_step(v, x, y, w, state, {lr}, s, dropout_key(seed, b), out, b - first)
    means = out.copy_to_host()[:count].astype(np.float64)
    losses[first:last] = means
    add_stats(stats)
    total = 0.0
    for b in range(first, last):
        total += min(batch_size, rows - b * batch_size) * means[b - first]
    return total


{DROPOUT_KEY_SOURCE}


def predict(params, arena, X, out):
    \"\"\"forward() over all rows of X, cap rows at a time, each chunk copied into out.\"\"\"
    cap = arena.size // ARENA_WIDTH
    rows = X.shape[0]
    for start in range(0, rows, cap):
        stop = min(start + cap, rows)
        v = bind(params, None, arena, stop - start)
        y = forward(v, X[start:stop])
        launch_ew("copy", stop - start, {p.output.width})(out[start:stop], y, 0)


def evaluate(params, arena, X, Y, stats):
    \"\"\"Summed loss (each chunk's mean times its rows) over all rows of X, no dropout; the
    metric sums are added to the host array stats.\"\"\"
    cap = arena.size // ARENA_WIDTH
    rows = X.shape[0]
    chunks = -(-rows // cap)
    out = results(chunks)
    for c in range(chunks):
        start = c * cap
        stop = min(start + cap, rows)
        v = bind(params, None, arena, stop - start)
        z = forward_logits(v, X[start:stop], False, 0)
        batch_loss(v, z, Y[start:stop], EMPTY, out, c)
    means = out.copy_to_host()[:chunks].astype(np.float64)
    add_stats(stats)
    total = 0.0
    for c in range(chunks):
        total += (min(rows, (c + 1) * cap) - c * cap) * means[c]
    return total""".strip("\n"))

    def _pass(self, w: Writer, name, args, steps, result: ir.Buf, doc: str):
        with w.block(f"def {name}({args}):"):
            w(f'"""{doc}"""')
            w("n = x.shape[0]")
            self.launches[name] = 0
            self._steps(w, steps, name)
            w(f"return {self._ref(result)}")
        w()
        w()


def _grad_var(slot) -> str:
    head, _, tail = slot.var.rpartition("_")
    return f"{head}_d{tail}"


def _assign(acc: bool) -> str:
    return "+=" if acc else "="


_SUPPORTED = (ir.MatMul, ir.BiasAct, ir.ActGrad, ir.ColSum, ir.Sum, ir.Copy, ir.Place,
              ir.Softmax, ir.SoftmaxGrad) + tuple(
    getattr(ir, n) for n in ("Dropout", "Mul") if hasattr(ir, n))


LAUNCH_SOURCE = '''
_launch = {}


def _configure(kernel, grid, block):
    """kernel[grid, block], made once per shape (quietly: small grids are expected here).
    The simulator's kernels hold a single configuration, so there it is set per launch."""
    if SIMULATOR:
        return lambda *args: kernel[grid, block](*args)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Grid size")
        return kernel[grid, block]


def _pow2(k):
    return 1 << max(0, (k - 1).bit_length())


def launch_mm(name, M, N):
    """Product kernel `name` configured for an M x N output (once per shape): the BIG tile
    when it gives every multiprocessor a block, else the SMALL one."""
    key = (name, M, N)
    k = _launch.get(key)
    if k is None:
        bm, bn, tx, ty = BIG
        size = "big"
        if -(-M // bm) * -(-N // bn) < SMS:
            bm, bn, tx, ty = SMALL
            size = "small"
        k = _launch[key] = _configure(globals()[f"{name}_{size}"],
                                      (-(-M // bm), -(-N // bn)), (tx, ty))
    return k


def launch_ew(name, n, w):
    """Elementwise kernel over n x w: x threads along the columns (at most 32), the rest
    of the block and the grid along the rows."""
    key = (name, n, w)
    k = _launch.get(key)
    if k is None:
        bx = min(32, BLOCK, _pow2(w))
        by = BLOCK // bx
        k = _launch[key] = _configure(globals()[name], (-(-w // bx), min(-(-n // by), 65535)),
                                      (bx, by))
    return k


def launch_cols(name, n, w):
    """Column-sum kernel over n x w: a strip of columns per block, the block's y threads
    along all n rows."""
    key = (name, n, w, "cols")
    k = _launch.get(key)
    if k is None:
        bx = min(32, BLOCK, _pow2(w))
        by = min(BLOCK // bx, _pow2(n))
        k = _launch[key] = _configure(globals()[name], (-(-w // bx), 1), (bx, by))
    return k


def launch_rows(name, n):
    """A thread per row."""
    key = (name, n, "rows")
    k = _launch.get(key)
    if k is None:
        b = min(BLOCK, _pow2(n))
        k = _launch[key] = _configure(globals()[name], -(-n // b), b)
    return k


def launch_one(name, size):
    """One block (a reduction over `size` elements)."""
    key = (name, size, "one")
    k = _launch.get(key)
    if k is None:
        k = _launch[key] = _configure(globals()[name], 1, min(BLOCK, _pow2(size)))
    return k


def launch_flat(name, size):
    """A thread per element of a flat buffer (grid-stride, at most 32 blocks per
    multiprocessor)."""
    key = (name, size, "flat")
    k = _launch.get(key)
    if k is None:
        b = min(BLOCK, _pow2(size))
        k = _launch[key] = _configure(globals()[name], min(-(-size // b), 32 * SMS), b)
    return k'''


def _matmul_source(name, shape, tile: Tile, epi, act, bias) -> str:
    """One tiled product kernel, unrolled over the thread's tm x tn outputs."""
    bm, bn, bk, tm, tn = tile.bm, tile.bn, tile.bk, tile.tm, tile.tn
    rx, ry = tile.threads
    t = rx * ry
    la, lb = bm * bk // t, bk * bn // t
    args = ["out", "a", "b"] + (["bias"] if bias else []) + (["y"] if epi == "split" else [])
    op_a = "a.T" if shape[0] == "t" else "a"
    op_b = "b.T" if shape[1] == "t" else "b"
    K = "a.shape[0]" if shape[0] == "t" else "a.shape[1]"
    what = {"set": f"out = {op_a} @ {op_b}", "acc": f"out += {op_a} @ {op_b}",
            "bias_act": f"out = {act}({op_a} @ {op_b}{' + bias' if bias else ''})",
            "split": f"out = {op_a} @ {op_b};  y = {act}(out{' + bias' if bias else ''})"}[epi]
    L = []
    L.append("@cuda.jit")
    L.append(f"def {name}({', '.join(args)}):")
    L.append(f'    """{what}: a {bm}x{bn} tile of out per block, staged {bk} deep in shared')
    L.append(f"    memory; {rx}x{ry} threads, each {tm}x{tn} outputs in registers (rows {ry} apart,")
    L.append(f'    columns {rx} apart); zeros past the ragged edges."""')
    L.append(f"    As = cuda.shared.array(({bk}, {bm + 1}), real)   # As[k, m] = A[m0 + m, k0 + k]")
    L.append(f"    Bs = cuda.shared.array(({bk}, {bn + 1}), real)   # Bs[k, n] = B[k0 + k, n0 + n]")
    L.append("    M = out.shape[0]")
    L.append("    N = out.shape[1]")
    L.append(f"    K = {K}")
    L.append("    tx = cuda.threadIdx.x")
    L.append("    ty = cuda.threadIdx.y")
    L.append(f"    t = ty * {rx} + tx")
    L.append(f"    m0 = cuda.blockIdx.x * {bm}      # rows on the grid's x: up to 2^31 - 1 blocks")
    L.append(f"    n0 = cuda.blockIdx.y * {bn}")
    for i in range(tm):
        L.append("    " + " = ".join(f"c{i}_{j}" for j in range(tn)) + " = zero")
    L.append(f"    for k0 in range(0, K, {bk}):")
    # stage A: consecutive threads read consecutive addresses of a
    L.append(f"        for l in range({la}):")
    L.append(f"            e = t + l * {t}")
    if shape[0] == "n":     # a is M x K, row-major
        L += [f"            r = e // {bk}", f"            q = e % {bk}",
              "            if m0 + r < M and k0 + q < K:",
              "                As[q, r] = a[m0 + r, k0 + q]",
              "            else:", "                As[q, r] = zero"]
    else:                   # a is K x M
        L += [f"            r = e // {bm}", f"            q = e % {bm}",
              "            if k0 + r < K and m0 + q < M:",
              "                As[r, q] = a[k0 + r, m0 + q]",
              "            else:", "                As[r, q] = zero"]
    L.append(f"        for l in range({lb}):")
    L.append(f"            e = t + l * {t}")
    if shape[1] == "n":     # b is K x N
        L += [f"            r = e // {bn}", f"            q = e % {bn}",
              "            if k0 + r < K and n0 + q < N:",
              "                Bs[r, q] = b[k0 + r, n0 + q]",
              "            else:", "                Bs[r, q] = zero"]
    else:                   # b is N x K
        L += [f"            r = e // {bk}", f"            q = e % {bk}",
              "            if n0 + r < N and k0 + q < K:",
              "                Bs[q, r] = b[n0 + r, k0 + q]",
              "            else:", "                Bs[q, r] = zero"]
    L.append("        cuda.syncthreads()")
    L.append(f"        for kk in range({bk}):")
    for i in range(tm):
        L.append(f"            a{i} = As[kk, ty" + (f" + {i * ry}]" if i else "]"))
    for j in range(tn):
        L.append(f"            b{j} = Bs[kk, tx" + (f" + {j * rx}]" if j else "]"))
    for i in range(tm):
        for j in range(tn):
            L.append(f"            c{i}_{j} += a{i} * b{j}")
    L.append("        cuda.syncthreads()")
    for j in range(tn):
        L.append(f"    col{j} = n0 + tx" + (f" + {j * rx}" if j else ""))
    for i in range(tm):
        L.append(f"    row = m0 + ty" + (f" + {i * ry}" if i else ""))
        L.append("    if row < M:")
        for j in range(tn):
            c, col = f"c{i}_{j}", f"col{j}"
            L.append(f"        if {col} < N:")
            val = c + (f" + bias[{col}]" if bias else "")
            fval = val if act == "linear" else f"{act}({val})"
            if epi == "set":
                L.append(f"            out[row, {col}] = {c}")
            elif epi == "acc":
                L.append(f"            out[row, {col}] += {c}")
            elif epi == "bias_act":
                L.append(f"            out[row, {col}] = {fval}")
            else:
                L.append(f"            out[row, {col}] = {c}")
                L.append(f"            y[row, {col}] = {fval}")
    return "\n".join(L)


def load(source: str, tag: str) -> dict:
    """Exec the generated module; its source is kept for tracebacks."""
    filename = f"<graphnn-cuda:{tag}:{abs(hash(source)):x}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {"__name__": "graphnn_generated_cuda"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


# -- the backend ---------------------------------------------------------------------------
def import_cuda():
    """numba.cuda, and whether it is the simulator; a ValueError saying why not otherwise."""
    if importlib.util.find_spec("numba_cuda") is None:
        raise ValueError("device='cuda' needs the numba-cuda package, which is not installed: "
                         f"{INSTALL_HINT}")
    from numba.core import config
    if "numba.cuda" not in sys.modules:
        config.reload_config()          # NUMBA_ENABLE_CUDASIM set after numba was imported
    from numba import cuda
    if getattr(cuda, "implementation", "NVIDIA") != "NVIDIA":
        raise ValueError("device='cuda' needs NVIDIA's numba-cuda package, but Numba's "
                         f"built-in CUDA target was imported: {INSTALL_HINT}")
    if config.ENABLE_CUDASIM:
        return cuda, True
    from numba.cuda.cudadrv import driver
    try:
        ok = driver.driver.is_available
    except Exception:                               # noqa: BLE001 - any driver failure
        ok = False
    if not ok:
        why = str(driver.driver.initialization_error or "").strip()
        if "NO_DEVICE" in why.upper() or "no CUDA-capable device" in why:
            raise ValueError(f"device='cuda': no CUDA GPU was found ({why}); use device='cpu'")
        raise ValueError("device='cuda': no NVIDIA driver could be loaded"
                         + (f" ({' '.join(why.split())})" if why else "")
                         + "; install the NVIDIA driver on a machine with a GPU, or use device='cpu'")
    try:
        count = len(cuda.gpus)
    except Exception:                               # noqa: BLE001
        count = 0
    if count == 0:
        raise ValueError("device='cuda': the NVIDIA driver is loaded but reports no GPU; "
                         "use device='cpu'")
    from numba.cuda.cudadrv import nvvm
    if not nvvm.is_available():
        raise ValueError("device='cuda': the CUDA compiler (NVVM) was not found: "
                         f"{INSTALL_HINT} installs it (nvidia-nvvm), or install the CUDA toolkit")
    return cuda, False


class CudaBackend:
    """The CUDA backend as the model sees it: the same methods as ``CpuBackend``, on
    ``DeviceNDArray``s.  ``launches_per_step`` counts the kernels of one training step."""

    device = "cuda"

    def __init__(self, plan: Plan, optimizer, dtype):
        self.dtype = np.dtype(dtype)
        self._cuda, self.simulator = import_cuda()
        config = SIMULATOR_CONFIG if self.simulator and CONFIG == Config() else CONFIG
        module = CudaModule(plan, optimizer, self.dtype, config)
        self.module = module
        self.source = module.source()
        self.launches_per_step = module.launches_per_step
        self.launches = dict(module.launches)
        ns = load(self.source, plan.model.name)
        cuda = self._cuda
        ns["SIMULATOR"] = self.simulator
        if not self.simulator:
            ns["SMS"] = int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
        ns["HITS"] = cuda.device_array(1, np.int64)
        ns["ERRS"] = cuda.device_array(2, self.dtype)
        ns["WSUM"] = cuda.device_array(1, self.dtype)
        ns["EMPTY"] = cuda.to_device(np.zeros(0, self.dtype))
        self.kernels = ns
        for name in ("train_epoch", "predict", "evaluate", "loss_and_grads", "update"):
            setattr(self, name, ns[name])

    def compile(self, labels: bool):
        """Nothing to do now: each kernel is compiled by numba-cuda at its first launch, for
        exactly the argument types it gets (``precompile()`` compiles them all at once)."""

    def precompile(self):
        """Compile every kernel of the module now (both tiles of every product), for the
        argument types the launches pass; a no-op under the simulator."""
        if self.simulator:
            return
        for name in self.module.kernels:
            self.kernels[name].compile(self.module.signature(name))

    def to_device(self, host: np.ndarray):
        return self._cuda.to_device(np.ascontiguousarray(host))

    def copy(self, array):
        """A copy of a device array, made on the device (nothing goes through the host)."""
        out = self._cuda.device_array_like(array)
        out.copy_to_device(array)
        return out

    def all_finite(self, array) -> bool:
        return self.kernels["all_finite"](array)

    @staticmethod
    def to_host(array) -> np.ndarray:
        return array.copy_to_host()
