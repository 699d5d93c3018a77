"""The launch helpers every generated CUDA module contains (pasted in as source).

A kernel is configured (grid and block) once per name and shape and kept in ``_launch``;
the shapes come from the arrays at run time, so one module serves every width and batch
size.  ``launch_mm`` picks the BIG or SMALL product tile by the number of blocks; the
others size their blocks by the matrix's columns and rows.
"""
LAUNCH_SOURCE = '''
_launch = {}


def _configure(kernel, grid, block):
    """kernel[grid, block], made once per shape (quietly: small grids are expected here).
    The simulator's kernels hold a single configuration, so there it is set per launch."""
    if SIMULATOR:
        return lambda *args: kernel[grid, block](*args)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Grid size")
        return kernel[grid, block]


def _pow2(k):
    return 1 << max(0, (k - 1).bit_length())


def launch_mm(name, M, N):
    """Product kernel `name` configured for an M x N output (once per shape): the BIG tile
    when it gives every multiprocessor a block, else the SMALL one."""
    key = (name, M, N)
    k = _launch.get(key)
    if k is None:
        bm, bn, tx, ty = BIG
        size = "big"
        if -(-M // bm) * -(-N // bn) < SMS:
            bm, bn, tx, ty = SMALL
            size = "small"
        k = _launch[key] = _configure(globals()[f"{name}_{size}"],
                                      (-(-M // bm), -(-N // bn)), (tx, ty))
    return k


def launch_ew(name, n, w):
    """Elementwise kernel over n x w: x threads along the columns (at most 32), the rest
    of the block and the grid along the rows."""
    key = (name, n, w)
    k = _launch.get(key)
    if k is None:
        bx = min(32, BLOCK, _pow2(w))
        by = BLOCK // bx
        k = _launch[key] = _configure(globals()[name], (-(-w // bx), min(-(-n // by), 65535)),
                                      (bx, by))
    return k


def launch_cols(name, n, w):
    """Column-sum kernel over n x w: a strip of columns per block, the block's y threads
    along all n rows."""
    key = (name, n, w, "cols")
    k = _launch.get(key)
    if k is None:
        bx = min(32, BLOCK, _pow2(w))
        by = min(BLOCK // bx, _pow2(n))
        k = _launch[key] = _configure(globals()[name], (-(-w // bx), 1), (bx, by))
    return k


def launch_rows(name, n):
    """A thread per row."""
    key = (name, n, "rows")
    k = _launch.get(key)
    if k is None:
        b = min(BLOCK, _pow2(n))
        k = _launch[key] = _configure(globals()[name], -(-n // b), b)
    return k


def launch_one(name, size):
    """One block (a reduction over `size` elements)."""
    key = (name, size, "one")
    k = _launch.get(key)
    if k is None:
        k = _launch[key] = _configure(globals()[name], 1, min(BLOCK, _pow2(size)))
    return k


def launch_flat(name, size):
    """A thread per element of a flat buffer (grid-stride, at most 32 blocks per
    multiprocessor)."""
    key = (name, size, "flat")
    k = _launch.get(key)
    if k is None:
        b = min(BLOCK, _pow2(size))
        k = _launch[key] = _configure(globals()[name], min(-(-size // b), 32 * SMS), b)
    return k'''

