"""benchmarks/precision.py: fp32 against bf16 rows, their bookkeeping and the report section."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import precision as bench  # noqa: E402


def _timing(kind: str, repeat: int, precision: str, **fields) -> dict:
    return {
        "kind": kind,
        "key": f"{kind}|{repeat}|{precision}",
        "repeat": repeat,
        "precision": precision,
        **fields,
    }


def _quality(case: str, variant: str, gain: float, steps: int = 3000, seed: int = 0) -> dict:
    return {
        "kind": "quality", "key": f"quality|{case}|fast|{steps}|{seed}|{variant}", "case": case, "preset": "fast",
        "steps": steps, "seed": seed, "variant": variant, "gain_db": gain, "linear_psnr_box": 41.47,
    }  # fmt: skip


def test_a_timing_part_replaces_all_its_rows_and_quality_rows_merge_by_key():
    old = [
        _timing("l291", 0, "fp32"), _timing("l291", 1, "fp32"), _timing("speed", 0, "fp32"),
        _quality("full", "fp32", 6.0), _quality("neck-soft", "fp32", 5.0),
    ]  # fmt: skip
    new = [_timing("l291", 0, "bf16"), _quality("full", "fp32", 6.1)]
    merged = bench.merge_rows(old, new)
    keys = sorted(r["key"] for r in merged)
    assert keys == sorted(
        ["l291|0|bf16", "speed|0|fp32", "quality|full|fast|3000|0|fp32", "quality|neck-soft|fast|3000|0|fp32"]
    )
    assert next(r for r in merged if r["key"] == "quality|full|fast|3000|0|fp32")["gain_db"] == 6.1


def test_the_section_shows_both_precisions_side_by_side():
    rows = [
        _timing("speed", 0, "fp32", steps=200, steps_per_s=6.0),
        _timing("speed", 0, "bf16", steps=200, steps_per_s=12.0),
        _timing("speed", 1, "fp32", steps=200, steps_per_s=5.0),
        _timing("speed", 1, "bf16", steps=200, steps_per_s=11.0),
        _timing("l291", 0, "fp32", status="ok", wall_s=235.0, train_s=140.0, infer_s=89.0, steps=3000),
        _timing("l291", 0, "bf16", status="ok", wall_s=130.0, train_s=75.0, infer_s=48.0, steps=3000),
        _quality("full", "fp32", 6.30), _quality("full", "bf16", 6.25), _quality("full", "bf16-infer", 6.29),
        _quality("skull-bone", "fp32", 5.00), _quality("skull-bone", "bf16", 4.80),
        _quality("skull-bone", "fp32", 5.10, seed=1), _quality("skull-bone", "bf16", 5.00, seed=1),
        _quality("skull-bone", "fp32", 9.00, seed=2),  # no bf16 run of this seed: left out
        _timing("balanced", 0, "fp32", status="ok", wall_s=362.0, train_s=330.0, steps=2600, gain_db=6.56),
        _timing("balanced", 0, "bf16", status="ok", wall_s=361.0, train_s=330.0, steps=5200, gain_db=7.01),
    ]  # fmt: skip
    rows[0].update(date="d", command="c", machine="m")
    text = bench.section({"rows": rows})
    assert (
        "| training steps/s (`fast`, vhm-head 5/2.5, 200 steps) | 5.50 (5.00 - 6.00) | 11.50 (11.00 - 12.00) | 2.09 |"
        in text
    )
    assert "| L291 `fast`: wall time s | 235 | 130 | 0.55 |" in text
    assert "| full | `fast` | 3000 | 0 | +6.300 | +6.250 | -0.050 | - | -0.010 | yes |" in text
    assert "| skull-bone | `fast` | 3000 | 0,1 | +5.050 | +4.900 | -0.150 | 0.100 | - | **no** |" in text
    assert "| bf16 | 0 | 361 | 330 | 5200 | +7.01 | ok |" in text
    assert "- `speed`: `c` (d); m" in text and "- `l291`: not run" in text


def test_quality_rows_train_each_precision_for_exactly_the_steps():
    from sr4zct.demo.phantom import make_phantom

    truth = make_phantom((40, 48, 48), voxel_mm=1.0, noise_hu=0.0)
    saved = []
    rows = bench.quality_rows(
        truth, cases=["full"], presets=["fast"], steps=6, seeds=[0], log=lambda m: None, save=saved.extend
    )
    assert [r["variant"] for r in rows] == ["fp32", "bf16-infer", "bf16"]
    assert saved == rows
    for r in rows:
        assert r["trained_steps"] == 6 and math.isfinite(r["gain_db"])
        assert r["gain_db"] == pytest.approx(r["psnr_box"] - r["linear_psnr_box"])


def test_steps_per_second_is_measured_after_the_warm_up():
    from sr4zct.demo.phantom import make_phantom

    truth = make_phantom((40, 64, 64), voxel_mm=1.0, noise_hu=0.0)
    _, thick, _ = bench.simulated_case(truth, "full")
    rows = bench.speed_rows(thick, steps=30, repeats=1, log=lambda m: None)
    assert [r["precision"] for r in rows] == ["fp32", "bf16"]
    assert all(r["steps_per_s"] > 0 for r in rows)
