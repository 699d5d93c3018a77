"""BLAS's matrix product as a Numba intrinsic for the library's kernels: ``gemm(a, b, out)``.

out = a @ b, where a and b are C arrays or their transposes (``a.T``: F layout), through
the same call into SciPy's BLAS that ``np.dot(a, b, out)`` makes (Numba's ``call_xxgemm``:
the transposes become BLAS's flags, nothing is copied), so the numbers are the same bits.
What it leaves out is what made ``np.dot`` slow to compile: its checks and the copies it
would make of non-contiguous operands are Python functions compiled into every kernel
that calls it, about 0.15 s of each product kernel's compile on a machine's first run.
This compiles in milliseconds.

The shapes are checked here (the kernels check them first too): out must be a's rows by
b's columns, the inner sizes equal and every size must fit BLAS's 32-bit integers, or it
raises ValueError (SHAPES) before BLAS sees them.  A product with nothing to sum (inner
size 0) writes zeros, one with no rows or columns writes nothing, as NumPy does.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array
from numba.np.linalg import call_xxgemm, ensure_blas

SHAPES = "graphnn: the shapes of a BLAS product do not match (or are too large)"
INT_MAX = (1 << 31) - 1          # BLAS's integers (SciPy's cython_blas) are 32-bit


def _operands(a, b, out) -> bool:
    return all(isinstance(t, types.Array) and t.ndim == 2 and isinstance(t.dtype, types.Float)
               for t in (a, b, out)) \
        and a.layout in "CF" and b.layout in "CF" and out.layout == "C" \
        and len({a.dtype, b.dtype, out.dtype}) == 1


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
        empty = builder.or_(builder.icmp_signed("==", m, zero), builder.icmp_signed("==", n, zero))
        with builder.if_then(builder.not_(empty)):
            with builder.if_else(builder.icmp_signed("==", k, zero)) as (no_terms, terms):
                with no_terms:                   # BLAS would be asked for lda = 0
                    size = builder.mul(builder.mul(m, n),
                                       context.get_constant(types.intp,
                                                            context.get_abi_sizeof(
                                                                context.get_value_type(
                                                                    sig.args[2].dtype))))
                    cgutils.memset(builder, O.data, size, 0)
                with terms:
                    call_xxgemm(context, builder, sig.args[0], (m, k), A.data,
                                sig.args[1], (k, n), B.data, sig.args[2], (m, n), O.data)
        return context.get_dummy_value()

    return types.void(a, b, out), codegen
