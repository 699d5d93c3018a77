"""On-disk cache of generated kernel modules, so a second process loads instead of compiling.

A generated module is self-contained (every scalar function it calls is in it), so
its content identifies it.  The file is ``<dir>/gn_<hash>.py`` where the hash covers
that content plus the graphnn and Numba versions and Numba's bounds-check switch;
Numba's own cache (``cache=True``) then keeps the machine code beside it in
``__pycache__``.  Files are written atomically (temporary name, then rename), so
concurrent processes compiling the same graph are safe.

Location: ``GRAPHNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphnn``, else
``~/.cache/graphnn``.  ``GRAPHNN_NO_CACHE=1`` turns caching off.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path


def enabled() -> bool:
    return os.environ.get("GRAPHNN_NO_CACHE", "") not in ("1", "true", "yes")


def directory() -> Path:
    if os.environ.get("GRAPHNN_CACHE_DIR"):
        return Path(os.environ["GRAPHNN_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "graphnn"


def key(source: str) -> str:
    import numba
    from .. import __version__
    h = hashlib.sha256()
    for part in (source, __version__, numba.__version__, str(numba.config.BOUNDSCHECK)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def load_module(source: str) -> dict:
    """Write ``source`` to the cache (if not there yet) and import it; returns its namespace."""
    folder = directory()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"gn_{key(source)}"
    path = folder / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)
    if name in sys.modules:
        return vars(sys.modules[name])
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module        # before exec: Numba's cache locator looks it up
    spec.loader.exec_module(module)
    return vars(module)


def size() -> tuple[int, int]:
    """(number of files, bytes) in the cache directory."""
    folder = directory()
    if not folder.exists():
        return 0, 0
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)
