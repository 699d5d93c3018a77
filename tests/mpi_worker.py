"""The program tests/test_mpi.py starts under ``mpiexec -n N``: it trains the scenarios
named on the command line data-parallel and saves each rank's results to
OUT/rank<r>.npz (parameters, histories, checksums, error messages).  The test process
trains the same scenarios in one process (the oracle) and compares.

    mpiexec -n 2 python -m mpi4py tests/mpi_worker.py OUT sgd adam local resume bad stop
    mpiexec -n 2 python -m mpi4py tests/mpi_worker.py OUT raise|kill   (a failing rank)
"""
import os
import signal
import sys

import numpy as np

import graphnn as gn

ROWS = 50                    # 40 training rows after validation_split=0.2: batches 16, 16, 8
BATCH = 16                   # ROWS rows: batches 16, 16, 16, 2


def data(kind: str):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(ROWS, 4))
    if kind == "labels":
        y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
    else:
        y = np.stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]], axis=1)
    w = rng.uniform(0.2, 2.0, ROWS)
    return X, y, w


def sgd_net():
    """float32, Dropout, SGD with Nesterov momentum, ReduceOnPlateau on the val loss."""
    model = gn.Sequential([gn.Dense(8, activation="tanh"), gn.Dropout(0.3), gn.Dense(3)],
                          input_dim=4)
    lr = gn.schedules.ReduceOnPlateau(0.2, monitor="val_loss", factor=0.5, patience=0)
    return model.compile(loss="cross_entropy", seed=3, dtype="float32",
                         optimizer=gn.SGD(lr=lr, momentum=0.9, nesterov=True))


def sgd_fit_args(w):
    return dict(batch_size=BATCH, validation_split=0.2, sample_weight=w,
                class_weight={0: 1.0, 1: 2.0, 2: 0.5})


def adam_net():
    """float64, Dropout, Adam with a per-step warmup-cosine schedule."""
    model = gn.Sequential([gn.Dense(8, activation="relu"), gn.Dropout(0.25), gn.Dense(3)],
                          input_dim=4)
    lr = gn.schedules.WarmupCosine(0.05, warmup=3, total=10, min_lr=0.001)
    return model.compile(loss="cross_entropy", seed=5, dtype="float64",
                         optimizer=gn.Adam(lr=lr))


def local_net():
    """float32 regression (mse, mae metric), SGD with momentum, no dropout."""
    model = gn.Sequential([gn.Dense(6, activation="tanh"), gn.Dense(2)], input_dim=4)
    return model.compile(loss="mse", seed=9, dtype="float32", metrics=["mae"],
                         optimizer=gn.SGD(lr=0.05, momentum=0.8))


def local_bounds(nranks: int) -> list[int]:
    """Uneven shards of the 40 training rows: rank r holds a share proportional to r + 1."""
    sizes = np.arange(1, nranks + 1)
    cuts = np.round(np.cumsum(sizes) / sizes.sum() * 40).astype(int)
    return [0] + list(cuts)


def main():
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    me, nranks = comm.Get_rank(), comm.Get_size()
    out, scenarios = sys.argv[1], sys.argv[2:]
    res = {}

    def record(prefix, net, history):
        res[prefix + "params"] = net.backend.to_host(net.params).copy()
        res[prefix + "state"] = net.backend.to_host(net.state).copy()
        for k, v in history.history.items():
            res[f"{prefix}h_{k}"] = np.array(v)

    if {"sgd", "resume"} & set(scenarios):
        X, y, w = data("labels")
        if "sgd" in scenarios:
            net = sgd_net()
            record("sgd_", net, net.fit(X, y, epochs=3, distributed=True, **sgd_fit_args(w)))
        if "resume" in scenarios:
            # distributed run with a checkpoint per epoch (rank 0 writes), then one more epoch
            net = sgd_net()
            ckpt = gn.callbacks.ModelCheckpoint(os.path.join(out, "mpi-{epoch}.gnn"),
                                                monitor="val_loss")
            net.fit(X, y, epochs=2, distributed=True, callbacks=[ckpt], **sgd_fit_args(w))
            record("cont_", net, net.fit(X, y, epochs=1, distributed=True, **sgd_fit_args(w)))
            # a checkpoint written by one process, resumed here
            net = gn.load(os.path.join(out, "single-2.gnn"))
            record("fromsingle_", net, net.fit(X, y, epochs=1, distributed=True,
                                               **sgd_fit_args(w)))
    if "adam" in scenarios:
        X, y, w = data("labels")
        net = adam_net()
        sums = []
        for _ in range(3):                       # one epoch per call: checksums in between
            h = net.fit(X, y, epochs=1, batch_size=BATCH, sample_weight=w, distributed="whole")
            sums.append(gn.distributed.checksum(net))
        record("adam_", net, h)
        res["adam_checksums"] = np.array(sums)
    if {"local", "bad"} & set(scenarios):
        X, y, _ = data("values")
        lo, hi = local_bounds(nranks)[me:me + 2]
        vlo, vhi = 40 + 10 * me // nranks, 40 + 10 * (me + 1) // nranks
        net = local_net()
        if "local" in scenarios:
            h = net.fit(X[lo:hi], y[lo:hi], epochs=3, batch_size=BATCH, distributed="local",
                        validation_data=(X[vlo:vhi], y[vlo:vhi]))
            record("local_", net, h)
        if "bad" in scenarios:
            Xb = X[lo:hi].copy()
            if me == nranks - 1:
                Xb[0, 1] = np.nan
            try:
                net.fit(Xb, y[lo:hi], epochs=1, batch_size=BATCH, distributed="local")
                res["bad_error"] = np.array("")
            except ValueError as e:
                res["bad_error"] = np.array(str(e))
    if "stop" in scenarios:
        X, y, _ = data("values")
        net = local_net()
        stop = gn.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=0)
        record("stop_", net, net.fit(X, y, epochs=5, batch_size=BATCH, callbacks=[stop],
                                     distributed=True))
    if {"raise", "kill"} & set(scenarios):
        X, y, _ = data("values")
        net = local_net()
        update = net.backend.update

        def failing_update(params, grads, state, lr, step):
            if me == nranks - 1 and step == 5:
                if "kill" in scenarios:
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError("injected failure at step 5")
            update(params, grads, state, lr, step)
        net.backend.update = failing_update
        net.fit(X, y, epochs=50, batch_size=4, distributed=True)
        print("training finished: the failure was not noticed", flush=True)
    np.savez(os.path.join(out, f"rank{me}.npz"), **res)


if __name__ == "__main__":
    main()
