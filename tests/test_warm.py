"""The compile helper process (graphnn/compile/warm.py): it compiles its share of a
first run's library kernels into the cache, the model built meanwhile trains exactly as
one built without it, a failed helper changes nothing but time, and it refuses any
argument that is not a dtype and kernel names of the library."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graphnn.compile import library, warm
from graphnn.launcher import LAUNCHER_ENV

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
    report["needed"] = list(needed)
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
    assert on["names"] and set(on["names"]) < set(on["needed"])   # a share, not all
    assert on["ok"] is True                     # it compiled its kernels into the cache,
    assert on["loaded"] == sorted(on["names"])  # and this process loaded them from there
    assert on["names"] == list(warm.plan(on["needed"])[0])     # the share plan() gives
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


def test_share_balances_the_two_processes():
    """The helper's share: the heaviest kernels first, each to the side that would finish
    it sooner by COST, so the two finish close together; the saving is the difference."""
    missing = ["matmul", "bias_act_relu", "bias_act_linear", "colsum", "matmul_at",
               "matmul_bt", "act_grad_relu", "loss_cross_entropy", "stats_cross_entropy",
               "train_epoch_labels"]                              # the digits run's kernels
    share, saving = warm.plan(missing)
    helper = warm.START + sum(warm.cost(n) for n in share)
    here = warm.GLUE + sum(warm.cost(n) for n in missing if n not in share)
    heaviest = max(missing, key=warm.cost)          # to the side that is free first
    assert (heaviest in share) == (warm.START <= warm.GLUE) and 0 < len(share) < len(missing)
    assert abs(helper - here) <= max(warm.cost(n) for n in missing)
    assert saving == pytest.approx(warm.GLUE + sum(map(warm.cost, missing)) - max(helper, here))
    assert list(share) == [n for n in missing if n in share]      # in the order needed
    assert warm.plan([]) == ((), 0.0)


def test_no_helper_without_a_cache_or_with_little_to_compile(monkeypatch):
    lib = library.library("float32")
    for name in ("colsum", "matmul"):
        lib.kernel(name)
    assert warm.Helper.start(lib, ("colsum", "matmul")) is None   # compiled already
    monkeypatch.setattr(lib, "folder", None)
    assert warm.Helper.start(lib, library.kernel_names()) is None  # no cache to share


class _Lib:
    """What Helper.start reads of a library: a cache folder, a dtype, what is compiled."""

    def __init__(self, folder):
        self.folder, self.dtype = folder, np.dtype("float32")

    def is_compiled(self, name):
        return False


def _started(monkeypatch, tmp_path, needed=None):
    """Helper.start on a library with nothing compiled; the command it would run, or None."""
    calls = []

    class Popen:
        def __init__(self, command, **kwargs):
            calls.append((command, kwargs))

    with monkeypatch.context() as patch:
        patch.setattr(warm, "_cores", lambda: 2)
        patch.delitem(sys.modules, "mpi4py", raising=False)   # loaded by earlier MPI tests
        patch.setattr(warm.subprocess, "Popen", Popen)
        helper = warm.Helper.start(_Lib(tmp_path), needed or library.kernel_names())
    assert (helper is None) == (not calls)
    return calls[0] if calls else None


def test_helper_starts_only_where_it_pays_and_is_safe(monkeypatch, tmp_path):
    for var, _ in LAUNCHER_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(warm.IN_HELPER, raising=False)
    assert _started(monkeypatch, tmp_path) is not None            # the baseline: it starts
    few = ["train_epoch_labels", "train_epoch_values", "act_grad_relu"]  # MIN_MISSING - 1
    assert len(few) == warm.MIN_MISSING - 1 and warm.plan(few)[1] >= warm.MIN_SAVING
    assert _started(monkeypatch, tmp_path, few) is None
    assert _started(monkeypatch, tmp_path, few + ["matmul"]) is not None
    light = ["colsum", "add", "softmax", "copy_cols"]               # saves too little
    assert warm.plan(light)[1] < warm.MIN_SAVING
    assert _started(monkeypatch, tmp_path, light) is None
    monkeypatch.setenv("PMI_SIZE", "2")                            # an MPI rank
    assert _started(monkeypatch, tmp_path) is None
    monkeypatch.delenv("PMI_SIZE")
    monkeypatch.setenv(warm.IN_HELPER, "1")                        # a helper itself
    assert _started(monkeypatch, tmp_path) is None
    monkeypatch.delenv(warm.IN_HELPER)
    monkeypatch.setattr(sys, "frozen", True, raising=False)        # a frozen application
    assert _started(monkeypatch, tmp_path) is None
    monkeypatch.delattr(sys, "frozen")
    monkeypatch.setattr(warm, "_cores", lambda: 1)
    assert warm.Helper.start(_Lib(tmp_path), library.kernel_names()) is None   # one core
    monkeypatch.setattr(warm, "_cores", lambda: 2)
    monkeypatch.setitem(sys.modules, "mpi4py", sys)                  # mpi4py loaded
    assert warm.Helper.start(_Lib(tmp_path), library.kernel_names()) is None


@pytest.mark.parametrize("pythonpath", [None, os.pathsep, "." + os.pathsep])
def test_helper_imports_nothing_from_its_folders(pythonpath, monkeypatch, tmp_path):
    """The helper's command, run for real from a cache folder holding modules named like
    graphnn's dependencies and a sitecustomize: none is imported, and it compiles its
    kernel; also where PYTHONPATH has empty entries (Python reads them as the working
    directory) or relative ones (they keep meaning this process's folders)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    marker = tmp_path / "imported"
    for name in ("numba", "numpy", "llvmlite", "graphnn", "sitecustomize"):
        (cache / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r})\n")
    if pythonpath is None:
        monkeypatch.delenv("PYTHONPATH", raising=False)
    else:
        monkeypatch.setenv("PYTHONPATH", pythonpath)
    monkeypatch.delenv(warm.IN_HELPER, raising=False)
    for var, _ in LAUNCHER_ENV:
        monkeypatch.delenv(var, raising=False)
    command, kwargs = _started(monkeypatch, cache,
                               ["train_epoch_labels", "train_epoch_values", "colsum", "add"])
    assert kwargs["cwd"] == cache and kwargs["env"][warm.IN_HELPER] == "1"
    assert command[:3] == [sys.executable, "-c", warm.CHILD]
    assert command[4:] == [str(cache), "float32", "train_epoch_values"]
    env = dict(kwargs["env"], GRAPHNN_CACHE_DIR=str(cache))
    assert all(os.path.isabs(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)
    assert "" not in env.get("PYTHONPATH", "x").split(os.pathsep)
    done = subprocess.run(command, cwd=cache, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    assert any(cache.rglob("*.nbi"))     # it compiled into the cache


def test_helper_of_another_graphnn_does_nothing(tmp_path):
    assert warm.child(str(tmp_path), [str(tmp_path), "float32", "matmul"]) == 2
    assert not any(tmp_path.iterdir())
