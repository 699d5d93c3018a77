"""Callbacks and progress display, driven by hand with a fake model (no compiling):
each callback's decisions are checked epoch by epoch."""
import csv
import math
import sys

import numpy as np
import pytest

from graphnn import callbacks as C
from graphnn import schedules


class FakeNet:
    """The part of CompiledModel that callbacks use: params, set/get, save, stop flag."""

    def __init__(self):
        self.w = np.zeros(3)
        self.stop_training = False
        self.saved = []
        self.set_calls = 0

    def get_params(self):
        return {"dense.weight": self.w.copy()}

    def set_params(self, params):
        self.set_calls += 1
        self.w = params["dense.weight"].copy()

    def save(self, path):
        self.saved.append(path)


def train(callbacks, logs_per_epoch, net=None):
    """What fit does around its epochs; epoch e sets the weights to e so the restored
    weights tell which epoch they came from.  Returns (net, epochs run)."""
    net = net or FakeNet()
    cbs = C.CallbackList(callbacks)
    cbs.set_model(net)
    net.stop_training = False
    cbs.on_train_begin()
    ran = 0
    for epoch, logs in enumerate(logs_per_epoch):
        cbs.on_epoch_begin(epoch)
        net.w[:] = epoch
        ran += 1
        cbs.on_epoch_end(epoch, dict(logs))
        if net.stop_training:
            break
    cbs.on_train_end()
    return net, ran


def val(*values, key="val_loss"):
    return [{"loss": 1.0, key: v} for v in values]


# -- EarlyStopping --------------------------------------------------------------------
def test_early_stopping_patience_and_restore():
    es = C.EarlyStopping(monitor="val_loss", patience=2)
    net, ran = train([es], val(1.0, 0.8, 0.7, 0.75, 0.71, 0.72, 0.1))
    assert ran == 5                          # epochs 3 and 4 do not improve: stop after 4
    assert es.stopped_epoch == 4 and es.best_epoch == 2 and es.best == 0.7
    assert net.stop_training and net.set_calls == 1
    assert np.all(net.w == 2)                # the weights of the best epoch are back


def test_early_stopping_patience_zero_stops_at_first_bad_epoch():
    es = C.EarlyStopping(monitor="loss")
    _, ran = train([es], [{"loss": v} for v in (3.0, 2.0, 2.5, 1.0)])
    assert ran == 3 and es.stopped_epoch == 2 and es.best_epoch == 1


def test_early_stopping_improvement_resets_the_count():
    es = C.EarlyStopping(patience=2)
    _, ran = train([es], val(1.0, 1.1, 0.9, 1.0, 0.8, 0.85, 0.86, 0.1))
    assert ran == 7 and es.stopped_epoch == 6 and es.best_epoch == 4


def test_early_stopping_min_delta():
    # 1.0 -> 0.95 is not an improvement by more than 0.1, so it counts as bad
    es = C.EarlyStopping(patience=1, min_delta=0.1)
    net, ran = train([es], val(1.0, 0.95, 0.5))
    assert ran == 2 and es.best_epoch == 0 and es.best == 1.0
    assert np.all(net.w == 0)
    es = C.EarlyStopping(patience=1, min_delta=0.01)
    _, ran = train([es], val(1.0, 0.95, 0.9))
    assert ran == 3 and es.stopped_epoch is None and es.best_epoch == 2


def test_early_stopping_mode_max_for_accuracy():
    es = C.EarlyStopping(monitor="val_accuracy", patience=1)   # auto -> max
    assert es.mode == "max"
    net, ran = train([es], val(0.5, 0.7, 0.6, 0.9, key="val_accuracy"))
    assert ran == 3 and es.best == 0.7 and es.best_epoch == 1 and np.all(net.w == 1)
    assert C.EarlyStopping(monitor="acc").mode == "max"
    assert C.EarlyStopping(monitor="val_loss").mode == "min"
    assert C.EarlyStopping(monitor="val_accuracy", mode="min").mode == "min"


def test_early_stopping_no_restore_and_runs_to_the_end():
    es = C.EarlyStopping(patience=1, restore_best=False)
    net, ran = train([es], val(1.0, 2.0, 3.0))
    assert ran == 2 and net.set_calls == 0 and np.all(net.w == 1)
    es = C.EarlyStopping(patience=5)
    net, ran = train([es], val(3.0, 2.0, 2.5))            # never stops: still restores best
    assert ran == 3 and es.stopped_epoch is None and np.all(net.w == 1)


def test_early_stopping_nan_never_improves_and_state_resets():
    es = C.EarlyStopping(patience=1)
    _, ran = train([es], val(1.0, float("nan"), 0.5))
    assert ran == 2 and es.best == 1.0
    _, ran = train([es], val(5.0, 4.0, 3.0))              # reused: fresh state
    assert ran == 3 and es.best == 3.0 and es.stopped_epoch is None


def test_missing_monitor_key_is_a_clear_error():
    with pytest.raises(ValueError, match=r"EarlyStopping monitors 'val_loss'.*\['loss'\]"
                                         r".*validation data"):
        train([C.EarlyStopping()], [{"loss": 1.0}])
    with pytest.raises(ValueError, match="ModelCheckpoint monitors 'val_acc'"):
        train([C.ModelCheckpoint("m.npz", monitor="val_acc", save_best_only=True)],
              [{"loss": 1.0}])


# -- ModelCheckpoint ------------------------------------------------------------------
def test_checkpoint_every_epoch_with_formatting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt").mkdir()
    ck = C.ModelCheckpoint("ckpt/m-{epoch:02d}-{val_loss:.2f}.npz")
    net, _ = train([ck], val(0.5, 0.25, 0.75))
    assert net.saved == ["ckpt/m-01-0.50.npz", "ckpt/m-02-0.25.npz", "ckpt/m-03-0.75.npz"]
    assert ck.saved == net.saved


def test_checkpoint_save_best_only():
    ck = C.ModelCheckpoint("best-{epoch}.npz", save_best_only=True)
    net, _ = train([ck], val(1.0, 0.5, 0.6, 0.5, 0.4))
    assert net.saved == ["best-1.npz", "best-2.npz", "best-5.npz"]    # strict improvement
    ck = C.ModelCheckpoint("best.npz", monitor="val_accuracy", save_best_only=True)
    net, _ = train([ck], val(0.5, 0.4, 0.9, 0.9, key="val_accuracy"))
    assert net.saved == ["best.npz", "best.npz"] and ck.best == 0.9


def test_checkpoint_path_errors(tmp_path):
    ck = C.ModelCheckpoint(tmp_path / "m-{val_acc}.npz")       # PathLike is fine
    with pytest.raises(ValueError, match=r"names \{val_acc\}.*available: epoch, loss"):
        train([ck], [{"loss": 1.0}])
    for bad in ["m-{}.npz", "m-{0}.npz"]:
        with pytest.raises(ValueError, match="named fields"):
            C.ModelCheckpoint(bad)
    with pytest.raises(ValueError, match="not a valid format string"):
        C.ModelCheckpoint("m-{epoch.npz")
    with pytest.raises(ValueError, match="path must be"):
        C.ModelCheckpoint("")


# -- TerminateOnNaN, LambdaCallback -----------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -math.inf, np.float32("nan")])
def test_terminate_on_nan(bad):
    t = C.TerminateOnNaN()
    net, ran = train([t], [{"loss": 1.0}, {"loss": 0.5}, {"loss": bad}, {"loss": 0.1}])
    assert ran == 3 and t.stopped_epoch == 2 and net.stop_training
    t2 = C.TerminateOnNaN()
    _, ran = train([t2], [{"loss": 1.0}, {"loss": 0.5}])
    assert ran == 2 and t2.stopped_epoch is None


def test_lambda_callback_order_and_arguments():
    events = []
    cb = C.LambdaCallback(
        on_train_begin=lambda logs: events.append(("train_begin", logs)),
        on_epoch_begin=lambda e, logs: events.append(("epoch_begin", e)),
        on_epoch_end=lambda e, logs: events.append(("epoch_end", e, logs["loss"])),
        on_train_end=lambda logs: events.append(("train_end",)))
    train([cb], [{"loss": 2.0}, {"loss": 1.0}])
    assert events == [("train_begin", None), ("epoch_begin", 0), ("epoch_end", 0, 2.0),
                      ("epoch_begin", 1), ("epoch_end", 1, 1.0), ("train_end",)]
    train([C.LambdaCallback()], [{"loss": 1.0}])         # all hooks optional
    with pytest.raises(ValueError, match="on_epoch_end must be a function or None, got 3"):
        C.LambdaCallback(on_epoch_end=3)


def test_stop_from_a_lambda():
    def stop(epoch, logs):
        if epoch == 1:
            cb.model.stop_training = True
    cb = C.LambdaCallback(on_epoch_end=stop)
    _, ran = train([cb], [{"loss": 1.0}] * 5)
    assert ran == 2


# -- CSVLogger ---------------------------------------------------------------------------
def _read(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_logger_rows_and_flush_each_epoch(tmp_path):
    path = tmp_path / "log.csv"
    log = C.CSVLogger(path)
    seen = []
    peek = C.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(_read(path)))
    train([log, peek], [{"val_loss": 0.5, "loss": 1.0}, {"loss": 0.25, "val_loss": 0.125}])
    assert seen[0] == [["epoch", "loss", "val_loss"], ["1", "1.0", "0.5"]]   # on disk already
    assert _read(path) == [["epoch", "loss", "val_loss"], ["1", "1.0", "0.5"],   # 1-based
                           ["2", "0.25", "0.125"]]


def test_csv_logger_key_appearing_later_and_append(tmp_path):
    path = str(tmp_path / "log.csv")
    train([C.CSVLogger(path)], [{"loss": 1.0}, {"loss": 0.5, "accuracy": 0.75},
                                {"loss": 0.25, "accuracy": 1}])
    assert _read(path) == [["epoch", "accuracy", "loss"], ["1", "", "1.0"],
                           ["2", "0.75", "0.5"], ["3", "1", "0.25"]]
    train([C.CSVLogger(path, append=True)], [{"loss": 0.125, "accuracy": 0.5}])
    assert _read(path)[-1] == ["1", "0.5", "0.125"] and len(_read(path)) == 5
    train([C.CSVLogger(path)], [{"loss": np.float32(0.5)}])          # fresh file
    assert _read(path) == [["epoch", "loss"], ["1", "0.5"]]


# -- CallbackList ----------------------------------------------------------------------------
def test_callback_list_validation():
    assert len(C.CallbackList()) == 0 and len(C.CallbackList(C.TerminateOnNaN())) == 1
    with pytest.raises(ValueError, match=r"callbacks\[1\] must be a graphnn Callback.*print"):
        C.CallbackList([C.TerminateOnNaN(), print])
    with pytest.raises(ValueError, match=r"class EarlyStopping; pass an instance"):
        C.CallbackList([C.EarlyStopping])
    with pytest.raises(ValueError, match="learning-rate schedule goes to the optimizer"):
        C.CallbackList([schedules.ReduceOnPlateau(0.1)])
    with pytest.raises(ValueError, match=r"callbacks\[0\].*'early'"):
        C.CallbackList("early")


@pytest.mark.parametrize("make,match", [
    (lambda: C.EarlyStopping(patience=-1), "patience must be an integer >= 0, got -1"),
    (lambda: C.EarlyStopping(patience=1.5), "got 1.5"),
    (lambda: C.EarlyStopping(min_delta=-0.1), "min_delta .* got -0.1"),
    (lambda: C.EarlyStopping(mode="best"), "mode must be 'auto', 'min' or 'max', got 'best'"),
    (lambda: C.EarlyStopping(monitor=None), "monitor must be .* got None"),
    (lambda: C.EarlyStopping(restore_best="yes"), "restore_best .* got 'yes'"),
    (lambda: C.ModelCheckpoint("m", save_best_only=1), "save_best_only .* got 1"),
    (lambda: C.CSVLogger(None), "CSVLogger path must be .* got None"),
    (lambda: C.make_progress(3, 10, 5), "verbose must be 0, 1 or 2, got 3"),
    (lambda: C.make_progress(2, 0, 5), "epochs must be a positive integer, got 0"),
])
def test_argument_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# -- progress --------------------------------------------------------------------------------
def _drive(p, epochs=2, steps=4):
    with p:
        for e in range(epochs):
            p.epoch_begin(e)
            for s in range(1, steps + 1):
                p.update(s, 10 * s, 1.0 / s)
            p.epoch_end(e, {"loss": 0.123456, "val_loss": 0.5, "val_accuracy": 0.875}, 0.05)


def test_progress_verbose_0_is_silent(capsys):
    _drive(C.make_progress(0, 2, 4))
    assert capsys.readouterr() == ("", "")


def test_progress_verbose_2_one_line_per_epoch(capsys):
    p = C.make_progress(2, 20, 4)
    assert isinstance(p, C.ProgressLine)
    _drive(p)
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "epoch 1/20 - loss 0.1235 - val_loss 0.5 - val_accuracy 0.875 - 0.05 s",
        "epoch 2/20 - loss 0.1235 - val_loss 0.5 - val_accuracy 0.875 - 0.05 s"]
    assert err == ""


def test_progress_verbose_1_tqdm_on_stderr(capsys):
    pytest.importorskip("tqdm")
    p = C.make_progress(1, 3, 4)
    assert isinstance(p, C.ProgressBar)
    _drive(p, epochs=3)
    out, err = capsys.readouterr()
    assert out == ""
    for e in (1, 2, 3):
        assert f"epoch {e}/3" in err
    assert "4/4" in err and "rows/s" in err
    assert "loss 0.1235 - val_loss 0.5 - val_accuracy 0.875 - 0.05 s" in err
    assert p.bar is None                                   # closed


def test_checkpoint_folder_is_checked_before_training(tmp_path):
    """Issue 9: a missing folder fails at on_train_begin, before any epoch has run."""
    for path in (tmp_path / "missing" / "dir" / "{epoch}.gnn",
                 tmp_path / "missing" / "m.gnn", str(tmp_path / "nope") + "/m-{epoch}/x.gnn"):
        ck = C.ModelCheckpoint(path, monitor="loss")
        cbs = C.CallbackList([ck])
        cbs.set_model(FakeNet())
        with pytest.raises(ValueError, match="does not exist"):
            cbs.on_train_begin()
    (tmp_path / "file").write_text("x")
    ck = C.ModelCheckpoint(tmp_path / "file" / "m.gnn", monitor="loss")
    with pytest.raises(ValueError, match="is not a folder"):
        train([ck], [{"loss": 1.0}])
    net, ran = train([C.ModelCheckpoint(tmp_path / "{epoch}.gnn", monitor="loss")],
                     [{"loss": 1.0}])
    assert net.saved == [str(tmp_path / "1.gnn")]
