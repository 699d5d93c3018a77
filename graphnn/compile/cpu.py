"""CPU backend: plan -> a short generated module of glue around the kernel library.

Every loop graphnn runs on the CPU is a shape-free kernel of ``library.py``, compiled
once per machine (on first use, then cached).  What is generated per architecture is
glue: views into the parameter buffer and the arena, and one kernel call per
instruction of ``graphnn.ir`` (each emitted by one function below, ``EMIT``), gathered
into one ``train_step``.  The glue calls the kernels at their addresses
(``views.kernel``), and the library's epoch loop calls ``train_step`` the same way, so a
new architecture compiles only ``train_step`` instead of every loop again.  ``net.source()`` is the
glue; ``net.library_source()`` the library.
"""
from __future__ import annotations

import re
import types

import numba
import numpy as np

from .. import ir
from . import cache, library, update, views, warm
from .codegen import INLINE_JIT, Writer, preamble
from .plan import Plan, structural_kind

# How the generated functions are compiled:
#   STEP    train_step, the only function every new architecture compiles: the
#           library's epoch loop (library.py, train_epoch_<targets>) calls it at its
#           address for every batch, so it is compiled without the wrappers that let
#           Python or C call it (they would cost a new architecture a tenth of a second);
#   KERNEL  compiled on its own, on first use, and cached: loss_and_grads (a data-parallel
#           trainer calls it);
#   INLINE  pasted into the caller by Numba before typing: forward, backward,
#           loss_and_grads and the small scalar functions;
#   PYTHON  plain Python around kernel calls, run once per batch of rows: predict,
#           evaluate (they run forward as plain Python too).
STEP, KERNEL, INLINE, PYTHON = "step", "kernel", "inline", "python"


# -- one emitter per instruction ----------------------------------------------------------
# Each emitter gets the module being written, ``m`` (its Writer ``m.w``, the variable that
# holds a buffer ``m.var(buf)``, ``m.int_slot``/``m.real_slot`` for numbers that are read at
# run time), and one instruction, and writes the call of its library kernel
# (``library.py``); ``kernel_of`` names that kernel.  Kernels read every size from the
# views they get: no width is ever written into the code.
def kernel_of(s) -> list[str]:
    """The library kernels an instruction calls."""
    if isinstance(s, ir.MatMul):
        return [("matmul_add" if s.acc else "matmul") + _transposes(s)]
    if isinstance(s, ir.BiasAct):
        return [f"bias_act_{s.act}" if s.bias is not None else f"act_{s.act}"]
    if isinstance(s, ir.ActGrad):
        return [f"act_grad_{s.act}"]
    if isinstance(s, ir.Sum):
        return ["add"] if len(s.ins) > 1 else ["copy_cols"]
    return [KERNEL_OF[type(s)]]


KERNEL_OF = {ir.ColSum: "colsum", ir.Copy: "copy_cols", ir.Place: "place_cols",
             ir.Softmax: "softmax", ir.SoftmaxGrad: "softmax_grad", ir.Dropout: "dropout",
             ir.Mul: "mul"}


def kernels_of(plan: Plan) -> list[str]:
    """The library kernels a plan's glue calls, in order of first use."""
    names = [k for s in plan.forward + plan.train_forward + plan.backward
             if not isinstance(s, ir.Comment) for k in kernel_of(s)]
    names += [f"loss_{plan.loss.name}", f"stats_{plan.loss.name}"]
    return list(dict.fromkeys(names))


def _transposes(s: ir.MatMul) -> str:
    """The kernel-name suffix of a product's transposes (library.TRANSPOSES)."""
    return {(False, False): "", (True, False): "_at", (False, True): "_bt",
            (True, True): "_atbt"}[s.ta, s.tb]


def emit_matmul(m, s: ir.MatMul):
    args = f"{m.var(s.a)}, {m.var(s.b)}, {m.var(s.out)}"
    m.w(f"{kernel_of(s)[0]}({args}" + (", scratch)" if s.acc else ")"))


def emit_bias_act(m, s: ir.BiasAct):
    bias = "" if s.bias is None else f", {m.var(s.bias)}"
    m.w(f"{kernel_of(s)[0]}({m.var(s.out)}, {m.var(s.z)}{bias})")


def emit_act_grad(m, s: ir.ActGrad):
    colsum = m.var(s.colsum) if s.colsum is not None else "none"
    m.w(f"act_grad_{s.act}({m.var(s.gx)}, {m.var(s.gy)}, {m.var(s.x)}, {m.var(s.y)}, "
        f"{colsum}, {s.acc})")


def emit_colsum(m, s: ir.ColSum):
    m.w(f"colsum({m.var(s.out)}, {m.var(s.g)})")


def emit_sum(m, s: ir.Sum):
    out = m.var(s.out)
    if len(s.ins) == 1:
        m.w(f"copy_cols({out}, {m.var(s.ins[0])}, 0, False)")
        return
    m.w(f"add({out}, {m.var(s.ins[0])}, {m.var(s.ins[1])})")
    for b in s.ins[2:]:
        m.w(f"add({out}, {out}, {m.var(b)})")


def _col(m, col0: int) -> str:
    return f"at(layout, {m.int_slot(col0, 'first column of a block of columns')})"


def emit_copy(m, s: ir.Copy):
    m.w(f"copy_cols({m.var(s.out)}, {m.var(s.src)}, {_col(m, s.col0)}, {s.acc})")


def emit_place(m, s: ir.Place):
    m.w(f"place_cols({m.var(s.out)}, {m.var(s.src)}, {_col(m, s.col0)})")


def emit_softmax(m, s: ir.Softmax):
    m.w(f"softmax({m.var(s.out)}, {m.var(s.x)})")


def emit_softmax_grad(m, s: ir.SoftmaxGrad):
    m.w(f"softmax_grad({m.var(s.gx)}, {m.var(s.gy)}, {m.var(s.y)}, {s.acc})")


def emit_dropout(m, s: ir.Dropout):
    node = f"node {m.plan.roles[s.mask.name][0]}"
    rate = m.real_slot(s.rate, f"{node} dropout rate")
    scale = m.real_slot(1 / (1 - s.rate), f"{node} dropout scale 1 / (1 - rate)")
    salt = m.int_slot(s.salt, f"{node} dropout salt (numbers the dropout nodes)")
    m.w(f"dropout({m.var(s.out)}, {m.var(s.x)}, {m.var(s.mask)}, at(hyper, {rate}), "
        f"at(hyper, {scale}), key, at(layout, {salt}), row0)")


def emit_mul(m, s: ir.Mul):
    m.w(f"mul({m.var(s.gx)}, {m.var(s.gy)}, {m.var(s.m)}, {s.acc})")


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
    """Generates the source of the CPU glue for one plan and one dtype.

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
        self.jit = {KERNEL: f'@njit(cache={cache}, error_model="numpy")', INLINE: INLINE_JIT,
                    # train_step allocates nothing (its arrays are views the caller's
                    # buffers outlive), so it needs no reference counting: 5 % less to
                    # compile, and an allocation would fail to compile rather than leak
                    STEP: f'@njit(cache={cache}, error_model="numpy", no_cpython_wrapper=True, '
                          'no_cfunc_wrapper=True, _nrt=False)'}
        self.ints: list[int] = [plan.arena_width]
        self.int_notes: list[str] = ["columns of the arena (its rows: cap = arena.size // this)"]
        self.reals: list[float] = []
        self.real_notes: list[str] = []
        self._slots: dict = {}
        self._vars, self._about = self._variables()
        self.loss_kernel, self.stats_kernel = f"loss_{plan.loss.name}", f"stats_{plan.loss.name}"
        # the order of the `kernels` array: the library's, then the optimizer's update
        self.kernels: list[str] = kernels_of(plan) + [update.NAME]
        for k, v in optimizer.hyper().items():    # first: update.py reads hyper[0 .. k-1]
            self.real_slot(v, f"optimizer: {k}")

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
        holds cap rows from element c * cap on (``views.block``: one intrinsic)."""
        col, width = self.plan.arena[buf]
        k = self.int_slot(col, f"{self._about[buf]}: first column", key=("block", buf))
        self.int_slot(width, f"{self._about[buf]}: width", key=("width", buf))
        return f"block(arena, layout, {k}, {rows})"

    def _param(self, slot) -> str:
        k = self.int_slot(slot.offset, f"{self._about[slot.var]}: offset", key=("param", slot.var))
        for d, size in enumerate(slot.shape):
            self.int_slot(size, f"{self._about[slot.var]}: size of axis {d}",
                          key=("dim", slot.var, d))
        if len(slot.shape) == 2:
            return f"matrix({{flat}}, layout, {k})"
        return f"vec({{flat}}, layout, {k})"

    # views at the top of a function, for the buffers its instructions touch
    def _declare(self, steps):
        """The first lines of a function: its kernels (from the ``kernels`` addresses), and a
        view for each buffer its instructions touch."""
        w, p = self.w, self.plan
        self._unpack([k for st in steps if not isinstance(st, ir.Comment)
                      for k in kernel_of(st)])
        used = []
        for b in [b for s in steps for b in _buffers_of(s)]:
            if b.name not in [u.name for u in used]:
                used.append(b)
        scratch = any(isinstance(s, ir.MatMul) and s.acc for s in steps)
        if scratch:
            w("cap = arena.size // at(layout, 0)")
        if any(isinstance(s, ir.ActGrad) and s.colsum is None for s in steps):
            w("none = vector(params, 0, 0)   # an empty vector: no column sums")
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
            w(f"scratch = vector(arena, at(layout, {k}) * cap, at(layout, {k + 1}) * cap)")

    def _unpack(self, names):
        """Bind the library kernels ``names``, each from its address in ``kernels``."""
        for name in dict.fromkeys(names):
            self.w(f"{name} = {self.kernel_ref(name)}")

    def kernel_ref(self, name: str) -> str:
        """Source of kernel `name` (a library kernel, or the optimizer's update) as a value
        that calls its address (``views.kernel``): ``kernels`` holds the addresses of the
        compiled kernels, in the order listed in the header."""
        return f'kernel(kernels, {self.kernels.index(name)}, "{name}", real)'

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
        w(f'"""graphnn glue: {self.dtype.name}, loss {p.loss.name}, '
          f'optimizer {type(opt).__name__}.')
        w()
        w(f"Graph (node: kind of inputs): {nodes}.")
        if p.fused:
            w(f"Fused: the output {p.fused}: training feeds the loss the logits.")
        w()
        w("Every loop is a kernel of graphnn's library (graphnn/compile/library.py; the")
        w("model's library_source() shows it), compiled once per machine for any shape,")
        w("and so is the loop over an epoch's batches, which calls train_step below.")
        w("`kernels` holds their addresses; kernel() makes each a value that calls it there,")
        w("so only train_step compiles for a new architecture.")
        w()
        w("No size, name or hyperparameter is written here: every model of this structure,")
        w("whatever its widths, runs this code.  The numbers come at run time in two arrays")
        w("(listed below): `layout` (int64) and `hyper` (float64).  Parameters are slices")
        w("of one flat buffer (gradients alike): matrix(params, layout, k) is the")
        w("(layout[k+1], layout[k+2]) matrix at offset layout[k], vec(params, layout, k) the")
        w("layout[k+1] numbers there.  Every activation and gradient is a block of columns of")
        w("one workspace, the arena, with room for cap = arena.size // layout[0] rows:")
        w("block(arena, layout, k, n) is the first n rows of the block at column c = layout[k],")
        w("width w = layout[k+1]: arena[c * cap:c * cap + n * w] as (n, w).  Each of these")
        w("(graphnn/compile/views.py) checks that it lies inside its buffer.")
        w('"""')
        preamble(w, self.dtype, "at, block, kernel, matrix, vec, vector, view")
        w()
        w("# kernels[k], int64: the address of kernel k's compiled code (the library's; the")
        w("# last, apply_update, the optimizer's update module's), whose")
        w("# signature follows (kernel() types the call by it).  The signatures and the")
        w(f"# library's fingerprint ({library.fingerprint()}) are part of this text, so a")
        w("# changed library never meets a cached glue compiled against the old one.")
        for k, name in enumerate(self.kernels):
            sig = library.signature(name, self.dtype)
            w(f"#   {k:3d}  {name}(" + ", ".join(map(str, sig.args)) + f") -> {sig.return_type}")
        w("# layout[k] (read as at(layout, k): one bounds-checked load), one int64 each:")
        for k, note in enumerate(self.int_notes):
            w(f"#   {k:3d}  {note}")
        if self.real_notes:
            w("# hyper[k] (read as at(hyper, k)), one float64 each:")
            for k, note in enumerate(self.real_notes):
                w(f"#   {k:3d}  {note}")
        w()
        w()
        return w.lines

    def jit_line(self, how: str = KERNEL):
        if how != PYTHON:
            self.w(self.jit[how])

    def _function(self, source: str, how: str = KERNEL):
        """Append one function, compiled as ``how`` says (STEP, KERNEL, INLINE or PYTHON)."""
        self.jit_line(how)
        for line in source.splitlines():
            self.w(line)
        self.w()
        self.w()

    def source(self) -> str:
        w, p = self.w, self.plan
        loss = p.loss
        schedule = self.optimizer.schedule
        if schedule.per_step:
            self._function(schedule.source(generic=True), INLINE)

        drop = ", hyper, key, row0" if p.dropout else ""
        w("# " + "-" * 30 + " forward pass " + "-" * 30)
        w()
        self._pass("forward", "kernels, params, arena, x, layout", p.forward, p.output,
                   "The graph's output for the rows of x (inference), left in its block.")
        if p.fused or p.dropout:
            why = ", ".join(([f"stops at the logits ({p.fused} fused)"] if p.fused else [])
                            + (["dropout masks from key and the rows' numbers row0 + i "
                                "(key < 0: no dropout)"] if p.dropout else []))
            self._pass("forward_logits", f"kernels, params, arena, x, layout{drop}",
                       p.train_forward, p.logits,
                       f"Forward pass as the loss sees it: {why}; the logits are left in "
                       "their block.")
        w("# " + "-" * 30 + " backward pass " + "-" * 30)
        w()
        self.jit_line(INLINE)
        with w.block("def backward(kernels, params, grads, arena, x, layout):"):
            w('"""Backpropagation: from dLoss/dlogits, in reverse graph order, '
              'every parameter\'s gradient."""')
            w("n = x.shape[0]")
            self._declare(p.backward)
            self._steps(p.backward)
        w()
        w()
        dz = self._block(p.dlogits.name)
        keydoc = ("; key seeds the dropout masks, row0 + i numbers row i" if p.dropout else "")
        w("# " + "-" * 30 + " training " + "-" * 30)
        w()
        self._function(f"""
def loss_and_grads(kernels, params, grads, arena, x, y, w, layout{drop}):
    \"\"\"Mean {loss.name} loss over the rows of x (weighted by w if not empty), and
    its gradient in grads{keydoc}.  Nothing is updated: a data-parallel trainer
    can sum grads across processes before apply_update().\"\"\"
    loss = {self.kernel_ref(self.loss_kernel)}
    n = x.shape[0]
    {self._logits('x', 'key', 'row0')}
    z = {self._output(p.logits, 'x')}
    dz = {dz}
    value = loss(z, y, w, dz)
    backward(kernels, params, grads, arena, x, layout)
    return value""".strip("\n"), INLINE)
        self._train_step()
        w("# " + "-" * 20 + " plain Python: kernel calls per batch of rows " + "-" * 20)
        w("# These, and the glue they call, run as plain Python: the backend runs them in a")
        w("# copy of this module where every function above is its Python original and")
        w("# at / view / vector / matrix / vec / block are NumPy indexing and slices (same")
        w("# checks).  Each library kernel is called through its dispatcher, so they cost")
        w("# no compile; the Python runs once per `cap` rows.")
        w()
        self._function(f"""
def predict(kernels, params, arena, X, out, layout):
    \"\"\"forward() over all rows of X, cap rows at a time.\"\"\"
    cap = arena.size // at(layout, 0)
    rows = X.shape[0]
    for start in range(0, rows, cap):
        stop = min(start + cap, rows)
        n = stop - start
        forward(kernels, params, arena, X[start:stop], layout)
        out[start:stop] = {self._output(p.output, 'X[start:stop]')}""".strip("\n"), PYTHON)
        self._function(f"""
def evaluate(kernels, params, arena, X, Y, stats, layout, hyper):
    \"\"\"Summed loss (per-batch mean times rows) over all rows of X, no dropout;
    the metrics' sums are added into stats.\"\"\"
    loss = {self.kernel_ref(self.loss_kernel)}
    batch_stats = {self.kernel_ref(self.stats_kernel)}
    cap = arena.size // at(layout, 0)
    rows = X.shape[0]
    total = 0.0
    equal = np.empty(0, real)
    for start in range(0, rows, cap):
        stop = min(start + cap, rows)
        n = stop - start
        y = Y[start:stop]
        {self._logits('X[start:stop]', '-1', '0')}
        z = {self._output(p.logits, 'X[start:stop]')}
        dz = {self._block(p.dlogits.name)}
        total += n * loss(z, y, equal, dz)
        batch_stats(z, y, stats)
    return total""".strip("\n"), PYTHON)
        body = w.lines
        return "\n".join(self._header() + body).rstrip("\n") + "\n"

    def _logits(self, x: str, key: str, row0: str) -> str:
        """Source of the call that computes the logits the loss reads, for input `x`.

        Without a fused output or dropout they are forward()'s output.  With dropout,
        `key` seeds the masks (training) or is -1 (evaluate: no dropout).
        """
        p = self.plan
        name = "forward_logits" if (p.fused or p.dropout) else "forward"
        if not p.dropout:
            return f"{name}(kernels, params, arena, {x}, layout)"
        return f"{name}(kernels, params, arena, {x}, layout, hyper, {key}, {row0})"

    def _pass(self, name, args, steps, result: ir.Buf, doc: str):
        """A pass that leaves its result in its arena block (``_output``): it returns
        nothing, so no view (which borrows its buffer, views.py) can leave compiled code."""
        w = self.w
        self.jit_line(INLINE)
        with w.block(f"def {name}({args}):"):
            w(f'"""{doc}"""')
            w("n = x.shape[0]")
            self._declare(steps)
            self._steps(steps)
        w()
        w()

    def _output(self, result: ir.Buf, x: str) -> str:
        """Source of the view of a pass's result for its first n rows (`x` if the result
        is the input itself)."""
        return self._block(result.name) if result.kind == "arena" else x

    def _train_step(self):
        plan = self.plan
        lr = ""
        schedule = self.optimizer.schedule
        if schedule.per_step:
            slots = [self.real_slot(v, f"schedule: {k}") for k, v in schedule.hyper().items()]
            lr = ("\n    # this step's lr (a per-step schedule; the lr argument is not used)"
                  "\n    lr = real(schedule_lr(step, " + ", ".join(f"at(hyper, {s})" for s in slots)
                  + "))")
        z = self._block(plan.logits.name) if plan.logits.kind == "arena" else "x"
        rows = "\n    n = x.shape[0]" if plan.logits.kind == "arena" else ""
        drop = ", hyper, key, 0" if plan.dropout else ""
        targets = "labels" if plan.loss.targets == "labels" else "values"
        self._function(f"""
def train_step(kernels, params, grads, state, arena, x, y, w, lr, step, layout, hyper, key,
               stats):
    \"\"\"One step of training on one batch: compute the gradients, apply them, add the
    batch's metric sums into stats.  Returns the batch's mean loss.  The library's epoch
    loop (train_epoch_{targets}) gathers each batch (or views it, in order) and calls this
    at its address: compiled without Python wrappers, it is all a new architecture
    compiles for training.  `key` seeds the dropout masks (a graph without dropout
    ignores it).  apply_update is the optimizer's update, shared by every architecture
    (graphnn/compile/update.py; library_source() shows it).\"\"\"
    batch_stats = {self.kernel_ref(self.stats_kernel)}
    apply_update = {self.kernel_ref(update.NAME)}{rows}
    value = loss_and_grads(kernels, params, grads, arena, x, y, w, layout{drop}){lr}
    apply_update(params, grads, state, lr, step, hyper)
    batch_stats({z}, y, stats)
    return value""".strip("\n"), STEP)


class CpuBackend:
    """The CPU backend as the model sees it (``compile/cuda/backend.py`` offers the same methods).

    Arrays live in host memory, so ``to_device``/``to_host`` are the identity.  The
    kernel methods call the library's epoch loop (which calls the glue's ``train_step``),
    the optimizer's ``apply_update`` (``update.py``) or the generated glue
    (``loss_and_grads`` njit when first called, ``predict``/``evaluate`` Python around
    kernel calls) with the library kernels and this model's ``layout`` and ``hyper``
    arrays added: the glue is shared by every model of the same structure, the update by
    every model of the same optimizer variant, the library by every model of the same
    dtype.
    """

    device = "cpu"

    def __init__(self, plan: Plan, optimizer, dtype):
        self.plan = plan
        self.dtype = np.dtype(dtype)
        self.library = library.library(self.dtype)
        self.updater = update.Update(optimizer, self.dtype)
        built = {}

        def generate(cached: bool) -> str:   # Numba's cache= depends on the folder's state
            built["module"] = CpuModule(plan, optimizer, dtype, cache=cached)
            return built["module"].source()

        # one module per structure and process: from the disk cache, or in memory
        self.source, self.glue = cache.build(generate)
        module, self.use_cache = built["module"], cache.folder_of(self.glue) is not None
        self.layout = np.array(module.ints, np.int64)
        self.hyper = np.array(module.reals, np.float64)
        opt = list(optimizer.hyper().values())       # update.py reads them from hyper[0 ..]
        if module.reals[:len(opt)] != [float(v) for v in opt]:
            raise AssertionError("the optimizer's hyperparameters are not first in hyper")
        self.python = _as_python(self.glue, self._dispatcher)     # predict, evaluate
        self.kernel_names = tuple(module.kernels)      # the library's, then update.NAME
        self.stats_kernel = module.stats_kernel
        self.targets = "labels" if plan.loss.targets == "labels" else "values"
        self.epoch_kernel = f"train_epoch_{self.targets}"     # the library's epoch loop
        self._kernels = None                 # their addresses, once compiled
        self._step = 0                       # train_step's address, once compiled
        self._epoch = None                   # the library's epoch loop, once compiled

    @property
    def library_source(self) -> str:
        """The kernel library, then the optimizer's update module."""
        return (self.library.source + "\n\n# " + "-" * 20 + " graphnn/compile/update.py: "
                "the optimizer's update " + "-" * 20 + "\n\n" + self.updater.source)

    def _module(self, name: str) -> library.Module:
        """The module kernel ``name`` lives in: the optimizer's update, or the library."""
        return self.updater if name == update.NAME else self.library

    def _dispatcher(self, name: str):
        """Kernel ``name``, compiled."""
        return self._module(name).kernel(name)

    @property
    def kernels(self) -> np.ndarray:
        """The addresses of the kernels the glue calls, in its order (each compiled, or
        loaded from the cache, on first use)."""
        if self._kernels is None:
            self._kernels = np.array([self._module(k).address(k) for k in self.kernel_names],
                                     np.int64)
        return self._kernels

    def train_epoch(self, params, grads, state, arena, X, Y, W, order, first, last, batch_size,
                    lr, step, seed, xbuf, ybuf, wbuf, losses, stats):
        """The library's epoch loop, calling this architecture's train_step per batch."""
        if self._epoch is None:
            self.compile(self.targets == "labels")
        return self._epoch(
            self.kernels, self._step, params, grads, state, arena, X, Y, W, order, first, last,
            batch_size, lr, step, seed, xbuf, ybuf, wbuf, losses, stats, self.layout,
            self.hyper)

    def predict(self, params, arena, X, out):
        return self.python["predict"](self.kernels, params, arena, X, out, self.layout)

    def evaluate(self, params, arena, X, Y, stats):
        return self.python["evaluate"](self.kernels, params, arena, X, Y, stats, self.layout,
                                     self.hyper)

    def batch_stats(self, z, y, stats):
        """Add one batch's metric sums into stats (the library kernel of the loss)."""
        self.library.kernel(self.stats_kernel)(z, y, stats)

    def update(self, params, grads, state, lr, step):
        return self.updater.kernel()(params, grads, state, lr, step, self.hyper)

    def loss_and_grads(self, params, grads, arena, x, y, w, key: int, row0: int = 0):
        """The generated loss_and_grads; `key` seeds the dropout masks and row i of x
        draws its mask as row ``row0 + i`` (a data-parallel trainer passes the global row
        number of its first row, so every process draws the masks one process would).
        Graphs without dropout have no masks, and ignore both."""
        self._compile_loss_and_grads(y)
        kernel = self.glue["loss_and_grads"]
        if self.plan.dropout:
            return kernel(self.kernels, params, grads, arena, x, y, w, self.layout,
                          self.hyper, key, row0)
        return kernel(self.kernels, params, grads, arena, x, y, w, self.layout)

    def compile_step(self, params, grads, state, arena, x, y, w):
        """Compile loss_and_grads and load the update: a data-parallel trainer calls them
        from Python (one process runs them inside train_step)."""
        self._compile_loss_and_grads(y)
        self.updater.kernel()

    def _compile_loss_and_grads(self, y):
        if self.glue["loss_and_grads"].overloads:
            return
        t, i64 = numba.typeof, numba.types.int64
        a1, a2 = t(np.zeros(1, self.dtype)), t(np.zeros((1, 1), self.dtype))
        idx = t(np.zeros(1, np.int64))
        args = (self._kernels_type(), a1, a1, a1, a2, idx if y.ndim == 1 else a2, a1, idx)
        if self.plan.dropout:
            args += (t(self.hyper), i64, i64)
        library.compile_once(self.glue["loss_and_grads"], args)

    @staticmethod
    def _kernels_type():
        """The Numba type of the kernels' addresses."""
        return numba.types.Array(numba.types.int64, 1, "C")

    def is_compiled(self, labels: bool) -> bool:
        """Whether compile() has nothing to build: train_step and the library kernels it
        and the epoch loop need are in this process already, or in Numba's on-disk cache
        (then loading them takes a fraction of a second)."""
        k = self.glue["train_step"]
        sig = self._signature(labels)
        glue = sig in k.overloads or (self.use_cache and cache.in_index(k, sig))
        return glue and all(self._module(n).is_compiled(n)
                            for n in self.kernel_names + (self.epoch_kernel,))

    def _library_kernels(self) -> tuple:
        """The library kernels train_step and the epoch loop call."""
        return tuple(n for n in self.kernel_names if n != update.NAME) + (self.epoch_kernel,)

    def _signature(self, labels: bool) -> tuple:
        """train_step's argument types (``library.step_signature``)."""
        return library.step_signature("labels" if labels else "values", self.dtype).args

    def compile(self, labels: bool):
        """Compile now, for exactly the argument types the model passes (no later recompiles).

        The library kernels train_step calls, and the optimizer's update, compile (or
        load) first, then train_step, which calls them through their addresses, then the
        library's epoch loop, which calls train_step through its address.  On a machine's
        first run a helper process (``warm.py``) compiles a share of the kernels
        meanwhile.  train_step then refuses further compiles.  loss_and_grads() compiles
        (or loads) on first use.  Every call after the first for the same structure (any
        widths) finds them compiled.
        """
        if labels != (self.targets == "labels"):
            raise ValueError(f"this model's loss takes {self.targets} as targets")
        needed = self._library_kernels()
        helper = warm.Helper.start(self.library, needed)    # None: all compile here
        sig = self._signature(labels)
        step = self.glue["train_step"]
        try:
            for name in needed:
                if helper is None or name not in helper.names:
                    self.library.kernel(name)
            self.updater.kernel()
            library.compile_once(step, sig)  # needs the kernels' signatures, not their code
        finally:
            if helper is not None:
                helper.wait()                # then its kernels load from the cache
        self.kernels                     # noqa: B018 - the rest: loads (or compiles) them
        address = library.code_address(step, library.step_signature(self.targets, self.dtype))
        self._step, self._epoch = address, self.library.kernel(self.epoch_kernel)

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



def _as_python(glue: dict, dispatcher) -> dict:
    """A copy of the glue module's namespace where each of its functions is its Python
    original, views are NumPy slices and ``kernel()`` gives the library kernel's
    dispatcher: what predict and evaluate run in (they cost no compile, and call the same
    compiled library kernels)."""
    python = dict(glue, view=views.python_view, vector=views.python_vector, at=views.python_at,
                  matrix=views.python_matrix, vec=views.python_vec, block=views.python_block,
                  kernel=lambda addresses, index, name, real: dispatcher(name))
    for name, value in glue.items():
        f = getattr(value, "py_func", value)
        if isinstance(f, types.FunctionType) and f.__module__ == glue["__name__"]:
            python[name] = types.FunctionType(f.__code__, python, name, f.__defaults__)
    return python
