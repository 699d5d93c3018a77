"""Threads: BLAS owns them.  One call sets both OpenBLAS pools and Numba's.

graphnn's products inside @njit (``blas.gemm``, the calls Numba's ``np.dot`` makes) go
to SciPy's bundled OpenBLAS, a different copy from NumPy's; each has its own thread
pool, and SciPy's loads lazily.  graphnn's kernels use no ``prange`` (Numba's OpenMP
threads spin-waiting next to OpenBLAS threads cost 20-35x here), so the BLAS pools are
the threads that matter.
``threadpoolctl`` sets them all; it is a small, widely used dependency.
"""
from __future__ import annotations

import numba

from .validate import positive_int


def _load_scipy_blas():
    import scipy.linalg.cython_blas  # noqa: F401  (the OpenBLAS that blas.gemm calls)


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in every BLAS library loaded (NumPy's and SciPy's) and in Numba."""
    n = positive_int(n, "number of threads")
    _load_scipy_blas()
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n, user_api="blas")
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def get_num_threads() -> int:
    """The thread count of the BLAS that graphnn's kernels call (SciPy's OpenBLAS)."""
    return max((i["num_threads"] for i in blas_info() if "scipy" in i["filepath"]), default=1)


def blas_info() -> list[dict]:
    """Each loaded BLAS: library file, internal API, CPU kernel type, threads (threadpoolctl)."""
    _load_scipy_blas()
    from threadpoolctl import threadpool_info
    return [i for i in threadpool_info() if i.get("user_api") == "blas"]
