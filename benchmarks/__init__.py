"""graphnn benchmarks: an asv suite (this package) and a head-to-head script (compare.py).

The asv suite runs against the installed environment; nothing is built from git.  From the
repository root, with the project's virtual environment (``.venv/bin/asv`` or activated):

    pip install asv==0.6.6                               # once (or: pip install -e ".[bench]")
    asv machine --yes                                    # once per machine: record its description
    asv check --python=same                              # import and validate every benchmark
    asv run --python=same --quick --dry-run --show-stderr    # smoke test: ONE sample each, not saved
    asv run --python=same --set-commit-hash $(git rev-parse HEAD)    # real run, saved in .asv/results
    asv run --python=same --bench Train --set-commit-hash $(git rev-parse HEAD)   # a subset (regex)
    asv compare <hash1> <hash2>                          # two saved runs
    asv publish && asv preview                           # HTML report from .asv/html

``--python=same`` is shorthand for ``-E existing:$(which python)``: the interpreter asv is
run with, and whatever graphnn it imports (the editable install of this checkout).  With an
existing environment asv saves results only when given ``--set-commit-hash``.  ``--quick``
takes a single sample per benchmark: use it to see that everything runs, never for numbers.

Benchmarks (``NETS`` in compare.py: tiny 2-32-32-1 tanh MSE batch 32, mnist 784-256-128-10
ReLU cross-entropy batch 128, wide 1024-1024-1024-10 ReLU cross-entropy batch 256):

* ``bench_train.Train``: ``time_train_step`` (one ``fit`` call on one batch: a step through the
  public API), ``time_train_epoch`` (one ``fit`` epoch over a fixed number of batches),
  ``track_us_per_step`` (epoch seconds / batches, median of 5 epochs, in microseconds).
* ``bench_predict.Predict``: ``time_predict`` and ``track_rows_per_second``.
* ``bench_compile.Compile``: fresh-process ``timeraw_`` benchmarks of the mnist MLP: import
  graphnn; build+compile with an empty ``GRAPHNN_CACHE_DIR`` (cold), with a pre-populated one
  (warm) and with ``GRAPHNN_NO_CACHE=1``.
* ``bench_memory.Memory``: ``peakmem_fit`` (process peak RSS after a training epoch),
  ``peakmem_setup`` (the same process without the fit, the baseline to subtract) and
  ``track_fit_traced_mib`` (peak of the allocations tracemalloc sees during ``fit``).

Models are compiled in ``setup()`` through graphnn's on-disk cache (``GRAPHNN_CACHE_DIR``, else
``~/.cache/graphnn``), so only the first run pays Numba compile time.

Threads: every pool is pinned to ``GRAPHNN_BENCH_THREADS`` (default 2) by the environment
variables below, set here before any benchmark module imports NumPy or Numba, and again with
threadpoolctl (and ``graphnn.set_num_threads`` where it exists) in each ``setup()``.

Head-to-head against PyTorch CPU eager and plain NumPy (interleaved, medians, ratios, a
markdown table): ``python benchmarks/compare.py [--quick] [--threads 2] [--json PATH]``.
"""
import os

THREADS = int(os.environ.get("GRAPHNN_BENCH_THREADS", "2"))
for _name in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = str(THREADS)
