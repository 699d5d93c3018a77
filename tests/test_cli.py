"""End-to-end tests of the ``graphnn`` command line, run in tmp folders.

Commands run in-process through ``graphnn.cli.main(argv)`` (a few through
``python -m graphnn``, to check the real entry point).  The runs reuse a handful of
graphs (the digits MLP 64-128-10, the line y = m x + c, the moons MLP) so that the
compile cache keeps the whole file fast.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graphnn import cli
from graphnn import runfile
from graphnn.runfile import RunFileError, load_run, tomllib   # tomllib, or tomli before 3.11

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "examples" / "runs"

pytest.importorskip("sklearn")          # the default run is the digits


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of ``graphnn argv...``."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def has_matplotlib() -> bool:
    from graphnn.plots import available
    return available()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The built-in run for 2 epochs: its output folder (model.gnn, run.toml, ...)."""
    out = tmp_path_factory.mktemp("trained") / "digits"
    code = cli.main(["train", "--set", "epochs=2", "--set", "verbose=0", "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture()
def no_data_loading(monkeypatch):
    """Fail the test if a command gets as far as loading data."""
    def boom(self):
        raise AssertionError("data was loaded before the run file was checked")
    monkeypatch.setattr(runfile.Run, "load_data", boom)


# -- train ----------------------------------------------------------------------------------

def test_default_run_writes_everything(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "train", "--set", "epochs=2")
    assert code == 0, err
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("digits-")
    run_dir = folders[0]
    for name in ("model.gnn", "metrics.csv", "run.toml"):
        assert (run_dir / name).is_file(), name
    # metrics.csv: one row per epoch
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]   # 1-based, as the console and the plots
    assert {"loss", "accuracy"} <= set(rows[0])
    # run.toml: every default filled in, plus the version
    doc = tomllib.loads((run_dir / "run.toml").read_text())
    import graphnn as gn
    assert doc["graphnn_version"] == gn.__version__
    assert doc["epochs"] == 2 and doc["batch_size"] == 32 and doc["seed"] == 0
    assert doc["loss"] == "cross_entropy" and doc["metrics"] == ["accuracy"]
    assert doc["data"] == {"source": "digits", "test_size": 0.25, "stratify": True,
                           "standardize": False, "seed": 0}
    assert [(l["type"], l["units"], l["activation"]) for l in doc["model"]["layers"]] == [
        ("Dense", 128, "relu"), ("Dense", 10, "linear")]
    assert doc["optimizer"] == {"name": "SGD", "lr": 0.1, "momentum": 0.0, "nesterov": False,
                                "weight_decay": 0.0}
    assert set(doc) >= {"validation", "callbacks", "dtype", "device", "verbose", "shuffle"}
    # the summary table
    for text in ("epochs", "2 of 2", "final loss", "test accuracy", "time per epoch",
                 "compile", str(Path("runs", run_dir.name, "model.gnn")),
                 str(Path("runs", run_dir.name, "run.toml"))):
        assert text in out, text
    if has_matplotlib():
        assert (run_dir / "loss.png").is_file() and (run_dir / "accuracy.png").is_file()
    else:
        assert "plots skipped" in out
    assert "Traceback" not in err


def test_resolved_run_file_reproduces_the_run(trained, tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", trained / "run.toml", "--out", tmp_path / "again")
    assert code == 0, err
    first = (trained / "metrics.csv").read_text()
    assert (tmp_path / "again" / "metrics.csv").read_text() == first


def test_run_file_with_sets_validation_callbacks_and_no_matplotlib(tmp_path, monkeypatch,
                                                                     capsys):
    import graphnn.plots

    def no_matplotlib(*args, **kwargs):                         # as if not installed
        raise graphnn.plots.PlotsUnavailable()
    monkeypatch.setattr(graphnn.plots, "_figure", no_matplotlib)
    out_dir = tmp_path / "moons"
    code, out, err = run_cli(capsys, "train", RUNS / "moons.toml", "--out", out_dir,
                             "--set", "epochs=4", "--set", "data.n=300",
                             "--set", "verbose=0", "--set", "callbacks.early_stopping.patience=1",
                             "--set", "optimizer.lr.gamma=0.9")
    assert code == 0, err
    doc = tomllib.loads((out_dir / "run.toml").read_text())
    assert doc["name"] == "moons" and doc["epochs"] == 4 and doc["data"]["n"] == 300
    assert doc["data"]["standardize"] is True and doc["validation"]["split"] == 0.2
    assert doc["callbacks"]["early_stopping"]["patience"] == 1
    assert doc["callbacks"]["early_stopping"]["monitor"] == "val_loss"
    assert doc["optimizer"]["lr"] == {"type": "ExponentialDecay", "lr": 0.01, "gamma": 0.9}
    assert doc["optimizer"]["betas"] == [0.9, 0.999]
    assert (out_dir / "best.gnn").is_file()                     # the checkpoint callback
    assert (out_dir / "preprocess.npz").is_file()               # the standardization
    with open(out_dir / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert {"val_loss", "val_accuracy"} <= set(header)
    assert "plots skipped: matplotlib is not installed" in out
    assert not list(out_dir.glob("*.png"))


def test_set_overrides_resolve(tmp_path):
    run = load_run(None, ["optimizer.lr=0.05", "epochs=3", "model.layers.0.units=64",
                          "data.source=moons", "model.layers.1.units=32",
                          "model.layers.1.activation=softmax",
                          'model.layers.2={type="Dropout", rate=0.1}',
                          "model.layers.3={type=\"Dense\"}", "callbacks.checkpoint=true",
                          "optimizer.lr.type=CosineDecay"])
    doc = run.resolved()
    assert doc["optimizer"]["lr"] == {"type": "CosineDecay", "lr": 0.05, "min_lr": 0.0}
    assert doc["epochs"] == 3
    assert doc["data"]["source"] == "moons" and doc["data"]["n"] == 1000
    layers = doc["model"]["layers"]
    assert layers[0]["units"] == 64 and layers[1]["activation"] == "softmax"
    assert layers[1]["units"] == 32
    assert layers[2] == {"type": "Dropout", "rate": 0.1} and "units" not in layers[3]
    assert doc["callbacks"]["checkpoint"]["monitor"] == "loss"
    # what only the data says: the last layer's width and the schedule's length
    data = run.load_data()
    run.fill_from_data(data)
    assert run["model"]["layers"][3]["units"] == 2
    assert run["optimizer"]["lr"]["total"] == 3 * 24              # 750 rows / 32 -> 24 steps


def test_only_the_last_layer_may_leave_out_units():
    with pytest.raises(RunFileError, match="model.layers.1.units: missing: only the last"):
        load_run(None, ['model.layers.2={type="Dense", units=3}'])
    run = load_run(None, ["data.source=sine"])          # the built-in layers, new data
    assert run["loss"] == "mse" and run["name"] == "sine"
    run.fill_from_data(run.load_data())
    assert run["model"]["layers"][-1]["units"] == 1


def test_set_values_are_toml_or_plain_strings():
    assert runfile.parse_set("a.b=0.05") == (["a", "b"], 0.05)
    assert runfile.parse_set("a=[1, 2]") == (["a"], [1, 2])
    assert runfile.parse_set("a=true") == (["a"], True)
    assert runfile.parse_set("data.source=moons") == (["data", "source"], "moons")
    assert runfile.parse_set('name="x y"') == (["name"], "x y")
    with pytest.raises(RunFileError, match="key=value"):
        runfile.parse_set("epochs")


def test_csv_data_file_relative_to_the_run_file(tmp_path, monkeypatch, capsys):
    from graphnn.datasets import load_digits
    X, y = load_digits()
    sub = tmp_path / "project"
    sub.mkdir()
    np.savetxt(sub / "digits.csv", np.column_stack([X, y]), delimiter=",", fmt="%.6g")
    (sub / "run.toml").write_text('name = "csvrun"\nepochs = 1\nverbose = 2\n'
                                  '[data]\nsource = "csv"\npath = "digits.csv"\n'
                                  "test_size = 0.2\n")
    monkeypatch.chdir(tmp_path)                  # not the run file's folder
    code, out, err = run_cli(capsys, "train", sub / "run.toml", "--out", tmp_path / "o")
    assert code == 0, err
    assert "epoch 1/1" in out and "1,437 training rows, 360 test rows, 64 features" in out
    doc = tomllib.loads((tmp_path / "o" / "run.toml").read_text())
    assert doc["data"]["path"] == str(sub / "digits.csv")
    assert doc["model"]["layers"][-1]["units"] == 10             # from the labels


def test_divergence_exits_1(tmp_path, capsys):
    (tmp_path / "line.toml").write_text(
        'dtype = "float64"\nepochs = 200\nverbose = 0\n[data]\nsource = "line"\n'
        '[model]\nlayers = [{type = "Dense", units = 1}]\n[optimizer]\nlr = 1000.0\n')
    code, out, err = run_cli(capsys, "train", tmp_path / "line.toml", "--out", tmp_path / "o")
    assert code == 1
    assert "training failed: the loss became" in err and "Traceback" not in err
    assert (tmp_path / "o" / "model.gnn").is_file()
    assert "from the end of epoch" in err                   # a later epoch diverged
    code, out, err = run_cli(capsys, "train", tmp_path / "line.toml", "--out", tmp_path / "o1",
                             "--set", "optimizer.lr=1e200")
    assert code == 1 and "in epoch 1" in err                # the very first epoch
    assert "the initial parameters (from before training) were restored" in err


# -- run-file errors: exit 2, the file, the key, what is allowed, before any data -------------

ERRORS = [
    # (run file text or None, --set items, expected fragments of the message)
    ('epochs = 3\n[optimizer]\nlrr = 0.1\n', [],
     ["bad.toml", "optimizer.lrr", "unknown key", "did you mean 'lr'", "momentum"]),
    ('epoch = 3\n', [], ["bad.toml", "epoch", "unknown key", "batch_size"]),
    ('epochs = "ten"\n', [], ["bad.toml", "epochs", "must be an integer", "'ten'"]),
    ('[model]\nlayers = [{type = "Conv2D", units = 3}]\n', [],
     ["bad.toml", "model.layers.0.type", "unknown layer type 'Conv2D'", "Dense, Dropout"]),
    ('loss = "hinge"\n', [], ["bad.toml", "loss", "'hinge'", "cross_entropy"]),
    ('[optimizer]\nname = "Adagrad"\n', [],
     ["bad.toml", "optimizer.name", "'Adagrad'", "SGD, Adam, AdamW, RMSprop"]),
    ('[model]\nlayers = [{type = "Dense", units = 8, activation = "swish"}, '
     '{type = "Dense"}]\n', [],
     ["bad.toml", "model.layers.0.activation", "'swish'", "relu", "tanh"]),
    ('[data]\nsource = "npz"\npath = "missing.npz"\n', [],
     ["bad.toml", "data.path", "missing.npz", "not found"]),
    ('[data]\nsource = "csv"\n', [], ["data.path", "missing", "csv"]),
    ('[data]\nsource = "imagenet"\n', [], ["data.source", "'imagenet'", "moons", "csv"]),
    ('metrics = ["f1"]\n', [], ["metrics", "'f1'", "accuracy"]),
    ('[callbacks]\nearly_stopping = {monitor = "val_loss"}\n', [],
     ["callbacks.early_stopping.monitor", "val_loss", "validation.split"]),
    ('[optimizer]\nlr = {type = "StepDecay", lr = 0.1}\n', [],
     ["optimizer.lr.step_size", "missing"]),
    ('[optimizer]\nmomentum = 1.5\n', [], ["optimizer.momentum", "[0, 1)"]),
    ('epochs = [\n', [], ["bad.toml", "not valid TOML"]),
    (None, ["optimizer.lr=-1"], ["--set optimizer.lr=-1", "optimizer.lr", "> 0"]),
    (None, ["model.layers.7.units=3"], ["--set model.layers.7.units=3", "list of 2"]),
    (None, ["epochs"], ["--set takes key=value"]),
    (None, ["data.source=fashion_mnist", "data.path=/nonexistent/fm"],
     ["data.path", "/nonexistent/fm", "apt-get install dataset-fashion-mnist"]),
]


@pytest.mark.parametrize("text, sets, fragments", ERRORS,
                         ids=[f"{i}-{(e[0] or ' '.join(e[1]))[:24]}" for i, e in enumerate(ERRORS)])
def test_run_file_errors(text, sets, fragments, tmp_path, monkeypatch, capsys, no_data_loading):
    monkeypatch.chdir(tmp_path)
    argv = ["train"]
    if text is not None:
        (tmp_path / "bad.toml").write_text(text)
        argv.append("bad.toml")
    for s in sets:
        argv += ["--set", s]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("graphnn: error: ") and "Traceback" not in err
    for f in fragments:
        assert f in err, (f, err)
    assert not (tmp_path / "runs").exists()                  # nothing written


def test_missing_run_file(tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", tmp_path / "nope.toml")
    assert code == 2 and "no such run file" in err


def test_usage_errors(capsys):
    assert run_cli(capsys, "frobnicate")[0] == 2
    assert run_cli(capsys)[0] == 2
    code, out, err = run_cli(capsys, "eval", "x.gnn")          # --data is required
    assert code == 2 and "--data" in err


def test_examples_run_files_are_valid():
    for path in sorted(RUNS.glob("*.toml")):
        doc = tomllib.loads(path.read_text())
        if doc.get("data", {}).get("source") == "fashion_mnist":
            from graphnn.datasets import FASHION_MNIST_DIR
            if not Path(FASHION_MNIST_DIR).is_dir():
                continue
        load_run(path)
    digits = load_run(RUNS / "digits.toml")
    default = load_run(None)
    assert digits.resolved() == default.resolved()          # digits.toml is the built-in run
    default.fill_from_data(default.load_data())
    assert default["model"]["layers"][-1]["units"] == 10    # the last layer's, from the data


# -- eval and predict -----------------------------------------------------------------------

def test_eval_on_the_run_test_split(trained, capsys):
    code, out, err = run_cli(capsys, "eval", trained / "model.gnn", "--data",
                             trained / "run.toml")
    assert code == 0, err
    assert "450 rows" in out and "accuracy" in out
    with open(trained / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2


def test_eval_and_predict_on_files(trained, tmp_path, capsys):
    from graphnn.datasets import load_digits
    import graphnn as gn
    X, y = load_digits()
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.savetxt(tmp_path / "X.csv", X[:7], delimiter=",")
    net = gn.load(trained / "model.gnn")
    expected = net.evaluate(X, y)

    code, out, err = run_cli(capsys, "eval", trained / "model.gnn", "--data", tmp_path / "d.npz")
    assert code == 0, err
    assert "1,797 rows" in out and f"{expected['accuracy']:.4f}" in out
    code, out, err = run_cli(capsys, "eval", trained / "model.gnn", "--data",
                             tmp_path / "X.npy", "--labels", tmp_path / "y.npy")
    assert code == 0, err and f"{expected['loss']:.4f}" in out

    code, out, err = run_cli(capsys, "predict", trained / "model.gnn", tmp_path / "X.npy",
                             "--out", tmp_path / "p.npy")
    assert code == 0, err
    preds = np.load(tmp_path / "p.npy")
    assert preds.shape == (1797, 10)
    np.testing.assert_allclose(preds, net.predict(X), rtol=1e-6)
    code, out, err = run_cli(capsys, "predict", trained / "model.gnn", tmp_path / "X.csv",
                             "--out", tmp_path / "p.csv", "--classes")
    assert code == 0, err
    labels = np.loadtxt(tmp_path / "p.csv", dtype=int)
    np.testing.assert_array_equal(labels, net.predict(X[:7]).argmax(axis=1))


def test_eval_predict_errors(trained, tmp_path, capsys):
    np.save(tmp_path / "wide.npy", np.zeros((3, 5)))
    code, out, err = run_cli(capsys, "predict", trained / "model.gnn", tmp_path / "wide.npy")
    assert code == 2 and "5 features" in err and "expects 64" in err
    code, out, err = run_cli(capsys, "eval", tmp_path / "none.gnn", "--data", trained / "run.toml")
    assert code == 2 and "no such checkpoint" in err
    code, out, err = run_cli(capsys, "eval", trained / "run.toml", "--data", trained / "run.toml")
    assert code == 2 and "not a graphnn checkpoint" in err
    code, out, err = run_cli(capsys, "eval", trained / "model.gnn", "--data", tmp_path / "wide.npy")
    assert code == 2 and "--labels" in err
    assert "Traceback" not in err


# -- info, source, summary, bench ---------------------------------------------------------

def test_info(capsys, monkeypatch):
    code, out, err = run_cli(capsys, "info")
    assert code == 0, err
    for text in ("graphnn", "Python", "NumPy", "Numba", "SciPy", "CPU", "SIMD", "BLAS",
                 "threads", "CUDA", "compile cache"):
        assert text in out, text
    # the AVX-512 hint, and no numba.cuda
    import graphnn.threads
    monkeypatch.setattr(cli, "_cpu", lambda: ("Some Xeon", {"avx2", "avx512f"}))
    monkeypatch.setattr(graphnn.threads, "blas_info", lambda: [
        {"internal_api": "openblas", "architecture": "Haswell", "num_threads": 2,
         "version": "0.3", "filepath": "/x/scipy.libs/libscipy_openblas.so"}])
    monkeypatch.setitem(sys.modules, "numba.cuda", None)
    code, out, err = run_cli(capsys, "info")
    assert code == 0
    assert "OPENBLAS_CORETYPE=SKYLAKEX" in out and "core Haswell" in out
    assert "numba.cuda not importable" in out


def test_info_says_numba_cuda_is_missing(capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    code, out, err = run_cli(capsys, "info")
    assert code == 0
    line = next(l for l in out.splitlines() if l.strip().startswith("CUDA"))
    assert "numba-cuda is not installed" in line and "no CUDA driver" not in line


@pytest.mark.parametrize("sets, suggestion", [
    (["data.source=mnist"], "fashion_mnist"), (["data.source=fashion"], "fashion_mnist"),
    (["data.source=spiral"], "spirals"),
    (["loss=crossentropy"], "cross_entropy"), (["device=gpu"], "cuda")])
def test_suggestions_by_meaning(sets, suggestion, capsys, no_data_loading):
    argv = ["summary"] + [x for s in sets for x in ("--set", s)]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and f"did you mean {suggestion!r}" in err, err


def test_source_and_summary(capsys):
    code, out, err = run_cli(capsys, "summary", RUNS / "digits.toml")
    assert code == 0, err
    assert "dense_1" in out and "Total params: 9,610" in out
    code, out, err = run_cli(capsys, "source", RUNS / "digits.toml", "--set", "epochs=1")
    assert code == 0, err
    assert "from numba import njit" in out and "def train_step" in out
    code, out, err = run_cli(capsys, "summary", RUNS / "digits.toml", "--set", "loss=nope")
    assert code == 2 and "'nope'" in err


def test_bench(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "compare_script", lambda: tmp_path / "benchmarks" / "compare.py")
    code, out, err = run_cli(capsys, "bench", "--quick")
    assert code == 2 and "benchmarks/compare.py" in err and "source checkout" in err
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "compare.py").write_text(
        "def main(argv=None):\n    print('compare', argv)\n    return {'ok': 1}\n")
    code, out, err = run_cli(capsys, "bench", "--quick", "--threads", "1")
    assert code == 0 and "compare ['--quick', '--threads', '1']" in out


def test_real_compare_script_location():
    # in a source checkout, bench finds <repo>/benchmarks/compare.py
    monkey = cli.compare_script()
    assert monkey == REPO / "benchmarks" / "compare.py"


# -- the real entry point -----------------------------------------------------------------

def _python_m(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "graphnn", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_python_m_graphnn(tmp_path):
    r = _python_m("--help", cwd=tmp_path)
    assert r.returncode == 0 and "train" in r.stdout and "predict" in r.stdout
    (tmp_path / "bad.toml").write_text("[model]\nlayers = [{type = \"Dense\", units = 0}]\n")
    r = _python_m("train", "bad.toml", cwd=tmp_path)
    assert r.returncode == 2
    assert "bad.toml: model.layers.0.units: must be an integer >= 1" in r.stderr
    assert "Traceback" not in r.stderr


# -- issue 13: checkpoints where run files go, eval without --data, predict formats -------

def test_eval_uses_the_run_toml_beside_the_checkpoint(trained, capsys):
    import graphnn as gn
    from graphnn.datasets import load_digits, train_test_split
    X, y = load_digits()                                   # the built-in run's test split
    _, Xte, _, yte = train_test_split(X, y, test_size=0.25, seed=0, stratify=True)
    want = gn.load(trained / "model.gnn").evaluate(Xte, yte)
    code, out, err = run_cli(capsys, "eval", trained / "model.gnn")
    assert code == 0, err
    assert "450 rows" in out and f"{want['accuracy']:.4f}" in out and "run.toml" in out


def test_eval_without_run_toml_asks_for_data(trained, tmp_path, capsys):
    import shutil
    shutil.copy(trained / "model.gnn", tmp_path / "m.gnn")
    code, out, err = run_cli(capsys, "eval", tmp_path / "m.gnn")
    assert code == 2 and "no run.toml beside" in err and "--data" in err


def test_a_checkpoint_where_a_run_file_goes(trained, tmp_path, capsys):
    import graphnn as gn
    net = gn.load(trained / "model.gnn")
    code, out, err = run_cli(capsys, "summary", trained / "model.gnn")
    assert code == 0, err
    assert out.strip() == net.summary().strip()
    code, out, err = run_cli(capsys, "source", trained / "model.gnn")
    assert code == 0, err
    assert out.strip() == net.source().strip()
    code, out, err = run_cli(capsys, "train", trained / "model.gnn", "--out", tmp_path / "o")
    assert code == 2 and "is a checkpoint" in err and "run.toml" in err
    assert "utf-8" not in err and not (tmp_path / "o").exists()
    renamed = tmp_path / "model.toml"                       # a checkpoint named .toml
    renamed.write_bytes((trained / "model.gnn").read_bytes())
    code, out, err = run_cli(capsys, "eval", trained / "model.gnn", "--data", renamed)
    assert code == 2 and "not a TOML run file" in err and "utf-8" not in err


def test_predict_formats_proba_and_label_column(trained, tmp_path, capsys):
    import graphnn as gn
    from graphnn.datasets import load_digits
    X, y = load_digits()
    X, y = X[:20], y[:20]
    net = gn.load(trained / "model.gnn")
    logits = net.predict(X).astype(np.float64)
    np.savetxt(tmp_path / "with_labels.csv", np.column_stack([X, y]), delimiter=",")
    np.save(tmp_path / "X.npy", X)
    # the extension names the format, and anything else is refused
    code, out, err = run_cli(capsys, "predict", trained / "model.gnn", tmp_path / "X.npy",
                             "--out", tmp_path / "p.txt")
    assert code == 2 and ".npy or .csv" in err
    assert not list(tmp_path.glob("p.txt*"))
    # the label column left in: the message says the fix
    code, out, err = run_cli(capsys, "predict", trained / "model.gnn",
                             tmp_path / "with_labels.csv")
    assert code == 2 and "--label-column" in err
    # --label-column drops it; --proba: softmax of the logits (NumPy oracle)
    code, out, err = run_cli(capsys, "predict", trained / "model.gnn",
                             tmp_path / "with_labels.csv", "--label-column", "-1",
                             "--proba", "--out", tmp_path / "p.csv")
    assert code == 0, err
    got = np.loadtxt(tmp_path / "p.csv", delimiter=",")
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)
    assert "probabilities" in out
    code, out, err = run_cli(capsys, "predict", trained / "model.gnn", tmp_path / "X.npy",
                             "--proba", "--classes")
    assert code == 2 and "not allowed with" in err


def test_predict_help_says_what_is_written(capsys):
    code, out, err = run_cli(capsys, "predict", "--help")
    assert code == 0
    text = " ".join(out.split())
    for words in ("raw outputs", "--proba", "probabilities", "--classes", ".npy", ".csv",
                  "--label-column"):
        assert words in text, words


# -- checks before compiling or allocating (issue 13 item 5, issue 9 item 6) ---------------

@pytest.fixture()
def no_compile(monkeypatch):
    """Fail the test if a command gets as far as compiling."""
    def boom(self, in_dim):
        raise AssertionError("compiled before the data was checked")
    monkeypatch.setattr(runfile.Run, "compile", boom)


def test_labels_out_of_range_fail_before_compiling(capsys, no_compile):
    code, out, err = run_cli(capsys, "train", "--set", "model.layers.1.units=5",
                             "--set", "verbose=0")
    assert code == 2, err
    assert "--set model.layers.1.units=5: model.layers.1.units" in err      # where, the key
    assert "class label" in err and "0..4" in err
    assert "10 outputs" in err and "Traceback" not in err


def test_targets_width_fails_before_compiling(tmp_path, capsys, no_compile):
    (tmp_path / "line.toml").write_text(
        '[data]\nsource = "line"\n[model]\nlayers = [{type = "Dense", units = 3}]\n')
    code, out, err = run_cli(capsys, "train", tmp_path / "line.toml")
    assert code == 2 and "model.layers.0.units" in err and "Traceback" not in err


def test_absurd_sizes_exit_2_with_an_estimate(tmp_path, capsys, no_compile):
    code, out, err = run_cli(capsys, "train", "--set", "model.layers.0.units=100000000000",
                             "--out", tmp_path / "o")
    assert code == 2, err
    assert "model.layers.0.units" in err and "memory" in err and "TiB" in err
    assert "MemoryError" not in err and "Traceback" not in err
    code, out, err = run_cli(capsys, "train", "--set", "data.source=moons",
                             "--set", "data.n=100000000000", "--out", tmp_path / "o")
    assert code == 2 and "data.n" in err and "memory" in err and "TiB" in err


def test_absurd_data_is_refused_before_loading(capsys, no_data_loading):
    code, out, err = run_cli(capsys, "summary", "--set", "data.source=moons",
                             "--set", "data.n=100000000000")
    assert code == 2 and "data.n" in err and "memory" in err


def test_out_onto_an_earlier_run_needs_overwrite(trained, tmp_path, capsys):
    import shutil
    old = tmp_path / "old"
    shutil.copytree(trained, old)
    before = {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()}
    code, out, err = run_cli(capsys, "train", "--set", "epochs=1", "--out", old)
    assert code == 2 and "earlier run" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()} == before
    code, out, err = run_cli(capsys, "train", "--set", "epochs=1", "--set", "verbose=0",
                             "--out", old, "--overwrite")
    assert code == 0, err
    assert tomllib.loads((old / "run.toml").read_text())["epochs"] == 1
    fresh = tmp_path / "new" / "deeper"                    # a new folder needs no flag
    code, out, err = run_cli(capsys, "train", "--set", "epochs=1", "--set", "verbose=0",
                             "--set", "callbacks.checkpoint.path=ck/{epoch}.gnn",
                             "--set", "callbacks.checkpoint.save_best_only=false",
                             "--set", "callbacks.checkpoint.monitor=loss", "--out", fresh)
    assert code == 0, err
    assert (fresh / "ck" / "1.gnn").is_file()              # inside the output folder


@pytest.mark.parametrize("path", ["../../x_{epoch}.gnn", "/tmp/x.gnn", "a/../../x.gnn", "~/x.gnn"])
def test_run_file_output_paths_stay_in_the_output_folder(path, tmp_path, capsys,
                                                         no_data_loading):
    for key in ("callbacks.checkpoint.path", "callbacks.csv.path"):
        code, out, err = run_cli(capsys, "train", "--set", f"{key}={path!r}".replace("'", '"'),
                                 "--out", tmp_path / "o")
        assert code == 2, err
        assert key in err and "inside the output folder" in err
    assert not list(tmp_path.parent.glob("x_*.gnn"))


def test_the_built_in_run_is_one_definition(trained, capsys):
    """Issue 13 item 6: `graphnn train`, examples/runs/digits.toml and examples/digits.py are
    one run: one file, the same split, the same result."""
    assert (RUNS / "digits.toml").read_text() == runfile.BUILTIN_RUN.read_text()
    builtin, from_file = load_run(None), load_run(RUNS / "digits.toml")
    assert builtin.doc == from_file.doc
    for sets in (["loss=\"mse\""], ["model.layers.0.units=64"]):     # overrides agree too
        try:
            a = load_run(None, sets).doc
        except RunFileError as e:
            a = e.detail
        try:
            b = load_run(RUNS / "digits.toml", sets).doc
        except RunFileError as e:
            b = e.detail
        assert a == b, sets
    # examples/digits.py: the same split, so the same accuracy as the CLI after 2 epochs
    import importlib.util
    import graphnn as gn
    spec = importlib.util.spec_from_file_location("digits_example", REPO / "examples" / "digits.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    accuracy = example.main(epochs=2)
    capsys.readouterr()
    data = load_run(trained / "run.toml").load_data()
    want = gn.load(trained / "model.gnn").evaluate(data.X_test, data.y_test)["accuracy"]
    assert accuracy == want


def test_checkpoints_are_recognised_by_content(tmp_path):
    """graphnn's magic bytes or a safetensors header (whatever the name); TOML text is not."""
    import json
    import struct
    head = json.dumps({"__metadata__": {"graphnn": "{}"}}).encode()
    (tmp_path / "a.bin").write_bytes(struct.pack("<Q", len(head)) + head)
    (tmp_path / "b.bin").write_bytes(b"GRAPHNN\0" + bytes(20))
    (tmp_path / "c.toml").write_text("# aaaaaa{ a comment\nepochs = 1\n")
    (tmp_path / "d.safetensors").write_text("")
    assert cli.looks_like_checkpoint(tmp_path / "a.bin")
    assert cli.looks_like_checkpoint(tmp_path / "b.bin")
    assert cli.looks_like_checkpoint(tmp_path / "d.safetensors")
    assert not cli.looks_like_checkpoint(tmp_path / "c.toml")
    assert not cli.looks_like_checkpoint(tmp_path / "missing.toml")
    for path in RUNS.glob("*.toml"):
        assert not cli.looks_like_checkpoint(path), path


def test_first_run_preloads_matplotlib_and_still_plots(trained, tmp_path, monkeypatch,
                                                       capsys):
    """On a machine's first run (no compiled kernels) matplotlib loads in a background
    thread while the kernels compile, and the plots come out as always.  With the kernels
    compiled, nothing is preloaded (a cached start holds the GIL throughout)."""
    import graphnn.plots
    run = load_run(None, [])
    assert not cli._compiles_kernels(run)        # the `trained` run compiled them
    code = ("from graphnn import cli, runfile; "
            "print(cli._compiles_kernels(runfile.load_run(None, [])))")
    env = dict(os.environ, GRAPHNN_CACHE_DIR=str(tmp_path / "empty"))
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, timeout=300)
    assert fresh.stdout.strip() == "True", fresh.stderr    # an empty cache: a first run
    started = []
    real_preload = graphnn.plots.preload
    monkeypatch.setattr(graphnn.plots, "preload", lambda: started.append(real_preload()))
    code, out, err = run_cli(capsys, "train", "--out", tmp_path / "a", "--set", "epochs=2")
    assert code == 0, err
    assert started == []                         # compiled kernels: no preload
    monkeypatch.setattr(cli, "_compiles_kernels", lambda run: True)
    code, out, err = run_cli(capsys, "train", "--out", tmp_path / "b", "--set", "epochs=2")
    assert code == 0, err
    assert len(started) == 1
    started[0].join(timeout=60)
    assert not started[0].is_alive()
    if has_matplotlib():
        assert {p.name for p in (tmp_path / "b").glob("*.png")} == {"loss.png", "accuracy.png"}
