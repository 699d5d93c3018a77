"""Nothing from a name becomes code (issue 9): model and layer names never enter the
generated source, so a hostile name is either refused with a ValueError (layer names must
be identifiers) or gives a working model whose source does not contain it, and no
payload runs (it would create a marker file in the working directory)."""
import numpy as np
import pytest

import graphnn as gn

PAYLOADS = [
    '"""; open("PWNED", "w"); """',
    "'''; open('PWNED', 'w'); '''",
    '"; open("PWNED", "w"); "',
    "x'''",
    'x"""',
    "\n__import__('builtins').open('PWNED', 'w')\n#",
    "back\\slash\\\"\\'",
    "{}{0}{name!r}%s%(x)s",
    "ünïcødé 模型 \u202e\u200b",
    "\x00\x01nul",
    "n" * 10_240,
    '"' * 10_240,
]


def _model(name=None, layer_name=None):
    x = gn.Input(3)
    h = gn.Dense(4, activation="relu", name=layer_name)(x)
    return gn.Model(x, gn.Dense(2)(h), **({} if name is None else {"name": name}))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(params=["cache", "no-cache"])
def workdir(request, tmp_path, monkeypatch, cache_dir):
    """A fresh working directory (where a payload would write PWNED), with the compile
    cache on (in a folder of this module's) or off."""
    monkeypatch.chdir(tmp_path)
    if request.param == "cache":
        monkeypatch.setenv("GRAPHNN_CACHE_DIR", str(cache_dir))
        monkeypatch.delenv("GRAPHNN_NO_CACHE", raising=False)
    else:
        monkeypatch.setenv("GRAPHNN_NO_CACHE", "1")
    return tmp_path


def test_hostile_model_names_never_reach_the_source(workdir):
    X = np.random.default_rng(0).normal(size=(8, 3))
    y = np.arange(8) % 2
    reference = None
    accepted = 0
    for name in PAYLOADS:
        try:           # names are data: printable, at most 256 characters, no " or \\
            model = _model(name=name)
        except ValueError as e:
            assert "model name" in str(e)
            continue
        accepted += 1
        net = model.compile(loss="cross_entropy", seed=0)
        src = net.source()
        assert name not in src
        compile(src, "<generated>", "exec")
        net.fit(X, y, epochs=1, batch_size=4)
        assert np.isfinite(net.predict(X)).all()
        assert net.model.name == name                  # kept for people: summary, checkpoints
        if reference is None:
            reference = src
        assert src == reference                        # the name changes nothing in the code
        assert not (workdir / "PWNED").exists(), repr(name)
    assert accepted >= 3           # quotes that would end a docstring among them
    assert not list(workdir.rglob("PWNED"))


def test_hostile_layer_names_are_refused_cleanly(workdir):
    for name in [p for p in PAYLOADS if not p.isidentifier()] + ["1abc", "a-b", "a b", "",
                                                                 "n" * 10_240]:
        with pytest.raises(ValueError, match="layer name"):
            gn.Dense(4, name=name)
    assert not (workdir / "PWNED").exists()


def test_valid_layer_names_do_not_reach_the_source(workdir):
    """Identifier names are allowed, and still never written into code (variables are
    named by node index), so the source is the same whatever the layers are called."""
    plain = _model().compile(loss="cross_entropy", seed=0).source()
    for name in ["secret_layer_name", "None", "lambda", "import", "x", "n", "params", "n" * 256]:
        net = _model(name="m", layer_name=name).compile(loss="cross_entropy", seed=0)
        assert net.source() == plain
        assert "secret_layer_name" not in net.source() and "n" * 100 not in net.source()
        assert list(net.get_params())[0] == f"{name}.weight"

