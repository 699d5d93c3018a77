"""Hostile checkpoint headers: every field is checked before anything is built.

Each case edits the header of a real checkpoint and writes it back with a recomputed,
valid SHA-256 (computed here from the format's description, independently of
graphnn.io), so the checksum cannot mask a missing check.  Each must give a
CheckpointError that names the field, and no side effect.
"""
import hashlib
import json
import struct

import numpy as np
import pytest

import graphnn as gn
from test_io import _net


def _parse(raw: bytes):
    (n,) = struct.unpack_from("<Q", raw)
    return json.loads(raw[8:8 + n]), bytearray(raw[8 + n:])


def _write(path, header: dict, block: bytes):
    """Pack a header and data block as a safetensors file with a valid graphnn checksum:
    SHA-256 of the header without it (sorted keys, no spaces, ASCII), then the data."""
    meta = {k: v for k, v in header["__metadata__"].items() if k != "sha256"}
    canon = json.dumps({**header, "__metadata__": meta}, sort_keys=True, separators=(",", ":"),
                       ensure_ascii=True).encode()
    header["__metadata__"]["sha256"] = hashlib.sha256(canon + bytes(block)).hexdigest()
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + bytes(block))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained model's checkpoint (Adam: two state slots; a LeakyReLU and a Concatenate)."""
    rng = np.random.default_rng(0)
    net = _net()
    net.fit(rng.normal(size=(40, 5)), rng.integers(0, 4, 40), epochs=1, batch_size=16)
    path = tmp_path_factory.mktemp("ck") / "model.gnn"
    net.save(path)
    return path.read_bytes()


def _edit_graph(fn):
    def edit(header, block):
        meta = header["__metadata__"]
        graph = json.loads(meta["graph"])
        fn(graph)
        meta["graph"] = json.dumps(graph)
    return edit


def _edit_json(key, fn):
    def edit(header, block):
        meta = header["__metadata__"]
        value = json.loads(meta[key])
        meta[key] = json.dumps(fn(value))
    return edit


def _set(key, value):
    def edit(header, block):
        header["__metadata__"][key] = value
    return edit


def _rename_node(old, new):
    def fn(graph):
        for node in graph["nodes"]:
            if node["name"] == old:
                node["name"] = new
            node["inputs"] = [new if i == old else i for i in node["inputs"]]
        for key in ("input", "output"):
            if graph[key] == old:
                graph[key] = new
    return fn


def _nan_at(tensor):
    def edit(header, block):
        lo = header[tensor]["data_offsets"][0]
        block[lo:lo + 4] = np.array([np.nan], "<f4").tobytes()
    return edit


def _inf_last(header, block):
    block[-4:] = np.array([np.inf], "<f4").tobytes()


def _drop_tensor(name):
    def edit(header, block):
        del header[name]
    return edit


def _schedule(cfg):
    return _edit_json("optimizer", lambda opt: {**opt, "lr": cfg})


def _node_config(index, **changes):
    def fn(graph):
        graph["nodes"][index]["config"].update(changes)
    return fn


PLATEAU = {"type": "ReduceOnPlateau", "initial": 0.1, "monitor": "loss", "factor": 0.5,
           "patience": 1, "min_delta": 0.0, "mode": "min", "threshold_mode": "abs",
           "min_lr": 0.0, "lr": 0.1, "best": "inf", "bad_epochs": 0}
HOSTILE_NAME = '"""; __import__("pathlib").Path("PWNED").touch(); """'

CASES = {
    # missing fields and arrays
    "no rng": (lambda h, b: h["__metadata__"].pop("rng"), "rng"),
    "no graph": (lambda h, b: h["__metadata__"].pop("graph"), "graph"),
    "no state array": (_drop_tensor("optimizer.1.dense.bias"), "optimizer.1.dense.bias"),
    "unknown metadata": (_set("exec", "print(1)"), "exec"),
    "extra tensor": (lambda h, b: h.update(extra={"dtype": "F32", "shape": [0],
                                                   "data_offsets": [0, 0]}), "extra"),
    # wrong types and ranges
    "rng a list": (_set("rng", "[1, 2]"), "rng"),
    "rng state a string": (_edit_json("rng", lambda r: {**r, "state": "x"}), "rng.state"),
    "rng inc too big": (_edit_json("rng", lambda r: {**r, "state": {"state": 1, "inc": 2 ** 130}}),
                        "rng.state.inc"),
    "rng other generator": (_edit_json("rng", lambda r: {**r, "bit_generator": "MT19937"}),
                            "rng.bit_generator"),
    "step abc": (_set("step", "abc"), "step"),
    "step 2**70": (_set("step", str(2 ** 70)), "step"),
    "step negative": (_set("step", "-1"), "step"),
    "epoch float": (_set("epoch", "1e3"), "epoch"),
    "dropout key": (_set("dropout_key", str(2 ** 31)), "dropout_key"),
    "seed bool": (_set("seed", "true"), "seed"),
    "seed negative": (_set("seed", "-5"), "seed"),
    "graph not json": (_set("graph", "{'nodes': "), "graph"),
    "graph NaN": (_set("graph", "NaN"), "graph"),
    # schedules and optimizers
    "abstract schedule": (_schedule({"type": "Schedule", "initial": 0.1}), "optimizer.lr.type"),
    "private schedule": (_schedule({"type": "_PerStep", "initial": 0.1}), "optimizer.lr.type"),
    "unknown schedule": (_schedule({"type": "os.system", "initial": 0.1}), "optimizer.lr.type"),
    "schedule bad state": (_schedule({**PLATEAU, "bad_epochs": -1}), "optimizer.lr.bad_epochs"),
    "schedule best nan": (_schedule({**PLATEAU, "best": "nan"}), "optimizer.lr.best"),
    "schedule lr 1e400": (lambda h, b: h["__metadata__"].update(optimizer=json.dumps(
        {"name": "SGD", "lr": PLATEAU, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
    ).replace('"lr": 0.1, "best"', '"lr": 1e400, "best"')), "optimizer"),
    "schedule attr": (_schedule({**PLATEAU, "_fn": 1}), "optimizer.lr._fn"),
    "schedule arg type": (_schedule({**PLATEAU, "patience": "2"}), "optimizer.lr"),
    "unknown optimizer": (_edit_json("optimizer", lambda o: {**o, "name": "Lion"}),
                          "optimizer.name"),
    "optimizer bool": (_edit_json("optimizer", lambda o: {**o, "eps": True}), "optimizer.eps"),
    "optimizer betas": (_edit_json("optimizer", lambda o: {**o, "betas": "0.9"}),
                        "optimizer.betas"),
    "optimizer extra": (_edit_json("optimizer", lambda o: {**o, "hook": "x"}), "optimizer.hook"),
    "optimizer lr inf": (_edit_json("optimizer", lambda o: {**o, "lr": 1e400}), "optimizer"),
    "optimizer lr zero": (_edit_json("optimizer", lambda o: {**o, "lr": 0}), "optimizer"),
    # values
    "NaN parameter": (_nan_at("dense.weight"), "dense.weight"),
    "Inf state": (_inf_last, "optimizer.1."),
    # graph structure
    "unknown node type": (_edit_graph(lambda g: g["nodes"][1].update(type="os.system")),
                          "graph.nodes[1].type"),
    "base node type": (_edit_graph(lambda g: g["nodes"][1].update(type="Node")),
                       "graph.nodes[1].type"),
    "wider layer": (_edit_graph(_node_config(1, units=9)), "dense.weight"),
    "wider input": (_edit_graph(_node_config(0, width=6)), "dense.weight"),
    "huge units": (_edit_graph(_node_config(1, units=2 ** 40)), "graph.nodes[1].config.units"),
    "units bool": (_edit_graph(_node_config(1, units=True)), "graph.nodes[1].config.units"),
    "config extra": (_edit_graph(_node_config(1, units2=3)), "graph.nodes[1].config.units2"),
    "bad activation": (_edit_graph(_node_config(1, activation="os.system")), "graph.nodes[1]"),
    "later input": (_edit_graph(lambda g: g["nodes"][1].update(inputs=["dense_2"])),
                    "graph.nodes[1].inputs"),
    "two inputs": (_edit_graph(lambda g: g["nodes"][1].update(type="Input", inputs=[],
                                                              config={"width": 5})),
                   "graph"),
    "wrong arity": (_edit_graph(lambda g: g["nodes"][-1].update(
        inputs=g["nodes"][-1]["inputs"] * 2)), "graph.nodes"),
    "tensor shape": (lambda h, b: h["dense.weight"].update(shape=[8, 5]), "dense.weight"),
    "tensor dtype": (lambda h, b: h["dense.weight"].update(dtype="F64"), "dense.weight"),
    "unknown dtype": (_set("dtype", "float13"), "dtype"),
    "unknown loss": (_set("loss", "hinge"), "loss"),
    # hostile names: they must never reach generated code
    "code in model name": (_edit_graph(lambda g: g.update(name=HOSTILE_NAME)), "graph.name"),
    "newline in model name": (_edit_graph(lambda g: g.update(name="a\nb")), "graph.name"),
    "10 kB model name": (_edit_graph(lambda g: g.update(name="m" * 10_000)), "graph.name"),
    "code in layer name": (_edit_graph(_rename_node("dense", 'x"""; import os; """')),
                           "graph.nodes[1].name"),
    "newline in layer name": (_edit_graph(_rename_node("dense", "a\nb")), "graph.nodes[1].name"),
    "10 kB layer name": (_edit_graph(_rename_node("dense", "d" * 10_000)), "graph.nodes[1].name"),
    "non-ASCII layer name": (_edit_graph(_rename_node("dense", "dénse")), "graph.nodes[1].name"),
    "braces in layer name": (_edit_graph(_rename_node("dense", "{x}")), "graph.nodes[1].name"),
}


def test_unedited_rewrite_loads(saved, tmp_path):
    """The crafting helper itself is right: rewriting with no edit gives a loadable file."""
    header, block = _parse(saved)
    _write(tmp_path / "same.gnn", header, block)
    gn.load(tmp_path / "same.gnn")


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_header_is_refused(saved, tmp_path, monkeypatch, case):
    edit, field = CASES[case]
    header, block = _parse(saved)
    edit(header, block)
    path = tmp_path / "evil.gnn"
    _write(path, header, block)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(gn.CheckpointError) as err:
        gn.load(path)
    message = str(err.value)
    assert field in message, message
    assert "checksum" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.gnn"]     # no PWNED file


def test_checksum_still_guards_the_header(saved, tmp_path):
    header, block = _parse(saved)
    header["__metadata__"]["step"] = "5"            # edited without recomputing the checksum
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    (tmp_path / "m.gnn").write_bytes(struct.pack("<Q", len(head)) + head + bytes(block))
    with pytest.raises(gn.CheckpointError, match="checksum does not match"):
        gn.load(tmp_path / "m.gnn")


def test_printable_names_round_trip(tmp_path):
    """Names that are data, not code (quotes aside), survive a save: read without compiling."""
    from graphnn import io
    net = _net()
    net.model.name = "Bob's {net} ü #1"
    net.save(tmp_path / "m.gnn")
    assert io.read(tmp_path / "m.gnn").graph.name == "Bob's {net} ü #1"
