"""Inference throughput: ``net.predict`` over many rows."""
import time

from . import THREADS
from .compare import NETS, compile_net, make_data, set_threads

PREDICT_ROWS = {"tiny": 100_000, "mnist": 20_000, "wide": 4096}


class Predict:
    params = list(NETS)
    param_names = ["net"]
    timeout = 600
    warmup_time = 0.2

    def setup(self, name):
        import graphnn as gn
        self.net = compile_net(NETS[name])
        self.X, _ = make_data(NETS[name], PREDICT_ROWS[name])
        set_threads(THREADS, gn)
        self.net.predict(self.X)                                        # first touch

    def time_predict(self, name):
        """predict over PREDICT_ROWS[name] rows."""
        self.net.predict(self.X)

    def track_rows_per_second(self, name):
        """Rows per second of predict (median of 5 calls)."""
        times = []
        for _ in range(5):
            t = time.perf_counter()
            self.net.predict(self.X)
            times.append(time.perf_counter() - t)
        return PREDICT_ROWS[name] / sorted(times)[2]

    track_rows_per_second.unit = "rows/s"
