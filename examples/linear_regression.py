"""y = m x + c, learned by gradient descent: a single Dense(1) is exactly the line."""
import numpy as np

import graphnn as gn


def main(m: float = 3.0, c: float = -2.0, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(256, 1))
    y = m * X + c
    net = gn.Sequential([gn.Dense(1)], input_dim=1).compile(
        loss="mse", optimizer=gn.SGD(lr=0.05), seed=seed, dtype="float64")
    for round_ in range(10):
        net.fit(X, y, epochs=5, batch_size=32)
        p = net.get_params()
        print(f"after {5 * (round_ + 1):3d} epochs: m = {p['dense.weight'][0, 0]:+.6f}  "
              f"c = {p['dense.bias'][0]:+.6f}")
    p = net.get_params()
    return float(p["dense.weight"][0, 0]), float(p["dense.bias"][0])


if __name__ == "__main__":
    learned_m, learned_c = main()
    print(f"learned y = {learned_m:.4f} x {learned_c:+.4f}   (true: y = 3 x - 2)")
