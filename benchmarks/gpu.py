"""GPU benchmark of graphnn's CUDA backend (a script, not part of the asv suite).

    python benchmarks/gpu.py [--quick] [--json PATH] [--no-torch]

On the current CUDA device it measures

* training steps per second of the compiled epoch loop (``train_epoch``: gather, forward,
  loss, backward, update for every batch; nothing copied to the host until the end) for
  784-256-128-10 ReLU at batch 128 and 1024 and 4096-4096-4096-10 ReLU at batch 1024
  (softmax cross-entropy, SGD, float32), and the same through ``net.fit`` (one epoch,
  including its per-epoch work: upload, snapshot, checks);
* kernel launches per step, and host time per launch at the smallest net;
* the tiled matrix product's TFLOP/s for the three Dense shapes (x @ W with its bias+ReLU
  epilogue, x^T @ dz, dz @ W^T) at 4096^3 and 1024^3, against the device's float32 peak
  (multiprocessors x FP32 lanes per multiprocessor x 2 x clock);
* PyTorch (CUDA, float32, TF32 off) side by side when it is installed with CUDA.

Without a usable GPU it prints why and exits with status 2.  ``--simulate`` runs the
code paths on Numba's CUDA simulator at toy sizes (a smoke test; its numbers mean nothing).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time

NETS = [("mnist", (784, 256, 128, 10), 128), ("mnist", (784, 256, 128, 10), 1024),
        ("wide", (4096, 4096, 4096, 10), 1024)]
SIM_NETS = [("toy", (8, 6, 5, 3), 4)]
# FP32 lanes per multiprocessor, by compute capability (CUDA C Programming Guide)
FP32_LANES = {(6, 0): 64, (6, 1): 128, (7, 0): 64, (7, 2): 64, (7, 5): 64, (8, 0): 64,
              (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128, (10, 0): 128, (10, 3): 128,
              (12, 0): 128}


def _fmt(x, digits=3):
    return "-" if x is None else f"{x:.{digits}g}"


def device_info(cuda, simulated):
    if simulated:
        return {"name": "CUDA simulator", "cc": None, "sms": 1, "peak_tflops": None}
    dev = cuda.get_current_device()
    cc = tuple(dev.compute_capability)
    sms = int(dev.MULTIPROCESSOR_COUNT)
    clock_khz = int(dev.CLOCK_RATE)
    lanes = FP32_LANES.get(cc)
    peak = sms * lanes * 2 * clock_khz * 1e3 / 1e12 if lanes else None
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return {"name": name, "cc": cc, "sms": sms, "clock_mhz": clock_khz / 1e3,
            "fp32_lanes_per_sm": lanes, "peak_tflops": peak}


def _epoch_caller(net, X, y, batch, steps):
    """A function running `steps` training steps through the backend's train_epoch, with
    the data already on the device; arguments matched by name to its signature."""
    import numpy as np
    dev = net.backend
    rows = X.shape[0]
    net._ensure_arena(batch)
    values = {
        "params": net.params, "grads": net.grads, "state": net.state, "arena": net.arena,
        "X": dev.to_device(X), "Y": dev.to_device(y),
        "W": dev.to_device(np.zeros(0, net.dtype)),
        "order": dev.to_device(np.random.default_rng(0).permutation(rows)),
        "batch_size": batch, "lr": net.dtype.type(0.01), "seed": 0,
        "xbuf": dev.to_device(np.empty(batch * X.shape[1], net.dtype)),
        "ybuf": dev.to_device(np.empty(batch, np.int64)),
        "wbuf": dev.to_device(np.zeros(0, net.dtype)),
        "losses": np.zeros(steps), "stats": np.zeros(3),
    }
    names = list(inspect.signature(dev.train_epoch).parameters)
    missing = [n for n in names if n not in values and n not in ("first", "last", "step")]
    if missing:
        return None

    def run(first, last, step):
        kw = dict(values, first=first, last=last, step=step)
        return dev.train_epoch(*[kw[n] for n in names])
    return run


def bench_graphnn_train(widths, batch, steps, repeats):
    import numpy as np
    import graphnn as gn
    layers = [gn.Dense(w, activation="relu") for w in widths[1:-1]] + [gn.Dense(widths[-1])]
    model = gn.Sequential(layers, input_dim=widths[0])
    t = time.perf_counter()
    net = model.compile(loss="cross_entropy", optimizer=gn.SGD(lr=0.01), device="cuda")
    compile_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    rows = batch * steps
    X = rng.normal(size=(rows, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], rows)
    out = {"compile_s": compile_s, "launches_per_step": net.backend.launches_per_step}
    run = _epoch_caller(net, X, y, batch, steps)
    if run is not None:
        run(0, min(2, steps), 0)                 # first launches: configure (and compile)
        times = []
        for r in range(repeats):
            t = time.perf_counter()
            run(0, steps, 2 + r * steps)         # ends with a copy to the host: synchronized
            times.append(time.perf_counter() - t)
        best = min(times)
        out.update(loop_steps_per_s=steps / best, loop_ms_per_step=best / steps * 1e3,
                   us_per_launch=best / steps / out["launches_per_step"] * 1e6)
    net.fit(X[:batch], y[:batch], epochs=1, batch_size=batch)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=batch)
        times.append(time.perf_counter() - t)
    out["fit_steps_per_s"] = steps / min(times)
    return out


def bench_graphnn_matmul(cuda, n, repeats):
    """TFLOP/s of the three product kernels of a Dense layer, n x n x n."""
    import numpy as np
    import graphnn as gn
    net = gn.Sequential([gn.Dense(n, activation="relu"), gn.Dense(n)], input_dim=n).compile(
        loss="mse", optimizer=gn.SGD(lr=0.01), device="cuda")
    ns = net.backend.kernels
    rng = np.random.default_rng(0)
    a = cuda.to_device(rng.normal(size=(n, n)).astype(np.float32))
    b = cuda.to_device(rng.normal(size=(n, n)).astype(np.float32))
    bias = cuda.to_device(np.zeros(n, np.float32))
    out = cuda.device_array((n, n), np.float32)
    res = {}
    for label, name, args in (("x @ W (+bias, relu)", "mm_nn_bias_relu", (out, a, b, bias)),
                              ("x^T @ dz", "mm_tn", (out, a, b)),
                              ("dz @ W^T", "mm_nt", (out, a, b))):
        launch = ns["launch_mm"](name, n, n)
        launch(*args)
        cuda.synchronize()
        t = time.perf_counter()
        for _ in range(repeats):
            launch(*args)
        cuda.synchronize()
        dt = (time.perf_counter() - t) / repeats
        res[label] = 2.0 * n ** 3 / dt / 1e12
    if n <= 256:          # small enough to check against NumPy
        want = np.maximum(a.copy_to_host() @ b.copy_to_host(), 0)
        ns["launch_mm"]("mm_nn_bias_relu", n, n)(out, a, b, bias)
        assert np.allclose(out.copy_to_host(), want, rtol=1e-4, atol=1e-4)
    return res


def torch_cuda():
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed"
    if not torch.cuda.is_available():
        return None, f"PyTorch {torch.__version__} has no CUDA device"
    torch.backends.cuda.matmul.allow_tf32 = False       # plain float32, like graphnn
    torch.backends.cudnn.allow_tf32 = False
    return torch, f"PyTorch {torch.__version__}"


def bench_torch_train(torch, widths, batch, steps, repeats):
    import torch.nn.functional as F
    layers = []
    for i in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rows = batch * steps
    X = torch.randn(rows, widths[0], device="cuda")
    y = torch.randint(0, widths[-1], (rows,), device="cuda")

    def epoch():
        perm = torch.randperm(rows, device="cuda")
        total = torch.zeros((), device="cuda")
        for s in range(steps):
            idx = perm[s * batch:(s + 1) * batch]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * idx.numel()
        return float(total)                               # one copy to the host, like graphnn
    epoch()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - t)
    return {"steps_per_s": steps / min(times)}


def bench_torch_matmul(torch, n, repeats):
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    res = {}
    for label, f in (("x @ W (+bias, relu)", lambda: torch.relu(a @ b)),
                     ("x^T @ dz", lambda: a.t() @ b), ("dz @ W^T", lambda: a @ b.t())):
        f()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(repeats):
            f()
        torch.cuda.synchronize()
        res[label] = 2.0 * n ** 3 / ((time.perf_counter() - t) / repeats) / 1e12
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    ap.add_argument("--simulate", action="store_true",
                    help="smoke-test on Numba's CUDA simulator at toy sizes (no real numbers)")
    args = ap.parse_args(argv)
    if args.simulate:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    elif os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        print("benchmarks/gpu.py: NUMBA_ENABLE_CUDASIM=1 is set; the simulator is not a GPU "
              "(unset it, or pass --simulate for a smoke test)", file=sys.stderr)
        return 2
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:
        sys.path.insert(0, root)
    from graphnn.compile import cuda as gc
    from graphnn.compile.cuda import config as cuda_config
    try:
        cuda, simulated = gc.import_cuda()
    except ValueError as e:
        print(f"benchmarks/gpu.py needs an NVIDIA GPU and there is none to use here:\n  {e}",
              file=sys.stderr)
        return 2
    if simulated:
        cuda_config.CONFIG = gc.Config(big=gc.Tile(4, 4, 4, 2, 2), small=gc.Tile(2, 2, 2, 1, 1), block=8)
    info = device_info(cuda, simulated)
    nets = SIM_NETS if simulated else NETS
    repeats = 1 if (args.quick or simulated) else 3
    torch, torch_note = (None, "skipped") if (args.no_torch or simulated) else torch_cuda()
    print(f"device: {info['name']}" + (f", cc {info['cc'][0]}.{info['cc'][1]}, "
                                        f"{info['sms']} SMs, {info['clock_mhz']:.0f} MHz, "
                                        f"float32 peak {_fmt(info['peak_tflops'])} TFLOP/s"
                                        if info["cc"] else ""))
    print(f"torch: {torch_note}")
    results = {"device": {k: (list(v) if isinstance(v, tuple) else v) for k, v in info.items()},
               "train": [], "matmul": []}

    print("\ntraining (softmax cross-entropy, SGD, float32)")
    head = (f"{'net':<24}{'batch':>6}{'launch/step':>12}{'loop steps/s':>14}{'ms/step':>9}"
            f"{'us/launch':>10}{'fit steps/s':>12}{'torch steps/s':>14}")
    print(head)
    for label, widths, batch in nets:
        steps = 3 if simulated else (20 if widths[1] >= 4096 else 200) // (2 if args.quick else 1)
        g = bench_graphnn_train(widths, batch, steps, repeats)
        t = bench_torch_train(torch, widths, batch, steps, repeats) if torch else {}
        name = "-".join(map(str, widths))
        print(f"{name:<24}{batch:>6}{g['launches_per_step']:>12}"
              f"{_fmt(g.get('loop_steps_per_s'), 4):>14}{_fmt(g.get('loop_ms_per_step')):>9}"
              f"{_fmt(g.get('us_per_launch')):>10}{_fmt(g['fit_steps_per_s'], 4):>12}"
              f"{_fmt(t.get('steps_per_s'), 4):>14}")
        results["train"].append({"net": name, "batch": batch, "steps": steps, "graphnn": g,
                                 "torch": t})

    print("\nmatrix products, n x n x n, TFLOP/s" + (
        f" (float32 peak {_fmt(info['peak_tflops'])})" if info["peak_tflops"] else ""))
    sizes = [8] if simulated else [1024, 4096]
    for n in sizes:
        reps = 1 if simulated else (5 if n >= 4096 else 20)
        g = bench_graphnn_matmul(cuda, n, reps)
        t = bench_torch_matmul(torch, n, reps) if torch else {}
        for label, v in g.items():
            frac = (f"{100 * v / info['peak_tflops']:.0f}% of peak" if info["peak_tflops"]
                    else "")
            tv = t.get(label)
            print(f"  n={n:<5} {label:<22} graphnn {_fmt(v):>6}  {frac:<14}"
                  f"torch {_fmt(tv):>6}")
            results["matmul"].append({"n": n, "shape": label, "graphnn_tflops": v,
                                      "torch_tflops": tv})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if simulated:
        print("\n(simulator: code paths only, the numbers mean nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
