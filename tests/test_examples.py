"""Smoke tests of the examples: each script runs as is (``python examples/X.py``), quickly.

Scripts run in a subprocess from a tmp folder with ``GRAPHNN_EXAMPLES_QUICK=1`` (few
epochs, small sizes) and their outputs sent to tmp; the two examples whose ``main()``
returns a result are also checked in-process.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphnn import cli
from graphnn.datasets import FASHION_MNIST_DIR

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
HAVE_FASHION = Path(FASHION_MNIST_DIR).is_dir()
HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None


def has_matplotlib() -> bool:
    from graphnn.plots import available
    return available()


def run_script(name: str, *args, cwd: Path, env: dict | None = None, prelude: str = ""):
    """Run examples/<name> as a script; returns the CompletedProcess."""
    full_env = dict(os.environ, GRAPHNN_EXAMPLES_QUICK="1",
                    PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                    **(env or {}))
    script = str(EXAMPLES / name)
    if prelude:               # run code first, then the script as __main__
        cmd = [sys.executable, "-c",
               f"{prelude}\nimport runpy, sys\nsys.argv = [{script!r}] + {list(map(str, args))!r}"
               f"\nrunpy.run_path({script!r}, run_name='__main__')"]
    else:
        cmd = [sys.executable, script, *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=300)


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_linear_regression():
    m, c = load_example("linear_regression").main()
    assert abs(m - 3.0) < 1e-3 and abs(c + 2.0) < 1e-3


@pytest.mark.skipif(not HAVE_SKLEARN, reason="the digits ship with scikit-learn")
def test_digits(capsys):
    accuracy = load_example("digits").main(epochs=2)
    assert 0.5 < accuracy <= 1.0
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.skipif(not HAVE_SKLEARN, reason="the example is a scikit-learn pipeline")
def test_sklearn_search(capsys):
    accuracy = load_example("sklearn_search").main(epochs=3)
    assert 0.5 < accuracy <= 1.0
    out = capsys.readouterr().out
    assert "best parameters: {'clf__hidden_layer_sizes'" in out and "test accuracy" in out


def test_universal_approximation(tmp_path):
    r = run_script("universal_approximation.py", "--sizes", "2", "--epochs", "30",
                   "--out", tmp_path / "ua.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "RMS error" in r.stdout and "\n     2 " in r.stdout
    if has_matplotlib():
        assert (tmp_path / "ua.png").is_file() and "plot saved" in r.stdout
    else:
        assert "plots skipped" in r.stdout


def test_moons_default_output_and_no_matplotlib(tmp_path):
    r = run_script("moons.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout
    if has_matplotlib():
        assert (tmp_path / "runs" / "moons.png").is_file()
    # without matplotlib the example still runs and says the plot was skipped
    r = run_script("moons.py", "--out", tmp_path / "none.png", cwd=tmp_path,
                   prelude="import sys; sys.modules['matplotlib'] = None")
    assert r.returncode == 0, r.stderr
    assert "plots skipped: matplotlib is not installed" in r.stdout
    assert not (tmp_path / "none.png").exists()


@pytest.mark.skipif(not HAVE_FASHION, reason="sudo apt-get install dataset-fashion-mnist")
def test_fashion_mnist_quick(tmp_path):
    r = run_script("fashion_mnist.py", "--limit", "3000", "--epochs", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "3,000 training and 10,000 test images" in r.stdout
    assert "time per epoch" in r.stdout and "test accuracy" in r.stdout


def test_fashion_mnist_missing_data(tmp_path):
    r = run_script("fashion_mnist.py", "--data", tmp_path / "nowhere", cwd=tmp_path)
    assert r.returncode == 1
    assert "sudo apt-get install dataset-fashion-mnist" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(not HAVE_FASHION, reason="sudo apt-get install dataset-fashion-mnist")
def test_fashion_mnist_run_file(tmp_path, capsys):
    code = cli.main(["train", str(EXAMPLES / "runs" / "fashion_mnist.toml"), "--out",
                     str(tmp_path / "fm"), "--set", "data.train_rows=2000",
                     "--set", "data.test_rows=500", "--set", "epochs=1", "--set", "verbose=0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "2,000 training rows, 500 test rows, 784 features" in out
    assert (tmp_path / "fm" / "best.gnn").is_file()
