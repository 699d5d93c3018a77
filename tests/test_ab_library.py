"""benchmarks/ab_library.py compiles one architecture against two kernel libraries in one
process: each model must run the library it was given, and this tree's library must be
what the other side gets when it is this tree.  Nothing is timed here."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import graphnn as gn
from graphnn.compile import library

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ab_library.py"


def _probe():
    spec = importlib.util.spec_from_file_location("ab_library_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_side_runs_its_own_library():
    probe = _probe()
    ours = library.source(np.float32)
    assert probe.other_source(SCRIPT.parent.parent) == ours      # this tree as the other
    other = ours + "\n# the other library\n"
    nets = probe.compile_pair(gn, library, probe.NETS["tiny"], other)
    assert "# the other library" in nets["other"].backend.library.source
    assert "# the other library" not in nets["this"].backend.library.source
    # afterwards this tree's library is back (its text differs only in the cache flag)
    assert library.library(np.float32).source.replace("cache=True", "cache=False") == ours
    this, other = (nets[side].backend.library for side in ("this", "other"))
    assert this.namespace is not other.namespace
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 2), dtype=np.float32), rng.random((64, 1), dtype=np.float32)
    for net in nets.values():
        net.fit(X, y, epochs=2, batch_size=32, shuffle=False)
    # each side's epoch loop is its own library's
    for side, lib in (("this", this), ("other", other)):
        assert nets[side].backend._epoch is lib.namespace["train_epoch_values"]
    # the same kernels' code on both sides: the same bits
    np.testing.assert_array_equal(nets["this"].params, nets["other"].params)


def test_an_error_leaves_this_library_in_place():
    """A library that fails to build leaves library.source and the process's libraries
    as they were (later models must not run the other tree's kernels)."""
    probe = _probe()
    before = library.library(np.float32)
    with pytest.raises(Exception):
        probe.compile_pair(gn, library, probe.NETS["tiny"], "this is not Python (\n")
    assert library.library(np.float32) is before
    assert "this is not Python" not in library.source(np.float32)
