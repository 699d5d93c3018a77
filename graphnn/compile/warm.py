"""A helper process that compiles library kernels while this one compiles the glue.

A machine's first model compiles about ten library kernels, one after another: Numba
compiles one function at a time per process.  On two or more cores, a second process
compiles its share of them into the compile cache while this process compiles the rest,
the optimizer's update and the glue's ``train_step``; this process then loads the helper's
kernels from the cache.  The share (``plan``) balances the two by each kernel's usual
compile time (``COST``): the heaviest first, each to the side that would finish it
sooner, the helper starting ``START`` seconds late and this process having ``GLUE`` more
to compile.  The compiled code is the same whichever process builds it.

Nothing depends on the helper: if it cannot start, fails, or takes longer than
``TIMEOUT``, this process compiles what is missing itself.  It runs only when the
compile cache is in use (that is how its work comes back), at least ``MIN_MISSING``
kernels are missing, the share saves at least ``MIN_SAVING`` seconds by those costs and
the process may use two cores; never on an MPI rank (the ranks
already share the cores, and an MPI library may not tolerate a fork beside it), in a
frozen application (its ``sys.executable`` is the application) or in a helper.

The helper runs this module's ``CHILD`` code in the cache folder, and its first statement
takes the working directory off ``sys.path``; its ``PYTHONPATH`` has no empty entries
(Python would read them as that folder) and no relative ones: nothing lying there or in
the user's folder is imported.  graphnn's own folder goes at the end of ``sys.path`` (never before the
standard library), and a helper that finds another graphnn first does nothing.  It
accepts only the cache folder, a dtype and kernel names of graphnn's library (anything
else: exit status 2, nothing compiled).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..launcher import launched

# Usual seconds of a kernel's cold compile, by its name's first characters (the first
# match counts; measured on an Intel Xeon, 2026-12: only the proportions matter)
COST = (("train_epoch_", 0.85), ("act_grad_", 0.45), ("act_", 0.35), ("loss_", 0.35),
        ("matmul", 0.33), ("bias_act_", 0.23), ("softmax", 0.17), ("", 0.15))
START = 0.8                          # the helper's start: a process, graphnn's import and
#                                      the library's module (with 0.5 it finished last)
GLUE = 0.6                           # this process's train_step and optimizer's update
MIN_MISSING = 4                      # fewer missing kernels: not worth a process start
MIN_SAVING = 0.75                    # seconds the share must save, by COST
TIMEOUT = 300.0                      # seconds to wait for the helper before compiling here
DTYPES = ("float32", "float64")
IN_HELPER = "GRAPHNN_COMPILE_HELPER"  # set in a helper's environment: it starts no helper
# what the helper runs (python -c): no working directory on sys.path, graphnn's folder
# (argv[1]) last; main() gets the rest of argv
CHILD = ("import os, sys; here = os.getcwd(); sys.path[:] = "
         "[p for p in sys.path if p not in ('', '.') and os.path.abspath(p) != here]; "
         "sys.path.append(sys.argv[1]); from graphnn.compile import warm; "
         "sys.exit(warm.child(sys.argv[1], sys.argv[2:]))")
ROOT = Path(__file__).resolve().parents[2]       # the folder this graphnn is in


def _absolute_path_list(value: str) -> str:
    """A PYTHONPATH without empty entries (Python reads them as the working directory: the
    helper's is the cache folder) and with relative ones made absolute against this
    process's working directory, where they meant what they mean."""
    return os.pathsep.join(os.path.abspath(p) for p in value.split(os.pathsep) if p)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:           # not on Linux
        return os.cpu_count() or 1


def cost(name: str) -> float:
    """A kernel's usual cold-compile seconds (COST)."""
    return next(seconds for prefix, seconds in COST if name.startswith(prefix))


def plan(missing) -> tuple[tuple[str, ...], float]:
    """The helper's share of the ``missing`` kernels (in their order) and the seconds it
    saves by COST: the heaviest first, each to whichever side would finish it sooner
    (longest-processing-time-first scheduling), the helper starting START late and this
    process also compiling GLUE."""
    helper, here, share = START, GLUE, set()
    for name in sorted(missing, key=cost, reverse=True):      # stable: ties keep the order
        if helper <= here:
            share.add(name)
            helper += cost(name)
        else:
            here += cost(name)
    alone = GLUE + sum(cost(n) for n in missing)
    return tuple(n for n in missing if n in share), alone - max(helper if share else 0, here)


class Helper:
    """A started helper process and the kernels it compiles."""

    def __init__(self, process: subprocess.Popen, names: tuple[str, ...]):
        self.process = process
        self.names = names

    @classmethod
    def start(cls, lib, needed) -> "Helper | None":
        """Start a helper for ``lib``'s missing kernels among ``needed`` when it pays;
        None when it does not (or cannot start)."""
        folder = lib.folder
        if folder is None or _cores() < 2 or lib.dtype.name not in DTYPES \
                or "mpi4py" in sys.modules or launched() \
                or getattr(sys, "frozen", False) or not sys.executable \
                or os.environ.get(IN_HELPER):
            return None
        missing = [n for n in dict.fromkeys(needed) if not lib.is_compiled(n)]
        share, saving = plan(missing)
        if len(missing) < MIN_MISSING or saving < MIN_SAVING:
            return None
        command = [sys.executable, "-c", CHILD, str(ROOT), str(folder), lib.dtype.name, *share]
        env = dict(os.environ, **{IN_HELPER: "1"})
        path = _absolute_path_list(env.pop("PYTHONPATH", ""))   # as this process reads it
        if path:
            env["PYTHONPATH"] = path
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env, cwd=folder,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            return None
        return cls(process, share)

    def wait(self) -> bool:
        """Wait for the helper; True if it compiled all its kernels.  One that is still
        running after TIMEOUT is stopped (this process then compiles its kernels)."""
        try:
            return self.process.wait(TIMEOUT) == 0
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False


def child(root: str, argv: list[str]) -> int:
    """The helper's entry: main(argv) if this module is the graphnn in ``root`` (the
    parent's), else 2 (another graphnn came first on sys.path: its kernels could differ)."""
    if Path(root).resolve() != ROOT:
        return 2
    return main(argv)


def main(argv: list[str]) -> int:
    """Compile library kernels ``argv[2:]`` of dtype ``argv[1]`` into the cache at
    ``argv[0]`` (the folder the parent's library module lives in)."""
    if len(argv) < 3 or argv[1] not in DTYPES:
        return 2
    folder, dtype, names = Path(argv[0]), argv[1], argv[2:]
    from . import library
    known = set(library.kernel_names())
    if not folder.is_dir() or not all(n in known for n in names):
        return 2
    os.environ["GRAPHNN_CACHE_DIR"] = str(folder)
    os.environ.pop("GRAPHNN_NO_CACHE", None)
    lib = library.library(dtype)
    if lib.folder is None or lib.folder.resolve() != folder.resolve():
        return 2                      # the cache there cannot be used: nothing would come back
    for name in names:
        lib.kernel(name)
    return 0
