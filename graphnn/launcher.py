"""Whether an MPI launcher started this process beside other ranks.

Reads the environment only (it imports neither mpi4py nor anything of graphnn), so the
lowest layers can ask too: the compile helper (compile/warm.py) starts no second process
on an MPI rank, and ``graphnn train`` trains data-parallel under ``mpiexec``.
"""
from __future__ import annotations

import os

# what MPI launchers set in every process they start: (size variable, rank variable)
LAUNCHER_ENV = (("PMI_SIZE", "PMI_RANK"),                            # MPICH, Intel MPI (hydra)
                ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),    # Open MPI
                ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"))      # MVAPICH


def launched() -> bool:
    """Whether this process was started by an MPI launcher (mpiexec, mpirun, srun with PMI)
    together with other ranks."""
    for size_var, _ in LAUNCHER_ENV:
        try:
            if int(os.environ.get(size_var, "1")) > 1:
                return True
        except ValueError:
            pass
    return False
