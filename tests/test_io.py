"""Checkpoints: exact round trip, exact resume, atomic writes, clear errors on bad files."""
import os

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


def test_header_cannot_name_arbitrary_types(tmp_path):
    import hashlib, json, struct
    from graphnn import io
    net = _net()
    header = {"graph": {"name": "m", "input": "a", "output": "a",
                        "nodes": [{"name": "a", "type": "os.system", "config": {}, "inputs": []}]},
              "dtype": "float32", "loss": "mse", "optimizer": {"name": "SGD", "lr": 0.1},
              "seed": 0, "step": 0, "rng": net.rng.bit_generator.state, "arrays": []}
    head = json.dumps(header).encode()
    body = io._PREFIX.pack(io.MAGIC, io.FORMAT_VERSION, len(head)) + head
    p = tmp_path / "evil.gnn"
    p.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(gn.CheckpointError, match="unknown node type"):
        gn.load(p)
