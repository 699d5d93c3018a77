"""A shared kernel library with per-architecture glue: what it would cost and save (a probe).

    python benchmarks/library_probe.py [--dir DIR] [--keep]

Issue 10's goal 2 asks a new architecture to compile in at most 1.0 s once the machine's
kernels are cached.  graphnn compiles one module per architecture whose kernels hold every
loop, and ``train_epoch`` links them all in, so LLVM optimises them again: 3-5 s per new
architecture.  This probe measures the other design: shape-free kernels compiled once per
machine (``@cfunc(cache=True)`` taking pointers and sizes), and per architecture only a short
``train_epoch`` that calls them as first-class function values.  Numba calls those through
their address, so nothing is linked in or optimised again.

The probe covers only what an MLP with ReLU, softmax cross-entropy and SGD needs, in float32.
Each step runs in a fresh process (``NUMBA_CACHE_DIR`` in a temporary folder):

1. 64-128-10 in an empty cache: the library compiles, then the glue for 2 Dense layers;
2. 784-256-128-10 (a new architecture, 3 Dense layers) with the library cached;
3. 784-300-10 (2 Dense layers again, other widths): nothing compiles;
4. 784-256-128-10 again: everything comes from the cache.

For each it prints import, library and glue seconds (and the glue's LLVM time), and
microseconds per training step
(medians of 7 epochs of 200 steps; batch 32 for the first, 128 for the others).  The same
steps through graphnn's compiled ``train_epoch`` are printed for comparison (graphnn compiles
in the same process after the probe, so Numba's first-compile costs, about 0.5 s, are already
paid: its compile figures are, if anything, too low).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

LIBRARY = '''
"""Shape-free float32 kernels for an MLP (ReLU, softmax cross-entropy, SGD), compiled once."""
import numpy as np
from numba import carray, cfunc, types

P = types.CPointer(types.float32)
I = types.int64


@cfunc(types.void(P, P, P, I, I, I), cache=True)
def mm_nn(a, b, c, m, k, n):           # c (m x n) = a (m x k) @ b (k x n)
    np.dot(carray(a, (m, k)), carray(b, (k, n)), carray(c, (m, n)))


@cfunc(types.void(P, P, P, I, I, I), cache=True)
def mm_tn(a, b, c, m, k, n):           # c (k x n) = a (m x k)^T @ b (m x n)
    np.dot(carray(a, (m, k)).T, carray(b, (m, n)), carray(c, (k, n)))


@cfunc(types.void(P, P, P, I, I, I), cache=True)
def mm_nt(a, b, c, m, k, n):           # c (m x n) = a (m x k) @ b (n x k)^T
    np.dot(carray(a, (m, k)), carray(b, (n, k)).T, carray(c, (m, n)))


@cfunc(types.void(P, P, I, I, types.boolean), cache=True)
def bias_act(h, bias, n, k, relu):     # h = act(h + bias), in place
    H = carray(h, (n, k))
    B = carray(bias, (k,))
    for i in range(n):
        for j in range(k):
            v = H[i, j] + B[j]
            H[i, j] = v if (v > 0 or not relu) else np.float32(0)


@cfunc(types.void(P, P, P, I, I, types.boolean), cache=True)
def act_grad_colsum(d, h, colsum, n, k, relu):   # d *= act'(h); colsum = column sums of d
    D = carray(d, (n, k))
    H = carray(h, (n, k))
    C = carray(colsum, (k,))
    for j in range(k):
        C[j] = 0
    for i in range(n):
        for j in range(k):
            g = D[i, j] if (H[i, j] > 0 or not relu) else np.float32(0)
            D[i, j] = g
            C[j] += g


@cfunc(types.float64(P, types.CPointer(types.int64), P, I, I), cache=True)
def softmax_ce(z, y, g, n, k):         # mean loss; g = its gradient w.r.t. z
    Z = carray(z, (n, k))
    Y = carray(y, (n,))
    G = carray(g, (n, k))
    total = 0.0
    for i in range(n):
        m = Z[i, 0]
        for j in range(k):
            m = max(m, Z[i, j])
        s = np.float32(0)
        for j in range(k):
            e = np.exp(Z[i, j] - m)
            G[i, j] = e
            s += e
        for j in range(k):
            G[i, j] = G[i, j] / s / n
        G[i, Y[i]] -= np.float32(1) / n
        total += np.log(s) + m - Z[i, Y[i]]
    return total / n


@cfunc(types.void(P, P, I, types.float32), cache=True)
def sgd(p, g, size, lr):
    Pv = carray(p, (size,))
    Gv = carray(g, (size,))
    for i in range(size):
        Pv[i] -= lr * Gv[i]


KERNELS = (mm_nn, mm_tn, mm_nt, bias_act, act_grad_colsum, softmax_ce, sgd)
'''


def glue_source(layers: int) -> str:
    """train_epoch for `layers` Dense layers (ReLU, linear last): calls into the library only.
    layout holds, per layer: weight and bias offset in params, fan-in, fan-out, and the
    offsets of its output and output-gradient blocks in the arena."""
    a = ["from numba import njit", "", "",
         "@njit(cache=True)",
         "def train_epoch(mm_nn, mm_tn, mm_nt, bias_act, act_grad_colsum, softmax_ce, sgd,",
         "                X, Y, params, grads, arena, layout, batches, size, lr):",
         "    total = 0.0",
         "    for t in range(batches):",
         "        x = X[t * size:(t + 1) * size]",
         "        n = x.shape[0]"]
    for l in range(layers):
        a.append("        " + "; ".join(f"{v}{l} = layout[{6 * l + j}]"
                                         for j, v in enumerate("wbiohd")))
    for l in range(layers):
        src = "x.ctypes" if l == 0 else f"arena[h{l - 1}:].ctypes"
        a.append(f"        mm_nn({src}, params[w{l}:].ctypes, arena[h{l}:].ctypes, n, i{l}, o{l})")
        a.append(f"        bias_act(arena[h{l}:].ctypes, params[b{l}:].ctypes, n, o{l}, "
                 f"{l < layers - 1})")
    last = layers - 1
    a.append(f"        total += softmax_ce(arena[h{last}:].ctypes, Y[t * size:].ctypes, "
             f"arena[d{last}:].ctypes, n, o{last})")
    for l in range(last, -1, -1):
        a.append(f"        act_grad_colsum(arena[d{l}:].ctypes, arena[h{l}:].ctypes, "
                 f"grads[b{l}:].ctypes, n, o{l}, {l < last})")
        src = "x.ctypes" if l == 0 else f"arena[h{l - 1}:].ctypes"
        a.append(f"        mm_tn({src}, arena[d{l}:].ctypes, grads[w{l}:].ctypes, n, i{l}, o{l})")
        if l > 0:
            a.append(f"        mm_nt(arena[d{l}:].ctypes, params[w{l}:].ctypes, "
                     f"arena[d{l - 1}:].ctypes, n, o{l}, i{l})")
    a.append("        sgd(params.ctypes, grads.ctypes, params.size, lr)")
    a.append("    return total / batches")
    return "\n".join(a) + "\n"


STEPS = [("64-128-10", 32, "empty cache: library + glue for 2 layers"),
         ("784-256-128-10", 128, "new architecture (3 layers), library cached"),
         ("784-300-10", 128, "2 layers again, other widths"),
         ("784-256-128-10", 128, "the same again: all from the cache")]
BATCHES, EPOCHS = 200, 7


def child(work: str, dims: list[int], size: int, with_graphnn: bool) -> dict:
    from compare import LR, compile_net     # graphnn's side, as benchmarks/compare.py builds it
    from tiles import median_us
    t0 = time.perf_counter()
    import importlib
    import numpy as np
    from numba.core import event
    sys.path.insert(0, work)
    out = {"import_s": time.perf_counter() - t0}
    t = time.perf_counter()
    lib = importlib.import_module("gnlib")
    out["library_s"] = time.perf_counter() - t
    llvm = event.TimingListener()            # the glue's LLVM time only
    event.register("numba:llvm_lock", llvm)
    glue = importlib.import_module(f"glue{len(dims) - 1}")
    layout, p, h = [], 0, 0
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        layout += [p, p + fan_in * fan_out, fan_in, fan_out, h, h + size * fan_out]
        p += fan_in * fan_out + fan_out
        h += 2 * size * fan_out
    rng = np.random.default_rng(0)
    params = (rng.standard_normal(p) * 0.05).astype(np.float32)
    grads, arena = np.zeros(p, np.float32), np.zeros(h, np.float32)
    layout = np.array(layout, np.int64)
    X = rng.random((BATCHES * size, dims[0]), dtype=np.float32)
    Y = rng.integers(0, dims[-1], BATCHES * size).astype(np.int64)
    args = (*lib.KERNELS, X, Y, params, grads, arena, layout)
    t = time.perf_counter()
    glue.train_epoch(*args, 1, size, np.float32(LR))
    out["glue_s"] = time.perf_counter() - t
    out["llvm_s"] = llvm.duration
    out["step_us"] = median_us(
        lambda: glue.train_epoch(*args, BATCHES, size, np.float32(LR)), BATCHES, EPOCHS)
    if with_graphnn:                  # graphnn's own compiled step on the same net and data
        net = compile_net(dict(input_dim=dims[0], hidden=tuple(dims[1:-1]), out=dims[-1],
                               act="relu", loss="cross_entropy"))
        out["graphnn_compile_s"] = net.compile_seconds
        net.fit(X[:size], Y[:size], epochs=1, batch_size=size, shuffle=False, verbose=0)
        out["graphnn_step_us"] = median_us(
            lambda: net.fit(X, Y, epochs=1, batch_size=size, shuffle=False, verbose=0),
            BATCHES, EPOCHS)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="work folder (default: a new temporary one); its caches "
                    "are emptied at the start")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--no-graphnn", action="store_true", help="skip graphnn's own figures")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        dims = [int(d) for d in args.child[0].split("-")]
        print(json.dumps(child(args.dir, dims, int(args.child[1]), not args.no_graphnn)))
        return
    work = args.dir or tempfile.mkdtemp(prefix="gn-library-probe-")
    os.makedirs(work, exist_ok=True)
    caches = [os.path.join(work, "numba-cache"), os.path.join(work, "graphnn-cache")]
    for folder in caches:                    # step 1 starts from empty caches, every run
        shutil.rmtree(folder, ignore_errors=True)
    with open(os.path.join(work, "gnlib.py"), "w") as f:
        f.write(textwrap.dedent(LIBRARY))
    for layers in {len(dims.split("-")) - 1 for dims, _, _ in STEPS}:
        with open(os.path.join(work, f"glue{layers}.py"), "w") as f:
            f.write(glue_source(layers))
    env = dict(os.environ, NUMBA_CACHE_DIR=caches[0], GRAPHNN_CACHE_DIR=caches[1])
    print("step  net              batch  import  library  glue (LLVM)     step us  "
          "| graphnn compile, step us")
    try:
        for k, (dims, size, what) in enumerate(STEPS, 1):
            cmd = [sys.executable, __file__, "--dir", work, "--child", dims, str(size)]
            cmd += ["--no-graphnn"] if args.no_graphnn else []
            r = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True,
                                          text=True).stdout)
            g = (f"| {r['graphnn_compile_s']:.2f} s, {r['graphnn_step_us']:.1f}"
                 if "graphnn_step_us" in r else "")
            print(f"{k:4d}  {dims:15s}  {size:5d}  {r['import_s']:5.2f}s  {r['library_s']:6.2f}s  "
                  f"{r['glue_s']:5.2f}s ({r['llvm_s']:.2f}s)  {r['step_us']:8.1f}  {g}   {what}")
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
