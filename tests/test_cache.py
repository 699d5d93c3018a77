"""The compile cache heals itself.  Each case damages one file of a filled cache (the module
gn_<hash>.py, a Numba index .nbi or data .nbc) and runs a fresh process on it: it must warn
once naming the file, compile again and train to exactly the parameters of an uncached run
(GRAPHNN_NO_CACHE=1).  An unusable cache folder falls back to compiling in memory."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

RUN = textwrap.dedent("""
    import json, warnings, numpy as np, graphnn as gn
    warnings.simplefilter("always")
    x = gn.Input(3)
    net = gn.Model(x, gn.Dense(2)(gn.Dense(4, activation="tanh")(x))).compile(
        loss="cross_entropy", optimizer=gn.SGD(0.1), seed=0)
    X = np.random.default_rng(0).normal(size=(24, 3)); y = np.arange(24) % 2
    net.fit(X, y, epochs=2, batch_size=8)
    loss, grads = net.loss_and_grads(X, y)
    net.apply_gradients(grads)          # the optimizer's update, called from Python
    k, lib = net.backend.glue, net.backend.library.namespace
    hits = {"train_step": sum(k["train_step"].stats.cache_hits.values()),
            "update": sum(net.backend.updater.kernel().stats.cache_hits.values())}
    hits["matmul"] = sum(lib["matmul"].stats.cache_hits.values())     # a library kernel
    print(json.dumps({"hits": hits,
                      "params": [v.tolist() for v in net.get_params().values()]}))
""")


def _run(cache_dir, **env):
    e = dict(os.environ, OPENBLAS_NUM_THREADS="1", GRAPHNN_CACHE_DIR=str(cache_dir), **env)
    out = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, env=e,
                         timeout=600)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    return json.loads(out.stdout), out.stderr


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A cache folder filled by one run, and the parameters of an uncached run."""
    folder = tmp_path_factory.mktemp("filled")
    first, err = _run(folder)
    assert "CacheWarning" not in err, err
    uncached, _ = _run(tmp_path_factory.mktemp("unused"), GRAPHNN_NO_CACHE="1")
    assert first["params"] == uncached["params"]
    return folder, uncached["params"]


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        data = data[:len(data) // 2]
    elif how == "emptied":
        data = b""
    elif how == "garbage":
        data = bytes((i * 131 + 7) % 256 for i in range(len(data)))
    elif how == "flipped":                  # one byte in the middle: parses, but is wrong
        i = len(data) // 2
        data = data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1:]
    path.write_bytes(data)


FILES = {"index": "__pycache__/*.train_step-*.nbi", "data": "__pycache__/*.train_step-*.nbc",
         "update-data": "__pycache__/*.apply_update-*.nbc",
         "library-data": "__pycache__/*.matmul-*.nbc"}
MODULES = {"module": '"""graphnn glue', "library": '"""graphnn kernel library',
           "update": '"""graphnn update'}
CASES = [(kind, how) for kind in ("module", "index", "data")
         for how in ("truncated", "emptied", "garbage")] + [("data", "flipped"),
                                                             ("update-data", "flipped")] + [
    ("library", "garbage"), ("library-data", "truncated"), ("library-data", "flipped"),
    ("update", "truncated")]


def _file(cache, kind):
    """The one file of a kind: the glue or library module, or one of Numba's files."""
    if kind in MODULES:
        (path,) = [p for p in cache.glob("gn_*.py") if p.read_text().startswith(MODULES[kind])]
        return path
    (path,) = cache.glob(FILES[kind])
    return path


@pytest.fixture(scope="module")
def damaged(filled, tmp_path_factory):
    """Every case of CASES run on its own damaged copy of the filled cache, two processes
    at a time (each is mostly one single-threaded Numba compile)."""
    folder, _ = filled

    def case(kind_how):
        kind, how = kind_how
        cache = tmp_path_factory.mktemp(f"{kind}-{how}") / "cache"
        shutil.copytree(folder, cache)
        target = _file(cache, kind)
        healthy = target.read_bytes()
        _damage(target, how)
        try:
            got, err = _run(cache)
        except AssertionError as exc:          # reported by that case's test
            got, err = None, str(exc)
        return target, healthy, got, err
    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(CASES, pool.map(case, CASES)))


@pytest.mark.parametrize("kind,how", CASES, ids=[f"{k}-{h}" for k, h in CASES])
def test_damaged_file_is_replaced(filled, damaged, kind, how):
    _, expected = filled
    target, healthy, got, err = damaged[kind, how]
    assert got is not None, err
    assert err.count("CacheWarning") == 1 and str(target) in err, err
    assert got["params"] == expected                       # the uncached run, exactly
    if kind in MODULES:
        assert target.read_bytes() == healthy             # written again
        assert got["hits"]["train_step"] == 1            # Numba's entries still used
        assert got["hits"]["matmul"] == 1
    else:                                                 # compiled again, saved whole
        assert target.exists() and target.read_bytes()[:16] == healthy[:16]   # graphnn header
        damaged = {"update-data": "update", "library-data": "matmul"}.get(kind, "train_step")
        assert got["hits"][damaged] == 0


def test_healed_cache_is_used_without_warnings(filled, tmp_path):
    folder, expected = filled
    cache = tmp_path / "cache"
    shutil.copytree(folder, cache)
    for path in cache.glob("__pycache__/*.nb[ic]"):       # every Numba file at once
        _damage(path, "garbage")
    got, err = _run(cache)
    assert got["params"] == expected and err.count("CacheWarning") >= 1
    again, err = _run(cache)
    assert "CacheWarning" not in err, err
    assert again["params"] == expected
    assert again["hits"] == {"train_step": 1, "update": 1, "matmul": 1}


def _unusable(tmp_path, how):
    if how == "a file":
        path = tmp_path / "cache"
        path.write_text("not a folder")
    elif how == "under a file":
        (tmp_path / "file").write_text("not a folder")
        path = tmp_path / "file" / "cache"
    else:                                                 # read-only
        if os.geteuid() == 0:
            pytest.skip("running as root, which writes to read-only folders; the cases "
                        "'a file' and 'under a file' cover an unusable folder")
        path = tmp_path / "cache"
        path.mkdir()
        path.chmod(0o500)
    return path


@pytest.mark.parametrize("how", ["a file", "under a file", "read-only"])
def test_unusable_cache_folder_compiles_in_memory(filled, tmp_path, how):
    _, expected = filled
    path = _unusable(tmp_path, how)
    try:
        got, err = _run(path)
    finally:
        if how == "read-only":
            path.chmod(0o700)
    assert err.count("CacheWarning") == 1, err
    assert str(path) in err and "GRAPHNN_CACHE_DIR" in err and "GRAPHNN_NO_CACHE" in err
    assert got["params"] == expected
    assert got["hits"] == {"train_step": 0, "update": 0, "matmul": 0}
