"""fit's features: validation, metrics, schedules in the compiled loop, callbacks,
sample/class weights, progress output."""
import csv

import numpy as np
import pytest

import graphnn as gn
from graphnn import callbacks as cb
from graphnn import schedules


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    X = rng.normal(size=(120, 4)) + y[:, None]
    return X, y


def _clf(seed=0, opt=None, metrics=None):
    return gn.Sequential([gn.Dense(8, activation="tanh"), gn.Dense(3)], input_dim=4).compile(
        loss="cross_entropy", optimizer=opt or gn.SGD(0.1), seed=seed, dtype="float64",
        metrics=metrics)


def test_validation_data_and_split(blobs):
    X, y = blobs
    net = _clf()
    h = net.fit(X[:90], y[:90], epochs=3, validation_data=(X[90:], y[90:]))
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    final = net.evaluate(X[90:], y[90:])
    assert h.history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-12)
    assert h.history["val_accuracy"][-1] == pytest.approx(final["accuracy"])
    net2 = _clf()
    h2 = net2.fit(X, y, epochs=3, validation_split=0.25)      # the last 30 rows
    assert h2.history["val_loss"][-1] == pytest.approx(net2.evaluate(X[90:], y[90:])["loss"])
    with pytest.raises(ValueError, match="validation_split"):
        net2.fit(X, y, validation_split=1.5)


def test_training_metrics_are_the_running_batch_figures(blobs):
    X, y = blobs
    net = _clf()
    before = net.evaluate(X, y)
    h = net.fit(X, y, epochs=1, batch_size=120, shuffle=False)    # one batch: metrics at start
    assert h.history["accuracy"][0] == pytest.approx(before["accuracy"])
    assert h.history["loss"][0] == pytest.approx(before["loss"], rel=1e-12)


def test_regression_metrics():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
    net = gn.Sequential([gn.Dense(2)], input_dim=3).compile(
        loss="mse", optimizer=gn.SGD(1e-3), metrics=["mse", "mae"], dtype="float64")
    r = net.evaluate(X, y)
    pred = net.predict(X)
    assert r["mse"] == pytest.approx(np.mean((pred - y) ** 2)) == pytest.approx(r["loss"])
    assert r["mae"] == pytest.approx(np.mean(np.abs(pred - y)))
    with pytest.raises(ValueError, match="metric 'accuracy' is not available"):
        gn.Sequential([gn.Dense(2)], input_dim=3).compile(loss="mse", metrics=["accuracy"])


@pytest.mark.parametrize("make", [
    lambda: schedules.WarmupCosine(0.2, warmup=3, total=8, min_lr=0.01),     # per step
    lambda: schedules.StepDecay(0.2, step_size=2, gamma=0.5),                # per epoch
])
def test_schedules_drive_the_compiled_loop(blobs, make):
    """Full-batch, unshuffled: each epoch is one step, so the trajectory can be replayed by hand."""
    X, y = blobs
    sched = make()
    net = _clf(opt=gn.SGD(sched))
    manual = _clf(opt=gn.SGD(1.0))
    p = manual.get_params()
    for epoch in range(6):
        _, g = manual.loss_and_grads(X, y)
        lr = sched.value(epoch, epoch + 1)
        p = {k: p[k] - lr * g[k] for k in p}
        manual.set_params(p)
    net.fit(X, y, epochs=6, batch_size=len(X), shuffle=False)
    got = net.get_params()
    for k in p:
        np.testing.assert_allclose(got[k], p[k], rtol=1e-10)


def test_reduce_on_plateau_lowers_lr(blobs):
    X, y = blobs
    sched = schedules.ReduceOnPlateau(0.1, monitor="loss", factor=0.5, patience=0, min_delta=10.0)
    net = _clf(opt=gn.SGD(sched))
    h = net.fit(X, y, epochs=3)
    assert h.history["lr"] == pytest.approx([0.1, 0.05, 0.025])   # epoch 1 sets the best


def test_early_stopping_restores_best_on_overfitting_task():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 10)), rng.integers(0, 2, 40)        # pure noise: memorised
    Xv, yv = rng.normal(size=(200, 10)), rng.integers(0, 2, 200)
    net = gn.Sequential([gn.Dense(64, activation="relu"), gn.Dense(2)], input_dim=10).compile(
        loss="cross_entropy", optimizer=gn.Adam(0.01), seed=0)
    stop = cb.EarlyStopping(monitor="val_loss", patience=3, restore_best=True)
    h = net.fit(X, y, epochs=200, batch_size=8, validation_data=(Xv, yv), callbacks=[stop])
    epochs_run = len(h.history["loss"])
    assert epochs_run < 200                                   # it stopped
    best = int(np.argmin(h.history["val_loss"]))
    assert epochs_run == best + 1 + 3                         # patience epochs after the best
    assert net.evaluate(Xv, yv)["loss"] == pytest.approx(h.history["val_loss"][best], rel=1e-5)
    assert h.history["loss"][-1] < h.history["loss"][best]    # training kept improving


def test_checkpoint_and_csv_logger(tmp_path, blobs):
    X, y = blobs
    net = _clf()
    ckpt = cb.ModelCheckpoint(str(tmp_path / "best.gnn"), monitor="val_accuracy",
                              save_best_only=True)
    log = cb.CSVLogger(str(tmp_path / "log.csv"))
    h = net.fit(X, y, epochs=4, validation_split=0.2, callbacks=[ckpt, log])
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows) == 4 and float(rows[-1]["loss"]) == pytest.approx(h.history["loss"][-1])
    best = gn.load(tmp_path / "best.gnn")
    assert best.evaluate(X[96:], y[96:])["accuracy"] == pytest.approx(max(h.history["val_accuracy"]))


def test_sample_and_class_weights(blobs):
    X, y = blobs
    cw = {0: 3.0, 1: 0.5, 2: 1.0}
    a, b = _clf(), _clf()
    a.fit(X, y, epochs=2, batch_size=16, class_weight=cw)
    b.fit(X, y, epochs=2, batch_size=16, sample_weight=np.array([cw[v] for v in y]))
    pa, pb = a.get_params(), b.get_params()
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    # the epoch loss is the weighted mean of the row losses (tiny lr: parameters ~fixed)
    c = _clf(opt=gn.SGD(1e-12))
    w = np.random.default_rng(1).uniform(0, 2, len(y))
    z = c.predict(X)
    z = z - z.max(1, keepdims=True)
    row = np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]
    h = c.fit(X, y, epochs=1, batch_size=len(y), sample_weight=w)
    assert h.history["loss"][0] == pytest.approx(np.sum(w * row) / np.sum(w), rel=1e-9)
    with pytest.raises(ValueError, match="non-negative"):
        c.fit(X, y, sample_weight=-w)
    with pytest.raises(ValueError, match="labels are 0..2"):
        c.fit(X, y, class_weight={5: 1.0})


def test_progress_output(blobs, capsys):
    X, y = blobs
    net = _clf()
    net.fit(X, y, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "loss" in out
    net.fit(X, y, epochs=2, verbose=1)           # a tqdm bar on stderr (or the fallback)
    err = capsys.readouterr().err
    assert "loss" in err


def test_divergence_names_epoch_and_step():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 2)) * 1e3, rng.normal(size=(64, 1)) * 1e3
    net = gn.Sequential([gn.Dense(8, activation="relu"), gn.Dense(1)], input_dim=2).compile(
        loss="mse", optimizer=gn.SGD(lr=10.0), seed=0)
    with pytest.raises(gn.DivergenceError, match=r"epoch 1, step \d+ of 8"):
        net.fit(X, y, epochs=3, batch_size=8)
