"""Training time through ``net.fit``: one step, one epoch, and microseconds per step."""
import time

from . import THREADS
from .compare import NETS, compile_net, make_data, set_threads

EPOCH_BATCHES = {"tiny": 1000, "mnist": 50, "wide": 10}     # batches per timed epoch


class Train:
    params = list(NETS)
    param_names = ["net"]
    timeout = 600
    warmup_time = 0.2

    def setup(self, name):
        import graphnn as gn
        self.spec = spec = NETS[name]
        self.B = spec["batch"]
        self.net = compile_net(spec)
        self.X, self.y = make_data(spec, EPOCH_BATCHES[name] * self.B)
        self.Xb, self.yb = self.X[:self.B], self.y[:self.B]
        set_threads(THREADS, gn)
        self.net.fit(self.X, self.y, epochs=1, batch_size=self.B)     # first touch

    def time_train_step(self, name):
        """One fit call on exactly one batch (validation and scheduling included)."""
        self.net.fit(self.Xb, self.yb, epochs=1, batch_size=self.B, shuffle=False)

    def time_train_epoch(self, name):
        """One shuffled epoch of EPOCH_BATCHES[name] batches in one fit call."""
        self.net.fit(self.X, self.y, epochs=1, batch_size=self.B)

    def track_us_per_step(self, name):
        """Microseconds per step inside an epoch (median of 5 epochs)."""
        n = EPOCH_BATCHES[name]
        times = []
        for _ in range(5):
            t = time.perf_counter()
            self.net.fit(self.X, self.y, epochs=1, batch_size=self.B)
            times.append(time.perf_counter() - t)
        return sorted(times)[2] / n * 1e6

    track_us_per_step.unit = "us"
