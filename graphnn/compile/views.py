"""Views into a flat buffer for the generated CPU glue, cheap to compile.

The glue (``cpu.py``) makes a 2-D view of the arena or the parameter buffer for every
operand of every kernel call.  Written as ``flat[a:a + n * k].reshape((n, k))``, each view
costs Numba about 0.13 s to lower (slicing and reshaping are general, and every check
in them is built anew), so a new architecture spent seconds making views.  The
intrinsics here build the array directly: a pointer, a shape and strides, and one bounds
check (the view must lie inside ``flat``: an ``IndexError`` otherwise, never a read past
its end, and no product of sizes that could wrap).  ``view``/``vector`` take the place
and shape as numbers; ``matrix``, ``vec`` and ``block`` read them from the glue's
``layout`` array (checked reads), and ``at`` reads one number of ``layout`` or ``hyper``.
``rows_view`` views rows of a 2-D array: the epoch loop's batch whose rows come in order.
The view shares ``flat``'s memory and *borrows* it: it holds no reference (no
meminfo), so making and dropping views costs no atomic reference counting, which
cost the tiny MLP about 4 µs of its step.  The contract: a view must not outlive the
compiled call that made it, i.e. never be returned to Python or stored.  The generated
glue and the library's epoch loop only pass views to kernels; ``flat`` is an argument,
alive for the whole call.
"""
from __future__ import annotations

import hashlib

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, lower_builtin, models, register_model
from numba.np.arrayobj import make_array, populate_array

OUTSIDE = "graphnn: a layout or hyper index is outside"     # a checked read's error
LEAVE = "graphnn: a view would leave its buffer"             # a view's error


def _raise_if(context, builder, bad, message: str):
    """Raise ``IndexError(message)`` where the i1 ``bad`` is true.  Every check with the
    same message in one compiled function branches to one block that raises it.  Each
    raise site costs a new architecture's compile: its ``train_step`` had about 70 (with
    none at all it compiled in 0.7 of the time); a shared block per message costs once."""
    if getattr(builder, "_in_try_block", False):    # Numba jumps to the handler instead
        with cgutils.if_unlikely(builder, bad):
            context.call_conv.return_user_exc(builder, IndexError, (message,))
        return
    function = builder.function
    name = "graphnn.raise." + hashlib.sha256(message.encode()).hexdigest()[:16]
    block = next((b for b in function.blocks if b.name == name), None)
    if block is None:
        block = function.append_basic_block(name)
        with builder.goto_block(block):
            context.call_conv.return_user_exc(builder, IndexError, (message,))
    go_on = builder.append_basic_block("graphnn.checked")
    branch = builder.cbranch(bad, block, go_on)
    branch.set_weights([1, 99])                  # unlikely, as cgutils.if_unlikely says
    builder.position_at_end(go_on)


def _view(context, builder, flat_type, flat, start, shape, out_type):
    src = make_array(flat_type)(context, builder, flat)
    zero, one = context.get_constant(types.intp, 0), context.get_constant(types.intp, 1)
    nitems = src.nitems
    # start in [0, nitems], no negative size, and the rest fits: rows <= room // cols, with
    # no product that could wrap (a huge layout entry must not pass as a small view)
    bad = builder.or_(builder.icmp_signed("<", start, zero),
                      builder.icmp_signed(">", start, nitems))
    for dim in shape:
        bad = builder.or_(bad, builder.icmp_signed("<", dim, zero))
    room = builder.select(bad, zero, builder.sub(nitems, start))
    if len(shape) == 1:
        bad = builder.or_(bad, builder.icmp_signed(">", shape[0], room))
    else:
        rows, cols = shape
        wide = builder.icmp_signed(">", cols, zero)
        fits = builder.sdiv(room, builder.select(wide, cols, one))
        bad = builder.or_(bad, builder.and_(wide, builder.icmp_signed(">", rows, fits)))
    _raise_if(context, builder, bad, LEAVE)
    out = make_array(out_type)(context, builder)
    itemsize = src.itemsize
    strides = [itemsize] if len(shape) == 1 else [builder.mul(shape[1], itemsize), itemsize]
    populate_array(out, data=builder.gep(src.data, [start]),
                   shape=cgutils.pack_array(builder, list(shape)),
                   strides=cgutils.pack_array(builder, strides),
                   itemsize=itemsize, meminfo=None)
    return out._getvalue()


def _flat(t) -> bool:
    """Whether a type is a buffer views can be made of: a writable 1-D C array."""
    return isinstance(t, types.Array) and t.ndim == 1 and t.layout == "C" and t.mutable


@intrinsic
def view(typingctx, flat, start, rows, cols):
    """``flat[start:start + rows * cols]`` as a C-contiguous (rows, cols) array."""
    if not _flat(flat):
        return None
    out_type = types.Array(flat.dtype, 2, "C")

    def codegen(context, builder, sig, args):
        return _view(context, builder, sig.args[0], args[0], args[1], args[2:], out_type)
    return out_type(flat, types.intp, types.intp, types.intp), codegen


@intrinsic
def vector(typingctx, flat, start, size):
    """``flat[start:start + size]`` as a C-contiguous vector."""
    if not _flat(flat):
        return None
    out_type = types.Array(flat.dtype, 1, "C")

    def codegen(context, builder, sig, args):
        return _view(context, builder, sig.args[0], args[0], args[1], args[2:], out_type)
    return out_type(flat, types.intp, types.intp), codegen


@intrinsic
def rows_view(typingctx, matrix, start, rows):
    """Rows ``start .. start + rows - 1`` of a 2-D C array, as a C-contiguous view (the
    library's epoch loop passes a batch whose rows come in order this way, uncopied)."""
    if not (isinstance(matrix, types.Array) and matrix.ndim == 2 and matrix.layout == "C"
            and matrix.mutable and isinstance(start, types.Integer)
            and isinstance(rows, types.Integer)):
        return None
    out_type = types.Array(matrix.dtype, 2, "C")

    def codegen(context, builder, sig, args):
        src = make_array(sig.args[0])(context, builder, args[0])
        height, cols = cgutils.unpack_tuple(builder, src.shape, 2)
        first = context.cast(builder, args[1], sig.args[1], types.intp)
        n = context.cast(builder, args[2], sig.args[2], types.intp)
        # a first row past the end would make first * cols wrap: refuse it before _view
        _raise_if(context, builder, builder.or_(
            builder.icmp_signed("<", first, context.get_constant(types.intp, 0)),
            builder.icmp_signed(">", first, height)), LEAVE)
        return _view(context, builder, sig.args[0], args[0], builder.mul(first, cols),
                     (n, cols), out_type)
    return out_type(matrix, types.intp, types.intp), codegen


# The same, in Python: the glue's plain-Python paths (predict, evaluate) run with these.
def python_view(flat, start, rows, cols):
    start, rows, cols = int(start), int(rows), int(cols)    # no wrapping int64 products
    _check(flat, start, rows * cols, rows, cols)
    return flat[start:start + rows * cols].reshape((rows, cols))


def python_vector(flat, start, size):
    start, size = int(start), int(size)
    _check(flat, start, size, size)
    return flat[start:start + size]


def _check(flat, start, size, *dims):
    if start < 0 or min(dims) < 0 or start + size > flat.size:
        raise IndexError(LEAVE)


class Code(types.Callable):
    """Compiled code at a run-time address, typed by its one signature: a library kernel
    (``kernel``) or the glue's ``train_step`` (``step_function``).

    A call goes straight to the address with Numba's calling convention, so the callee's
    exceptions propagate.  Numba's own first-class function values (``FunctionType``)
    would do the same, but every call site also carries a fallback that fetches the
    address through the Python C API when it is null: a quarter of the IR a new
    architecture's ``train_step`` compiled.  These addresses are never null (checked
    where the value is made)."""

    def __init__(self, sig):
        self.sig = sig
        super().__init__(name=f"Code({sig})")

    def get_call_type(self, context, args, kws):
        if kws or tuple(map(types.unliteral, args)) != tuple(self.sig.args):
            return None
        return self.sig.replace(recvr=self)     # the call's lowering gets this value first

    def get_call_signatures(self):
        return [self.sig], False

    def get_impl_key(self, sig):
        return Code


register_model(Code)(models.OpaqueModel)


@lower_builtin(Code, Code, types.VarArg(types.Any))
def _call_code(context, builder, sig, args):
    code_type, address, args = sig.args[0], args[0], args[1:]
    callee = code_type.sig
    pointer = builder.bitcast(address, context.call_conv.get_function_type(
        callee.return_type, callee.args).as_pointer())
    status, result = context.call_conv.call_function(builder, pointer, callee.return_type,
                                                     callee.args, args)
    with cgutils.if_unlikely(builder, status.is_error):
        context.call_conv.return_status_propagate(builder, status)
    return result


def _code(context, builder, address, message):
    """The ``Code`` value of ``address`` (int64), or an ``IndexError`` if it is null."""
    _raise_if(context, builder, cgutils.is_null(builder, address), message)
    return builder.inttoptr(address, context.get_value_type(types.voidptr))


@intrinsic
def kernel(typingctx, addresses, index, name, real):
    """Library kernel ``name`` (a string literal) in dtype ``real``, as a ``Code`` value,
    from its address: ``addresses[index]`` holds the address of its compiled code.  An
    array of addresses is what the glue takes, instead of a tuple of dispatchers that
    Numba would have to type and convert on every call (about 0.1 ms per kernel)."""
    from . import library
    if not (isinstance(name, types.StringLiteral) and isinstance(real, types.NumberClass)
            and _flat(addresses) and addresses.dtype == types.int64):
        return None
    out_type = Code(library.signature(name.literal_value, str(real.instance_type)))

    def codegen(context, builder, sig, args):
        message = "graphnn: no such kernel address"
        (address,) = _items(context, builder, sig.args[0], args[0], args[1], 1, message)
        return _code(context, builder, address, message)
    return out_type(addresses, types.intp, name, real), codegen


@intrinsic
def step_function(typingctx, address, real, targets):
    """The glue's ``train_step`` at ``address`` (int64, never 0: an ``IndexError``
    otherwise), as a ``Code`` value typed by ``library.step_signature``: the library's
    epoch loop calls it for every batch."""
    from . import library
    if not (isinstance(targets, types.StringLiteral) and isinstance(real, types.NumberClass)
            and isinstance(address, types.Integer)
            and targets.literal_value in library.TARGETS):
        return None
    out_type = Code(library.step_signature(targets.literal_value, str(real.instance_type)))

    def codegen(context, builder, sig, args):
        address_v = context.cast(builder, args[0], sig.args[0], types.int64)
        return _code(context, builder, address_v, "graphnn: no train_step address")
    return out_type(address, real, targets), codegen


@intrinsic
def at(typingctx, array, index):
    """``array[index]`` of a 1-D C array (the glue's ``layout`` and ``hyper``), with one
    bounds check (an ``IndexError``): Numba's general indexing costs a new architecture
    about 5 ms to lower per read, and the glue reads dozens of these numbers."""
    if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C"
            and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        return _items(context, builder, sig.args[0], args[0], i, 1)[0]
    return array.dtype(array, index), codegen


def python_at(array, index):
    return _python_items(array, index, 1)[0]


def _items(context, builder, array_type, array, k, count, message=OUTSIDE):
    """array[k], ..., array[k + count - 1] of a 1-D C array, after one bounds check (an
    ``IndexError`` with ``message``): every checked read here goes through this."""
    ary = make_array(array_type)(context, builder, array)
    zero = context.get_constant(types.intp, 0)
    last = builder.sub(ary.nitems, context.get_constant(types.intp, count))   # no k + count
    outside = builder.or_(builder.icmp_signed("<", k, zero),
                          builder.icmp_signed(">", k, last))
    _raise_if(context, builder, outside, message)
    return [builder.load(builder.gep(ary.data, [builder.add(k, context.get_constant(types.intp, j))]))
            for j in range(count)]


def _layout(t) -> bool:
    return isinstance(t, types.Array) and t.ndim == 1 and t.layout == "C" and \
        t.dtype == types.int64


@intrinsic
def matrix(typingctx, flat, layout, k):
    """The (layout[k + 1], layout[k + 2]) matrix at offset layout[k] of ``flat``: a
    parameter or its gradient (one intrinsic instead of a view and three reads)."""
    if not (_flat(flat) and _layout(layout) and isinstance(k, types.Integer)):
        return None
    out_type = types.Array(flat.dtype, 2, "C")

    def codegen(context, builder, sig, args):
        k_v = context.cast(builder, args[2], sig.args[2], types.intp)
        start, rows, cols = _items(context, builder, sig.args[1], args[1], k_v, 3)
        return _view(context, builder, sig.args[0], args[0], start, (rows, cols), out_type)
    return out_type(flat, layout, k), codegen


@intrinsic
def vec(typingctx, flat, layout, k):
    """The layout[k + 1] numbers at offset layout[k] of ``flat`` (a bias or its gradient)."""
    if not (_flat(flat) and _layout(layout) and isinstance(k, types.Integer)):
        return None
    out_type = types.Array(flat.dtype, 1, "C")

    def codegen(context, builder, sig, args):
        k_v = context.cast(builder, args[2], sig.args[2], types.intp)
        start, size = _items(context, builder, sig.args[1], args[1], k_v, 2)
        return _view(context, builder, sig.args[0], args[0], start, (size,), out_type)
    return out_type(flat, layout, k), codegen


@intrinsic
def block(typingctx, arena, layout, k, rows):
    """The first ``rows`` rows of the arena block whose first column is layout[k] and width
    layout[k + 1]; the arena has room for cap = arena.size // layout[0] rows, and the block
    at column c holds them from element c * cap on."""
    if not (_flat(arena) and _layout(layout) and isinstance(k, types.Integer)
            and isinstance(rows, types.Integer)):
        return None
    out_type = types.Array(arena.dtype, 2, "C")

    def codegen(context, builder, sig, args):
        zero, one = context.get_constant(types.intp, 0), context.get_constant(types.intp, 1)
        (columns,) = _items(context, builder, sig.args[1], args[1], zero, 1)
        _raise_if(context, builder, builder.icmp_signed("<=", columns, zero), LEAVE)
        k_v = context.cast(builder, args[2], sig.args[2], types.intp)
        col, width = _items(context, builder, sig.args[1], args[1], k_v, 2)
        src = make_array(sig.args[0])(context, builder, args[0])
        cap = builder.sdiv(src.nitems, columns)
        n = context.cast(builder, args[3], sig.args[3], types.intp)
        # a column whose start col * cap would lie past the arena (or wrap), or more rows
        # than the block has room for (they would spill into the next block)
        past = builder.icmp_signed(">", col, builder.sdiv(src.nitems,
                                                          builder.select(builder.icmp_signed(
                                                              ">", cap, zero), cap, one)))
        bad = builder.or_(builder.or_(builder.icmp_signed("<", col, zero), past),
                          builder.icmp_signed(">", n, cap))
        _raise_if(context, builder, bad, LEAVE)
        return _view(context, builder, sig.args[0], args[0], builder.mul(col, cap), (n, width),
                     out_type)
    return out_type(arena, layout, k, rows), codegen


def _python_items(array, k, count):
    """``_items`` in Python: array[k:k + count], or the same IndexError."""
    if not 0 <= k <= array.size - count:
        raise IndexError(OUTSIDE)
    return array[k:k + count]


def python_matrix(flat, layout, k):
    return python_view(flat, *_python_items(layout, k, 3))


def python_vec(flat, layout, k):
    return python_vector(flat, *_python_items(layout, k, 2))


def python_block(arena, layout, k, rows):
    columns = python_at(layout, 0)
    if columns <= 0:
        raise IndexError(LEAVE)
    col, width = _python_items(layout, k, 2)
    cap = arena.size // columns
    if col < 0 or col > arena.size // max(cap, 1) or rows > cap:
        raise IndexError(LEAVE)
    return python_view(arena, col * cap, rows, width)
