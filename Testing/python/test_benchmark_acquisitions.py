"""benchmarks.acquisitions: cases, the estimate rows and the report's tables and targets."""

from __future__ import annotations

import numpy as np
import pytest
from sr4zct.volume import Volume, make_geometry
from test_profile import isotropic_texture

from benchmarks import acquisitions as acq


def _volume(array):
    geometry = make_geometry(
        array.shape, slice_spacing_mm=1.0, pixel_spacing_mm=(1.0, 1.0), slice_thickness_mm=1.0
    )
    return Volume(array, geometry)


def test_restacked_cases_put_another_axis_along_the_slices(monkeypatch):
    whole = _volume(np.arange(250 * 4 * 6, dtype=np.float32).reshape(250, 4, 6))
    monkeypatch.setitem(acq.CASES, "skull", {"label": "skull", "region": (125, 245, 0, 4, 0, 6)})
    monkeypatch.setitem(acq.CASES, "neck", {"label": "neck", "region": (0, 120, 0, 4, 0, 6)})
    rows = acq.ground_truth(whole, "skull-rows")
    assert rows.array.shape == (4, 120, 6)
    np.testing.assert_array_equal(rows.array[:, 0, :], whole.array[125, :, :])
    assert acq.ground_truth(whole, "skull-columns").array.shape == (6, 120, 4)
    assert acq.ground_truth(whole, "neck").array.shape == (120, 4, 6)


def test_an_estimate_row_scores_the_estimate_against_the_truth():
    gt = _volume(isotropic_texture((96, 128, 128)))
    row = acq.estimate_row(gt, "texture", 5.0, 2.5, "gaussian", "8HU")
    assert row["ok"] and row["family"] == "gaussian" and abs(row["error"]) <= acq.TOLERANCE
    assert row["noise_sigma_hu"] == pytest.approx(8.0, rel=0.3)
    assert row["key"] == "estimate|texture|5/2.5|gaussian|8HU"


def _estimate(case, profile, family, fwhm, noise="clean"):
    error = fwhm / 5.0 - 1.0
    return {"kind": "estimate", "case": case, "thickness_mm": 5.0, "overlap_mm": 2.5, "profile": profile,
            "noise": noise, "family": family, "fwhm_mm": fwhm, "error": error,
            "ok": family == profile and abs(error) <= 0.15}  # fmt: skip


def test_the_estimate_tables_mark_what_is_off():
    rows = [
        _estimate("a", "box", "box", 5.1),
        _estimate("a", "gaussian", "box", 5.0),
        _estimate("b", "box", "box", 6.0),
    ]
    table = "\n".join(acq.estimate_table(rows))
    assert "| a | 5 / 2.5 | B 5.10 | B 5.00 ✗ |" in table and "| b | 5 / 2.5 | B 6.00 ✗ |" in table
    summary = "\n".join(acq.estimate_summary(rows))
    assert "| all (3) | 2 | 2 | 1 |" in summary


def _quality(profile, noise, variant, gain, ssim, linear_ssim=0.9):
    return {"kind": "acq-quality", "case": "c", "thickness_mm": 5.0, "overlap_mm": 2.5, "profile": profile,
            "noise": noise, "variant": variant, "gain_db": gain, "ssim": ssim, "psnr_db": 30.0 + gain,
            "linear_ssim": linear_ssim, "steps": 100}  # fmt: skip


def test_the_quality_targets_are_counted():
    rows = [
        _quality("gaussian", "clean", "linear", 0.0, 0.9),
        _quality("gaussian", "clean", "before", 3.0, 0.95),
        _quality("gaussian", "clean", "default", 7.5, 0.97),
        _quality("gaussian", "clean", "right", 8.0, 0.97),
        _quality("box", "8HU", "linear", 0.0, 0.9),
        _quality("box", "8HU", "before", 4.0, 0.89),
        _quality("box", "8HU", "default", 3.7, 0.93),
        _quality("box", "8HU", "scan-mode", 4.1, 0.92),
    ]
    checks = "\n".join(acq.quality_checks(rows))
    assert "| default: gaussian: within 1 dB of the right profile | 1 of 1 |" in checks
    assert "| default: box: >= before - 0.2 dB | 0 of 1 |" in checks
    assert "| default: noisy: SSIM > linear's | 1 of 1 |" in checks
    assert "| default: noisy: gain >= before's | 0 of 1 |" in checks
    assert "| default: gain over linear, minimum and median | +3.70 dB, +5.60 dB |" in checks
    assert "| scan mode in the header: box: >= before - 0.2 dB | 1 of 1 |" in checks
    assert "| scan mode in the header: noisy: gain >= before's | 1 of 1 |" in checks
    assert "scan mode in the header: gaussian" not in checks  # no such run: not counted as 0 of 0
    table = "\n".join(acq.quality_table(rows))
    assert (
        "| c | 5 / 2.5 mm box | 8HU | 30.00 dB, 0.900 | +4.00 dB, 0.890 | +3.70 dB, 0.930 | +4.00 dB, 0.890 "
        "| +4.10 dB, 0.920 |" in table
    )


def test_the_report_section_is_written_and_kept(tmp_path):
    results = {"runs": [{"command": "python -m benchmarks.acquisitions", "date": "today"}], "rows": {}}
    for i, row in enumerate(
        [_estimate("a", "box", "box", 5.1), _quality("box", "clean", "linear", 0.0, 0.9)]
    ):
        results["rows"][str(i)] = row
    text = acq.report(results)
    assert (
        "### The slice profile estimated from the scan" in text and "### Quality with default options" in text
    )
    out = tmp_path / "B.md"
    out.write_text("# Benchmarks\n", encoding="utf-8")
    acq.write_section(acq.SECTION, text, out)
    assert out.read_text(encoding="utf-8").count("<!-- acquisitions:begin -->") == 1


def _time_row(repeat, variant, wall_s, steps=3000):
    return {"kind": "acq-time", "key": f"acq-time|{repeat}|{variant}", "repeat": repeat, "variant": variant,
            "wall_s": wall_s, "prepare_s": 1.0, "train_s": wall_s / 2, "infer_s": wall_s / 3, "steps": steps}  # fmt: skip


def test_the_time_table_compares_medians_against_the_target():
    rows = [_time_row(0, "before", 100.0), _time_row(0, "default", 104.0), _time_row(1, "before", 120.0),
            _time_row(1, "default", 116.0), _time_row(2, "before", 300.0), _time_row(2, "default", 110.0)]  # fmt: skip
    text = "\n".join(acq.time_table(rows))
    assert "| wall s | 120.0 | 110.0 |" in text
    assert "0.917 (target at most 1.10: met)" in text
    slow = [_time_row(0, "before", 100.0), _time_row(0, "default", 111.0)]
    assert "1.110 (target at most 1.10: **not met**)" in "\n".join(acq.time_table(slow))


def test_the_report_shows_the_time_part_only_when_it_ran():
    results = {
        "runs": [{"command": "python -m benchmarks.acquisitions --parts time", "date": "d"}],
        "rows": {},
    }
    assert "What the estimates cost" not in acq.report(results)
    results["rows"] = {r["key"]: r for r in (_time_row(0, "before", 100.0), _time_row(0, "default", 101.0))}
    assert "What the estimates cost" in acq.report(results)


def test_the_real_series_line_says_what_fixed_the_family():
    row = {
        "status": "ok", "nominal_mm": 3.0, "spacing_mm": 2.0, "family": "gaussian", "fwhm_mm": 3.15,
        "range_mm": [3.05, 3.37], "family_margin": 0.5, "family_source": "helical scan", "scan_mode": "helical",
        "scan_mode_source": "SpiralPitchFactor 0.8", "seconds": 2.0, "noise_sigma_hu": 36.3,
        "noise_correlation": 0.55, "predicted_correlation": {"box": 0.33, "gaussian": 0.54},
    }  # fmt: skip
    line = acq.real_lines(row)[0]
    assert "the scan mode fixes the family: helical (DICOM SpiralPitchFactor 0.8)" in line
    assert "the images alone disagree (the other family fits 2.0 x better)" in line
    assert "0.54 with a Gaussian of FWHM 3 mm, 0.33 with a box" in line
    assert (
        "from the images; the other family fits 37.0 x worse"
        in acq.real_lines({**row, "family_source": "images", "family_margin": 37.0})[0]
    )
