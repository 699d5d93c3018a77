"""benchmarks/compare.py (`graphnn bench`) says how far its ratios can be trusted: the range
of the per-round ratios in the table, and warnings for one round, noisy figures and a busy
machine.  Fabricated results, so nothing is timed here."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "compare.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result(graphnn, numpy, load="0.10", cpus=2):
    ratios = [g / n for g, n in zip(graphnn, numpy)]
    return {
        "config": {"rounds_done": len(graphnn), "epoch_rounds_done": 1},
        "machine": {"cpu": "x", "logical_cpus": cpus, "threads": 2, "python": "3", "graphnn": "0",
                    "numpy": "2", "numba": "0", "scipy": "1", "torch": None, "blas": [],
                    "loadavg_start": [load, "0", "0"], "loadavg_end": ["0.1", "0", "0"]},
        "steps": {"mlp": {"title": "MLP", "samples_steps_per_s": {"graphnn": graphnn,
                                                                  "numpy": numpy},
                          "median_steps_per_s": {"graphnn": graphnn[0], "numpy": numpy[0]},
                          "ratio": {"numpy": ratios[0]}, "ratio_samples": {"numpy": ratios}}},
        "epoch": {"title": "epoch", "samples_s": {"graphnn": [1.0], "numpy": [2.0]},
                  "median_s": {"graphnn": 1.0, "numpy": 2.0}, "ratio": {"numpy": 2.0},
                  "ratio_samples": {"numpy": [2.0]}},
        "gflops": {}, "notes": []}


def test_one_round_warns(compare):
    w = compare.reliability_warnings(result([137.0], [282.0]))
    assert len(w) == 1 and "only 1 round" in w[0] and "one sample" in w[0]


def test_steady_rounds_on_a_quiet_machine_do_not_warn(compare):
    res = result([100.0, 102.0, 101.0], [50.0, 52.0, 50.5])
    assert compare.reliability_warnings(res) == []
    res["warnings"] = []
    table = compare.markdown(res)
    assert "| 2.00× (1.96–2.00) |" in table              # the per-round ratios' range


def test_noisy_figures_and_a_busy_machine_warn(compare):
    w = compare.reliability_warnings(result([100.0, 60.0, 140.0], [50.0, 51.0, 50.5],
                                            load="3.5", cpus=2))
    assert any("noisy" in x and "mlp/graphnn ±40%" in x for x in w)
    assert any("busy" in x and "3.50 on 2" in x for x in w)
    res = result([100.0, 60.0, 140.0], [50.0, 51.0, 50.5], load="3.5")
    res["warnings"] = w
    assert "Warning: the machine was busy" in compare.markdown(res)
