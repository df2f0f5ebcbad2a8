"""``sr4zct info``: readable report and JSON record, through ``cli.main``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_factory import write_series
from sr4zct.cli import main
from sr4zct.cli.info import overlap_meaning


def run_info(capsys, *args):
    code = main(["info", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("thickness", "spacing", "meaning"),
    [(3.0, 2.0, "overlapping"), (2.0, 2.0, "contiguous"), (1.0, 2.5, "gap")],
)
def test_readable_report(tmp_path, capsys, thickness, spacing, meaning):
    s = write_series(tmp_path / "ct", n_slices=5, thickness_mm=thickness, spacing_mm=spacing)
    code, out, _ = run_info(capsys, s.folder)
    assert code == 0
    assert f"Slice thickness:   {thickness:g} mm" in out
    assert f"Slice spacing:     {spacing:g} mm" in out
    assert f"({meaning}:" in out
    assert "Slices:            5 of 12 x 10" in out
    assert "0.5 x 0.6 mm" in out
    assert "z (S-I)" in out


def test_overlap_meaning():
    assert overlap_meaning(1.0) == "overlapping"
    assert overlap_meaning(0.001) == "contiguous"
    assert overlap_meaning(-0.5) == "gap"
    assert overlap_meaning(None) == "unknown"


def test_missing_thickness_says_how_to_give_it(tmp_path, capsys):
    s = write_series(tmp_path / "ct", thickness_mm=None)
    code, out, _ = run_info(capsys, s.folder)
    assert code == 0
    assert "MISSING" in out and "--thickness MM" in out
    code, out, _ = run_info(capsys, s.folder, "--thickness", "2.5", "--json")
    record = json.loads(out)
    assert record["slice_thickness_mm"] == 2.5 and record["thickness_source"] == "user"
    assert record["overlap_mm"] == pytest.approx(0.5)


def test_warnings_are_printed(tmp_path, capsys):
    z = [0.0, 2.0, 4.0, 8.0, 10.0]
    s = write_series(tmp_path / "ct", positions=[(0.0, 0.0, v) for v in z])
    code, out, _ = run_info(capsys, s.folder)
    assert code == 0 and "IRREGULAR" in out and "Irregular slice spacing" in out


def test_errors_exit_with_the_error_code(tmp_path, capsys):
    write_series(tmp_path, n_slices=3, series_description="a")
    b = write_series(tmp_path, n_slices=4, series_description="b", name_pattern="B{index}.dcm")
    code, out, err = run_info(capsys, tmp_path)
    assert code == 2 and out == "" and "choose one with --series" in err and "Traceback" not in err
    code, out, _ = run_info(capsys, tmp_path, "--series", b.series_uid, "--json")
    assert code == 0 and json.loads(out)["num_slices"] == 4
    code, _, err = run_info(capsys, tmp_path / "nothing")
    assert code == 2 and "does not exist" in err
    one = write_series(tmp_path / "one", n_slices=1)
    code, _, err = run_info(capsys, one.folder)
    assert code == 3 and "at least 2 slices" in err


def test_image_file(tmp_path, capsys):
    image = sitk.GetImageFromArray(np.zeros((4, 3, 5), np.float32))
    image.SetSpacing((0.8, 0.8, 5.0))
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    code, out, _ = run_info(capsys, path, "--thickness", "5", "--json")
    record = json.loads(out)
    assert code == 0
    assert record["shape"] == [4, 3, 5] and record["slice_spacing_mm"] == 5.0
    assert record["overlap_mm"] == 0.0 and record["through_plane_axis"].startswith("z")


@pytest.mark.realdata
def test_l291_json(l291_dir, capsys):
    code, out, _ = run_info(capsys, l291_dir, "--json")
    assert code == 0
    record = json.loads(out)
    assert record["slice_thickness_mm"] == 3.0
    assert record["slice_spacing_mm"] == pytest.approx(2.0)
    assert record["overlap_mm"] == pytest.approx(1.0)
    assert record["num_slices"] == 343
    assert record["pixel_spacing_mm"] == [0.7421875, 0.7421875]
    assert record["through_plane_axis"].startswith("z")
    assert record["thickness_source"] == "dicom"
    assert record["regular_spacing"] is True and record["warnings"] == []


@pytest.mark.realdata
def test_l291_readable(l291_dir, capsys):
    code, out, _ = run_info(capsys, l291_dir)
    assert code == 0
    assert "Slice thickness:   3 mm" in out and "Overlap T - d:     1 mm (overlapping" in out
    assert "343 of 512 x 512" in out and "0.7421875 x 0.7421875 mm" in out


def test_output_piped_into_a_closed_reader_is_not_an_error(tmp_path):
    """`sr4zct info X | head -1`: the reader closes the pipe early; no traceback, exit 0."""
    import subprocess
    import sys

    write_series(tmp_path / "s", n_slices=5)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sr4zct", "info", str(tmp_path / "s")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
