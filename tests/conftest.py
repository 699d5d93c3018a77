import numpy as np
import pytest

import graphnn as gn


@pytest.fixture(scope="session")
def digits():
    """scikit-learn digits, 75/25 stratified split (random_state=0), inputs / 16."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, stratify=y, random_state=0)


@pytest.fixture(scope="session")
def small_classifier():
    """A compiled 4-6-3 classifier shared by the validation tests (compiling costs seconds)."""
    model = gn.Sequential([gn.Dense(6, activation="tanh"), gn.Dense(3)], input_dim=4)
    return model.compile(loss="cross_entropy", optimizer=gn.SGD(lr=0.1), seed=0)


@pytest.fixture(scope="session")
def small_regressor():
    model = gn.Sequential([gn.Dense(5, activation="relu"), gn.Dense(2)], input_dim=3)
    return model.compile(loss="mse", optimizer=gn.SGD(lr=0.05), seed=0)
