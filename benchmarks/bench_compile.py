"""Compile time in a fresh interpreter (``timeraw_``: each sample is a new process).

The timed statement builds and compiles the mnist MLP (784-256-128-10); ``import graphnn``
(and with it NumPy and Numba) runs in the untimed setup of the child and is timed on its own
by ``timeraw_import_graphnn``.  Cold: a new empty ``GRAPHNN_CACHE_DIR`` per sample.  Warm: a
directory populated once in ``setup`` by another process.  No cache: ``GRAPHNN_NO_CACHE=1``.
"""
import shutil
import tempfile

from . import THREADS
from .compare import LR, NETS, _run_compile_child

SPEC = NETS["mnist"]

_COMPILE = f"""
layers = [gn.Dense(h, activation={SPEC['act']!r}) for h in {tuple(SPEC['hidden'])!r}]
model = gn.Sequential(layers + [gn.Dense({SPEC['out']})], input_dim={SPEC['input_dim']})
net = model.compile(loss={SPEC['loss']!r}, optimizer=gn.SGD({LR}), seed=0)
"""


def _setup_code(env: dict, cleanup: str | None = None) -> str:
    lines = ["import os"] + [f"os.environ[{k!r}] = {v!r}" for k, v in env.items()]
    if cleanup:
        lines += ["import atexit, shutil", f"atexit.register(shutil.rmtree, {cleanup!r}, True)"]
    return "\n".join(lines + ["import graphnn as gn"])


class Compile:
    timeout = 600
    repeat = 3          # fresh processes per round
    rounds = 1
    warmup_time = 0
    number = 1

    def setup(self):
        self.warm_dir = tempfile.mkdtemp(prefix="graphnn-asv-warm-")
        _run_compile_child(SPEC, self.warm_dir, THREADS)            # populate the cache

    def teardown(self):
        shutil.rmtree(self.warm_dir, ignore_errors=True)

    def timeraw_import_graphnn(self):
        return "import graphnn"

    def timeraw_compile_cold(self):
        d = tempfile.mkdtemp(prefix="graphnn-asv-cold-")
        return _COMPILE, _setup_code({"GRAPHNN_CACHE_DIR": d}, cleanup=d)

    def timeraw_compile_warm(self):
        return _COMPILE, _setup_code({"GRAPHNN_CACHE_DIR": self.warm_dir})

    def timeraw_compile_nocache(self):
        return _COMPILE, _setup_code({"GRAPHNN_NO_CACHE": "1"})
