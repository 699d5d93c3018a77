"""A scikit-learn Pipeline (StandardScaler + graphnn classifier) tuned with GridSearchCV.

Searches hidden widths and learning rates on the handwritten digits with 3-fold
cross-validation, then prints the best parameters, their cross-validated accuracy and
the refitted pipeline's accuracy on a held-out test split.  Each width is one compiled
graph (cached on disk); the learning rate is a run-time argument, so lr variants reuse it.
"""
import argparse
import os
import time

from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from graphnn.sklearn import GraphNNClassifier


def main(epochs: int = 20, n_jobs: int = 1) -> float:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    pipe = Pipeline([("scale", StandardScaler()),
                     ("clf", GraphNNClassifier(optimizer="adam", epochs=epochs, batch_size=32,
                                               random_state=0))])
    grid = {"clf__hidden_layer_sizes": [(32,), (64,)], "clf__lr": [1e-3, 1e-2]}
    search = GridSearchCV(pipe, grid, cv=3, n_jobs=n_jobs)
    t0 = time.perf_counter()
    search.fit(X_train, y_train)
    seconds = time.perf_counter() - t0
    accuracy = search.score(X_test, y_test)
    print(f"searched {len(search.cv_results_['params'])} settings x 3 folds, {epochs} epochs "
          f"each, in {seconds:.1f} s")
    print(f"best parameters: {search.best_params_}")
    print(f"cross-validated accuracy {search.best_score_:.4f}  test accuracy {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    quick = os.environ.get("GRAPHNN_EXAMPLES_QUICK") == "1"
    parser.add_argument("--epochs", type=int, default=3 if quick else 20)
    parser.add_argument("--jobs", type=int, default=1, help="GridSearchCV n_jobs")
    args = parser.parse_args()
    main(args.epochs, args.jobs)
