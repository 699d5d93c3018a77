"""Two interleaving half circles, separated by a small MLP; its decision boundary, plotted.

The network (2-16-16-2, tanh) and training match examples/runs/moons.toml, written here
in Python: make_moons, a train/test split, standardization, Adam with an exponentially
decaying learning rate, early stopping on a validation split.  Prints the test accuracy
and saves runs/moons.png: the class the network gives every point of the plane, with the
data on top (skipped without matplotlib).

    python examples/moons.py
    python examples/moons.py --noise 0.3 --epochs 50 --out moons.png

The environment variable GRAPHNN_EXAMPLES_QUICK=1 makes a quick run (a few epochs).
"""
from __future__ import annotations

import argparse
import os

import graphnn as gn
from graphnn.callbacks import EarlyStopping
from graphnn.datasets import Standardizer, make_moons, train_test_split
from graphnn.schedules import ExponentialDecay

QUICK = os.environ.get("GRAPHNN_EXAMPLES_QUICK", "") not in ("", "0")


def main(argv=None) -> float:
    """Train, plot, and return the test accuracy."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="number of points")
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--epochs", type=int, default=5 if QUICK else 100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join("runs", "moons.png"))
    args = ap.parse_args(argv)

    X, y = make_moons(n=args.n, noise=args.noise, seed=args.seed)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, seed=args.seed, stratify=True)
    scaler = Standardizer().fit(Xtr)
    Xtr_s, Xte_s = scaler.transform(Xtr), scaler.transform(Xte)

    model = gn.Sequential([gn.Dense(16, activation="tanh"), gn.Dense(16, activation="tanh"),
                           gn.Dense(2)], input_dim=2)
    net = model.compile(loss="cross_entropy", seed=args.seed,
                        optimizer=gn.Adam(lr=ExponentialDecay(0.01, gamma=0.98)))
    stop = EarlyStopping(monitor="val_loss", patience=15)
    hist = net.fit(Xtr_s, ytr, epochs=args.epochs, batch_size=32, validation_split=0.2,
                   callbacks=[stop])
    test = net.evaluate(Xte_s, yte)
    best = f", best epoch {stop.best_epoch + 1} restored" if stop.best_epoch is not None else ""
    print(f"{len(Xtr)} training points, {len(Xte)} test points, noise {args.noise}")
    print(f"trained {len(hist.epoch)} epochs{best} (compile {net.compile_seconds:.2f} s)")
    print(f"test loss {test['loss']:.4f}  test accuracy {test['accuracy']:.4f}")

    from graphnn.plots import PlotsUnavailable, plot_decision_boundary
    try:
        path = plot_decision_boundary(lambda grid: net.predict(scaler.transform(grid)), X, y,
                                      args.out, title=f"moons: decision boundary, test "
                                                      f"accuracy {test['accuracy']:.3f}")
        print(f"plot saved to {path}")
    except PlotsUnavailable as e:
        print(e.message)
    return test["accuracy"]


if __name__ == "__main__":
    main()
