"""Engine properties: zero allocations per step, the on-disk compile cache."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

import graphnn as gn

BUILD = textwrap.dedent("""
    import json, sys, numpy as np, graphnn as gn
    x = gn.Input(6)
    h = gn.Dense(8, activation="tanh")(x)
    out = gn.Dense(3)(gn.Concatenate()([h, gn.Dense(4, activation="relu")(x)]))
    net = gn.Model(x, out).compile(loss="cross_entropy", optimizer=gn.SGD(0.1), seed=0)
    X = np.random.default_rng(0).normal(size=(40, 6)); y = np.arange(40) % 3
    net.fit(X, y, epochs=2, batch_size=8)
    k = net.backend.glue
    print(json.dumps({"hits": sum(k[f].stats.cache_hits.get(s, 0) for f in ("train_step",)
                                   for s in k[f].stats.cache_hits),
                      "pred": net.predict(X[:2]).tolist()}))
""")


def _run(code, **env):
    e = dict(os.environ, **env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_second_process_loads_from_cache(tmp_path):
    first = json.loads(_run(BUILD, GRAPHNN_CACHE_DIR=str(tmp_path)))
    second = json.loads(_run(BUILD, GRAPHNN_CACHE_DIR=str(tmp_path)))
    assert first["hits"] == 0 and second["hits"] >= 1
    assert first["pred"] == second["pred"]
    assert any(p.suffix == ".nbc" for p in (tmp_path / "__pycache__").iterdir())


def test_no_cache_writes_nothing(tmp_path):
    _run(BUILD, GRAPHNN_CACHE_DIR=str(tmp_path), GRAPHNN_NO_CACHE="1")
    assert list(tmp_path.iterdir()) == []


def test_concurrent_processes_share_the_cache_safely(tmp_path):
    env = dict(os.environ, GRAPHNN_CACHE_DIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", BUILD], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert json.loads(outs[0][0])["pred"] == json.loads(outs[1][0])["pred"]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_steps_allocate_nothing():
    code = textwrap.dedent("""
        import numpy as np, graphnn as gn
        from numba.core.runtime import rtsys
        x = gn.Input(10)
        h = gn.Dense(16, activation="gelu")(x)
        r = gn.Add()([h, gn.Dense(16, activation="tanh")(h)])
        out = gn.Dense(4, activation="softmax")(gn.Concatenate()([r, h]))
        net = gn.Model(x, out).compile(loss="cross_entropy", optimizer=gn.Adam(0.01), seed=0)
        X = np.random.default_rng(0).normal(size=(320, 10)).astype(np.float32)
        Y = (np.arange(320) % 4).astype(np.int64)
        net._ensure_arena(32)
        xbuf, ybuf, order = np.empty(320, np.float32), np.empty(32, np.int64), np.arange(320)
        W, wbuf = np.zeros(0, np.float32), np.zeros(0, np.float32)
        losses, stats = np.zeros(10), np.zeros(3)
        args = lambda batches: (net.params, net.grads, net.state, net.arena, X, Y, W, order, 0,
                                batches, 32, np.float32(0.01), 0, 7, xbuf, ybuf, wbuf, losses,
                                stats)
        net.backend.train_epoch(*args(1))
        counts = []
        for batches in (1, 10):
            before = rtsys.get_allocation_stats().alloc
            net.backend.train_epoch(*args(batches))
            counts.append(rtsys.get_allocation_stats().alloc - before)
        print(counts[0], counts[1])
    """)
    one, ten = map(int, _run(code, NUMBA_NRT_STATS="1").split())
    assert ten == one        # 9 more steps allocated nothing more (the rest is argument unboxing)


def test_float32_tanh_is_accurate():
    """The float32 kernels use a rational tanh (vectorisable); it must stay within float32
    rounding of the exact function: 4e-7 absolute, 1e-6 relative near zero."""
    x = gn.Input(1)
    out = gn.Tanh()(gn.Dense(1, use_bias=False, kernel_init="ones")(x))
    net = gn.Model(x, out).compile(loss="mse")
    xs = np.concatenate([np.linspace(-12, 12, 20001), np.geomspace(1e-8, 1e-1, 200),
                         -np.geomspace(1e-8, 1e-1, 200)]).astype(np.float32)
    got = net.predict(xs[:, None])[:, 0].astype(np.float64)
    exact = np.tanh(xs.astype(np.float64))
    assert np.abs(got - exact).max() < 4e-7
    small = np.abs(xs) < 0.1
    assert (np.abs(got - exact)[small] / np.abs(exact[small])).max() < 1e-6
    assert "TANH_A13" in net.library_source()                 # the fast form is the one compiled
    net64 = gn.Model(x, out).compile(loss="mse", dtype="float64")
    assert "math.tanh" in net64.library_source()


def test_float32_gelu_is_accurate():
    """float32 gelu uses a rational erf (vectorisable): within 1.5e-6 absolute of the
    exact x Phi(x) (the libm form rounded to float32 is within 4.5e-7), and it vanishes
    to the left and equals x to the right as it should."""
    import math
    x = gn.Input(1)
    out = gn.GELU()(gn.Dense(1, use_bias=False, kernel_init="ones")(x))
    net = gn.Model(x, out).compile(loss="mse")
    xs = np.concatenate([np.linspace(-12, 12, 20001),
                         np.geomspace(1e-8, 1e-1, 200)]).astype(np.float32)
    got = net.predict(xs[:, None])[:, 0].astype(np.float64)
    x64 = xs.astype(np.float64)
    exact = 0.5 * x64 * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x64]))
    assert np.abs(got - exact).max() < 1.5e-6
    assert np.abs(got[x64 < -6]).max() < 1e-6 and np.array_equal(got[x64 > 6], x64[x64 > 6])
    assert "ERF_A13" in net.library_source()                  # the fast form is the one compiled
    net64 = gn.Model(x, out).compile(loss="mse", dtype="float64")
    assert "math.erf" in net64.library_source() and "ERF_A13" not in net64.library_source()


def test_float32_sigmoid_is_accurate():
    """float32 sigmoid computes exp(-|x|) by arithmetic (vectorisable): within 2e-7
    relative of the exact value wherever that is a normal float32, finite and in [0, 1]
    everywhere, exactly 1 for large x."""
    x = gn.Input(1)
    out = gn.Sigmoid()(gn.Dense(1, use_bias=False, kernel_init="ones")(x))
    net = gn.Model(x, out).compile(loss="mse")
    xs = np.concatenate([np.linspace(-100, 100, 40001), np.geomspace(1e-8, 1, 300),
                         -np.geomspace(1e-8, 1, 300), [-1e30, 1e30]]).astype(np.float32)
    got = net.predict(xs[:, None])[:, 0].astype(np.float64)
    x64 = xs.astype(np.float64)
    e = np.exp(-np.abs(x64))
    exact = np.where(x64 >= 0, 1 / (1 + e), e / (1 + e))
    assert np.isfinite(got).all() and (got >= 0).all() and (got <= 1).all()
    normal = exact > np.finfo(np.float32).tiny
    assert (np.abs(got - exact)[normal] / exact[normal]).max() < 2e-7
    assert (got[x64 > 20] == 1).all()
    assert "EXP_C7" in net.library_source()                   # the fast form is the one compiled
    assert "math.exp" in gn.Model(x, out).compile(loss="mse", dtype="float64").library_source()


def test_float32_gelu_gradient_is_accurate():
    """float32 gelu's derivative Phi(x) + x phi(x), with the rational erf and the arithmetic
    exp, against float64: within 1.5e-6 absolute over [-12, 12]."""
    import math
    x = gn.Input(1)
    model = gn.Model(x, gn.GELU()(gn.Dense(1, use_bias=False, kernel_init="ones")(x)))
    net = model.compile(loss="mse")
    assert "def gelu_grad" in net.library_source() and "exp_neg_abs(half * x * x)" in net.library_source()
    ns = net.backend.library.namespace
    xs = np.linspace(-12, 12, 4001).astype(np.float32)
    got = np.array([ns["gelu_grad"](v, np.float32(0)) for v in xs], dtype=np.float64)
    x64 = xs.astype(np.float64)
    exact = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) + v * math.exp(-v * v / 2)
                      / math.sqrt(2 * math.pi) for v in x64])
    assert np.abs(got - exact).max() < 1.5e-6
    # the kernel that runs it in training (fused multiply-adds, 512-bit vectors) too
    rows = xs.reshape(-1, 1)
    gx, sums = np.zeros_like(rows), np.zeros(1, np.float32)
    net.backend.library.kernel("act_grad_gelu")(gx, np.ones_like(rows), rows, np.zeros_like(rows),
                                                 sums, False)
    assert np.abs(gx[:, 0] - exact).max() < 1.5e-6


def test_float32_softplus_is_accurate():
    """float32 softplus = max(x, 0) + log1p(exp(-|x|)) by arithmetic (vectorisable): within
    3e-7 relative of the exact value wherever that is a normal float32."""
    x = gn.Input(1)
    out = gn.Softplus()(gn.Dense(1, use_bias=False, kernel_init="ones")(x))
    net = gn.Model(x, out).compile(loss="mse")
    xs = np.concatenate([np.linspace(-100, 100, 40001), np.geomspace(1e-8, 1, 300),
                         -np.geomspace(1e-8, 1, 300)]).astype(np.float32)
    got = net.predict(xs[:, None])[:, 0].astype(np.float64)
    x64 = xs.astype(np.float64)
    exact = np.maximum(x64, 0) + np.log1p(np.exp(-np.abs(x64)))
    assert np.isfinite(got).all() and (got >= 0).all()
    normal = exact > np.finfo(np.float32).tiny
    assert (np.abs(got - exact)[normal] / exact[normal]).max() < 3e-7
    src = net.library_source()
    assert "LOG1P_C15" in src and src.count("def exp_neg_abs") == 1
    assert "math.log1p" in gn.Model(x, out).compile(loss="mse", dtype="float64").library_source()


def test_set_num_threads_sets_both_blas_pools():
    from graphnn.threads import blas_info
    before = gn.get_num_threads()
    try:
        gn.set_num_threads(1)
        assert all(i["num_threads"] == 1 for i in blas_info())
        assert len(blas_info()) >= 1
    finally:
        gn.set_num_threads(before)
