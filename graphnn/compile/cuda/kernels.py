"""The CUDA kernel library: one emitter per kind of kernel, each returning a kernel's name
after adding its ``@cuda.jit`` source (once) to ``self.kernels``.

The kernels read every size from their arguments' shapes, so a kernel's source depends on
the op kinds, activations, loss, optimizer and tile (``config.py``) only, never on a
model's widths, batch size, names or rates (those arrive at launch).  They call the
device functions a generated module defines before them (the activations, ``real``,
``zero``, ``BLOCK``, ``uniform``, ``<loss>_row``, ``<optimizer>_update``).

  * matrix products: shared-memory tiles, each thread computing a small block of outputs
    in registers; the three shapes of a Dense layer (x @ W, x^T @ dz, dz @ W^T) with
    ragged edges; ``acc`` adds into the output; a bias + activation that follows the
    forward product on the same buffer runs in the product's epilogue.
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
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ...ops.activations import ACTIVATIONS
from .config import Config, Tile

_IDENT = re.compile(r"[a-z][a-z0-9_]{0,39}")


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



class KernelLibrary:
    """The kernels one generated module needs, emitted on demand (``k_*``).  ``loss`` and
    ``optimizer`` pick the loss and update kernels; ``config`` the tiles and block size."""

    def __init__(self, loss, optimizer, dtype, config: Config):
        self.loss, self.optimizer, self.dtype = loss, optimizer, np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"the CUDA backend computes in float32 or float64, not {self.dtype}")
        for what, name in (("loss", loss.name), ("optimizer", optimizer.name)):
            if not isinstance(name, str) or not _IDENT.fullmatch(name):   # becomes a function name
                raise ValueError(f"the {what} name {name!r} is not a plain lower-case word")
        self.config = config.check()
        self.kernels: dict[str, Kernel] = {}
        self.labels = loss.targets == "labels"
        self.ycode = "L" if self.labels else "M"
        self._acts: set[str] = set()        # activations the kernels call

    def _use(self, act: str) -> None:
        """Note that a kernel calls activation ``act`` (a name from the fixed table only:
        it becomes a function name in the source)."""
        if act != "linear" and act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}")
        self._acts.add(act)

    def signature(self, name: str) -> tuple:
        """Numba argument types of kernel ``name`` (for ``compile`` and ``compile_ptx``)."""
        return numba_types(self.kernels[name].codes, self.dtype)

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
        self._use(act)
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
        self._use(act)
        name = ("bias_act_" if bias else "act_") + act
        v = "z[i, j]" + (" + b[j]" if bias else "")
        rhs = v if act == "linear" else f"{act}({v})"
        return self._elementwise(name, ["out", "z"] + (["b"] if bias else []),
                                 "MM" + ("V" if bias else ""), "out", f"out[i, j] = {rhs}",
                                 f"out = {act}(z{' + b' if bias else ''}), elementwise")

    def _grad_expr(self, act):
        return "gy[i, j]" if act == "linear" else f"gy[i, j] * {act}_grad(x[i, j], y[i, j])"

    def k_act_grad(self, act: str, acc: bool) -> str:
        self._use(act)
        name = f"act_grad_{act}" + ("_acc" if acc else "")
        args = ["gx", "gy"] + ([] if act == "linear" else ["x", "y"])
        return self._elementwise(name, args, "M" * len(args), "gx",
                                 f"gx[i, j] {_assign(acc)} {self._grad_expr(act)}",
                                 f"gx {_assign(acc)} gy * {act}'(x, y), elementwise")

    def k_act_grad_colsum(self, act: str, acc: bool) -> str:
        self._use(act)
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
        return self._elementwise("dropout", ["out", "x", "mask", "rate", "scale", "key", "row0"],
                                 "MMMRRII", "out", '''
m = scale if uniform(key, row0 + i, j) >= rate else zero
mask[i, j] = m
out[i, j] = x[i, j] * m''', "mask = scale where uniform(key, row0 + i, j) >= rate, else 0; "
                                 "out = x * mask (row0: the batch's first row in the whole "
                                 "data, 0 but in data-parallel training)")

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
        loss = self.loss
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
        label = type(opt).__name__
        label = label if _IDENT.fullmatch(label.lower()) else "the optimizer"
        return self._add("apply_update", f'''
@cuda.jit
def apply_update(params, grads, state, lr, step):
    """{label} on the whole flat parameter buffer: a thread per parameter
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


def _assign(acc: bool) -> str:
    return "+=" if acc else "="



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
        L.append("    row = m0 + ty" + (f" + {i * ry}" if i else ""))
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

