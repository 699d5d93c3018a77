"""Launch configuration of the CUDA kernels: the matrix-product tiles and the block size.

These numbers shape the kernels (they are literals in the generated source: shared-memory
sizes, unrolled register blocks), so they are part of what a module is keyed by; the
model's widths and batch size are not (they reach the kernels as array shapes).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    """A matrix-product tile: a block computes ``bm x bn`` outputs, ``bk`` deep per stage;
    each thread computes ``tm x tn`` of them (rows strided by bm/tm, columns by bn/tn)."""
    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    @property
    def threads(self) -> tuple[int, int]:
        """(x, y) threads per block: x along the output's columns."""
        return self.bn // self.tn, self.bm // self.tm

    def check(self):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                   for v in (self.bm, self.bn, self.bk, self.tm, self.tn)):
            raise ValueError(f"bad matrix-product tile {self}: sizes must be positive integers")
        tx, ty = self.threads
        t = tx * ty
        ok = (self.bm % self.tm == 0 and self.bn % self.tn == 0 and t <= 1024
              and (self.bm * self.bk) % t == 0 and (self.bk * self.bn) % t == 0)
        if not ok:
            raise ValueError(f"bad matrix-product tile {self}: need bm % tm == bn % tn == 0, "
                             "at most 1024 threads, and both staged tiles divisible by the threads")
        return self


@dataclass(frozen=True)
class Config:
    """Kernel shapes.  ``big`` is used for a product when it gives at least one block per
    multiprocessor, ``small`` otherwise; ``block`` threads for every other kernel (a
    power of two)."""
    big: Tile = Tile(64, 64, 16, 4, 4)
    small: Tile = Tile(32, 32, 16, 2, 2)
    block: int = 256

    def check(self):
        if not isinstance(self.big, Tile) or not isinstance(self.small, Tile):
            raise ValueError(f"Config.big and Config.small must be Tiles, got {self}")
        self.big.check()
        self.small.check()
        if (not isinstance(self.block, int) or self.block < 1 or self.block & (self.block - 1)
                or self.block > 1024):
            raise ValueError(f"Config.block must be a power of two <= 1024, got {self.block}")
        return self


# What CudaBackend uses (read when a backend is made: tests and benchmarks may set it).
CONFIG = Config()
# under the simulator, when CONFIG is left as it is: few threads per block
SIMULATOR_CONFIG = Config(big=Tile(8, 8, 8, 2, 2), small=Tile(4, 4, 4, 1, 1), block=32)
