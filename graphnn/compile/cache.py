"""On-disk cache of generated kernel modules, so a second process loads instead of compiling.

A generated module is self-contained (every scalar function it calls is in it), so
its content identifies it.  The file is ``<dir>/gn_<hash>.py`` where the hash covers
that content plus the graphnn and Numba versions, Numba's bounds-check switch and
this cache's file format; Numba's own cache (``cache=True``) then keeps the machine
code beside it in ``__pycache__``.

Safe to share: files are written atomically (temporary name, then rename), so threads
and processes compiling the same graph agree; in one process the module is imported
once, under a lock, and published only once it has run.

Heals itself: the module file must equal the generated source byte for byte, and
every Numba index (``.nbi``) and data (``.nbc``) file of ours carries a SHA-256 of its
content.  A damaged file (truncated, emptied, garbage, flipped bytes) is removed and
its function compiled again, with one ``CacheWarning`` naming the file; a kernel is
never loaded from a file that fails its check.  A directory that cannot be used
(read-only, a file in the way) gives one warning and an in-memory compile.

Location: ``GRAPHNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphnn``, else
``~/.cache/graphnn``.  ``GRAPHNN_NO_CACHE=1`` turns caching off.  Numba unpickles the
files it loads, so the directory must be as trusted as the Python installation.
"""
from __future__ import annotations

import hashlib
import io
import linecache
import os
import pickle
import sys
import tempfile
import threading
import types
import warnings
from pathlib import Path
from typing import Callable

FORMAT = "2"          # layout of our files (checksummed Numba entries); part of the key
MAGIC = b"graphnn-cache-2\n"

_import_lock = threading.Lock()       # one import of a generated module at a time
_executed: dict[str, dict] = {}       # in-memory modules by source hash (cache off)
_warned: set[str] = set()             # each damaged file / unusable folder is named once
_warned_lock = threading.Lock()


class CacheWarning(RuntimeWarning):
    """The compile cache had a damaged file or an unusable directory; graphnn compiled
    again (the result is correct, only slower to start)."""


def enabled() -> bool:
    return os.environ.get("GRAPHNN_NO_CACHE", "") not in ("1", "true", "yes")


def directory() -> Path:
    if os.environ.get("GRAPHNN_CACHE_DIR"):
        return Path(os.environ["GRAPHNN_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "graphnn"


def key(source: str) -> str:
    import numba
    from ..version import __version__
    h = hashlib.sha256()
    for part in (source, __version__, numba.__version__, str(numba.config.BOUNDSCHECK), FORMAT):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def build(generate: Callable[[bool], str]) -> tuple[str, dict]:
    """The generated module's source and namespace, from the cache when it can be used.

    ``generate(cached)`` returns the module's source, with Numba's ``cache=`` set to
    ``cached``.  With the cache on and its directory usable, the module is written there
    (if not there yet) and imported; otherwise it is compiled in memory.
    """
    if enabled():
        folder = directory().absolute()      # Numba finds its files from the module's path
        problem = _unusable(folder)
        if problem is None:
            source = generate(True)
            try:
                return source, _import(source, folder)
            except OSError as exc:           # the folder failed while writing (disk full ...)
                problem = f"{type(exc).__name__}: {exc}"
        _warn_once(str(folder), f"graphnn: the compile cache directory {folder} cannot be "
                   f"used ({problem}); compiling in memory. Point GRAPHNN_CACHE_DIR at a "
                   "writable folder, or set GRAPHNN_NO_CACHE=1 to turn the cache off.")
    source = generate(False)
    return source, _exec(source)


def folder_of(namespace: dict) -> Path | None:
    """The cache folder a module that ``build`` made was imported from, or None where it
    was compiled in memory (only an imported module has a ``__file__``)."""
    file = namespace.get("__file__")
    return Path(file).parent if file else None


def _unusable(folder: Path) -> str | None:
    """Why ``folder`` (and its ``__pycache__``, where Numba writes) cannot hold the cache,
    or None.  Writing a temporary file is the only reliable test (root ignores modes,
    file systems can be mounted read-only)."""
    try:
        for where in (folder, folder / "__pycache__"):
            where.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=where):
                pass
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _exec(source: str) -> dict:
    """Run the source in a fresh namespace, once per process (Numba cannot cache such code;
    a second model of the same structure gets the same, already compiled kernels).  Its
    text is kept in linecache for tracebacks; the name holds a hash, never a model's name."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    with _import_lock:
        if digest not in _executed:
            filename = f"<graphnn-generated:{digest}>"
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            namespace = {"__name__": "graphnn_generated"}
            exec(compile(source, filename, "exec"), namespace)
            _executed[digest] = namespace
        return _executed[digest]


def _import(source: str, folder: Path) -> dict:
    """Write ``source`` to the cache (if not there intact) and import it, once per process."""
    name = f"gn_{key(source)}"
    with _import_lock:
        module = sys.modules.get(name)
        if module is not None:
            return vars(module)
        path = folder / f"{name}.py"
        _write_module(path, source)
        module = types.ModuleType(name)
        module.__file__ = str(path)
        code = compile(source, str(path), "exec")      # not the import system: no .pyc
        sys.modules[name] = module     # Numba finds the module by name when it loads a kernel
        try:
            exec(code, vars(module))
        except BaseException:
            del sys.modules[name]
            raise
        _check_numba_caches(module)
        return vars(module)


def _write_module(path: Path, source: str) -> None:
    """Make ``path`` hold exactly ``source``; a file there with other bytes is damaged
    (the name is a hash of the content), so it is replaced with a warning."""
    data = source.encode()
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        old = None
    if old == data:
        return
    if old is not None:
        _warn_once(str(path), f"graphnn: compile cache file {path} is damaged ({len(old)} "
                   "bytes that differ from the generated source it should hold); writing it "
                   "again.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _warn_once(what: str, message: str) -> None:
    with _warned_lock:
        if what in _warned:
            return
        _warned.add(what)
    warnings.warn(message, CacheWarning, stacklevel=2)


def _remove(path) -> None:
    try:
        os.remove(path)
    except OSError:
        pass                          # gone already (another process healed it) or stuck


# -- Numba's cache files, checked ----------------------------------------------------------
# Numba keeps, per function, an index (.nbi: Numba version, source stamp, signature ->
# data file) and data files (.nbc: pickled machine code), and unpickles them when the
# dispatcher first compiles a signature (Dispatcher.compile -> Cache.load_overload).
# Unchecked, a damaged file raises there (EOFError, UnpicklingError, an LLVM parse
# error) on every run, and flipped bytes inside the machine code could load silently.
# Our dispatchers get a cache that checksums what it writes and, on any failure to read
# an entry back, removes the function's files and lets Numba compile it again.

class DamagedEntry(Exception):
    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _checked_classes():
    from numba.core.caching import FunctionCache, IndexDataCacheFile

    class CheckedFile(IndexDataCacheFile):
        """Numba's index/data files, each as MAGIC + sha256(payload) + payload, where
        payload is what Numba itself writes."""

        last_path = None

        def _save_index(self, overloads):
            payload = pickle.dumps(self._version, protocol=-1) + self._dump(
                (self._source_stamp, overloads))
            self._write(self._index_path, payload)

        def _load_index(self):
            try:
                payload = self._read(self._index_path)
            except FileNotFoundError:
                return {}
            stream = io.BytesIO(payload)
            if pickle.load(stream) != self._version:
                return {}
            stamp, overloads = pickle.loads(stream.read())
            return overloads if stamp == self._source_stamp else {}

        def _save_data(self, name, data):
            self._write(self._data_path(name), self._dump(data))

        def _load_data(self, name):
            return pickle.loads(self._read(self._data_path(name)))

        def _write(self, path, payload: bytes):
            with self._open_for_write(path) as f:
                f.write(MAGIC + hashlib.sha256(payload).digest() + payload)

        def _read(self, path) -> bytes:
            self.last_path = path
            with open(path, "rb") as f:
                data = f.read()
            head = len(MAGIC) + 32
            if len(data) < head or not data.startswith(MAGIC):
                raise DamagedEntry(path, f"{len(data)} bytes, no graphnn header")
            if hashlib.sha256(data[head:]).digest() != data[len(MAGIC):head]:
                raise DamagedEntry(path, f"{len(data)} bytes, checksum mismatch")
            return data[head:]

        def remove_all(self):
            """Remove this function's index and every data file of it."""
            _remove(self._index_path)
            prefix, suffix = self._data_name_pattern.split("{number:d}")
            try:
                names = os.listdir(self._cache_path)
            except OSError:
                return
            for n in names:
                if n.startswith(prefix) and n.endswith(suffix):
                    _remove(os.path.join(self._cache_path, n))

    class CheckedCache(FunctionCache):
        """Numba's per-function cache with checked files; damage means compile again."""

        def __init__(self, py_func):
            super().__init__(py_func)
            f = self._cache_file
            self._cache_file = CheckedFile(f._cache_path, self._impl.filename_base,
                                           f._source_stamp)

        def load_overload(self, sig, target_context):
            self._cache_file.last_path = None
            try:
                return super().load_overload(sig, target_context)
            except Exception as exc:       # noqa: BLE001 - any entry that cannot be read back
                self._discard(exc)
                return None

        def save_overload(self, sig, data):
            try:
                return super().save_overload(sig, data)
            except DamagedEntry as exc:        # damaged since we read it: clean, try again
                self._discard(exc)
            except Exception as exc:           # noqa: BLE001 - the kernel works; caching failed
                return self._cannot_save(exc)
            try:
                return super().save_overload(sig, data)
            except Exception as exc:           # noqa: BLE001
                return self._cannot_save(exc)

        def _cannot_save(self, exc: Exception):
            self.disable()
            folder = self._cache_path
            _warn_once(folder, f"graphnn: could not save to the compile cache in {folder} "
                       f"({type(exc).__name__}: {exc}); the compiled kernel is used but not "
                       "cached. Point GRAPHNN_CACHE_DIR at a writable folder, or set "
                       "GRAPHNN_NO_CACHE=1 to turn the cache off.")

        def _discard(self, exc: Exception):
            f = self._cache_file
            path = exc.path if isinstance(exc, DamagedEntry) else (f.last_path or f._index_path)
            reason = exc.reason if isinstance(exc, DamagedEntry) else \
                f"{type(exc).__name__}: {str(exc)[:200]}"
            f.remove_all()
            _warn_once(str(path), f"graphnn: compile cache file {path} is damaged ({reason}); "
                       "removed it, compiling again.")

    return CheckedCache


_CHECKED_CACHE = None


def _check_numba_caches(module) -> None:
    """Give each cached dispatcher of ``module`` the checked cache (before any compile)."""
    global _CHECKED_CACHE
    from numba.core.caching import FunctionCache
    from numba.core.dispatcher import Dispatcher
    if _CHECKED_CACHE is None:
        _CHECKED_CACHE = _checked_classes()
    for value in list(vars(module).values()):
        if isinstance(value, Dispatcher) and type(getattr(value, "_cache", None)) is FunctionCache:
            value._cache = _CHECKED_CACHE(value.py_func)


def in_index(dispatcher, signature) -> bool:
    """Whether Numba's on-disk index lists ``dispatcher`` for exactly ``signature`` (then
    compiling it is a load).  A guess for a message: the load itself checks the files."""
    try:        # Numba's own index, as Dispatcher.compile() looks it up
        key = dispatcher._cache._index_key(signature, dispatcher.targetctx.codegen())
        return key in dispatcher._cache._cache_file._load_index()
    except Exception:       # noqa: BLE001 - any unreadable index: not cached
        return False


def size() -> tuple[int, int]:
    """(number of files, bytes) in the cache directory."""
    folder = directory()
    if not folder.is_dir():
        return 0, 0
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)
