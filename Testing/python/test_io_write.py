"""Writing: derived DICOM series round trip, atomic output, refusal of unsafe outputs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import psutil
import pydicom
import pytest
from dicom_factory import SAGITTAL, write_series
from sr4zct.errors import OutputError
from sr4zct.io import read_volume, write_volume
from sr4zct.io.atomic import (
    atomic_output,
    check_output_path,
    remove_stale_temporaries,
    temporary_name,
    write_text_atomic,
)
from sr4zct.io.dicom_writer import rescale_for_int16
from sr4zct.volume import Volume, make_geometry


def leftovers(folder):
    return [p.name for p in folder.rglob("*") if "sr4zct-tmp" in p.name]


@pytest.mark.parametrize("orientation", [(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), SAGITTAL])
def test_dicom_round_trip(tmp_path, orientation):
    s = write_series(tmp_path / "in", n_slices=7, thickness_mm=3.0, spacing_mm=2.0, orientation=orientation)
    v = read_volume(s.folder)
    out = write_volume(v, tmp_path / "out", metadata={"slice_thickness_mm": 3.0, "preset": "fast"})
    back = read_volume(out)
    g, gb = v.geometry, back.geometry
    np.testing.assert_array_equal(back.array, v.array)
    assert gb.origin_lps == pytest.approx(g.origin_lps, abs=1e-9)
    assert gb.axes_lps == g.axes_lps
    assert gb.slice_positions_mm == pytest.approx(g.slice_positions_mm, abs=1e-9)
    assert gb.pixel_spacing_mm == g.pixel_spacing_mm
    assert gb.slice_thickness_mm == 3.0 and gb.slice_spacing_mm == pytest.approx(2.0)
    # same patient/study/frame of reference, new series
    assert gb.series_uid != s.series_uid
    assert gb.extra["dicom"]["StudyInstanceUID"] == s.study_uid
    assert gb.extra["dicom"]["FrameOfReferenceUID"] == s.frame_of_reference_uid
    assert gb.extra["dicom"]["PatientID"] == "SR4ZCT-TEST"
    ds = pydicom.dcmread(next(out.iterdir()))
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "preset=fast" in ds.ImageComments and "preset=fast" in ds.DerivationDescription
    assert float(ds.SpacingBetweenSlices) == pytest.approx(2.0)
    assert ds.SeriesDescription == "synthetic SR4ZCT"
    sops = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in out.iterdir()}
    assert len(sops) == 7 and not (sops & {pydicom.dcmread(p).SOPInstanceUID for p in s.paths})


def test_dicom_from_made_geometry_float_hu_and_default_thickness(tmp_path):
    g = make_geometry(
        (5, 4, 3), slice_spacing_mm=0.75, pixel_spacing_mm=(0.5, 0.5), origin_lps=(1.0, 2.0, -3.5)
    )
    hu = np.linspace(-1024.4, 3000.6, 60, dtype=np.float32).reshape(5, 4, 3)
    out = write_volume(Volume(hu, g), tmp_path / "derived")
    back = read_volume(out)
    np.testing.assert_allclose(back.array, np.round(hu), atol=0.5)
    assert back.geometry.slice_thickness_mm == pytest.approx(0.75)  # thickness unknown: the slice spacing
    assert back.geometry.slice_positions_mm == pytest.approx(np.arange(5) * 0.75)
    assert back.geometry.origin_lps == pytest.approx((1.0, 2.0, -3.5))
    ds = pydicom.dcmread(next(out.iterdir()))
    assert ds.StudyInstanceUID and ds.FrameOfReferenceUID  # new ones


def test_slice_thickness_and_description_sources(tmp_path):
    g = make_geometry((3, 2, 2), slice_spacing_mm=2.0, slice_thickness_mm=5.0)
    v = Volume(np.zeros((3, 2, 2), np.float32), g)
    back = read_volume(write_volume(v, tmp_path / "a", metadata={"SeriesDescription": "thick input"}))
    assert back.geometry.slice_thickness_mm == 5.0  # from the geometry
    assert back.geometry.description == "thick input"
    back = read_volume(write_volume(v, tmp_path / "b", metadata={"slice_thickness_mm": 4.0}))
    assert back.geometry.slice_thickness_mm == 4.0  # metadata wins


def test_wide_range_uses_a_rescale_slope(tmp_path):
    slope, intercept = rescale_for_int16(np.array([-50000.0, 80000.0]))
    assert slope > 1
    g = make_geometry((2, 2, 2), slice_spacing_mm=1.0)
    hu = np.array([-50000.0, 80000.0, 0, 1, 2, 3, 4, 5], np.float32).reshape(2, 2, 2)
    back = read_volume(write_volume(Volume(hu, g), tmp_path / "wide"))
    np.testing.assert_allclose(back.array, hu, atol=slope)


def test_dicom_output_refusals(tmp_path):
    s = write_series(tmp_path / "in", n_slices=3)
    v = read_volume(s.folder)
    with pytest.raises(OutputError, match="inside the input folder"):
        write_volume(v, s.folder / "enhanced")
    with pytest.raises(OutputError, match="is the input"):
        write_volume(v, s.folder, overwrite=True)
    with pytest.raises(OutputError, match="contains the input"):
        write_volume(v, tmp_path, overwrite=True)
    out = write_volume(v, tmp_path / "out")
    with pytest.raises(OutputError, match="overwrite=True"):
        write_volume(v, out)
    # overwrite replaces a previous output but never a folder holding other files
    write_volume(v, out, overwrite=True)
    assert len(list(out.iterdir())) == 3
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not DICOM"):
        write_volume(v, out, overwrite=True)
    assert (out / "notes.txt").exists()
    # an existing empty folder is fine
    (tmp_path / "empty").mkdir()
    assert len(list(write_volume(v, tmp_path / "empty").iterdir())) == 3
    assert leftovers(tmp_path) == []


def test_existing_file_refused_then_overwritten(tmp_path):
    g = make_geometry((2, 2, 2), slice_spacing_mm=1.0)
    v = Volume(np.zeros((2, 2, 2), np.float32), g)
    path = tmp_path / "a.nrrd"
    path.write_text("old")
    with pytest.raises(OutputError, match="exists"):
        write_volume(v, path)
    # overwrite=True replaces only what SR4ZCT wrote
    with pytest.raises(OutputError, match="so it is not a previous output of SR4ZCT"):
        write_volume(v, path, overwrite=True)
    assert path.read_text() == "old"
    ours = write_volume(v, tmp_path / "b.nrrd")
    before = ours.read_bytes()
    write_volume(Volume(np.ones((2, 2, 2), np.float32), g), ours, overwrite=True)
    assert ours.read_bytes() != before and read_volume(ours, slice_axis=0).array.max() == 1.0
    assert leftovers(tmp_path) == []
    with pytest.raises(OutputError, match="use .nrrd, .mha, .nii or .nii.gz"):
        write_volume(v, tmp_path / "a.mhd")


def test_failure_leaves_nothing_behind(tmp_path):
    target = tmp_path / "x.nii.gz"
    with pytest.raises(RuntimeError), atomic_output(target, extra_suffixes=(".json",)) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"partial")
        tmp.with_name(tmp.name.replace(".nii.gz", ".json")).write_text("{}")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    folder = tmp_path / "series"
    with pytest.raises(RuntimeError), atomic_output(folder, directory=True) as tmp:
        (tmp / "IM1.dcm").write_bytes(b"x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(OutputError, match="not writable"):
            check_output_path(ro / "a.nrrd")
    finally:
        os.chmod(ro, 0o700)


def test_os_errors_become_output_errors_without_leftovers(tmp_path):
    import errno

    with (
        pytest.raises(OutputError, match="disk is full"),
        atomic_output(tmp_path / "s", directory=True) as tmp,
    ):
        (tmp / "IM1.dcm").write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_write_text_atomic(tmp_path):
    p = write_text_atomic(tmp_path / "r.json", '{"sr4zct_version": "1"}')
    assert p.read_text() == '{"sr4zct_version": "1"}'
    with pytest.raises(OutputError):
        write_text_atomic(p, "{1}")
    write_text_atomic(p, "[]", overwrite=True)  # an SR4ZCT report (it names the version) is replaced
    assert p.read_text() == "[]" and leftovers(tmp_path) == []
    with pytest.raises(OutputError, match="it is not an SR4ZCT report"):
        write_text_atomic(p, "{}", overwrite=True)  # ... a JSON file of someone else is not
    assert p.read_text() == "[]"


def test_tilted_series_round_trips_through_nrrd_and_dicom_but_not_nifti(tmp_path):
    s = write_series(tmp_path / "in", n_slices=5, tilt_deg=15.0)
    v = read_volume(s.folder)
    assert v.geometry.gantry_tilt_deg == pytest.approx(15.0, abs=1e-6)
    for out in (write_volume(v, tmp_path / "t.nrrd"), write_volume(v, tmp_path / "t_dcm")):
        back = read_volume(out, thickness_mm=3.0)
        np.testing.assert_array_equal(back.array, v.array)
        np.testing.assert_allclose(back.geometry.axes_lps, v.geometry.axes_lps, atol=1e-9)
        np.testing.assert_allclose(back.geometry.origin_lps, v.geometry.origin_lps, atol=1e-9)
        assert back.geometry.gantry_tilt_deg == pytest.approx(15.0, abs=1e-6)
    with pytest.raises(OutputError, match="sheared"):
        write_volume(v, tmp_path / "t.nii.gz")
    assert not (tmp_path / "t.nii.gz").exists() and leftovers(tmp_path) == []


def test_check_output_before_computing(tmp_path):
    from sr4zct.io import check_output

    s = write_series(tmp_path / "in", n_slices=3)
    with pytest.raises(OutputError, match="inside the input folder"):
        check_output(s.folder / "out", input_path=s.paths[0])  # a DICOM file stands for its folder
    with pytest.raises(OutputError, match="is the input"):
        check_output(s.folder, input_path=s.folder, overwrite=True)
    with pytest.raises(OutputError, match="use .nrrd"):
        check_output(tmp_path / "x.mhd")
    (tmp_path / "x.nrrd").write_text("old")
    with pytest.raises(OutputError, match="exists"):
        check_output(tmp_path / "x.nrrd", input_path=s.folder)
    with pytest.raises(OutputError, match="Refusing to replace"):
        check_output(tmp_path / "x.nrrd", input_path=s.folder, overwrite=True)
    ours = write_volume(read_volume(s.folder), tmp_path / "y.nrrd")
    assert check_output(ours, input_path=s.folder, overwrite=True) == ours
    assert check_output(tmp_path / "new_series", input_path=s.folder) == tmp_path / "new_series"
    assert not (tmp_path / "new_series").exists()


# -- stale temporaries of killed writers -------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not psutil.pid_exists(proc.pid)
    return proc.pid


def test_temporary_name_names_its_writer(tmp_path):
    tmp = temporary_name(tmp_path / "ct.nii.gz")
    assert tmp.parent == tmp_path and tmp.name.startswith(".ct.sr4zct-tmp-") and tmp.name.endswith(".nii.gz")
    host, pid, random = tmp.name[len(".ct.sr4zct-tmp-") : -len(".nii.gz")].split("-")
    assert len(host) == 8 and int(pid) == os.getpid() and len(random) == 12
    assert temporary_name(tmp_path / "ct.nii.gz") != tmp


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    host = temporary_name(tmp_path / "x").name.split("-")[2]
    dead = _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:

        def make(name, folder=False):
            path = tmp_path / name
            path.mkdir() if folder else path.write_bytes(b"partial")
            return path

        stale = [
            make(f".ct.sr4zct-tmp-{host}-{dead}-0123456789ab.nii.gz"),
            make(f".ct.sr4zct-tmp-{host}-{dead}-0123456789ab.json"),  # its NIfTI sidecar
        ]
        kept = [
            make(f".ct.sr4zct-tmp-{host}-{live.pid}-0123456789ab.nii.gz"),  # a writer still running
            make(f".ct.sr4zct-tmp-{'f' * 8 if host != 'f' * 8 else 'e' * 8}-{dead}-0123456789ab.nii.gz"),
            make(f".other.sr4zct-tmp-{host}-{dead}-0123456789ab.nii.gz"),  # another target
            make(".ct.sr4zct-tmp-0123456789ab.nii.gz"),  # no writer recorded
            make(f".ct.nii.sr4zct-tmp-{host}-{dead}-0123456789ab.gz"),
        ]
        g = make_geometry((2, 3, 3), slice_spacing_mm=1.0)
        write_volume(Volume(np.zeros((2, 3, 3), np.float32), g), tmp_path / "ct.nii.gz")
        assert not any(p.exists() for p in stale)
        assert all(p.exists() for p in kept)
        assert (tmp_path / "ct.nii.gz").is_file() and (tmp_path / "ct.json").is_file()

        # A DICOM folder output: a stale temporary folder (with files in it) of the same target goes too.
        series = make(f".series.sr4zct-tmp-{host}-{dead}-0123456789ab", folder=True)
        (series / "IM1.dcm").write_bytes(b"x")
        live_series = make(f".series.sr4zct-tmp-{host}-{live.pid}-0123456789ab", folder=True)
        with atomic_output(tmp_path / "series", directory=True) as tmp:
            (tmp / "IM1.dcm").write_bytes(b"y")
        assert not series.exists() and live_series.is_dir()
        assert (tmp_path / "series" / "IM1.dcm").read_bytes() == b"y"
    finally:
        live.kill()
        live.wait()


def test_remove_stale_temporaries_reports_and_tolerates_a_missing_folder(tmp_path):
    host = temporary_name(tmp_path / "x").name.split("-")[2]
    dead = _dead_pid()
    stale = tmp_path / f".r.sr4zct-tmp-{host}-{dead}-0123456789ab.json"
    stale.write_text("{")
    mine = temporary_name(tmp_path / "r.json")
    mine.write_text("{")  # this process is alive: kept
    assert remove_stale_temporaries(tmp_path / "r.json") == [stale]
    assert mine.exists()
    assert remove_stale_temporaries(tmp_path / "missing" / "r.json") == []
