"""Memory of a training run.

``peakmem_fit`` is the peak resident size of the whole benchmark process (interpreter,
NumPy, Numba, the loaded kernels, the data) after one training epoch; ``peakmem_setup`` is the
same process without the fit, so the difference is what training adds.  ``track_fit_traced_mib``
is the peak of the allocations tracemalloc sees during ``fit`` (NumPy buffers: the workspace
arena, copies of the data, ...), which does not depend on what the process did before.
"""
import tracemalloc

from . import THREADS
from .compare import NETS, compile_net, make_data, set_threads

ROWS = {"mnist": 60_000, "wide": 10_240}      # mnist: MNIST-sized (188 MB of float32 inputs)


class Memory:
    params = list(ROWS)
    param_names = ["net"]
    timeout = 600

    def setup(self, name):
        import graphnn as gn
        self.spec = NETS[name]
        self.net = compile_net(self.spec)
        self.X, self.y = make_data(self.spec, ROWS[name])
        set_threads(THREADS, gn)

    def peakmem_setup(self, name):
        pass

    def peakmem_fit(self, name):
        self.net.fit(self.X, self.y, epochs=1, batch_size=self.spec["batch"])

    def track_fit_traced_mib(self, name):
        tracemalloc.start()
        try:
            self.net.fit(self.X, self.y, epochs=1, batch_size=self.spec["batch"])
            return tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()

    track_fit_traced_mib.unit = "MiB"
