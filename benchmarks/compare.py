"""graphnn against PyTorch CPU eager and plain NumPy: same networks, data, init, threads, float32.

    python benchmarks/compare.py                 # full run (a few minutes)
    python benchmarks/compare.py --quick         # smoke run (under a minute with a warm cache)
    python benchmarks/compare.py --threads 1 --json results.json

What is measured (all float32, SGD, the same initial parameters for every contender):

* training steps/s for three MLPs, with mini-batches taken in order from random data:
  tiny 2-32-32-1 tanh, MSE, batch 32; MNIST-sized 784-256-128-10 ReLU, cross-entropy,
  batch 128; wide 1024-1024-1024-10 ReLU, cross-entropy, batch 256.
  graphnn is timed through its public API (``net.fit(X, y, epochs=1, shuffle=False)``, one
  compiled call over all the batches, input validation included); PyTorch as the usual eager
  loop (``zero_grad``, forward, loss, ``backward``, ``optimizer.step``); NumPy as a
  hand-written forward/backward/update loop.
* graphnn's achieved GFLOP/s on the MNIST and wide steps (2*m*n*k per matrix product: per
  layer X*W forward and X^T*dZ backward, dZ*W^T for every layer but the first) against the
  machine's own rate for exactly those products: an @njit function making the same
  ``np.dot`` calls on float32 C arrays of the same shapes, through SciPy's BLAS as graphnn.
* one full epoch of a 784-128-10 ReLU MLP, batch 32, over 60,000 shuffled rows of random data
  of MNIST shape (uniform [0, 1) pixels, random labels 0..9; not the real data set).
* compile time of the 784-256-128-10 MLP in a fresh process: cold (empty
  ``GRAPHNN_CACHE_DIR``), as a new architecture on a machine whose kernels are cached (a
  directory filled by the same net one hidden layer shallower), and warm (a second fresh
  process on the cold run's directory), and in
  each the compile of the same architecture with other hidden widths; then a width sweep:
  20 width variants in one process, their compile time and the memory they add.

Noise control: the contenders run interleaved, round by round (their order rotated each
round), each measurement is preceded by a 0.3 s pause and a short warm-up call and lasts at
least ~0.25 s (0.1 s with --quick), and every figure is the median over the rounds; a ratio
is the median of the per-round ratios.  The pause matters: after a BLAS call, OpenBLAS's
worker threads spin for ~0.1-0.2 s, and on 2 cores whatever runs next in that window
(PyTorch, or the other OpenBLAS copy: NumPy's vs the SciPy one Numba uses) runs 3-5x
slower.  A ratio is graphnn's speed divided by the other's (> 1: graphnn is faster).

graphnn's in-process models compile through its on-disk cache (GRAPHNN_CACHE_DIR, else
~/.cache/graphnn): the first run on a machine spends extra time compiling in setup.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LR = 0.01

# name -> network spec; "hidden" layers use "act", the last Dense is linear (logits).
NETS = {
    "tiny": dict(title="tiny MLP 2-32-32-1 tanh, MSE, batch 32", input_dim=2, hidden=(32, 32),
                 out=1, act="tanh", loss="mse", batch=32),
    "mnist": dict(title="MNIST MLP 784-256-128-10 ReLU, CE, batch 128", input_dim=784,
                  hidden=(256, 128), out=10, act="relu", loss="cross_entropy", batch=128),
    "wide": dict(title="wide MLP 1024-1024-1024-10 ReLU, CE, batch 256", input_dim=1024,
                 hidden=(1024, 1024), out=10, act="relu", loss="cross_entropy", batch=256),
}
EPOCH_NET = dict(title="epoch 784-128-10 ReLU, CE, batch 32, 60,000 shuffled rows",
                 input_dim=784, hidden=(128,), out=10, act="relu", loss="cross_entropy",
                 batch=32, rows=60_000)
COMPILE_NET = "mnist"                  # the 3-layer MLP whose compile time is measured

# budget_s: no new round starts once it would end past this many seconds from the start
# (at least min_rounds run), so a heavily loaded machine still gets a bounded run.
FULL = dict(rounds=9, min_rounds=3, target_s=0.25, epoch_rounds=5, compile_reps=2,
            settle_s=0.3, budget_s=270)
QUICK = dict(rounds=2, min_rounds=1, target_s=0.1, epoch_rounds=1, compile_reps=1,
             settle_s=0.3, budget_s=50)
DATA_BYTES = 32 << 20                  # per network; longer measurements loop over it


# -- shared helpers (also used by the asv benchmarks in this folder) -----------------------
def thread_env(n: int) -> dict:
    """Environment variables pinning every thread pool to n threads (read at library load)."""
    n = str(n)
    return {"OPENBLAS_NUM_THREADS": n, "NUMBA_NUM_THREADS": n, "OMP_NUM_THREADS": n,
            "MKL_NUM_THREADS": n}


def layer_dims(spec) -> list[tuple[int, int]]:
    dims = [spec["input_dim"], *spec["hidden"], spec["out"]]
    return list(zip(dims[:-1], dims[1:]))


def step_flops(spec, batch: int | None = None) -> int:
    """FLOPs of the matrix products of one training step (2*m*n*k each)."""
    b = batch or spec["batch"]
    total = 0
    for i, (k, n) in enumerate(layer_dims(spec)):
        total += 2 * b * k * n            # forward X W
        total += 2 * k * b * n            # backward X^T dZ
        if i > 0:
            total += 2 * b * n * k        # backward dZ W^T
    return total


def build_model(spec):
    import graphnn as gn
    layers = [gn.Dense(h, activation=spec["act"]) for h in spec["hidden"]]
    return gn.Sequential(layers + [gn.Dense(spec["out"])], input_dim=spec["input_dim"])


def compile_net(spec, seed: int = 0):
    import graphnn as gn
    return build_model(spec).compile(loss=spec["loss"], optimizer=gn.SGD(LR), seed=seed)


def make_data(spec, rows: int, seed: int = 0):
    """Random float32 inputs and targets: a smooth function for MSE, random labels for CE."""
    import numpy as np
    rng = np.random.default_rng(seed)
    if spec["loss"] == "mse":
        X = rng.uniform(-1, 1, (rows, spec["input_dim"])).astype(np.float32)
        y = (np.sin(np.pi * X[:, :1]) * np.cos(np.pi * X[:, -1:])).astype(np.float32)
        return X, np.ascontiguousarray(np.repeat(y, spec["out"], axis=1))
    X = rng.random((rows, spec["input_dim"]), dtype=np.float32)     # pixel-like [0, 1)
    return X, rng.integers(0, spec["out"], rows).astype(np.int64)


def set_threads(n: int, gn=None, torch=None) -> list[str]:
    """Pin thread pools that are already loaded (env vars only reach those loaded later)."""
    notes = []
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=n)
    except ImportError:
        notes.append("threadpoolctl not installed: BLAS threads pinned by environment only")
    if torch is not None:
        torch.set_num_threads(n)
    if gn is not None and hasattr(gn, "set_num_threads"):
        gn.set_num_threads(n)
    return notes


# -- contenders ----------------------------------------------------------------------------
class GraphnnRunner:
    name = "graphnn"

    def __init__(self, spec, net, X, y):
        self.spec, self.net, self.X, self.y = spec, net, X, y

    def run(self, epochs: int, batches: int) -> int:
        n = batches * self.spec["batch"]
        self.net.fit(self.X[:n], self.y[:n], epochs=epochs, batch_size=self.spec["batch"],
                     shuffle=False)
        return epochs * batches

    def run_shuffled_epoch(self):
        self.net.fit(self.X, self.y, epochs=1, batch_size=self.spec["batch"], shuffle=True)

    def params(self):
        p = self.net.get_params()
        ws = [v for k, v in p.items() if k.endswith(".weight")]
        bs = [v for k, v in p.items() if k.endswith(".bias")]
        return list(zip(ws, bs))


class _EagerRunner:
    """A hand-driven loop: ``_step`` on each mini-batch in order, from Python."""

    def run(self, epochs: int, batches: int) -> int:
        B, X, y = self.B, self.X, self.y
        for _ in range(epochs):
            for i in range(batches):
                self._step(X[i * B:(i + 1) * B], y[i * B:(i + 1) * B])
        return epochs * batches


class TorchRunner(_EagerRunner):
    name = "torch"

    def __init__(self, spec, init, X, y, torch):
        self.spec, self.torch, self.B = spec, torch, spec["batch"]
        nn = torch.nn
        mods = []
        for i, (W, b) in enumerate(init):
            lin = nn.Linear(W.shape[0], W.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(b.copy()))
            mods.append(lin)
            if i < len(init) - 1:
                mods.append(nn.Tanh() if spec["act"] == "tanh" else nn.ReLU())
        self.model = nn.Sequential(*mods)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.lossf = (torch.nn.functional.mse_loss if spec["loss"] == "mse"
                      else torch.nn.functional.cross_entropy)
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.rng = None

    def _step(self, xb, yb):
        self.opt.zero_grad(set_to_none=True)
        loss = self.lossf(self.model(xb), yb)
        loss.backward()
        self.opt.step()
        return loss

    def run_shuffled_epoch(self):
        torch, B = self.torch, self.B
        n = self.X.shape[0]
        perm = torch.randperm(n)
        for i in range(0, n, B):
            idx = perm[i:i + B]
            self._step(self.X[idx], self.y[idx])

    def params(self):
        lins = [m for m in self.model if isinstance(m, self.torch.nn.Linear)]
        return [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
                for m in lins]


class NumpyRunner(_EagerRunner):
    name = "numpy"

    def __init__(self, spec, init, X, y):
        import numpy as np
        self.np = np
        self.spec, self.B, self.X, self.y = spec, spec["batch"], X, y
        self.layers = [(W.copy(), b.copy()) for W, b in init]
        self.lr = np.float32(LR)
        self.rng = np.random.default_rng(1)

    def _step(self, x, y):
        np = self.np
        L = len(self.layers)
        hs, zs = [x], []
        h = x
        for i, (W, b) in enumerate(self.layers):
            z = h @ W
            z += b
            zs.append(z)
            if i < L - 1:
                h = np.tanh(z) if self.spec["act"] == "tanh" else np.maximum(z, 0)
                hs.append(h)
        out = zs[-1]
        n = out.shape[0]
        if self.spec["loss"] == "mse":
            diff = out - y
            loss = float(np.mean(diff * diff))
            d = diff * np.float32(2.0 / diff.size)
        else:
            m = out.max(axis=1, keepdims=True)
            e = np.exp(out - m)
            s = e.sum(axis=1, keepdims=True)
            rows = np.arange(n)
            loss = float(np.mean(np.log(s[:, 0]) + m[:, 0] - out[rows, y]))
            p = e / s
            p[rows, y] -= 1
            d = p * np.float32(1.0 / n)
        for i in range(L - 1, -1, -1):
            W, b = self.layers[i]
            dW = hs[i].T @ d
            db = d.sum(axis=0)
            if i > 0:
                dh = d @ W.T
                if self.spec["act"] == "tanh":
                    d = dh * (1 - hs[i] * hs[i])
                else:
                    d = dh * (zs[i - 1] > 0)
            W -= self.lr * dW
            b -= self.lr * db
        return loss

    def run_shuffled_epoch(self):
        B, n = self.B, self.X.shape[0]
        perm = self.rng.permutation(n)
        for i in range(0, n, B):
            idx = perm[i:i + B]
            self._step(self.X[idx], self.y[idx])

    def params(self):
        return [(W.copy(), b.copy()) for W, b in self.layers]


_BLAS_KERNEL = None


def _blas_kernel():
    """An @njit function making exactly a 3-layer MLP step's np.dot calls, `reps` times."""
    global _BLAS_KERNEL
    if _BLAS_KERNEL is None:
        import numpy as np
        from numba import njit

        @njit(cache=False)
        def products(x, W1, W2, W3, Z1, Z2, Z3, D1, D2, D3, G1, G2, G3, reps):
            for _ in range(reps):
                np.dot(x, W1, Z1)            # forward
                np.dot(Z1, W2, Z2)
                np.dot(Z2, W3, Z3)
                np.dot(Z2.T, D3, G3)         # backward: dW = X^T dZ, dX = dZ W^T
                np.dot(D3, W3.T, D2)
                np.dot(Z1.T, D2, G2)
                np.dot(D2, W2.T, D1)
                np.dot(x.T, D1, G1)
            return Z3[0, 0]
        _BLAS_KERNEL = products
    return _BLAS_KERNEL


class BlasRunner:
    """The step's matrix products alone, in one @njit call (SciPy's BLAS, like graphnn)."""
    name = "blas"

    def __init__(self, spec):
        import numpy as np
        assert len(layer_dims(spec)) == 3
        B = spec["batch"]
        rng = np.random.default_rng(0)
        f = lambda *shape: np.ascontiguousarray(
            (rng.standard_normal(shape) * 0.05).astype(np.float32))
        (d0, d1), (_, d2), (_, d3) = layer_dims(spec)
        self.args = (f(B, d0), f(d0, d1), f(d1, d2), f(d2, d3),
                     f(B, d1), f(B, d2), f(B, d3), f(B, d1), f(B, d2), f(B, d3),
                     f(d0, d1), f(d1, d2), f(d2, d3))
        self.kernel = _blas_kernel()
        self.kernel(*self.args, 1)          # compile

    def run(self, epochs: int, batches: int) -> int:
        self.kernel(*self.args, epochs * batches)
        return epochs * batches


# -- measurement ---------------------------------------------------------------------------
def _median(xs):
    s = sorted(xs)
    n = len(s)
    return float("nan") if n == 0 else (s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2]))


def _calibrate(runner, max_batches: int, target_s: float) -> tuple[int, int]:
    """(epochs, batches) so that one measurement lasts about target_s."""
    k = min(4, max_batches)
    while True:
        runner.run(1, k)                                  # warm
        dts = []
        for _ in range(3):                                # the fastest of 3: noise only slows
            t = time.perf_counter()
            runner.run(1, k)
            dts.append(time.perf_counter() - t)
        dt = min(dts)
        if dt > 0.02 or k >= max_batches:
            break
        k = min(max_batches, k * 4)
    steps = max(4, math.ceil(target_s / max(dt / k, 1e-9)))
    if steps <= max_batches:
        return 1, steps
    return math.ceil(steps / max_batches), max_batches


def _measure(runner, epochs, batches, settle_s) -> tuple[float, float]:
    """(steps per second, seconds) of one measurement, after a settle pause and a warm-up call."""
    time.sleep(settle_s)
    runner.run(1, min(2, batches))
    t = time.perf_counter()
    steps = runner.run(epochs, batches)
    dt = time.perf_counter() - t
    return steps / dt, dt


def _lengthen(plan, dt, target_s, max_batches) -> tuple[int, int]:
    """A longer (epochs, batches) when a measurement came out shorter than half the target."""
    epochs, batches = plan
    if dt >= 0.5 * target_s:
        return plan
    steps = math.ceil(epochs * batches * target_s / max(dt, 1e-9))
    if steps <= max_batches:
        return 1, steps
    return math.ceil(steps / max_batches), max_batches


def _measure_epoch(runner, settle_s) -> float:
    time.sleep(settle_s)
    t = time.perf_counter()
    runner.run_shuffled_epoch()
    return time.perf_counter() - t


def _agreement(runners) -> dict:
    """Max |parameter difference| of each contender to graphnn (same init, same batches)."""
    import numpy as np
    ref = runners[0].params()
    out = {}
    for r in runners[1:]:
        other = r.params()
        out[r.name] = max(float(np.max(np.abs(a - b))) for (wa, ba), (wb, bb) in zip(ref, other)
                          for a, b in ((wa, wb), (ba, bb)))
    return out


def _compile_child_code(spec) -> str:
    """Import graphnn, compile `spec`, then the same architecture with other hidden widths
    (a width change: with structure-keyed kernels it compiles nothing)."""
    other = tuple(h + 16 for h in spec["hidden"])
    return f"""
import json, time
t0 = time.perf_counter()
import graphnn as gn
t1 = time.perf_counter()
def build(hidden):
    layers = [gn.Dense(h, activation={spec['act']!r}) for h in hidden]
    return gn.Sequential(layers + [gn.Dense({spec['out']})], input_dim={spec['input_dim']})
net = build({tuple(spec['hidden'])!r}).compile(loss={spec['loss']!r}, optimizer=gn.SGD({LR}),
                                               seed=0)
t2 = time.perf_counter()
net2 = build({other!r}).compile(loss={spec['loss']!r}, optimizer=gn.SGD({LR}), seed=0)
print(json.dumps({{"import_s": t1 - t0, "compile_seconds": net.compile_seconds,
                  "ready_s": t2 - t0, "second_width_s": net2.compile_seconds}}))
"""


def _sweep_child_code(spec, widths: int) -> str:
    """`widths` width variants of `spec`'s architecture in one process: compile time each
    (after the first) and the growth of the resident memory over them."""
    return f"""
import json, os, time
import numpy as np
import graphnn as gn
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def build(k):
    hidden = [h + 8 * k for h in {tuple(spec['hidden'])!r}]
    layers = [gn.Dense(h, activation={spec['act']!r}) for h in hidden]
    model = gn.Sequential(layers + [gn.Dense({spec['out']})], input_dim={spec['input_dim']})
    return model.compile(loss={spec['loss']!r}, optimizer=gn.SGD({LR}), seed=0)
first = build(0)
X = np.zeros((64, {spec['input_dim']}), np.float32)
y = np.zeros(64, np.int64) if {spec['loss']!r} == "cross_entropy" else np.zeros((64, {spec['out']}), np.float32)
first.fit(X, y, epochs=1, batch_size=32)
del first
before, t = rss(), time.perf_counter()
times = []
for k in range(1, {widths} + 1):
    net = build(k)
    net.fit(X, y, epochs=1, batch_size=32)
    times.append(net.compile_seconds)
    del net
print(json.dumps({{"widths": {widths}, "seconds": time.perf_counter() - t,
                  "median_compile_s": sorted(times)[len(times) // 2],
                  "rss_growth_mib": (rss() - before) / 2 ** 20}}))
"""


def _run_compile_child(spec, cache_dir, threads, code: str | None = None) -> dict:
    env = dict(os.environ, **thread_env(threads), GRAPHNN_CACHE_DIR=str(cache_dir))
    env.pop("GRAPHNN_NO_CACHE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code or _compile_child_code(spec)], env=env,
                          cwd=str(REPO), capture_output=True, text=True)
    total = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"compile child failed:\n{proc.stderr}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_s"] = total
    return res


def measure_compile(spec, reps: int, threads: int, widths: int = 20) -> dict:
    """Cold (empty cache dir) then warm (same dir) fresh processes, `reps` pairs; then one
    process compiling `widths` width variants of the same architecture (warm cache)."""
    cold, warm, new = [], [], []
    sweep = None
    # another architecture of the same kernels (one hidden layer fewer) fills a cache first
    other = dict(spec, hidden=tuple(spec["hidden"][:-1]) or (32,))
    for rep in range(reps):
        d = tempfile.mkdtemp(prefix="graphnn-bench-cache-")
        e = tempfile.mkdtemp(prefix="graphnn-bench-cache-")
        try:
            cold.append(_run_compile_child(spec, d, threads))
            warm.append(_run_compile_child(spec, d, threads))
            _run_compile_child(other, e, threads)
            new.append(_run_compile_child(spec, e, threads))
            if rep == 0 and widths:
                sweep = _run_compile_child(spec, d, threads, _sweep_child_code(spec, widths))
        finally:
            shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(e, ignore_errors=True)
    summary = lambda rs: {k: _median([r[k] for r in rs]) for k in rs[0]} | {"runs": rs}
    return {"cold": summary(cold), "warm": summary(warm), "new_architecture": summary(new),
            "sweep": sweep}


# -- reporting -----------------------------------------------------------------------------
def machine_info(threads, torch, gn) -> dict:
    import numba
    import numpy as np
    import scipy
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    blas = []
    try:
        from threadpoolctl import threadpool_info
        for lib in threadpool_info():
            path = lib.get("filepath", "")
            owner = ("numpy" if "numpy" in path else "scipy/numba" if "scipy" in path
                     else "torch" if "torch" in path else Path(path).name)
            blas.append({"owner": owner, "api": lib.get("internal_api"),
                         "version": lib.get("version"), "arch": lib.get("architecture"),
                         "threads": lib.get("num_threads")})
    except ImportError:
        pass
    torch_blas = None
    if torch is not None:
        torch_blas = ", ".join(n for n, ok in (
            ("MKL", torch.backends.mkl.is_available()),
            ("oneDNN", torch.backends.mkldnn.is_available())) if ok) or "neither MKL nor oneDNN"
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "threads": threads,
            "torch_blas": torch_blas,
            "python": platform.python_version(), "graphnn": getattr(gn, "__version__", "?"),
            "numpy": np.__version__, "numba": numba.__version__, "scipy": scipy.__version__,
            "torch": torch.__version__ if torch is not None else None, "blas": blas,
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}


def _loadavg() -> list[str]:
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return []


def _fmt(x, unit=""):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if unit == "s":
        return f"{x:.3g} s"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _ratio(x, samples=None):
    """``1.23×``, with the range of the per-round ratios when there are several."""
    if x is None or math.isnan(x):
        return "n/a"
    if samples and len(samples) > 1:
        return f"{x:.2f}× ({min(samples):.2f}–{max(samples):.2f})"
    return f"{x:.2f}×"


#: relative spread ((slowest - fastest) / median over rounds) above which a figure is noisy
NOISY_SPREAD = 0.25
#: 1-minute load average per logical CPU above which the machine counts as busy
BUSY_LOAD = 0.5


def reliability_warnings(res) -> list[str]:
    """Why the ratios may not be trusted: too few rounds, figures that moved a lot between
    rounds, a machine that was busy with other work."""
    out = []
    rounds = res["config"]["rounds_done"]
    if rounds < 3:
        out.append(f"only {rounds} round{'s' if rounds != 1 else ''} measured: each ratio is "
                   f"{'one sample' if rounds == 1 else 'two samples'}, with no spread to judge "
                   "it by; run without --quick (9 rounds) for figures to quote")
    noisy = []
    for key, r in res["steps"].items():
        for name, v in r["samples_steps_per_s"].items():
            med = _median(v)
            if len(v) > 1 and med > 0 and (max(v) - min(v)) / med > NOISY_SPREAD:
                noisy.append(f"{key}/{name} ±{50 * (max(v) - min(v)) / med:.0f}%")
    for name, v in res["epoch"]["samples_s"].items():
        med = _median(v)
        if len(v) > 1 and med > 0 and (max(v) - min(v)) / med > NOISY_SPREAD:
            noisy.append(f"epoch/{name} ±{50 * (max(v) - min(v)) / med:.0f}%")
    if noisy:
        out.append("noisy figures (spread between rounds over "
                   f"{100 * NOISY_SPREAD:.0f}% of the median): " + ", ".join(noisy))
    m = res["machine"]
    cpus = m.get("logical_cpus") or 1
    for when in ("loadavg_start", "loadavg_end"):
        load = m.get(when) or []
        try:
            one = float(load[0])
        except (IndexError, ValueError):
            continue
        if one > BUSY_LOAD * cpus:
            out.append(f"the machine was busy (1-minute load average {one:.2f} on {cpus} "
                       f"logical CPUs at the {when.split('_')[1]}): other work competes for "
                       "the cores, so the ratios may be off")
            break
    return out


def markdown(res) -> str:
    m = res["machine"]
    names = [("graphnn", "graphnn"), ("torch", "PyTorch eager"), ("numpy", "NumPy")]
    blas = "; ".join(
        f"{b['owner']}: {b['api']}" + (f" {b['version']}" if b["version"] else "")
        + (f" ({b['arch']})" if b["arch"] else "")
        + f", {b['threads']} thread{'s' if b['threads'] != 1 else ''}"
        for b in m["blas"]) or "unknown"
    if m.get("torch_blas"):
        blas += f"; PyTorch built with {m['torch_blas']}"
    out = [
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['threads']} "
        f"thread{'s' if m['threads'] != 1 else ''} per "
        f"library, float32. Python {m['python']}, graphnn {m['graphnn']}, NumPy {m['numpy']}, "
        f"Numba {m['numba']}, SciPy {m['scipy']}, PyTorch {m['torch'] or 'not installed'}. "
        f"BLAS: {blas}. Load average (1/5/15 min) at start {' '.join(m['loadavg_start'])}, "
        f"at end {' '.join(m['loadavg_end'])}.",
        "",
        f"Medians over {res['config']['rounds_done']} interleaved rounds "
        f"({res['config']['epoch_rounds_done']} for the epoch); ratio = graphnn speed ÷ other's "
        "speed (> 1: graphnn faster), median of per-round ratios (their range in brackets). "
        "Random data.",
        "",
        "| benchmark | graphnn | PyTorch eager | NumPy | graphnn ÷ PyTorch | graphnn ÷ NumPy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, r in res["steps"].items():
        cells = [_fmt(r["median_steps_per_s"].get(n)) for n, _ in names]
        rs = r.get("ratio_samples", {})
        out.append(f"| {r['title']} (steps/s) | " + " | ".join(cells) + " | "
                   + _ratio(r["ratio"].get("torch"), rs.get("torch")) + " | "
                   + _ratio(r["ratio"].get("numpy"), rs.get("numpy")) + " |")
    e = res["epoch"]
    es = e.get("ratio_samples", {})
    cells = [_fmt(e["median_s"].get(n), "s") for n, _ in names]
    out.append(f"| {e['title']} (s per epoch) | " + " | ".join(cells) + " | "
               + _ratio(e["ratio"].get("torch"), es.get("torch")) + " | "
               + _ratio(e["ratio"].get("numpy"), es.get("numpy")) + " |")
    out += ["", "| matrix products | step GFLOP | graphnn GFLOP/s | BLAS-only GFLOP/s "
            "(same np.dot calls in @njit) | graphnn ÷ BLAS |", "|---|---:|---:|---:|---:|"]
    for key, g in res["gflops"].items():
        out.append(f"| {NETS[key]['title']} | {g['step_gflop']:.3g} | {g['graphnn']:.1f} | "
                   f"{g['blas']:.1f} | {g['fraction']:.2f} |")
    c = res.get("compile")
    if c:
        out += ["", f"| compile, {NETS[COMPILE_NET]['title'].split(',')[0]}, fresh process "
                "| process total | import graphnn | net.compile_seconds | then another width |",
                "|---|---:|---:|---:|---:|"]
        for k, label in (("cold", "cold (empty GRAPHNN_CACHE_DIR)"),
                         ("new_architecture", "new architecture, kernels cached (a dir "
                                              "filled by a net one layer shallower)"),
                         ("warm", "warm (second process, same dir)")):
            second = c[k].get("second_width_s")
            out.append(f"| {label} | {c[k]['process_s']:.2f} s | {c[k]['import_s']:.2f} s | "
                       f"{c[k]['compile_seconds']:.2f} s | "
                       + (f"{second:.3f} s" if second is not None else "n/a") + " |")
        sw = c.get("sweep")
        if sw:
            out += ["", "| width sweep, one process | widths | compile_seconds (median) | "
                    "wall, compile + 1 epoch each | memory growth |", "|---|---:|---:|---:|---:|",
                    f"| {NETS[COMPILE_NET]['title'].split(',')[0]}, hidden + 8k | {sw['widths']} "
                    f"| {sw['median_compile_s']:.3f} s | {sw['seconds']:.2f} s "
                    f"| {sw['rss_growth_mib']:.1f} MiB |"]
    if res.get("notes"):
        out += [""] + [f"Note: {n}" for n in res["notes"]]
    if res.get("warnings"):
        out += [""] + [f"Warning: {w}" for w in res["warnings"]]
    return "\n".join(out)


# -- main ----------------------------------------------------------------------------------
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter rounds (smoke run)")
    ap.add_argument("--threads", type=int, default=2, help="threads per library (default 2)")
    ap.add_argument("--json", metavar="PATH", help="write the raw numbers here")
    ap.add_argument("--no-compile", action="store_true", help="skip the compile-time part")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    cfg = dict(QUICK if args.quick else FULL)
    os.environ.update(thread_env(args.threads))     # reaches libraries not loaded yet
    t_start = time.perf_counter()
    log = lambda *a: print(*a, flush=True)
    load_start = _loadavg()

    import numpy as np
    try:
        import graphnn as gn
    except ImportError:
        sys.path.insert(0, str(REPO))
        import graphnn as gn
    notes = []
    try:
        import torch
    except ImportError:
        torch = None
        notes.append("PyTorch is not importable here: its column is skipped.")
    if torch is not None:
        torch.set_num_threads(args.threads)

    # setup: compile every graphnn model (disk cache as configured), the BLAS kernel, data
    log(f"[setup] threads={args.threads} {'quick' if args.quick else 'full'} run")
    benches = {}
    for key, spec in NETS.items():
        t = time.perf_counter()
        net = compile_net(spec)
        max_batches = max(8, min(4096, DATA_BYTES // (spec["batch"] * spec["input_dim"] * 4)))
        X, y = make_data(spec, max_batches * spec["batch"])
        gr = GraphnnRunner(spec, net, X, y)
        init = gr.params()
        runners = [gr]
        if torch is not None:
            runners.append(TorchRunner(spec, init, X, y, torch))
        runners.append(NumpyRunner(spec, init, X, y))
        if len(layer_dims(spec)) == 3 and spec["input_dim"] > 100:
            runners.append(BlasRunner(spec))
        benches[key] = dict(spec=spec, runners=runners, max_batches=max_batches)
        log(f"[setup] {key}: compile {net.compile_seconds:.2f} s "
            f"(setup {time.perf_counter() - t:.2f} s), data {X.shape[0]} rows")
    espec = EPOCH_NET
    enet = compile_net(espec)
    EX, Ey = make_data(espec, espec["rows"], seed=1)
    eg = GraphnnRunner(espec, enet, EX, Ey)
    einit = eg.params()
    erunners = [eg] + ([TorchRunner(espec, einit, EX, Ey, torch)] if torch is not None else []) \
        + [NumpyRunner(espec, einit, EX, Ey)]
    notes += set_threads(args.threads, gn, torch)   # SciPy's BLAS is loaded by now

    # same computation? 3 steps on the same batches from the same parameters
    agreement = {}
    for key, b in benches.items():
        trainers = [r for r in b["runners"] if r.name != "blas"]
        for r in trainers:
            r.run(1, 3)
        agreement[key] = _agreement(trainers)
        log(f"[check] {key}: max |param - graphnn's| after 3 steps: "
            + ", ".join(f"{k} {v:.1e}" for k, v in agreement[key].items()))

    # calibrate each contender's measurement length
    for key, b in benches.items():
        b["plan"] = {r.name: _calibrate(r, b["max_batches"], cfg["target_s"])
                     for r in b["runners"]}
    for r in erunners:                                   # first touch of the epoch data
        r.run(1, 4)
    log(f"[setup] done in {time.perf_counter() - t_start:.1f} s")

    compile_res = None
    if not args.no_compile:
        log(f"[compile] {cfg['compile_reps']} cold/warm pair(s) of fresh processes")
        compile_res = measure_compile(NETS[COMPILE_NET], cfg["compile_reps"], args.threads)
        for k in ("cold", "new_architecture", "warm"):
            log(f"[compile] {k}: process {compile_res[k]['process_s']:.2f} s, "
                f"net.compile_seconds {compile_res[k]['compile_seconds']:.2f} s, "
                f"another width {compile_res[k]['second_width_s']:.3f} s")
        if compile_res["sweep"]:
            log(f"[compile] width sweep: {compile_res['sweep']}")

    log(f"[measure] up to {cfg['rounds']} rounds (budget {cfg['budget_s']} s from the start)")
    samples = {key: {r.name: [] for r in b["runners"]} for key, b in benches.items()}
    esamples = {r.name: [] for r in erunners}
    rounds_done, round_s = 0, 0.0
    for rnd in range(cfg["rounds"]):
        elapsed = time.perf_counter() - t_start
        if rnd >= cfg["min_rounds"] and elapsed + round_s > cfg["budget_s"]:
            log(f"[measure] stopping after {rnd} rounds: time budget")
            break
        t_round = time.perf_counter()
        for key, b in benches.items():
            rs = b["runners"]
            for r in rs[rnd % len(rs):] + rs[:rnd % len(rs)]:
                e, nb = b["plan"][r.name]
                rate, dt = _measure(r, e, nb, cfg["settle_s"])
                samples[key][r.name].append(rate)
                b["plan"][r.name] = _lengthen((e, nb), dt, cfg["target_s"], b["max_batches"])
        if rnd < cfg["epoch_rounds"]:
            for r in erunners[rnd % len(erunners):] + erunners[:rnd % len(erunners)]:
                esamples[r.name].append(_measure_epoch(r, cfg["settle_s"]))
        rounds_done += 1
        # the next round's estimate: this one, plus an epoch round if one is still due
        round_s = time.perf_counter() - t_round
        log(f"[round {rnd + 1}/{cfg['rounds']}, {round_s:.1f} s] "
            + "; ".join(f"{k}: " + " ".join(f"{n} {v[-1]:,.0f}" for n, v in s.items())
                        for k, s in samples.items()) + " steps/s")

    res = {"config": dict(cfg, threads=args.threads, quick=args.quick, lr=LR,
                          rounds_done=rounds_done,
                          epoch_rounds_done=len(esamples["graphnn"])),
           "machine": machine_info(args.threads, torch, gn), "notes": notes,
           "agreement_max_abs_param_diff": agreement, "steps": {}, "gflops": {}}
    for key, b in benches.items():
        s = samples[key]
        med = {n: _median(v) for n, v in s.items()}
        ratio_samples = {n: [g / o for g, o in zip(s["graphnn"], s[n])]
                         for n in s if n not in ("graphnn", "blas")}
        ratio = {n: _median(v) for n, v in ratio_samples.items()}
        res["steps"][key] = {"title": b["spec"]["title"], "samples_steps_per_s": s,
                             "median_steps_per_s": med, "ratio": ratio,
                             "ratio_samples": ratio_samples,
                             "plan_epochs_batches": b["plan"]}
        if "blas" in s:
            fl = step_flops(b["spec"])
            res["gflops"][key] = {
                "step_gflop": fl / 1e9, "graphnn": fl * med["graphnn"] / 1e9,
                "blas": fl * med["blas"] / 1e9,
                "fraction": _median([g / o for g, o in zip(s["graphnn"], s["blas"])]),
                **{f"{n}_gflops": fl * med[n] / 1e9 for n in med if n not in ("graphnn", "blas")}}
    emed = {n: _median(v) for n, v in esamples.items()}
    eratios = {n: [o / g for g, o in zip(esamples["graphnn"], v)]
               for n, v in esamples.items() if n != "graphnn"}
    res["epoch"] = {"title": espec["title"], "samples_s": esamples, "median_s": emed,
                    "ratio": {n: _median(v) for n, v in eratios.items()},
                    "ratio_samples": eratios}

    if compile_res is not None:
        res["compile"] = compile_res
    res["machine"]["loadavg_start"] = load_start
    res["machine"]["loadavg_end"] = _loadavg()
    res["total_seconds"] = time.perf_counter() - t_start
    res["warnings"] = reliability_warnings(res)

    log("\n[spread] median [slowest - fastest round] per contender")
    for key, r in res["steps"].items():
        log(f"  {key} steps/s: " + "; ".join(
            f"{n} {_fmt(_median(v))} [{_fmt(min(v))} - {_fmt(max(v))}]"
            for n, v in r["samples_steps_per_s"].items()))
    log("  epoch s: " + "; ".join(f"{n} {_median(v):.3g} [{max(v):.3g} - {min(v):.3g}]"
                                  for n, v in esamples.items()))
    log("")
    log(markdown(res))
    log(f"\n(total {res['total_seconds']:.0f} s)")
    for w in res["warnings"]:
        print(f"graphnn bench: warning: {w}", file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
        log(f"raw numbers: {args.json}")
    return res


if __name__ == "__main__":
    main()
