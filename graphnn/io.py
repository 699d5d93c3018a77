"""Checkpoints: one safetensors file with the graph, parameters, optimizer state and counters.

Layout (the safetensors format, https://huggingface.co/docs/safetensors):
    8 bytes   header length N (little-endian uint64); N is a multiple of 8, so the
              data block starts 8-byte aligned
    N bytes   header: JSON, padded with spaces.  ``__metadata__`` (str -> str) holds
              graphnn_checkpoint (format version), graphnn_version, dtype, loss,
              optimizer (JSON), graph (JSON), seed, step, epoch, rng (JSON: the
              shuffling generator's state), dropout_key and sha256; then one entry per
              tensor: {"dtype": "F32" | "F64", "shape": [...], "data_offsets": [lo, hi]},
              offsets counted from the start of the data block
    ...       the data block: the parameters in flat-buffer order ("dense.weight",
              "dense.bias", ...), then each optimizer state slot k in the same order
              ("optimizer.0.dense.weight", ...), little-endian, no gaps

So any safetensors reader (``safetensors.numpy.load_file``, other frameworks' tools)
reads the weights without graphnn, and the data block is the model's flat buffers.
``sha256`` is the SHA-256 of the header without it (as canonical JSON: sorted keys,
no spaces, ASCII) followed by the data block.

Written atomically (a temporary ``.graphnn-<random>.tmp`` in the target's folder,
fsync, rename), so a crash mid-write leaves the previous checkpoint intact;
temporaries left by killed savers are removed by a later save to the same folder.
Read back only after the checksum verifies and every header field has passed
``checkpoint_schema``; the header is JSON and every type comes from a fixed table,
so loading a file never executes code from it.  The compiled-model class is passed
in (``load(path, cls, graph_cls)``): this module sits below ``model.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
import struct
import time
from dataclasses import dataclass

import numpy as np

from .checkpoint_schema import (DTYPES, FORMAT_VERSION, CheckpointError, build_graph,
                                check_metadata, describe_graph, describe_optimizer,
                                finite_float)
from .compile.plan import lower
from .graph import Graph
from .ops.losses import check_loss
from .optim import Optimizer

__all__ = ["CheckpointError", "save", "load", "read", "is_checkpoint", "to_bytes",
           "from_bytes", "read_safetensors", "build_graph", "describe_graph"]

OLD_MAGIC = b"GRAPHNN\0"              # graphnn 0.1's own format (format version 1)
_SIGNATURE = b'{"__metadata__":{"graphnn_checkpoint":"'   # how every header we write begins
MAX_HEADER = 100_000_000              # bytes; the limit the safetensors library sets too
STALE_SECONDS = 600                   # a temporary this old, unlocked, is a dead saver's
_TEMP = re.compile(r"\.graphnn-[A-Za-z0-9_]+\.tmp\Z")
_ITEMSIZE = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}

try:
    import fcntl                      # POSIX: a saver holds a lock on its temporary
except ImportError:                   # pragma: no cover - Windows: the age test alone
    fcntl = None


# -- the safetensors container ------------------------------------------------------
def _split(data: bytes, where: str, error=CheckpointError) -> tuple[dict, memoryview]:
    """The JSON header and the data block of a safetensors file's bytes."""
    if len(data) < 8:
        raise error(f"{where}: only {len(data)} bytes (truncated?)")
    (n,) = struct.unpack_from("<Q", data)
    if n > MAX_HEADER or 8 + n > len(data):
        raise error(f"{where}: its header length field says {n} bytes, the file has "
                    f"{len(data)} (truncated, or not a safetensors file)")
    try:
        header = json.loads(bytes(data[8:8 + n]).decode("utf-8"), parse_constant=_no_nan,
                            parse_float=finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise error(f"{where}: its header is not valid JSON (corrupted or truncated?)") from None
    if not isinstance(header, dict):
        raise error(f"{where}: its header is not a JSON object")
    return header, memoryview(data)[8 + n:]


def _no_nan(name):
    raise ValueError(name)


def _canonical(header: dict) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


def _digest(header: dict, block) -> str:
    """SHA-256 of the header without ``sha256`` (canonical JSON), then the data block."""
    meta = {k: v for k, v in header["__metadata__"].items() if k != "sha256"}
    h = hashlib.sha256(_canonical({**header, "__metadata__": meta}))
    h.update(block)
    return h.hexdigest()


def _pack(header: dict, block: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + block


def read_safetensors(path) -> tuple[dict, dict]:
    """Metadata and arrays (name -> float32/float64 array) of any safetensors file of
    floating-point tensors (F16, BF16, F32, F64); ``ValueError`` naming what is wrong
    otherwise.  Used for weights trained elsewhere; needs neither PyTorch nor the
    safetensors package.  F16 and BF16 come back as float32."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    where = f"{path!r} is not a safetensors file of floating-point tensors"
    header, block = _split(data, where, ValueError)
    meta = header.pop("__metadata__", {})
    entries = []
    for name, e in header.items():
        ok = isinstance(e, dict) and set(e) == {"dtype", "shape", "data_offsets"} \
            and e["dtype"] in _ITEMSIZE and isinstance(e["shape"], list) \
            and all(type(s) is int and s >= 0 for s in e["shape"]) \
            and isinstance(e["data_offsets"], list) and len(e["data_offsets"]) == 2 \
            and all(type(o) is int for o in e["data_offsets"])
        if not ok:
            raise ValueError(f"{where}: tensor {name!r} has a bad entry {str(e)[:80]} "
                             f"(dtype one of {', '.join(_ITEMSIZE)}, shape, data_offsets)")
        lo, hi = e["data_offsets"]
        if hi - lo != int(np.prod(e["shape"], dtype=object)) * _ITEMSIZE[e["dtype"]]:
            raise ValueError(f"{where}: tensor {name!r} has {hi - lo} bytes for shape {e['shape']}")
        entries.append((lo, hi, name, e))
    end = 0
    for lo, hi, name, _ in sorted(entries):
        if lo != end:
            raise ValueError(f"{where}: tensor {name!r} does not start where the previous ends")
        end = hi
    if end != len(block):
        raise ValueError(f"{where}: the data block has {len(block)} bytes, the tensors {end}")
    arrays = {}
    for lo, hi, name, e in entries:
        raw = block[lo:hi]
        if e["dtype"] == "BF16":          # the upper half of a float32
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, {"F16": "<f2", "F32": "<f4", "F64": "<f8"}[e["dtype"]])
            arr = arr.astype(np.float32 if e["dtype"] == "F16" else arr.dtype.newbyteorder("="))
        arrays[name] = arr.reshape(e["shape"])
    return (meta if isinstance(meta, dict) else {}), arrays


# -- checkpoints ----------------------------------------------------------------------
@dataclass
class Checkpoint:
    """A checkpoint's contents, validated: what ``load`` builds a model from."""
    graph: Graph
    loss: str
    optimizer: Optimizer
    dtype: np.dtype
    seed: int | None
    step: int
    epoch: int
    rng: dict
    dropout_key: int
    graphnn_version: str
    params: np.ndarray            # flat, in the model's parameter order
    state: np.ndarray             # flat: optimizer state slot 0, slot 1, ...


def _layout(plan, state_slots: int) -> list[tuple[str, tuple]]:
    """Tensor names and shapes in flat-buffer order: parameters, then each state slot."""
    names = [(s.name, tuple(s.shape)) for s in plan.params]
    return names + [(f"optimizer.{k}.{n}", shape) for k in range(state_slots)
                    for n, shape in names]


def to_bytes(net) -> bytes:
    """The checkpoint file's bytes for a compiled model (what ``save`` writes)."""
    from .version import __version__
    host = net.backend.to_host
    params, state = host(net.params), host(net.state)
    for what, arr in (("parameters", params), ("optimizer state", state)):
        if not np.isfinite(arr).all():
            raise ValueError(f"cannot save the model: its {what} contain NaN or Inf")
    meta = {
        "graphnn_checkpoint": str(FORMAT_VERSION), "graphnn_version": __version__,
        "dtype": net.dtype.name, "loss": net.loss.name,
        "optimizer": json.dumps(describe_optimizer(net.optimizer), allow_nan=False),
        "graph": json.dumps(describe_graph(net.model), allow_nan=False),
        "seed": json.dumps(None if net.seed is None else int(net.seed)),
        "step": str(int(net.step)), "epoch": str(int(getattr(net, "epoch", 0))),
        "rng": json.dumps(net.rng.bit_generator.state),
        "dropout_key": str(int(getattr(net, "_dropout_key", 0))),
    }
    header, offset = {"__metadata__": meta}, 0
    item = net.dtype.itemsize
    for name, shape in _layout(net.plan, net.optimizer.state_slots):
        size = int(np.prod(shape, dtype=np.int64)) * item
        header[name] = {"dtype": DTYPES[net.dtype.name], "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    little = net.dtype.newbyteorder("<")
    block = np.concatenate([params, state]).astype(little, copy=False).tobytes()
    meta["sha256"] = _digest(header, block)
    return _pack(header, block)


def from_bytes(data: bytes, where: str = "checkpoint", graph_cls=Graph) -> Checkpoint:
    """Verify and decode a checkpoint's bytes; ``CheckpointError`` naming what is wrong."""
    if data[:len(OLD_MAGIC)] == OLD_MAGIC:
        raise CheckpointError(
            f"{where} is a graphnn 0.1 checkpoint (format 1, before checkpoints became "
            f"safetensors files); this graphnn reads format {FORMAT_VERSION} only. To carry "
            "its weights over, load it with graphnn 0.1, save net.get_params() (np.savez), "
            "and set_params them on the same model built with this version")
    header, block = _split(data, f"{where} is not a graphnn checkpoint")
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or "graphnn_checkpoint" not in meta:
        raise CheckpointError(
            f"{where} is not a graphnn checkpoint: a safetensors file without graphnn's "
            "metadata (weights of a PyTorch nn.Sequential of nn.Linear layers load with "
            "net.load_torch_weights(path))")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise CheckpointError(f"{where}: __metadata__ must map strings to strings")
    if meta["graphnn_checkpoint"] != str(FORMAT_VERSION):
        raise CheckpointError(f"{where} has checkpoint format {meta['graphnn_checkpoint'][:20]!r}; "
                              f"this graphnn reads format {FORMAT_VERSION}")
    try:
        digest = _digest(header, block)
    except ValueError:             # not canonical-JSON serialisable: not what we wrote
        digest = None
    if meta.get("sha256") != digest:
        raise CheckpointError(f"{where} is corrupted or truncated: its checksum does not match")
    fields = check_metadata(meta, graph_cls)
    optimizer, dtype = fields["optimizer"], fields["dtype"]
    try:
        plan = lower(fields["graph"], check_loss(fields["loss"]))
    except ValueError as e:
        raise CheckpointError(f"checkpoint field graph: {e}") from None
    arrays = _tensors(header, block, _layout(plan, optimizer.state_slots), dtype)
    n = plan.n_params
    return Checkpoint(fields["graph"], fields["loss"], optimizer, dtype, fields["seed"],
                      fields["step"], fields["epoch"], fields["rng"], fields["dropout_key"],
                      fields["graphnn_version"], arrays[:n], arrays[n:])


def _tensors(header: dict, block, layout, dtype: np.dtype) -> np.ndarray:
    """The data block as one flat array, after checking that the tensor table is
    exactly the expected layout and every value is finite."""
    code, item = DTYPES[dtype.name], dtype.itemsize
    names = [name for name, _ in layout]
    stored = [k for k in header if k != "__metadata__"]
    missing = [k for k in names if k not in header]
    if missing:
        raise CheckpointError(f"checkpoint tensor {missing[0]!r} is missing "
                              f"(the graph and optimizer need {len(names)} tensors)")
    known = set(names)
    extra = [k for k in stored if k not in known]
    if extra:
        raise CheckpointError(f"checkpoint tensor {extra[0][:80]!r} is not part of the model")
    offset = 0
    for name, shape in layout:
        size = int(np.prod(shape, dtype=object)) * item
        want = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + size]}
        if header[name] != want:
            raise CheckpointError(f"checkpoint tensor {name!r}: entry {str(header[name])[:120]} "
                                  f"does not fit the stored graph (expected {want})")
        offset += size
    if offset != len(block):
        raise CheckpointError(f"checkpoint data block has {len(block)} bytes, "
                              f"the tensors {offset}")
    flat = np.frombuffer(block, dtype.newbyteorder("<")).astype(dtype.newbyteorder("="))
    bad = ~np.isfinite(flat)
    if bad.any():
        at = int(np.argmax(bad)) * item
        name = next(n for n in names if header[n]["data_offsets"][1] > at)
        raise CheckpointError(f"checkpoint tensor {name!r} holds NaN or Inf")
    return flat


def read(path, graph_cls=Graph) -> Checkpoint:
    """The verified, validated contents of the checkpoint at ``path`` (no compiling)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    return from_bytes(data, repr(path), graph_cls)


def load(path, cls, graph_cls=Graph):
    """Rebuild the compiled model saved in ``path`` as a ``cls`` (``model.CompiledModel``;
    passed in because this module sits below it): same outputs, ``fit`` resumes exactly."""
    ck = read(path, graph_cls)
    return build(ck, cls, repr(os.fspath(path)))


def build(ck: Checkpoint, cls, where: str = "checkpoint", metrics=None):
    """Compile the model a ``Checkpoint`` describes and put its state in place (``metrics``:
    what ``fit`` and ``evaluate`` report besides the loss; a checkpoint does not keep them)."""
    try:
        net = cls(ck.graph, loss=ck.loss, optimizer=ck.optimizer, seed=ck.seed, dtype=ck.dtype,
                  metrics=metrics)
    except ValueError as e:
        raise CheckpointError(f"{where} describes a model graphnn cannot build: {e}") from None
    if ck.params.size != net.plan.n_params or ck.state.size != net.state.size:
        raise CheckpointError(f"{where}: stored arrays do not fit the stored graph")
    net._put(net.params, ck.params)
    net._put(net.state, ck.state)
    net.step, net.epoch, net._dropout_key = ck.step, ck.epoch, ck.dropout_key
    net.rng.bit_generator.state = ck.rng
    return net


def is_checkpoint(path) -> bool:
    """Whether the file at ``path`` begins like a graphnn checkpoint (this format or
    graphnn 0.1's).  Reads only the first bytes; ``load`` still verifies everything."""
    try:
        with open(path, "rb") as f:
            head = f.read(8 + len(_SIGNATURE))
    except OSError:
        return False
    return head.startswith(OLD_MAGIC) or head[8:] == _SIGNATURE


# -- writing files ----------------------------------------------------------------------
def save(net, path) -> None:
    """Write ``net`` to ``path`` atomically (see the module docstring)."""
    write_atomic(path, to_bytes(net))


def write_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one.

    A symlink is written through, to its target, as ``open`` would.  A new file gets the
    umask's mode (like ``open``); a replaced one keeps its mode.  The temporary sits in
    the target's folder, locked while it is written; stale ones are removed first.
    """
    path = os.path.realpath(os.fspath(path))
    folder = os.path.dirname(path)
    remove_stale_temporaries(folder)
    try:
        keep_mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        keep_mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f".graphnn-{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)           # the umask applies, as for open()
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            if fcntl is not None:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                except OSError:                      # no locks here: the age test remains
                    pass
            f.write(data)
            f.flush()
            if keep_mode is not None and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), keep_mode)
            os.fsync(f.fileno())
            os.replace(tmp, path)                    # still locked: never looks stale
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                             # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete ``.graphnn-*.tmp`` files in ``folder`` that a killed saver left: regular
    files of ours, untouched for STALE_SECONDS and not locked by a live saver.  Returns
    the names removed; never raises."""
    try:
        names = [n for n in os.listdir(folder) if _TEMP.match(n)]
    except OSError:
        return []
    removed, now = [], time.time()
    for name in names:
        p = os.path.join(folder, name)
        try:
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < STALE_SECONDS or (
                    hasattr(os, "getuid") and st.st_uid != os.getuid()) or _locked(p):
                continue
            os.unlink(p)
            removed.append(name)
        except OSError:
            continue
    return removed


def _locked(path: str) -> bool:
    """Whether a live process holds the lock a saver takes on its temporary."""
    if fcntl is None:
        return False
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
