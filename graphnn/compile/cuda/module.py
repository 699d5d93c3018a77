"""The generated CUDA module of one architecture: device functions, kernels (from
``kernels.py``), launch helpers (``launch.py``) and the host functions (``forward``,
``backward``, ``train_step``, ``train_epoch``, ``predict``, ``evaluate``, ...) that launch
the kernels, one line per instruction of the plan, commented per node.

It reads like the CPU module (``net.source()``): the scalar math of the activations,
losses, softmax and optimizer is pasted in from ``graphnn/ops`` and ``graphnn/optim``
and compiled as ``@cuda.jit(device=True)`` functions (the same source strings the CPU
backend compiles with ``@njit``).

The source depends on the architecture's structure only (op kinds, activations,
connections, loss, optimizer, dtype, tiles).  Widths, parameter offsets, arena columns,
concatenation offsets and dropout rates are the module's ``layout``, set as globals at
load (``PARAMS``, ``ARENA``, ``OFFSETS``, ``DROPOUT``, ...), and the kernels read every
size from their arrays; so width variants share one source and one set of compiled
kernels.  No name (model, node, parameter) enters the source: variables and comments are
made of node indices, fixed tags and op kinds.

Nothing is copied between host and device during an epoch: ``train_epoch`` gathers,
steps and updates on the device and copies the per-batch losses and the metric sums
back once, at the end.  Each launch is configured once per shape (``launch_*``), each
buffer view made once per batch size (``bind``).
"""
from __future__ import annotations

import re

from ... import ir
from ...ops.activations import ACTIVATIONS
from ...ops.dropout import DROPOUT_KEY_SOURCE, UNIFORM_SOURCE, UNIT
from ...ops.softmax import SOFTMAX_SOURCE
from ..codegen import NUMERIC_CONSTANTS, Writer, activations_used
from ..plan import Plan
from . import config as _config
from .config import Config
from .kernels import KernelLibrary
from .launch import LAUNCH_SOURCE

# -- the module ----------------------------------------------------------------------------
# fixed tags of the plan's arena buffers (its names are "<tag>_<node name>") -> what they hold
_TAGS = {"h": "output", "d": "gradient of the output", "z": "pre-activation",
         "dz": "gradient of the pre-activation", "mask": "dropout mask"}
_PARAM_TAGS = {"weight": "W", "bias": "b"}
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")


def _word(text, default: str) -> str:
    """``text`` if it is a short plain word (a kind or an activation from a fixed table),
    else ``default``: what comments may say about a node."""
    return text if isinstance(text, str) and _WORD.fullmatch(text) else default


class CudaModule(KernelLibrary):
    """Generates the source of the CUDA kernels and their launches for one plan and dtype,
    and the ``layout`` (widths, offsets, rates) the source reads at run time."""

    def __init__(self, plan: Plan, optimizer, dtype, config: Config | None = None):
        super().__init__(plan.loss, optimizer, dtype, config or _config.CONFIG)
        self.plan = plan
        self.launches: dict[str, int] = {}
        self._text: str | None = None
        for s in plan.forward + plan.train_forward + plan.backward:
            if not isinstance(s, ir.Comment) and type(s) not in _INSTRUCTIONS:
                raise ValueError(f"the CUDA backend cannot compile the instruction "
                                 f"{type(s).__name__} yet; use device='cpu'")
        self._index = {node: i for i, node in enumerate(plan.model.nodes)}
        self._vars, self._about = self._variables()
        self.layout = {"ARENA_WIDTH": plan.arena_width, "N_PARAMS": plan.n_params,
                       "LOGITS_WIDTH": plan.logits.width,
                       "PARAMS": tuple((p.offset, tuple(p.shape)) for p in plan.params),
                       "ARENA": tuple(plan.arena.values()), "OFFSETS": [], "DROPOUT": []}
        self._host_text = self._host_source()
        self.layout["OFFSETS"] = tuple(self.layout["OFFSETS"])
        self.layout["DROPOUT"] = tuple(self.layout["DROPOUT"])

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

    # -- names: node indices and fixed tags only ----------------------------------------
    def _node_text(self, node) -> str:
        """"node 3 (Dense)": the words comments may use for a node."""
        return f"node {self._index[node]} ({_word(type(node).__name__, 'Node')})"

    def _variables(self) -> tuple[dict, dict]:
        """Plan buffer name -> variable in the generated code (``W1``, ``db1``, ``h2``,
        ``dz2``, ``mask3``; ``a<k>`` for a buffer of unknown kind) and -> its comment."""
        p = self.plan
        names: dict[str, str] = {}
        about: dict[str, str] = {}
        for k, slot in enumerate(p.params):
            tag = _PARAM_TAGS.get(slot.local, f"P{k}_")
            node = self._index[slot.node]
            names[slot.var] = f"{tag}{node}"
            names[_grad_var(slot)] = f"d{tag}{node}"
            about[slot.var] = f"{self._node_text(slot.node)} {_word(slot.local, 'parameter')}"
            about[_grad_var(slot)] = about[slot.var] + " gradient"
        by_name = {p.names[n]: n for n in p.model.nodes}
        taken = set(names.values())
        for k, name in enumerate(p.arena):
            tag, _, rest = name.partition("_")      # tags have no "_": the split is unique
            node = by_name.get(rest)
            var = f"{tag}{self._index[node]}" if tag in _TAGS and node is not None else f"a{k}"
            if name == "tmp":
                var = "tmp"
            if var in taken:
                var = f"a{k}"
            taken.add(var)
            names[name] = var
            about[name] = (f"{self._node_text(node)} {_TAGS[tag]}" if var != f"a{k}" and
                           node is not None else "workspace")
        return names, about

    def _heading(self, text: str, backward: bool) -> str:
        """The comment for an ir.Comment heading: the node it names, by index and kind, and
        the nodes it reads (the plan's text itself holds names and widths)."""
        p = self.plan
        found = [n for n in p.model.nodes if text.startswith(p.names[n] + ": ")]
        if not found:
            return "# (a node)"
        node = max(found, key=lambda n: len(p.names[n]))
        act = getattr(node, "activation", None)
        kind = _word(type(node).__name__, "Node")
        if isinstance(act, str) and act in ACTIVATIONS and kind != act.capitalize():
            kind += f" ({act})"
        ins = ", ".join(str(self._index[i]) for i in node.inputs)
        return (f"# node {self._index[node]}: {kind} of node{'s' if len(node.inputs) > 1 else ''}"
                f" {ins}" + (" (backward)" if backward else ""))

    # -- host code ----------------------------------------------------------------------
    def _ref(self, b: ir.Buf) -> str:
        return "x" if b.kind == "input" else f"v.{self._vars[b.name]}"

    def _short(self, b: ir.Buf) -> str:
        return "x" if b.kind == "input" else self._vars[b.name]

    def _note(self, s, offset: str = "", rate: str = "") -> str:
        """The math of instruction ``s`` in the module's variable names (the plan's own notes
        may hold node names and numbers)."""
        return _INSTRUCTIONS[type(s)][0](self._short, s, offset, rate)

    def _offset(self, col0: int) -> str:
        """A column offset (Copy, Place): 0 as it is (an Add's copies, a concatenation's first
        input: 0 whatever the widths), any other as a layout entry OFFSETS[k] (a sum of
        widths, never 0)."""
        if col0 == 0:
            return "0"
        k = len(self.layout["OFFSETS"])
        self.layout["OFFSETS"].append(int(col0))
        return f"OFFSETS[{k}]"

    def _steps(self, w: Writer, steps, count: str, backward: bool = False) -> None:
        """One launch line per instruction (a product and the bias + activation after it
        on the same buffer: one launch), sizes read from the arrays at run time."""
        i = 0
        while i < len(steps):
            s = steps[i]
            i += 1
            if isinstance(s, ir.Comment):
                w()
                w(self._heading(s.text, backward))
                continue
            self.launches[count] = self.launches.get(count, 0) + 1
            nxt = steps[i] if i < len(steps) else None
            i += _INSTRUCTIONS[type(s)][1](self, w, s, nxt)

    def _header(self, w: Writer):
        p, c = self.plan, self.config
        desc = "; ".join(
            f"{self._index[n]} {_word(type(n).__name__, 'Node')}"
            + (f" of {', '.join(str(self._index[i]) for i in n.inputs)}" if n.inputs else "")
            for n in p.model.nodes)
        w(f'"""graphnn CUDA kernels, {self.dtype.name}, loss {_word(p.loss.name, "loss")}, '
          f'optimizer {_word(type(self.optimizer).__name__, "optimizer")}.')
        w()
        w(f"Graph (node: kind of inputs): {desc}.")
        w("Parameters: one flat device buffer (PARAMS: offset and shape of each); gradients alike.")
        w("Arena: every activation and gradient is a block of columns of one device workspace")
        w("with room for `cap` rows (ARENA: first column and width of each); bind() cuts out")
        w("(once per batch size) the views of n rows.")
        if p.fused:
            w(f"Fused: the output {_word(p.fused.split(' + ')[0], 'activation')} + "
              f"{_word(p.loss.name, 'loss')}: training feeds the loss the logits.")
        w("Products: shared-memory tiles of BIG (or SMALL when BIG would leave")
        w("multiprocessors idle); other kernels: BLOCK threads per block.")
        w("Set at load: the layout (ARENA_WIDTH, N_PARAMS, LOGITS_WIDTH, PARAMS, ARENA, OFFSETS:")
        w("column offsets of copies, DROPOUT: rate and scale of each dropout), so this text is")
        w("the same for every width of the architecture; SMS (multiprocessors); device")
        w("accumulators HITS (correct count), ERRS (squared, absolute error), WSUM (a batch's")
        w("total weight); EMPTY (no weights).")
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
        w("ARENA_WIDTH = N_PARAMS = LOGITS_WIDTH = 0")
        w("PARAMS = ARENA = OFFSETS = DROPOUT = ()")
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
        return activations_used(self.plan, self._acts)

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
        loss = self.plan.loss
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
        p = self.plan
        # -- bind
        w("# " + "-" * 30 + " buffers " + "-" * 30)
        w()
        w("_bound = {}")
        w()
        w()
        with w.block("def view(arena, cap, k, n):"):
            w('"""Rows 0..n-1 of arena block k (ARENA[k]: its first column and width)."""')
            w("col, width = ARENA[k]")
            w("start = cap * col")
            w("return arena[start:start + n * width].reshape(n, width)")
        w()
        w()
        with w.block("def param(flat, k):"):
            w('"""Parameter k (or its gradient) as a view of the flat buffer (PARAMS[k]: its')
            w('offset and shape)."""')
            w("offset, shape = PARAMS[k]")
            w("size = shape[0] * shape[1] if len(shape) == 2 else shape[0]")
            w("part = flat[offset:offset + size]")
            w("return part.reshape(shape) if len(shape) == 2 else part")
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
            for i, slot in enumerate(p.params):
                w(f"v.{self._vars[slot.var]} = param(params, {i})   # {self._about[slot.var]}")
            with w.block("if grads is not None:"):
                for i, slot in enumerate(p.params):
                    g = _grad_var(slot)
                    w(f"v.{self._vars[g]} = param(grads, {i})   # {self._about[g]}")
            for i, name in enumerate(p.arena):
                if name != "tmp":
                    w(f"v.{self._vars[name]} = view(arena, cap, {i}, n)   # {self._about[name]}")
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
                ty = ("ybuf[:n]" if self.labels else
                      "ybuf[:n * LOGITS_WIDTH].reshape(n, LOGITS_WIDTH)")
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
            why = ", ".join((["stops at the logits (the output activation is fused\n    "
                              "into the loss)"] if p.fused else [])
                            + (["dropout active when training"] if p.dropout else []))
            self._pass(w, "forward_logits", "v, x, training, key, row0", p.train_forward,
                       p.logits, f"Forward pass as the loss sees it: {why}.\n    `key` "
                       "seeds dropout; row0 is the first row's index in the whole data (0\n"
                       "    but in data-parallel training).")
        else:
            with w.block("def forward_logits(v, x, training, key, row0):"):
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
            self._steps(w, p.backward, "backward", backward=True)
        w()
        w()
        dz = self._ref(p.dlogits)
        self.k_loss(False)
        self.k_loss(True)
        self.k_wsum()
        self.k_update()
        self.k_nonfinite()
        self.k_gather(False)
        self.k_gather(True)
        self.k_clear()
        self.k_copy(False)
        cols = "d" if self.labels else "max(d, LOGITS_WIDTH)"
        schedule = self.optimizer.schedule
        opt_name = _word(type(self.optimizer).__name__, "the optimizer")
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
    out[slot], dLoss/dz into {dz}, metrics into HITS and ERRS.\"\"\"
    n = z.shape[0]
    if w.size == 0:
        launch_rows("loss", n)(z, y, {dz}, out, slot, HITS, ERRS)
    else:
        launch_one("wsum", n)(w, WSUM)
        launch_rows("loss_weighted", n)(z, y, {dz}, w, WSUM, out, slot, HITS, ERRS)


def update(params, grads, state, lr, step):
    \"\"\"{opt_name} on the whole flat parameter buffer (one launch).\"\"\"
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
    z = forward_logits(v, x, True, key, 0)
    batch_loss(v, z, y, w, out, slot)
    backward(v, x)
    update(v.params, v.grads, state, lr, step)


def loss_and_grads(params, grads, arena, x, y, w, key, row0=0):
    \"\"\"Mean loss over the rows of x (weighted by w if not empty; copied back), and its
    gradient in grads; key seeds the dropout masks, row0 (the first row's index in the
    whole data, for data-parallel training) offsets their rows.\"\"\"
    v = bind(params, grads, arena, x.shape[0])
    out = results(1)
    z = forward_logits(v, x, True, key, row0)
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
    \"\"\"stats += [correct, squared error, absolute error] from the device (two copies);
    empty stats (no metric asked for): no copy.\"\"\"
    if stats.size < {ir.STATS_SIZE}:
        return
    errs = ERRS.copy_to_host()
    stats[{ir.METRIC_SUMS["accuracy"]}] += HITS.copy_to_host()[0]
    stats[{ir.METRIC_SUMS["mse"]}] += errs[0]
    stats[{ir.METRIC_SUMS["mae"]}] += errs[1]""".strip("\n"))
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
        launch_ew("copy", stop - start, y.shape[1])(out[start:stop], y, 0)


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
        z = forward_logits(v, X[start:stop], False, 0, 0)
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


# -- one note and one emitter per instruction ---------------------------------------------
# A note gives an instruction's math for the comment above its launch, in the module's
# variable names (``r``: buffer -> variable).  An emitter writes that comment and the launch
# line(s) into ``w`` for module ``m``; ``nxt`` is the instruction after it, and it returns how
# many of those it consumed too (a product takes the bias + activation after it into its
# epilogue).  The CPU backend's counterpart is ``compile/cpu.py``'s ``EMIT``.
def _eq(s) -> str:
    return "+=" if getattr(s, "acc", False) else "="


def _note_matmul(r, s, offset, rate):
    return f"{r(s.out)} {_eq(s)} {r(s.a)}{'^T' if s.ta else ''} @ {r(s.b)}{'^T' if s.tb else ''}"


def _note_bias_act(r, s, offset, rate):
    v = r(s.z) + (f" + {r(s.bias)}" if s.bias is not None else "")
    return f"{r(s.out)} = " + (v if s.act == "linear" else f"{s.act}({v})")


def _note_act_grad(r, s, offset, rate):
    g = r(s.gy) + ("" if s.act == "linear" else f" * {s.act}'({r(s.x)})")
    return f"{r(s.gx)} {_eq(s)} {g}" + (f", {r(s.colsum)} = its column sums"
                                       if s.colsum is not None else "")


def _note_colsum(r, s, offset, rate):
    return f"{r(s.out)} = column sums of {r(s.g)}"


def _note_sum(r, s, offset, rate):
    return f"{r(s.out)} = " + " + ".join(r(b) for b in s.ins)


def _note_copy(r, s, offset, rate):
    return f"{r(s.out)} {_eq(s)} columns {offset}.. of {r(s.src)}"


def _note_place(r, s, offset, rate):
    return f"columns {offset}.. of {r(s.out)} = {r(s.src)}"


def _note_softmax(r, s, offset, rate):
    return f"{r(s.out)} = softmax({r(s.x)}) over each row"


def _note_softmax_grad(r, s, offset, rate):
    return f"{r(s.gx)} {_eq(s)} {r(s.y)} * ({r(s.gy)} - row sums of {r(s.gy)} * {r(s.y)})"


def _note_mul(r, s, offset, rate):
    return f"{r(s.gx)} {_eq(s)} {r(s.gy)} * {r(s.m)}"


def _note_dropout(r, s, offset, rate):
    return (f"{r(s.out)} = {r(s.x)} * {r(s.mask)}, {r(s.mask)} = (u >= rate) / (1 - rate), "
            f"rate = {rate}")


def _emit_matmul(m, w, s, nxt) -> int:
    r = m._ref
    args = [r(s.out), r(s.a), r(s.b)]
    fused = isinstance(nxt, ir.BiasAct) and not s.acc and nxt.z == s.out
    if fused:
        w(f"# {m._note(s)};  {m._note(nxt)}   (in the product's epilogue)")
        bias = nxt.bias is not None
        args += [r(nxt.bias)] if bias else []
        if nxt.out == s.out:
            name = m.k_matmul(s.ta, s.tb, "bias_act", nxt.act, bias)
        else:
            name = m.k_matmul(s.ta, s.tb, "split", nxt.act, bias)
            args.append(r(nxt.out))
    else:
        w(f"# {m._note(s)}")
        name = m.k_matmul(s.ta, s.tb, "acc" if s.acc else "set")
    w(f'launch_mm("{name}", *{r(s.out)}.shape)({", ".join(args)})')
    return int(fused)


def _emit_dropout(m, w, s, nxt) -> int:
    r = m._ref
    k = len(m.layout["DROPOUT"])
    m.layout["DROPOUT"].append((float(s.rate), 1.0 / (1.0 - s.rate)))
    w(f"# {m._note(s, rate=f'DROPOUT[{k}][0]')}")
    with w.block("if training:"):
        w(f'launch_ew("{m.k_dropout()}", n, {r(s.out)}.shape[1])({r(s.out)}, '
          f'{r(s.x)}, {r(s.mask)}, *DROPOUT[{k}], key + {int(s.salt)}, row0)')
    with w.block("else:"):
        w(f'launch_ew("{m.k_copy(False)}", n, {r(s.out)}.shape[1])({r(s.out)}, {r(s.x)}, 0)')
    return 0


def _one_launch(launch):
    """The emitter of an instruction that is one launch: its note, then ``launch(m, s, r)``."""
    def emit(m, w, s, nxt) -> int:
        w(f"# {m._note(s)}")
        w(launch(m, s, m._ref))
        return 0
    return emit


def _launch_bias_act(m, s, r) -> str:
    args = [r(s.out), r(s.z)] + ([r(s.bias)] if s.bias is not None else [])
    name = m.k_bias_act(s.act, s.bias is not None)
    return f'launch_ew("{name}", n, {r(s.out)}.shape[1])({", ".join(args)})'


def _launch_act_grad(m, s, r) -> str:
    args = [r(s.gx), r(s.gy)] + ([] if s.act == "linear" else [r(s.x), r(s.y)])
    if s.colsum is None:
        return (f'launch_ew("{m.k_act_grad(s.act, s.acc)}", n, {r(s.gx)}.shape[1])'
                f'({", ".join(args)})')
    return (f'launch_cols("{m.k_act_grad_colsum(s.act, s.acc)}", n, {r(s.gx)}.shape[1])'
            f'({", ".join(args + [r(s.colsum)])})')


def _launch_colsum(m, s, r) -> str:
    return f'launch_cols("{m.k_colsum()}", n, {r(s.g)}.shape[1])({r(s.out)}, {r(s.g)})'


def _launch_sum(m, s, r) -> str:
    args = ", ".join([r(s.out)] + [r(b) for b in s.ins])
    return f'launch_ew("{m.k_sum(len(s.ins))}", n, {r(s.out)}.shape[1])({args})'


def _launch_softmax(m, s, r) -> str:
    return f'launch_rows("{m.k_softmax()}", n)({r(s.out)}, {r(s.x)})'


def _launch_softmax_grad(m, s, r) -> str:
    return f'launch_rows("{m.k_softmax_grad(s.acc)}", n)({r(s.gx)}, {r(s.gy)}, {r(s.y)})'


def _launch_mul(m, s, r) -> str:
    return f'launch_ew("{m.k_mul(s.acc)}", n, {r(s.gx)}.shape[1])({r(s.gx)}, {r(s.gy)}, {r(s.m)})'


def _emit_columns(m, w, s, nxt) -> int:
    """Copy (out = columns col0.. of src) and Place (columns col0.. of out = src): the
    offset (a literal 0, or an OFFSETS entry made here) is named in the note and the launch."""
    r = m._ref
    offset = m._offset(s.col0)
    w(f"# {m._note(s, offset=offset)}")
    if isinstance(s, ir.Copy):
        kernel, cols = m.k_copy(s.acc), r(s.out)
    else:
        kernel, cols = m.k_place(), r(s.src)
    w(f'launch_ew("{kernel}", n, {cols}.shape[1])({r(s.out)}, {r(s.src)}, {offset})')
    return 0


# instruction -> (note, emitter)
_INSTRUCTIONS = {
    ir.MatMul: (_note_matmul, _emit_matmul),
    ir.BiasAct: (_note_bias_act, _one_launch(_launch_bias_act)),
    ir.ActGrad: (_note_act_grad, _one_launch(_launch_act_grad)),
    ir.ColSum: (_note_colsum, _one_launch(_launch_colsum)),
    ir.Sum: (_note_sum, _one_launch(_launch_sum)),
    ir.Copy: (_note_copy, _emit_columns),
    ir.Place: (_note_place, _emit_columns),
    ir.Softmax: (_note_softmax, _one_launch(_launch_softmax)),
    ir.SoftmaxGrad: (_note_softmax_grad, _one_launch(_launch_softmax_grad)),
    ir.Mul: (_note_mul, _one_launch(_launch_mul)),
    ir.Dropout: (_note_dropout, _emit_dropout),
}

