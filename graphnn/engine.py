"""Engine: a lowered graph, its generated kernels and its state (the compiled core).

State is four flat arrays: parameters, their gradients, optimizer state, and the
arena (workspace for activations and their gradients, sized for the largest batch
seen).  Every public method validates its input first (``validate.py``), then makes
one or a few kernel calls; no Python runs per layer.

Threads: the kernels share the arena and the gradient buffer, so every call that
touches the state holds the engine's lock (``_lock``); ``fit`` holds it for each chunk
of batches it hands to ``train_epoch``.  A ``predict`` from another thread therefore
sees the parameters between two chunks (whole epochs unless a progress bar is shown),
never half-updated ones.  The kernels hold the GIL, so the lock costs no parallelism.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from typing import Mapping

import numpy as np

from .compile import cpu
from .compile.plan import lower
from .graph import Graph
from .init import initialize
from .ir import METRIC_SUMS, STATS_SIZE
from .ops.dropout import NEXT_KEY
from .ops.losses import check_loss
from .optim import check_optimizer
from .validate import as_dtype, as_inputs, check_lengths, positive_int

PREDICT_ROWS = 1024      # rows per forward call in predict/evaluate (arena capacity)
COMPILING = "compiling kernels for this architecture (first time; cached afterwards) ..."


def _backend(device: str):
    """The backend class for ``device``; the CUDA one is imported only when asked for."""
    if device == "cuda":
        from .compile.cuda import CudaBackend
        return CudaBackend
    return cpu.CpuBackend


class Engine:
    """A graph compiled for one loss, optimizer, dtype and device: its kernels, parameters,
    optimizer state and workspace, with predict/evaluate/gradients/update.  Training epochs
    (``train.py``) and checkpoints (``io.py``) sit above it; ``model.CompiledModel`` joins them."""

    def __init__(self, model: Graph, loss: str = "mse", optimizer=None, seed: int | None = 0,
                 dtype="float32", device: str = "cpu", metrics=None, verbose: int = 0):
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        self.model = model
        self.dtype = as_dtype(dtype)
        self.loss = check_loss(loss)
        self.optimizer = check_optimizer(optimizer)
        self.seed = seed
        self.metrics = self._check_metrics(metrics)
        out_width = model.output.width
        if self.loss.targets == "labels" and out_width < 2:
            raise ValueError(f"loss {self.loss.name!r} needs an output of at least 2 logits, "
                             f"the model's output has width {out_width}; "
                             "use 'binary_cross_entropy' for a single logit")
        t0 = time.perf_counter()
        self.plan = lower(model, self.loss)
        self.backend = _backend(device)(self.plan, self.optimizer, self.dtype)

        init_rng, shuffle_seed = np.random.SeedSequence(seed).spawn(2)
        self.rng = np.random.default_rng(shuffle_seed)      # shuffling (and later dropout)
        params = np.zeros(self.plan.n_params, self.dtype)
        rng = np.random.default_rng(init_rng)
        for slot in self.plan.params:
            spec = slot.node.kernel_init if slot.local == "weight" else slot.node.bias_init
            self._view(params, slot)[...] = initialize(spec, slot.shape, rng, slot.name)
        dev = self.backend.to_device
        self.params = dev(params)
        self.grads = dev(np.zeros_like(params))
        self.state = dev(np.zeros(self.optimizer.state_slots * self.plan.n_params, self.dtype))
        self.arena = dev(np.zeros(0, self.dtype))
        self.step = 0                                       # training steps taken so far
        self.epoch = 0                                      # epochs trained so far
        self._dropout_key = 0                                # loss_and_grads' dropout masks
        self._lock = threading.RLock()      # held around every use of the shared buffers
        labels = self.loss.targets == "labels"
        # kernels are shared by every model of the same structure; only a new structure
        # (on a machine whose cache lacks it) compiles, for seconds: say so if asked
        is_compiled = getattr(self.backend, "is_compiled", None)
        self.compiled_new = not (is_compiled and is_compiled(labels))
        if verbose and self.compiled_new:
            print(COMPILING, end="", file=sys.stderr, flush=True)
        self.backend.compile(labels=labels)
        self.compile_seconds = time.perf_counter() - t0
        if verbose and self.compiled_new:
            print(f" {self.compile_seconds:.1f} s", file=sys.stderr, flush=True)

    def _check_metrics(self, metrics) -> list[str]:
        if metrics is None:
            return ["accuracy"] if self.loss.correct else []
        if isinstance(metrics, str):
            metrics = [metrics]
        allowed = (["accuracy"] if self.loss.correct else []) + (
            ["mse", "mae"] if self.loss.targets == "values" else [])
        for m in metrics:
            if m not in allowed:
                raise ValueError(f"metric {m!r} is not available with loss {self.loss.name!r}; "
                                 f"available: {', '.join(allowed) or 'none'}")
        return list(dict.fromkeys(metrics))

    def _metric_logs(self, stats: np.ndarray, rows: int, prefix: str = "") -> dict:
        """Turn the kernels' sums [correct, squared error, absolute error] into metrics (the
        model's metrics only: with none, stats may be empty)."""
        elems = rows * (1 if self.loss.targets == "labels" else self.model.output.width)
        return {prefix + m: float(stats[METRIC_SUMS[m]] / elems) for m in self.metrics}

    # -- kernels and buffers -----------------------------------------------------------
    def _ensure_arena(self, rows: int):
        with self._lock:
            cap = self.arena.size // self.plan.arena_width
            if cap < rows:
                self.arena = self.backend.to_device(
                    np.zeros(rows * self.plan.arena_width, self.dtype))

    @staticmethod
    def _view(flat: np.ndarray, slot) -> np.ndarray:
        return flat[slot.offset:slot.offset + slot.size].reshape(slot.shape)

    def _inputs(self, X) -> np.ndarray:
        return as_inputs(X, self.model.input.width, self.dtype)

    def _data(self, X, y):
        X = self._inputs(X)
        check_lengths(X, y)
        Y = self.loss.check_targets(y, X.shape[0], self.model.output.width, self.dtype)
        return X, Y

    # -- public API --------------------------------------------------------------------
    def predict(self, X, batch_size: int = PREDICT_ROWS) -> np.ndarray:
        """The graph's output for every row of X, computed ``batch_size`` rows at a time."""
        X = self._inputs(X)
        rows = min(positive_int(batch_size, "batch_size"), X.shape[0])
        dev = self.backend
        Xd = dev.to_device(X)
        out = dev.to_device(np.empty((X.shape[0], self.model.output.width), self.dtype))
        with self._lock:
            self._ensure_arena(rows)
            dev.predict(self.params, self.arena, Xd, out)
            return dev.to_host(out)

    def evaluate(self, X, y, batch_size: int = PREDICT_ROWS) -> dict:
        """Mean loss over the rows, and the compiled metrics (accuracy for classification)."""
        X, Y = self._data(X, y)
        rows = min(positive_int(batch_size, "batch_size"), X.shape[0])
        with self._lock:
            self._ensure_arena(rows)
            return self._evaluate(X, Y)

    def _evaluate(self, X: np.ndarray, Y: np.ndarray, prefix: str = "") -> dict:
        dev = self.backend
        stats = np.zeros(STATS_SIZE)
        Xd, Yd = dev.to_device(X), dev.to_device(Y)
        with self._lock:
            total = dev.evaluate(self.params, self.arena, Xd, Yd, stats)
        return {prefix + "loss": float(total / X.shape[0]),
                **self._metric_logs(stats, X.shape[0], prefix)}

    def loss_and_grads(self, X, y) -> tuple[float, "OrderedDict[str, np.ndarray]"]:
        """Mean loss over all rows and its gradient for every parameter (nothing is updated)."""
        X, Y = self._data(X, y)
        n = X.shape[0]
        dev = self.backend
        total = np.zeros(self.plan.n_params, np.float64)
        loss = 0.0
        with self._lock:             # the arena, the gradient buffer and the dropout key
            chunk = min(n, max(PREDICT_ROWS, self.arena.size // self.plan.arena_width))
            self._ensure_arena(chunk)
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                self._dropout_key = (self._dropout_key + NEXT_KEY) % 2 ** 31  # new masks each call
                part = dev.loss_and_grads(self.params, self.grads, self.arena,
                                          dev.to_device(X[start:stop]),
                                          dev.to_device(Y[start:stop]),
                                          dev.to_device(np.zeros(0, self.dtype)), self._dropout_key)
                w = (stop - start) / n
                loss += w * part
                total += w * dev.to_host(self.grads)
        grads = total.astype(self.dtype)
        return float(loss), OrderedDict(
            (s.name, self._view(grads, s).copy()) for s in self.plan.params)

    def apply_gradients(self, grads: Mapping[str, np.ndarray]) -> None:
        """One optimizer step with the given gradients (name -> array, as from loss_and_grads).

        With ``loss_and_grads`` this splits a training step in two, so gradients can be
        combined (summed across processes, clipped, ...) before the update.
        """
        flat = self._flat_from_dict(grads, "apply_gradients")
        with self._lock:
            self._put(self.grads, flat)
            self.step += 1
            lr = self.optimizer.schedule.value(self.epoch, self.step)
            self.backend.update(self.params, self.grads, self.state, self.dtype.type(lr),
                                self.step)

    def _flat_from_dict(self, values: Mapping[str, np.ndarray], what: str) -> np.ndarray:
        """Validate name -> array against the parameter slots; return one flat host array."""
        if not isinstance(values, Mapping):
            raise ValueError(f"{what} takes a dict name -> array, got {type(values).__name__}")
        expected = [s.name for s in self.plan.params]
        missing = [k for k in expected if k not in values]
        extra = [k for k in values if k not in expected]
        if missing or extra:
            raise ValueError(f"{what} names do not match the model: "
                             + (f"missing {missing}" if missing else "")
                             + ("; " if missing and extra else "")
                             + (f"unknown {extra}" if extra else "")
                             + f" (expected {expected})")
        flat = np.empty(self.plan.n_params, self.dtype)
        for s in self.plan.params:
            value = np.asarray(values[s.name])
            if value.shape != s.shape:
                raise ValueError(f"{what}: {s.name} has shape {value.shape}, expected {s.shape}")
            if not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_) \
                    or not np.isfinite(value).all():
                raise ValueError(f"{what}: {s.name} must hold finite real numbers")
            self._view(flat, s)[...] = value
        return flat

    def get_params(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter, in graph order: name -> array."""
        with self._lock:
            host = self.backend.to_host(self.params)
            return OrderedDict((s.name, self._view(host, s).copy()) for s in self.plan.params)

    def set_params(self, params: Mapping[str, np.ndarray]) -> None:
        """Replace every parameter; names and shapes must match ``get_params()`` exactly."""
        flat = self._flat_from_dict(params, "set_params")
        with self._lock:
            self._put(self.params, flat)

    def _snapshot(self) -> tuple:
        """Copies of the trainable state (parameters, optimizer state, step), kept where
        the state lives: on the GPU they never travel to the host."""
        copy = self.backend.copy
        with self._lock:
            return copy(self.params), copy(self.state), self.step

    def _restore(self, snap: tuple):
        params, state, step = snap
        with self._lock:
            self._put(self.params, params)
            self._put(self.state, state)
            self.step = step

    def summary(self) -> str:
        """A table of the layers: name, type, output shape, parameter count."""
        p = self.plan
        counts = {}
        for s in p.params:
            counts[s.node] = counts.get(s.node, 0) + s.size
        rows = [("Layer (type)", "Output shape", "Params", "Inputs")]
        for n in self.model.nodes:
            rows.append((f"{p.names[n]} ({n.describe()})", f"(None, {n.width})",
                         f"{counts.get(n, 0):,}", ", ".join(p.names[i] for i in n.inputs)))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        line = lambda r: "  ".join(v.ljust(wd) for v, wd in zip(r, widths)).rstrip()
        rule = "-" * len(line(rows[0]))
        out = [f"Model {self.model.name!r}: {self.dtype.name}, loss {self.loss.name}, "
               f"optimizer {self.optimizer!r}" + (f", fused {p.fused}" if p.fused else ""),
               rule, line(rows[0]), rule] + [line(r) for r in rows[1:]] + [
               rule, f"Total params: {p.n_params:,}"]
        return "\n".join(out)

    def source(self) -> str:
        """The generated code for this graph: on the CPU the glue that calls the kernel
        library (``library_source()``), on the GPU the whole kernel module."""
        return self.backend.source

    def library_source(self) -> str:
        """The CPU kernel library the glue calls (one module per dtype, every loop of
        graphnn in it, compiled once per machine), followed by the optimizer's update
        module (``compile/update.py``); a GPU model has none."""
        source = getattr(self.backend, "library_source", None)
        if source is None:
            raise ValueError("a GPU model's source() is its whole kernel module; only the "
                             "CPU backend has a kernel library")
        return source

    def _put(self, buffer, host: np.ndarray):
        """Overwrite a state buffer (params, grads, state) in place from a host array."""
        if self.backend.device == "cpu":
            buffer[...] = host
        else:
            buffer.copy_to_device(host)      # from a host array or a device one

    def __repr__(self):
        return (f"<{type(self).__name__} {self.model.name!r} params={self.plan.n_params} "
                f"loss={self.loss.name} dtype={self.dtype.name}>")
