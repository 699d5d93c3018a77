"""An MLP 64-128-10 on scikit-learn's handwritten digits (8x8 images, 1,797 of them).

Prints the compile time, the time per epoch and the test accuracy.  The same run as
`graphnn train` (the built-in run, graphnn/runs/digits.toml): same data, split and seeds.
"""
import time

import numpy as np

import graphnn as gn


def load(seed: int = 0):
    """The built-in run's data and split (graphnn/runs/digits.toml): pixels / 16, 25 % held
    out, stratified, seed 0; so this script and `graphnn train` give the same accuracy."""
    X, y = gn.datasets.load_digits()
    return gn.datasets.train_test_split(X, y, test_size=0.25, seed=seed, stratify=True)


def main(epochs: int = 20, seed: int = 0) -> float:
    Xtr, Xte, ytr, yte = load()
    model = gn.Sequential([gn.Dense(128, activation="relu"), gn.Dense(10)], input_dim=64)
    net = model.compile(loss="cross_entropy", optimizer=gn.SGD(lr=0.1), seed=seed)
    print(net.summary())
    print(f"compiled in {net.compile_seconds:.2f} s")
    t0 = time.perf_counter()
    hist = net.fit(Xtr, ytr, epochs=epochs, batch_size=32)
    seconds = time.perf_counter() - t0
    result = net.evaluate(Xte, yte)
    print(f"{epochs} epochs in {seconds:.3f} s ({1000 * seconds / epochs:.2f} ms per epoch, "
          f"{len(Xtr)} rows, batch 32); final training loss {hist.history['loss'][-1]:.4f}")
    print(f"test loss {result['loss']:.4f}  test accuracy {result['accuracy']:.4f}")
    return result["accuracy"]


if __name__ == "__main__":
    main()
