"""Building graphs: shape inference, naming, structural errors, summary and source."""
import numpy as np
import pytest

import graphnn as gn
from graphnn.graph import topological_order


def test_sequential_shapes_and_names():
    model = gn.Sequential([gn.Dense(8, activation="relu"), gn.Dense(3)], input_dim=5)
    names = [model.names[n] for n in model.nodes]
    assert names == ["input", "dense", "dense_1"]
    assert [n.width for n in model.nodes] == [5, 8, 3]


def test_names_are_per_model_and_explicit_names_kept():
    for _ in range(2):   # building a second model must not shift the default names
        x = gn.Input(4)
        h = gn.Dense(3, name="hidden")(x)
        out = gn.Dense(2)(gn.Dense(3)(h))
        model = gn.Model(x, out)
        assert [model.names[n] for n in model.nodes] == ["input", "hidden", "dense", "dense_1"]


def test_functional_dag_matches_issue_example():
    x = gn.Input(64)
    h = gn.Dense(128, activation="relu")(x)
    r = gn.Add()([h, gn.Dense(128, activation="tanh")(h)])
    out = gn.Dense(10)(gn.ReLU()(r))
    model = gn.Model(x, out)
    assert out.width == 10 and r.width == 128
    order = model.nodes
    for node in order:   # topological: inputs before consumers
        for i in node.inputs:
            assert order.index(i) < order.index(node)


def test_add_shape_mismatch_names_node_and_shapes():
    x = gn.Input(4)
    a, b = gn.Dense(3)(x), gn.Dense(5)(x)
    with pytest.raises(ValueError, match=r"Add.*\(None, 3\).*\(None, 5\)"):
        gn.Add(name="merge")([a, b])


def test_concatenate_width():
    x = gn.Input(4)
    c = gn.Concatenate()([gn.Dense(3)(x), gn.Dense(5)(x), x])
    assert c.width == 12


@pytest.mark.parametrize("kwargs, match", [
    (dict(units=0), "positive integer"),
    (dict(units=2.5), "positive integer"),
    (dict(units=3, activation="swish"), "unknown activation 'swish'"),
    (dict(units=3, use_bias="yes"), "use_bias"),
    (dict(units=3, kernel_init="bogus"), "not an initializer"),
    (dict(units=3, name="has space"), "not valid"),
])
def test_bad_layer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gn.Dense(**kwargs)


def test_layer_reuse_and_unconnected_input_are_errors():
    x = gn.Input(4)
    d = gn.Dense(3)
    d(x)
    with pytest.raises(ValueError, match="already connected"):
        d(x)
    dangling = gn.Dense(3)          # never called: shape unknown
    with pytest.raises(ValueError, match="not been called"):
        gn.Dense(2)(dangling)
    with pytest.raises(ValueError, match="merges two or more"):
        gn.Add()([x])


def test_cycle_is_detected():
    x = gn.Input(3)
    a = gn.Dense(3)(x)
    b = gn.Dense(3)(a)
    a.inputs = [b]                  # only possible by editing the graph by hand
    with pytest.raises(ValueError, match="cycle"):
        topological_order(b)


def test_model_with_foreign_input_or_no_path():
    x1, x2 = gn.Input(3), gn.Input(3)
    out = gn.Add()([gn.Dense(2)(x1), gn.Dense(2)(x2)])
    with pytest.raises(ValueError, match="not the model's input"):
        gn.Model(x1, out)
    with pytest.raises(ValueError, match="not the model's input"):
        gn.Model(gn.Input(3), gn.Dense(2)(gn.Input(3)))


def test_sequential_needs_input_dim_and_duplicate_names_fail():
    with pytest.raises(ValueError, match="input_dim"):
        gn.Sequential([gn.Dense(2)])
    with pytest.raises(ValueError, match="named 'same'"):
        gn.Sequential([gn.Dense(2, name="same"), gn.Dense(2, name="same")], input_dim=2)


def test_compile_argument_errors():
    model = gn.Sequential([gn.Dense(2)], input_dim=2)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        model.compile(loss="hinge")
    with pytest.raises(ValueError, match="dtype"):
        model.compile(dtype="int32")
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        model.compile(device="tpu")      # device="cuda" without a GPU: tests/test_cuda.py
    with pytest.raises(ValueError, match="lr"):
        gn.SGD(lr=-1)
    one = gn.Sequential([gn.Dense(1)], input_dim=2)
    with pytest.raises(ValueError, match="at least 2"):
        one.compile(loss="cross_entropy")
    x = gn.Input(3)
    with pytest.raises(ValueError, match="no trainable parameters"):
        gn.Model(x, gn.ReLU()(x)).compile()


def test_summary_and_source(small_classifier):
    text = small_classifier.summary()
    assert "dense (Dense (tanh))" in text and "(None, 6)" in text
    assert "Total params: 51" in text            # 4*6+6 + 6*3+3
    src = small_classifier.source()
    for needle in ("def forward(", "def backward(", "def train_step(", "train_epoch_labels",
                   "matmul(x, W1, h1)", "dW = x^T @ dz",
                   "bias_act_tanh(h1, h1, b1)", "loss_cross_entropy"):
        assert needle in src
    compile(src, "<generated>", "exec")          # the shown source is valid Python
    lib = small_classifier.library_source()     # the kernels the glue names, with their math
    for needle in ("def matmul(", "def matmul_at(", "def bias_act_tanh(", "def cross_entropy_row(",
                   "def loss_cross_entropy(", "def apply_update(", "def sgd_update("):
        assert needle in lib
    compile(lib, "<library>", "exec")


def test_import_does_not_load_numba_cuda():
    import subprocess, sys
    code = "import sys, graphnn; print('numba.cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
