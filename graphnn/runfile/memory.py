"""Memory a training run will need, estimated before anything is allocated.

A run file can ask for absurd sizes (``units = 100000000000``, ``[data] n = 10**11``);
allocating them would end in a ``MemoryError`` traceback (or the system's OOM killer).
The command line checks these estimates first and refuses the run with the figure.
"""
from __future__ import annotations

import os

#: bytes per row the toy generators touch while making, splitting and scaling their
#: data (float64 features and labels, several temporaries)
GENERATOR_BYTES_PER_VALUE = 8 * 4


def available_bytes() -> int | None:
    """Memory available to a new allocation (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f} B"                     # pragma: no cover


def data_bytes(rows: int, features: int, targets: int = 1) -> int:
    """Generating ``rows`` rows of ``features`` values plus targets."""
    return rows * (features + targets) * GENERATOR_BYTES_PER_VALUE


def model_bytes(widths: list[int], itemsize: int, state_slots: int, batch_rows: int,
                predict_rows: int = 1024) -> tuple[int, int, int]:
    """(parameter bytes, arena bytes, total) for a stack of Dense layers of ``widths``
    (input width first): parameters, gradients and optimizer state, plus the workspace
    arena (every activation and its gradient, for the larger of a batch and a predict chunk)."""
    params = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
    param_bytes = params * itemsize * (2 + state_slots) * 2      # + host copies on save/load
    arena = 3 * sum(widths) * max(batch_rows, predict_rows) * itemsize
    return param_bytes, arena, param_bytes + arena
