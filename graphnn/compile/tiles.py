"""Register-tile matrix products for small batches: the library's ``matmul`` and
``matmul_at`` kernels, and the intrinsic ``tile`` they call.

For a batch of at most ``TILE_BATCH`` rows, BLAS spends most of a small product packing
its operands and in call overhead (32x32 @ 32x32 on one core: 1.7 us, a tenth of it
arithmetic).  ``tile`` computes a ``TILE_ROWS x TILE_COLS`` block of ``out`` in vector
registers: at each step of k it loads one row of ``b``'s block as a vector, broadcasts
one number of ``a`` per block row, and adds their product with one fused multiply-add;
the block is stored once at the end.

It is written as LLVM IR (a Numba intrinsic) rather than as Python: the same tile as
64 scalar accumulators costs about 1.5 s of Numba typing and lowering per kernel, and
needs LLVM's SLP vectoriser, which Numba leaves off; the IR compiles in milliseconds and
is vector code by construction.  Shapes are run-time values, so one compile serves every
width.

A product whose output width is not a multiple of ``TILE_COLS`` (an output layer of 10
classes), whose batch is larger than ``TILE_BATCH`` or which has more than ``TILE_WORK``
multiply-adds (there BLAS's packing pays, and 2 threads win: 32x784 @ 784x128 takes
98 us in tiles, 127 us on one BLAS thread, 70 us on two) goes to BLAS.  The last block of a batch repeats its last row where
the rows run out (the same numbers, stored twice), so any batch size runs the same
loop.  The sum over k runs in the order 0, 1, ..., K-1 for every output, so a result
depends only on the shapes, never on timing or threads.  ``a @ b^T`` stays BLAS:
neither operand is contiguous along an output axis there, so a tile would need gathers.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

TILE_ROWS = 4          # rows of out per block
TILE_COLS = 16         # columns per vector; the tiles serve output widths that are multiples
TILE_BATCH = 32        # the largest batch (rows of x) the tiles serve
TILE_WORK = 1 << 19    # the most multiply-adds (n * K * m) of a product the tiles serve
# transposes with tile kernels -> (product, the batch's dimension, a_row and a_k of tile())
TILED = {"": ("a @ b", "n", "K, 1"), "_at": ("a^T @ b", "K", "1, n")}
OUTSIDE = "graphnn: a product tile would leave its arrays"


def vectors_per_row(features: str, real) -> int:
    """How many TILE_COLS-wide vectors one block row holds.  A block needs about 8
    independent accumulator registers to keep both FMA units busy through an FMA's
    latency, and must not spill: a float32 vector of 16 fills one AVX-512 register, so
    there a row holds 2 (8 registers in a 4-row block); elsewhere one vector of 16 already
    spans 2 or more registers.  ``features`` is LLVM's target feature string."""
    return 2 if isinstance(real, ir.FloatType) and "+avx512f" in features.split(",") else 1


def _outside(builder, A, B, O, a_row, a_k, c):
    """An i1 that is true when the product would touch anything outside a, b or out: out's
    width not a multiple of TILE_COLS or not b's width, a negative stride or K, or a read
    of a at or past its size.  The farthest read,
    (n-1)*a_row + (K-1)*a_k, is computed with overflow flags, so no value can wrap past
    the check."""
    n, m = cgutils.unpack_tuple(builder, O.shape, 2)
    K, bm = cgutils.unpack_tuple(builder, B.shape, 2)
    last = builder.sub(n, c(1))
    bad = builder.icmp_signed("!=", builder.srem(m, c(TILE_COLS)), c(0))
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


@intrinsic
def tile(typingctx, a, b, out, a_row, a_k):
    """out[r, :] = sum over k of a(r, k) * b[k, :] for every row r of out, where a(r, k)
    is the number at a_row * r + a_k * k of a's buffer (a @ b: a_row = K, a_k = 1;
    a^T @ b: 1, n) and K = b's rows.  out's width must be a multiple of TILE_COLS.
    Raises IndexError (OUTSIDE) before touching anything when a read of a would leave it.

    The blocks run panel by panel: for each panel of columns j (one or two vectors wide),
    every block of TILE_ROWS rows in turn, so the panel of b (K x 32 numbers) stays in the
    L1 cache while the row blocks pass over it."""
    arrays = (a, b, out)
    if not all(isinstance(t, types.Array) and t.ndim == 2 and t.layout == "C"
               and isinstance(t.dtype, types.Float) for t in arrays) \
            or len({t.dtype for t in arrays}) != 1 \
            or not all(isinstance(t, types.Integer) for t in (a_row, a_k)):
        return None

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        A, B, O = (make_array(t)(context, builder, v) for t, v in zip(sig.args[:3], args[:3]))
        ar, ak = (context.cast(builder, v, t, types.intp) for v, t in zip(args[3:], sig.args[3:]))
        c = lambda k: ir.Constant(intp, k)                              # noqa: E731
        with cgutils.if_unlikely(builder, _outside(builder, A, B, O, ar, ak, c)):
            context.call_conv.return_user_exc(builder, IndexError, (OUTSIDE,))
        n, m = cgutils.unpack_tuple(builder, O.shape, 2)
        K = cgutils.unpack_tuple(builder, B.shape, 2)[0]
        last = builder.sub(n, c(1))

        real = context.get_value_type(sig.args[0].dtype)
        align = context.get_abi_alignment(real)
        vec = ir.VectorType(real, TILE_COLS)
        fma = cgutils.get_or_insert_function(   # llvm.fma.v16f32, or .v16f64
            builder.module, ir.FunctionType(vec, [vec] * 3),
            f"llvm.fma.v{TILE_COLS}{'f32' if isinstance(real, ir.FloatType) else 'f64'}")
        splat = ir.Constant(ir.VectorType(ir.IntType(32), TILE_COLS), [0] * TILE_COLS)
        zeros = ir.Constant(vec, [0.0] * TILE_COLS)

        def block(i, j, height, width):
            """out[i : i+height, j : j + width*TILE_COLS] (rows past the last repeat it),
            accumulated in registers and stored once."""
            rows = []
            for r in range(height):
                row = builder.add(i, c(r))
                rows.append(builder.select(builder.icmp_signed(">", row, last), last, row))
            a_rows = [builder.gep(A.data, [builder.mul(r, ar)]) for r in rows]
            acc = [[cgutils.alloca_once_value(builder, zeros) for _ in range(width)]
                   for _ in rows]                                 # registers, after mem2reg
            b_col = builder.gep(B.data, [j])
            with cgutils.for_range(builder, K) as loop:
                k = loop.index
                b_k = builder.gep(b_col, [builder.mul(k, m)])
                bv = [builder.load(builder.bitcast(builder.gep(b_k, [c(v * TILE_COLS)]),
                                                   vec.as_pointer()), align=align)
                      for v in range(width)]
                ka = builder.mul(k, ak)
                for a_r, slots in zip(a_rows, acc):
                    x = builder.load(builder.gep(a_r, [ka]))
                    xv = builder.shuffle_vector(
                        builder.insert_element(ir.Constant(vec, None), x,
                                               ir.Constant(ir.IntType(32), 0)),
                        ir.Constant(vec, None), splat)
                    for v, slot in zip(bv, slots):
                        builder.store(builder.call(fma, [xv, v, builder.load(slot)]), slot)
            for r, slots in zip(rows, acc):
                o_r = builder.gep(O.data, [builder.add(builder.mul(r, m), j)])
                for v, slot in enumerate(slots):
                    op = builder.bitcast(builder.gep(o_r, [c(v * TILE_COLS)]), vec.as_pointer())
                    builder.store(builder.load(slot), op, align=align)

        def panels(start, stop, width):
            """The panels of columns start..stop, width vectors each: blocks of
            2*TILE_ROWS rows where a row holds two vectors (16 accumulators of 32
            registers), then blocks of TILE_ROWS."""
            height = TILE_ROWS * width
            tall = builder.sub(n, builder.srem(n, c(height)))        # rows of whole tall blocks
            with cgutils.for_range_slice(builder, start, stop, c(width * TILE_COLS), intp) as (j, _):
                with cgutils.for_range_slice(builder, c(0), tall, c(height), intp) as (i, _):
                    block(i, j, height, width)
                with cgutils.for_range_slice(builder, tall, n, c(TILE_ROWS), intp) as (i, _):
                    block(i, j, TILE_ROWS, width)

        wide = vectors_per_row(getattr(context.codegen(), "_tm_features", "") or "", real)
        stop = builder.sub(m, builder.srem(m, c(wide * TILE_COLS)))   # whole wide panels
        panels(c(0), stop, wide)
        if wide > 1:
            panels(stop, m, 1)                                        # then one vector wide
        return context.get_dummy_value()

    return types.void(a, b, out, a_row, a_k), codegen


def tile_source(t: str) -> str:
    """The kernel ``matmul{t}`` (t in TILED): tiles for small batches, else BLAS."""
    product, batch, strides = TILED[t]
    at = t == "_at"
    return "\n".join([
        f"def matmul{t}(a, b, out):",
        f'    """out = {product}.  A batch of at most {TILE_BATCH} rows, an output width that is a',
        f"    multiple of {TILE_COLS} and at most {TILE_WORK} multiply-adds: {TILE_ROWS}x{TILE_COLS}"
        " blocks in vector",
        "    registers (tile, graphnn/compile/tiles.py); otherwise BLAS (transposes as flags,",
        "    no copy).  out must not overlap a or b (the generated code never passes such",
        '    buffers: a product writes a block of its own)."""',
        "    n, m = out.shape",
        f"    K = a.shape[{0 if at else 1}]",
        f"    if a.shape[{1 if at else 0}] != n or b.shape[0] != K or b.shape[1] != m:",
        f'        raise ValueError("matmul{t}: the shapes of a, b and out do not match")',
        f"    if {batch} > {TILE_BATCH} or m % {TILE_COLS} or n * K * m > {TILE_WORK}:",
        f"        np.dot({'a.T' if at else 'a'}, b, out)",
        "        return",
        f"    tile(a, b, out, {strides})",
    ])
