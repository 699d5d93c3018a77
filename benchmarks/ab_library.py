"""Two versions of the CPU kernel library, timed in one process (an A/B probe).

    python benchmarks/ab_library.py OTHER_TREE [--net tiny|digits|mnist32|mnist128]
                                               [--rounds 30] [--threads 1]

On a shared machine one process can run 1.6x slower than the next, so timings from
separate processes need many rounds to mean anything.  This probe compiles the same
architecture twice in one process: against this tree's kernel library and against the
library that ``OTHER_TREE`` (a checkout of graphnn, e.g. a ``git worktree`` of an older
commit) generates.  Their epochs then alternate, so both see the same machine, and it
prints each side's best and median time per step and the median of the per-round
ratios with its quartiles.

Only the library differs: the glue, the scheduler and every other module are this
tree's.  The other library's kernels must take the glue's calling convention (the same
kernel names and signatures; the probe stops if a kernel is missing), and its stats
kernels may need a stats array of 3, so its side always asks for a metric.  The tile
intrinsics the other library imports are this tree's too.  The other library's source is
generated in a child process with ``OTHER_TREE`` first on ``sys.path``, and that module
is then executed in this process (and written to the compile cache): it is Python code
from that tree, so point the probe only at a checkout you trust.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# name -> (input width, hidden widths, outputs, activation, loss, batch)
NETS = {"tiny": (2, (32, 32), 1, "tanh", "mse", 32),
        "digits": (64, (128,), 10, "relu", "cross_entropy", 32),
        "mnist32": (784, (128,), 10, "relu", "cross_entropy", 32),
        "mnist128": (784, (256, 128), 10, "relu", "cross_entropy", 128)}
CHILD = """
import sys
import os
root = sys.argv[1]
sys.path.insert(0, root)
import numpy as np
from graphnn.compile import library
assert library.__file__.startswith(root + os.sep), library.__file__
sys.stdout.write(library.source(np.float32))
"""


def other_source(tree: Path) -> str:
    """The float32 library module that the graphnn in ``tree`` generates."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(tree.resolve())],
                          capture_output=True, text=True, timeout=300, cwd=str(tree))
    if done.returncode:
        raise SystemExit(f"could not generate {tree}'s library:\n{done.stderr[-2000:]}")
    return done.stdout


def compile_pair(gn, library, spec, other: str) -> dict:
    """The same architecture compiled against this tree's library and the other one (a
    float32 module's text).  Afterwards, even after an error, ``library.source`` and the
    process's libraries are what they were."""
    d, hidden, out, act, loss, _ = spec
    ours = library.source
    saved = dict(library._libraries)
    nets = {}
    try:
        for side in ("this", "other"):
            def source(dtype, cached=False, _side=side):
                if _side == "this":
                    return ours(dtype, cached)
                assert str(dtype) == "float32", "the other library is float32 only"
                return other.replace("@njit(cache=False", f"@njit(cache={cached}")
            library.source = source
            library._libraries.clear()            # the next model builds its library anew
            model = gn.Sequential([gn.Dense(h, activation=act) for h in hidden]
                                  + [gn.Dense(out)], input_dim=d)
            metrics = (["mse"] if loss == "mse" else None) if side == "other" else None
            # (a first run's compile helper builds this tree's kernels, whichever side: it
            # wastes setup time on the other side's, never changes what either runs)
            nets[side] = model.compile(loss=loss, optimizer=gn.SGD(0.01), seed=0,
                                       metrics=metrics)
    finally:
        library.source = ours
        with library._libraries_lock:
            library._libraries.clear()
            library._libraries.update(saved)
    return nets


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("other", type=Path, help="another graphnn checkout (its library is B)")
    ap.add_argument("--net", choices=sorted(NETS), default="tiny")
    ap.add_argument("--rounds", type=int, default=30, help="at least 2 (default 30)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.rounds < 2:
        ap.error("--rounds must be at least 2 (the quartiles need two ratios)")
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    other = other_source(args.other)
    sys.path.insert(0, str(REPO))
    import numpy as np
    import graphnn as gn
    from graphnn.compile import library
    gn.set_num_threads(args.threads)
    spec = NETS[args.net]
    nets = compile_pair(gn, library, spec, other)
    d, _, out, _, loss, batch = spec
    rng = np.random.default_rng(0)
    rows = max(batch * 64, min(60000, (8 << 20) // (4 * d)) // batch * batch)
    X = rng.random((rows, d), dtype=np.float32)
    y = rng.random((rows, out), dtype=np.float32) if loss == "mse" else \
        rng.integers(0, out, rows)
    for net in nets.values():
        net.fit(X[:batch * 4], y[:batch * 4], epochs=1, batch_size=batch, shuffle=False)
    times = {side: [] for side in nets}
    for r in range(args.rounds):
        for side in (("this", "other") if r % 2 == 0 else ("other", "this")):
            net = nets[side]
            t = time.perf_counter()
            net.fit(X, y, epochs=1, batch_size=batch, shuffle=False)
            times[side].append((time.perf_counter() - t) / (rows // batch) * 1e6)
    print(f"{args.net}, batch {batch}, {args.threads} thread(s), {args.rounds} rounds, "
          f"{rows // batch} steps per epoch")
    for side, ts in times.items():
        print(f"  {side:5s} library: best {min(ts):.2f} us/step, "
              f"median {statistics.median(ts):.2f}")
    ratios = sorted(o / t for o, t in zip(times["other"], times["this"]))
    q = statistics.quantiles(ratios, n=4)
    print(f"  other / this: median {statistics.median(ratios):.3f} "
          f"(quartiles {q[0]:.3f}-{q[2]:.3f}; > 1: this tree's library is faster)")


if __name__ == "__main__":
    main()
