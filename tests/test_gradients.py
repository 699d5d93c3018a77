"""Forward values and gradients of every op, checked against an independent NumPy oracle.

For each op and graph: ``net.predict`` against ``reference.forward``; the loss from
``net.loss_and_grads`` against ``reference.model_loss``; the gradients against central
finite differences both of the engine's own loss (``net.evaluate``) and of the
reference loss.  Parameters are drawn at random (biases too, so bias gradients are not
trivially symmetric) and redrawn until no relu / leaky_relu pre-activation lies within
``KINK_MARGIN`` of its kink, so the finite differences are valid.

Compiling costs seconds per model, so every test compiles one model and makes all its
checks on it.
"""
import zlib

import numpy as np
import pytest

import graphnn as gn
import reference

EPS = 1e-6                  # finite-difference step
FD_RTOL, FD_ATOL = 1e-5, 1e-8
FWD_RTOL, FWD_ATOL = 1e-10, 1e-12
KINK_MARGIN = 1e-4          # >> EPS * |input|: finite differences never cross a kink
LOSSES = ["mse", "cross_entropy", "binary_cross_entropy"]


# -- helpers -------------------------------------------------------------------------------
def compile_(model, loss, dtype="float64"):
    return model.compile(loss=loss, optimizer=gn.SGD(lr=0.1), seed=0, dtype=dtype)


def random_params(net, rng):
    """Weights ~ N(0, 1/fan_in), biases ~ N(0, 0.5^2): every gradient entry non-trivial."""
    out = {}
    for name, value in net.get_params().items():
        if name.endswith(".weight"):
            out[name] = rng.normal(0.0, 1.0 / np.sqrt(value.shape[0]), size=value.shape)
        else:
            out[name] = rng.normal(0.0, 0.5, size=value.shape)
    return out


def make_targets(loss, rows, width, rng):
    if loss == "mse":
        return rng.normal(size=(rows, width))
    if loss == "cross_entropy":
        y = rng.integers(0, width, size=rows)
        y[:width] = np.arange(width)[:rows]       # every class present
        return y
    if loss == "binary_cross_entropy":
        t = rng.uniform(0.0, 1.0, size=(rows, width))   # soft targets ...
        t[0, :] = 0.0                                     # ... and the hard ends
        t[-1, :] = 1.0
        return t
    raise ValueError(loss)


def kink_distance(model, params, X):
    """The smallest |pre-activation| of any relu / leaky_relu in the graph (inf if none)."""
    _, pre = reference.forward_all(model, params, X)
    dist = np.inf
    for node, z in pre.items():
        if getattr(node, "activation", None) in ("relu", "leaky_relu"):
            dist = min(dist, float(np.min(np.abs(z))))
    return dist


def draw(net, model, loss, rows, seed):
    """Random (params, X, y), redrawn (deterministically) until away from every kink."""
    for attempt in range(100):
        rng = np.random.default_rng([seed, attempt])
        params = random_params(net, rng)
        X = rng.normal(size=(rows, model.input.width))
        y = make_targets(loss, rows, model.output.width, rng)
        if kink_distance(model, params, X) > KINK_MARGIN:
            return params, X, y
    raise AssertionError("could not draw parameters away from the relu kinks")


def engine_fd(net, X, y, eps=EPS):
    """Central differences of ``net.evaluate(X, y)["loss"]`` for every parameter."""
    base = net.get_params()
    grads = {}
    try:
        for name, value in base.items():
            g = np.zeros_like(value)
            for idx in np.ndindex(value.shape):
                trial = dict(base)
                trial[name] = value.copy()
                trial[name][idx] = value[idx] + eps
                net.set_params(trial)
                up = net.evaluate(X, y)["loss"]
                trial[name][idx] = value[idx] - eps
                net.set_params(trial)
                down = net.evaluate(X, y)["loss"]
                g[idx] = (up - down) / (2 * eps)
            grads[name] = g
    finally:
        net.set_params(base)
    return grads


def assert_grads_close(got, want, rtol=FD_RTOL, atol=FD_ATOL, what=""):
    """Every parameter's gradient close; a failure lists every parameter that is off
    (in a chain, a wrong backward step spoils the parameters below it, not above)."""
    assert list(got) == list(want), f"parameter names/order differ {what}"
    bad = []
    for name in want:
        assert got[name].shape == want[name].shape, name
        if not np.allclose(got[name], want[name], rtol=rtol, atol=atol):
            err = np.max(np.abs(got[name] - want[name]) / (atol + rtol * np.abs(want[name])))
            bad.append(f"{name} (worst error {err:.3g}x tolerance)")
    assert not bad, f"gradients {what} wrong for: " + ", ".join(bad)


def check_net(net, model, loss, params, X, y):
    """All float64 checks of one compiled net at one point (params, X, y)."""
    net.set_params(params)
    # forward (inference)
    pred = net.predict(X)
    assert pred.dtype == np.float64
    np.testing.assert_allclose(pred, reference.forward(model, params, X),
                               rtol=FWD_RTOL, atol=FWD_ATOL, err_msg="predict vs reference")
    # loss
    ref_loss = reference.model_loss(model, params, X, y, loss)
    value, grads = net.loss_and_grads(X, y)
    assert np.isfinite(value)
    assert value == pytest.approx(ref_loss, rel=1e-10, abs=1e-14)
    assert net.evaluate(X, y)["loss"] == pytest.approx(ref_loss, rel=1e-10, abs=1e-14)
    # loss_and_grads updates nothing
    after = net.get_params()
    for name in params:
        np.testing.assert_array_equal(after[name], params[name])
    # gradients
    assert list(grads) == list(net.get_params())
    for g in grads.values():
        assert g.dtype == np.float64
    assert_grads_close(grads, engine_fd(net, X, y), what="vs finite differences of evaluate")
    assert_grads_close(grads, reference.numerical_grads(model, params, X, y, loss, EPS),
                       what="vs finite differences of the reference loss")
    return value, grads


# -- every op ------------------------------------------------------------------------------
ACTIVATION_NODE = {
    "relu": gn.ReLU, "leaky_relu": gn.LeakyReLU, "sigmoid": gn.Sigmoid, "tanh": gn.Tanh,
    "softplus": gn.Softplus, "gelu": gn.GELU, "linear": gn.Linear, "softmax": gn.Softmax,
}

# Each model puts two activations a, b in both forms between parameters:
#   Input -> Dense(act=a) -> Dense -> <b node> -> Dense(act=b) -> Dense -> <a node> -> Dense
# (four models cover the eight activations: compiling is what costs time).  The plain
# Dense layers in between have no bias, and neither has the Dense named in no_bias, so
# use_bias=False is covered for linear, elementwise and softmax activations.
# a, b, no_bias, loss, rows, (input, hidden 1, hidden 2, output) widths
ACT_CASES = [
    ("relu", "tanh", "b", "mse", 6, (5, 4, 6, 3)),
    ("leaky_relu", "sigmoid", None, "cross_entropy", 7, (4, 6, 5, 3)),
    ("softmax", "linear", "a", "binary_cross_entropy", 5, (3, 5, 4, 2)),
    ("gelu", "softplus", None, "cross_entropy", 6, (5, 4, 5, 4)),
]


@pytest.mark.parametrize("a, b, no_bias, loss, rows, widths", ACT_CASES,
                         ids=[f"{c[0]}+{c[1]}" for c in ACT_CASES])
def test_activations_as_dense_and_as_node(a, b, no_bias, loss, rows, widths):
    d, h1, h2, k = widths
    x = gn.Input(d)
    dense_a = gn.Dense(h1, activation=a, use_bias=no_bias != "a")(x)
    node_b = ACTIVATION_NODE[b]()(gn.Dense(h1, use_bias=False)(dense_a))
    dense_b = gn.Dense(h2, activation=b, use_bias=no_bias != "b")(node_b)
    node_a = ACTIVATION_NODE[a]()(gn.Dense(h2, use_bias=False)(dense_b))
    out = gn.Dense(k)(node_a)
    model = gn.Model(x, out)
    assert (dense_a.activation, node_b.activation, dense_b.activation, node_a.activation) \
        == (a, b, b, a)
    net = compile_(model, loss)
    names = list(net.get_params())
    assert names == [n for n, keep in [
        ("dense.weight", True), ("dense.bias", no_bias != "a"), ("dense_1.weight", True),
        ("dense_2.weight", True), ("dense_2.bias", no_bias != "b"), ("dense_3.weight", True),
        ("dense_4.weight", True), ("dense_4.bias", True)] if keep]
    params, X, y = draw(net, model, loss, rows, seed=zlib.crc32(f"{a}+{b}".encode()))
    # the kinked activations really see both signs
    _, pre = reference.forward_all(model, params, X)
    for n in (dense_a, node_b, dense_b, node_a):
        if n.activation in ("relu", "leaky_relu"):
            assert (pre[n] > 0).any() and (pre[n] < 0).any()
    check_net(net, model, loss, params, X, y)


def test_add_and_concatenate_with_shared_and_repeated_inputs():
    """Add of four inputs (one twice, one also read by a Dense) and Concatenate of the
    raw input (which takes no gradient) and repeated nodes: the gradients add up."""
    x = gn.Input(5)
    a = gn.Dense(4, activation="tanh")(x)
    b = gn.Dense(4)(x)
    c = gn.Dense(4, activation="sigmoid")(a)        # a: read by c, the Add (twice), the Concat
    s = gn.Add()([a, b, c, a])
    assert s.width == 4
    cat = gn.Concatenate()([s, x, a, s])
    assert cat.width == 4 + 5 + 4 + 4
    out = gn.Dense(3)(cat)
    model = gn.Model(x, out)
    net = compile_(model, "mse")
    params, X, y = draw(net, model, "mse", 6, seed=11)
    check_net(net, model, "mse", params, X, y)


# -- whole graphs, each loss -----------------------------------------------------------------
_MLP_NETS = {}


def mlp_net(loss):
    """The compiled 4-6-5-3 MLP for ``loss``, shared by the tests that use it."""
    if loss not in _MLP_NETS:
        model = gn.Sequential([gn.Dense(6, activation="relu"), gn.Dense(5, activation="tanh"),
                               gn.Dense(3)], input_dim=4)
        _MLP_NETS[loss] = (model, compile_(model, loss))
    return _MLP_NETS[loss]


@pytest.mark.parametrize("loss", LOSSES)
def test_sequential_mlp(loss):
    model, net = mlp_net(loss)
    params, X, y = draw(net, model, loss, 7, seed=21)
    check_net(net, model, loss, params, X, y)

    # more rows than one kernel call holds (loss_and_grads works in chunks of 1024):
    # the mean loss and gradient equal the row-weighted average over smaller batches
    rng = np.random.default_rng(99)
    Xb = rng.normal(size=(2100, 4))
    yb = make_targets(loss, 2100, 3, rng)
    value, grads = net.loss_and_grads(Xb, yb)
    assert value == pytest.approx(reference.model_loss(model, params, Xb, yb, loss), rel=1e-10)
    parts = [(0, 700), (700, 1400), (1400, 2100)]
    avg = {k: np.zeros_like(v) for k, v in grads.items()}
    for lo, hi in parts:
        _, g = net.loss_and_grads(Xb[lo:hi], yb[lo:hi])
        for k in avg:
            avg[k] += g[k] * (hi - lo) / 2100
    assert_grads_close(grads, avg, rtol=1e-10, atol=1e-14, what="(2100 rows vs 3 batches)")
    # predict in small batches gives the same rows
    np.testing.assert_allclose(net.predict(Xb, batch_size=64),
                               reference.forward(model, params, Xb), rtol=FWD_RTOL, atol=FWD_ATOL)


def build_dag():
    """A DAG where h1 feeds three consumers (two Dense, a Concatenate) and b feeds two."""
    x = gn.Input(5)
    h1 = gn.Dense(6, activation="tanh")(x)
    a = gn.Dense(4, activation="leaky_relu")(h1)
    b = gn.Dense(4, activation="sigmoid")(h1)
    s = gn.Add()([a, b])
    c = gn.Concatenate()([s, h1])
    g = gn.GELU()(c)
    r = gn.Dense(5, activation="relu")(g)
    out = gn.Dense(3)(gn.Concatenate()([r, b]))
    return gn.Model(x, out)


@pytest.mark.parametrize("loss", LOSSES)
def test_dag_add_concatenate_shared_nodes(loss):
    model = build_dag()
    names = [model.names[n] for n in model.nodes]
    assert names[0] == "input" and len(set(names)) == len(names)
    net = compile_(model, loss)
    params, X, y = draw(net, model, loss, 6, seed=31)
    check_net(net, model, loss, params, X, y)


# -- the output activation fused into the loss ----------------------------------------------------
def _last_dense(model):
    return [n for n in model.nodes if isinstance(n, gn.Dense)][-1]


def _scale_to_logits(model, params, X, target=1000.0):
    """Scale the last Dense so the largest |logit| is about ``target``."""
    last = model.names[_last_dense(model)]
    p = {k: v.copy() for k, v in params.items()}
    _, pre = reference.forward_all(model, p, X)
    z = pre[_last_dense(model)]                      # the logits
    factor = target / np.max(np.abs(z))
    p[last + ".weight"] *= factor
    if last + ".bias" in p:
        p[last + ".bias"] *= factor
    return p


def _check_extreme(net, model, loss, params, X, y, probs_check):
    """Logits around +-1000: probabilities, loss and gradients stay finite and right."""
    p = _scale_to_logits(model, params, X)
    logits = reference.training_output(model, p, X, loss)
    assert 500 < np.max(np.abs(logits)) < 2000
    net.set_params(p)
    pred = net.predict(X)
    assert np.all(np.isfinite(pred))
    probs_check(pred)
    np.testing.assert_allclose(pred, reference.forward(model, p, X), rtol=1e-9, atol=1e-12)
    value, grads = net.loss_and_grads(X, y)
    assert np.isfinite(value)
    assert net.evaluate(X, y)["loss"] == pytest.approx(value, rel=1e-12)
    assert value == pytest.approx(reference.model_loss(model, p, X, y, loss), rel=1e-9)
    for name, g in grads.items():
        assert np.all(np.isfinite(g)), name
    # last layer, analytically: dL/dW = h^T (s - t) / N, N = rows (CE) or elements (BCE)
    last = _last_dense(model)
    outs, _ = reference.forward_all(model, p, X)
    h = outs[last.inputs[0]]
    if loss == "cross_entropy":
        dz = reference.softmax(logits)
        dz[np.arange(len(y)), y] -= 1.0
        dz /= len(y)
    else:
        t = np.asarray(y, dtype=float).reshape(logits.shape)
        dz = (reference.sigmoid(logits) - t) / logits.size
    name = model.names[last]
    np.testing.assert_allclose(grads[name + ".weight"], h.T @ dz, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads[name + ".bias"], dz.sum(axis=0), rtol=1e-9, atol=1e-12)


def _rows_sum_to_one(pred):
    assert np.all(pred >= 0) and np.all(pred <= 1)
    np.testing.assert_allclose(pred.sum(axis=1), 1.0, rtol=1e-12)


def _in_unit_interval(pred):
    assert np.all(pred >= 0) and np.all(pred <= 1)


def _strictly_probabilities(pred):
    assert np.all(pred > 0) and np.all(pred < 1)


def test_fused_dense_softmax_cross_entropy():
    model = gn.Sequential([gn.Dense(5, activation="tanh"), gn.Dense(4, activation="softmax")],
                          input_dim=4)
    net = compile_(model, "cross_entropy")
    assert "softmax + cross_entropy" in net.summary()
    params, X, y = draw(net, model, "cross_entropy", 7, seed=41)
    check_net(net, model, "cross_entropy", params, X, y)
    pred = net.predict(X)
    _rows_sum_to_one(pred)
    # the loss is on the logits: -log of the predicted probability of the label
    assert net.evaluate(X, y)["loss"] == pytest.approx(
        -np.mean(np.log(pred[np.arange(len(y)), y])), rel=1e-10)
    _check_extreme(net, model, "cross_entropy", params, X, y, _rows_sum_to_one)


def test_fused_softmax_node_cross_entropy():
    x = gn.Input(5)
    h = gn.Dense(5, activation="relu")(x)
    out = gn.Softmax()(gn.Dense(3)(h))
    model = gn.Model(x, out)
    net = compile_(model, "cross_entropy")
    params, X, y = draw(net, model, "cross_entropy", 6, seed=42)
    check_net(net, model, "cross_entropy", params, X, y)
    _rows_sum_to_one(net.predict(X))
    _check_extreme(net, model, "cross_entropy", params, X, y, _rows_sum_to_one)


def test_fused_sigmoid_node_binary_cross_entropy():
    x = gn.Input(4)
    h = gn.Dense(5, activation="tanh")(x)
    out = gn.Sigmoid()(gn.Dense(3)(h))
    model = gn.Model(x, out)
    net = compile_(model, "binary_cross_entropy")
    params, X, y = draw(net, model, "binary_cross_entropy", 6, seed=43)
    check_net(net, model, "binary_cross_entropy", params, X, y)
    pred = net.predict(X)
    _strictly_probabilities(pred)
    # with probabilities away from 0 and 1 the loss is also the textbook BCE of them
    bce = -np.mean(y * np.log(pred) + (1 - y) * np.log(1 - pred))
    assert net.evaluate(X, y)["loss"] == pytest.approx(bce, rel=1e-9)
    _check_extreme(net, model, "binary_cross_entropy", params, X, y, _in_unit_interval)


def test_fused_dense_sigmoid_single_output_binary_cross_entropy():
    model = gn.Sequential([gn.Dense(5, activation="relu"), gn.Dense(1, activation="sigmoid")],
                          input_dim=3)
    net = compile_(model, "binary_cross_entropy")
    params, X, y = draw(net, model, "binary_cross_entropy", 7, seed=44)
    assert y.shape == (7, 1)
    check_net(net, model, "binary_cross_entropy", params, X, y)
    _strictly_probabilities(net.predict(X))
    # hard 0/1 labels given as a 1-D vector are accepted for a single output
    hard = (y[:, 0] > 0.5).astype(float)
    assert net.evaluate(X, hard)["loss"] == pytest.approx(
        reference.model_loss(model, params, X, hard.reshape(-1, 1), "binary_cross_entropy"),
        rel=1e-10)
    _check_extreme(net, model, "binary_cross_entropy", params, X, y, _in_unit_interval)


def test_softmax_output_with_mse_is_not_fused():
    """Softmax only fuses with cross-entropy: with mse the loss is on the probabilities."""
    x = gn.Input(4)
    out = gn.Softmax()(gn.Dense(3)(gn.Dense(5, activation="sigmoid")(x)))
    model = gn.Model(x, out)
    net = compile_(model, "mse")
    assert "fused" not in net.summary()
    params, X, y = draw(net, model, "mse", 6, seed=51)
    value, _ = check_net(net, model, "mse", params, X, y)
    assert value == pytest.approx(np.mean((net.predict(X) - y) ** 2), rel=1e-10)


# -- float32 -----------------------------------------------------------------------------------
def test_float32_matches_reference():
    loss = "cross_entropy"
    model = build_dag()
    net = compile_(model, loss, dtype="float32")
    params64, X, y = draw(net, model, loss, 7, seed=61)
    params = {k: v.astype(np.float32) for k, v in params64.items()}
    net.set_params(params)
    stored = net.get_params()
    for k, v in stored.items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, params[k])
    as64 = {k: v.astype(np.float64) for k, v in stored.items()}
    X32 = X.astype(np.float32)
    for inputs in (X, X32):                  # float64 inputs are converted to float32
        pred = net.predict(inputs)
        assert pred.dtype == np.float32
        np.testing.assert_allclose(pred, reference.forward(model, as64, X32.astype(np.float64)),
                                   rtol=1e-5, atol=1e-6)
    value, grads = net.loss_and_grads(X32, y)
    ref_loss = reference.model_loss(model, as64, X32.astype(np.float64), y, loss)
    assert value == pytest.approx(ref_loss, rel=1e-5)
    ref_grads = reference.numerical_grads(model, as64, X32.astype(np.float64), y, loss)
    for name, g in grads.items():
        assert g.dtype == np.float32, name
    assert_grads_close(grads, ref_grads, rtol=1e-4, atol=1e-5, what="(float32)")


def test_float32_fused_extreme_logits():
    """float32, a final Sigmoid fused into binary cross-entropy, logits around +-1000."""
    x = gn.Input(3)
    out = gn.Sigmoid()(gn.Dense(2)(gn.Dense(5, activation="tanh")(x)))
    model = gn.Model(x, out)
    loss = "binary_cross_entropy"
    net = compile_(model, loss, dtype="float32")
    params, X, y = draw(net, model, loss, 6, seed=62)
    p = {k: v.astype(np.float32) for k, v in _scale_to_logits(model, params, X).items()}
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    X64 = X.astype(np.float32).astype(np.float64)
    assert np.max(np.abs(reference.training_output(model, p64, X64, loss))) > 500
    net.set_params(p)
    pred = net.predict(X)
    assert pred.dtype == np.float32 and np.all(np.isfinite(pred))
    assert np.all(pred >= 0) and np.all(pred <= 1)
    np.testing.assert_allclose(pred, reference.forward(model, p64, X64), rtol=1e-5, atol=1e-6)
    value, grads = net.loss_and_grads(X, y)
    assert np.isfinite(value)
    assert value == pytest.approx(reference.model_loss(model, p64, X64, y, loss), rel=1e-4)
    for name, g in grads.items():
        assert g.dtype == np.float32 and np.all(np.isfinite(g)), name
    # last layer, analytically: dL/dW = h^T (sigmoid(z) - t) / (rows * outputs)
    outs, pre = reference.forward_all(model, p64, X64)
    last = _last_dense(model)
    dz = (reference.sigmoid(pre[last]) - y) / y.size
    np.testing.assert_allclose(grads["dense_1.weight"], outs[last.inputs[0]].T @ dz,
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["dense_1.bias"], dz.sum(axis=0), rtol=1e-4, atol=1e-6)


# -- torch autograd (optional) ---------------------------------------------------------------------
@pytest.mark.parametrize("loss", LOSSES)
def test_matches_torch_autograd(loss):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    model, net = mlp_net(loss)
    params, X, y = draw(net, model, loss, 7, seed=71)
    net.set_params(params)
    value, grads = net.loss_and_grads(X, y)

    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    h = torch.tensor(X, dtype=torch.float64)
    # graphnn weights are (in, out): plain matmul, not torch.nn.Linear's (out, in)
    h = torch.relu(h @ tp["dense.weight"] + tp["dense.bias"])
    h = torch.tanh(h @ tp["dense_1.weight"] + tp["dense_1.bias"])
    z = h @ tp["dense_2.weight"] + tp["dense_2.bias"]
    if loss == "mse":
        t_loss = F.mse_loss(z, torch.tensor(y, dtype=torch.float64))
    elif loss == "cross_entropy":
        t_loss = F.cross_entropy(z, torch.tensor(y, dtype=torch.int64))
    else:
        t_loss = F.binary_cross_entropy_with_logits(z, torch.tensor(y, dtype=torch.float64))
    t_loss.backward()
    assert value == pytest.approx(float(t_loss.detach()), rel=1e-12)
    assert_grads_close(grads, {k: tp[k].grad.numpy() for k in grads}, rtol=1e-10, atol=1e-13,
                       what="vs torch autograd")


def test_reference_activations_match_torch():
    """The oracle itself, against torch: every activation and the three losses."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(scale=3.0, size=(6, 5)), [[-800.0, -30.0, 0.3, 30.0, 800.0]]])
    t = torch.tensor(x, dtype=torch.float64)
    want = {
        "relu": F.relu(t), "leaky_relu": F.leaky_relu(t, 0.01), "sigmoid": torch.sigmoid(t),
        "tanh": torch.tanh(t), "softmax": F.softmax(t, dim=1), "softplus": F.softplus(t),
        "gelu": F.gelu(t), "linear": t,
    }
    for name, w in want.items():
        np.testing.assert_allclose(reference.activate(name, x), w.numpy(), rtol=1e-13,
                                   atol=1e-300, err_msg=name)
    labels = rng.integers(0, 5, size=len(x))
    targets = rng.uniform(size=x.shape)
    assert reference.loss("cross_entropy", x, labels) == pytest.approx(
        float(F.cross_entropy(t, torch.tensor(labels))), rel=1e-13)
    assert reference.loss("binary_cross_entropy", x, targets) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(t, torch.tensor(targets))), rel=1e-13)
    assert reference.loss("mse", x, targets) == pytest.approx(
        float(F.mse_loss(t, torch.tensor(targets))), rel=1e-13)
