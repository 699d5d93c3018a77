"""Register-tile matrix products for small batches: the library's ``matmul``,
``matmul_at`` and ``matmul_bt`` kernels, and the intrinsics ``tile``, ``tile_bt`` and
``tile_limit`` they call.

For a batch of at most ``TILE_BATCH`` rows, BLAS spends much of a product packing its
operands and in call overhead.  ``tile`` computes blocks of ``out`` in vector registers:
at each step of k it loads one row of ``b``'s block as one or two vectors of
``TILE_COLS``, broadcasts one number of ``a`` per block row, and adds their product with
one fused multiply-add per vector; each block is stored once at the end.

It is written as LLVM IR (a Numba intrinsic) rather than as Python: the same tile as
scalar accumulators costs about 1.5 s of Numba typing and lowering per kernel, and needs
LLVM's SLP vectoriser, which Numba leaves off; the IR compiles in milliseconds and is
vector code by construction.  Shapes are run-time values, so one compile serves every
width.

The block's shape follows the target (``block_shape``): enough independent accumulators
to keep both FMA units busy through an FMA's latency, and no more than the registers
hold.  The depth runs in chunks of ``DEPTH`` (a block resumes from what ``out`` holds).
Within a chunk, where its rows of ``b`` fit the L1 cache (``a^T @ b``: b is the batch's
gradient) every panel of a row block comes in turn, so the row block's reads of ``a`` stay
in L1 too; else (``a @ b``: b is a weight matrix) every row block of a panel of columns,
so the panel of ``b`` stays there.  On one core, 32x784 @ 784x128 then takes 39-45 us
against OpenBLAS's 77-82 with its AVX-512 kernels, and (32x784)^T @ 32x128 40-43 against
58-65.

A product whose output width is not a multiple of ``TILE_COLS`` (an output layer of 10
classes), whose batch is larger than ``TILE_BATCH`` or which has more multiply-adds than
``tile_limit`` goes to BLAS (its packing pays for big products, and it can use threads);
``a @ b`` with one output column and a batch of at most ``TILE_BATCH`` is a plain loop
(``ONE_UNIT``).
The last block of a batch repeats its last row where the rows run out (the same numbers,
stored twice), so any batch size runs the same loop.  The sum over k runs in the order
0, 1, ..., K-1 for every output (chunks resume the same chain of FMAs), so a result
depends only on the shapes, never on timing or threads.  Which path a product takes
depends on the shapes too, and the paths sum in different orders: the tiles give
OpenBLAS's bits here for ``a @ b`` and ``a^T @ b``, ``ONE_UNIT`` does not, so a one-unit
output of a batch of 32 rows can differ in its last bit from the same rows predicted in
a chunk of 1024.

``a @ b^T`` (``dz @ W^T`` in the backward pass) has no operand contiguous along an output
axis.  ``tile_bt`` first copies each panel of ``b^T`` into a buffer on the stack, 16 x 16
squares transposed in registers (four rounds of shuffles), then runs the same blocks over
it: 32x32 @ (32x32)^T takes 0.53 us against 1.35 for OpenBLAS's small-matrix kernel.
"""
from __future__ import annotations

from typing import NamedTuple

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from .vectors import avx512

TILE_ROWS = 4          # rows of out per block where the target has no AVX-512 (8 with it)
TILE_COLS = 16         # numbers per vector; the tiles serve output widths that are multiples of it
TILE_BATCH = 32        # the largest batch (rows of x) the tiles serve
DEPTH = 256            # terms of the sum over k per pass over out (b's rows in L1: 32 KB)
L1_BYTES = 16 << 10    # the part of b that counts as small enough to stay in the L1 cache
# the most multiply-adds (n * K * m) of a product the tiles serve: with AVX-512 the 8-row
# blocks beat one-thread OpenBLAS up to 32x1024 @ 1024x1024 (32x784 @ 784x128: 42 us
# against 77); with 4-row blocks on AVX2, 2 BLAS threads won past about this
TILE_WORK = {True: 1 << 23, False: 1 << 19}


class Tiled(NamedTuple):
    """One library kernel with tiles: what tile_source writes for it."""
    product: str       # for the docstring
    batch: str         # the dimension that holds the batch (at most TILE_BATCH)
    call: str          # the tile intrinsic's call
    operands: str      # gemm's operands (BLAS, past the limits: blas.py)
    a_shape: str       # a's and b's shapes, in n, K and m
    b_shape: str


# transposes with tile kernels (the kernel matmul{t}) -> what their source holds
TILED = {"": Tiled("a @ b", "n", "tile(a, b, out, K, 1)", "a, b", "n, K", "K, m"),
         "_at": Tiled("a^T @ b", "K", "tile(a, b, out, 1, n)", "a.T, b", "K, n", "K, m"),
         "_bt": Tiled("a @ b^T", "n", "tile_bt(a, b, out)", "a, b.T", "n, K", "m, K")}
OUTSIDE = "graphnn: a product tile would leave its arrays"


def _kind(real) -> str:
    """LLVM's name of a vector of TILE_COLS numbers of this type: v16f32 or v16f64."""
    return f"v{TILE_COLS}{'f32' if isinstance(real, ir.FloatType) else 'f64'}"


def block_shape(has_avx512: bool, real) -> tuple[int, int]:
    """(rows, vectors per row) of a block.  With AVX-512 (32 vector registers): 8 rows of
    two float32 vectors (16 accumulators, each one register), or of one float64 vector of
    16 (two registers each).  Otherwise (16 registers): 4 rows of one vector, which for
    float32 already spans two 256-bit registers (8 accumulators)."""
    if has_avx512:
        return 2 * TILE_ROWS, (2 if isinstance(real, ir.FloatType) else 1)
    return TILE_ROWS, 1


def _outside(builder, A, B, O, a_row, a_k, bt, c):
    """An i1 that is true when the product would touch anything outside a, b or out: out's
    width not a multiple of TILE_COLS or not b's width (its height for a @ b^T, where a
    must be n x K too), a negative stride or K, or a read of a at or past its size.  The
    farthest read, (n-1)*a_row + (K-1)*a_k, is computed with overflow flags, so no value
    can wrap past the check."""
    n, m = cgutils.unpack_tuple(builder, O.shape, 2)
    K, bm = cgutils.unpack_tuple(builder, B.shape, 2)
    if bt:                        # a is n x K and b m x K: both shapes known, both checked
        K, bm = bm, K
        a_rows, a_cols = cgutils.unpack_tuple(builder, A.shape, 2)
        bad = builder.or_(builder.icmp_signed("!=", a_rows, n),
                          builder.icmp_signed("!=", a_cols, K))
    else:
        bad = ir.Constant(ir.IntType(1), 0)
    last = builder.sub(n, c(1))
    bad = builder.or_(bad, builder.icmp_signed("!=", builder.srem(m, c(TILE_COLS)), c(0)))
    bad = builder.or_(bad, builder.icmp_signed("!=", bm, m))
    for v in (a_row, a_k, K):
        bad = builder.or_(bad, builder.icmp_signed("<", v, c(0)))
    far = c(0)
    for x, y in ((last, a_row), (builder.sub(K, c(1)), a_k)):
        prod = builder.smul_with_overflow(x, y)
        total = builder.sadd_with_overflow(far, builder.extract_value(prod, 0))
        far = builder.extract_value(total, 0)
        bad = builder.or_(bad, builder.or_(builder.extract_value(prod, 1),
                                           builder.extract_value(total, 1)))
    reads = builder.icmp_signed(">", K, c(0))
    return builder.or_(bad, builder.and_(reads, builder.icmp_signed(">=", far, A.nitems)))


def _float_arrays(*arrays) -> bool:
    return all(isinstance(t, types.Array) and t.ndim == 2 and t.layout == "C"
               and isinstance(t.dtype, types.Float) for t in arrays) \
        and len({t.dtype for t in arrays}) == 1


@intrinsic
def tile_limit(typingctx, a):
    """The most multiply-adds of a product that goes to the tiles, for a's dtype on the
    target being compiled for (TILE_WORK)."""
    if not _float_arrays(a):
        return None

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, TILE_WORK[avx512(context)])

    return types.intp(a), codegen


def _transpose(builder, rows):
    """A 16 x 16 matrix given as 16 vectors (rows), transposed: four rounds of shuffles,
    each swapping the off-diagonal halves of blocks half as large as the round before."""
    rows = list(rows)
    i32 = ir.IntType(32)
    for d in (8, 4, 2, 1):
        lanes = range(TILE_COLS)
        low = ir.Constant(ir.VectorType(i32, TILE_COLS),
                          [x if not x & d else x - d + TILE_COLS for x in lanes])
        high = ir.Constant(ir.VectorType(i32, TILE_COLS),
                           [x + d if not x & d else x + TILE_COLS for x in lanes])
        for i in range(TILE_COLS):
            if not i & d:
                x, y = rows[i], rows[i + d]
                rows[i] = builder.shuffle_vector(x, y, low)
                rows[i + d] = builder.shuffle_vector(x, y, high)
    return rows


def _pack_function(module, real, intp, align):
    """The module's function pack(src, K, k0, k1, dst, cols): dst[(k - k0) * cols + q] =
    src[q * K + k] for 16 rows q of b (src: the first) and k0 <= k < k1.  16 x 16 squares
    go through registers (_transpose), the last (k1 - k0) % 16 columns one number at a
    time.  One function per module, called once per 16 columns of a panel, so its code is
    emitted once, whatever the panels' widths."""
    name = f"graphnn_tile_pack_{_kind(real)}"
    if name in module.globals:
        return module.globals[name]
    p = real.as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [p, intp, intp, intp, p, intp]), name)
    fn.linkage = "internal"
    src, K, k0, k1, dst, cols = fn.args
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    c = lambda k: ir.Constant(intp, k)                                  # noqa: E731
    vec = ir.VectorType(real, TILE_COLS)
    rows = [builder.gep(src, [builder.mul(c(q), K)]) for q in range(TILE_COLS)]
    whole = builder.sub(k1, builder.srem(builder.sub(k1, k0), c(TILE_COLS)))
    with cgutils.for_range_slice(builder, k0, whole, c(TILE_COLS), intp) as (k, _):
        square = [builder.load(builder.bitcast(builder.gep(r, [k]), vec.as_pointer()),
                               align=align) for r in rows]
        to = builder.gep(dst, [builder.mul(builder.sub(k, k0), cols)])
        for x, row in enumerate(_transpose(builder, square)):
            at = builder.gep(to, [builder.mul(c(x), cols)])
            builder.store(row, builder.bitcast(at, vec.as_pointer()), align=align)
    with cgutils.for_range_slice(builder, whole, k1, c(1), intp) as (k, _):
        to = builder.gep(dst, [builder.mul(builder.sub(k, k0), cols)])
        with cgutils.for_range(builder, c(TILE_COLS)) as q:
            value = builder.load(builder.gep(src, [builder.add(builder.mul(q.index, K), k)]))
            builder.store(value, builder.gep(to, [q.index]))
    builder.ret_void()
    return fn


def _product(context, builder, sig, args, bt: bool):
    """The code of tile (bt False) and tile_bt (True): see their docstrings."""
    intp = context.get_value_type(types.intp)
    A, B, O = (make_array(t)(context, builder, v) for t, v in zip(sig.args[:3], args[:3]))
    c = lambda k: ir.Constant(intp, k)                                  # noqa: E731
    n, m = cgutils.unpack_tuple(builder, O.shape, 2)
    K = cgutils.unpack_tuple(builder, B.shape, 2)[1 if bt else 0]
    if bt:
        ar, ak = K, c(1)
    else:
        ar, ak = (context.cast(builder, v, t, types.intp) for v, t in zip(args[3:], sig.args[3:]))
    with cgutils.if_unlikely(builder, _outside(builder, A, B, O, ar, ak, bt, c)):
        context.call_conv.return_user_exc(builder, IndexError, (OUTSIDE,))
    last = builder.sub(n, c(1))

    real = context.get_value_type(sig.args[0].dtype)
    align = context.get_abi_alignment(real)
    vec = ir.VectorType(real, TILE_COLS)
    fma = cgutils.get_or_insert_function(   # llvm.fma.v16f32, or .v16f64
        builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.{_kind(real)}")
    splat = ir.Constant(ir.VectorType(ir.IntType(32), TILE_COLS), [0] * TILE_COLS)
    zeros = ir.Constant(vec, [0.0] * TILE_COLS)
    height, wide = block_shape(avx512(context), real)
    # a @ b^T: each panel of b^T (b's rows j.., the chunk's columns k0..k1) is copied
    # transposed into this buffer first, so the blocks read it as they read b in a @ b
    packed = cgutils.alloca_once(builder, real, size=DEPTH * wide * TILE_COLS) if bt else None

    def vector_at(row, v):
        return builder.bitcast(builder.gep(row, [c(v * TILE_COLS)]), vec.as_pointer())

    def block(i, j, rows_, width, k0, k1, b_col, b_row):
        """out[i : i+rows_, j : j + width*TILE_COLS] (rows past the last repeat it): the
        terms k0 <= k < k1 added in registers to what out holds (to 0 when k0 is 0),
        stored once.  Row k of b's panel starts at b_col + k*b_row."""
        rows = []
        for r in range(rows_):
            row = builder.add(i, c(r))
            rows.append(builder.select(builder.icmp_signed(">", row, last), last, row))
        a_rows = [builder.gep(A.data, [builder.mul(r, ar)]) for r in rows]
        o_rows = [builder.gep(O.data, [builder.add(builder.mul(r, m), j)]) for r in rows]
        resume = builder.icmp_signed(">", k0, c(0))
        acc = [[cgutils.alloca_once_value(builder, builder.select(
                    resume, builder.load(vector_at(o_r, v), align=align), zeros))
                for v in range(width)] for o_r in o_rows]         # registers, after mem2reg
        with cgutils.for_range_slice(builder, k0, k1, c(1), intp) as (k, _):
            b_k = builder.gep(b_col, [builder.mul(k, b_row)])
            bv = [builder.load(vector_at(b_k, v), align=align) for v in range(width)]
            ka = builder.mul(k, ak)
            for a_r, slots in zip(a_rows, acc):
                x = builder.load(builder.gep(a_r, [ka]))
                xv = builder.shuffle_vector(
                    builder.insert_element(ir.Constant(vec, None), x,
                                           ir.Constant(ir.IntType(32), 0)),
                    ir.Constant(vec, None), splat)
                for v, slot in zip(bv, slots):
                    builder.store(builder.call(fma, [xv, v, builder.load(slot)]), slot)
        for o_r, slots in zip(o_rows, acc):
            for v, slot in enumerate(slots):
                builder.store(builder.load(slot), vector_at(o_r, v), align=align)

    # the blocks: R blocks of rows (the last one's extra rows repeat the last row), Pw
    # panels of `wide` vectors, then Pn of one vector (the columns left over)
    blocks_down = builder.sdiv(builder.add(n, c(height - 1)), c(height))
    stop = builder.sub(m, builder.srem(m, c(wide * TILE_COLS)))       # whole wide panels
    wide_panels = builder.sdiv(stop, c(wide * TILE_COLS))
    all_panels = builder.add(wide_panels, builder.sdiv(builder.sub(m, stop), c(TILE_COLS)))
    pack_fn = _pack_function(builder.module, real, intp, align) if bt else None

    def panel(p):
        """(first column, vectors) of panel p."""
        narrow = builder.add(stop, builder.mul(builder.sub(p, wide_panels), c(TILE_COLS)))
        is_wide = builder.icmp_signed("<", p, wide_panels)
        return (builder.select(is_wide, builder.mul(p, c(wide * TILE_COLS)), narrow),
                builder.select(is_wide, c(wide), c(1)))

    def pack(p, k0, k1):
        """packed[k - k0, col] = b[j + col, k] for panel p's columns and the chunk: one
        call of the module's packing function per 16 columns."""
        j, groups = panel(p)
        cols = builder.mul(groups, c(TILE_COLS))
        with cgutils.for_range(builder, groups) as g:
            first = builder.add(j, builder.mul(g.index, c(TILE_COLS)))
            builder.call(pack_fn, [builder.gep(B.data, [builder.mul(first, K)]), K, k0, k1,
                                   builder.gep(packed, [builder.mul(g.index, c(TILE_COLS))]),
                                   cols])

    def blocks(k0, k1, rows_outer):
        """Every block over the chunk k0..k1: for each row block every panel (rows_outer),
        else for each panel every row block.  Two variants of the block's code (wide and
        narrow panels), whatever the order: the code, not the loops, is what compiles
        slowly."""
        outer = builder.select(rows_outer, blocks_down, all_panels)
        inner = builder.select(rows_outer, all_panels, blocks_down)
        with cgutils.for_range(builder, outer) as o:
            if bt:                                      # panels outer: pack each first
                pack(o.index, k0, k1)
            with cgutils.for_range(builder, inner) as q:
                r = builder.select(rows_outer, o.index, q.index)
                p = builder.select(rows_outer, q.index, o.index)
                i = builder.mul(r, c(height))
                j, _ = panel(p)

                def run(width):
                    if bt:                              # the buffer's row k - k0 holds k
                        cols = c(width * TILE_COLS)
                        start = builder.gep(packed, [builder.sub(c(0), builder.mul(k0, cols))])
                        block(i, j, height, width, k0, k1, start, cols)
                    else:
                        block(i, j, height, width, k0, k1, builder.gep(B.data, [j]), m)
                if wide == 1:
                    run(1)
                else:
                    with builder.if_else(builder.icmp_signed("<", p, wide_panels)) as (w2, w1):
                        with w2:
                            run(wide)
                        with w1:
                            run(1)

    chunks = builder.select(builder.icmp_signed(">", K, c(0)), K, c(1))  # K = 0: zeros
    empty = builder.or_(builder.icmp_signed("<=", n, c(0)), builder.icmp_signed("<=", m, c(0)))
    chunks = builder.select(empty, c(0), chunks)                      # nothing to write
    with cgutils.for_range_slice(builder, c(0), chunks, c(DEPTH), intp) as (k0, _):
        k1 = builder.add(k0, c(DEPTH))
        k1 = builder.select(builder.icmp_signed("<", k1, K), k1, K)
        if bt:
            blocks(k0, k1, ir.Constant(ir.IntType(1), 0))       # panels outer (packed once)
        else:
            # b's rows k0..k1 fit the L1 cache: every panel of a row block in turn (its
            # reads of a stay in L1 too); else every row block of a panel (the panel of b
            # stays there)
            size = context.get_abi_sizeof(real)
            b_bytes = builder.mul(builder.mul(builder.sub(k1, k0), m), c(size))
            blocks(k0, k1, builder.icmp_signed("<=", b_bytes, c(L1_BYTES)))
    return context.get_dummy_value()


@intrinsic
def tile(typingctx, a, b, out, a_row, a_k):
    """out[r, :] = sum over k of a(r, k) * b[k, :] for every row r of out, where a(r, k)
    is the number at a_row * r + a_k * k of a's buffer (a @ b: a_row = K, a_k = 1;
    a^T @ b: 1, n) and K = b's rows.  out's width must be a multiple of TILE_COLS.
    Raises IndexError (OUTSIDE) before touching anything when a read of a would leave it
    (or out's width does not fit)."""
    if not _float_arrays(a, b, out) \
            or not all(isinstance(t, types.Integer) for t in (a_row, a_k)):
        return None

    def codegen(context, builder, sig, args):
        return _product(context, builder, sig, args, bt=False)

    return types.void(a, b, out, a_row, a_k), codegen


@intrinsic
def tile_bt(typingctx, a, b, out):
    """out = a @ b^T (a: n x K, b: m x K), as ``tile`` computes a @ b, each panel of b^T
    copied transposed into a buffer on the stack first (DEPTH x 32 numbers) so the blocks
    load its rows as vectors.  out's width m must be a multiple of TILE_COLS."""
    if not _float_arrays(a, b, out):
        return None

    def codegen(context, builder, sig, args):
        return _product(context, builder, sig, args, bt=True)

    return types.void(a, b, out), codegen


# a @ b with one output column (the forward pass of a layer of one unit, a regression's
# output): neither the tiles (widths are multiples of TILE_COLS) nor BLAS (its call costs more
# than 32 dot products) serve it well.  One dot product per row: vector partial sums, then
# their total (matmul compiles with "reassoc"), 0.6x OpenBLAS's time at 32x32 @ 32x1.
ONE_UNIT = f"""
    if m == 1 and n <= {TILE_BATCH}:
        for i in range(n):
            total = zero
            for k in range(K):
                total += a[i, k] * b[k, 0]
            out[i, 0] = total
        return"""
ONE_UNIT_DOC = (f"  One output column (at most\n    {TILE_BATCH} rows): a dot product per row "
                "(ONE_UNIT).")


def tile_source(t: str) -> str:
    """The kernel ``matmul{t}`` (t in TILED): tiles for small batches, else BLAS."""
    product, batch, call, operands, a_shape, b_shape = TILED[t]
    return "\n".join([
        f"def matmul{t}(a, b, out):",
        f'    """out = {product}.  A batch of at most {TILE_BATCH} rows, an output width that is a',
        f"    multiple of {TILE_COLS} and at most tile_limit(a) multiply-adds: blocks in vector",
        "    registers (graphnn/compile/tiles.py); otherwise BLAS (transposes as flags, no",
        "    copy).  out must not overlap a or b (the generated code never passes such",
        '    buffers: a product writes a block of its own).' + (ONE_UNIT_DOC if t == "" else "")
        + '"""',
        "    n, m = out.shape",
        f"    K = a.shape[{a_shape.split(', ').index('K')}]",
        f"    if a.shape != ({a_shape}) or b.shape != ({b_shape}):",
        f'        raise ValueError("matmul{t}: the shapes of a, b and out do not match")',
        *(ONE_UNIT.splitlines()[1:] if t == "" else []),
        f"    if {batch} > {TILE_BATCH} or m % {TILE_COLS} or n * K * m > tile_limit(a):",
        f"        gemm({operands}, out)",
        "        return",
        f"    {call}",
    ])
