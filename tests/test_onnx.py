"""ONNX export (graphnn/onnx_export.py, ``net.to_onnx``, ``graphnn export``).

Oracles: onnxruntime runs the written file and its outputs are compared with
``net.predict`` (two compiled graphs: float32 with every activation, Add, Concatenate,
Dropout and a final Softmax; float64 ending in a sigmoid) and, for random graphs that are
never compiled, with the NumPy reference (tests/reference.py).  ``onnx.checker`` with
``full_check=True`` checks every file.
"""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import graphnn as gn
from graphnn import cli, onnx_export
from graphnn.ops import activations as acts

import reference

try:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    HAVE_ONNX = True
except ImportError:
    HAVE_ONNX = False

needs_onnx = pytest.mark.skipif(
    not HAVE_ONNX, reason=f"onnx and onnxruntime are not installed: {onnx_export.INSTALL}")

F32_TOL = 1e-5
F64_TOL = 1e-12
# onnxruntime's CPU provider (1.32) has float64 kernels for these only; the others
# (LeakyRelu, Softplus, Gelu/Erf) are valid ONNX in float64 but it cannot run them
ORT_FLOAT64 = {"relu", "sigmoid", "tanh", "softmax", "linear"}
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def run_onnx(path_or_model, X):
    data = path_or_model.SerializeToString() if hasattr(path_or_model, "SerializeToString") \
        else str(path_or_model)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.shape == ["batch", X.shape[1]] and out.shape[0] == "batch"
    return sess.run([out.name], {inp.name: X})[0]


def random_params(model, rng, dtype, scale=0.6):
    """name -> random array for every parameter, from the graph's own shape rules."""
    params = {}
    for node in model.nodes:
        shapes = node.param_shapes([i.width for i in node.inputs])
        for local, shape in shapes.items():
            params[f"{model.names[node]}.{local}"] = rng.normal(0, scale, shape).astype(dtype)
    return params


# -- two compiled graphs, shared by the tests below -------------------------------------------

def everything_graph():
    """Every activation (as a Dense argument or a node), a 3-way Add, Concatenate, Dropout,
    a Dense without bias and a final Softmax node."""
    x = gn.Input(5)
    s = gn.Add()([gn.Dense(6, "relu")(x), gn.Dense(6, "gelu")(x), gn.Dense(6, "leaky_relu")(x)])
    d = gn.Dropout(0.3)(s)
    c = gn.Concatenate()([gn.Tanh()(d), gn.Softplus()(d),
                          gn.Dense(3, "sigmoid", use_bias=False)(d), gn.Dense(4, "softmax")(d)])
    return gn.Model(x, gn.Softmax()(gn.Dense(4)(c)))


@pytest.fixture(scope="module")
def net32():
    net = everything_graph().compile(loss="cross_entropy", seed=0)
    rng = np.random.default_rng(1)
    net.set_params({k: rng.normal(0, 0.6, v.shape) for k, v in net.get_params().items()})
    return net


@pytest.fixture(scope="module")
def net64():
    """float64, ending in a sigmoid (binary cross-entropy): predict returns probabilities."""
    model = gn.Sequential([gn.Dense(6, activation="tanh"), gn.Dropout(0.5),
                           gn.Dense(5, activation="relu"), gn.Dense(3, activation="sigmoid")],
                          input_dim=4)
    net = model.compile(loss="binary_cross_entropy", dtype="float64", seed=0)
    rng = np.random.default_rng(2)
    net.set_params({k: rng.normal(0, 0.8, v.shape) for k, v in net.get_params().items()})
    return net


@pytest.fixture(scope="module")
def X32():
    return np.random.default_rng(3).normal(0, 2, (37, 5)).astype(np.float32)


@needs_onnx
@pytest.mark.parametrize("opset", [None, 13])
def test_float32_matches_predict(net32, X32, tmp_path, opset):
    path = tmp_path / "net.onnx"
    model = net32.to_onnx(path, opset=opset)
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.ir_version == onnx.helper.find_min_ir_version_for(loaded.opset_import)
    ops = {n.op_type for n in loaded.graph.node}
    assert "Dropout" not in ops
    if opset is None:                # gelu present: the Gelu operator, from opset 20
        assert model.opset_import[0].version == 20 and "Gelu" in ops
    else:                            # gelu written with Erf
        assert model.opset_import[0].version == 13 and "Gelu" not in ops and "Erf" in ops
    assert loaded.graph.node[-1].op_type == "Softmax"        # the final softmax is kept
    for rows in (X32, X32[:1]):                              # dynamic batch
        got = run_onnx(path, rows)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, net32.predict(rows), rtol=F32_TOL, atol=F32_TOL)


@needs_onnx
def test_float64_matches_predict_with_final_sigmoid(net64, tmp_path):
    path = tmp_path / "net64.onnx"
    model = net64.to_onnx(path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert model.opset_import[0].version == onnx_export.DEFAULT_OPSET
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Tanh", "Gemm", "Relu", "Gemm",
                                                     "Sigmoid"]
    X = np.random.default_rng(4).normal(0, 2, (21, 4))
    got = run_onnx(path, X)
    assert got.dtype == np.float64 and ((got > 0) & (got < 1)).all()   # probabilities
    np.testing.assert_allclose(got, net64.predict(X), rtol=F64_TOL, atol=F64_TOL)


@needs_onnx
def test_initializers_are_the_parameters(net32, tmp_path):
    model = net32.to_onnx(tmp_path / "net.onnx")
    params = net32.get_params()
    found = {}
    for t in model.graph.initializer:
        if t.doc_string.startswith("graphnn parameter "):
            found[t.doc_string.removeprefix("graphnn parameter ")] = numpy_helper.to_array(t)
    assert list(found) == list(params)
    for k, v in params.items():
        assert found[k].dtype == v.dtype
        np.testing.assert_array_equal(found[k], v)               # W stays (in, out)


@needs_onnx
def test_names_are_unique_identifiers(net32):
    model = onnx_export.to_model(net32.model, net32.get_params(), net32.dtype)
    g = model.graph
    values = [i.name for i in g.input] + [t.name for t in g.initializer] + \
        [o for n in g.node for o in n.output]
    assert len(values) == len(set(values))
    nodes = [n.name for n in g.node]
    assert len(nodes) == len(set(nodes))
    assert all(IDENT.match(s) for s in values + nodes)
    assert [i.name for i in g.input] == ["input"] and [o.name for o in g.output] == ["output"]


# -- random graphs, never compiled: onnxruntime against the NumPy reference --------------------

ALL_ACTIVATIONS = sorted(acts.ACTIVATIONS) + list(acts.ROWWISE)
NODE_CLASSES = {"relu": gn.ReLU, "leaky_relu": gn.LeakyReLU, "sigmoid": gn.Sigmoid,
                "tanh": gn.Tanh, "softplus": gn.Softplus, "gelu": gn.GELU,
                "linear": gn.Linear, "softmax": gn.Softmax}


def random_graph(seed: int, activations=ALL_ACTIVATIONS):
    """A random DAG of Dense, activation nodes, Dropout, Add and Concatenate, every
    activation used at least once (as a Dense argument or a node)."""
    rng = np.random.default_rng(seed)
    x = gn.Input(int(rng.integers(2, 6)))
    pool = [x]
    todo = list(rng.permutation(activations))
    while todo or len(pool) < 8:
        act = str(todo.pop()) if todo else str(rng.choice(activations))
        kind = rng.integers(0, 5)
        src = pool[int(rng.integers(0, len(pool)))]
        if kind == 0:
            node = gn.Dense(int(rng.integers(2, 6)), activation=act,
                            use_bias=bool(rng.integers(0, 2)))(src)
        elif kind == 1:
            node = NODE_CLASSES[act]()(src)
        elif kind == 2:
            node = gn.Dropout(0.5)(gn.Dense(src.width, activation=act)(src))
        elif kind == 3:
            w = int(rng.integers(2, 5))
            ins = [gn.Dense(w, activation=act)(pool[i]) for i in rng.integers(0, len(pool), 3)]
            node = gn.Add()(ins)
        else:
            ins = [pool[i] for i in rng.integers(0, len(pool), 2)] + [
                gn.Dense(3, activation=act)(src)]
            node = gn.Concatenate()(ins)
        pool.append(node)
    # join every branch so the whole pool is in the graph
    out = gn.Concatenate()([gn.Dense(3)(p) for p in pool])
    if rng.integers(0, 2):
        out = gn.Softmax()(out)
    return gn.Model(x, out)


@needs_onnx
@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_float32(seed):
    model = random_graph(seed)
    rng = np.random.default_rng(100 + seed)
    params = random_params(model, rng, np.float32)
    onnx_model = onnx_export.to_model(model, params, np.float32)
    onnx.checker.check_model(onnx_model, full_check=True)
    X = rng.normal(0, 2, (13, model.input.width)).astype(np.float32)
    want = reference.forward(model, {k: v.astype(np.float64) for k, v in params.items()},
                             X.astype(np.float64))
    np.testing.assert_allclose(run_onnx(onnx_model, X), want, rtol=F32_TOL, atol=F32_TOL)


@needs_onnx
@pytest.mark.parametrize("seed", range(3))
def test_random_graphs_float64(seed):
    """Every activation passes check_model; onnxruntime runs a graph of the activations
    it has float64 kernels for."""
    rng = np.random.default_rng(200 + seed)
    model = random_graph(seed)
    onnx.checker.check_model(onnx_export.to_model(
        model, random_params(model, rng, np.float64), np.float64), full_check=True)
    model = random_graph(seed, sorted(ORT_FLOAT64))
    params = random_params(model, rng, np.float64)
    onnx_model = onnx_export.to_model(model, params, np.float64)
    onnx.checker.check_model(onnx_model, full_check=True)
    X = rng.normal(0, 2, (13, model.input.width))
    np.testing.assert_allclose(run_onnx(onnx_model, X), reference.forward(model, params, X),
                               rtol=F64_TOL, atol=F64_TOL)


@needs_onnx
@pytest.mark.parametrize("last", ["dropout", "linear", "input"])
def test_output_that_is_an_alias(last):
    """A graph ending in Dropout or a linear node (no ONNX node of its own): the node
    before writes "output", or an Identity when the output is the input itself.  An Input
    named "output" is renamed, not clashed with."""
    x = gn.Input(3, name="output")
    h = gn.Dense(4, activation="tanh")(x) if last != "input" else x
    out = gn.Dropout(0.2)(h) if last != "linear" else gn.Linear()(h)
    model = gn.Model(x, out)
    params = random_params(model, np.random.default_rng(5), np.float32)
    m = onnx_export.to_model(model, params, np.float32)
    onnx.checker.check_model(m, full_check=True)
    assert m.graph.input[0].name == "output_1" and m.graph.output[0].name == "output"
    assert m.graph.node[-1].op_type == ("Identity" if last == "input" else "Tanh")
    assert m.graph.node[-1].output[0] == "output"
    X = np.random.default_rng(6).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(m, X), reference.forward(model, params, X),
                               rtol=F32_TOL, atol=F32_TOL)


# -- errors --------------------------------------------------------------------------------

def tiny():
    model = gn.Sequential([gn.Dense(2)], input_dim=3)
    return model, random_params(model, np.random.default_rng(0), np.float32)


def test_every_layer_and_activation_has_a_rule():
    from graphnn.checkpoint_schema import NODE_TYPES
    assert set(onnx_export.ACTIVATIONS) == set(acts.ACTIVATIONS) | set(acts.ROWWISE)
    assert set(NODE_TYPES.values()) - {gn.Input} == set(onnx_export.LAYERS)


@needs_onnx
def test_unknown_layer_is_a_clear_error():
    class Twice(gn.Node):
        kind = "twice"

        def out_width(self, in_widths):
            return in_widths[0]

    x = gn.Input(3)
    model = gn.Model(x, Twice()(x))
    with pytest.raises(ValueError, match="no rule for Twice"):
        onnx_export.to_model(model, {}, np.float32)


@needs_onnx
@pytest.mark.parametrize("opset", [12, 10_000, "17", True, 17.0])
def test_bad_opset(opset, tmp_path):
    model, params = tiny()
    with pytest.raises(ValueError, match="opset must be an integer from 13"):
        onnx_export.to_model(model, params, np.float32, opset=opset)


@needs_onnx
def test_bad_dtype_and_missing_or_misshapen_parameter():
    model, params = tiny()
    with pytest.raises(ValueError, match="float32 or float64"):
        onnx_export.to_model(model, params, np.float16)
    with pytest.raises(ValueError, match="no parameter 'dense.bias'"):
        onnx_export.to_model(model, {"dense.weight": params["dense.weight"]}, np.float32)
    with pytest.raises(ValueError, match=r"'dense.weight' has shape \(2, 3\), the graph needs \(3, 2\)"):
        onnx_export.to_model(model, {**params, "dense.weight": params["dense.weight"].T},
                             np.float32)


def test_missing_onnx_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)          # import onnx now fails
    model, params = tiny()
    with pytest.raises(ImportError, match=re.escape('pip install "graphnn[onnx]"')):
        onnx_export.to_model(model, params, np.float32)


def test_import_graphnn_does_not_import_onnx():
    code = ("import sys, graphnn, graphnn.onnx_export, graphnn.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# -- the command line -------------------------------------------------------------------------

@needs_onnx
def test_cli_export(net32, X32, tmp_path, capsys):
    ckpt = tmp_path / "model.gnn"
    net32.save(ckpt)
    out = tmp_path / "sub" / "model.onnx"
    code = cli.main(["export", str(ckpt), "--onnx", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert f"wrote {out}" in stdout and "opset 20" in stdout
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    np.testing.assert_allclose(run_onnx(out, X32), net32.predict(X32),
                               rtol=F32_TOL, atol=F32_TOL)
    # a bad opset: exit status 2, one message, no file
    bad = tmp_path / "bad.onnx"
    code = cli.main(["export", str(ckpt), "--onnx", str(bad), "--opset", "5"])
    _, err = capsys.readouterr()
    assert code == 2 and "opset must be an integer from 13" in err and not bad.exists()


def test_cli_export_errors(tmp_path, capsys, monkeypatch):
    code = cli.main(["export", str(tmp_path / "nope.gnn"), "--onnx", str(tmp_path / "x.onnx")])
    _, err = capsys.readouterr()
    if HAVE_ONNX:
        assert code == 2 and "no such checkpoint" in err
    monkeypatch.setitem(sys.modules, "onnx", None)
    code = cli.main(["export", str(tmp_path / "nope.gnn"), "--onnx", str(tmp_path / "x.onnx")])
    _, err = capsys.readouterr()
    assert code == 2 and 'pip install "graphnn[onnx]"' in err and "Traceback" not in err
