"""The CUDA backend as the model sees it: finds numba-cuda and a GPU (or the simulator),
loads a generated module (``module.py``) and offers the methods ``CpuBackend`` offers, on
``DeviceNDArray``s.

Compiled kernels are shared: modules with the same source (every width variant of an
architecture, in the same dtype and tiles) use one set of kernel objects per process,
so numba-cuda compiles each kernel once, whatever the widths.
"""
from __future__ import annotations

import hashlib
import importlib.util
import linecache
import sys

import numpy as np

from ..plan import Plan
from . import config as _config
from .module import CudaModule

INSTALL_HINT = "pip install graphnn[cuda]"

# sha256 of a module's source -> a namespace of that source whose kernels every module
# of that source launches (its host functions are never called)
_KERNELS: dict[str, dict] = {}


def load(source: str, layout: dict | None = None) -> dict:
    """Exec a generated module and set its layout globals; its source is kept for
    tracebacks under a name made of its hash (nothing from the model)."""
    digest = hashlib.sha256(source.encode()).hexdigest()
    filename = f"<graphnn-cuda:{digest[:16]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {"__name__": "graphnn_generated_cuda"}
    exec(compile(source, filename, "exec"), namespace)
    namespace.update(layout or {})
    return namespace


def share_kernels(namespace: dict, names, source: str) -> None:
    """Point the module's kernels at the process's one copy for this source: kernels read
    no layout global, so every module of the same source can launch the same kernel
    objects.  That copy lives in a namespace of its own, which no model's state (bound
    views, device accumulators) ever enters, so sharing keeps no model alive."""
    digest = hashlib.sha256(source.encode()).hexdigest()
    library = _KERNELS.get(digest)
    if library is None:
        library = _KERNELS[digest] = load(source)
    for name in names:
        namespace[name] = library[name]


def import_cuda():
    """numba.cuda, and whether it is the simulator; a ValueError saying why not otherwise."""
    if importlib.util.find_spec("numba_cuda") is None:
        raise ValueError("device='cuda' needs the numba-cuda package, which is not installed: "
                         f"{INSTALL_HINT}")
    from numba.core import config
    if "numba.cuda" not in sys.modules:
        config.reload_config()          # NUMBA_ENABLE_CUDASIM set after numba was imported
    from numba import cuda
    if getattr(cuda, "implementation", "NVIDIA") != "NVIDIA":
        raise ValueError("device='cuda' needs NVIDIA's numba-cuda package, but Numba's "
                         f"built-in CUDA target was imported: {INSTALL_HINT}")
    if config.ENABLE_CUDASIM:
        return cuda, True
    from numba.cuda.cudadrv import driver
    try:
        ok = driver.driver.is_available
    except Exception:                               # noqa: BLE001 - any driver failure
        ok = False
    if not ok:
        why = str(driver.driver.initialization_error or "").strip()
        if "NO_DEVICE" in why.upper() or "no CUDA-capable device" in why:
            raise ValueError(f"device='cuda': no CUDA GPU was found ({why}); use device='cpu'")
        raise ValueError("device='cuda': no NVIDIA driver could be loaded"
                         + (f" ({' '.join(why.split())})" if why else "")
                         + "; install the NVIDIA driver on a machine with a GPU, or use device='cpu'")
    try:
        count = len(cuda.gpus)
    except Exception:                               # noqa: BLE001
        count = 0
    if count == 0:
        raise ValueError("device='cuda': the NVIDIA driver is loaded but reports no GPU; "
                         "use device='cpu'")
    from numba.cuda.cudadrv import nvvm
    if not nvvm.is_available():
        raise ValueError("device='cuda': the CUDA compiler (NVVM) was not found: "
                         f"{INSTALL_HINT} installs it (nvidia-nvvm), or install the CUDA toolkit")
    return cuda, False


class CudaBackend:
    """The CUDA backend as the model sees it: the same methods as ``CpuBackend``, on
    ``DeviceNDArray``s.  ``launches_per_step`` counts the kernels of one training step."""

    device = "cuda"

    def __init__(self, plan: Plan, optimizer, dtype):
        self.dtype = np.dtype(dtype)
        self._cuda, self.simulator = import_cuda()
        config = _config.CONFIG
        if self.simulator and config == _config.Config():
            config = _config.SIMULATOR_CONFIG
        module = CudaModule(plan, optimizer, self.dtype, config)
        self.module = module
        self.source = module.source()
        self.launches_per_step = module.launches_per_step
        self.launches = dict(module.launches)
        ns = load(self.source, module.layout)
        share_kernels(ns, module.kernels, self.source)
        cuda = self._cuda
        ns["SIMULATOR"] = self.simulator
        if not self.simulator:
            ns["SMS"] = int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
        ns["HITS"] = cuda.device_array(1, np.int64)
        ns["ERRS"] = cuda.device_array(2, self.dtype)
        ns["WSUM"] = cuda.device_array(1, self.dtype)
        ns["EMPTY"] = cuda.to_device(np.zeros(0, self.dtype))
        self.kernels = ns
        for name in ("train_epoch", "predict", "evaluate", "loss_and_grads", "update"):
            setattr(self, name, ns[name])

    def compile(self, labels: bool):
        """Nothing to do now: each kernel is compiled by numba-cuda at its first launch, for
        exactly the argument types it gets (``precompile()`` compiles them all at once)."""

    def precompile(self):
        """Compile every kernel of the module now (both tiles of every product), for the
        argument types the launches pass; a no-op under the simulator."""
        if self.simulator:
            return
        for name in self.module.kernels:
            self.kernels[name].compile(self.module.signature(name))

    def to_device(self, host: np.ndarray):
        return self._cuda.to_device(np.ascontiguousarray(host))

    def copy(self, array):
        """A copy of a device array, made on the device (nothing goes through the host)."""
        out = self._cuda.device_array_like(array)
        out.copy_to_device(array)
        return out

    def all_finite(self, array) -> bool:
        return self.kernels["all_finite"](array)

    @staticmethod
    def to_host(array) -> np.ndarray:
        return array.copy_to_host()
