"""The ``graphnn`` command line.

    graphnn train [RUN.toml] [--set key=value ...] [--out DIR [--overwrite]]
    graphnn eval CHECKPOINT [--data RUN.toml|FILE]
    graphnn predict CHECKPOINT INPUT.npy|INPUT.csv [--out preds.npy|preds.csv] [--proba|--classes]
    graphnn export CHECKPOINT --onnx OUT.onnx
    graphnn info
    graphnn source RUN.toml          graphnn summary RUN.toml
    graphnn bench [args]             (benchmarks/compare.py of a source checkout)

Exit status: 0 success, 1 training failed (the loss diverged), 2 a usage, run-file or
data error (reported in one message, never a traceback), 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from .runfile import RunFileError, load_run

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PREPROCESS_FILE = "preprocess.npz"


class UsageError(Exception):
    """A user error outside run files (bad arguments, unreadable inputs): exit status 2."""


def _err(message: str) -> None:
    print(f"graphnn: error: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------

def _recorder():
    from .callbacks import Callback

    class Recorder(Callback):
        """Every epoch's logs and wall time, kept even when fit raises."""

        def on_train_begin(self, logs=None):
            self.logs, self.seconds, self._t0 = [], [], None

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs):
            self.seconds.append(time.perf_counter() - (self._t0 or time.perf_counter()))
            self.logs.append(dict(logs))

        def history(self) -> dict:
            out: dict = {}
            for logs in self.logs:
                for k, v in logs.items():
                    out.setdefault(k, []).append(v)
            return out

    rec = Recorder()
    rec.on_train_begin()
    return rec


RUN_OUTPUTS = ("model.gnn", "run.toml", "metrics.csv", PREPROCESS_FILE)


def _check_out(out: str | None, overwrite: bool) -> None:
    """--out must be a folder (or not exist yet), and not an earlier run's unless --overwrite."""
    if not out:
        return
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {out!r} exists and is not a folder")
    earlier = [n for n in RUN_OUTPUTS if (path / n).exists()]
    if earlier and not overwrite:
        raise UsageError(f"--out {out!r} holds an earlier run ({', '.join(earlier)}); choose "
                         "another folder, or give --overwrite to replace its files")


def _out_dir(name: str, out: str | None) -> Path:
    if out:
        path = Path(out)
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path("runs") / f"{name}-{stamp}-{n}"
    path.mkdir(parents=True)
    return path


def _num(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if 1e-3 <= abs(v) < 1e5 or v == 0 else f"{v:.4g}"
    return str(v)


def _seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def _describe_data(run, data) -> str:
    d = run["data"]
    test = f", {len(data.X_test):,} test rows" if data.X_test is not None else ", no test set"
    std = ", standardized" if data.standardizer is not None else ""
    return (f"data: {d['source']}, {len(data.X_train):,} training rows{test}, "
            f"{data.in_dim} feature{'s' if data.in_dim != 1 else ''}{std}")


def _compiles_kernels(run) -> bool:
    """Whether this machine has yet to compile graphnn's kernels for the run (its first run
    on the CPU).  Only then is a background import worth it: the compile waits on LLVM and
    on the helper process, without Python's GIL; a cached start holds the GIL throughout,
    and an import beside it only slows it down."""
    if run["device"] != "cpu":
        return False
    from .compile import library
    lib = library.library(run["dtype"])
    return not any(lib.is_compiled(f"train_epoch_{t}") for t in library.TARGETS)


def cmd_train(args) -> int:
    import graphnn as gn
    _not_a_checkpoint(args, "train")
    distributed = gn.distributed.launched()      # mpiexec -n N graphnn train: data-parallel
    root = not distributed or gn.distributed.rank() == 0
    if not root:                                 # rank 0 prints and writes the outputs
        sys.stdout = open(os.devnull, "w")
    run = load_run(args.run, args.set)
    _check_out(args.out, args.overwrite)
    run.check_data_memory()
    verbose = run["verbose"]
    label = f"run file {args.run}" if args.run else "the built-in run"
    print(f"graphnn {gn.__version__}: training {run.name!r} ({label})", flush=True)
    data = run.load_data()
    run.fill_from_data(data)
    print(_describe_data(run, data), flush=True)
    run.check_data(data)                 # before the compile: it takes seconds
    run.check_model_memory(data.in_dim)
    if run["threads"]:
        gn.set_num_threads(run["threads"])
    if root and _compiles_kernels(run):  # seconds, mostly without the GIL: matplotlib
        from .plots import preload        # loads meanwhile, for the plots at the end
        preload()
    try:
        net = run.compile(data.in_dim, verbose=1 if root else 0)
    except (ValueError, ImportError) as e:
        raise UsageError(f"cannot build the model of {label}: {e}") from None
    if verbose:
        print(net.summary())
    print(f"compiled in {net.compile_seconds:.2f} s", flush=True)

    out = (gn.distributed.from_root(lambda: _out_dir(run.name, args.out)) if distributed
           else _out_dir(run.name, args.out))
    run_toml = out / "run.toml"
    if root:
        run_toml.write_text(run.dumps())
    if data.standardizer is not None and root:
        np.savez(out / PREPROCESS_FILE, mean=data.standardizer.mean_,
                 scale=data.standardizer.scale_)
    rec = _recorder()
    callbacks = run.build_callbacks(out) + [rec]
    failure = None
    t0 = time.perf_counter()
    try:
        net.fit(data.X_train, data.y_train, callbacks=callbacks, distributed=distributed,
                **run.fit_args(data))
    except gn.DivergenceError as e:
        failure = e
    except ValueError as e:
        if rec.logs:                     # a callback or schedule failing mid-run
            raise UsageError(f"training stopped after epoch {len(rec.logs)} of {label}: "
                             f"{e}") from None
        raise UsageError(f"the data does not fit the model of {label}: {e}") from None
    fit_seconds = time.perf_counter() - t0
    if not root:                                 # the other ranks' work ends with fit
        return EXIT_FAILED if failure is not None else EXIT_OK

    checkpoint = out / "model.gnn"
    net.save(checkpoint)
    history = rec.history()
    test = None
    if data.X_test is not None and failure is None:
        test = net.evaluate(data.X_test, data.y_test)

    plots, plot_note = [], ""
    if history:
        from .plots import PlotsUnavailable, plot_history
        try:
            plots = plot_history(history, out)
        except PlotsUnavailable as e:
            plot_note = e.message
    epochs = len(rec.logs)
    rows = [("epochs", f"{epochs} of {run['epochs']}"
             + (" (stopped early)" if epochs < run["epochs"] and failure is None else ""))]
    if rec.logs:
        last = rec.logs[-1]
        for k, v in last.items():
            if k.startswith("val_"):
                continue
            rows.append((f"final {k}", _num(v)))
        for k, v in last.items():
            if k.startswith("val_"):
                rows.append((f"final {k}", _num(v)))
    if test:
        for k, v in test.items():
            rows.append((f"test {k}", _num(v)))
    stopper = next((cb for cb in callbacks if type(cb).__name__ == "EarlyStopping"), None)
    if stopper is not None and stopper.best_epoch is not None:
        restored = (f"; weights of epoch {stopper.best_epoch + 1} restored"
                    if stopper.restore_best else "")
        rows.append(("best epoch", f"{stopper.best_epoch + 1} ({stopper.monitor} "
                                   f"{_num(stopper.best)}){restored}"))
    if rec.seconds:
        per = sum(rec.seconds) / len(rec.seconds)
        trained = len(data.X_train)
        if run["validation"]["split"]:
            trained -= int(round(trained * run["validation"]["split"]))
        median = statistics.median(rec.seconds)
        spread = (f"mean {_seconds(per)}, median {_seconds(median)}"
                  if len(rec.seconds) > 2 and abs(per - median) > 0.2 * median
                  else _seconds(per))
        rows.append(("time per epoch", f"{spread} ({trained:,} rows, "
                                       f"batch {run['batch_size']})"))
    rows.append(("training time", _seconds(fit_seconds)))
    rows.append(("compile", f"{net.compile_seconds:.2f} s"))
    rows.append(("checkpoint", str(checkpoint)))
    c = run["callbacks"]
    if c["csv"]:
        rows.append(("metrics", str(out / c["csv"]["path"])))
    if c["checkpoint"]:
        saved = getattr(next((cb for cb in callbacks
                              if type(cb).__name__ == "ModelCheckpoint"), None), "saved", [])
        rows.append(("best checkpoint", str(saved[-1]) if saved else "none saved"))
    rows.append(("run file", str(run_toml)))
    if plots:
        rows.append(("plots", ", ".join(str(p) for p in plots)))
    elif plot_note:
        rows.append(("plots", plot_note))
    if failure is not None:
        print(f"\ntraining failed: {failure}", file=sys.stderr)
        print(f"The last good parameters were saved. Outputs in {out}:")
    else:
        print(f"\nrun {run.name!r} done, outputs in {out}:")
    print(_table(rows), flush=True)
    return EXIT_FAILED if failure is not None else EXIT_OK


# ---------------------------------------------------------------------------------------
# eval and predict
# ---------------------------------------------------------------------------------------

CHECKPOINT_SUFFIXES = (".gnn", ".safetensors")


def looks_like_checkpoint(path) -> bool:
    """True for a file that is a checkpoint rather than a TOML run file: a checkpoint's
    suffix, graphnn's magic bytes, or a safetensors header (8-byte length, then '{')."""
    from .io import OLD_MAGIC
    p = Path(path)
    if p.suffix.lower() in CHECKPOINT_SUFFIXES:
        return True
    try:
        with open(p, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    # safetensors: a little-endian header length (text would make it astronomically large)
    return head.startswith(OLD_MAGIC) or (len(head) == 9 and head[8:9] == b"{"
                                             and int.from_bytes(head[:8], "little") < 2 ** 32)


def _not_a_checkpoint(args, what: str) -> None:
    run = getattr(args, "run", None)
    if run and looks_like_checkpoint(run):
        raise UsageError(f"{run!r} is a checkpoint (a trained model); `graphnn {what}` takes a "
                         "TOML run file (.toml). To continue from a checkpoint, use the "
                         f"run.toml beside it: graphnn {what} {Path(run).parent / 'run.toml'}")


def _load_checkpoint(path: str):
    import graphnn as gn
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no such checkpoint: {path!r}")
    try:
        return gn.load(p)
    except (gn.CheckpointError, ValueError, OSError) as e:
        raise UsageError(f"cannot load checkpoint {path!r}: {e}") from None


def _preprocess(checkpoint: str, X, raw: bool, input_name: str | None = None):
    """Apply the training run's standardization (preprocess.npz beside the checkpoint)."""
    f = Path(checkpoint).parent / PREPROCESS_FILE
    if raw or not f.is_file():
        return X, None
    with np.load(f) as z:
        mean, scale = z["mean"], z["scale"]
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != mean.shape[0]:
        hint = ""
        if X.ndim == 2 and X.shape[1] == mean.shape[0] + 1 and input_name is not None:
            hint = ("; if one column holds the labels, drop it with --label-column "
                    "(index or name, -1 for the last)")
        raise UsageError(f"the input has shape {X.shape}, but {f} standardizes "
                         f"{mean.shape[0]} features{hint}")
    return (X - mean) / scale, f


def _read_table(path: str, args, labels: bool):
    """(X, y) from a .npz, .npy or .csv file; y None when ``labels`` is False."""
    from . import datasets as ds
    p = Path(path)
    suffix = p.name.lower().removesuffix(".gz").rsplit(".", 1)[-1]
    try:
        if suffix == "npz":
            return ds.read_npz(p, x_key=args.x_key, y_key=args.y_key if labels else None)
        if suffix == "npy":
            X = ds.read_npy(p)
            if not labels:
                return X, None
            if not args.labels:
                raise UsageError(f"{path!r} holds features only: give the labels with "
                                 "--labels LABELS.npy")
            return X, ds.read_npy(args.labels)
        if suffix == "csv":
            if not labels and args.label_column is None:
                return ds.read_csv(p, label_column=None)
            col = args.label_column if args.label_column is not None else "-1"
            try:
                col = int(col)
            except ValueError:
                pass                         # a column name
            X, y = ds.read_csv(p, label_column=col)
            return X, (y if labels else None)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    raise UsageError(f"cannot read {path!r}: use a .npz, .npy or .csv file "
                     "(or a run file, .toml)")


def _targets(net, y):
    y = np.asarray(y)
    if net.loss.targets == "values" and y.ndim == 1:
        y = y.reshape(-1, 1)
    return y


def cmd_eval(args) -> int:
    src = args.data
    if src is None:
        src = str(Path(args.checkpoint).parent / "run.toml")
        if not Path(src).is_file():
            raise UsageError(f"there is no run.toml beside {args.checkpoint!r} to take the test "
                             "split from; give the data with --data RUN.toml or --data FILE "
                             "(.npz, .npy, .csv)")
    if src.lower().endswith(".toml"):
        run = load_run(src, args.set)
        run.check_data_memory()
        net = _load_checkpoint(args.checkpoint)
        data = run.load_data()
        if args.split == "train":
            X, y = data.X_train, data.y_train
        elif data.X_test is None:
            raise UsageError(f"run file {src} has no test set (data.test_size = 0); "
                             "use --split train")
        else:
            X, y = data.X_test, data.y_test
        what = f"{run['data']['source']} {args.split} split of {src}"
        metrics = run["metrics"]
    else:
        if args.set:
            raise UsageError("--set applies to a run file; --data names a data file")
        net = _load_checkpoint(args.checkpoint)
        X, y = _read_table(src, args, labels=True)
        X, pre = _preprocess(args.checkpoint, X, args.raw)
        what = src + (f" (standardized with {pre})" if pre else "")
        metrics = (["accuracy"] if net.loss.correct else []) + (
            ["mse", "mae"] if net.loss.targets == "values" else [])
    try:
        net.metrics = net._check_metrics(metrics)
        result = net.evaluate(X, _targets(net, y))
    except ValueError as e:
        raise UsageError(f"cannot evaluate {args.checkpoint} on {what}: {e}") from None
    print(f"{args.checkpoint} on {what} ({len(X):,} rows):")
    print(_table([(k, _num(v)) for k, v in result.items()]))
    return EXIT_OK


PREDICT_FORMATS = (".npy", ".csv")


def _probabilities(net, out: np.ndarray) -> np.ndarray:
    """Class probabilities from the model's outputs: softmax (cross-entropy) or sigmoid
    (binary cross-entropy) of the logits, unless the model's last layer already applies it."""
    if net.loss.name not in ("cross_entropy", "binary_cross_entropy"):
        raise UsageError(f"--proba needs a classifier; this model was trained with loss "
                         f"{net.loss.name!r}, so its outputs are values, not logits")
    if net.plan.fused is not None:        # ends in softmax / sigmoid: already there
        return out
    z = out.astype(np.float64)
    if net.loss.name == "cross_entropy":
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return (z / z.sum(axis=1, keepdims=True)).astype(out.dtype)
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(out.dtype)       # sigmoid, no overflow


def _classes(net, out: np.ndarray) -> np.ndarray:
    if out.shape[1] > 1:
        return out.argmax(axis=1)
    if net.loss.name == "binary_cross_entropy" and net.plan.fused is not None:
        return (out[:, 0] >= 0.5).astype(np.int64)      # a sigmoid output
    return (out[:, 0] > 0).astype(np.int64)             # a logit


def cmd_predict(args) -> int:
    path = Path(args.out)
    if path.suffix.lower() not in PREDICT_FORMATS:
        raise UsageError(f"--out {args.out!r}: name a .npy or .csv file (the extension says "
                         "the format)")
    net = _load_checkpoint(args.checkpoint)
    X, _ = _read_table(args.input, args, labels=False)
    X, pre = _preprocess(args.checkpoint, X, args.raw, input_name=args.input)
    width = net.model.input.width
    if getattr(X, "ndim", 0) == 2 and X.shape[1] == width + 1 and args.label_column is None:
        raise UsageError(f"{args.input} has {X.shape[1]} columns but {args.checkpoint} takes "
                         f"{width} features: if one column holds the labels, drop it with "
                         "--label-column (index or name, -1 for the last)")
    try:
        out = net.predict(X)
    except ValueError as e:
        raise UsageError(f"cannot predict with {args.checkpoint} on {args.input}: {e}") from None
    if args.classes:
        out = _classes(net, out)
    elif args.proba:
        out = _probabilities(net, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        np.savetxt(path, out.reshape(len(out), -1), delimiter=",",
                   fmt="%d" if args.classes else "%.9g")
    else:
        np.save(path, out)
    shape = ("class labels" if args.classes else
             f"class probabilities of width {out.shape[1]}" if args.proba else
             f"outputs of width {out.shape[1]}")
    print(f"wrote {len(out):,} rows of {shape} to {path}"
          + (f" (inputs standardized with {pre})" if pre else ""))
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------

def cmd_export(args) -> int:
    """The checkpoint's inference graph as an ONNX file (graphnn/onnx_export.py)."""
    from .onnx_export import require_onnx
    try:
        require_onnx()                   # before the checkpoint compiles
    except ImportError as e:
        raise UsageError(str(e)) from None
    net = _load_checkpoint(args.checkpoint)
    path = Path(args.onnx)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        model = net.to_onnx(path, opset=args.opset)
    except ValueError as e:
        raise UsageError(f"cannot export {args.checkpoint} to ONNX: {e}") from None
    graph = model.graph
    print(f"wrote {path}: ONNX opset {model.opset_import[0].version}, input "
          f"{graph.input[0].name!r} (batch, {net.model.input.width}) {net.dtype.name}, output "
          f"{graph.output[0].name!r} (batch, {net.model.output.width}), {len(graph.node)} nodes")
    return EXIT_OK


def _add_export_parser(sub) -> None:
    x = sub.add_parser("export", help="write a checkpoint's inference graph as an ONNX file",
                       description="Write the inference graph of a saved model (Dropout left "
                                   "out, a final softmax/sigmoid kept) as an ONNX model with a "
                                   "dynamic batch dimension. Needs: pip install \"graphnn[onnx]\"")
    x.add_argument("checkpoint", metavar="CHECKPOINT")
    x.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    x.add_argument("--opset", type=int, default=None, metavar="N",
                   help="ONNX operator set, 13 or later (default 17, or 20 when a gelu needs "
                        "the Gelu operator)")
    x.set_defaults(func=cmd_export)


# ---------------------------------------------------------------------------------------
# source, summary
# ---------------------------------------------------------------------------------------

def _compiled(args):
    run = load_run(args.run, args.set)
    run.check_data_memory()
    data = run.load_data()
    run.fill_from_data(data)
    run.check_model_memory(data.in_dim)
    try:
        return run.compile(data.in_dim)
    except (ValueError, ImportError) as e:
        raise UsageError(f"cannot build the model of {args.run}: {e}") from None


def _net_of(args):
    """A checkpoint's network, or the model of a run file compiled."""
    if args.run and looks_like_checkpoint(args.run):
        if args.set:
            raise UsageError("--set applies to a run file, not to a checkpoint")
        return _load_checkpoint(args.run)
    return _compiled(args)


def cmd_source(args) -> int:
    print(_net_of(args).source())
    return EXIT_OK


def cmd_summary(args) -> int:
    print(_net_of(args).summary())
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------

def _cpu() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:                   # noqa: BLE001 - any import failure means "absent"
        return "not installed"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_info(args) -> int:
    import numba

    import graphnn as gn
    from .compile import cache
    from .threads import blas_info
    rows = [("graphnn", f"{gn.__version__} ({Path(gn.__file__).parent})"),
            ("Python", f"{platform.python_version()} ({sys.executable})"),
            ("NumPy", np.__version__), ("Numba", numba.__version__),
            ("SciPy", _version("scipy")),
            ("OS", platform.platform())]
    model, flags = _cpu()
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                        "avx512_vnni", "avx512_bf16", "amx_tile", "neon", "asimd") if f in flags]
    rows += [("CPU", model), ("CPU cores", str(os.cpu_count())),
             ("SIMD", ", ".join(simd) if simd else "unknown")]
    hint = None
    try:
        blas = blas_info()
    except Exception as e:              # noqa: BLE001 - report, do not fail
        blas, hint = [], None
        rows.append(("BLAS", f"unknown ({e})"))
    for i, b in enumerate(blas):
        origin = _blas_origin(b.get("filepath") or "")
        rows.append((f"BLAS {i + 1}", f"{b.get('internal_api')} {b.get('version') or ''}, "
                                      f"core {b.get('architecture')}, "
                                      f"{b.get('num_threads')} threads, {origin}: "
                                      f"{b.get('filepath')}"))
        if ("avx512f" in flags and b.get("internal_api") == "openblas"
                and str(b.get("architecture", "")).lower() == "haswell"):
            hint = ("this CPU has AVX-512 but OpenBLAS runs its Haswell (AVX2) kernels; try "
                    "OPENBLAS_CORETYPE=SKYLAKEX in the environment for faster matrix products")
    rows += [("threads", f"graphnn (BLAS) {gn.get_num_threads()}, "
                         f"Numba {numba.get_num_threads()}"),
             ("OPENBLAS_CORETYPE", os.environ.get("OPENBLAS_CORETYPE", "not set"))]
    rows.append(("CUDA", _cuda()))
    files, nbytes = cache.size()
    rows.append(("compile cache", f"{cache.directory()} ({files} files, {_size(nbytes)}"
                                  f"{'' if cache.enabled() else ', disabled by GRAPHNN_NO_CACHE'})"))
    print(_table(rows))
    if hint:
        print(f"\nhint: {hint}")
    return EXIT_OK


def _blas_origin(path: str) -> str:
    parts = Path(path).parts
    if any(p in ("numpy", "numpy.libs") for p in parts):
        return "NumPy's"
    if any(p in ("scipy", "scipy.libs") for p in parts):
        return "SciPy's (graphnn's kernels call it)"
    return "loaded"


def _cuda() -> str:
    """CUDA availability; numba.cuda is imported only here."""
    if importlib.util.find_spec("numba_cuda") is None:
        return ('not available: numba-cuda is not installed (pip install "graphnn[cuda]" '
                "on a machine with an NVIDIA GPU)")
    try:
        cuda = importlib.import_module("numba.cuda")
    except Exception as e:              # noqa: BLE001
        return f"numba.cuda not importable ({type(e).__name__}: {e})"
    try:
        if not cuda.is_available():
            return (f"not available: no CUDA driver or GPU found (numba-cuda "
                    f"{_version('numba_cuda')} is installed)")
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        cc = getattr(dev, "compute_capability", None)
        return f"available: {name}" + (f", compute capability {cc[0]}.{cc[1]}" if cc else "")
    except Exception as e:              # noqa: BLE001
        return f"not available ({type(e).__name__}: {e})"


# ---------------------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------------------

def compare_script() -> Path:
    """benchmarks/compare.py of the source checkout this graphnn was imported from."""
    return Path(__file__).resolve().parent.parent / "benchmarks" / "compare.py"


def cmd_bench(argv: list[str]) -> int:
    script = compare_script()
    if not script.is_file():
        _err(f"graphnn bench runs benchmarks/compare.py of a source checkout, and there is "
             f"none at {script} (graphnn is installed without its sources); clone the "
             "repository and run `pip install -e .` there")
        return EXIT_USAGE
    spec = importlib.util.spec_from_file_location("graphnn_benchmarks_compare", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    old_path, old_argv0 = list(sys.path), sys.argv[0] if sys.argv else ""
    sys.path.insert(0, str(script.parent))
    if sys.argv:
        sys.argv[0] = "graphnn bench"      # argparse's prog in its usage and errors
    try:
        spec.loader.exec_module(module)
        if not callable(getattr(module, "main", None)):
            _err(f"{script} has no main(argv) function")
            return EXIT_USAGE
        result = module.main(argv)
    except SystemExit as e:             # its argparse: --help (0) or a usage error (2)
        result = e.code if isinstance(e.code, int) or e.code is None else EXIT_USAGE
    finally:
        sys.path[:] = old_path
        if sys.argv:
            sys.argv[0] = old_argv0
    # main() may return an exit status, or its results (a dict) when it succeeded
    return result if isinstance(result, int) and not isinstance(result, bool) else EXIT_OK


# ---------------------------------------------------------------------------------------
# parser and main
# ---------------------------------------------------------------------------------------

RUN_HELP = ("a TOML run file (see README, 'Command line'); every key has a default. "
            "Without one: the built-in run, an MLP 64-128-10 on the handwritten digits")
SET_HELP = ("override a run-file key, dotted, value as TOML: --set optimizer.lr=0.05 "
            "--set epochs=3 --set model.layers.0.units=64 --set data.source=moons (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__
    p = argparse.ArgumentParser(
        prog="graphnn",
        description="Train, evaluate and inspect graphnn networks (compiled to Numba kernels).",
        epilog="Exit status: 0 success, 1 training failed (diverged), 2 usage or run-file error.")
    p.add_argument("--version", action="version", version=f"graphnn {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model described by a run file",
                       description="Train the run a TOML file describes (or the built-in one) "
                                   "and write model.gnn, metrics.csv, run.toml and plots.")
    t.add_argument("run", nargs="?", metavar="RUN.toml", help=RUN_HELP)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    t.add_argument("--out", metavar="DIR",
                   help="output folder (default runs/<name>-<date>-<time>); an earlier "
                        "run's folder only with --overwrite")
    t.add_argument("--overwrite", action="store_true",
                   help="let --out replace the files of an earlier run in that folder")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint on a run's test set or a data file",
                       description="Evaluate a saved model (model.gnn) on the test split of "
                                   "its run (the run.toml beside it, or --data RUN.toml), or "
                                   "on a .npz/.npy/.csv data file.")
    e.add_argument("checkpoint", metavar="CHECKPOINT")
    e.add_argument("--data", metavar="RUN.toml|FILE",
                   help="a run file (its test split) or a .npz, .npy or .csv file "
                        "(default: the run.toml beside the checkpoint)")
    e.add_argument("--split", choices=("test", "train"), default="test",
                   help="with a run file: which part to evaluate on (default test)")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    _data_file_options(e, labels=True)
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("predict", help="run a checkpoint on inputs, save the outputs",
                       description="Compute the model's output for every row of INPUT and "
                                   "save one row per input row: by default the model's raw "
                                   "outputs (logits for a classifier, values for a "
                                   "regression), with --proba the class probabilities, with "
                                   "--classes the predicted class. The format is the one "
                                   "--out names: .npy (a NumPy array) or .csv (comma-"
                                   "separated, no header).")
    r.add_argument("checkpoint", metavar="CHECKPOINT")
    r.add_argument("input", metavar="INPUT", help="a .npy, .csv or .npz file of feature rows")
    r.add_argument("--out", default="preds.npy", metavar="FILE",
                   help="where to write the predictions: FILE.npy or FILE.csv "
                        "(default preds.npy)")
    kind = r.add_mutually_exclusive_group()
    kind.add_argument("--classes", action="store_true",
                      help="write the predicted class (an integer per row) instead of the "
                           "raw outputs")
    kind.add_argument("--proba", action="store_true",
                      help="write the class probabilities (softmax, or sigmoid for one "
                           "logit) instead of the raw outputs")
    _data_file_options(r, labels=False)
    r.set_defaults(func=cmd_predict)

    _add_export_parser(sub)

    i = sub.add_parser("info", help="versions, CPU, BLAS, threads, CUDA, compile cache")
    i.set_defaults(func=cmd_info)

    for name, fn, what in (("source", cmd_source, "print the generated kernel source"),
                           ("summary", cmd_summary, "print the layer table")):
        s = sub.add_parser(name, help=f"{what} of a run's model or a checkpoint",
                           description=f"Compile a run file's model (or load a checkpoint) "
                                       f"and {what}.")
        s.add_argument("run", nargs="?", metavar="RUN.toml|CHECKPOINT",
                       help=RUN_HELP + "; or a checkpoint (model.gnn)")
        s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help=SET_HELP)
        s.set_defaults(func=fn)

    sub.add_parser("bench", help="side-by-side benchmark (benchmarks/compare.py; "
                                 "arguments go to it)", add_help=False)
    return p


def _data_file_options(p, labels: bool):
    p.add_argument("--x-key", default="X", help="feature array in a .npz file (default X)")
    if labels:
        p.add_argument("--y-key", default="y", help="label array in a .npz file (default y)")
        p.add_argument("--labels", metavar="LABELS.npy",
                       help="labels for features given as a .npy file")
        p.add_argument("--label-column", default="-1",
                       help="label column of a .csv file: index or name (default -1, the last)")
    else:
        p.add_argument("--label-column", default=None,
                       help="a label column to drop from a .csv file: index or name "
                            "(-1 the last; default: every column is a feature)")
    p.add_argument("--raw", action="store_true",
                   help=f"do not apply the training run's standardization ({PREPROCESS_FILE} "
                        "beside the checkpoint)")


def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return cmd_bench(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:             # --help (0) or a usage error (2, already printed)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except RunFileError as e:
        _err(str(e))
        return EXIT_USAGE
    except UsageError as e:
        _err(str(e))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:             # graphnn source | head
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except OSError as e:                # a folder that cannot be written, a full disk, ...
        _err(str(e))
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
