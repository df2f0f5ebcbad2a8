"""Reading DICOM series: file discovery, grouping, sorting, HU conversion, bad inputs, real data."""

from __future__ import annotations

import time

import numpy as np
import pytest
from dicom_factory import SAGITTAL, write_series
from pydicom.uid import JPEG2000Lossless, RLELossless
from sr4zct.errors import GeometryError, InputError, ParameterError
from sr4zct.io import list_series, read_geometry, read_volume


@pytest.mark.parametrize(("thickness", "spacing"), [(3.0, 2.0), (2.0, 2.0), (1.0, 3.0)])
def test_overlap_contiguous_gap(tmp_path, thickness, spacing):
    s = write_series(tmp_path / "ct", n_slices=6, thickness_mm=thickness, spacing_mm=spacing)
    v = read_volume(s.folder)
    g = v.geometry
    assert g.slice_thickness_mm == thickness
    assert g.slice_spacing_mm == pytest.approx(spacing)
    assert g.overlap_mm == pytest.approx(thickness - spacing)
    assert g.thickness_source == "dicom"
    assert g.pixel_spacing_mm == s.pixel_spacing_mm
    assert v.array.dtype == np.float32
    np.testing.assert_array_equal(v.array, s.hu)
    assert g.origin_lps == tuple(s.positions[0])


@pytest.mark.parametrize("file_order", ["reversed", "shuffled"])
def test_sorted_by_position_not_by_file_name(tmp_path, file_order):
    s = write_series(tmp_path / "ct", n_slices=8, file_order=file_order, seed=3)
    v = read_volume(s.folder)
    np.testing.assert_array_equal(v.array, s.hu)
    assert [p for p in v.geometry.extra["files"]] == [str(p) for p in s.paths]
    np.testing.assert_allclose(v.geometry.slice_positions_mm, np.arange(8) * 2.0)


def test_siemens_ima_names_and_files_without_extension_or_preamble(tmp_path):
    s = write_series(tmp_path / "ima", name_pattern="L291.CT.0001.{index:04d}.IMA")
    np.testing.assert_array_equal(read_volume(s.folder).array, s.hu)
    s = write_series(tmp_path / "bare", name_pattern="{index}", preamble=False)
    np.testing.assert_array_equal(read_volume(s.folder).array, s.hu)


def test_non_dicom_files_and_subfolders(tmp_path):
    s = write_series(tmp_path / "ct" / "sub", n_slices=4)
    (tmp_path / "ct" / "README.txt").write_text("not dicom")
    (tmp_path / "ct" / "thumbs.db").write_bytes(b"\x00" * 300)
    (tmp_path / "ct" / "sub" / "notes.json").write_text("{}")
    v = read_volume(tmp_path / "ct")
    np.testing.assert_array_equal(v.array, s.hu)


def test_empty_or_non_dicom_folder(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError, match="No DICOM images"):
        read_geometry(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "missing")


def test_duplicate_copies_of_a_file_are_ignored(tmp_path):
    s = write_series(tmp_path / "ct", n_slices=4)
    (s.folder / "copy.dcm").write_bytes(s.paths[1].read_bytes())
    v = read_volume(s.folder)
    assert v.geometry.n_slices == 4 and v.geometry.is_regular


def test_sagittal_primary_acquisition(tmp_path):
    s = write_series(
        tmp_path / "sag", n_slices=5, orientation=SAGITTAL, spacing_mm=1.5, origin_lps=(30.0, -50.0, 80.0)
    )
    v = read_volume(s.folder)
    g = v.geometry
    assert g.axes_lps == ((-1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))
    assert g.to_dict()["through_plane_axis"].startswith("x")
    assert g.slice_spacing_mm == pytest.approx(1.5)
    np.testing.assert_array_equal(v.array, s.hu)
    # voxel [k, i, j] lies at origin + k d axis0 + i r axis1 + j c axis2
    k, i, j = 3, 2, 4
    p = (
        np.asarray(g.origin_lps)
        + g.slice_positions_mm[k] * np.asarray(g.axes_lps[0])
        + i * g.pixel_spacing_mm[0] * np.asarray(g.axes_lps[1])
        + j * g.pixel_spacing_mm[1] * np.asarray(g.axes_lps[2])
    )
    expected = s.positions[k] + i * 0.5 * np.array([0, 0, -1]) + j * 0.6 * np.array([0, 1, 0])
    np.testing.assert_allclose(p, expected, atol=1e-9)


def test_irregular_spacing_and_tilt_are_reported(tmp_path):
    z = [0.0, 2.0, 4.0, 8.0, 10.0, 12.0]
    s = write_series(tmp_path / "irr", positions=[(0.0, 0.0, v) for v in z])
    g = read_geometry(s.folder)
    assert g.irregular_positions == (2,)
    assert any("Irregular" in w for w in g.warnings)
    s = write_series(tmp_path / "tilt", n_slices=6, tilt_deg=12.0)
    g = read_geometry(s.folder)
    assert g.gantry_tilt_deg == pytest.approx(12.0, abs=1e-3)


def test_several_series_need_a_choice(tmp_path):
    a = write_series(tmp_path, n_slices=4, series_description="soft 3mm", series_number=2)
    b = write_series(
        tmp_path, n_slices=6, series_description="bone 1mm", series_number=3, name_pattern="B{index}.dcm"
    )
    with pytest.raises(InputError) as info:
        read_geometry(tmp_path)
    msg = info.value.message
    assert "2 DICOM series" in msg and "series_uid" in msg and "--" not in msg
    for text in (a.series_uid, b.series_uid, "soft 3mm", "bone 1mm", "4 slice", "6 slice"):
        assert text in msg
    series = list_series(tmp_path)
    assert [(x.series_uid, x.n_slices) for x in series] == [(a.series_uid, 4), (b.series_uid, 6)]
    v = read_volume(tmp_path, series_uid=b.series_uid)
    np.testing.assert_array_equal(v.array, b.hu)
    with pytest.raises(InputError, match="is not in"):
        read_geometry(tmp_path, series_uid="1.2.3")
    # a single file selects its own series
    assert read_geometry(a.paths[0]).series_uid == a.series_uid


def test_missing_thickness_and_user_thickness(tmp_path):
    s = write_series(tmp_path / "ct", thickness_mm=None)
    g = read_geometry(s.folder)
    assert g.slice_thickness_mm is None and g.thickness_source == "missing"
    assert any("thickness_mm" in w for w in g.warnings)
    g = read_geometry(s.folder, thickness_mm=2.5)
    assert g.slice_thickness_mm == 2.5 and g.thickness_source == "user" and g.overlap_mm == pytest.approx(0.5)
    with pytest.raises(ParameterError, match="positive"):
        read_geometry(s.folder, thickness_mm=-1.0)


def test_single_slice_is_a_geometry_error(tmp_path):
    s = write_series(tmp_path / "one", n_slices=1)
    with pytest.raises(GeometryError, match="at least 2 slices"):
        read_volume(s.folder)


def test_missing_positions(tmp_path):
    s = write_series(tmp_path / "nopos", missing_tags=["ImagePositionPatient"])
    with pytest.raises(GeometryError, match="ImagePositionPatient"):
        read_geometry(s.folder)


def test_multiframe_and_rgb_are_refused(tmp_path):
    s = write_series(tmp_path / "mf", number_of_frames=3)
    with pytest.raises(InputError, match="multi-frame"):
        read_geometry(s.folder)
    s = write_series(
        tmp_path / "rgb", samples_per_pixel=3, rescale_intercept=0.0, hu=np.ones((5, 12, 10)) * 50
    )
    with pytest.raises(InputError, match="RGB"):
        read_geometry(s.folder)


def test_rescale_slope_and_intercept(tmp_path):
    hu = np.linspace(-1000, 2000, 5 * 12 * 10).reshape(5, 12, 10).round().astype(np.float32) * 2
    s = write_series(tmp_path / "ct", hu=hu, rescale_slope=2.0, rescale_intercept=-3000.0)
    np.testing.assert_array_equal(read_volume(s.folder).array, hu)


@pytest.mark.parametrize(("syntax", "size"), [(RLELossless, 16), (JPEG2000Lossless, 32)])
def test_compressed_transfer_syntaxes_decode(tmp_path, syntax, size):
    s = write_series(tmp_path / "c", rows=size, columns=size, transfer_syntax=syntax)
    np.testing.assert_array_equal(read_volume(s.folder).array, s.hu)


def test_reference_attributes_are_kept(tmp_path):
    s = write_series(tmp_path / "ct")
    ref = read_geometry(s.folder).extra["dicom"]
    assert ref["StudyInstanceUID"] == s.study_uid
    assert ref["FrameOfReferenceUID"] == s.frame_of_reference_uid
    assert ref["PatientID"] == "SR4ZCT-TEST"
    assert ref["Modality"] == "CT"


@pytest.mark.realdata
def test_l291_geometry_headers_only_and_fast(l291_dir):
    start = time.perf_counter()
    g = read_geometry(l291_dir)
    elapsed = time.perf_counter() - start
    assert g.n_slices == 343 and g.shape == (343, 512, 512)
    assert g.slice_thickness_mm == 3.0 and g.slice_spacing_mm == pytest.approx(2.0)
    assert g.overlap_mm == pytest.approx(1.0)
    assert g.pixel_spacing_mm == (0.7421875, 0.7421875)
    assert g.axes_lps[0] == (0.0, 0.0, 1.0)
    assert g.origin_lps[2] == -746.0 and g.slice_positions_mm[-1] == pytest.approx(684.0)
    assert g.is_regular and g.warnings == ()
    assert elapsed < 20.0  # ~1 s on a laptop; generous for a loaded CI machine


@pytest.mark.realdata
def test_l291_volume_hu(l291_dir):
    v = read_volume(l291_dir)
    assert v.array.shape == (343, 512, 512) and v.array.dtype == np.float32
    assert v.array.min() == -1024.0  # stored 0 with intercept -1024
    # air outside the body, soft tissue near the centre of a mid slice
    assert v.array[170, 5, 5] < -900
    assert -200 < float(np.median(v.array[170, 236:276, 236:276])) < 200


def test_undecodable_pixel_data_names_the_transfer_syntax(tmp_path):
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    s = write_series(tmp_path / "ls", n_slices=3)
    for p in s.paths:
        ds = pydicom.dcmread(p)
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + b"\x00" * 50])
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless
        ds.save_as(p)
    assert read_geometry(s.folder).n_slices == 3  # headers are fine
    with pytest.raises(InputError, match="JPEG-LS Lossless") as info:
        read_volume(s.folder)
    assert "cannot decode the pixel data" in info.value.message


def test_localizer_in_the_same_series_is_ignored(tmp_path):
    s = write_series(tmp_path / "ct", n_slices=5)
    write_series(
        tmp_path / "ct",
        n_slices=1,
        series_uid=s.series_uid,
        orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
        extra_tags={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
        name_pattern="SCOUT{index}.dcm",
    )
    v = read_volume(s.folder)
    np.testing.assert_array_equal(v.array, s.hu)
    assert any("localizer" in w for w in v.geometry.warnings)


def test_reference_attributes_of_one_file_let_a_derived_series_join_its_study(tmp_path):
    from sr4zct.io.dicom import reference_attributes

    s = write_series(tmp_path / "ct")
    reference = reference_attributes(sorted(s.folder.iterdir())[0])
    source = read_volume(s.folder)
    assert reference == source.geometry.extra["dicom"]
    assert reference["StudyInstanceUID"] and reference["FrameOfReferenceUID"]
    with pytest.raises(InputError):
        reference_attributes(tmp_path / "missing.dcm")
