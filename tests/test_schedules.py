"""Learning-rate schedules: each lr sequence against its closed form (written here
independently), against torch.optim.lr_scheduler when torch is installed, and each
per-step source() compiled with numba.njit against value()."""
import math

import numba
import numpy as np
import pytest

from graphnn import schedules as S

EPOCHS = 40
STEPS = 300


# -- closed forms, written independently of graphnn/schedules.py ----------------------
def closed_step(lr, step_size, gamma, e):
    return lr * gamma ** math.floor(e / step_size)


def closed_exp(lr, gamma, e):
    return lr * math.exp(e * math.log(gamma))


def closed_cosine(lr, total, min_lr, k):
    """Update k (1-based) of CosineAnnealingLR(T_max=total, eta_min=min_lr), held at min_lr."""
    t = min(k - 1, total)
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * t / total)) / 2


def closed_warmup_cosine(lr, warmup, total, min_lr, k):
    if k <= warmup:
        return lr / warmup + (lr - lr / warmup) * (k - 1) / (warmup - 1) if warmup > 1 else lr
    frac = min((k - 1 - warmup) / (total - warmup), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * frac))


def sequence_per_epoch(s, epochs=EPOCHS, steps_per_epoch=7):
    return [s.value(e, e * steps_per_epoch + 1) for e in range(epochs)]


def sequence_per_step(s, steps=STEPS):
    return [s.value(0, k) for k in range(1, steps + 1)]


@pytest.mark.parametrize("lr,step_size,gamma", [(0.1, 3, 0.5), (1.0, 1, 0.9), (0.05, 7, 1.0)])
def test_step_decay_closed_form(lr, step_size, gamma):
    s = S.StepDecay(lr, step_size, gamma)
    assert not s.per_step and s.initial == lr
    np.testing.assert_allclose(sequence_per_epoch(s),
                               [closed_step(lr, step_size, gamma, e) for e in range(EPOCHS)],
                               rtol=1e-12)
    assert s.value(2 * step_size, 1) == pytest.approx(lr * gamma * gamma)


@pytest.mark.parametrize("lr,gamma", [(0.1, 0.9), (0.3, 0.5), (1e-3, 1.0)])
def test_exponential_decay_closed_form(lr, gamma):
    s = S.ExponentialDecay(lr, gamma)
    assert not s.per_step
    np.testing.assert_allclose(sequence_per_epoch(s),
                               [closed_exp(lr, gamma, e) for e in range(EPOCHS)], rtol=1e-12)


def test_constant_and_per_epoch_ignore_step():
    c = S.Constant(0.25)
    assert c.initial == 0.25 and not c.per_step
    assert {c.value(e, k) for e in range(5) for k in range(1, 50)} == {0.25}
    s = S.StepDecay(0.1, 2, 0.5)
    assert s.value(3, 1) == s.value(3, 10_000)


@pytest.mark.parametrize("lr,total,min_lr", [(0.1, 50, 0.0), (0.5, 1, 0.0), (1.0, 200, 0.01)])
def test_cosine_decay_closed_form(lr, total, min_lr):
    s = S.CosineDecay(lr, total, min_lr=min_lr)
    assert s.per_step and s.initial == lr
    got = sequence_per_step(s)
    np.testing.assert_allclose(got, [closed_cosine(lr, total, min_lr, k)
                                     for k in range(1, STEPS + 1)], rtol=1e-12, atol=1e-15)
    assert got[0] == lr                                     # the first update uses lr
    assert got[total] == min_lr and got[-1] == min_lr       # after `total` updates: min_lr
    assert all(a >= b for a, b in zip(got, got[1:]))        # never rises again
    assert s.value(5, 3) == s.value(0, 3)                   # per step: the epoch is irrelevant


@pytest.mark.parametrize("lr,warmup,total,min_lr", [(0.1, 10, 100, 0.0), (0.4, 2, 5, 0.04),
                                                    (1.0, 1, 30, 0.1), (0.2, 50, 51, 0.0)])
def test_warmup_cosine_closed_form(lr, warmup, total, min_lr):
    s = S.WarmupCosine(lr, warmup, total, min_lr=min_lr)
    assert s.per_step
    got = sequence_per_step(s)
    np.testing.assert_allclose(got, [closed_warmup_cosine(lr, warmup, total, min_lr, k)
                                     for k in range(1, STEPS + 1)], rtol=1e-12, atol=1e-15)
    assert got[0] == pytest.approx(lr / warmup)             # linear from lr/warmup ...
    assert got[warmup - 1] == pytest.approx(lr)             # ... to lr at step `warmup`
    assert got[warmup] == pytest.approx(lr)                 # cosine starts at lr
    assert got[total] == min_lr                             # min_lr after `total` updates
    assert max(got) == pytest.approx(lr)


def test_warmup_zero_is_cosine_decay():
    a, b = S.WarmupCosine(0.3, 0, 40, 0.01), S.CosineDecay(0.3, 40, 0.01)
    assert sequence_per_step(a, 60) == sequence_per_step(b, 60)


# -- ReduceOnPlateau ---------------------------------------------------------------
def plateau_reference(values, lr, factor, patience, delta, mode, min_lr, rel):
    """ReduceLROnPlateau as documented by PyTorch, transcribed independently."""
    best = math.inf if mode == "min" else -math.inf
    bad, out = 0, []
    for v in values:
        if mode == "min":
            better = v < (best * (1 - delta) if rel else best - delta)
        else:
            better = v > (best * (1 + delta) if rel else best + delta)
        if better:
            best, bad = v, 0
        else:
            bad += 1
        if bad > patience:
            new = max(lr * factor, min_lr)
            if lr - new > 1e-8:
                lr = new
            bad = 0
        out.append(lr)
    return out


PLATEAU_METRIC = [1.0, 0.9, 0.85, 0.85, 0.8501, 0.86, 0.7, 0.69995, 0.7, 0.7, 0.7, 0.7,
                  0.5, 0.5, 0.5, float("nan"), 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
PLATEAU_CASES = [
    dict(factor=0.5, patience=1, min_delta=1e-3, mode="min", min_lr=0.0),
    dict(factor=0.1, patience=0, min_delta=0.0, mode="min", min_lr=1e-4),
    dict(factor=0.5, patience=2, min_delta=0.01, mode="min", min_lr=0.0, threshold_mode="rel"),
    dict(factor=0.2, patience=1, min_delta=0.0, mode="max", min_lr=0.0),
]


def _plateau_run(kw, metric=PLATEAU_METRIC):
    s = S.ReduceOnPlateau(0.1, monitor="val_loss", **kw)
    lrs = []
    for e, v in enumerate(metric):
        assert s.value(e, 1 + 3 * e) == (lrs[-1] if lrs else 0.1)
        lrs.append(s.on_epoch_end({"loss": 0.0, "val_loss": v}))
    return lrs


@pytest.mark.parametrize("kw", PLATEAU_CASES)
def test_reduce_on_plateau_reference(kw):
    got = _plateau_run(kw)
    want = plateau_reference(PLATEAU_METRIC, 0.1, kw["factor"], kw["patience"],
                             kw["min_delta"], kw["mode"], kw["min_lr"],
                             kw.get("threshold_mode", "abs") == "rel")
    assert got == want
    assert len(set(got)) > 1 or kw["mode"] == "max"         # the cases do reduce


def test_reduce_on_plateau_hand_checked():
    s = S.ReduceOnPlateau(1.0, monitor="loss", factor=0.5, patience=2, min_delta=0.1,
                          min_lr=0.3)
    assert not s.per_step
    # 1.0 best; 0.95 not better by 0.1 (bad 1); 0.95 (bad 2); 0.95 (bad 3 > 2: lr 0.5)
    lrs = [s.on_epoch_end({"loss": v}) for v in [1.0, 0.95, 0.95, 0.95, 0.5, 0.5, 0.5, 0.5,
                                                  0.5, 0.5, 0.5, 0.5]]
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3]
    assert s.value(12, 1) == 0.3
    s.reset()
    assert s.value(0, 1) == 1.0 and s.bad_epochs == 0


def test_reduce_on_plateau_missing_key():
    s = S.ReduceOnPlateau(0.1)
    with pytest.raises(ValueError, match=r"'val_loss'.*not in.*\['loss'\].*validation data"):
        s.on_epoch_end({"loss": 0.3})
    with pytest.raises(ValueError, match="must be a number"):
        s.on_epoch_end({"val_loss": "low"})


# -- PyTorch ---------------------------------------------------------------------------
def _torch_lrs(lr, build, n, metrics=None):
    """The lr of each of n epochs (or updates) under torch scheduler build(torch, optimizer)."""
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = build(torch, opt)
    out = []
    for i in range(n):
        out.append(opt.param_groups[0]["lr"])           # the lr this epoch / update uses
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[i])
    return out


@pytest.mark.parametrize("lr,step_size,gamma", [(0.1, 3, 0.5), (1.0, 1, 0.9)])
def test_torch_step_lr(lr, step_size, gamma):
    want = _torch_lrs(lr, lambda torch, opt: torch.optim.lr_scheduler.StepLR(
        opt, step_size=step_size, gamma=gamma), EPOCHS)
    np.testing.assert_allclose(sequence_per_epoch(S.StepDecay(lr, step_size, gamma)), want,
                               rtol=1e-12)


@pytest.mark.parametrize("lr,gamma", [(0.1, 0.9), (0.3, 0.5)])
def test_torch_exponential_lr(lr, gamma):
    want = _torch_lrs(lr, lambda torch, opt: torch.optim.lr_scheduler.ExponentialLR(
        opt, gamma=gamma), EPOCHS)
    np.testing.assert_allclose(sequence_per_epoch(S.ExponentialDecay(lr, gamma)), want,
                               rtol=1e-12)


@pytest.mark.parametrize("lr,total,min_lr", [(0.1, 50, 0.0), (1.0, 200, 0.01)])
def test_torch_cosine(lr, total, min_lr):
    want = _torch_lrs(lr, lambda torch, opt: torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=total, eta_min=min_lr), total + 1)
    # PyTorch's curve is periodic after T_max; ours stays at min_lr: compare up to T_max.
    np.testing.assert_allclose(sequence_per_step(S.CosineDecay(lr, total, min_lr), total + 1),
                               want, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("lr,warmup,total,min_lr", [(0.1, 10, 100, 0.0), (0.4, 2, 7, 0.04)])
def test_torch_warmup_cosine(lr, warmup, total, min_lr):
    def build(torch, opt):
        sch = torch.optim.lr_scheduler
        return sch.SequentialLR(opt, [
            sch.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1),
            sch.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=min_lr)],
            milestones=[warmup])
    np.testing.assert_allclose(
        sequence_per_step(S.WarmupCosine(lr, warmup, total, min_lr), total + 1),
        _torch_lrs(lr, build, total + 1), rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("kw", PLATEAU_CASES)
def test_torch_reduce_on_plateau(kw):
    threshold_mode = kw.get("threshold_mode", "abs")
    want = _torch_lrs(0.1, lambda torch, opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=kw["mode"], factor=kw["factor"], patience=kw["patience"],
        threshold=kw["min_delta"], threshold_mode=threshold_mode, min_lr=kw["min_lr"]),
        len(PLATEAU_METRIC) + 1, PLATEAU_METRIC + [0.0])
    assert [0.1] + _plateau_run(kw) == pytest.approx(want, rel=1e-12)


# -- generated source: numba-compiled == value() ------------------------------------------
PER_STEP = [S.CosineDecay(0.1, 50), S.CosineDecay(1.0, 200, min_lr=0.01),
            S.CosineDecay(3e-4, 1), S.WarmupCosine(0.1, 10, 100), S.WarmupCosine(0.4, 2, 7, 0.04),
            S.WarmupCosine(0.01, 0, 30, 1e-5), S.WarmupCosine(1.0, 1, 2)]


def _compiled(schedule):
    namespace = {"math": math}
    exec(schedule.source(), namespace)
    return numba.njit(namespace["schedule_lr"])


def test_sources_compile_with_numba_and_match_value():
    steps = np.arange(1, 1001, dtype=np.int64)
    for s in PER_STEP:
        src = s.source()
        assert src.startswith("def schedule_lr(step):")
        assert "import" not in src
        f = _compiled(s)
        got = [f(k) for k in steps]
        want = [s.value(0, int(k)) for k in steps]
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=0, err_msg=repr(s))
        assert isinstance(got[0], float)


def test_source_called_from_a_jitted_loop():
    """As the generated module uses it: inside another njit function, with int64 steps."""
    s = S.WarmupCosine(0.2, 4, 12, 0.02)
    namespace = {"math": math, "njit": numba.njit}
    exec("@njit\n" + s.source(), namespace)
    exec("@njit\ndef run(first, n, out):\n    for k in range(n):\n"
         "        out[k] = schedule_lr(first + k)\n", namespace)
    out = np.empty(20)
    namespace["run"](np.int64(1), 20, out)
    np.testing.assert_allclose(out, [s.value(0, k) for k in range(1, 21)], rtol=1e-14)


def test_per_epoch_schedules_have_no_source():
    for s in [S.Constant(0.1), S.StepDecay(0.1, 2), S.ExponentialDecay(0.1, 0.9),
              S.ReduceOnPlateau(0.1)]:
        assert not s.per_step
        with pytest.raises(ValueError, match="per-epoch"):
            s.source()


# -- as_schedule and validation ------------------------------------------------------------
def test_as_schedule():
    c = S.as_schedule(0.05)
    assert isinstance(c, S.Constant) and c.value(3, 9) == 0.05
    assert isinstance(S.as_schedule(np.float32(0.5)), S.Constant)
    s = S.CosineDecay(0.1, 10)
    assert S.as_schedule(s) is s
    for bad in ["0.1", None, True, float("nan"), [0.1]]:
        with pytest.raises(ValueError, match="lr must be"):
            S.as_schedule(bad)
    with pytest.raises(ValueError, match="-0.1"):
        S.as_schedule(-0.1)


@pytest.mark.parametrize("make,match", [
    (lambda: S.Constant(0), r"lr must be a positive.*got 0"),
    (lambda: S.Constant(float("inf")), "got inf"),
    (lambda: S.StepDecay(0.1, 0, 0.5), r"step_size must be a positive integer, got 0"),
    (lambda: S.StepDecay(0.1, 2.5, 0.5), "got 2.5"),
    (lambda: S.StepDecay(0.1, 2, 1.5), r"gamma must be a number in \(0, 1\], got 1.5"),
    (lambda: S.StepDecay(0.1, 2, 0), "gamma .* got 0"),
    (lambda: S.ExponentialDecay(0.1, -0.9), "got -0.9"),
    (lambda: S.ExponentialDecay("0.1", 0.9), "got '0.1'"),
    (lambda: S.CosineDecay(0.1, 0), r"total \(steps\) must be a positive integer, got 0"),
    (lambda: S.CosineDecay(0.1, 10, min_lr=0.2), "min_lr must not exceed lr=0.1, got 0.2"),
    (lambda: S.CosineDecay(0.1, 10, min_lr=-1e-3), "min_lr must be .* got -0.001"),
    (lambda: S.WarmupCosine(0.1, -1, 10), r"warmup \(steps\) must be an integer >= 0, got -1"),
    (lambda: S.WarmupCosine(0.1, 10, 10), "total must be greater than warmup=10.*got 10"),
    (lambda: S.WarmupCosine(0.1, True, 10), "got True"),
    (lambda: S.ReduceOnPlateau(0.1, factor=1.0), r"factor must be a number in \(0, 1\), got 1.0"),
    (lambda: S.ReduceOnPlateau(0.1, patience=-1), "patience .* got -1"),
    (lambda: S.ReduceOnPlateau(0.1, mode="auto"), "mode must be 'min' or 'max', got 'auto'"),
    (lambda: S.ReduceOnPlateau(0.1, min_delta=-1), "min_delta .* got -1"),
    (lambda: S.ReduceOnPlateau(0.1, monitor=""), "monitor .* got ''"),
    (lambda: S.ReduceOnPlateau(0.1, threshold_mode="x"), "threshold_mode .* got 'x'"),
    (lambda: S.Constant(0.1).value(-1, 1), r"epoch must be an integer >= 0.*got -1"),
    (lambda: S.CosineDecay(0.1, 5).value(0, 0), r"step must be an integer >= 1.*got 0"),
])
def test_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_pickle_after_use():
    import pickle
    for s in PER_STEP + [S.ReduceOnPlateau(0.1, patience=2)]:
        before = s.value(0, 3)
        again = pickle.loads(pickle.dumps(s))
        assert repr(again) == repr(s) and again.value(0, 3) == before


def test_repr_round_trips():
    for s in PER_STEP + [S.StepDecay(0.1, 3, 0.5), S.ReduceOnPlateau(0.1, patience=2)]:
        again = eval(repr(s), vars(S))
        assert repr(again) == repr(s)
