"""The acquisition benchmark runs on a small stack and reports consistent figures (no timing assertions)."""

from __future__ import annotations

import math

from benchmarks.bench_acquisition import run


def test_bench_acquisition_quick_run_reports_figures():
    figures = run(shape=(3, 40, 12), oracle_columns=2, repeats=1, device="cpu", verbose=False)
    assert figures["shape"] == [3, 40, 12]
    assert set(figures["profiles"]) == {"box", "gaussian"}
    for name, entry in figures["profiles"].items():
        assert entry["fast_s"] > 0 and entry["naive_s"] > 0, name
        assert math.isclose(entry["naive_s"], entry["oracle_per_column_s"] * 3 * 12, rel_tol=1e-9)
        assert math.isclose(entry["speedup"], entry["naive_s"] / entry["fast_s"], rel_tol=1e-9)
        assert entry["max_rel_difference"] < 1e-5  # the two implementations agree on the sample
    assert figures["speedup"] == figures["profiles"]["box"]["speedup"]
    assert "extrapolated" in figures["note"]
