"""What the library's kernels know about the target's vectors: whether it has AVX-512
(``avx512``), and ``wide_vectors()``, which lets LLVM vectorise one kernel's loops with all
of it.

LLVM's tuning for Intel's server CPUs prefers 256-bit vectors even where the CPU has
512-bit ones.  The float32 activations with an arithmetic form (tanh, sigmoid, softplus,
gelu: a dozen multiply-adds and a division per number) are bound by the vector units, so
their kernels ask for 512 bits: with 512-bit tanh the tiny MLP's step took 0.95-0.96 of
its time with 256-bit tanh (medians of 40 interleaved epochs).  Kernels of cheap
operations do not: with ReLU at 512 bits the 784-128-10 step at batch 32 took 1.1x as
long as at 256.  The products (``tiles.py``) write their 512-bit vectors out themselves.
"""
from __future__ import annotations

from numba import types
from numba.extending import intrinsic

# LLVM's function attribute that overrides the CPU's preferred vector width
PREFER_512 = '"prefer-vector-width"="512"'


def avx512(context) -> bool:
    """Whether the target Numba compiles for has AVX-512 (its LLVM feature string)."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return "+avx512f" in features.split(",")


@intrinsic
def wide_vectors(typingctx):
    """Mark the calling kernel's LLVM function to be vectorised 512 bits wide where the
    target has AVX-512; elsewhere nothing.  It emits no code."""

    def codegen(context, builder, sig, args):
        if avx512(context):
            # llvmlite's checked add() knows only flag attributes; a "key"="value" one is
            # written into the IR as it stands.  Should llvmlite change how it keeps them,
            # the kernel keeps LLVM's preferred width (only speed is at stake).
            try:
                set.add(builder.function.attributes, PREFER_512)
            except TypeError:
                pass
        return context.get_dummy_value()

    return types.none(), codegen
