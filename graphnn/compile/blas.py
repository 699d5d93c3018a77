"""BLAS's matrix product as a Numba intrinsic for the library's kernels: ``gemm(a, b, out)``.

out = a @ b, where a and b are C arrays or their transposes (``a.T``: F layout), through
the same calls into SciPy's BLAS that ``np.dot(a, b, out)`` makes (Numba's
``call_xxgemm``, or ``call_xxgemv`` and ``call_xxdot`` where a or b is one row or column, as
``np.dot`` chooses: the transposes become BLAS's flags, nothing is copied), so the numbers
are the same bits.  What it leaves out is what made ``np.dot`` slow to compile: its checks
and the copies it would make of non-contiguous operands are Python functions compiled into
every kernel that calls it, 0.1-0.3 s of each product kernel's compile on a machine's
first run.  This compiles in milliseconds.

The shapes are checked here (for matmul_atbt and matmul_add this is their only check):
out must be a's rows by b's columns, the inner sizes equal and every size must fit BLAS's
32-bit integers, or it raises ValueError (SHAPES) before BLAS sees them.  A product with
nothing to sum (inner size 0) writes zeros, one with no rows or columns writes nothing,
as NumPy does.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array
from numba.np.linalg import call_xxdot, call_xxgemm, call_xxgemv, ensure_blas

SHAPES = "graphnn: the shapes of a BLAS product do not match (or are too large)"
INT_MAX = (1 << 31) - 1          # BLAS's integers (SciPy's cython_blas) are 32-bit


def _operands(a, b, out) -> bool:
    """Whether gemm serves these types: 2-D float32 or float64 arrays of one dtype, a and b
    contiguous either way (C, or F: a transpose; BLAS reads them as they are, no copy) and
    out a writable C array.  Anything else is a typing error, never a copy."""
    return all(isinstance(t, types.Array) and t.ndim == 2
               and t.dtype in (types.float32, types.float64) for t in (a, b, out)) \
        and a.layout in "CF" and b.layout in "CF" and out.layout == "C" and out.mutable \
        and len({a.dtype, b.dtype, out.dtype}) == 1


def _product(context, builder, sig, A, B, O, m, k, n):
    """The BLAS call np.dot makes (numba.np.linalg.dot_3_mm) for m, k, n >= 1: a dot
    product where a is one row and b one column, a matrix-vector product where one of them
    is, else the matrix product."""
    a_type, b_type, out_type = sig.args
    one = ir.Constant(m.type, 1)
    with builder.if_else(builder.icmp_signed("==", n, one)) as (b_vector, b_matrix):
        with b_vector:
            with builder.if_else(builder.icmp_signed("==", m, one)) as (a_vector, a_matrix):
                with a_vector:
                    call_xxdot(context, builder, False, a_type.dtype, k, A.data, B.data, O.data)
                with a_matrix:
                    call_xxgemv(context, builder, a_type.layout == out_type.layout,
                                a_type, (m, k), A.data, B.data, O.data)
        with b_matrix:
            with builder.if_else(builder.icmp_signed("==", m, one)) as (a_vector, a_matrix):
                with a_vector:
                    call_xxgemv(context, builder, b_type.layout != out_type.layout,
                                b_type, (k, n), B.data, A.data, O.data)
                with a_matrix:
                    call_xxgemm(context, builder, a_type, (m, k), A.data,
                                b_type, (k, n), B.data, out_type, (m, n), O.data)


@intrinsic
def gemm(typingctx, a, b, out):
    """out = a @ b by BLAS (see the module's docstring)."""
    if not _operands(a, b, out):
        return None

    def codegen(context, builder, sig, args):
        ensure_blas()
        A, B, O = (make_array(t)(context, builder, v) for t, v in zip(sig.args, args))
        m, k = cgutils.unpack_tuple(builder, A.shape, 2)
        k2, n = cgutils.unpack_tuple(builder, B.shape, 2)
        rows, cols = cgutils.unpack_tuple(builder, O.shape, 2)
        bad = builder.or_(builder.icmp_signed("!=", k, k2), builder.icmp_signed("!=", rows, m))
        bad = builder.or_(bad, builder.icmp_signed("!=", cols, n))
        limit = ir.Constant(k.type, INT_MAX)
        for size in (m, k, n):
            bad = builder.or_(bad, builder.icmp_signed(">", size, limit))
        with cgutils.if_unlikely(builder, bad):
            context.call_conv.return_user_exc(builder, ValueError, (SHAPES,))
        zero = ir.Constant(k.type, 0)
        empty = builder.or_(builder.icmp_signed("==", k, zero),
                            builder.or_(builder.icmp_signed("==", m, zero),
                                        builder.icmp_signed("==", n, zero)))
        with builder.if_else(empty, likely=False) as (nothing, something):
            with nothing:           # zeros (no terms), or no numbers at all (BLAS: lda = 0)
                cgutils.memset(builder, O.data, builder.mul(O.itemsize, O.nitems), 0)
            with something:
                _product(context, builder, sig, A, B, O, m, k, n)
        return context.get_dummy_value()

    return types.void(a, b, out), codegen
