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
    ]
    checks = "\n".join(acq.quality_checks(rows))
    assert "| gaussian: default within 1 dB of the right profile | 1 of 1 |" in checks
    assert "| box: default >= before - 0.2 dB | 0 of 1 |" in checks
    assert "| noisy: default SSIM > linear's | 1 of 1 |" in checks
    assert "| noisy: default gain >= before's | 0 of 1 |" in checks
    assert "+3.70 dB, +5.60 dB" in checks
    table = "\n".join(acq.quality_table(rows))
    assert (
        "| c | 5 / 2.5 mm box | 8HU | 30.00 dB, 0.900 | +4.00 dB, 0.890 | +3.70 dB, 0.930 | +4.00 dB, 0.890 |"
        in table
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
