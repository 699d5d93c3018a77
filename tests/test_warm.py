"""The compile helper process (graphnn/compile/warm.py): it compiles its share of a
first run's library kernels into the cache, the model built meanwhile trains exactly as
one built without it, a failed helper changes nothing but time, and it refuses any
argument that is not a dtype and kernel names of the library."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphnn.compile import library, warm

ROOT = Path(__file__).resolve().parents[1]

# Builds and trains a small model in a fresh cache; HELPER selects what the helper does:
# "on" as shipped, "off" never started, "fails" a process that exits 3 at once.
SCRIPT = r"""
import hashlib, json, subprocess, sys
import numpy as np
import graphnn as gn
from graphnn.compile import warm
mode = sys.argv[1]
report = {}
start, wait = warm.Helper.start.__func__, warm.Helper.wait
def started(cls, lib, needed):
    if mode == "off":
        return None
    helper = start(cls, lib, needed)
    if helper is not None and mode == "fails":      # stopped before it could import graphnn
        helper.process.kill()
        helper.process.wait()
        helper = cls(subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]), helper.names)
    report["names"] = list(helper.names) if helper else None
    return helper
def waited(self):
    report["ok"] = wait(self)
    return report["ok"]
warm.Helper.start, warm.Helper.wait = classmethod(started), waited
rng = np.random.default_rng(0)
X = rng.normal(size=(96, 8)).astype(np.float32)
y = rng.integers(0, 3, 96)
net = gn.Sequential([gn.Dense(32, activation="tanh"), gn.Dense(3)], input_dim=8).compile(
    loss="cross_entropy", optimizer=gn.SGD(0.1), seed=1)
net.fit(X, y, epochs=2, batch_size=16)
h = hashlib.sha256()
for v in net.get_params().values():
    h.update(np.ascontiguousarray(v).tobytes())
report["params"] = h.hexdigest()
lib = gn.compile.library.library("float32")     # which kernels came from the disk cache
report["loaded"] = sorted(n for n in report.get("names") or () if sum(lib.namespace[n].stats.cache_hits.values()))
print(json.dumps(report))
"""


def _run(mode, tmp_path):
    cache = tmp_path / f"cache-{mode}"
    cache.mkdir()
    env = dict(os.environ, GRAPHNN_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    env.pop("GRAPHNN_NO_CACHE", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(warm._cores() < 2, reason="the helper runs only with two cores")
def test_helper_compiles_its_share_and_changes_no_result(tmp_path):
    on, off, fails = (_run(mode, tmp_path) for mode in ("on", "off", "fails"))
    assert on["names"] and all(n.startswith(warm.SHARE) for n in on["names"])
    assert on["ok"] is True                     # it compiled its kernels into the cache,
    assert on["loaded"] == sorted(on["names"])  # and this process loaded them from there
    assert "matmul" in on["names"] and "train_epoch_labels" in on["names"]
    assert off.get("names") is None
    assert fails["names"] and fails["ok"] is False    # failed: this process compiled them
    assert fails["loaded"] == []
    assert on["params"] == off["params"] == fails["params"]


@pytest.mark.parametrize("argv", [
    [],
    ["{folder}", "float16", "matmul"],                          # not a library dtype
    ["{folder}", "float32", "os.system"],                       # not a kernel name
    ["{folder}", "float32", "matmul", "../../etc/passwd"],
    ["{folder}/missing", "float32", "matmul"],                  # no such folder
    ["{folder}", "float32"],                                    # nothing to compile
])
def test_helper_refuses_what_is_not_a_kernel(argv, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(tmp_path))      # restored after the test
    before = sorted(tmp_path.rglob("*"))
    assert warm.main([a.format(folder=tmp_path) for a in argv]) == 2
    assert sorted(tmp_path.rglob("*")) == before                # nothing written


def test_no_helper_without_a_cache_or_with_little_to_compile(monkeypatch):
    lib = library.library("float32")
    for name in ("colsum", "matmul"):
        lib.kernel(name)
    assert warm.Helper.start(lib, ("colsum", "matmul")) is None   # compiled already
    monkeypatch.setattr(type(lib), "folder", property(lambda self: None))
    assert warm.Helper.start(lib, library.kernel_names()) is None  # no cache to share
