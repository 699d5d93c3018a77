"""Shape-free register-tile matrix products against BLAS (a probe, not part of the asv suite).

    python benchmarks/tiles.py [--mr 8] [--nr 16] [--quick]

Issue 10 asks small products (batch <= 32, widths <= 128) to beat BLAS, and asks one compiled
kernel to serve every width.  This probe measures the kernel that would do both: C = A @ B and
C = A^T @ B for float32 C-contiguous arrays of any shape, an MR x NR tile of scalar accumulators
with the k loop innermost and literal tile sizes, flat arrays indexed with unsigned integers
(signed indices make Numba wrap negative ones, and the loads become gathers), the edges one
column (and one row) at a time.  LLVM's SLP vectoriser, which Numba leaves off, turns the tile
into vector FMAs.

It runs each product in a compiled loop in two child processes: with SLP switched on for every
compile, and with SLP on only while the tile kernels compile, which is how a library kernel
called from generated code would be built.  The tile kernels are compiled for one explicit
signature, so no caller can compile another specialisation of them with SLP off: a first try
whose kernel took a bool flag got exactly that (Numba typed the call with the literal, compiled
the kernel again inside the caller's compile, and 32x32x32 took 12.7 us instead of 0.7).

Prints compile seconds and microseconds per product (medians of 7 runs, 3 with --quick) for
np.dot and the tile kernels inside a compiled loop, and for the tile kernel called from Python
(no relinking: its own compile's code, plus about 0.3 us of call overhead); every result is
checked against float64 NumPy first.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = [(32, 32, 32), (32, 2, 32), (2, 32, 32), (32, 32, 1), (37, 33, 45), (32, 128, 10),
          (32, 784, 128), (128, 256, 128)]


def tile_source(mr: int, nr: int) -> str:
    """Source of mm_nn(A, B, C) (C = A @ B) and mm_tn(A, B, C) (C = A^T @ B)."""
    out = []

    def emit(depth, line):
        out.append("    " * depth + line)

    def a_at(ta, r):
        return f"a[k * uM + i + np.uint64({r})]" if ta else f"a[(i + np.uint64({r})) * uK + k]"

    def tile(d, rows, ta):
        for r in range(rows):
            emit(d, "; ".join(f"s{r}_{q} = zero" for q in range(nr)))
        emit(d, "for k in range(uK):")
        emit(d + 1, "bk = k * uN + j")
        for r in range(rows):
            emit(d + 1, f"a{r} = {a_at(ta, r)}")
        for q in range(nr):
            emit(d + 1, f"b{q} = b[bk + np.uint64({q})]")
        for r in range(rows):
            for q in range(nr):
                emit(d + 1, f"s{r}_{q} += a{r} * b{q}")
        for r in range(rows):
            emit(d, f"cr = (i + np.uint64({r})) * uN + j")
            for q in range(nr):
                emit(d, f"c[cr + np.uint64({q})] = s{r}_{q}")

    def column_edge(d, rows, ta):
        emit(d, "for j in range(nt, uN):")
        for r in range(rows):
            emit(d + 1, f"s{r} = zero")
        emit(d + 1, "for k in range(uK):")
        emit(d + 2, "bkj = b[k * uN + j]")
        for r in range(rows):
            emit(d + 2, f"s{r} += {a_at(ta, r)} * bkj")
        for r in range(rows):
            emit(d + 1, f"c[(i + np.uint64({r})) * uN + j] = s{r}")

    for ta in (False, True):
        emit(0, f"def {'mm_tn' if ta else 'mm_nn'}(A, B, C):")
        emit(1, "zero = np.float32(0)")
        emit(1, "K, M = A.shape" if ta else "M, K = A.shape")
        emit(1, "N = B.shape[1]")
        emit(1, "a = A.ravel(); b = B.ravel(); c = C.ravel()")
        emit(1, "uM = np.uint64(M); uK = np.uint64(K); uN = np.uint64(N)")
        emit(1, f"mt = uM - uM % np.uint64({mr}); nt = uN - uN % np.uint64({nr})")
        emit(1, f"for i in range(np.uint64(0), mt, np.uint64({mr})):")
        emit(2, f"for j in range(np.uint64(0), nt, np.uint64({nr})):")
        tile(3, mr, ta)
        column_edge(2, mr, ta)
        emit(1, "for i in range(mt, uM):")
        emit(2, f"for j in range(np.uint64(0), nt, np.uint64({nr})):")
        tile(3, 1, ta)
        column_edge(2, 1, ta)
        emit(0, "")
    return "\n".join(out)


def median_us(run, reps: int, rounds: int) -> float:
    """Median over `rounds` calls of `run` (which does `reps` operations) of µs per operation."""
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) / reps * 1e6)
    return sorted(times)[rounds // 2]


def child(mr: int, nr: int, slp_everywhere: bool, quick: bool) -> dict:
    import numba
    import numpy as np

    numba.config.SLP_VECTORIZE = 1 if slp_everywhere else 0
    space = {"np": np}
    exec(tile_source(mr, nr), space)
    sig = numba.types.void(*[numba.types.float32[:, ::1]] * 3)
    old = numba.config.SLP_VECTORIZE
    numba.config.SLP_VECTORIZE = 1
    t = time.perf_counter()
    nn = numba.njit(sig, fastmath={"contract"}, error_model="numpy")(space["mm_nn"])
    tn = numba.njit(sig, fastmath={"contract"}, error_model="numpy")(space["mm_tn"])
    compile_s = time.perf_counter() - t
    numba.config.SLP_VECTORIZE = old

    @numba.njit
    def dot_nn(A, B, C):
        np.dot(A, B, C)

    @numba.njit
    def dot_tn(A, B, C):
        np.dot(A.T, B, C)

    @numba.njit
    def repeat(f, A, B, C, reps):
        for _ in range(reps):
            f(A, B, C)

    rng = np.random.default_rng(0)
    rows, rounds = [], 3 if quick else 7
    for M, K, N in SHAPES[:4] if quick else SHAPES:
        A = rng.standard_normal((M, K)).astype(np.float32)
        At = np.ascontiguousarray(A.T)
        B = rng.standard_normal((K, N)).astype(np.float32)
        ref = A.astype(np.float64) @ B
        row = {"shape": [M, K, N]}
        contenders = (("dot", dot_nn, A), ("tile", nn, A), ("dot_T", dot_tn, At),
                      ("tile_T", tn, At))
        for name, f, a in contenders:
            C = np.zeros((M, N), np.float32)
            repeat(f, a, B, C, 1)
            err = float(np.abs(C - ref).max() / max(np.abs(ref).max(), 1e-30))
            if err > 1e-5:
                raise AssertionError(f"{name} {M}x{K}x{N}: relative error {err:.2e}")
            reps = max(100, int(4e6 / (M * K * N + 1000)))
            row[name] = median_us(lambda: repeat(f, a, B, C, reps), reps, rounds)

        def from_python():               # the tile kernel called from Python: nothing relinked
            for _ in range(reps):
                nn(A, B, C)
        row["tile_py"] = median_us(from_python, reps, rounds)
        rows.append(row)
    return {"compile_s": compile_s, "rows": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mr", type=int, default=8)
    ap.add_argument("--nr", type=int, default=16)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", choices=["everywhere", "tiles-only"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not (1 <= args.mr <= 32 and 1 <= args.nr <= 128):
        ap.error("--mr must be 1..32 and --nr 1..128")
    if args.child:
        print(json.dumps(child(args.mr, args.nr, args.child == "everywhere", args.quick)))
        return
    import llvmlite.binding as ll
    print(f"CPU (LLVM): {ll.get_host_cpu_name()}; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; tile {args.mr}x{args.nr}, float32")
    for mode in ("everywhere", "tiles-only"):
        cmd = [sys.executable, __file__, "--child", mode, "--mr", str(args.mr),
               "--nr", str(args.nr)] + (["--quick"] if args.quick else [])
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        where = "for every compile" if mode == "everywhere" else "for the tile kernels only"
        print(f"\nSLP on {where} (tile compile {res['compile_s']:.1f} s); microseconds per product")
        print(f"{'M x K x N':>16} {'np.dot':>9} {'tile':>9} {'np.dot(A.T)':>12} {'tile A^T':>9}"
              f" {'tile from Python':>17}")
        for r in res["rows"]:
            print(f"{'x'.join(map(str, r['shape'])):>16} {r['dot']:9.3f} {r['tile']:9.3f} "
                  f"{r['dot_T']:12.3f} {r['tile_T']:9.3f} {r['tile_py']:17.3f}")


if __name__ == "__main__":
    main()
