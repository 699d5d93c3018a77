"""Checkpoints: exact round trip, exact resume, atomic writes, clear errors on bad files,
safetensors compatibility (checked with the safetensors package's own reader), file modes,
symlinks and stale temporaries.  Hostile headers: test_checkpoint_header.py."""
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import graphnn as gn


def _net(seed=0):
    x = gn.Input(5)
    h = gn.Dense(8, activation="gelu")(x)
    h = gn.Concatenate()([h, gn.Dense(3, activation="sigmoid", name="side")(x)])
    out = gn.Dense(4, activation="softmax")(gn.LeakyReLU()(h))
    return gn.Model(x, out).compile(loss="cross_entropy",
                                    optimizer=gn.Adam(lr=0.01, weight_decay=0.01), seed=seed)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(60, 5)), rng.integers(0, 4, 60)


def test_save_load_predicts_bit_for_bit(tmp_path, data):
    X, y = data
    net = _net()
    net.fit(X, y, epochs=2, batch_size=16)
    path = tmp_path / "model.gnn"
    net.save(path)
    back = gn.load(path)
    assert np.array_equal(back.predict(X), net.predict(X))
    assert back.summary() == net.summary()
    assert back.dtype == net.dtype and back.loss.name == "cross_entropy"
    assert repr(back.optimizer) == repr(net.optimizer)


def test_resume_is_exact(tmp_path, data):
    X, y = data
    straight = _net()
    straight.fit(X, y, epochs=10, batch_size=16)
    first = _net()
    first.fit(X, y, epochs=5, batch_size=16)
    first.save(tmp_path / "half.gnn")
    resumed = gn.load(tmp_path / "half.gnn")
    resumed.fit(X, y, epochs=5, batch_size=16)
    a, b = straight.get_params(), resumed.get_params()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert resumed.step == straight.step and resumed.epoch == 10


def test_bad_files_give_clear_errors(tmp_path, data):
    net = _net()
    good = tmp_path / "good.gnn"
    net.save(good)
    raw = good.read_bytes()
    cases = {
        "truncated": raw[: len(raw) // 2],
        "tiny": raw[:10],
        "flipped": raw[:100] + bytes([raw[100] ^ 0xFF]) + raw[101:],
        "foreign": b"PK\x03\x04 this is a zip file, not a model" * 3,
    }
    for name, content in cases.items():
        p = tmp_path / f"{name}.gnn"
        p.write_bytes(content)
        with pytest.raises(gn.CheckpointError, match="truncated|corrupted|not a graphnn"):
            gn.load(p)
    with pytest.raises(FileNotFoundError):
        gn.load(tmp_path / "missing.gnn")


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, data, monkeypatch):
    X, y = data
    net = _net()
    path = tmp_path / "ckpt.gnn"
    net.save(path)
    before = path.read_bytes()
    net.fit(X, y, epochs=1)

    def crash(*args):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        net.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.gnn"]    # no temporary left behind
    gn.load(path)


def test_safetensors_reads_a_checkpoint(tmp_path, data):
    st = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed "
                             "(pip install graphnn[safetensors])")
    from safetensors import safe_open
    X, y = data
    net = _net()
    net.fit(X, y, epochs=1, batch_size=16)
    path = tmp_path / "model.gnn"
    net.save(path)
    arrays = st.load_file(str(path))
    params = net.get_params()
    for name, value in params.items():
        assert arrays[name].dtype == value.dtype and np.array_equal(arrays[name], value)
    state = net.state.reshape(2, -1)                   # Adam: slot 0 (m), slot 1 (v)
    flat = {k: np.concatenate([arrays[f"optimizer.{k}.{n}"].ravel() for n in params])
            for k in (0, 1)}
    assert np.array_equal(flat[0], state[0]) and np.array_equal(flat[1], state[1])
    assert len(arrays) == 3 * len(params)
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    assert meta["graphnn_checkpoint"] == "2" and meta["dtype"] == "float32"
    assert json.loads(meta["graph"])["nodes"][0]["type"] == "Input"
    assert int(meta["step"]) == net.step and int(meta["epoch"]) == 1
    raw = path.read_bytes()
    (n,) = struct.unpack_from("<Q", raw)
    assert (8 + n) % 8 == 0 and raw[8 + n - 1:8 + n] in (b" ", b"}")
    # flat-buffer order: the data block is the parameter buffer, then the state buffer
    block = np.frombuffer(raw[8 + n:], "<f4")
    assert np.array_equal(block, np.concatenate([net.params, net.state]))


def test_old_and_foreign_files_say_what_they_are(tmp_path):
    old = tmp_path / "old.gnn"
    old.write_bytes(b"GRAPHNN\0" + struct.pack("<IQ", 1, 2) + b"{}" + bytes(32))
    with pytest.raises(gn.CheckpointError, match="graphnn 0.1 checkpoint"):
        gn.load(old)
    foreign = tmp_path / "weights.safetensors"
    head = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    head += b" " * (-len(head) % 8)
    foreign.write_bytes(struct.pack("<Q", len(head)) + head + np.ones(2, "<f4").tobytes())
    with pytest.raises(gn.CheckpointError, match="safetensors file without graphnn"):
        gn.load(foreign)


def test_is_checkpoint_reads_only_the_start(tmp_path):
    from graphnn import io
    net = _net()
    net.save(tmp_path / "m.gnn")
    (tmp_path / "old.gnn").write_bytes(b"GRAPHNN\0" + bytes(40))
    (tmp_path / "run.toml").write_text("epochs = 3\n")
    (tmp_path / "empty").write_bytes(b"")
    head = (tmp_path / "m.gnn").read_bytes()[:200]
    (tmp_path / "start_only.gnn").write_bytes(head)        # the start is all it reads
    assert io.is_checkpoint(tmp_path / "m.gnn") and io.is_checkpoint(tmp_path / "old.gnn")
    assert io.is_checkpoint(str(tmp_path / "start_only.gnn"))
    for name in ("run.toml", "empty", "missing.gnn"):
        assert not io.is_checkpoint(tmp_path / name)
    assert not io.is_checkpoint(tmp_path)                  # a folder


def test_file_mode_follows_the_umask(tmp_path):
    net = _net()
    for umask, mode in ((0o022, 0o644), (0o027, 0o640), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            path = tmp_path / f"u{umask:o}.gnn"
            net.save(path)
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == mode, oct(umask)
    existing = tmp_path / "existing.gnn"                   # replacing keeps the file's mode
    existing.write_bytes(b"x")
    existing.chmod(0o604)
    net.save(existing)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o604
    gn.load(existing)


def test_save_through_a_symlink_writes_its_target(tmp_path, data):
    net = _net()
    real = tmp_path / "store"
    real.mkdir()
    link = tmp_path / "latest.gnn"
    link.symlink_to(real / "model.gnn")                    # dangling: save creates the target
    net.save(link)
    assert link.is_symlink() and (real / "model.gnn").is_file()
    net.fit(*data, epochs=1)
    net.save(link)                                          # an existing target is replaced
    assert link.is_symlink()
    assert np.array_equal(gn.load(real / "model.gnn").predict(data[0]), net.predict(data[0]))
    assert sorted(p.name for p in real.iterdir()) == ["model.gnn"]


_KILLED_SAVER = """
import os, signal, sys
from graphnn import io
os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)   # die after writing the temporary
io.write_atomic(sys.argv[1], b"x" * 1000)
"""


def test_stale_temporaries_of_killed_savers_are_removed(tmp_path):
    from graphnn import io
    root = os.path.dirname(os.path.dirname(os.path.abspath(gn.__file__)))   # this graphnn
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _KILLED_SAVER, str(tmp_path / "m.gnn")],
                          env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    (left,) = [p for p in tmp_path.iterdir()]               # what kill -9 leaves behind
    assert left.name.startswith(".graphnn-") and left.name.endswith(".tmp")
    old = time.time() - io.STALE_SECONDS - 60
    os.utime(left, (old, old))
    fresh = tmp_path / ".graphnn-fresh0000.tmp"             # a concurrent saver, just started
    fresh.write_bytes(b"y")
    busy = tmp_path / ".graphnn-busy0000.tmp"               # a slow saver, still holding its lock
    busy.write_bytes(b"z")
    os.utime(busy, (old, old))
    other = tmp_path / ".graphnn-keep.tmp.bak"              # not our pattern
    other.write_bytes(b"w")
    os.utime(other, (old, old))
    import fcntl
    with open(busy, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        _net().save(tmp_path / "m.gnn")
        names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["m.gnn", fresh.name, busy.name, other.name])
    io.write_atomic(tmp_path / "m2.gnn", b"data")          # lock released: busy is stale now
    assert not busy.exists() and fresh.exists() and other.exists()


def test_schedule_state_round_trips(tmp_path, data):
    """ReduceOnPlateau keeps its running state (best = inf at the start: written as "inf");
    a float64 model's tensors are F64."""
    x = gn.Input(5)
    sched = gn.schedules.ReduceOnPlateau(0.05, monitor="loss", patience=0, factor=0.5)
    net = gn.Model(x, gn.Dense(4)(gn.Dense(8, activation="gelu")(x))).compile(
        loss="cross_entropy", optimizer=gn.SGD(sched, momentum=0.9), seed=0, dtype="float64")
    net.save(tmp_path / "fresh.gnn")
    back = gn.load(tmp_path / "fresh.gnn")
    assert back.optimizer.schedule.best == np.inf and back.optimizer.schedule.lr == 0.05
    net.fit(*data, epochs=3, batch_size=16)
    net.save(tmp_path / "m.gnn")
    back = gn.load(tmp_path / "m.gnn")
    a, b = net.optimizer.schedule, back.optimizer.schedule
    saved = net.get_params()
    assert (a.lr, a.best, a.bad_epochs) == (b.lr, b.best, b.bad_epochs)
    net.fit(*data, epochs=2, batch_size=16)
    back.fit(*data, epochs=2, batch_size=16)
    p, q = net.get_params(), back.get_params()
    assert all(np.array_equal(p[k], q[k]) for k in p)
    st = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed")
    arrays = st.load_file(str(tmp_path / "m.gnn"))
    for name, value in saved.items():
        assert arrays[name].dtype == np.float64 and np.array_equal(arrays[name], value)


def test_unsaveable_models_are_refused_before_writing(tmp_path):
    net = _net()
    net.model.name = 'say "hi"'
    with pytest.raises(ValueError, match="double quote"):
        net.save(tmp_path / "a.gnn")
    net.model.name = "model"

    class MySchedule(gn.schedules.Constant):
        pass
    adam = net.optimizer
    net.optimizer = gn.Adam(MySchedule(0.1))
    with pytest.raises(ValueError, match="schedule MySchedule"):
        net.save(tmp_path / "a.gnn")
    net.optimizer = adam
    net.params[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.save(tmp_path / "a.gnn")
    assert list(tmp_path.iterdir()) == []
