"""Weights of a PyTorch nn.Sequential of nn.Linear layers, loaded into graphnn: outputs
compared with PyTorch's own forward pass; every mismatch refused before anything changes."""
import numpy as np
import pytest

import graphnn as gn

WIDTHS = [4, 6, 5, 7, 4, 3, 2]              # 6 Linear layers: torch indices 0, 2, ..., 10
ACTS = ["relu", "tanh", "sigmoid", "tanh", "relu", None]


@pytest.fixture(scope="module")
def net():
    layers = [gn.Dense(w, activation=a) for w, a in zip(WIDTHS[1:], ACTS)]
    return gn.Sequential(layers, input_dim=WIDTHS[0]).compile(loss="mse", dtype="float64")


@pytest.fixture(scope="module")
def torch_model():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: no oracle to compare with")
    torch.manual_seed(0)
    acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
    mods = []
    for (i, o), a in zip(zip(WIDTHS, WIDTHS[1:]), ACTS):
        mods.append(torch.nn.Linear(i, o))
        if a:
            mods.append(acts[a]())
    return torch.nn.Sequential(*mods).double()


@pytest.fixture
def X():
    return np.random.default_rng(1).normal(size=(9, WIDTHS[0]))


def _torch_out(model, X):
    import torch
    with torch.no_grad():
        return model(torch.from_numpy(X)).numpy()


def _arrays(seed=0):
    """A state_dict of NumPy arrays, in PyTorch's layout: weight (out, in)."""
    rng = np.random.default_rng(seed)
    sd = {}
    for k, (i, o) in enumerate(zip(WIDTHS, WIDTHS[1:])):
        sd[f"{2 * k}.weight"] = rng.normal(size=(o, i))
        sd[f"{2 * k}.bias"] = rng.normal(size=o)
    return sd


def test_state_dict_matches_pytorch(net, torch_model, X):
    net.load_torch_weights(torch_model.state_dict())
    np.testing.assert_allclose(net.predict(X), _torch_out(torch_model, X), rtol=0, atol=1e-12)
    net.set_params({k: np.zeros_like(v) for k, v in net.get_params().items()})
    net.load_torch_weights(torch_model)                    # the module itself
    np.testing.assert_allclose(net.predict(X), _torch_out(torch_model, X), rtol=0, atol=1e-12)


def test_safetensors_file_without_torch_matches_pytorch(net, torch_model, X, tmp_path):
    """safetensors sorts names ("10.weight" before "2.weight"): layers pair in natural order."""
    st = pytest.importorskip("safetensors.torch", reason="safetensors is not installed")
    path = tmp_path / "mlp.safetensors"
    st.save_file(torch_model.state_dict(), str(path))
    net.set_params({k: np.zeros_like(v) for k, v in net.get_params().items()})
    net.load_torch_weights(path)
    np.testing.assert_allclose(net.predict(X), _torch_out(torch_model, X), rtol=0, atol=1e-12)
    half = {k: v.bfloat16() for k, v in torch_model.state_dict().items()}
    st.save_file(half, str(path))                          # bfloat16: NumPy has no such type
    net.load_torch_weights(str(path))
    got = net.get_params()
    assert np.array_equal(got["dense_5.weight"], half["10.weight"].float().numpy().T)
    assert np.array_equal(got["dense_1.bias"], half["2.bias"].float().numpy())


def test_arrays_are_transposed_in_order(net):
    sd = _arrays()
    net.load_torch_weights(sd)
    got = net.get_params()
    for k in range(6):
        name = "dense" if k == 0 else f"dense_{k}"
        assert np.array_equal(got[f"{name}.weight"], sd[f"{2 * k}.weight"].T)
        assert np.array_equal(got[f"{name}.bias"], sd[f"{2 * k}.bias"])


def test_mapping_loads_the_named_layers_only(net):
    net.load_torch_weights(_arrays(0))
    before = net.get_params()
    sd = _arrays(1)
    net.load_torch_weights(sd, mapping={"dense_2": "4", "dense": "0"})
    got = net.get_params()
    assert np.array_equal(got["dense_2.weight"], sd["4.weight"].T)
    assert np.array_equal(got["dense.bias"], sd["0.bias"])
    assert np.array_equal(got["dense_1.weight"], before["dense_1.weight"])
    sd["1.running_mean"] = np.zeros(6)                 # an unmapped layer of another kind
    net.load_torch_weights(sd, mapping={"dense_1": "2"})
    assert np.array_equal(net.get_params()["dense_1.weight"], sd["2.weight"].T)


def _changes(sd, drop=(), **replace):
    sd = {k: v for k, v in sd.items() if k not in drop}
    sd.update({k.replace("__", "."): v for k, v in replace.items()})
    return sd


BAD = {
    "count": (lambda sd: _changes(sd, drop=("10.weight", "10.bias")), "5 Linear layers"),
    "shape": (lambda sd: _changes(sd, **{"2__weight": sd["2.weight"].T}),
              r"PyTorch 2.weight has shape \(6, 5\)"),
    "missing bias": (lambda sd: _changes(sd, drop=("4.bias",)), "missing bias"),
    "bias shape": (lambda sd: _changes(sd, **{"4__bias": sd["4.bias"][:2]}), "4.bias has shape"),
    "not Linear": (lambda sd: _changes(sd, **{"1__running_mean": np.zeros(6)}), "running_mean"),
    "no weight": (lambda sd: _changes(sd, drop=("6.weight",)), "no weight"),
    "NaN": (lambda sd: _changes(sd, **{"0__bias": np.full(6, np.nan)}), "NaN"),
    "integers": (lambda sd: _changes(sd, **{"0__bias": np.arange(6)}), "floating-point"),
    "bad key": (lambda sd: _changes(sd, weight=np.zeros(2)), "'weight'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_mismatch_is_refused_before_anything_changes(net, case):
    net.load_torch_weights(_arrays(0))
    before = net.get_params()
    make, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        net.load_torch_weights(make(_arrays(1)))
    after = net.get_params()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_bad_mappings_and_sources(net, tmp_path):
    with pytest.raises(ValueError, match="not a Dense layer"):
        net.load_torch_weights(_arrays(), mapping={"dense_9": "0"})
    with pytest.raises(ValueError, match="not in the weights"):
        net.load_torch_weights(_arrays(), mapping={"dense": "1"})
    with pytest.raises(ValueError, match="two graphnn layers"):
        net.load_torch_weights(_arrays(), mapping={"dense_1": "0", "dense_2": "0"})
    with pytest.raises(ValueError, match="state_dict"):
        net.load_torch_weights(42)
    (tmp_path / "x.safetensors").write_bytes(b"\x10" + bytes(7) + b"not json")
    with pytest.raises(ValueError, match="not a safetensors file"):
        net.load_torch_weights(tmp_path / "x.safetensors")


def test_bias_without_a_place():
    net = gn.Sequential([gn.Dense(3, use_bias=False)], input_dim=2).compile()
    with pytest.raises(ValueError, match="use_bias=False"):
        net.load_torch_weights({"0.weight": np.ones((3, 2)), "0.bias": np.ones(3)})
    net.load_torch_weights({"0.weight": np.arange(6.0).reshape(3, 2)})
    assert np.array_equal(net.get_params()["dense.weight"], np.arange(6.0).reshape(3, 2).T)
