"""The optimizer's update as a kernel of its own, shared by every architecture.

One small generated module per optimizer variant (its kind, and the options that change
its generated code: momentum, Nesterov, decoupled weight decay) and dtype: the
optimizer's rule for one parameter (``Optimizer.source(generic=True)``) and
``apply_update``, which runs it over the whole flat parameter buffer.  The
hyperparameters are read at run time from ``hyper[0 .. k-1]`` in ``Optimizer.hyper()``
order (the glue puts them first), so one compile serves every value of them and every
architecture: compiled once per machine, then cached like the kernel library.  The
glue's ``train_step`` calls it at its address, as it calls the library's kernels, and
Python calls its dispatcher (``apply_gradients``, data-parallel training).  Compiled
inside every architecture's ``train_step`` instead, its vectorised loop was a quarter of
what a new architecture compiled.
"""
from __future__ import annotations

import numpy as np

from . import library
from .codegen import INLINE_JIT, Writer, preamble

NAME = library.UPDATE       # the kernel's name, in the glue's `kernels` list too


def source(optimizer, dtype, cached: bool = False) -> str:
    """The module of ``optimizer``'s update in ``dtype``."""
    dtype, name = np.dtype(dtype), type(optimizer).__name__
    w = Writer()
    w(f'"""graphnn update: {name} ({optimizer.name}_update), {dtype.name}.')
    w()
    w("Every model with this optimizer variant runs this code, whatever its graph: the")
    w("glue's train_step calls apply_update at its address.  The hyperparameters are")
    w("hyper[0 .. k-1] (at(hyper, k): one bounds-checked read), in this order:")
    hyper = optimizer.hyper()
    for k, key in enumerate(hyper):
        w(f"    {k}  {key}")
    w("Written against graphnn's kernel library and views, fingerprint "
      f"{library.fingerprint()}.")
    w('"""')
    preamble(w, dtype, "at")
    w()
    w()
    w(INLINE_JIT)
    for line in optimizer.source(generic=True).splitlines():
        w(line)
    w()
    w()
    # allocates nothing: no reference counting (as the library's kernels)
    w(f'@njit(cache={cached}, error_model="numpy", _nrt=False)')
    with w.block(f"def {NAME}(params, grads, state, lr, step, hyper):"):
        w(f'"""{name} on the whole flat parameter buffer at once."""')
        for k, key in enumerate(hyper):
            w(f"{key} = real(at(hyper, {k}))")
        args = "".join(f", {key}" for key in hyper)
        with w.block("for i in range(params.size):"):
            w(f"{optimizer.name}_update(i, params, grads, state, lr, step{args})")
    return w.text()


class Update(library.Module):
    """One optimizer variant's update module, from the compile cache when it can be used;
    ``kernel()`` compiles (or loads) ``apply_update`` for its one signature."""

    def __init__(self, optimizer, dtype):
        self.dtype = np.dtype(dtype)
        super().__init__(lambda cached: source(optimizer, self.dtype, cached))

    def signature_of(self, name: str = NAME):
        return library.update_signature(self.dtype)

    def kernel(self, name: str = NAME):
        """``apply_update``'s dispatcher (Python calls it once per step in data-parallel
        training)."""
        return super().kernel(name)
