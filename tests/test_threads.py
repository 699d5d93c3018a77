"""One compiled model used from several threads; one graph compiled by several threads and
processes at once.  Thread switches are forced often (sys.setswitchinterval) so that races,
if any, show; outputs are compared bitwise with serial calls and with a NumPy forward pass."""
import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import graphnn as gn


@contextlib.contextmanager
def _frequent_switches(seconds=1e-6):
    old = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _run_threads(n, work):
    """Run work(i) in n threads started together; re-raise the first error."""
    errors, barrier = [], threading.Barrier(n)

    def body(i):
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:          # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def net():
    """3-8-2 tanh classifier in float64 (so the NumPy oracle can be held to 1e-12)."""
    model = gn.Sequential([gn.Dense(8, activation="tanh"), gn.Dense(2)], input_dim=3)
    return model.compile(loss="cross_entropy", optimizer=gn.SGD(0.1), seed=0, dtype="float64")


def _numpy_forward(params, X):
    p = list(params.values())               # dense_0 weight, bias, dense_1 weight, bias
    return np.tanh(X @ p[0] + p[1]) @ p[2] + p[3]


def _inputs(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(1, 300)), 3)) for _ in range(count)]


def test_threaded_predict_matches_serial(net):
    inputs = _inputs(40)
    expected = [net.predict(x, batch_size=64) for x in inputs]
    params = net.get_params()
    for x, e in zip(inputs, expected):
        np.testing.assert_allclose(e, _numpy_forward(params, x), rtol=0, atol=1e-12)
    wrong = []

    def work(i):
        rng = np.random.default_rng(i)
        for _ in range(750):                      # 4 threads: 3000 calls
            k = int(rng.integers(len(inputs)))
            if not np.array_equal(net.predict(inputs[k], batch_size=64), expected[k]):
                wrong.append(k)
    with _frequent_switches():
        _run_threads(4, work)
    assert not wrong, f"{len(wrong)} of 3000 threaded predict calls differ from serial"


def test_threaded_evaluate_and_gradients_match_serial(net):
    inputs = _inputs(12, seed=1)
    labels = [np.arange(len(x)) % 2 for x in inputs]
    grads = [net.loss_and_grads(x, y) for x, y in zip(inputs, labels)]
    # after loss_and_grads has sized the arena: evaluate sums in chunks of its capacity
    expected = [net.evaluate(x, y, batch_size=32) for x, y in zip(inputs, labels)]
    wrong = []

    def work(i):
        rng = np.random.default_rng(i)
        for _ in range(150):
            k = int(rng.integers(len(inputs)))
            if net.evaluate(inputs[k], labels[k], batch_size=32) != expected[k]:
                wrong.append(("evaluate", k))
            loss, g = net.loss_and_grads(inputs[k], labels[k])
            if loss != grads[k][0] or any(not np.array_equal(g[n], grads[k][1][n]) for n in g):
                wrong.append(("loss_and_grads", k))
    with _frequent_switches():
        _run_threads(4, work)
    assert not wrong, f"{len(wrong)} threaded calls differ from serial: {wrong[:5]}"


def test_predict_during_fit_sees_whole_epochs(net):
    """Every predict made while another thread trains equals the NumPy forward pass of the
    parameters at some epoch boundary: never a mix of two parameter states."""
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(64, 3)), (rng.normal(size=64) > 0).astype(int)
    Xp = rng.normal(size=(600, 3))
    states = [net.get_params()]

    class Record(gn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            states.append(self.model.get_params())

    done = threading.Event()
    outputs = []

    def work(i):
        if i == 0:
            try:
                net.fit(X, y, epochs=150, batch_size=4, callbacks=[Record()])
            finally:
                done.set()
        else:
            while not done.is_set():
                outputs.append(net.predict(Xp, batch_size=50))    # 12 kernel calls each
    with _frequent_switches(1e-5):
        _run_threads(3, work)
    assert len(states) == 151 and len(outputs) > 0
    candidates = [_numpy_forward(s, Xp) for s in states]
    unmatched = sum(not any(np.allclose(o, c, rtol=0, atol=1e-12) for c in candidates)
                    for o in outputs)
    assert unmatched == 0, f"{unmatched} of {len(outputs)} predicts mixed parameter states"


# -- compiling one graph from several threads and processes ----------------------------------
COMPILE = textwrap.dedent("""
    import hashlib, json, sys, threading, numpy as np, graphnn as gn
    n = int(sys.argv[1])
    nets, errors, barrier = [None] * n, [], threading.Barrier(n)
    def body(i):
        try:
            barrier.wait()
            x = gn.Input(5)
            model = gn.Model(x, gn.Dense(3)(gn.Dense(7, activation="relu")(x)))
            nets[i] = model.compile(loss="mse", optimizer=gn.Adam(0.01), seed=0)
        except BaseException as exc:
            errors.append(repr(exc))
    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    [t.start() for t in threads]; [t.join() for t in threads]
    if errors:
        sys.exit("errors: " + "; ".join(errors))
    X = np.random.default_rng(0).normal(size=(16, 5)); Y = np.ones((16, 3))
    for net in nets:
        net.fit(X, Y, epochs=2, batch_size=4)
    print(json.dumps({
        "source": [hashlib.sha256(net.source().encode()).hexdigest() for net in nets],
        "file": [getattr(__import__("inspect").getmodule(net.backend.glue["train_step"].py_func),
                         "__file__", None) for net in nets],
        "params": [[v.tolist() for v in net.get_params().values()] for net in nets]}))
""")


def _start(threads, **env):
    e = dict(os.environ, OPENBLAS_NUM_THREADS="1", **env)
    return subprocess.Popen([sys.executable, "-c", COMPILE, str(threads)], env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "CacheWarning" not in err, err
    return json.loads(out)


def _glue_files(folder) -> list:
    """The generated glue modules in a cache folder (beside them: one kernel library and
    one optimizer update module)."""
    modules = sorted(folder.glob("gn_*.py"))
    for shared in ('"""graphnn kernel library', '"""graphnn update'):
        assert len([p for p in modules if p.read_text().startswith(shared)]) == 1, modules
    return [p for p in modules if p.read_text().startswith('"""graphnn glue')]


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "no-cache"])
def test_threads_compile_one_graph(tmp_path, cached):
    env = {"GRAPHNN_CACHE_DIR": str(tmp_path)}
    if not cached:
        env["GRAPHNN_NO_CACHE"] = "1"
    got = _finish(_start(2, **env))
    assert len(set(got["source"])) == 1
    assert all(p == got["params"][0] for p in got["params"])
    if cached:                              # one module, imported once, from the cache folder
        files = _glue_files(tmp_path)
        assert len(files) == 1 and set(got["file"]) == {str(files[0])}
    else:
        assert list(tmp_path.iterdir()) == []


def test_processes_compile_into_one_empty_cache(tmp_path):
    procs = [_start(2, GRAPHNN_CACHE_DIR=str(tmp_path)) for _ in range(3)]
    results = [_finish(p) for p in procs]
    assert len({s for r in results for s in r["source"]}) == 1
    assert all(p == results[0]["params"][0] for r in results for p in r["params"])
    files = _glue_files(tmp_path)
    assert len(files) == 1 and {f for r in results for f in r["file"]} == {str(files[0])}
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    # what they left is whole: a fourth process loads it without a warning, same result
    again = _finish(_start(1, GRAPHNN_CACHE_DIR=str(tmp_path)))
    assert again["params"][0] == results[0]["params"][0]
