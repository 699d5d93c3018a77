"""CPU backend: plan -> one generated Python module of Numba ``@njit`` functions.

Matrix products go to BLAS (``np.dot(a, b, out)`` inside njit, transposes passed as
flags, no copies); everything around them (bias, activation, loss, bias gradient)
is a plain loop fused into one pass.  The module is self-contained: the scalar
math of the activations and losses it uses is pasted in, so ``net.source()`` is
the whole program.  Each instruction of ``graphnn.ir`` is emitted by one function
below (``EMIT``).
"""
from __future__ import annotations


import numba
import numpy as np

from .. import ir
from ..ops.activations import ACTIVATIONS, with_dependencies
from ..ops.dropout import DROPOUT_KEY_SOURCE, UNIFORM_SOURCE, UNIT
from ..ops.softmax import SOFTMAX_SOURCE
from . import cache
from .codegen import NUMERIC_CONSTANTS, Writer
from .plan import Plan

# How the generated functions are compiled.  Compile time (a cold compile of the
# 784-256-128-10 MLP is mostly Numba/LLVM work) grows with the number of functions
# Numba compiles on their own -- each one is typed, optimised, turned into machine
# code, wrapped for Python and cached -- and with how often the same code is
# re-optimised: a compiled function links in the code of every njit function it
# calls and LLVM optimises and code-generates the whole lot again.  So:
#   KERNEL  compiled on its own and cached: train_epoch, and the kernels that Python
#           calls directly (forward, loss, backward, update, batch_stats);
#   INLINE  pasted into the caller by Numba before typing, not compiled on its
#           own for training: the scalar math (a few lines each, called from one or
#           two places), loss_and_grads and train_step (loss_and_grads is compiled
#           by itself only when Python calls it, for net.loss_and_grads);
#   PYTHON  plain Python around kernel calls, run once per batch of rows: predict,
#           evaluate.  A compiled loop around forward() would re-optimise all of
#           forward's code once more for no measurable gain.
KERNEL, INLINE, PYTHON = "kernel", "inline", "python"
INLINE_JIT = '@njit(inline="always", error_model="numpy")'


# -- one emitter per instruction ----------------------------------------------------------
def _rows_cols(w: Writer, width: int):
    """Open the two loops over a (n, width) matrix; returns the indent context."""
    w("for i in range(n):")
    w.depth += 1
    return w.block(f"for j in range({width}):")


def _close(w: Writer):
    w.depth -= 1


def _assign(acc: bool) -> str:
    return "+=" if acc else "="


def emit_matmul(w: Writer, s: ir.MatMul):
    a = f"{s.a.name}.T" if s.ta else s.a.name
    b = f"{s.b.name}.T" if s.tb else s.b.name
    if not s.acc:
        w(f"np.dot({a}, {b}, {s.out.name})")
        return
    tmp = f"tmp_{s.out.width}"
    w(f"np.dot({a}, {b}, {tmp})")
    with _rows_cols(w, s.out.width):
        w(f"{s.out.name}[i, j] += {tmp}[i, j]")
    _close(w)


def emit_bias_act(w: Writer, s: ir.BiasAct):
    v = f"{s.z.name}[i, j]" + (f" + {s.bias.name}[j]" if s.bias is not None else "")
    rhs = v if s.act == "linear" else f"{s.act}({v})"
    with _rows_cols(w, s.out.width):
        w(f"{s.out.name}[i, j] = {rhs}")
    _close(w)


def emit_act_grad(w: Writer, s: ir.ActGrad):
    if s.colsum is not None:
        w(f"{s.colsum.name}[:] = zero")
    with _rows_cols(w, s.gx.width):
        if s.act == "linear":
            w(f"g = {s.gy.name}[i, j]")
        else:
            w(f"g = {s.gy.name}[i, j] * {s.act}_grad({s.x.name}[i, j], {s.y.name}[i, j])")
        w(f"{s.gx.name}[i, j] {_assign(s.acc)} g")
        if s.colsum is not None:
            w(f"{s.colsum.name}[j] += g")
    _close(w)


def emit_colsum(w: Writer, s: ir.ColSum):
    w(f"{s.out.name}[:] = zero")
    with _rows_cols(w, s.g.width):
        w(f"{s.out.name}[j] += {s.g.name}[i, j]")
    _close(w)


def emit_sum(w: Writer, s: ir.Sum):
    with _rows_cols(w, s.out.width):
        w(f"{s.out.name}[i, j] = " + " + ".join(f"{b.name}[i, j]" for b in s.ins))
    _close(w)


def emit_copy(w: Writer, s: ir.Copy):
    col = f"{s.col0} + j" if s.col0 else "j"
    with _rows_cols(w, s.out.width):
        w(f"{s.out.name}[i, j] {_assign(s.acc)} {s.src.name}[i, {col}]")
    _close(w)


def emit_place(w: Writer, s: ir.Place):
    col = f"{s.col0} + j" if s.col0 else "j"
    with _rows_cols(w, s.src.width):
        w(f"{s.out.name}[i, {col}] = {s.src.name}[i, j]")
    _close(w)


def emit_softmax(w: Writer, s: ir.Softmax):
    w("for i in range(n):")
    w(f"    softmax_row({s.x.name}, {s.out.name}, i)")


def emit_softmax_grad(w: Writer, s: ir.SoftmaxGrad):
    w("for i in range(n):")
    w(f"    softmax_row_grad({s.gy.name}, {s.y.name}, {s.gx.name}, i, {s.acc})")


def emit_dropout(w: Writer, s: ir.Dropout):
    keep = 1.0 - s.rate
    with w.block("if key >= 0:"):
        with _rows_cols(w, s.out.width):
            w(f"{s.mask.name}[i, j] = real({1 / keep!r}) if uniform(key + {s.salt}, row0 + i, j) "
              f">= real({s.rate!r}) else zero")
            w(f"{s.out.name}[i, j] = {s.x.name}[i, j] * {s.mask.name}[i, j]")
        _close(w)
    with w.block("else:"):
        with _rows_cols(w, s.out.width):
            w(f"{s.out.name}[i, j] = {s.x.name}[i, j]")
        _close(w)


def emit_mul(w: Writer, s: ir.Mul):
    with _rows_cols(w, s.gx.width):
        w(f"{s.gx.name}[i, j] {_assign(s.acc)} {s.gy.name}[i, j] * {s.m.name}[i, j]")
    _close(w)


EMIT = {
    ir.Dropout: emit_dropout, ir.Mul: emit_mul,
    ir.MatMul: emit_matmul, ir.BiasAct: emit_bias_act, ir.ActGrad: emit_act_grad,
    ir.ColSum: emit_colsum, ir.Sum: emit_sum, ir.Copy: emit_copy, ir.Place: emit_place,
    ir.Softmax: emit_softmax, ir.SoftmaxGrad: emit_softmax_grad,
}


def _buffers_of(step) -> list[ir.Buf]:
    out = []
    for v in vars(step).values():
        if isinstance(v, ir.Buf):
            out.append(v)
        elif isinstance(v, tuple):
            out += [b for b in v if isinstance(b, ir.Buf)]
    return out


def _uses(steps, kind_pred) -> set:
    return {b.name for s in steps for b in _buffers_of(s) if kind_pred(b)}


# -- the module ----------------------------------------------------------------------------
class CpuModule:
    """Generates the source of the CPU kernels for one plan and one dtype."""

    def __init__(self, plan: Plan, optimizer, dtype, cache: bool = False):
        self.plan, self.optimizer, self.dtype = plan, optimizer, np.dtype(dtype)
        self.w = Writer()
        self.jit = f'@njit(cache={cache}, error_model="numpy")'

    # views at the top of a function, for the buffers its instructions touch
    def _declare(self, steps, extra=()):
        w, p = self.w, self.plan
        used = []
        for s in steps:
            for b in _buffers_of(s):
                if b.name not in [u.name for u in used]:
                    used.append(b)
        for b in extra:
            if b.name not in [u.name for u in used]:
                used.append(b)
        if any(b.kind in ("arena", "scratch") for b in used) or any(
                isinstance(s, ir.MatMul) and s.acc for s in steps):
            w("cap = arena.size // ARENA_WIDTH")
        for b in used:
            if b.kind in ("param", "grad"):
                slot = p.param_vars[b.name]
                src = "params" if b.kind == "param" else "grads"
                rng = f"{src}[{slot.offset}:{slot.offset + slot.size}]"
                if len(slot.shape) == 2:
                    w(f"{b.name} = {rng}.reshape({slot.shape})   # {slot.name}"
                      + (" gradient" if b.kind == "grad" else ""))
                else:
                    w(f"{b.name} = {rng}   # {slot.name}" + (" gradient" if b.kind == "grad" else ""))
        for b in used:
            if b.kind == "arena":
                w(f"{b.name} = {self._view(b.name)}")
        widths = sorted({s.out.width for s in steps if isinstance(s, ir.MatMul) and s.acc})
        for width in widths:
            w(f"tmp_{width} = {self._view('tmp', width=width)}   # scratch")

    def _view(self, buf: str, rows: str = "n", width: int | None = None) -> str:
        """Source of the first `rows` rows of arena block `buf`, `width` wide (default:
        the block's width).  A block that starts at column c starts at element c * cap.

        Written out as a slice, not as a call to a helper function: a helper called
        with a different constant column at each site would be compiled once per
        site (Numba specialises on literal arguments), which cost about a tenth of a
        second each.
        """
        col, full = self.plan.arena[buf]
        width = full if width is None else width
        start = f"{col} * cap" if col else ""
        end = f"{start} + {rows} * {width}" if col else f"{rows} * {width}"
        return f"arena[{start}:{end}].reshape(({rows}, {width}))"

    def _steps(self, steps):
        w = self.w
        for s in steps:
            if isinstance(s, ir.Comment):
                w()
                w(f"# {s.text}")
                continue
            if s.note:
                w(f"# {s.note}")
            EMIT[type(s)](w, s)

    def _header(self):
        w, p = self.w, self.plan
        desc = " -> ".join(f"{p.names[n]}({n.width})" for n in p.model.nodes)
        w(f'"""graphnn kernels for model {p.model.name!r}, {self.dtype.name}, '
          f'loss {p.loss.name}.')
        w()
        w(f"Graph: {desc}")
        w(f"Parameters: {p.n_params} values in one flat buffer; gradients alike.")
        w("Arena: every activation and gradient is a block of columns of one workspace")
        w("with room for `cap` rows: the first n rows of the block at column c are")
        w("arena[c * cap:c * cap + n * width].reshape((n, width)).")
        if p.fused:
            w(f"Fused: the output {p.fused}: training feeds the loss the logits.")
        w('"""')
        w("import math")
        w()
        w("import numpy as np")
        w("from numba import njit")
        w()
        w(f"real = np.{self.dtype.name}")
        consts = dict(NUMERIC_CONSTANTS)
        for a in self._activations():
            consts.update(a.forward_for(self.dtype.name)[1])
        for k, v in consts.items():
            w(f"{k} = real({v!r})")
        if p.dropout:
            w(f"UNIT = real({UNIT!r})       # uniform(): 24 random bits -> [0, 1)")
        w(f"ARENA_WIDTH = {p.arena_width}")
        w()

    def _activations(self):
        names = set()
        for s in self.plan.forward + self.plan.train_forward + self.plan.backward:
            act = getattr(s, "act", None)
            if act:
                names.add(act)
        names.update(self.plan.loss.needs)
        names.discard("linear")      # the identity is written inline, never called
        return with_dependencies(sorted(n for n in names if n in ACTIVATIONS))

    def jit_line(self, how: str = KERNEL):
        if how != PYTHON:
            self.w(self.jit if how == KERNEL else INLINE_JIT)

    def _function(self, source: str, how: str = KERNEL):
        """Append one function, compiled as ``how`` says (KERNEL, INLINE or PYTHON)."""
        self.jit_line(how)
        for line in source.splitlines():
            self.w(line)
        self.w()
        self.w()

    def source(self) -> str:
        w, p = self.w, self.plan
        loss = p.loss
        self._header()
        w("# " + "-" * 20 + " scalar math: activations and loss (graphnn/ops) " + "-" * 20)
        w()
        helpers = []                     # shared by several activations: pasted once
        for a in self._activations():
            helpers += [h for h in a.helpers_for(self.dtype.name) if h not in helpers]
        for h in helpers:
            self._function(h, INLINE)
        for a in self._activations():
            self._function(a.forward_for(self.dtype.name)[0], INLINE)
            self._function(a.grad_for(self.dtype.name), INLINE)
        if any(isinstance(s, (ir.Softmax, ir.SoftmaxGrad))
               for s in p.forward + p.train_forward + p.backward):
            for src in SOFTMAX_SOURCE:
                self._function(src, INLINE)
        self._function(loss.source, INLINE)
        self._function(f'''
def loss(z, y, w, g):
    """Mean {loss.name} over the rows of z ({loss.formula}); g = its gradient.

    w: a weight per row, or empty for equal weights; weighted, the mean is
    sum(w * row loss) / sum(w)."""
    n = z.shape[0]
    total = 0.0
    if w.size == 0:
        for i in range(n):
            total += {loss.name}_row(z, y, g, i, n)
        return total
    wsum = 0.0
    for i in range(n):
        wsum += w[i]
    for i in range(n):
        c = real(w[i] * n / wsum) if wsum > 0 else zero
        total += c * {loss.name}_row(z, y, g, i, n)
        for j in range(g.shape[1]):
            g[i, j] *= c
    return total'''.strip("\n"))
        if loss.correct:
            self._function(loss.correct, INLINE)
        self._batch_stats()
        if p.dropout:
            self._function(UNIFORM_SOURCE, INLINE)
            self._function(DROPOUT_KEY_SOURCE, INLINE)
        schedule = self.optimizer.schedule
        if schedule.per_step:
            self._function(schedule.source(), INLINE)

        w("# " + "-" * 30 + " forward pass " + "-" * 30)
        w()
        self._pass("forward", "params, arena, x", p.forward, p.output,
                   "The graph's output for the rows of x (inference).")
        if p.fused or p.dropout:
            why = ", ".join(([f"stops at the logits ({p.fused} fused)"] if p.fused else [])
                            + (["dropout masks from key and batch row row0 + i "
                                "(key < 0: no dropout)"]
                               if p.dropout else []))
            args = "params, arena, x, key, row0" if p.dropout else "params, arena, x"
            self._pass("forward_logits", args, p.train_forward, p.logits,
                       f"Forward pass as the loss sees it: {why}.")
        w("# " + "-" * 30 + " backward pass " + "-" * 30)
        w()
        self.jit_line()
        with w.block("def backward(params, grads, arena, x):"):
            w('"""Backpropagation: from dLoss/dlogits, in reverse graph order, '
              'every parameter\'s gradient."""')
            w("n = x.shape[0]")
            self._declare(p.backward)
            self._steps(p.backward)
        w()
        w()
        w("# " + "-" * 30 + " parameter update " + "-" * 30)
        w()
        opt = self.optimizer
        self._function(opt.source(), INLINE)
        self._function(f'''
def update(params, grads, state, lr, step):
    """{type(opt).__name__} on the whole flat parameter buffer at once."""
    for i in range(params.size):
        {opt.name}_update(i, params, grads, state, lr, step)'''.strip("\n"))
        dz = self._view(p.dlogits.name)
        key = ", key" if p.dropout else ""
        keyrow = ", key, row0" if p.dropout else ""
        keydoc = ("; key seeds the dropout masks, row0 is the position of x's first row in "
                  "its global batch (masks are keyed by it)" if p.dropout else "")
        w("# " + "-" * 30 + " training " + "-" * 30)
        w()
        self._function(f'''
def loss_and_grads(params, grads, arena, x, y, w{keyrow}):
    """Mean {loss.name} loss over the rows of x (weighted by w if not empty), and
    its gradient in grads{keydoc}.  Nothing is updated: a data-parallel trainer
    can sum grads across processes before update()."""
    n = x.shape[0]
    cap = arena.size // ARENA_WIDTH
    z = {self._logits('x', 'key', 'row0')}
    dz = {dz}
    value = loss(z, y, w, dz)
    backward(params, grads, arena, x)
    return value'''.strip("\n"), INLINE)
        self._function(f'''
def train_step(params, grads, state, arena, x, y, w, lr, step{key}):
    """One step of training on one batch: compute the gradients, then apply them.
    Returns the batch's mean loss; its logits stay in the arena."""
    value = loss_and_grads(params, grads, arena, x, y, w{key}{", 0" if p.dropout else ""})
    update(params, grads, state, lr, step)
    return value'''.strip("\n"), INLINE)
        self._train_epoch()
        w("# " + "-" * 20 + " plain Python: one compiled call per batch of rows " + "-" * 20)
        w("# These reuse the kernels train_epoch compiled, so they cost no compile of their")
        w("# own; the Python around them runs once per `cap` rows, not per row or layer.")
        w()
        self._function('''
def predict(params, arena, X, out):
    """forward() over all rows of X, cap rows at a time."""
    cap = arena.size // ARENA_WIDTH
    rows = X.shape[0]
    for start in range(0, rows, cap):
        stop = min(start + cap, rows)
        out[start:stop] = forward(params, arena, X[start:stop])'''.strip("\n"), PYTHON)
        self._function(f'''
def evaluate(params, arena, X, Y, stats):
    """Summed loss (per-batch mean times rows) over all rows of X, no dropout;
    the metrics' sums are added into stats."""
    cap = arena.size // ARENA_WIDTH
    rows = X.shape[0]
    total = 0.0
    equal = np.empty(0, real)
    for start in range(0, rows, cap):
        stop = min(start + cap, rows)
        n = stop - start
        y = Y[start:stop]
        z = {self._logits('X[start:stop]', '-1', '0')}
        dz = {dz}
        total += n * loss(z, y, equal, dz)
        batch_stats(z, y, stats)
    return total'''.strip("\n"), PYTHON)
        return w.text().rstrip("\n") + "\n"

    def _logits(self, x: str, key: str, row0: str) -> str:
        """Source of the call that computes the logits the loss reads, for input `x`.

        Without a fused output or dropout they are forward()'s output, so forward()
        is called directly: a function in between would be one more Numba compile.
        With dropout, `key` seeds the masks (training) or is -1 (evaluate: no dropout),
        and `row0` is the batch position of x's first row.
        """
        p = self.plan
        if not (p.fused or p.dropout):
            return f"forward(params, arena, {x})"
        if not p.dropout:
            return f"forward_logits(params, arena, {x})"
        return f"forward_logits(params, arena, {x}, {key}, {row0})"

    def _pass(self, name, args, steps, result: ir.Buf, doc: str):
        w = self.w
        self.jit_line()
        with w.block(f"def {name}({args}):"):
            w(f'"""{doc}"""')
            w("n = x.shape[0]")
            self._declare(steps, extra=[result] if result.kind == "arena" else [])
            self._steps(steps)
            w(f"return {result.name}")
        w()
        w()

    def _batch_stats(self):
        loss = self.plan.loss
        lines = ["def batch_stats(z, y, stats):",
                 '    """Metric sums of one batch: [correct, squared error, absolute error]."""']
        if loss.correct:
            lines += ["    for i in range(z.shape[0]):",
                      f"        stats[0] += {loss.name}_row_correct(z, y, i)"]
        if loss.targets == "values":
            pred = "sigmoid(z[i, j])" if loss.name == "binary_cross_entropy" else "z[i, j]"
            lines += ["    for i in range(z.shape[0]):",
                      "        for j in range(z.shape[1]):",
                      f"            d = {pred} - y[i, j]",
                      "            stats[1] += d * d",
                      "            stats[2] += abs(d)"]
        self._function("\n".join(lines))

    def _train_epoch(self):
        plan = self.plan
        labels = plan.loss.targets == "labels"
        k = plan.logits.width
        if labels:
            ty, gather = "ybuf[:n]", "y[r] = Y[src]"
        else:
            ty = f"ybuf[:n * {k}].reshape((n, {k}))"
            gather = f"for c in range({k}):\n                y[r, c] = Y[src, c]"
        seeding = "\n        key = dropout_key(seed, b)   # this batch's dropout masks" \
            if plan.dropout else ""
        key = ", key" if plan.dropout else ""
        lr = "real(schedule_lr(t))" if self.optimizer.schedule.per_step else "lr"
        z = self._view(plan.logits.name) if plan.logits.kind == "arena" else "x"
        self._function(f'''
def train_epoch(params, grads, state, arena, X, Y, W, order, first, last, batch_size, lr, step,
                seed, xbuf, ybuf, wbuf, losses, stats):
    """Batches first..last-1 of an epoch: gather each batch's rows (in the shuffled
    order) and take a training step.  `step` counts the steps before this call, `seed`
    seeds the dropout masks, W holds row weights (or is empty).  Each batch's mean loss
    goes to losses[b]; metric sums are added into stats.  Returns sum of loss * rows."""
    rows, d = X.shape
    cap = arena.size // ARENA_WIDTH
    total = 0.0
    for b in range(first, last):{seeding}
        start = b * batch_size
        n = min(batch_size, rows - start)
        x = xbuf[:n * d].reshape((n, d))
        y = {ty}
        w = wbuf[:n] if W.size > 0 else W
        for r in range(n):
            src = order[start + r]
            for c in range(d):
                x[r, c] = X[src, c]
            {gather}
            if W.size > 0:
                w[r] = W[src]
        t = step + b - first + 1
        value = train_step(params, grads, state, arena, x, y, w, {lr}, t{key})
        losses[b] = value
        total += n * value
        batch_stats({z}, y, stats)
    return total'''.strip("\n"))


class CpuBackend:
    """The CPU backend as the model sees it (``compile/cuda.py`` offers the same methods).

    Arrays live in host memory, so ``to_device``/``to_host`` are the identity.  The
    kernel methods are the generated module's functions themselves (``train_epoch`` and
    ``update`` njit, ``loss_and_grads`` njit when first called, ``predict``/``evaluate``
    Python around njit calls).
    """

    device = "cpu"

    def __init__(self, plan: Plan, optimizer, dtype):
        self.plan = plan
        self.dtype = np.dtype(dtype)
        self.source, namespace = cache.build(     # from the disk cache, or in memory
            lambda cached: CpuModule(plan, optimizer, dtype, cache=cached).source())
        self.kernels = namespace
        for name in ("train_epoch", "predict", "evaluate", "update"):
            setattr(self, name, namespace[name])

    def loss_and_grads(self, params, grads, arena, x, y, w, key: int, row0: int = 0):
        """The generated loss_and_grads; `key` seeds the dropout masks, `row0` is the position
        of x's first row in its batch (a data-parallel rank computing rows row0.. of a global
        batch draws the masks one process would).  Graphs without dropout take neither."""
        kernel = self.kernels["loss_and_grads"]
        if self.plan.dropout:
            return kernel(params, grads, arena, x, y, w, key, row0)
        return kernel(params, grads, arena, x, y, w)

    def compile(self, labels: bool):
        """Compile now, for exactly the argument types the model passes (no later recompiles).

        Only train_epoch is compiled as such: it compiles the kernels it calls
        (forward, loss, backward, update, batch_stats), and the plain-Python predict()
        and evaluate() call those.  A process that loads train_epoch from the cache
        loads none of them, so the ones those two need are named here too (a cache
        load each, a few ms).  loss_and_grads() and update() compile (or load) on first use.
        """
        t, real, i64 = numba.typeof, numba.from_dtype(self.dtype), numba.types.int64
        a1, a2 = t(np.zeros(1, self.dtype)), t(np.zeros((1, 1), self.dtype))
        idx = t(np.zeros(1, np.int64))
        Y, ybuf = (idx, idx) if labels else (a2, a1)
        f64 = t(np.zeros(1))
        self.train_epoch.compile((a1, a1, a1, a1, a2, Y, a1, idx, i64, i64, i64, real, i64, i64,
                                  a1, ybuf, a1, f64, f64))
        k = self.kernels
        k["forward"].compile((a1, a1, a2))
        if self.plan.dropout:          # evaluate() passes key=-1 (no dropout)
            k["forward_logits"].compile((a1, a1, a2, i64, i64))
        elif self.plan.fused:
            k["forward_logits"].compile((a1, a1, a2))
        k["loss"].compile((a2, Y, a1, a2))
        k["batch_stats"].compile((a2, Y, f64))

    @staticmethod
    def to_device(host: np.ndarray) -> np.ndarray:
        return host

    @staticmethod
    def copy(array: np.ndarray) -> np.ndarray:
        return array.copy()

    @staticmethod
    def all_finite(array: np.ndarray) -> bool:
        return bool(np.isfinite(array).all())

    @staticmethod
    def to_host(array: np.ndarray) -> np.ndarray:
        return array
