"""Fashion-MNIST, the full set: an MLP 784-128-10 on 60,000 clothing images, tested on 10,000.

The data is read offline from Debian's package (``sudo apt-get install
dataset-fashion-mnist``, which installs it to /usr/share/datasets/fashion-mnist/) by
``graphnn.datasets.load_fashion_mnist``.  Prints the compile time, every epoch's loss and
test accuracy, the time per epoch and the final test accuracy, which should be at least
0.85 (about 0.88 after 10 epochs).

    python examples/fashion_mnist.py
    python examples/fashion_mnist.py --epochs 5 --data /path/to/fashion-mnist
    python examples/fashion_mnist.py --limit 5000 --epochs 2      # a quick look

The same run as a run file: ``graphnn train examples/runs/fashion_mnist.toml``.
The environment variable GRAPHNN_EXAMPLES_QUICK=1 makes a quick run (5,000 rows, 1 epoch).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import graphnn as gn
from graphnn.callbacks import LambdaCallback
from graphnn.datasets import load_fashion_mnist

QUICK = os.environ.get("GRAPHNN_EXAMPLES_QUICK", "") not in ("", "0")
TARGET = 0.85
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")


def main(argv=None) -> float:
    """Train and return the test accuracy; exits with a message when the data is missing."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None,
                    help="folder with the four IDX files (default: Debian's location)")
    ap.add_argument("--epochs", type=int, default=1 if QUICK else 10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--limit", type=int, default=5000 if QUICK else 0,
                    help="train on the first LIMIT rows only (0: all 60,000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    try:
        (Xtr, ytr), (Xte, yte) = load_fashion_mnist(args.data)
    except FileNotFoundError as e:
        hint = "" if "apt-get" in str(e) else (
            "\nInstall it with: sudo apt-get install dataset-fashion-mnist")
        sys.exit(f"Fashion-MNIST is not available: {e}{hint}")
    if args.limit:
        Xtr, ytr = Xtr[:args.limit], ytr[:args.limit]
    print(f"Fashion-MNIST: {len(Xtr):,} training and {len(Xte):,} test images of 28x28 "
          f"(read in {time.perf_counter() - t0:.2f} s)")

    model = gn.Sequential([gn.Dense(128, activation="relu"), gn.Dense(10)], input_dim=784)
    net = model.compile(loss="cross_entropy", optimizer=gn.SGD(lr=args.lr), seed=args.seed)
    print(net.summary())
    print(f"compiled in {net.compile_seconds:.2f} s")
    times = []                  # each epoch's training time (validation excluded)
    clock = {}
    timer = LambdaCallback(on_epoch_begin=lambda e, logs: clock.update(t=time.perf_counter()),
                           on_epoch_end=lambda e, logs: times.append(
                               time.perf_counter() - clock["t"]))
    t0 = time.perf_counter()
    hist = net.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, verbose=2,
                   validation_data=(Xte, yte), callbacks=[timer])
    seconds = time.perf_counter() - t0
    test = net.evaluate(Xte, yte)
    median = statistics.median(times)
    print(f"\n{len(hist.epoch)} epochs in {seconds:.2f} s; time per epoch: median "
          f"{median:.3f} s, mean {statistics.mean(times):.3f} s ({len(Xtr):,} rows, batch "
          f"{args.batch_size}, {len(Xtr) / median:,.0f} rows/s, "
          f"{gn.get_num_threads()} BLAS threads)")
    print(f"test loss {test['loss']:.4f}  test accuracy {test['accuracy']:.4f}")
    if not args.limit and args.epochs >= 5:
        verdict = "reached" if test["accuracy"] >= TARGET else "did NOT reach"
        print(f"{verdict} the target test accuracy of {TARGET}")
    return test["accuracy"]


if __name__ == "__main__":
    main()
