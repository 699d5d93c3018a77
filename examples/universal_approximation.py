"""One hidden layer of tanh units can fit any smooth curve: watch it happen on a sine.

For each hidden size H it trains the network 1-H-1, ``y = W2 tanh(W1 x + b1) + b2``,
on noisy samples of sin(x) over two periods, [-2 pi, 2 pi], prints the fit error (root
mean square distance to the true sine on a fine grid) and draws every fit against the
target in one PNG (runs/universal_approximation.png; skipped without matplotlib).  Each
tanh unit contributes one S-shaped step; two periods of a sine have four bends, so one
or two units cannot follow it, and the error falls as H grows.

    python examples/universal_approximation.py
    python examples/universal_approximation.py --sizes 1 2 4 16 --epochs 300 --out fit.png

The environment variable GRAPHNN_EXAMPLES_QUICK=1 makes a quick run (few epochs, two sizes).
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

import graphnn as gn
from graphnn.datasets import make_sine

QUICK = os.environ.get("GRAPHNN_EXAMPLES_QUICK", "") not in ("", "0")


def fit_one(hidden: int, X, y, epochs: int, seed: int):
    """Train 1-hidden-1 with tanh and return the compiled network."""
    model = gn.Sequential([gn.Dense(hidden, activation="tanh"), gn.Dense(1)], input_dim=1)
    net = model.compile(loss="mse", optimizer=gn.Adam(lr=0.02), seed=seed, dtype="float64")
    net.fit(X, y, epochs=epochs, batch_size=32)
    return net


def main(argv=None) -> dict[int, float]:
    """Fit every hidden size; returns {hidden size: RMS error against sin(x)}."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+",
                    default=[2, 8] if QUICK else [1, 2, 4, 8, 16, 32],
                    help="hidden sizes to try")
    ap.add_argument("--epochs", type=int, default=20 if QUICK else 2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join("runs", "universal_approximation.png"),
                    help="where to save the plot")
    args = ap.parse_args(argv)

    X, y = make_sine(n=512, noise=0.05, seed=args.seed, x_range=(-2 * math.pi, 2 * math.pi))
    grid = np.linspace(-2 * math.pi, 2 * math.pi, 800).reshape(-1, 1)
    target = np.sin(grid)
    errors, fits = {}, {}
    print(f"fitting sin(x) on [-2 pi, 2 pi] from {len(X)} noisy samples, {args.epochs} epochs each")
    print(f"{'hidden':>6}  {'params':>6}  {'RMS error':>9}  {'compile':>8}  {'train':>8}")
    for h in args.sizes:
        t0 = time.perf_counter()
        net = fit_one(h, X, y, args.epochs, args.seed)
        seconds = time.perf_counter() - t0 - net.compile_seconds
        pred = net.predict(grid)
        errors[h] = float(np.sqrt(np.mean((pred - target) ** 2)))
        fits[f"H = {h}"] = pred
        print(f"{h:>6}  {net.plan.n_params:>6}  {errors[h]:>9.4f}  "
              f"{net.compile_seconds:>6.2f} s  {seconds:>6.2f} s")

    from graphnn.plots import PlotsUnavailable, plot_fits
    try:
        path = plot_fits(grid, target, fits, args.out, points=(X, y),
                         title="one hidden tanh layer fitting sin(x)")
        print(f"plot saved to {path}")
    except PlotsUnavailable as e:
        print(e.message)
    return errors


if __name__ == "__main__":
    main()
