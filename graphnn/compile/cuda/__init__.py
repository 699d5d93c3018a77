"""The CUDA backend: a plan becomes one generated module of Numba ``@cuda.jit`` kernels
and the Python that launches them.

    config.py    the launch configuration: matrix-product tiles, block size
    kernels.py   the kernel library: one emitter per kind of kernel (products, elementwise,
                 column sums, per-row, loss, optimizer, gather)
    launch.py    the launch helpers pasted into every module (grid and block per shape)
    module.py    the generated module of one architecture: device functions, kernels,
                 host functions, one launch line per plan instruction; its layout
    backend.py   CudaBackend: numba-cuda / GPU / simulator discovery, loading a module,
                 kernels shared between modules of the same source

``numba.cuda`` is imported only when a ``CudaBackend`` is made (and by the generated
module), never by ``import graphnn``.  Under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1`` set before ``numba.cuda`` is first imported) it runs
without a GPU, with the small tiles of ``config.SIMULATOR_CONFIG`` unless
``config.CONFIG`` was set (the simulator runs every thread in Python; set it on the
``config`` module, where the backend reads it).
"""
from .backend import INSTALL_HINT, CudaBackend, import_cuda, load
from .config import Config, Tile
from .kernels import Kernel, KernelLibrary, numba_types
from .module import CudaModule

__all__ = ["INSTALL_HINT", "Config", "CudaBackend", "CudaModule",
           "Kernel", "KernelLibrary", "Tile", "import_cuda", "load", "numba_types"]
