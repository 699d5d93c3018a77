"""Data-parallel training on MPI (mpi4py): N processes ("ranks"), one model each, one
global batch at a time, results equal to one process training at the same batch size.

    mpiexec -n 4 python train.py          # train.py calls net.fit(X, y, distributed=True)
    mpiexec -n 4 graphnn train run.toml   # the command line notices mpiexec by itself

Each step, for global batch b (rows ``start..stop`` of the epoch's shuffled order):

1. every rank takes its part of the batch (``data="whole"``: a contiguous slice
   ``row0..row0+n_r`` of it; ``data="local"``: the batch rows it holds) and calls the
   compiled ``loss_and_grads`` on them, with the batch's dropout key and ``row0``, so
   each row gets the mask it would get in one process;
2. it scales its mean gradient to its share of the batch's (times its row count over
   the batch's; with weights, times its weight sum, divided by the global one after
   the sum) and appends [that count, count * loss];
3. one ``Allreduce`` sums these buffers over all ranks (a rank with no rows in the
   batch sends zeros: every rank takes every step);
4. every rank calls the compiled ``update`` with the same gradient, learning rate and
   step number, so parameters stay identical.

Python runs between the two compiled calls (25-35 µs a step for the 784-128-10 MLP);
the allreduce stays out of the compiled loop: numba-mpi, which would call MPI from
@njit, reduces float64 only and measured 3.7 ms a call against mpi4py's 0.13 ms for
that model's gradient (README "Scaling out").

Every rank draws the same permutation from the model's seeded generator (its state is
broadcast from rank 0 with the parameters and optimizer state at the start), so the
generator, ``net.step`` and ``net.epoch`` advance as in one process and checkpoints are
interchangeable.  Validation sums and metric sums are reduced, so every rank sees the
same logs; ``ReduceOnPlateau`` runs on every rank.  Callbacks and the progress bar run
on rank 0 only (it writes the files); its stop decision, and any error it raises, are
broadcast so every rank stops together.  At each epoch's end a checksum of parameters
and optimizer state is compared across ranks (``OutOfSyncError`` if they differ).

Failures: bad arguments or data on any rank raise a ValueError on every rank (naming
the ranks); a divergence is seen by every rank at once; any other exception on one rank
prints ``graphnn: rank r of N failed`` with its traceback and aborts the whole job
(``MPI_Abort``), so nothing waits forever.  ``import graphnn`` does not import mpi4py;
it is imported when a distributed function is first called.
"""
from __future__ import annotations

import hashlib
import math
import os
import sys
import time
import traceback

import numpy as np

from .callbacks import CallbackList, make_progress
from .ir import STATS_SIZE
from .launcher import LAUNCHER_ENV, launched
from . import train
from .ops.dropout import dropout_key
from .train import PROGRESS_SECONDS, DivergenceError, History

__all__ = ["fit", "launched", "LAUNCHER_ENV", "rank", "size", "checksum", "check_in_sync",
           "broadcast", "from_root", "OutOfSyncError", "INSTALL"]

INSTALL = 'pip install "graphnn[mpi]"   (mpi4py and the mpich wheel, which brings mpiexec)'
LAYOUTS = ("whole", "local")
ABORT_GRACE_SECONDS = 0.5       # before MPI_Abort: time for mpiexec to relay the message


class OutOfSyncError(RuntimeError):
    """The ranks' parameters or optimizer state differ (raised on every rank)."""


def _everywhere(exc: BaseException) -> BaseException:
    """Mark an exception that every rank raises at the same point (no abort needed)."""
    exc._graphnn_all_ranks = True
    return exc


# -- MPI, imported on first use ------------------------------------------------------------
def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"data-parallel training needs mpi4py and an MPI library: {INSTALL}"
                          f" ({e})") from None
    return MPI


def _comm(comm=None):
    return _mpi().COMM_WORLD if comm is None else comm


def rank(comm=None) -> int:
    """This process's rank in ``comm`` (default MPI.COMM_WORLD)."""
    return _comm(comm).Get_rank()


def size(comm=None) -> int:
    """The number of ranks in ``comm`` (default MPI.COMM_WORLD)."""
    return _comm(comm).Get_size()


# -- consistency -----------------------------------------------------------------------------
def checksum(net) -> str:
    """SHA-256 (hex) of this process's parameters, optimizer state and step count.

    Equal on every rank after a data-parallel fit: ``check_in_sync(net)`` compares them."""
    h = hashlib.sha256()
    for array in (net.params, net.state):
        h.update(np.ascontiguousarray(net.backend.to_host(array)).tobytes())
    h.update(f"{net.step}:{getattr(net, 'epoch', 0)}".encode())
    return h.hexdigest()


def check_in_sync(net, comm=None) -> str:
    """Collective: raise ``OutOfSyncError`` on every rank unless every rank holds the same
    parameters, optimizer state and step; returns the common checksum."""
    comm = _comm(comm)
    sums = comm.allgather(checksum(net))
    if len(set(sums)) > 1:
        groups = {}
        for r, s in enumerate(sums):
            groups.setdefault(s, []).append(r)
        detail = "; ".join(f"ranks {v} have {k[:12]}" for k, v in groups.items())
        raise _everywhere(OutOfSyncError(f"the ranks' parameters differ: {detail}"))
    return sums[0]


def broadcast(net, comm=None, root: int = 0) -> None:
    """Collective: give every rank ``root``'s parameters, optimizer state, step and epoch
    counters, shuffling generator and learning-rate schedule state."""
    comm = _comm(comm)
    for name in ("params", "state"):
        host = np.ascontiguousarray(net.backend.to_host(getattr(net, name)))
        comm.Bcast(host, root=root)
        net._put(getattr(net, name), host)
    schedule = net.optimizer.schedule
    meta = comm.bcast((net.step, net.epoch, net.rng.bit_generator.state, net._dropout_key,
                       {k: v for k, v in vars(schedule).items() if not k.startswith("_")}),
                      root=root)
    net.step, net.epoch, net.rng.bit_generator.state, net._dropout_key, sched = meta
    vars(schedule).update(sched)


def _fingerprint(net) -> str:
    """The compiled program and training configuration: must be equal on every rank."""
    text = "\n".join([net.source(), repr(net.optimizer), net.dtype.name, net.loss.name,
                      str(net.plan.n_params), repr(net.metrics),
                      net.backend.layout.tobytes().hex(),     # widths and offsets: the source
                      net.backend.hyper.tobytes().hex()])     # is the same for every width
    return hashlib.sha256(text.encode()).hexdigest()


def _sample_hash(*arrays) -> str:
    """A cheap fingerprint of data sets (shape, dtype and up to 4096 evenly spaced rows),
    to catch ranks that loaded different data in the "whole" layout."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        h.update(f"{a.shape}{a.dtype}".encode())
        rows = np.unique(np.linspace(0, a.shape[0] - 1, min(a.shape[0], 4096)).astype(np.int64))
        h.update(np.ascontiguousarray(a[rows]).tobytes())
    return h.hexdigest()


# -- errors: collective or fatal -------------------------------------------------------------
def _agree(comm, fn):
    """Run ``fn()`` on every rank; if it raises on any rank, raise on every rank."""
    try:
        result, error = fn(), None
    except (ValueError, TypeError, ImportError) as e:
        result, error = None, e
    messages = comm.allgather(None if error is None else f"{type(error).__name__}: {error}")
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if not failed:
        return result
    if error is not None and len(failed) == len(messages) and len({m for _, m in failed}) == 1:
        raise _everywhere(error)                 # the same error everywhere: as in one process
    detail = "; ".join(f"rank {r}: {m}" for r, m in failed)
    raise _everywhere(ValueError(f"data-parallel fit: {detail}"))


def _abort(comm, exc: BaseException):
    """Print which rank failed and why, then end every rank of the job (never returns)."""
    r, n = comm.Get_rank(), comm.Get_size()
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    sys.stdout.flush()
    sys.stderr.write(f"{text}\ngraphnn: rank {r} of {n} failed: {type(exc).__name__}: {exc}\n"
                     f"graphnn: aborting all {n} ranks of the job\n")
    sys.stderr.flush()
    # MPI_Abort does not wait for the launcher to forward what the ranks wrote: MPICH's
    # mpiexec once killed the job before relaying this message (a CI run, busy machine).
    # A moment's grace lets it through; the other ranks are stopped all the same.
    time.sleep(ABORT_GRACE_SECONDS)
    comm.Abort(1)


def _on_root(comm, root: bool, fn):
    """Run ``fn()`` on rank 0 only; every rank learns whether it failed (and rank 0
    re-raises the error itself, the others raise a RuntimeError that names it)."""
    error = None
    if root:
        try:
            fn()
        except Exception as e:                   # a callback's error: every rank stops
            error = e
    message = comm.bcast(None if error is None else f"{type(error).__name__}: {error}", root=0)
    if message is not None:
        raise _everywhere(error if root else RuntimeError(
            f"rank 0 stopped the job in a callback: {message}"))


def _set_threads(comm):
    """One BLAS pool per rank, sized to the cores it shares with the ranks on its machine
    (several ranks each running all-core BLAS pools ran 6x slower), unless the user chose:
    OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS set, or ``gn.set_num_threads``
    called with fewer threads than cores."""
    from .threads import get_num_threads, set_num_threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    chosen = any(v in os.environ for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                           "MKL_NUM_THREADS")) or get_num_threads() < cores
    local = comm.Split_type(_mpi().COMM_TYPE_SHARED)
    try:
        here = local.Get_size()
    finally:
        local.Free()
    if not chosen:
        set_num_threads(max(1, cores // here))


def from_root(fn, comm=None):
    """Collective: run ``fn()`` on rank 0 only and return its result on every rank; if it
    raises, every rank raises that exception (for one-off work such as making a folder)."""
    comm = _comm(comm)
    result = error = None
    if comm.Get_rank() == 0:
        try:
            result = fn()
        except Exception as e:
            error = e
    result, error = comm.bcast((result, error), root=0)
    if error is not None:
        raise error
    return result


# -- which rows a rank computes --------------------------------------------------------------
class _Shards:
    """Where this rank's rows are in each global batch of an epoch.

    "whole": every rank holds all R rows; rank r computes the contiguous positions
    ``start + r*n//N .. start + (r+1)*n//N`` of each batch of n rows, so ``row0`` is the
    position of its first row and dropout masks equal one process's.
    "local": rank r holds rows ``offset .. offset + n_r`` of the concatenation (in rank
    order); it computes the batch's rows it holds, in epoch order, and ``row0`` is the
    number of the batch's rows held by lower ranks (so without dropout the result is
    one process training on the concatenation; with dropout the masks are drawn for
    the same batch, assigned to rows grouped by rank).
    """

    def __init__(self, layout: str, rank: int, nranks: int, local_rows: int, counts):
        self.layout, self.rank, self.nranks = layout, rank, nranks
        self.total = int(sum(counts)) if layout == "local" else local_rows
        self.offset = int(sum(counts[:rank])) if layout == "local" else 0
        self.local_rows = local_rows

    def epoch(self, order: np.ndarray, batch_size: int):
        """Per batch: (local row indices, row0), for the epoch's global ``order``."""
        n_batches = math.ceil(self.total / batch_size)
        starts = np.arange(n_batches + 1) * batch_size
        starts[-1] = self.total
        if self.layout == "whole":
            out = []
            for b in range(n_batches):
                start, n = starts[b], starts[b + 1] - starts[b]
                lo = start + self.rank * n // self.nranks
                hi = start + (self.rank + 1) * n // self.nranks
                out.append((order[lo:hi], int(lo - start)))
            return out
        lo, hi = self.offset, self.offset + self.local_rows
        mine = (order >= lo) & (order < hi)
        pos = np.flatnonzero(mine)
        ids = order[pos] - lo
        bounds = np.searchsorted(pos, starts)
        lower = np.concatenate([[0], np.cumsum(order < lo)])
        return [(ids[bounds[b]:bounds[b + 1]], int(lower[starts[b + 1]] - lower[starts[b]]))
                for b in range(n_batches)]

    def validation(self, rows: int) -> slice:
        """This rank's part of the validation rows (all of its own in "local")."""
        if self.layout == "local":
            return slice(0, rows)
        return slice(self.rank * rows // self.nranks, (self.rank + 1) * rows // self.nranks)


# -- fit ---------------------------------------------------------------------------------------
def fit(net, X, y, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
        verbose: int = 0, validation_data=None, validation_split: float = 0.0,
        callbacks=None, class_weight=None, sample_weight=None, data: str = "whole",
        comm=None) -> History:
    """Train ``net`` data-parallel over the ranks of ``comm`` (default MPI.COMM_WORLD).

    Collective: every rank calls it with the same arguments, except the data in the
    "local" layout.  ``batch_size`` is the global batch (rows per update, over all ranks).
    ``data``: "whole" (every rank passes the whole data set; graphnn shards it) or
    "local" (every rank passes only its own rows; the epoch is their concatenation in
    rank order; validation data and ``validation_split`` apply to each rank's own rows).
    The other arguments are ``CompiledModel.fit``'s; callbacks run on rank 0 only.
    Returns the same History on every rank.
    """
    comm = _comm(comm)
    try:
        return _fit(net, X, y, epochs, batch_size, shuffle, verbose, validation_data,
                    validation_split, callbacks, class_weight, sample_weight, data, comm)
    except BaseException as e:
        if getattr(e, "_graphnn_all_ranks", False) or comm.Get_size() == 1:
            raise
        _abort(comm, e)
        raise                                    # not reached: Abort ends the process


def _prepare(net, X, y, epochs, batch_size, verbose, validation_data, validation_split,
             class_weight, sample_weight, data):
    if data not in LAYOUTS:
        raise ValueError(f"data must be 'whole' or 'local', got {data!r}")
    if net.backend.device != "cpu":
        raise ValueError("data-parallel training runs on the CPU backend (device='cpu'); "
                         "see README 'Scaling out' for GPUs")
    return train.prepare(net, X, y, epochs, batch_size, verbose, validation_data,
                         validation_split, class_weight, sample_weight)


def _fit(net, X, y, epochs, batch_size, shuffle, verbose, validation_data, validation_split,
         callbacks, class_weight, sample_weight, data, comm) -> History:
    me, nranks = comm.Get_rank(), comm.Get_size()
    root = me == 0
    X, Y, W, val, epochs, batch_size = _agree(comm, lambda: _prepare(
        net, X, y, epochs, batch_size, verbose, validation_data, validation_split,
        class_weight, sample_weight, data))
    _agree(comm, lambda: _same_everywhere(comm, net, X, Y, W, val, data))
    counts = comm.allgather(X.shape[0])
    _set_threads(comm)
    broadcast(net, comm)

    shards = _Shards(data, me, nranks, X.shape[0], counts)
    rows = shards.total
    batch_size = min(batch_size, rows)
    n_batches = math.ceil(rows / batch_size)
    net._ensure_arena(batch_size)
    dev, dtype = net.backend, net.dtype
    batch_stats = dev.batch_stats
    P = net.plan.n_params
    buf = np.zeros(P + 2, dtype)                  # [gradient sum, row count, count * loss]
    grads = buf[:P]
    xbuf = np.empty((batch_size, X.shape[1]), dtype)
    ybuf = np.empty((batch_size,) + Y.shape[1:], Y.dtype)
    wbuf = np.empty(batch_size if W is not None else 0, dtype)
    logits = net.plan.logits
    schedule = net.optimizer.schedule
    val_part = None
    if val is not None:
        part = shards.validation(val[0].shape[0])
        val_part = (val[0][part], val[1][part], val[0].shape[0] if data == "whole"
                    else comm.allreduce(val[0].shape[0]))

    # compiled before the first epoch: Python calls these two directly, per step
    dev.compile_step(net.params, grads, net.state, net.arena, xbuf, ybuf, wbuf)
    cbs = CallbackList(callbacks) if root else CallbackList()
    cbs.set_model(net)
    history = History()
    net.stop_training = False
    _on_root(comm, root, cbs.on_train_begin)
    try:
        with make_progress(verbose if root else 0, epochs, n_batches) as progress:
            for epoch in range(epochs):
                _on_root(comm, root, lambda: (cbs.on_epoch_begin(epoch),
                                              progress.epoch_begin(epoch)))
                t0 = time.perf_counter()
                good = net._snapshot()
                epoch_lr = dtype.type(schedule.value(net.epoch, net.step + 1))
                order = net.rng.permutation(rows) if shuffle else np.arange(rows)
                seed = int(net.rng.integers(2**31))
                stats = np.zeros(STATS_SIZE)
                total, done, shown = 0.0, 0, time.perf_counter()
                for b, (idx, row0) in enumerate(shards.epoch(order, batch_size)):
                    n = idx.size
                    batch_rows = min(batch_size, rows - b * batch_size)
                    if n:
                        x, yb = xbuf[:n], ybuf[:n]
                        np.take(X, idx, axis=0, out=x)
                        np.take(Y, idx, axis=0, out=yb)
                        if W is not None:
                            w = np.take(W, idx, out=wbuf[:n])
                            count = float(w.sum(dtype=np.float64))
                        else:
                            w, count = wbuf, float(n)
                        key = dropout_key(seed, b)          # as the compiled epoch draws it
                        value = dev.loss_and_grads(net.params, grads, net.arena, x, yb, w,
                                                   key, row0)
                        # mean over my rows -> my share of the global mean (the global row
                        # count is known) or of the global sum (weights: divided below)
                        grads *= dtype.type(count / batch_rows if W is None else count)
                        buf[P], buf[P + 1] = count, value * count
                        batch_stats(_view(net, logits, n) if logits.kind == "arena" else x,
                                    yb, stats)
                    else:
                        buf[:] = 0
                    comm.Allreduce(_mpi().IN_PLACE, buf, op=_mpi().SUM)
                    global_count = float(buf[P])
                    if W is not None and global_count > 0:
                        grads /= dtype.type(global_count)
                    mean_loss = float(buf[P + 1]) / global_count if global_count > 0 else 0.0
                    total += batch_rows * mean_loss
                    done += batch_rows
                    t = net.step + b + 1
                    lr = dtype.type(schedule.value(net.epoch, t)) if schedule.per_step \
                        else epoch_lr
                    dev.update(net.params, grads, net.state, lr, t)
                    if root and verbose == 1 and time.perf_counter() - shown > PROGRESS_SECONDS:
                        progress.update(b + 1, done, total / done)
                        shown = time.perf_counter()
                comm.Allreduce(_mpi().IN_PLACE, stats, op=_mpi().SUM)
                loss = total / rows
                bad = comm.allreduce(int(not (math.isfinite(loss)
                                              and dev.all_finite(net.params))), op=_mpi().MAX)
                if bad:
                    net._restore(good)
                    raise _everywhere(DivergenceError(
                        f"the loss became {loss} in epoch {net.epoch + 1}; the parameters "
                        f"from the end of epoch {net.epoch} were restored on every rank. "
                        "Lower the learning rate or rescale the inputs."))
                net.step += n_batches
                net.epoch += 1
                check_in_sync(net, comm)
                logs = {"loss": float(loss), **net._metric_logs(stats, rows)}
                if val_part is not None:
                    logs.update(_evaluate(net, comm, *val_part))
                if hasattr(schedule, "on_epoch_end"):
                    schedule.on_epoch_end(logs)
                    logs["lr"] = float(schedule.value(net.epoch, net.step + 1))
                history.append(epoch, logs)
                seconds = time.perf_counter() - t0

                def end_of_epoch():
                    progress.epoch_end(epoch, logs, seconds)
                    cbs.on_epoch_end(epoch, logs)
                _on_root(comm, root, end_of_epoch)
                net.stop_training = comm.bcast(bool(net.stop_training), root=0)
                if net.stop_training:
                    break
    except BaseException as e:
        if getattr(e, "_graphnn_all_ranks", False):      # every rank is here: end together
            _finish(comm, root, cbs, net)
        raise                                           # otherwise fit() aborts the job
    _finish(comm, root, cbs, net)
    return history


def _finish(comm, root: bool, cbs, net):
    """on_train_end on rank 0, then its parameters to every rank (a callback such as
    EarlyStopping(restore_best=True) may have changed them there)."""
    _on_root(comm, root, cbs.on_train_end)
    broadcast(net, comm)


def _view(net, buf, n: int) -> np.ndarray:
    """The first n rows of an arena block (the logits the loss read)."""
    col, width = net.plan.arena[buf.name]
    cap = net.arena.size // net.plan.arena_width
    return net.arena[col * cap:col * cap + n * width].reshape((n, width))


def _evaluate(net, comm, Xv, Yv, rows: int) -> dict:
    """Validation loss and metrics over every rank's part, reduced."""
    sums = np.zeros(4)                            # loss sum, then the three metric sums
    if Xv.shape[0]:
        sums[0] = net.backend.evaluate(net.params, net.arena, Xv, Yv, sums[1:])
    comm.Allreduce(_mpi().IN_PLACE, sums, op=_mpi().SUM)
    return {"val_loss": float(sums[0] / rows), **net._metric_logs(sums[1:], rows, "val_")}


def _same_everywhere(comm, net, X, Y, W, val, data):
    """Every rank must have compiled the same model; in "whole", hold the same data."""
    prints = comm.allgather(_fingerprint(net))
    if len(set(prints)) > 1:
        differ = [r for r, p in enumerate(prints) if p != prints[0]]
        raise ValueError(f"ranks {differ} compiled a different model, optimizer or dtype "
                         "than rank 0; every rank must build the same network")
    if data == "whole":
        hashes = comm.allgather(_sample_hash(X, Y, W, *(val or (None, None))))
        if len(set(hashes)) > 1:
            differ = [r for r, h in enumerate(hashes) if h != hashes[0]]
            raise ValueError(f"with data='whole' every rank must pass the same data, but ranks "
                             f"{differ} hold different rows than rank 0 (load it the same way, "
                             "or pass data='local' if each rank holds its own part)")
