"""CPU backend: plan -> one generated Python module of Numba ``@njit`` functions.

Matrix products go to BLAS (``np.dot(a, b, out)`` inside njit, transposes passed as
flags, no copies); everything around them (bias, activation, loss, bias gradient)
is a plain loop fused into one pass.  The module is self-contained: the scalar
math of the activations and losses it uses is pasted in, so ``net.source()`` is
the whole program.  Each instruction of ``graphnn.ir`` is emitted by one function
below (``EMIT``).
"""
from __future__ import annotations

import re

import numba
import numpy as np

from .. import ir
from ..ops.dropout import DROPOUT_KEY_SOURCE, UNIFORM_SOURCE, UNIT
from ..ops.softmax import SOFTMAX_SOURCE
from . import cache
from .codegen import NUMERIC_CONSTANTS, Writer, activations_used
from .plan import Plan, structural_kind

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
# Each emitter gets the module being written, ``m`` (its Writer ``m.w``, the variable that
# holds a buffer ``m.var(buf)``, and ``m.int_slot``/``m.real_slot`` for numbers that are
# read at run time), and one instruction.  Loops run to the arrays' own shapes: no width
# is ever written into the code.
def _rows_cols(w: Writer, cols: str):
    """Open the two loops over the rows and the `cols` columns of a matrix."""
    w("for i in range(n):")
    w.depth += 1
    return w.block(f"for j in range({cols}):")


def _close(w: Writer):
    w.depth -= 1


def _assign(acc: bool) -> str:
    return "+=" if acc else "="


def emit_matmul(m, s: ir.MatMul):
    w = m.w
    a = m.var(s.a) + (".T" if s.ta else "")
    b = m.var(s.b) + (".T" if s.tb else "")
    out = m.var(s.out)
    if not s.acc:
        w(f"np.dot({a}, {b}, {out})")
        return
    w(f"tmp = scratch[:n * {out}.shape[1]].reshape((n, {out}.shape[1]))")
    w(f"np.dot({a}, {b}, tmp)")
    with _rows_cols(w, f"{out}.shape[1]"):
        w(f"{out}[i, j] += tmp[i, j]")
    _close(w)


def emit_bias_act(m, s: ir.BiasAct):
    out = m.var(s.out)
    v = f"{m.var(s.z)}[i, j]" + (f" + {m.var(s.bias)}[j]" if s.bias is not None else "")
    rhs = v if s.act == "linear" else f"{s.act}({v})"
    with _rows_cols(m.w, f"{out}.shape[1]"):
        m.w(f"{out}[i, j] = {rhs}")
    _close(m.w)


def emit_act_grad(m, s: ir.ActGrad):
    w = m.w
    gx, gy = m.var(s.gx), m.var(s.gy)
    if s.colsum is not None:
        w(f"{m.var(s.colsum)}[:] = zero")
    with _rows_cols(w, f"{gx}.shape[1]"):
        if s.act == "linear":
            w(f"g = {gy}[i, j]")
        else:
            w(f"g = {gy}[i, j] * {s.act}_grad({m.var(s.x)}[i, j], {m.var(s.y)}[i, j])")
        w(f"{gx}[i, j] {_assign(s.acc)} g")
        if s.colsum is not None:
            w(f"{m.var(s.colsum)}[j] += g")
    _close(w)


def emit_colsum(m, s: ir.ColSum):
    out, g = m.var(s.out), m.var(s.g)
    m.w(f"{out}[:] = zero")
    with _rows_cols(m.w, f"{g}.shape[1]"):
        m.w(f"{out}[j] += {g}[i, j]")
    _close(m.w)


def emit_sum(m, s: ir.Sum):
    out = m.var(s.out)
    with _rows_cols(m.w, f"{out}.shape[1]"):
        m.w(f"{out}[i, j] = " + " + ".join(f"{m.var(b)}[i, j]" for b in s.ins))
    _close(m.w)


def emit_copy(m, s: ir.Copy):
    out, src = m.var(s.out), m.var(s.src)
    m.w(f"col = layout[{m.int_slot(s.col0, 'first column of a block of columns')}]")
    with _rows_cols(m.w, f"{out}.shape[1]"):
        m.w(f"{out}[i, j] {_assign(s.acc)} {src}[i, col + j]")
    _close(m.w)


def emit_place(m, s: ir.Place):
    out, src = m.var(s.out), m.var(s.src)
    m.w(f"col = layout[{m.int_slot(s.col0, 'first column of a block of columns')}]")
    with _rows_cols(m.w, f"{src}.shape[1]"):
        m.w(f"{out}[i, col + j] = {src}[i, j]")
    _close(m.w)


def emit_softmax(m, s: ir.Softmax):
    m.w("for i in range(n):")
    m.w(f"    softmax_row({m.var(s.x)}, {m.var(s.out)}, i)")


def emit_softmax_grad(m, s: ir.SoftmaxGrad):
    m.w("for i in range(n):")
    m.w(f"    softmax_row_grad({m.var(s.gy)}, {m.var(s.y)}, {m.var(s.gx)}, i, {s.acc})")


def emit_dropout(m, s: ir.Dropout):
    w = m.w
    out, x, mask = m.var(s.out), m.var(s.x), m.var(s.mask)
    node = f"node {m.plan.roles[s.mask.name][0]}"
    rate = m.real_slot(s.rate, f"{node} dropout rate")
    scale = m.real_slot(1 / (1 - s.rate), f"{node} dropout scale 1 / (1 - rate)")
    salt = m.int_slot(s.salt, f"{node} dropout salt (numbers the dropout nodes)")
    with w.block("if key >= 0:"):
        w(f"rate, scale, salt = real(hyper[{rate}]), real(hyper[{scale}]), layout[{salt}]")
        with _rows_cols(w, f"{out}.shape[1]"):
            w(f"{mask}[i, j] = scale if uniform(key + salt, row0 + i, j) >= rate else zero")
            w(f"{out}[i, j] = {x}[i, j] * {mask}[i, j]")
        _close(w)
    with w.block("else:"):
        with _rows_cols(w, f"{out}.shape[1]"):
            w(f"{out}[i, j] = {x}[i, j]")
        _close(w)


def emit_mul(m, s: ir.Mul):
    gx = m.var(s.gx)
    with _rows_cols(m.w, f"{gx}.shape[1]"):
        m.w(f"{gx}[i, j] {_assign(s.acc)} {m.var(s.gy)}[i, j] * {m.var(s.m)}[i, j]")
    _close(m.w)


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


# What each role of an arena block is, for comments (roles come from plan.roles).
_ROLES = {"h": "output", "d": "output's gradient", "z": "pre-activation",
          "dz": "pre-activation's gradient", "mask": "dropout mask"}
_ROLE = re.compile(r"[a-z]{1,8}")
# parameter's local name -> variable stem (its gradient: "d" + stem)
_PARAM_STEM = {"weight": "W", "bias": "b"}


# -- the module ----------------------------------------------------------------------------
class CpuModule:
    """Generates the source of the CPU kernels for one plan and one dtype.

    The source depends only on the model's structure: variables are named by node index
    (``h2`` is node 2's output, ``W1`` node 1's weight), and every number that changes
    with the widths or the hyperparameters -- arena columns and widths, parameter offsets
    and shapes, dropout rates, the optimizer's and the schedule's constants -- is read at
    run time from two arrays the backend passes in: ``layout`` (int64, ``self.ints``) and
    ``hyper`` (float64, ``self.reals``).  So models that differ only in widths or
    hyperparameters generate the same text, and share one compiled module.
    """

    def __init__(self, plan: Plan, optimizer, dtype, cache: bool = False):
        self.plan, self.optimizer, self.dtype = plan, optimizer, np.dtype(dtype)
        self.w = Writer()
        self.jit = f'@njit(cache={cache}, error_model="numpy")'
        self.ints: list[int] = [plan.arena_width]
        self.int_notes: list[str] = ["columns of the arena (its rows: cap = arena.size // this)"]
        self.reals: list[float] = []
        self.real_notes: list[str] = []
        self._slots: dict = {}
        self._vars, self._about = self._variables()

    # -- names and run-time numbers ------------------------------------------------------
    def _variables(self) -> tuple[dict, dict]:
        """Buffer name in the plan -> variable in the code, and what it holds (a comment)."""
        p = self.plan
        index = {node: k for k, node in enumerate(p.model.nodes)}
        names, about = {}, {}
        for buf, (k, role) in p.roles.items():
            role = role if _ROLE.fullmatch(role) else "buf"
            names[buf] = f"{role}{k}"
            about[buf] = f"node {k} {_ROLES.get(role, role)}"
        if "tmp" in p.arena:
            names["tmp"], about["tmp"] = "scratch", "scratch for products added into a gradient"
        for j, slot in enumerate(p.params):
            k = index[slot.node]
            stem = _PARAM_STEM.get(slot.local, f"P{j}_")
            grad_var = next(v for v, s in p.param_vars.items() if s is slot and v != slot.var)
            local = slot.local if _ROLE.fullmatch(slot.local) else "parameter"
            names[slot.var], about[slot.var] = f"{stem}{k}", f"node {k} {local}"
            names[grad_var], about[grad_var] = f"d{stem}{k}", f"gradient of {about[slot.var]}"
        names["x"] = "x"
        if len(set(names.values())) != len(names):
            raise AssertionError("two buffers got the same variable name")
        return names, about

    def var(self, buf: ir.Buf) -> str:
        return self._vars[buf.name]

    def int_slot(self, value: int, note: str, key=None) -> int:
        """Index in ``layout`` of a run-time integer (one slot per key)."""
        if key is not None and key in self._slots:
            return self._slots[key]
        self.ints.append(int(value))
        self.int_notes.append(note)
        if key is not None:
            self._slots[key] = len(self.ints) - 1
        return len(self.ints) - 1

    def real_slot(self, value: float, note: str, key=None) -> int:
        """Index in ``hyper`` of a run-time hyperparameter."""
        if key is not None and key in self._slots:
            return self._slots[key]
        self.reals.append(float(value))
        self.real_notes.append(note)
        if key is not None:
            self._slots[key] = len(self.reals) - 1
        return len(self.reals) - 1

    def _block(self, buf: str, rows: str = "n") -> str:
        """Source of the first `rows` rows of arena block `buf`: the block at column c, w wide,
        holds cap rows from element c * cap on.  Written out as a slice, not as a call to
        a helper: an inlined helper at every view costs compile time."""
        col, width = self.plan.arena[buf]
        k = self.int_slot(col, f"{self._about[buf]}: first column", key=("block", buf))
        self.int_slot(width, f"{self._about[buf]}: width", key=("width", buf))
        return (f"arena[layout[{k}] * cap:layout[{k}] * cap + {rows} * layout[{k + 1}]]"
                f".reshape(({rows}, layout[{k + 1}]))")

    def _param(self, slot) -> str:
        k = self.int_slot(slot.offset, f"{self._about[slot.var]}: offset", key=("param", slot.var))
        for d, size in enumerate(slot.shape):
            self.int_slot(size, f"{self._about[slot.var]}: size of axis {d}",
                          key=("dim", slot.var, d))
        if len(slot.shape) == 2:
            return (f"{{flat}}[layout[{k}]:layout[{k}] + layout[{k + 1}] * layout[{k + 2}]]"
                    f".reshape((layout[{k + 1}], layout[{k + 2}]))")
        return f"{{flat}}[layout[{k}]:layout[{k}] + layout[{k + 1}]]"

    # views at the top of a function, for the buffers its instructions touch
    def _declare(self, steps, extra=()):
        w, p = self.w, self.plan
        used = []
        for b in [b for s in steps for b in _buffers_of(s)] + list(extra):
            if b.name not in [u.name for u in used]:
                used.append(b)
        scratch = any(isinstance(s, ir.MatMul) and s.acc for s in steps)
        if any(b.kind == "arena" for b in used) or scratch:
            w("cap = arena.size // layout[0]")
        for b in used:
            if b.kind in ("param", "grad"):
                slot = p.param_vars[b.name]
                view = self._param(slot).format(flat="params" if b.kind == "param" else "grads")
                w(f"{self.var(b)} = {view}   # {self._about[b.name]}")
        for b in used:
            if b.kind == "arena":
                w(f"{self.var(b)} = {self._block(b.name)}   # {self._about[b.name]}")
        if scratch:
            col, width = p.arena["tmp"]
            k = self.int_slot(col, "scratch: first column", key=("block", "tmp"))
            self.int_slot(width, "scratch: width", key=("width", "tmp"))
            w(f"scratch = arena[layout[{k}] * cap:(layout[{k}] + layout[{k + 1}]) * cap]")

    def _steps(self, steps):
        w = self.w
        for s in steps:
            if isinstance(s, ir.Comment):
                w()
                ins = ", ".join(str(i) for i in s.inputs)
                w(f"# node {s.node}: {s.kind}" + (f" of node {ins}" if ins else "")
                  + (" (backward)" if s.backward else ""))
                continue
            if s.note:
                w(f"# {s.note}")
            EMIT[type(s)](self, s)

    def _header(self) -> list[str]:
        p, opt = self.plan, self.optimizer
        nodes = "; ".join(
            f"{k} {structural_kind(n)}"
            + (" of " + ", ".join(str(p.model.nodes.index(i)) for i in n.inputs) if n.inputs else "")
            for k, n in enumerate(p.model.nodes))
        w = Writer()
        w(f'"""graphnn kernels: {self.dtype.name}, loss {p.loss.name}, '
          f'optimizer {type(opt).__name__}.')
        w()
        w(f"Graph (node: kind of inputs): {nodes}.")
        if p.fused:
            w(f"Fused: the output {p.fused}: training feeds the loss the logits.")
        w()
        w("No size, name or hyperparameter is written here: every model of this structure,")
        w("whatever its widths, runs this code.  The numbers come at run time in two arrays")
        w("(listed below): `layout` (int64) and `hyper` (float64).  Parameters are slices")
        w("of one flat buffer (gradients alike); every activation and gradient is a block of")
        w("columns of one workspace, the arena, with room for `cap` rows: the first n rows")
        w("of the block at column c, width k, are arena[c * cap:c * cap + n * k] as (n, k).")
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
        w()
        w("# layout[k], one int64 each:")
        for k, note in enumerate(self.int_notes):
            w(f"#   {k:3d}  {note}")
        if self.real_notes:
            w("# hyper[k], one float64 each:")
            for k, note in enumerate(self.real_notes):
                w(f"#   {k:3d}  {note}")
        w()
        w()
        return w.lines

    def _activations(self):
        return activations_used(self.plan)

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
            self._function(schedule.source(generic=True), INLINE)

        drop = ", hyper, key, row0" if p.dropout else ""
        w("# " + "-" * 30 + " forward pass " + "-" * 30)
        w()
        self._pass("forward", "params, arena, x, layout", p.forward, p.output,
                   "The graph's output for the rows of x (inference).")
        if p.fused or p.dropout:
            why = ", ".join(([f"stops at the logits ({p.fused} fused)"] if p.fused else [])
                            + (["dropout masks from key and the rows' numbers row0 + i "
                                "(key < 0: no dropout)"] if p.dropout else []))
            self._pass("forward_logits", f"params, arena, x, layout{drop}", p.train_forward,
                       p.logits, f"Forward pass as the loss sees it: {why}.")
        w("# " + "-" * 30 + " backward pass " + "-" * 30)
        w()
        self.jit_line()
        with w.block("def backward(params, grads, arena, x, layout):"):
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
        self._function(opt.source(generic=True), INLINE)
        hyper = opt.hyper()
        loads = "".join(f"\n    {k} = real(hyper[{self.real_slot(v, f'optimizer: {k}')}])"
                        for k, v in hyper.items())
        args = "".join(f", {k}" for k in hyper)
        self._function(f'''
def update(params, grads, state, lr, step, hyper):
    """{type(opt).__name__} on the whole flat parameter buffer at once."""{loads}
    for i in range(params.size):
        {opt.name}_update(i, params, grads, state, lr, step{args})'''.strip("\n"))
        dz = self._block(p.dlogits.name)
        keydoc = ("; key seeds the dropout masks, row0 + i numbers row i" if p.dropout else "")
        w("# " + "-" * 30 + " training " + "-" * 30)
        w()
        self._function(f'''
def loss_and_grads(params, grads, arena, x, y, w, layout{drop}):
    """Mean {loss.name} loss over the rows of x (weighted by w if not empty), and
    its gradient in grads{keydoc}.  Nothing is updated: a data-parallel trainer
    can sum grads across processes before update()."""
    n = x.shape[0]
    cap = arena.size // layout[0]
    z = {self._logits('x', 'key', 'row0')}
    dz = {dz}
    value = loss(z, y, w, dz)
    backward(params, grads, arena, x, layout)
    return value'''.strip("\n"), INLINE)
        self._function(f'''
def train_step(params, grads, state, arena, x, y, w, lr, step, layout, hyper{drop.replace(", hyper", "")}):
    """One step of training on one batch: compute the gradients, then apply them.
    Returns the batch's mean loss; its logits stay in the arena."""
    value = loss_and_grads(params, grads, arena, x, y, w, layout{drop})
    update(params, grads, state, lr, step, hyper)
    return value'''.strip("\n"), INLINE)
        self._train_epoch()
        w("# " + "-" * 20 + " plain Python: one compiled call per batch of rows " + "-" * 20)
        w("# These reuse the kernels train_epoch compiled, so they cost no compile of their")
        w("# own; the Python around them runs once per `cap` rows, not per row or layer.")
        w()
        self._function('''
def predict(params, arena, X, out, layout):
    """forward() over all rows of X, cap rows at a time."""
    cap = arena.size // layout[0]
    rows = X.shape[0]
    for start in range(0, rows, cap):
        stop = min(start + cap, rows)
        out[start:stop] = forward(params, arena, X[start:stop], layout)'''.strip("\n"), PYTHON)
        self._function(f'''
def evaluate(params, arena, X, Y, stats, layout, hyper):
    """Summed loss (per-batch mean times rows) over all rows of X, no dropout;
    the metrics' sums are added into stats."""
    cap = arena.size // layout[0]
    rows = X.shape[0]
    total = 0.0
    equal = np.empty(0, real)
    for start in range(0, rows, cap):
        stop = min(start + cap, rows)
        n = stop - start
        y = Y[start:stop]
        z = {self._logits('X[start:stop]', '-1', '0')}
        dz = {self._block(p.dlogits.name)}
        total += n * loss(z, y, equal, dz)
        batch_stats(z, y, stats)
    return total'''.strip("\n"), PYTHON)
        body = w.lines
        return "\n".join(self._header() + body).rstrip("\n") + "\n"

    def _logits(self, x: str, key: str, row0: str) -> str:
        """Source of the call that computes the logits the loss reads, for input `x`.

        Without a fused output or dropout they are forward()'s output, so forward()
        is called directly: a function in between would be one more Numba compile.
        With dropout, `key` seeds the masks (training) or is -1 (evaluate: no dropout).
        """
        p = self.plan
        if not (p.fused or p.dropout):
            return f"forward(params, arena, {x}, layout)"
        if not p.dropout:
            return f"forward_logits(params, arena, {x}, layout)"
        return f"forward_logits(params, arena, {x}, layout, hyper, {key}, {row0})"

    def _pass(self, name, args, steps, result: ir.Buf, doc: str):
        w = self.w
        self.jit_line()
        with w.block(f"def {name}({args}):"):
            w(f'"""{doc}"""')
            w("n = x.shape[0]")
            self._declare(steps, extra=[result] if result.kind == "arena" else [])
            self._steps(steps)
            w(f"return {self.var(result)}")
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
        if labels:
            ty, gather = "ybuf[:n]", "y[r] = Y[src]"
        else:
            ty = "ybuf[:n * k].reshape((n, k))"
            gather = "for c in range(k):\n                y[r, c] = Y[src, c]"
        seeding = "\n        key = dropout_key(seed, b)   # this batch's dropout masks" \
            if plan.dropout else ""
        key = ", key, 0" if plan.dropout else ""
        lr = "lr"
        schedule = self.optimizer.schedule
        if schedule.per_step:
            slots = [self.real_slot(v, f"schedule: {k}") for k, v in schedule.hyper().items()]
            lr = "real(schedule_lr(t, " + ", ".join(f"hyper[{s}]" for s in slots) + "))"
        z = self._block(plan.logits.name) if plan.logits.kind == "arena" else "x"
        width = "" if labels else "\n    k = Y.shape[1]"
        self._function(f'''
def train_epoch(params, grads, state, arena, X, Y, W, order, first, last, batch_size, lr, step,
                seed, xbuf, ybuf, wbuf, losses, stats, layout, hyper):
    """Batches first..last-1 of an epoch: gather each batch's rows (in the shuffled
    order) and take a training step.  `step` counts the steps before this call, `seed`
    seeds the dropout masks, W holds row weights (or is empty).  Each batch's mean loss
    goes to losses[b]; metric sums are added into stats.  Returns sum of loss * rows."""
    rows, d = X.shape{width}
    cap = arena.size // layout[0]
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
        value = train_step(params, grads, state, arena, x, y, w, {lr}, t, layout, hyper{key})
        losses[b] = value
        total += n * value
        batch_stats({z}, y, stats)
    return total'''.strip("\n"))


class CpuBackend:
    """The CPU backend as the model sees it (``compile/cuda/backend.py`` offers the same methods).

    Arrays live in host memory, so ``to_device``/``to_host`` are the identity.  The
    kernel methods call the generated module's functions (``train_epoch`` and ``update``
    njit, ``loss_and_grads`` njit when first called, ``predict``/``evaluate`` Python
    around njit calls) with this model's ``layout`` and ``hyper`` arrays added: the
    module itself is shared by every model of the same structure.
    """

    device = "cpu"

    def __init__(self, plan: Plan, optimizer, dtype):
        self.plan = plan
        self.dtype = np.dtype(dtype)
        built = {}

        def generate(cached: bool) -> str:   # Numba's cache= depends on the folder's state
            built["module"] = CpuModule(plan, optimizer, dtype, cache=cached)
            built["cached"] = cached
            return built["module"].source()

        # one module per structure and process: from the disk cache, or in memory
        self.source, self.kernels = cache.build(generate)
        module, self.use_cache = built["module"], built["cached"]
        self.layout = np.array(module.ints, np.int64)
        self.hyper = np.array(module.reals, np.float64)

    def train_epoch(self, params, grads, state, arena, X, Y, W, order, first, last, batch_size,
                    lr, step, seed, xbuf, ybuf, wbuf, losses, stats):
        return self.kernels["train_epoch"](params, grads, state, arena, X, Y, W, order, first,
                                           last, batch_size, lr, step, seed, xbuf, ybuf, wbuf,
                                           losses, stats, self.layout, self.hyper)

    def predict(self, params, arena, X, out):
        return self.kernels["predict"](params, arena, X, out, self.layout)

    def evaluate(self, params, arena, X, Y, stats):
        return self.kernels["evaluate"](params, arena, X, Y, stats, self.layout, self.hyper)

    def update(self, params, grads, state, lr, step):
        return self.kernels["update"](params, grads, state, lr, step, self.hyper)

    def loss_and_grads(self, params, grads, arena, x, y, w, key: int, row0: int = 0):
        """The generated loss_and_grads; `key` seeds the dropout masks and row i of x
        draws its mask as row ``row0 + i`` (a data-parallel trainer passes the global row
        number of its first row, so every process draws the masks one process would).
        Graphs without dropout have no masks, and ignore both."""
        kernel = self.kernels["loss_and_grads"]
        if self.plan.dropout:
            return kernel(params, grads, arena, x, y, w, self.layout, self.hyper, key, row0)
        return kernel(params, grads, arena, x, y, w, self.layout)

    def compile_step(self, params, grads, state, arena, x, y, w):
        """Compile loss_and_grads and update for these arrays' types: a data-parallel
        trainer calls them from Python (one process runs them inside train_epoch)."""
        t, i64 = numba.typeof, numba.types.int64
        args = (t(params), t(grads), t(arena), t(x), t(y), t(w), t(self.layout))
        if self.plan.dropout:
            args += (t(self.hyper), i64, i64)
        self.kernels["loss_and_grads"].compile(args)
        self.kernels["update"].compile((t(params), t(grads), t(state),
                                        numba.from_dtype(self.dtype), i64, t(self.hyper)))

    def is_compiled(self, labels: bool) -> bool:
        """Whether compile() has nothing to build: the kernels are in this process already,
        or Numba's on-disk cache index lists train_epoch for exactly these argument types
        (then loading them takes a fraction of a second)."""
        k = self.kernels["train_epoch"]
        sig = self._signature(labels)
        if sig in k.overloads:
            return True
        if not self.use_cache:
            return False
        try:        # Numba's own index, as Dispatcher.compile() looks it up
            key = k._cache._index_key(sig, k.targetctx.codegen())
            return key in k._cache._cache_file._load_index()
        except Exception:       # noqa: BLE001 - a guess for a message; compile() decides
            return False

    def _signature(self, labels: bool) -> tuple:
        t, real, i64 = numba.typeof, numba.from_dtype(self.dtype), numba.types.int64
        a1, a2 = t(np.zeros(1, self.dtype)), t(np.zeros((1, 1), self.dtype))
        idx, f64 = t(np.zeros(1, np.int64)), t(np.zeros(1))
        Y, ybuf = (idx, idx) if labels else (a2, a1)
        return (a1, a1, a1, a1, a2, Y, a1, idx, i64, i64, i64, real, i64, i64,
                a1, ybuf, a1, f64, f64, idx, f64)

    def compile(self, labels: bool):
        """Compile now, for exactly the argument types the model passes (no later recompiles).

        Only train_epoch is compiled as such: it compiles the kernels it calls
        (forward, loss, backward, update, batch_stats), and the plain-Python predict()
        and evaluate() call those.  A process that loads train_epoch from the cache
        loads none of them, so the ones those two need are named here too (a cache
        load each, a few ms).  loss_and_grads() and update() compile (or load) on first use.
        Every call after the first for the same structure (any widths) finds them compiled.
        """
        t, i64 = numba.typeof, numba.types.int64
        a1, a2 = t(np.zeros(1, self.dtype)), t(np.zeros((1, 1), self.dtype))
        idx, f64 = t(np.zeros(1, np.int64)), t(np.zeros(1))
        sig = self._signature(labels)
        Y = sig[5]
        k = self.kernels
        k["train_epoch"].compile(sig)
        k["forward"].compile((a1, a1, a2, idx))
        if self.plan.dropout:          # evaluate() passes key=-1 (no dropout)
            k["forward_logits"].compile((a1, a1, a2, idx, f64, i64, i64))
        elif self.plan.fused:
            k["forward_logits"].compile((a1, a1, a2, idx))
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
