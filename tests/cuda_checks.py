"""Checks of the CUDA backend that need a process of their own (run by tests/test_cuda.py).

    python tests/cuda_checks.py sim         every kernel vs NumPy, and training vs the CPU
                                            backend, on Numba's CUDA simulator
    python tests/cuda_checks.py gpu         the training checks on a real GPU (no simulator)
    python tests/cuda_checks.py ptx 8.0     every kernel through cuda.compile_ptx for that
                                            compute capability; float32 PTX free of .f64
    python tests/cuda_checks.py nodevice    device="cuda" without simulator or GPU: the error

Each check prints one JSON line {"check": name, "ok": bool, "detail": str}; a mode that
cannot run here prints {"skip": reason} and nothing else.  ``sim`` sets
NUMBA_ENABLE_CUDASIM=1 before Numba is imported.  Only the standard library is imported
at the top, so test_cuda.py can read the check names (``SIM_CHECKS``) cheaply.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

SIM_CHECKS = ["matmul", "matmul_default_tiles", "activations", "elementwise", "rowwise",
              "losses", "optimizers", "gather_clear_wsum", "dropout", "float64_kernels",
              "train_mlp", "train_graph", "train_weighted_mse", "train_float64", "launch_count",
              "divergence", "train_dropout", "hostile_names", "width_variants"]
GPU_CHECKS = ["train_mlp", "train_graph", "train_weighted_mse", "train_float64", "train_wide",
              "launch_count", "divergence", "train_dropout", "width_variants"]

# -- shared set-up ------------------------------------------------------------------------
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

ACTS = ["relu", "leaky_relu", "sigmoid", "tanh", "softplus", "gelu", "linear"]


def _np():
    import numpy as np
    return np


def tiny_config():
    from graphnn.compile import cuda as gc
    return gc.Config(big=gc.Tile(4, 4, 4, 2, 2), small=gc.Tile(2, 2, 2, 1, 1), block=8)


def plan_of(model=None, loss="cross_entropy"):
    import graphnn as gn
    from graphnn.compile.plan import lower
    from graphnn.ops.losses import check_loss
    if model is None:
        model = gn.Sequential([gn.Dense(4, activation="tanh"), gn.Dense(2)], input_dim=3)
    return lower(model, check_loss(loss))


def load_module(mod, dtype):
    """Exec a CudaModule's source and set what the backend sets at load."""
    from numba import cuda
    from graphnn.compile import cuda as gc
    np = _np()
    ns = gc.load(mod.source(), mod.layout)
    ns["SIMULATOR"] = bool(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1")
    ns["HITS"] = cuda.device_array(1, np.int64)
    ns["ERRS"] = cuda.device_array(2, dtype)
    ns["WSUM"] = cuda.device_array(1, dtype)
    ns["EMPTY"] = cuda.to_device(np.zeros(0, dtype))
    return ns


def mm_launch(ns, base, size, M, N):
    bm, bn, tx, ty = ns["BIG" if size == "big" else "SMALL"]
    return ns[f"{base}_{size}"][(-(-M // bm), -(-N // bn)), (tx, ty)]


def close(got, want, what, rtol=1e-5, atol=1e-6):
    np = _np()
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape or not np.allclose(got, want, rtol=rtol, atol=atol):
        err = np.max(np.abs(got - want)) if got.shape == want.shape else "shape"
        raise AssertionError(f"{what}: max |difference| {err} (shapes {got.shape}, {want.shape})")


def act_ref(name, x):
    np = _np()
    from scipy.special import erf
    x = np.asarray(x, np.float64)
    sig = np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))
    return {"relu": np.maximum(x, 0), "leaky_relu": np.where(x > 0, x, 0.01 * x),
            "sigmoid": sig, "tanh": np.tanh(x), "softplus": np.logaddexp(0, x),
            "gelu": 0.5 * x * (1 + erf(x / np.sqrt(2))), "linear": x}[name]


def act_grad_ref(name, x, y):
    np = _np()
    from scipy.special import erf
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return {"relu": (y > 0) * 1.0, "leaky_relu": np.where(y > 0, 1.0, 0.01),
            "sigmoid": y * (1 - y), "tanh": 1 - y * y, "softplus": act_ref("sigmoid", x),
            "gelu": 0.5 * (1 + erf(x / np.sqrt(2))) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi),
            "linear": np.ones_like(x)}[name]


# -- kernel checks (simulator) --------------------------------------------------------------
def check_matmul(config=None, dtype=None, shapes=((5, 3, 7),), sizes=("big", "small"),
                 epilogues=None, rtol=1e-5):
    """Every product shape and epilogue vs NumPy, on ragged shapes (5x7 @ 7x3 with 4x4 tiles)."""
    np = _np()
    from numba import cuda
    from graphnn.compile import cuda as gc
    dtype = dtype or np.float32
    mod = gc.CudaModule(plan_of(), __import__("graphnn").SGD(lr=0.1), dtype, config or tiny_config())
    epilogues = epilogues or [("set", "linear", False), ("acc", "linear", False),
                              ("bias_act", "relu", True), ("bias_act", "linear", True),
                              ("bias_act", "tanh", False), ("split", "gelu", True)]
    cases = []
    for ta, tb in ((False, False), (True, False), (False, True)):
        for epi, act, bias in epilogues:
            cases.append((ta, tb, epi, act, bias, mod.k_matmul(ta, tb, epi, act, bias)))
    ns = load_module(mod, dtype)
    rng = np.random.default_rng(1)
    count = 0
    for M, N, K in shapes:
        for ta, tb, epi, act, bias, base in cases:
            A = rng.normal(size=(K, M) if ta else (M, K)).astype(dtype)
            B = rng.normal(size=(N, K) if tb else (K, N)).astype(dtype)
            b = rng.normal(size=N).astype(dtype)
            out0 = rng.normal(size=(M, N)).astype(dtype)
            prod = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
            for size in sizes:
                args = [cuda.to_device(out0), cuda.to_device(A), cuda.to_device(B)]
                if bias:
                    args.append(cuda.to_device(b))
                if epi == "split":
                    args.append(cuda.to_device(np.zeros((M, N), dtype)))
                mm_launch(ns, base, size, M, N)(*args)
                got = args[0].copy_to_host()
                assert got.dtype == dtype
                what = f"{base}_{size} {M}x{K}@{K}x{N}"
                pre = prod + (b if bias else 0)
                if epi == "set":
                    close(got, prod, what, rtol)
                elif epi == "acc":
                    close(got, out0 + prod, what, rtol)
                elif epi == "bias_act":
                    close(got, act_ref(act, pre), what, rtol)
                else:
                    close(got, prod, what + " (z)", rtol)
                    close(args[-1].copy_to_host(), act_ref(act, pre), what + " (y)", rtol)
                count += 1
    return f"{count} launches"


def check_matmul_default_tiles():
    """The default tiles (64x64x16, 4x4 per thread; 32x32x16, 2x2) on one ragged shape."""
    from graphnn.compile import cuda as gc
    return check_matmul(config=gc.Config(), shapes=((70, 5, 17),),
                        epilogues=[("bias_act", "relu", True)])


def _elementwise_module(dtype, plan=None, optimizer=None):
    import graphnn as gn
    from graphnn.compile import cuda as gc
    return gc.CudaModule(plan or plan_of(), optimizer or gn.SGD(lr=0.1), dtype, tiny_config())


def check_activations(dtype=None):
    """bias + activation, activation gradient (set / add, with and without column sums)."""
    np = _np()
    from numba import cuda
    dtype = dtype or np.float32
    mod = _elementwise_module(dtype)
    for a in ACTS:
        mod.k_bias_act(a, True)
        mod.k_bias_act(a, False)
        for acc in (False, True):
            mod.k_act_grad(a, acc)
            mod.k_act_grad_colsum(a, acc)
    ns = load_module(mod, dtype)
    rng = np.random.default_rng(2)
    n, w = 5, 3
    for a in ACTS:
        z = (rng.normal(size=(n, w)) * 3).astype(dtype)
        b = rng.normal(size=w).astype(dtype)
        for bias in (True, False):
            out = cuda.device_array((n, w), dtype)
            args = [out, cuda.to_device(z)] + ([cuda.to_device(b)] if bias else [])
            ns["launch_ew"](("bias_act_" if bias else "act_") + a, n, w)(*args)
            close(out.copy_to_host(), act_ref(a, z + (b if bias else 0)), f"act {a} bias={bias}")
        x = z
        y = act_ref(a, x).astype(dtype)
        gy = rng.normal(size=(n, w)).astype(dtype)
        g0 = rng.normal(size=(n, w)).astype(dtype)
        g = gy * act_grad_ref(a, x, y)
        for acc in (False, True):
            for colsum in (False, True):
                name = f"act_grad_{a}" + ("_acc" if acc else "") + ("_colsum" if colsum else "")
                gx = cuda.to_device(g0)
                args = [gx, cuda.to_device(gy)] + ([] if a == "linear" else
                                                   [cuda.to_device(x), cuda.to_device(y)])
                cs = cuda.device_array(w, dtype)
                if colsum:
                    ns["launch_cols"](name, n, w)(*args, cs)
                else:
                    ns["launch_ew"](name, n, w)(*args)
                close(gx.copy_to_host(), g + (g0 if acc else 0), name)
                if colsum:
                    close(cs.copy_to_host(), g.sum(0), name + " (column sums)")
    return f"{len(ACTS)} activations x 6 kernels"


def check_elementwise():
    """Column sums, sums of 2 and 3, copies of a column block (set / add), placing, mask product."""
    np = _np()
    from numba import cuda
    dtype = np.float32
    mod = _elementwise_module(dtype)
    for k in (mod.k_colsum(), mod.k_sum(2), mod.k_sum(3), mod.k_copy(False), mod.k_copy(True),
              mod.k_place(), mod.k_mul(False), mod.k_mul(True)):
        assert k
    ns = load_module(mod, dtype)
    rng = np.random.default_rng(3)
    n = 11                                  # more rows than a block's y threads
    a, b, c = (rng.normal(size=(n, 3)).astype(dtype) for _ in range(3))
    wide = rng.normal(size=(n, 7)).astype(dtype)
    d = lambda arr: cuda.to_device(arr)
    out = cuda.device_array(3, dtype)
    ns["launch_cols"]("colsum", n, 3)(out, d(wide[:, :3].copy()))
    close(out.copy_to_host(), wide[:, :3].sum(0), "colsum")
    for k, ins in ((2, (a, b)), (3, (a, b, c))):
        o = cuda.device_array((n, 3), dtype)
        ns["launch_ew"](f"sum{k}", n, 3)(o, *map(d, ins))
        close(o.copy_to_host(), sum(x.astype(np.float64) for x in ins), f"sum{k}")
    o = d(a)
    ns["launch_ew"]("copy", n, 3)(o, d(wide), 4)
    close(o.copy_to_host(), wide[:, 4:7], "copy col0=4")
    o = d(a)
    ns["launch_ew"]("copy_acc", n, 3)(o, d(wide), 2)
    close(o.copy_to_host(), a + wide[:, 2:5], "copy_acc col0=2")
    o = d(wide)
    ns["launch_ew"]("place", n, 3)(o, d(a), 3)
    want = wide.copy()
    want[:, 3:6] = a
    close(o.copy_to_host(), want, "place col0=3")
    o = d(c)
    ns["launch_ew"]("mul", n, 3)(o, d(a), d(b))
    close(o.copy_to_host(), a * b, "mul")
    o = d(c)
    ns["launch_ew"]("mul_acc", n, 3)(o, d(a), d(b))
    close(o.copy_to_host(), c + a * b, "mul_acc")
    return "8 kernels"


def check_rowwise():
    """Softmax and its gradient (set / add), a thread per row."""
    np = _np()
    from numba import cuda
    dtype = np.float32
    mod = _elementwise_module(dtype)
    mod.k_softmax()
    mod.k_softmax_grad(False)
    mod.k_softmax_grad(True)
    ns = load_module(mod, dtype)
    rng = np.random.default_rng(4)
    n, k = 11, 4
    x = (rng.normal(size=(n, k)) * 5).astype(dtype)
    x[0] = [1000, -1000, 999, 0]              # stable for huge logits
    y = cuda.device_array((n, k), dtype)
    ns["launch_rows"]("softmax", n)(y, cuda.to_device(x))
    e = np.exp(x - x.max(1, keepdims=True))
    s = e / e.sum(1, keepdims=True)
    close(y.copy_to_host(), s, "softmax")
    gy = rng.normal(size=(n, k)).astype(dtype)
    g0 = rng.normal(size=(n, k)).astype(dtype)
    want = s * (gy - (gy * s).sum(1, keepdims=True))
    for acc in (False, True):
        gx = cuda.to_device(g0)
        ns["launch_rows"]("softmax_grad_acc" if acc else "softmax_grad", n)(
            gx, cuda.to_device(gy), cuda.to_device(s.astype(dtype)))
        close(gx.copy_to_host(), want + (g0 if acc else 0), f"softmax_grad acc={acc}")
    return "3 kernels"


def _loss_refs(name, z, y):
    """(row losses (n,), gradient of the mean, correct count, squared err, abs err)."""
    np = _np()
    z = z.astype(np.float64)
    n = z.shape[0]
    if name == "cross_entropy":
        m = z.max(1, keepdims=True)
        lse = np.log(np.exp(z - m).sum(1)) + m[:, 0]
        rows = lse - z[np.arange(n), y]
        p = np.exp(z - lse[:, None])
        g = p.copy()
        g[np.arange(n), y] -= 1
        return rows, g / n, int((z.argmax(1) == y).sum()), 0.0, 0.0
    k = z.shape[1]
    t = y.astype(np.float64)
    if name == "mse":
        d = z - t
        return (d * d).sum(1) / k, 2 * d / (n * k), 0, (d * d).sum(), np.abs(d).sum()
    s = act_ref("sigmoid", z)
    rows = (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).sum(1) / k
    d = s - t
    return rows, d / (n * k), int(((z >= 0) == (t >= 0.5)).sum()), (d * d).sum(), np.abs(d).sum()


def check_losses():
    """Each loss, plain and weighted: the batch mean into out[slot], dLoss/dz, the metrics;
    two blocks of rows."""
    np = _np()
    import graphnn as gn
    from numba import cuda
    from graphnn.compile import cuda as gc
    dtype = np.float32
    rng = np.random.default_rng(5)
    n, k = 11, 3
    for name in ("cross_entropy", "mse", "binary_cross_entropy"):
        model = gn.Sequential([gn.Dense(k)], input_dim=2)
        mod = gc.CudaModule(plan_of(model, name), gn.SGD(lr=0.1), dtype, tiny_config())
        ns = load_module(mod, dtype)
        z = (rng.normal(size=(n, k)) * 3).astype(dtype)
        if name == "cross_entropy":
            y = rng.integers(0, k, n).astype(np.int64)
        elif name == "mse":
            y = rng.normal(size=(n, k)).astype(dtype)
        else:
            y = rng.integers(0, 2, (n, k)).astype(dtype)
        rows, grad, hits, sq, ab = _loss_refs(name, z, y)
        wts = rng.uniform(0.2, 2.0, n).astype(dtype)
        for weighted in (False, True):
            out = cuda.to_device(np.full(3, 7.0, dtype))
            ns["launch_flat"]("clear", 3)(out, 3, ns["HITS"], ns["ERRS"])
            g = cuda.device_array((n, k), dtype)
            if weighted:
                wd = cuda.to_device(wts)
                ns["launch_one"]("wsum", n)(wd, ns["WSUM"])
                ns["launch_rows"]("loss_weighted", n)(cuda.to_device(z), cuda.to_device(y), g,
                                                      wd, ns["WSUM"], out, 1, ns["HITS"],
                                                      ns["ERRS"])
                c = wts.astype(np.float64) * n / wts.sum()
                want, wgrad = (c * rows).sum() / n, grad * c[:, None]
            else:
                ns["launch_rows"]("loss", n)(cuda.to_device(z), cuda.to_device(y), g, out, 1,
                                             ns["HITS"], ns["ERRS"])
                want, wgrad = rows.mean(), grad
            got = out.copy_to_host()
            close(got, [0, want, 0], f"{name} weighted={weighted} loss")
            close(g.copy_to_host(), wgrad, f"{name} weighted={weighted} gradient")
            assert int(ns["HITS"].copy_to_host()[0]) == hits, f"{name} correct count"
            close(ns["ERRS"].copy_to_host(), [sq, ab], f"{name} squared/absolute errors", 1e-5)
    return "3 losses x (plain, weighted)"


def _opt_ref(opt, p, g, state, lr, step):
    """PyTorch's update rules, in float64 (optim.py's docstrings)."""
    np = _np()
    p, g, state = p.astype(np.float64), g.astype(np.float64), state.astype(np.float64)
    n = p.size
    name = type(opt).__name__
    if name == "SGD":
        if opt.weight_decay:
            g = g + opt.weight_decay * p
        if opt.momentum:
            b = opt.momentum * state[:n] + g
            state[:n] = b
            g = g + opt.momentum * b if opt.nesterov else b
        return p - lr * g, state
    if name in ("Adam", "AdamW"):
        b1, b2 = opt.betas
        if opt.weight_decay and name == "AdamW":
            p = p * (1 - lr * opt.weight_decay)
        elif opt.weight_decay:
            g = g + opt.weight_decay * p
        m = b1 * state[:n] + (1 - b1) * g
        v = b2 * state[n:] + (1 - b2) * g * g
        state = np.concatenate([m, v])
        c1, c2 = 1 - b1 ** step, 1 - b2 ** step
        return p - (lr / c1) * m / (np.sqrt(v) / np.sqrt(c2) + opt.eps), state
    if opt.weight_decay:
        g = g + opt.weight_decay * p
    v = opt.alpha * state[:n] + (1 - opt.alpha) * g * g
    state[:n] = v
    avg = np.sqrt(v) + opt.eps
    if opt.momentum:
        b = opt.momentum * state[n:] + g / avg
        state[n:] = b
        return p - lr * b, state
    return p - lr * g / avg, state


def check_optimizers():
    """Each optimizer's update kernel, two steps, on 13 parameters (two blocks)."""
    np = _np()
    import graphnn as gn
    from numba import cuda
    dtype = np.float32
    rng = np.random.default_rng(6)
    opts = [gn.SGD(lr=0.1), gn.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
            gn.SGD(lr=0.1, momentum=0.5), gn.Adam(lr=0.01, weight_decay=0.01), gn.AdamW(lr=0.01),
            gn.RMSprop(lr=0.01), gn.RMSprop(lr=0.01, momentum=0.9, weight_decay=0.1)]
    n = 13
    for opt in opts:
        mod = _elementwise_module(dtype, optimizer=opt)
        ns = load_module(mod, dtype)
        p = rng.normal(size=n).astype(dtype)
        state = np.zeros(opt.state_slots * n, dtype)
        dp, ds = cuda.to_device(p), cuda.to_device(state)
        for step in (1, 2):
            g = rng.normal(size=n).astype(dtype)
            ns["update"](dp, cuda.to_device(g), ds, dtype(opt.lr), step)
            p, state = _opt_ref(opt, p, g, state, opt.lr, step)
            close(dp.copy_to_host(), p, f"{opt!r} step {step}", 2e-5)
            if state.size:
                close(ds.copy_to_host(), state, f"{opt!r} state, step {step}", 2e-5)
    return f"{len(opts)} optimizers"


def check_gather_clear_wsum():
    """The batch gather (labels / values, with weights), the accumulator reset, the weight sum."""
    np = _np()
    import graphnn as gn
    from numba import cuda
    from graphnn.compile import cuda as gc
    dtype = np.float32
    rng = np.random.default_rng(7)
    rows, d = 9, 3
    X = rng.normal(size=(rows, d)).astype(dtype)
    W = rng.uniform(size=rows).astype(dtype)
    order = rng.permutation(rows).astype(np.int64)
    start, n = 4, 5
    sel = order[start:start + n]
    for loss, Y in (("cross_entropy", rng.integers(0, 2, rows).astype(np.int64)),
                    ("mse", rng.normal(size=(rows, 5)).astype(dtype))):
        k = 2 if loss == "cross_entropy" else 5
        model = gn.Sequential([gn.Dense(k)], input_dim=d)
        mod = gc.CudaModule(plan_of(model, loss), gn.SGD(lr=0.1), dtype, tiny_config())
        ns = load_module(mod, dtype)
        cols = max(d, 1 if Y.ndim == 1 else Y.shape[1])
        x = cuda.device_array((n, d), dtype)
        y = cuda.device_array((n,) + Y.shape[1:], Y.dtype)
        ns["launch_ew"]("gather", n, cols)(cuda.to_device(X), cuda.to_device(Y),
                                           cuda.to_device(order), start, x, y)
        close(x.copy_to_host(), X[sel], f"gather x ({loss})")
        close(y.copy_to_host(), Y[sel], f"gather y ({loss})")
        w = cuda.device_array(n, dtype)
        ns["launch_ew"]("gather_weighted", n, cols)(
            cuda.to_device(X), cuda.to_device(Y), cuda.to_device(W), cuda.to_device(order),
            start, x, y, w)
        close(w.copy_to_host(), W[sel], f"gather w ({loss})")
        close(y.copy_to_host(), Y[sel], f"gather_weighted y ({loss})")
    ns["launch_one"]("wsum", rows)(cuda.to_device(W), ns["WSUM"])
    close(ns["WSUM"].copy_to_host(), [W.sum()], "wsum")
    out = cuda.to_device(np.ones(20, dtype))
    ns["HITS"].copy_to_device(np.array([5], np.int64))
    ns["ERRS"].copy_to_device(np.array([1, 2], dtype))
    ns["launch_flat"]("clear", 17)(out, 17, ns["HITS"], ns["ERRS"])
    close(out.copy_to_host(), [0] * 17 + [1] * 3, "clear")
    assert ns["HITS"].copy_to_host()[0] == 0 and not ns["ERRS"].copy_to_host().any(), "clear"
    return "gather x2, gather_weighted x2, wsum, clear"


def _uniform_ref(key, rows, cols):
    """uniform(key, i, j) for the given rows and columns, by a plain Python copy of the
    integer hash that ops/dropout.py documents (not the generated code)."""
    np = _np()
    out = np.empty((len(rows), len(cols)))
    for a, i in enumerate(rows):
        for b, j in enumerate(cols):
            h = (key ^ (i * 0x9E3779B1) ^ (j * 0x85EBCA77)) & 0xFFFFFFFF
            h = ((h ^ (h >> 16)) * 0x7FEB352D) & 0xFFFFFFFF
            h = ((h ^ (h >> 15)) * 0x846CA68B) & 0xFFFFFFFF
            h = h ^ (h >> 16)
            out[a, b] = (h >> 8) * 2.0 ** -24
    return out


def check_dropout():
    """The dropout mask: values 0 or 1/(1-rate), out = x * mask, about 1-rate kept, the same
    for the same key and not for another; the mask of row i is drawn for row row0 + i
    (data-parallel shards), checked against a Python copy of the hash."""
    np = _np()
    from numba import cuda
    dtype = np.float32
    mod = _elementwise_module(dtype)
    mod.k_dropout()
    ns = load_module(mod, dtype)
    rng = np.random.default_rng(8)
    n, w, rate = 40, 8, 0.25
    x = rng.normal(size=(n, w)).astype(dtype)
    masks = []
    for key, row0 in ((11, 0), (11, 0), (12, 0), (11, 7)):
        out, mask = cuda.device_array((n, w), dtype), cuda.device_array((n, w), dtype)
        ns["launch_ew"]("dropout", n, w)(out, cuda.to_device(x), mask, dtype(rate),
                                        dtype(1 / (1 - rate)), key, row0)
        m = mask.copy_to_host()
        masks.append(m)
        want = (_uniform_ref(key, range(row0, row0 + n), range(w)) >= rate) / (1 - rate)
        close(m, want, f"mask (key {key}, row0 {row0}) vs the hash")
        assert set(np.unique(m)) <= {0.0, dtype(1 / (1 - rate))}, "mask values"
        close(out.copy_to_host(), x * m, "dropout out = x * mask")
        kept = (m > 0).mean()
        assert 0.6 < kept < 0.9, f"kept fraction {kept} for rate {rate}"
    assert (masks[0] == masks[1]).all(), "same key, same mask"
    assert (masks[0] != masks[2]).any(), "another key, another mask"
    return f"kept {(masks[0] > 0).mean():.3f} at rate {rate}"


def check_float64_kernels():
    """float64: products, activations and the optimizer in double precision."""
    np = _np()
    check_matmul(dtype=np.float64, sizes=("big",), rtol=1e-12,
                 epilogues=[("set", "linear", False), ("split", "gelu", True)])
    check_activations(dtype=np.float64)
    return "float64 products and activations"


# -- whole-graph checks (simulator or GPU) -------------------------------------------------
def _pair(build, rtol=1e-5, atol=1e-6, epochs=1, batch_size=4, rows=10, loss="cross_entropy",
          optimizer=None, dtype="float32", weights=False, seed=0, build_cpu=None):
    """Train the same graph with device='cuda' and device='cpu' (built by ``build_cpu`` if
    given); compare everything."""
    np = _np()
    import graphnn as gn
    opt = optimizer or (lambda: gn.SGD(lr=0.1))
    gpu = build().compile(loss=loss, optimizer=opt(), seed=seed, dtype=dtype, device="cuda")
    cpu = (build_cpu or build)().compile(loss=loss, optimizer=opt(), seed=seed, dtype=dtype, device="cpu")
    rng = np.random.default_rng(seed + 10)
    d = gpu.model.input.width
    k = gpu.model.output.width
    X = rng.normal(size=(rows, d)).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, k, rows)
    elif loss == "mse":
        y = rng.normal(size=(rows, k))
    else:
        y = rng.integers(0, 2, (rows, k)).astype(float)
    kw = {"sample_weight": rng.uniform(0.5, 2, rows)} if weights else {}
    close(gpu.predict(X), cpu.predict(X), "predict before training", rtol, atol)
    lg, gg = gpu.loss_and_grads(X, y)
    lc, gc_ = cpu.loss_and_grads(X, y)
    close(lg, lc, "loss_and_grads loss", rtol, atol)
    assert len(gg) == len(gc_)
    for (name, g1), g2 in zip(gg.items(), gc_.values()):     # in parameter order
        close(g1, g2, f"loss_and_grads {name}", rtol, atol)
    hg = gpu.fit(X, y, epochs=epochs, batch_size=batch_size, **kw)
    hc = cpu.fit(X, y, epochs=epochs, batch_size=batch_size, **kw)
    for key in hc.history:
        close(hg.history[key], hc.history[key], f"history {key}", rtol, atol)
    pg, pc = gpu.get_params(), cpu.get_params()
    assert len(pg) == len(pc)
    for (name, p1), p2 in zip(pg.items(), pc.values()):
        assert p1.dtype == np.dtype(dtype), f"{name} dtype {p1.dtype}"
        close(p1, p2, f"parameter {name} after {gpu.step} steps", rtol, atol)
    eg, ec = gpu.evaluate(X, y), cpu.evaluate(X, y)
    for key in ec:
        close(eg[key], ec[key], f"evaluate {key}", rtol, atol)
    close(gpu.predict(X, batch_size=3), cpu.predict(X), "predict in chunks of 3", rtol, atol)
    assert gpu.step == cpu.step
    return f"{gpu.step} steps, {len(pc)} parameters agree"


def check_train_mlp():
    """A 3-4-2 tanh MLP, softmax cross-entropy, SGD with a per-step cosine schedule (the lr
    of each step computed on the host): 2 epochs of batches 4, 4, 2."""
    import graphnn as gn
    from graphnn.schedules import WarmupCosine
    return _pair(lambda: gn.Sequential([gn.Dense(4, activation="tanh"), gn.Dense(2)],
                                       input_dim=3), epochs=2,
                 optimizer=lambda: gn.SGD(lr=WarmupCosine(0.1, warmup=2, total=5)))


def _graph():
    import graphnn as gn
    x = gn.Input(3)
    h = gn.Dense(4, activation="tanh")(x)
    r = gn.Add()([h, gn.Dense(4, activation="relu")(h)])
    c = gn.Concatenate()([r, gn.Dropout(0.0)(h)])
    return gn.Model(x, gn.Dense(2, activation="softmax")(c))


def check_train_graph():
    """Add, Concatenate, Dropout(0), a node read three times, a softmax output fused into
    cross-entropy; Adam."""
    import graphnn as gn
    return _pair(_graph, optimizer=lambda: gn.Adam(lr=0.01))


def check_train_weighted_mse():
    """MSE with sample weights; gelu (pre-activation kept: the split epilogue), an
    activation node, no-bias Dense; SGD with Nesterov momentum."""
    import graphnn as gn

    def build():
        x = gn.Input(3)
        h = gn.Dense(4, activation="gelu")(x)
        h = gn.Sigmoid()(gn.Dense(3, use_bias=False)(h))
        return gn.Model(x, gn.Dense(2)(h))
    return _pair(build, loss="mse", weights=True,
                 optimizer=lambda: gn.SGD(lr=0.1, momentum=0.9, nesterov=True))


def check_train_dropout():
    """Two Dropout nodes (rates 0.3 and 0.5): the CPU and the GPU draw the same masks from
    the same seed (the shared integer-hash uniform()), so they train alike."""
    import graphnn as gn

    def build():
        x = gn.Input(3)
        h = gn.Dropout(0.3)(gn.Dense(6, activation="relu")(x))
        return gn.Model(x, gn.Dense(2)(gn.Dropout(0.5)(gn.Dense(5, activation="tanh")(h))))
    return _pair(build, epochs=2, rows=12)


def check_hostile_names():
    """A model named with triple quotes and a shell command, and layers with long
    distinctive names: trains on the device like the CPU (whose model
    is built with a plain name), its source holds none of the names, no file appears."""
    import graphnn as gn
    import tempfile
    where = tempfile.mkdtemp()
    mark = os.path.join(where, "PWNED")
    # the hardest name the rule admits (printable, no " or \\, at most 256 characters)
    hostile = (f"x'''; __import__('os').system('touch {mark}'); ''' {{}} caf\u00e9 "
               + "n" * 20)[:256]
    long_name = "Zq" + "y" * 254

    def build(name=hostile, names=("Zq_in", "Zq_drop", long_name, "Zq_out")):
        x = gn.Input(3, name=names[0])
        h = gn.Dropout(0.3, name=names[1])(gn.Dense(4, activation="tanh", name=names[2])(x))
        return gn.Model(x, gn.Dense(2, name=names[3])(h), name=name)
    # the CPU oracle with plain names (the CPU backend's own handling of names is tested
    # in its tests); parameters are compared in order
    detail = _pair(build, build_cpu=lambda: build("plain", (None,) * 4), rows=6, batch_size=3)
    net = build().compile(loss="cross_entropy", device="cuda")
    for text in (hostile, long_name, "Zq_in", "Zq_drop", "Zq_out"):
        assert text not in net.source(), text[:30]
    assert not os.path.exists(mark), "the name ran"
    return detail


def check_width_variants():
    """Two width variants (input, hidden, concatenation offsets, output, dropout rate) of
    one architecture: identical source, the same kernel objects (compiled once), and
    each trains like the CPU backend."""
    import graphnn as gn

    def build(d, w1, w2, rate, k):
        def make():
            x = gn.Input(d)
            h = gn.Dense(w1, activation="tanh")(x)
            r = gn.Add()([h, gn.Dense(w1, activation="relu")(h)])
            c = gn.Concatenate()([r, gn.Dropout(rate)(gn.Dense(w2, activation="gelu")(h))])
            return gn.Model(x, gn.Dense(k, activation="softmax")(c))
        return make
    shapes = ((3, 4, 2, 0.5, 2), (5, 2, 3, 0.2, 3))
    details = [_pair(build(*v), rows=6, batch_size=3, optimizer=lambda: gn.Adam(lr=0.01))
               for v in shapes]
    nets = [build(*v)().compile(loss="cross_entropy", device="cuda") for v in shapes]
    a, b = (n.backend for n in nets)
    assert a.source == b.source, "width variants gave different sources"
    assert a.module.layout != b.module.layout
    for name in a.module.kernels:
        assert a.kernels[name] is b.kernels[name], f"kernel {name} not shared"
    return "; ".join(details) + f"; {len(a.module.kernels)} kernels shared"


def check_train_float64():
    """The graph test in float64 (tolerance 1e-12)."""
    import graphnn as gn
    return _pair(_graph, dtype="float64", rtol=1e-12, atol=1e-14,
                 optimizer=lambda: gn.RMSprop(lr=0.01))


def check_train_wide():
    """GPU only: 64-300-200-10 ReLU, batch 128 (big and small tiles, several blocks)."""
    import graphnn as gn
    return _pair(lambda: gn.Sequential([gn.Dense(300, activation="relu"),
                                        gn.Dense(200, activation="relu"), gn.Dense(10)],
                                       input_dim=64), rows=700, batch_size=128, rtol=1e-4,
                 atol=1e-5)


def check_divergence():
    """A learning rate that overflows the weights: fit raises DivergenceError and the
    parameters and optimizer state of the last good epoch come back (snapshot and
    finiteness check made on the device)."""
    np = _np()
    import graphnn as gn
    net = gn.Sequential([gn.Dense(4, activation="relu"), gn.Dense(1)], input_dim=3).compile(
        loss="mse", optimizer=gn.SGD(lr=10.0, momentum=0.9), seed=0, device="cuda")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(8, 3)).astype(np.float32)
    y = rng.normal(size=(8, 1))
    net.fit(X * 1e-3, y * 1e-3, epochs=1, batch_size=4)     # small data: a finite epoch
    good = net.get_params()
    state = net.backend.to_host(net.state).copy()
    assert all(np.isfinite(v).all() for v in good.values())
    try:
        net.fit(X * 1e6, y * 1e6, epochs=1, batch_size=4)     # overflows
    except gn.DivergenceError as e:
        message = str(e)
    else:
        raise AssertionError("no DivergenceError")
    assert "epoch 2" in message, message
    for name, value in net.get_params().items():
        assert np.array_equal(value, good[name]), f"{name} not restored"
    assert np.array_equal(net.backend.to_host(net.state), state), "optimizer state not restored"
    assert net.backend.all_finite(net.params)
    return message[:80]


def check_launch_count():
    """launches_per_step matches the launches one training step makes; 784-256-128-10: 14."""
    np = _np()
    import graphnn as gn
    from graphnn.compile import cuda as gc
    mlp = gn.Sequential([gn.Dense(256, activation="relu"), gn.Dense(128, activation="relu"),
                         gn.Dense(10)], input_dim=784)
    static = gc.CudaModule(plan_of(mlp), gn.SGD(lr=0.1), np.float32).launches_per_step
    assert static == 14, f"784-256-128-10: {static} launches per step, expected 14"
    net = _graph().compile(loss="cross_entropy", optimizer=gn.SGD(lr=0.1), device="cuda")
    ns = net.backend.kernels
    counted = []
    real_configure = ns["_configure"]

    def counting(kernel, grid, block):
        launch = real_configure(kernel, grid, block)
        return lambda *args: (counted.append(kernel), launch(*args))[1]
    ns["_configure"] = counting
    ns["_launch"].clear()
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(4, 3)), rng.integers(0, 2, 4)
    net.fit(X, y, epochs=1, batch_size=4)   # one step; per epoch: clear the sums, check finite
    assert len(counted) == net.backend.launches_per_step + 2, \
        f"{len(counted)} launches for one step, launches_per_step = {net.backend.launches_per_step}"
    return f"784-256-128-10: {static} per step; graph: {net.backend.launches_per_step}"


# -- modes ----------------------------------------------------------------------------------
def _emit(**kw):
    print(json.dumps(kw), flush=True)


def _run(names):
    for name in names:
        t = time.perf_counter()
        try:
            detail = globals()[f"check_{name}"]()
            _emit(check=name, ok=True, detail=f"{detail} ({time.perf_counter() - t:.1f} s)")
        except Exception as e:                                  # noqa: BLE001
            _emit(check=name, ok=False,
                  detail=f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}")


def mode_sim():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    if "numba" in sys.modules:
        from numba.core import config
        config.reload_config()
    sys.setswitchinterval(5e-4)        # the simulator's barriers: faster thread hand-offs
    from graphnn.compile.cuda import config
    config.CONFIG = tiny_config()
    _run(SIM_CHECKS)


def mode_gpu():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        _emit(skip="NUMBA_ENABLE_CUDASIM=1 is set: not a real GPU run")
        return
    try:
        from graphnn.compile.cuda import import_cuda
        import_cuda()
    except ValueError as e:
        _emit(skip=f"no usable GPU: {e}")
        return
    _run(GPU_CHECKS)


def covering_modules(config, dtype):
    """CudaModules whose kernels, together, are every kind of kernel the backend emits:
    every epilogue a Dense layer can ask for (bias + activation in place for activations
    whose gradient reads y, the split form for those that read x) on the big tile, each
    product shape and epilogue kind on the small tile, every elementwise, column, row,
    loss, optimizer and data kernel."""
    import graphnn as gn
    from graphnn.compile import cuda as gc
    from graphnn.ops.activations import ACTIVATIONS
    mods = []
    main = gc.CudaModule(plan_of(_graph()), gn.Adam(lr=0.01), dtype, config)
    for ta, tb in ((False, False), (True, False), (False, True)):
        for epi in ("set", "acc"):
            main.k_matmul(ta, tb, epi)
    for a in ACTS:
        epi = "split" if ACTIVATIONS[a].grad_uses_x else "bias_act"
        for bias in (True, False):
            main.k_matmul(False, False, epi, a, bias)
        main.k_bias_act(a, True)
        main.k_bias_act(a, False)
        for acc in (False, True):
            main.k_act_grad(a, acc)
            main.k_act_grad_colsum(a, acc)
    for k in (2, 3):
        main.k_sum(k)
    for acc in (False, True):
        main.k_copy(acc)
        main.k_mul(acc)
        main.k_softmax_grad(acc)
    main.k_place()
    main.k_colsum()
    main.k_softmax()
    main.k_dropout()
    mods.append(main)
    for loss in ("mse", "binary_cross_entropy"):
        mods.append(gc.CudaModule(plan_of(gn.Sequential([gn.Dense(2)], input_dim=3), loss),
                                  gn.SGD(lr=0.1), dtype, config))
    for opt in (gn.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
                gn.AdamW(lr=0.01), gn.RMSprop(lr=0.01, momentum=0.9, weight_decay=0.1)):
        mods.append(gc.CudaModule(plan_of(), opt, dtype, config))
    return mods


# the tiles differ only in their numbers: every epilogue on the small tile (quicker to
# compile), the big tile for every product shape and a sample of epilogues
BIG_SAMPLE = ("mm_nn_big", "mm_tn_big", "mm_nt_big", "mm_nn_acc_big", "mm_tn_acc_big",
              "mm_nt_acc_big", "mm_nn_bias_relu_big", "mm_nn_split_bias_gelu_big")
F64_SAMPLE = ("mm_nn_split_bias_gelu_big", "act_grad_gelu_colsum", "loss", "loss_weighted",
              "apply_update", "softmax_grad")


def _ptx_wanted(name, dtype):
    np = _np()
    if dtype == np.float64:
        return name in F64_SAMPLE
    return not name.endswith("_big") or name in BIG_SAMPLE


def mode_ptx(cc_text):
    import re
    cc = tuple(int(v) for v in cc_text.split("."))
    try:
        import numpy as np
        from numba import cuda
        from numba.core import config
        if config.ENABLE_CUDASIM:
            _emit(skip="the simulator is on (NUMBA_ENABLE_CUDASIM=1): no compile_ptx")
            return
        from numba.cuda.cudadrv import nvvm
        if not nvvm.is_available():
            _emit(skip="NVVM is not available (pip install nvidia-nvvm==13.* nvidia-cuda-nvrtc==13.*)")
            return
        cuda.compile_ptx(lambda a: None, "void(float32[::1])", cc=cc)
    except Exception as e:                                      # noqa: BLE001
        _emit(skip=f"cuda.compile_ptx does not work here: {type(e).__name__}: "
                   f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                   " (needs numba-cuda, nvidia-nvvm==13.* and nvidia-cuda-nvrtc==13.*)")
        return
    # device functions compile for "the current device": there is none, so name the target
    import numba.cuda.dispatcher as dispatcher

    class _Target:
        compute_capability = cc
    dispatcher.get_current_device = lambda: _Target
    from graphnn.compile import cuda as gc
    seen = {}
    for dtype in (np.float32, np.float64):
        for mod in covering_modules(gc.Config(), dtype):
            ns = gc.load(mod.source(), mod.layout)
            tag = f"{np.dtype(dtype).name} {mod.plan.loss.name}/{mod.optimizer.name}"
            for name, k in mod.kernels.items():
                key = (dtype, k.source)
                if key in seen:
                    continue
                seen[key] = name
                if not _ptx_wanted(name, dtype):
                    continue
                t = time.perf_counter()
                try:
                    ptx, _ = cuda.compile_ptx(ns[name].py_func, mod.signature(name), cc=cc)
                except Exception as e:                          # noqa: BLE001
                    _emit(check=f"{tag} {name}", ok=False,
                          detail=f"{type(e).__name__}: {e}"[:3000])
                    continue
                bad = [line.strip() for line in ptx.splitlines()
                       if re.search(r"\.f64\b", line)] if dtype == np.float32 else []
                _emit(check=f"{tag} {name}", ok=not bad and ".entry" in ptx,
                      detail=(f"f64 in float32 PTX: {bad[:4]}" if bad else
                              f"{len(ptx)} chars of PTX, {time.perf_counter() - t:.2f} s"))


def mode_nodevice():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        _emit(skip="the simulator is on")
        return
    import graphnn as gn
    model = gn.Sequential([gn.Dense(2)], input_dim=3)
    try:
        net = model.compile(loss="mse", device="cuda")
    except ValueError as e:
        _emit(check="nodevice", ok=True, detail=str(e))
        return
    _emit(skip=f"a GPU is present ({net.backend.kernels['SMS']} multiprocessors): "
               "device='cuda' works here")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "sim"
    {"sim": mode_sim, "gpu": mode_gpu, "nodevice": mode_nodevice}.get(
        mode, lambda: mode_ptx(sys.argv[2] if len(sys.argv) > 2 else "9.0"))()
