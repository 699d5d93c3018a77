"""The CPU kernel library: every loop graphnn runs, as shape-free ``@njit`` kernels.

One module per dtype holds a kernel for each ``graphnn.ir`` instruction (one per
activation where the instruction applies one), and the loss and the metric sums of
each loss.  A kernel takes 2-D C-contiguous views and reads every size from their
shapes, so one compile serves every architecture and every width.  Each kernel is
compiled the first time a model needs it, for one explicit signature, and kept in the
compile cache: a machine compiles each kernel once.

What a new architecture compiles is only its glue (``cpu.py``): a short
``train_step`` that makes views into the arena and calls these kernels at their
addresses (``views.kernel``: a direct call, typed by the kernel's signature), so
their code is neither linked into the glue nor optimised again.  The loop over an
epoch's batches is a library kernel too (``train_epoch_<targets>``): it gathers each
shuffled batch (a batch in order is passed as views of the data) and calls the
architecture's ``train_step`` through its address.

The scalar math (activations, softmax rows, losses, the dropout hash) is pasted in
from ``graphnn/ops``, as the CUDA generator pastes it into device functions, so the two
backends compile the same arithmetic.
"""
from __future__ import annotations

import functools
import threading

import numpy as np

from ..ir import METRIC_SUMS, STATS_SIZE
from ..ops.activations import ACTIVATIONS, with_dependencies
from ..ops.dropout import DROPOUT_KEY_SOURCE, UNIFORM_SOURCE, UNIT
from ..ops.losses import LOSSES
from ..ops.softmax import SOFTMAX_SOURCE
from . import cache
from .codegen import INLINE_JIT, NUMERIC_CONSTANTS, Writer, preamble
from .tiles import TILED, tile_source


# -- the kernels --------------------------------------------------------------------------
# name -> (argument kinds, returns a float64, source).  Kinds: m a (rows, cols) matrix, v a
# vector, L int64 labels (or indices, or addresses), t the targets (labels or a matrix),
# u a buffer for a batch of targets (labels or a vector), s float64 sums, b bool, i int64,
# f float64, r a number of the dtype.  "{act}" kernels exist once per activation, "{loss}"
# kernels once per loss, "{t}" kernels once per combination of transposes (TRANSPOSES),
# "{targets}" kernels once per kind of targets (TARGETS).
_INSTRUCTIONS = {
    # (a @ b and a^T @ b come from tiles.tile_source instead: vector tiles for small batches)
    "matmul{t}": ("mmm", False, '''
def matmul{t}(a, b, out):
    """out = {product} (BLAS, transposes as flags, no copy)."""
    gemm({a}, {b}, out)'''),
    "matmul_add{t}": ("mmmv", False, '''
def matmul_add{t}(a, b, out, scratch):
    """out += {product}: the product goes to scratch first (BLAS writes, never adds)."""
    tmp = scratch[:out.size].reshape(out.shape)
    gemm({a}, {b}, tmp)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] += tmp[i, j]'''),
    "bias_act_{act}": ("mmv", False, '''
def bias_act_{act}(out, z, bias):
    """out = {act}(z + bias); out may be z itself."""
{wide}    n, k = out.shape
    if out.ctypes.data == z.ctypes.data:    # in place: one array, so the loop vectorises
        if k == 1:                          # one unit: down the column (32 rows: 9 ns, not 71)
            b = bias[0]
            for i in range(n):
                out[i, 0] = {act}(out[i, 0] + b)
            return
        for i in range(n):
            for j in range(k):
                out[i, j] = {act}(out[i, j] + bias[j])
    else:
        for i in range(n):
            for j in range(k):
                out[i, j] = {act}(z[i, j] + bias[j])'''),
    "act_{act}": ("mm", False, '''
def act_{act}(out, z):
    """out = {act}(z); out may be z itself."""
{wide}    n, k = out.shape
    if out.ctypes.data == z.ctypes.data:    # in place: one array, so the loop vectorises
        for i in range(n):
            for j in range(k):
                out[i, j] = {act}(out[i, j])
    else:
        for i in range(n):
            for j in range(k):
                out[i, j] = {act}(z[i, j])'''),
    "act_grad_{act}": ("mmmmvb", False, '''
def act_grad_{act}(gx, gy, x, y, colsum, acc):
    """gx (= or += if acc) gy * {act}'(x, y); colsum = its column sums unless empty.
    gx may be gy itself (then acc is False)."""
{wide}    n, k = gx.shape
    sums = colsum.size > 0
    if sums:
        colsum[:] = zero
    if gx.ctypes.data == gy.ctypes.data:    # in place: one array, so the loops vectorise
        for i in range(n):
            for j in range(k):
                g = gx[i, j] * {act}_grad(x[i, j], y[i, j])
                gx[i, j] = g
                if sums:
                    colsum[j] += g
        return
    for i in range(n):
        for j in range(k):
            g = gy[i, j] * {act}_grad(x[i, j], y[i, j])
            if acc:
                gx[i, j] += g
            else:
                gx[i, j] = g
            if sums:
                colsum[j] += g'''),
    "colsum": ("vm", False, '''
def colsum(out, g):
    """out[j] = sum of column j of g (a bias gradient), rows added in order.  A g narrower
    than a vector of 16 (an output layer) sums each column in a register: a sum kept in
    out waits for its store and load on every row (32x1: 18 ns against 104)."""
    n, k = g.shape
    if k < 16:
        for j in range(k):
            total = zero
            for i in range(n):
                total += g[i, j]
            out[j] = total
        return
    out[:] = zero
    for i in range(n):
        for j in range(k):
            out[j] += g[i, j]'''),
    "add": ("mmm", False, '''
def add(out, a, b):
    """out = a + b elementwise (out may be a)."""
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = a[i, j] + b[i, j]'''),
    "copy_cols": ("mmib", False, '''
def copy_cols(out, src, col, acc):
    """out (= or += if acc) the columns col .. col + out's width of src."""
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            if acc:
                out[i, j] += src[i, col + j]
            else:
                out[i, j] = src[i, col + j]'''),
    "place_cols": ("mmi", False, '''
def place_cols(out, src, col):
    """Columns col .. col + src's width of out = src (one block of a concatenation)."""
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            out[i, col + j] = src[i, j]'''),
    "softmax": ("mm", False, '''
def softmax(out, x):
    """out = softmax(x), row by row."""
    for i in range(x.shape[0]):
        softmax_row(x, out, i)'''),
    "softmax_grad": ("mmmb", False, '''
def softmax_grad(gx, gy, y, acc):
    """gx (= or += if acc) y * (gy - sum(gy * y)), row by row."""
    for i in range(y.shape[0]):
        softmax_row_grad(gy, y, gx, i, acc)'''),
    "dropout": ("mmmffiii", False, '''
def dropout(out, x, mask, rate, scale, key, salt, row0):
    """Training (key >= 0): mask = scale where uniform(key + salt, row0 + i, j) >= rate,
    else 0, and out = x * mask.  Otherwise (key < 0) out = x."""
    n, k = out.shape
    if key >= 0:
        rate_, scale_ = real(rate), real(scale)
        for i in range(n):
            for j in range(k):
                mask[i, j] = scale_ if uniform(key + salt, row0 + i, j) >= rate_ else zero
                out[i, j] = x[i, j] * mask[i, j]
    else:
        for i in range(n):
            for j in range(k):
                out[i, j] = x[i, j]'''),
    "mul": ("mmmb", False, '''
def mul(gx, gy, m, acc):
    """gx (= or += if acc) gy * m elementwise."""
    for i in range(gx.shape[0]):
        for j in range(gx.shape[1]):
            if acc:
                gx[i, j] += gy[i, j] * m[i, j]
            else:
                gx[i, j] = gy[i, j] * m[i, j]'''),
    "loss_{loss}": ("mtvm", True, '''
def loss_{loss}(z, y, w, g):
    """Mean {loss} over the rows of z ({formula}); g = its gradient.

    w: a weight per row, or empty for equal weights; weighted, the mean is
    sum(w * row loss) / sum(w).  (One call of the row function, whose code is inlined:
    each call site is compiled again.)"""
    n = z.shape[0]
    weighted = w.size != 0
    wsum = 0.0
    if weighted:
        for i in range(n):
            wsum += w[i]
    total = 0.0
    for i in range(n):
        row = {loss}_row(z, y, g, i, n)
        if not weighted:
            total += row
            continue
        c = real(w[i] * n / wsum) if wsum > 0 else zero
        total += c * row
        for j in range(g.shape[1]):
            g[i, j] *= c
    return total'''),
    "stats_{loss}": ("mts", False, None),       # written by _stats_source
    "gather_rows": ("mLim", False, '''
def gather_rows(X, order, start, x):
    """Row r of x = row order[start + r] of X: one batch of a shuffled epoch."""
    if start < 0 or start > order.size - x.shape[0] or x.shape[1] != X.shape[1]:
        raise IndexError("graphnn: the batch does not fit the epoch's order or the data")
    for r in range(x.shape[0]):
        src = order[start + r]
        if src < 0 or src >= X.shape[0]:
            raise IndexError("graphnn: a row number of the epoch's order is outside the data")
        for c in range(x.shape[1]):
            x[r, c] = X[src, c]'''),
    "gather_labels": ("LLiL", False, '''
def gather_labels(Y, order, start, y):
    """y[r] = Y[order[start + r]]: one batch's class labels."""
    if start < 0 or start > order.size - y.size:
        raise IndexError("graphnn: the batch does not fit the epoch's order or the data")
    for r in range(y.size):
        src = order[start + r]
        if src < 0 or src >= Y.size:
            raise IndexError("graphnn: a row number of the epoch's order is outside the data")
        y[r] = Y[src]'''),
    "gather_weights": ("vLiv", False, '''
def gather_weights(W, order, start, w):
    """w[r] = W[order[start + r]]: one batch's row weights."""
    if start < 0 or start > order.size - w.size:
        raise IndexError("graphnn: the batch does not fit the epoch's order or the data")
    for r in range(w.size):
        src = order[start + r]
        if src < 0 or src >= W.size:
            raise IndexError("graphnn: a row number of the epoch's order is outside the data")
        w[r] = W[src]'''),
    # the epoch loop, one per kind of targets: calls the architecture's train_step
    "train_epoch_{targets}": ("LivvvvmtvLiiiriivuvssLs", True, None),   # _epoch_source
}

# Kernels compiled with some of LLVM's fast-math freedoms (the result can differ in its last
# bits from the strict form, always the same way on one machine).  "contract": multiply-adds
# fused into FMAs; the activations' polynomials (float32 tanh, sigmoid, softplus, gelu) run a
# quarter faster.  "reassoc": matmul's one-unit dot products (tiles.ONE_UNIT) sum in vector
# lanes first, then across them.
_FASTMATH = {"bias_act_{act}": {"contract"}, "act_{act}": {"contract"},
             "act_grad_{act}": {"contract"}, "matmul": {"contract", "reassoc"}}

# The targets of a loss: class labels (int64 vector) or values (a matrix like the output).
TARGETS = ("labels", "values")


def step_signature(targets: str, dtype):
    """The signature of the glue's ``train_step`` (``cpu.py``), which ``train_epoch_<targets>``
    calls for every batch at its address: (kernels, params, grads, state, arena, x, y, w,
    lr, step, layout, hyper, key, stats) -> the batch's mean loss."""
    from numba import from_dtype, types
    real = from_dtype(np.dtype(dtype))
    vec, mat = types.Array(real, 1, "C"), types.Array(real, 2, "C")
    ints, sums = types.Array(types.int64, 1, "C"), types.Array(types.float64, 1, "C")
    y = ints if targets == "labels" else mat
    return types.float64(ints, vec, vec, vec, vec, mat, y, vec, real, types.int64, ints, sums,
                         types.int64, sums)


# The optimizer's update (``update.py``): not a kernel of this library, but the glue calls
# it at its address like one, so its signature is defined here with the others.
UPDATE = "apply_update"


def update_signature(dtype):
    """The signature of ``apply_update`` (params, grads, state, lr, step, hyper) -> none."""
    from numba import from_dtype, types
    real = from_dtype(np.dtype(dtype))
    vec = types.Array(real, 1, "C")
    return types.void(vec, vec, vec, real, types.int64, types.Array(types.float64, 1, "C"))


def _epoch_source(targets: str) -> str:
    """The epoch loop: each batch gathered (or, in order, viewed), then one call of the
    glue's train_step."""
    if targets == "labels":
        gather_y = "y = vector(ybuf, 0, n)\n            gather_labels(Y, order, start, y)"
        batch_y = "vector(Y, start, n)"
    else:
        gather_y = "y = view(ybuf, 0, n, Y.shape[1])\n            gather_rows(Y, order, start, y)"
        batch_y = "rows_view(Y, start, n)"
    return f'''
def train_epoch_{targets}(kernels, step_fn, params, grads, state, arena, X, Y, W, order, first,
                       last, batch_size, lr, step, seed, xbuf, ybuf, wbuf, losses, stats,
                       layout, hyper):
    """Batches first..last-1 of an epoch: gather each batch's rows (in the shuffled order)
    into xbuf, ybuf and wbuf, or view them in X, Y and W where they come in their own
    order (without shuffling: no copy), and call the architecture's train_step on them:
    it lives at address step_fn (its glue, compiled once per architecture), and takes
    `kernels`, `layout` and `hyper` along.  `step` counts the steps before this call,
    `seed` seeds the dropout masks (dropout_key), W holds row weights (or is empty).  Each
    batch's mean loss goes to losses[b]; train_step adds the metric sums into stats.
    Returns the sum of loss * rows."""
    train_step = step_function(step_fn, real, "{targets}")
    rows, d = X.shape
    if (first < 0 or last > losses.size or batch_size <= 0 or order.size < rows
            or Y.shape[0] < rows or (W.size > 0 and W.size < rows)
            or (first < last and last - 1 > (rows - 1) // batch_size)):   # no product: no wrap
        raise IndexError("graphnn: the epoch's batches do not fit its arrays")
    total = 0.0
    for b in range(first, last):
        key = dropout_key(seed, b)
        start = b * batch_size
        n = min(batch_size, rows - start)
        in_order = 0
        for r in range(start, start + n):
            in_order += order[r] == r
        w = W
        if in_order == n:       # the rows come in their own order: views, no copy
            x = rows_view(X, start, n)
            y = {batch_y}
            if W.size > 0:
                w = vector(W, start, n)
        else:
            x = view(xbuf, 0, n, d)
            gather_rows(X, order, start, x)
            {gather_y}
            if W.size > 0:
                w = vector(wbuf, 0, n)
                gather_weights(W, order, start, w)
        t = step + b - first + 1
        value = train_step(kernels, params, grads, state, arena, x, y, w, lr, t, layout,
                           hyper, key, stats)
        losses[b] = value
        total += n * value
    return total'''


def _stats_source(loss) -> str:
    """Metric sums of one batch for a loss: [correct, squared error, absolute error]."""
    lines = [f"def stats_{loss.name}(z, y, stats):",
             '    """Metric sums of one batch: [correct, squared error, absolute error], added',
             '    into stats; an empty stats (no metric asked for) adds nothing."""',
             f"    if stats.size < {STATS_SIZE}:",
             "        return"]
    hit, sq, ab = (METRIC_SUMS[m] for m in ("accuracy", "mse", "mae"))    # graphnn/ir.py
    # sums in locals, stored once: the same additions, without a store and a load per term
    if loss.correct:
        lines += [f"    correct = stats[{hit}]",
                  "    for i in range(z.shape[0]):",
                  f"        correct += {loss.name}_row_correct(z, y, i)",
                  f"    stats[{hit}] = correct"]
    if loss.targets == "values":
        pred = "sigmoid(z[i, j])" if loss.name == "binary_cross_entropy" else "z[i, j]"
        lines += [f"    squared, absolute = stats[{sq}], stats[{ab}]",
                  "    for i in range(z.shape[0]):",
                  "        for j in range(z.shape[1]):",
                  f"            d = {pred} - y[i, j]",
                  "            squared += d * d",
                  "            absolute += abs(d)",
                  f"    stats[{sq}], stats[{ab}] = squared, absolute"]
    return "\n".join(lines)


# A product's transposes: kernel-name suffix -> (first operand, second operand, formula).
TRANSPOSES = {"": ("a", "b", "a @ b"), "_at": ("a.T", "b", "a^T @ b"),
              "_bt": ("a", "b.T", "a @ b^T"), "_atbt": ("a.T", "b.T", "a^T @ b^T")}


def _variants(key: str) -> list[dict]:
    """The fields of every kernel a template key stands for."""
    if "{act}" in key:
        return [{"act": a} for a in ACTIVATIONS]
    if "{loss}" in key:
        return [{"loss": l} for l in LOSSES]
    if "{t}" in key:
        return [{"t": t} for t in TRANSPOSES]
    if "{targets}" in key:
        return [{"targets": t} for t in TARGETS]
    return [{}]


def kernel_names() -> list[str]:
    """Every kernel of the library, in the order of its source."""
    return [key.format(**f) for key in _INSTRUCTIONS for f in _variants(key)]


def _template(name: str) -> tuple[str, str, dict]:
    """(template key, kinds, fields) of a kernel name."""
    for key, (kinds, _, _) in _INSTRUCTIONS.items():
        for fields in _variants(key):
            if key.format(**fields) == name:
                return key, kinds, fields
    raise KeyError(f"no library kernel {name!r}")


def signature(name: str, dtype):
    """The one Numba signature kernel ``name`` is compiled for, in ``dtype`` (the
    optimizer's ``apply_update`` included)."""
    from numba import from_dtype, types
    if name == UPDATE:
        return update_signature(dtype)
    mat = types.Array(from_dtype(np.dtype(dtype)), 2, "C")
    vec = types.Array(from_dtype(np.dtype(dtype)), 1, "C")
    key, kinds, fields = _template(name)
    labels = types.Array(types.int64, 1, "C")
    by_labels = fields.get("targets") == "labels" or (
        "loss" in fields and LOSSES[fields["loss"]].targets == "labels")
    kind = {"m": mat, "v": vec, "L": labels, "t": labels if by_labels else mat,
            "u": labels if by_labels else vec, "s": types.Array(types.float64, 1, "C"),
            "b": types.boolean, "i": types.int64, "f": types.float64,
            "r": from_dtype(np.dtype(dtype))}
    ret = types.float64 if _INSTRUCTIONS[key][1] else types.void
    return ret(*[kind[k] for k in kinds])


def source(dtype, cached: bool = False) -> str:
    """The library module for ``dtype``: constants, scalar math, then every kernel."""
    dtype = np.dtype(dtype)
    w = Writer()
    w(f'"""graphnn kernel library, {dtype.name}: shape-free kernels, one per instruction.')
    w()
    w("Every architecture's generated code calls these (see CompiledModel.source());")
    w("each is compiled for one signature the first time a model needs it, then cached.")
    w("The epoch loops call an architecture's train_step by its address: the calling")
    w(f"convention is library.step_signature's and views.py's, fingerprint {fingerprint()},")
    w("so a cached loop never meets a train_step compiled for another one.")
    w('"""')
    acts = with_dependencies(sorted(ACTIVATIONS))
    consts = dict(NUMERIC_CONSTANTS)
    for a in acts:
        consts.update(a.forward_for(dtype.name)[1])
    preamble(w, dtype, "rows_view, step_function, vector, view",
             ("from graphnn.compile.blas import gemm",
              "from graphnn.compile.tiles import tile, tile_bt, tile_limit",
              "from graphnn.compile.vectors import wide_vectors"), consts)
    w(f"UNIT = real({UNIT!r})       # uniform(): 24 random bits -> [0, 1)")
    w()
    w()
    w("# " + "-" * 20 + " scalar math (graphnn/ops), inlined into the kernels " + "-" * 20)
    w()
    helpers = []
    for a in acts:
        helpers += [h for h in a.helpers_for(dtype.name) if h not in helpers]
    scalars = helpers + [s for a in acts for s in (a.forward_for(dtype.name)[0],
                                                    a.grad_for(dtype.name))]
    scalars += list(SOFTMAX_SOURCE) + [UNIFORM_SOURCE, DROPOUT_KEY_SOURCE]
    for loss in LOSSES.values():
        scalars += [loss.source] + ([loss.correct] if loss.correct else [])
    for s in scalars:
        _function(w, INLINE_JIT, s)
    w("# " + "-" * 30 + " kernels " + "-" * 30)
    w()
    # no C wrapper: the glue calls a kernel at its own address (Numba's calling convention)
    jit = f'@njit(cache={cached}, error_model="numpy", no_cfunc_wrapper=True'
    for name in kernel_names():
        key, _, fields = _template(name)
        text = _INSTRUCTIONS[key][2]
        if "loss" in fields:
            loss = LOSSES[fields["loss"]]
            text = _stats_source(loss) if key == "stats_{loss}" else \
                text.format(loss=loss.name, formula=loss.formula)
        elif "targets" in fields:
            text = _epoch_source(fields["targets"])
        elif key == "matmul{t}" and fields["t"] in TILED:
            text = tile_source(fields["t"])
        elif "t" in fields:
            a, b, product = TRANSPOSES[fields["t"]]
            text = text.format(t=fields["t"], a=a, b=b, product=product)
        elif "act" in fields:
            text = text.format(**fields, wide=_wide(fields["act"], dtype))
        elif fields:
            text = text.format(**fields)
        _function(w, jit + _options(name, key) + ")", text.strip("\n"))
    return w.text().rstrip("\n") + "\n"


def _wide(act: str, dtype) -> str:
    """The line that makes an activation's kernel use 512-bit vectors (vectors.py): for
    the float32 activations with an arithmetic form, whose loops the vector units bound."""
    if dtype == np.float32 and ACTIVATIONS[act].forward32:
        return "    wide_vectors()                  # 512-bit vectors where the CPU has them\n"
    return ""


def _options(name: str, key: str) -> str:
    """A kernel's further @njit options.  Every kernel compiles without Numba's reference
    counting (``_nrt=False``): kernels allocate nothing (BLAS is called through
    ``blas.gemm``, not ``np.dot``, which may allocate), and the count's calls on every
    array they pass to an inlined helper (a loss's row function, once per row) cost the
    tiny MLP 8 % of its step.  A kernel that allocated would fail to compile, not leak."""
    options = ", _nrt=False"
    fast = _FASTMATH.get(name) or _FASTMATH.get(key)
    if fast:
        options += ", fastmath={" + ", ".join(f'"{f}"' for f in sorted(fast)) + "}"
    return options


def _function(w: Writer, decorator: str, text: str):
    w(decorator)
    for line in text.splitlines():
        w(line)
    w()
    w()


class Module:
    """A generated module of kernels, each compiled for its one signature (``signature_of``)
    the first time it is needed: from the compile cache when it can be used, else in
    memory.  ``generate(cached)`` writes the module's source (Numba's ``cache=`` depends on
    whether the cache folder can be used).  The kernel library (``Library``) and the
    optimizer's update (``update.Update``) are such modules."""

    def __init__(self, generate):
        self.source, self.namespace = cache.build(generate)
        self.folder = cache.folder_of(self.namespace)   # the cache folder; None: in memory
        self._ready: dict = {}               # name -> its dispatcher, compiled

    def signature_of(self, name: str):
        """The one Numba signature kernel ``name`` is compiled for."""
        raise NotImplementedError

    def kernel(self, name: str):
        """The dispatcher of kernel ``name``, compiled for its one signature.  Further
        compiles are disabled: a call with other argument types is an error, not a
        silent second compile.  Once compiled it is returned at once (no lock: Python
        calls some kernels once per batch or step)."""
        k = self._ready.get(name)
        if k is None:
            k = self.namespace[name]
            compile_once(k, self.signature_of(name).args)
            self._ready[name] = k
        return k

    def address(self, name: str) -> int:
        """Where kernel ``name``'s compiled code starts (Numba's calling convention): the
        glue calls it from there (``views.kernel``).  The dispatcher stays in this
        module's namespace for the life of the process, and with it the code."""
        return code_address(self.kernel(name), self.signature_of(name))

    def is_compiled(self, name: str) -> bool:
        """Whether ``kernel(name)`` has nothing to compile (loaded, or in the disk cache)."""
        k = self.namespace[name]
        return bool(k.overloads) or (self.folder is not None and cache.in_index(
            k, self.signature_of(name).args))


class Library(Module):
    """One dtype's kernels: the module, and ``kernel(name)``, which compiles (or loads) a
    kernel for its signature on first use."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        super().__init__(lambda cached: source(self.dtype, cached))

    def signature_of(self, name: str):
        return signature(name, self.dtype)


@functools.lru_cache(maxsize=None)
def fingerprint() -> str:
    """A hash of the code that defines the kernels' signatures and how the glue calls them
    (this module and views.py) and the code of the intrinsics the kernels use (tiles.py,
    vectors.py, blas.py): cached glue and library kernels are keyed by it."""
    import hashlib
    from pathlib import Path
    h = hashlib.sha256()
    for name in ("library.py", "views.py", "tiles.py", "vectors.py", "blas.py"):
        path = Path(__file__).with_name(name)
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


_compile_lock = threading.RLock()    # Numba compiles one function at a time anyway


def code_address(dispatcher, sig) -> int:
    """Where ``dispatcher``'s compiled code for ``sig`` starts (Numba's calling convention),
    after checking that it returns ``sig``'s return type: a ``views.Code`` call trusts the
    declared signature, and a result of another type would be written into a slot of the
    wrong size.  (Numba compiles for the argument types and infers the return type.)"""
    from numba.experimental.function_type import _get_jit_address
    got = dispatcher.overloads[tuple(sig.args)].signature.return_type
    if got != sig.return_type:
        raise TypeError(f"graphnn: {dispatcher.py_func.__name__} returns {got}, "
                        f"not {sig.return_type} as its signature says")
    return _get_jit_address(dispatcher, sig)


def compile_once(dispatcher, args: tuple):
    """Compile ``dispatcher`` for ``args`` (or load it from the cache) unless it has been,
    then refuse any other types: a call with others would compile again, for seconds, in
    the middle of training.  (``Dispatcher.compile`` itself refuses once compiling is off,
    even for a signature it has, hence the check.)  Used for the library's kernels and the
    glue alike."""
    args = tuple(args)
    with _compile_lock:
        if args not in dispatcher.overloads:
            dispatcher.compile(args)
        dispatcher.disable_compile()


_libraries: dict[str, Library] = {}
_libraries_lock = threading.Lock()


def library(dtype) -> Library:
    """The library for ``dtype``, built once per process."""
    name = np.dtype(dtype).name
    with _libraries_lock:
        if name not in _libraries:
            _libraries[name] = Library(name)
        return _libraries[name]
