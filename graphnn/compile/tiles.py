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
TILE_COLS = 16         # columns of out per block: one vector (two 256-bit registers of float32)
TILE_BATCH = 32        # the largest batch (rows of x) the tiles serve
TILE_WORK = 1 << 19    # the most multiply-adds (n * K * m) of a product the tiles serve
# transposes with tile kernels -> (product, the batch's dimension, a_row and a_k of tile())
TILED = {"": ("a @ b", "n", "K, 1"), "_at": ("a^T @ b", "K", "1, n")}
OUTSIDE = "graphnn: a product tile would leave its arrays"


@intrinsic
def tile(typingctx, a, b, out, i, j, a_row, a_k):
    """out[r, j:j+TILE_COLS] = sum over k of a(r, k) * b[k, j:j+TILE_COLS] for the rows
    r = i .. i+TILE_ROWS-1 (clamped to the last row of out), where a(r, k) is the number
    at a_row * r + a_k * k of a's buffer (a @ b: a_row = K, a_k = 1; a^T @ b: 1, n) and
    K = b's rows.  Checks that every element it touches lies in its array."""
    arrays = (a, b, out)
    if not all(isinstance(t, types.Array) and t.ndim == 2 and t.layout == "C" for t in arrays) \
            or len({t.dtype for t in arrays}) != 1 \
            or not all(isinstance(t, types.Integer) for t in (i, j, a_row, a_k)):
        return None

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        A, B, O = (make_array(t)(context, builder, v) for t, v in zip(sig.args[:3], args[:3]))
        i_, j_, ar, ak = (context.cast(builder, v, t, types.intp)
                          for v, t in zip(args[3:], sig.args[3:]))
        c = lambda k: ir.Constant(intp, k)                              # noqa: E731
        n, m = cgutils.unpack_tuple(builder, O.shape, 2)
        K, bm = cgutils.unpack_tuple(builder, B.shape, 2)
        last = builder.sub(n, c(1))
        # the block's rows, columns and reads of a must lie inside a, b and out
        bad = builder.or_(builder.icmp_signed("<", i_, c(0)), builder.icmp_signed(">", i_, last))
        bad = builder.or_(bad, builder.icmp_signed("<", j_, c(0)))
        bad = builder.or_(bad, builder.icmp_signed(">", builder.add(j_, c(TILE_COLS)), m))
        bad = builder.or_(bad, builder.icmp_signed("!=", bm, m))
        for v in (ar, ak, K):
            bad = builder.or_(bad, builder.icmp_signed("<", v, c(0)))
        far = builder.add(builder.mul(last, ar), builder.mul(builder.sub(K, c(1)), ak))
        touches = builder.icmp_signed(">", K, c(0))
        bad = builder.or_(bad, builder.and_(touches, builder.icmp_signed(">=", far, A.nitems)))
        with cgutils.if_unlikely(builder, bad):
            context.call_conv.return_user_exc(builder, IndexError, (OUTSIDE,))

        real = context.get_value_type(sig.args[0].dtype)
        vec = ir.VectorType(real, TILE_COLS)
        rows = []
        for r in range(TILE_ROWS):
            row = builder.add(i_, c(r))
            rows.append(builder.select(builder.icmp_signed(">", row, last), last, row))
        a_rows = [builder.gep(A.data, [builder.mul(r, ar)]) for r in rows]
        b_col = builder.gep(B.data, [j_])
        zeros = ir.Constant(vec, [0.0] * TILE_COLS)
        acc = [cgutils.alloca_once_value(builder, zeros) for _ in rows]    # registers, after mem2reg
        fma = cgutils.get_or_insert_function(   # llvm.fma.v16f32, or .v16f64
            builder.module, ir.FunctionType(vec, [vec] * 3),
            f"llvm.fma.v{TILE_COLS}{'f32' if isinstance(real, ir.FloatType) else 'f64'}")
        splat = ir.Constant(ir.VectorType(ir.IntType(32), TILE_COLS), [0] * TILE_COLS)
        with cgutils.for_range(builder, K) as loop:
            k = loop.index
            bp = builder.bitcast(builder.gep(b_col, [builder.mul(k, m)]), vec.as_pointer())
            bv = builder.load(bp, align=context.get_abi_alignment(real))
            ka = builder.mul(k, ak)
            for a_row, slot in zip(a_rows, acc):
                x = builder.load(builder.gep(a_row, [ka]))
                xv = builder.shuffle_vector(
                    builder.insert_element(ir.Constant(vec, None), x, ir.Constant(ir.IntType(32), 0)),
                    ir.Constant(vec, None), splat)
                builder.store(builder.call(fma, [xv, bv, builder.load(slot)]), slot)
        for r, slot in zip(rows, acc):
            op = builder.gep(O.data, [builder.add(builder.mul(r, m), j_)])
            builder.store(builder.load(slot), builder.bitcast(op, vec.as_pointer()),
                          align=context.get_abi_alignment(real))
        return context.get_dummy_value()

    return types.void(a, b, out, i, j, a_row, a_k), codegen


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
        '    no copy)."""',
        "    n, m = out.shape",
        f"    K = a.shape[{0 if at else 1}]",
        f"    if a.shape[{1 if at else 0}] != n or b.shape[0] != K or b.shape[1] != m:",
        f'        raise ValueError("matmul{t}: the shapes of a, b and out do not match")',
        f"    if {batch} > {TILE_BATCH} or m % {TILE_COLS} or n * K * m > {TILE_WORK}:",
        f"        np.dot({'a.T' if at else 'a'}, b, out)",
        "        return",
        f"    for i in range(0, n, {TILE_ROWS}):",
        f"        for j in range(0, m, {TILE_COLS}):",
        f"            tile(a, b, out, i, j, {strides})",
    ])
