"""Data-parallel training on MPI: ``mpiexec -n 2`` and ``-n 3`` runs of tests/mpi_worker.py
against the same training in this process (one process at the same global batch size).

The worker trains every scenario in one launch per rank count (each rank compiles its
kernels once); this module's fixtures start those launches once and share the results.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphnn as gn

sys.path.insert(0, str(Path(__file__).parent))
import mpi_worker as W  # noqa: E402

pytest.importorskip("mpi4py", reason=f"data-parallel tests need mpi4py: {gn.distributed.INSTALL}")
MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
if MPIEXEC is None:
    pytest.skip(f"no mpiexec found: {gn.distributed.INSTALL}", allow_module_level=True)

ROOT = Path(__file__).parent.parent
WORKER = Path(__file__).parent / "mpi_worker.py"
TIMEOUT = 300                   # seconds: a hang fails the test instead of stalling CI


def launch(n: int, out: Path, *scenarios: str, timeout: int = TIMEOUT):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", str(WORKER),
                           str(out), *scenarios], env=env, capture_output=True, text=True,
                          timeout=timeout)


def results(out: Path, n: int) -> list[dict]:
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(n)]


def single_sgd(epochs: int, net=None):
    X, y, w = W.data("labels")
    net = net or W.sgd_net()
    h = net.fit(X, y, epochs=epochs, **W.sgd_fit_args(w))
    return net, h


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi2")
    single_sgd(2)[0].save(out / "single-2.gnn")     # resumed under MPI by the worker
    proc = launch(2, out, "sgd", "adam", "local", "resume", "bad", "stop")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, results(out, 2)


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi3")
    proc = launch(3, out, "sgd", "adam", "local")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, results(out, 3)


def assert_same_on_every_rank(res, prefix):
    for r in res[1:]:
        for key in (prefix + "params", prefix + "state"):
            np.testing.assert_array_equal(r[key], res[0][key], err_msg=f"{key} differs by rank")


def assert_close(res, prefix, net, history, rtol):
    r = res[0]
    np.testing.assert_allclose(r[prefix + "params"], net.params, rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_allclose(r[prefix + "state"], net.state, rtol=rtol, atol=rtol * 1e-2)
    for k, v in history.history.items():
        np.testing.assert_allclose(r[f"{prefix}h_{k}"], v, rtol=rtol, err_msg=k)


@pytest.mark.parametrize("ranks", ["two", "three"])
def test_sgd_float32_matches_one_process(ranks, request):
    """Nesterov SGD, float32, Dropout, sample and class weights, a last batch of 8 rows
    (3 ranks: shards 2/3/3, and 5/5/6), validation and ReduceOnPlateau from reduced logs."""
    _, res = request.getfixturevalue(ranks)
    net, h = single_sgd(3)
    assert_same_on_every_rank(res, "sgd_")
    assert_close(res, "sgd_", net, h, rtol=1e-5)
    assert len(h.history["val_loss"]) == 3 and "lr" in h.history


@pytest.mark.parametrize("ranks", ["two", "three"])
def test_adam_float64_matches_one_process(ranks, request):
    """Adam, float64, per-step warmup-cosine lr, Dropout, weights, last batch of 2 rows (on
    3 ranks rank 0 has no row of it and still joins the step); the checksum of parameters
    and optimizer state is equal on every rank after each epoch."""
    _, res = request.getfixturevalue(ranks)
    X, y, w = W.data("labels")
    net = W.adam_net()
    for _ in range(3):
        h = net.fit(X, y, epochs=1, batch_size=W.BATCH, sample_weight=w)
    assert_same_on_every_rank(res, "adam_")
    assert_close(res, "adam_", net, h, rtol=1e-12)
    for r in res[1:]:
        np.testing.assert_array_equal(r["adam_checksums"], res[0]["adam_checksums"])


@pytest.mark.parametrize("ranks", ["two", "three"])
def test_local_layout_uneven_shards(ranks, request):
    """data="local": each rank passes only its own rows (shards of 13/27 or 7/13/20 rows)
    and its own validation rows; equals one process on the concatenation."""
    _, res = request.getfixturevalue(ranks)
    X, y, _ = W.data("values")
    net = W.local_net()
    h = net.fit(X[:40], y[:40], epochs=3, batch_size=W.BATCH, validation_data=(X[40:], y[40:]))
    assert_same_on_every_rank(res, "local_")
    assert_close(res, "local_", net, h, rtol=1e-5)


def test_checkpoints_resume_across_process_counts(two):
    """Rank 0 writes the checkpoints; a distributed checkpoint resumed in one process, and a
    one-process checkpoint resumed under MPI, continue as uninterrupted training does."""
    out, res = two
    assert sorted(p.name for p in out.glob("mpi-*.gnn")) == ["mpi-1.gnn", "mpi-2.gnn"]
    assert not list(out.glob(".graphnn-*"))                  # no half-written files
    uninterrupted, h3 = single_sgd(3)
    resumed = gn.load(out / "mpi-2.gnn")
    X, y, w = W.data("labels")
    h = resumed.fit(X, y, epochs=1, **W.sgd_fit_args(w))
    np.testing.assert_allclose(resumed.params, uninterrupted.params, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(h.history["loss"], h3.history["loss"][-1:], rtol=1e-5)
    for prefix in ("cont_", "fromsingle_"):
        assert_same_on_every_rank(res, prefix)
        np.testing.assert_allclose(res[0][prefix + "params"], uninterrupted.params,
                                   rtol=1e-5, atol=1e-7, err_msg=prefix)
        np.testing.assert_allclose(res[0][prefix + "h_loss"], h3.history["loss"][-1:], rtol=1e-5)


def test_early_stopping_stops_every_rank_and_restores_rank_0s_best(two):
    """EarlyStopping runs on rank 0; every rank stops after the same epoch and ends with
    the restored best parameters."""
    _, res = two
    X, y, _ = W.data("values")
    net = W.local_net()
    stop = gn.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=0)
    h = net.fit(X, y, epochs=5, batch_size=W.BATCH, callbacks=[stop])
    assert len(h.history["loss"]) == 2 and stop.best_epoch == 0
    assert_same_on_every_rank(res, "stop_")
    assert_close(res, "stop_", net, h, rtol=1e-5)


def test_bad_data_on_one_rank_is_an_error_on_every_rank(two):
    _, res = two
    for r in res:
        message = str(r["bad_error"])
        assert "rank 1" in message and "NaN" in message, message


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failing_rank_ends_the_job(how, tmp_path):
    """An exception on one rank, or a rank killed mid-epoch: the job ends (no hang) with a
    non-zero status, and an exception names the rank that failed."""
    proc = launch(2, tmp_path, how, timeout=120)
    assert proc.returncode != 0
    assert "training finished" not in proc.stdout
    if how == "raise":
        assert "rank 1 of 2 failed: RuntimeError: injected failure at step 5" in proc.stderr


def test_import_graphnn_does_not_import_mpi4py():
    code = "import sys, graphnn, graphnn.distributed; print('mpi4py' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_launched_reads_the_launcher_environment(monkeypatch):
    for size_var, _ in gn.distributed.LAUNCHER_ENV:
        monkeypatch.delenv(size_var, raising=False)
    assert not gn.distributed.launched()
    monkeypatch.setenv("PMI_SIZE", "1")
    assert not gn.distributed.launched()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert gn.distributed.launched()


def test_command_line_under_mpiexec(tmp_path):
    """`mpiexec -n 2 graphnn train run.toml` trains data-parallel and writes one output folder;
    rank 0 alone prints the report."""
    pytest.importorskip("sklearn")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = tmp_path / "run"
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "graphnn", "train",
                           str(ROOT / "examples/runs/digits.toml"), "--set", "epochs=1",
                           "--set", "verbose=0", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("done, outputs in") == 1
    assert {"model.gnn", "run.toml"} <= {p.name for p in out.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    net = gn.load(out / "model.gnn")
    assert net.epoch == 1 and net.step == 43            # 1,347 rows at a global batch of 32
