"""Data-parallel training on MPI against one process, on one machine.

    python benchmarks/bench_distributed.py [--rounds 3] [--batches 32 256 1024]
    python benchmarks/bench_distributed.py --overhead [--rounds 5]   # the step loop's cost
    python benchmarks/bench_distributed.py --model [--row-us 5.7]    # the README's model

One epoch of 60,000 rows through the 784-128-10 MLP (ReLU, cross-entropy, SGD; synthetic
float32 data: the time does not depend on the values) at each global batch size, as

  * 1 process x 2 BLAS threads   (``net.fit``: the whole epoch in one compiled call)
  * 2 ranks x 1 BLAS thread      (``net.fit(distributed=True)`` under ``mpiexec -n 2``)
  * 1 rank x 1 BLAS thread       (``mpiexec -n 1``: the distributed step loop alone, to
    show its Python cost against ``net.fit`` with 1 thread)

Each launch compiles (or loads from the cache), trains one warm-up epoch, then times
one epoch; each round launches the four configurations in turn (rounds interleaved), and
the median per configuration is reported with the ratio 1 process x 2 threads / 2 ranks
(above 1: MPI is faster).

Then the allreduce itself, for this model's gradient (101,770 parameters) and a
10M-parameter one, between 2 ranks: ``comm.Allreduce`` from Python on the float32
buffer (what ``graphnn.distributed`` does each step) and ``numba_mpi.allreduce`` inside
an ``@njit`` loop on a float64 copy (numba-mpi reduces no float32), median over calls.
These times feed the README's scaling model.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROWS, WIDTHS = 60_000, (784, 128, 10)
ROOT = Path(__file__).resolve().parent.parent


def build(threads: int):
    import graphnn as gn
    model = gn.Sequential([gn.Dense(WIDTHS[1], activation="relu"), gn.Dense(WIDTHS[2])],
                          input_dim=WIDTHS[0])
    net = model.compile(loss="cross_entropy", optimizer=gn.SGD(lr=0.01), seed=0)
    rng = np.random.default_rng(0)
    X = rng.random((ROWS, WIDTHS[0]), dtype=np.float32)
    y = rng.integers(0, WIDTHS[2], ROWS)
    gn.set_num_threads(threads)
    return net, X, y


def worker_epochs(mode: str, batches: list[int], threads: int) -> dict:
    """Seconds for one epoch at each batch size (after a warm-up epoch each)."""
    net, X, y = build(threads)
    distributed = mode == "mpi"
    out = {}
    for b in batches:
        net.fit(X, y, epochs=1, batch_size=b, distributed=distributed)
        t = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=b, distributed=distributed)
        out[b] = time.perf_counter() - t
    return out


def worker_allreduce(calls: int = 200) -> dict:
    """Median seconds of one in-place sum of P values between the ranks."""
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    out = {}
    sizes = {"mnist": 784 * 128 + 128 + 128 * 10 + 10 + 2, "10M": 10_000_000}
    for name, p in sizes.items():
        n = calls if p < 1e6 else max(10, calls // 20)
        buf = np.ones(p, np.float32)
        times = []
        for _ in range(n):
            comm.Barrier()
            t = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - t)
        out[f"mpi4py_{name}"] = statistics.median(times)
        try:
            out[f"numba_mpi_{name}"] = _numba_mpi(comm, p, n)
        except ImportError:
            out[f"numba_mpi_{name}"] = None
    return out


def _numba_mpi(comm, p: int, n: int) -> float:
    """Per call, inside one njit loop: float32 grads -> float64, allreduce, -> float32."""
    import numba
    import numba_mpi

    @numba.njit
    def loop(grads, send, recv, n):
        for _ in range(n):
            for i in range(grads.size):
                send[i] = grads[i]
            numba_mpi.allreduce(send, recv, numba_mpi.Operator.SUM)
            for i in range(grads.size):
                grads[i] = recv[i]

    grads = np.ones(p, np.float32)
    send, recv = np.zeros(p), np.zeros(p)
    loop(grads, send, recv, 1)                      # compile
    comm.Barrier()
    t = time.perf_counter()
    loop(grads, send, recv, n)
    comm.Barrier()
    return (time.perf_counter() - t) / n


# -- the scaling model (README "Scaling out") ------------------------------------------------
LINKS = {"1 Gb/s": (125e6, 25e-6), "10 Gb/s": (1.25e9, 10e-6), "100 Gb/s": (12.5e9, 2e-6)}
MACHINES = (1, 2, 4, 8, 16, 32, 64)


def allreduce_seconds(params: int, machines: int, bandwidth: float, latency: float) -> float:
    """Reduce-scatter + allgather (MPICH's large-message allreduce): each machine sends and
    receives 2 (M-1)/M of the float32 buffer, in 2 log2 M latency-bound rounds."""
    if machines == 1:
        return 0.0
    return (2 * math.log2(machines) * latency
            + 2 * (machines - 1) / machines * 4 * params / bandwidth)


def steps_per_second(params, t_row, batch, machines, link, overhead):
    bw, lat = LINKS[link]
    compute = batch / machines * t_row
    return 1.0 / (compute + allreduce_seconds(params, machines, bw, lat) + overhead)


def table(name, params, t_row, batch, overhead):
    lines = [f"{name}: {params:,} parameters, global batch {batch}; "
             "steps/s (speed-up over 1 machine)",
             "| machines | " + " | ".join(LINKS) + " |", "|---|" + "---|" * len(LINKS)]
    one = steps_per_second(params, t_row, batch, 1, "1 Gb/s", overhead)
    for m in MACHINES:
        cells = []
        for link in LINKS:
            s = steps_per_second(params, t_row, batch, m, link, overhead)
            cells.append(f"{s:,.0f} ({s / one:.1f}x)" if s >= 10 else f"{s:.1f} ({s / one:.1f}x)")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def launch(mode: str, batches: list[int], threads: int, ranks: int = 1) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "mpi4py", __file__, "--worker", mode, "--threads", str(threads)]
    cmd += ["--batches", *map(str, batches)] if batches else []
    if mode != "single":
        mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or "mpiexec"
        cmd = [mpiexec, "-n", str(ranks)] + cmd
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 256, 1024])
    ap.add_argument("--worker", choices=["single", "mpi", "allreduce"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--overhead", action="store_true",
                    help="one process: fit against fit(distributed=True) on 1 rank, 1 thread")
    ap.add_argument("--model", action="store_true",
                    help="print the scaling model's tables (no measurement)")
    ap.add_argument("--row-us", type=float, default=5.7,
                    help="compute per row of the 784-128-10 MLP on one machine, microseconds")
    ap.add_argument("--overhead-us", type=float, default=35.0, help="per-step overhead, µs")
    args = ap.parse_args()
    if args.overhead:
        net, X, y = build(1)
        for b in args.batches:
            times = {"fit": [], "distributed": []}
            for _ in range(args.rounds + 1):              # the first round warms up
                for kind in times:
                    t = time.perf_counter()
                    net.fit(X, y, epochs=1, batch_size=b, distributed=kind == "distributed")
                    times[kind].append(time.perf_counter() - t)
            steps = math.ceil(ROWS / b)
            f, d = (min(v[1:]) for v in times.values())
            print(f"batch {b}: fit {f:.3f} s, distributed (1 rank) {d:.3f} s (fastest of "
                  f"{args.rounds}): {(d - f) / steps * 1e6:.0f} µs a step more")
        return
    if args.model:
        p_mnist = 784 * 128 + 128 + 128 * 10 + 10
        for name, p in (("784-128-10 MLP", p_mnist), ("10M-parameter MLP", 10_000_000)):
            t_row = args.row_us * 1e-6 * p / p_mnist         # compute grows with parameters
            print(table(name, p, t_row, 1024, args.overhead_us * 1e-6) + "\n")
        return
    if args.worker:
        if args.worker == "allreduce":
            result = worker_allreduce()
        else:
            result = worker_epochs(args.worker, args.batches, args.threads)
        from mpi4py import MPI
        if MPI.COMM_WORLD.Get_rank() == 0:
            print(json.dumps(result), flush=True)
        return
    runs = {"single x2": [], "2 ranks x1": [], "single x1": [], "1 rank x1": []}
    for r in range(args.rounds):
        runs["single x2"].append(launch("single", args.batches, 2))
        runs["2 ranks x1"].append(launch("mpi", args.batches, 1, ranks=2))
        runs["single x1"].append(launch("single", args.batches, 1))
        runs["1 rank x1"].append(launch("mpi", args.batches, 1, ranks=1))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    med = {k: {b: statistics.median(run[str(b)] for run in v) for b in args.batches}
           for k, v in runs.items()}
    print(f"one epoch, {ROWS:,} rows, 784-128-10, median of {args.rounds} interleaved rounds (s)")
    print("| global batch | 1 process x 2 threads | 2 ranks x 1 thread | ratio (1p / 2r) "
          "| 1 process x 1 thread | 1 rank x 1 thread (step loop) |")
    print("|---|---|---|---|---|---|")
    for b in args.batches:
        s2, m2, s1, m1 = (med[k][b] for k in runs)
        print(f"| {b} | {s2:.3f} | {m2:.3f} | {s2 / m2:.2f} | {s1:.3f} | {m1:.3f} |")
    ar = launch("allreduce", [], 1, ranks=2)
    print("\nallreduce between 2 ranks, median per call (ms):")
    for k, v in ar.items():
        print(f"  {k}: {'n/a (pip install numba-mpi)' if v is None else f'{v * 1e3:.3f}'}")


if __name__ == "__main__":
    main()
