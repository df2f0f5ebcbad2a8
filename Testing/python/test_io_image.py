"""NRRD / NIfTI / MHA: axis reordering to (slice, row, column), exact geometry round trips, thickness."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from sr4zct.errors import InputError, OutputError, ParameterError
from sr4zct.io import read_geometry, read_volume, write_volume
from sr4zct.io.image import choose_slice_axis, sidecar_path
from sr4zct.volume import Volume, make_geometry

SUFFIXES = (".nrrd", ".mha", ".nii", ".nii.gz")


def oblique_direction(angle=0.3):
    """Rotation about x by ``angle`` then about z by 0.2 rad: no axis is patient-aligned."""
    rx = np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]])
    rz = np.array([[math.cos(0.2), -math.sin(0.2), 0], [math.sin(0.2), math.cos(0.2), 0], [0, 0, 1]])
    return rz @ rx


def write_sitk(path, array, spacing_xyz, origin, direction, meta=None):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    image.SetDirection(np.asarray(direction, dtype=float).ravel().tolist())
    for k, v in (meta or {}).items():
        image.SetMetaData(k, v)
    sitk.WriteImage(image, str(path))
    return image


def assert_same_geometry(a: sitk.Image, b: sitk.Image, suffix: str):
    assert a.GetSize() == b.GetSize()
    if suffix in (".mha",):
        assert a.GetSpacing() == b.GetSpacing()
        assert a.GetOrigin() == b.GetOrigin()
        assert a.GetDirection() == b.GetDirection()
    else:
        # NRRD stores spacing * direction (one rounding), NIfTI float32; both reproduce to ~1 ulp of their storage
        tol = 1e-12 if suffix == ".nrrd" else 1e-6
        np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=tol, atol=tol)
        np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), rtol=tol, atol=tol)
        np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), rtol=tol, atol=tol)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_axial_file_reads_without_reordering(tmp_path, suffix):
    arr = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32) * 100
    path = tmp_path / f"ct{suffix}"
    write_sitk(path, arr, (0.7, 0.8, 2.5), (-10.5, 20.25, -300.0), np.eye(3))
    v = read_volume(path, thickness_mm=3.0)
    g = v.geometry
    assert g.source_slice_axis == 0
    np.testing.assert_array_equal(v.array, arr)
    assert g.spacing_mm == pytest.approx((2.5, 0.8, 0.7))
    assert g.axes_lps == ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))
    assert g.origin_lps == pytest.approx((-10.5, 20.25, -300.0))
    assert g.slice_thickness_mm == 3.0 and g.thickness_source == "user"
    assert g.overlap_mm == pytest.approx(0.5)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_oblique_and_anisotropic_axis_not_first(tmp_path, suffix):
    """Thick axis = ITK x (NumPy axis 2), oblique direction: read -> Volume -> write restores everything."""
    arr = np.random.default_rng(1).normal(size=(6, 5, 4)).astype(np.float32)
    d = oblique_direction()
    src = tmp_path / f"in{suffix}"
    write_sitk(src, arr, (3.3, 0.7, 0.8), (1.1, -2.2, 3.3), d)
    original = sitk.ReadImage(str(src))
    v = read_volume(src, thickness_mm=4.0)
    g = v.geometry
    assert g.source_slice_axis == 2
    assert v.array.shape == (4, 6, 5)
    np.testing.assert_array_equal(v.array, np.transpose(arr, (2, 0, 1)))
    assert g.slice_spacing_mm == pytest.approx(3.3)
    np.testing.assert_allclose(g.axes_lps[0], d[:, 0], atol=1e-6)  # ITK x direction
    np.testing.assert_allclose(g.axes_lps[1], d[:, 2], atol=1e-6)  # then NumPy axis 0 = ITK z
    np.testing.assert_allclose(g.axes_lps[2], d[:, 1], atol=1e-6)
    # voxel position: Volume [k, i, j] = file NumPy [i, j, k] = ITK index (k, j, i)
    k, i, j = 3, 4, 2
    p = np.asarray(g.origin_lps) + sum(
        c * s * np.asarray(a) for c, s, a in zip((k, i, j), g.spacing_mm, g.axes_lps, strict=True)
    )
    np.testing.assert_allclose(p, original.TransformIndexToPhysicalPoint((k, j, i)), atol=1e-9)

    out = write_volume(v, tmp_path / f"out{suffix}")
    written = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), arr)
    assert_same_geometry(original, written, suffix)
    back = read_volume(out)
    assert back.geometry.slice_thickness_mm == 4.0 and back.geometry.thickness_source == "header"
    assert back.geometry.source_slice_axis == 2
    np.testing.assert_array_equal(back.array, v.array)


def test_mha_round_trip_is_bit_exact(tmp_path):
    arr = np.zeros((3, 4, 5), dtype=np.float32)
    src = tmp_path / "a.mha"
    write_sitk(src, arr, (0.1, 0.7, 0.3), (0.1, 0.2, 0.3), oblique_direction(1.0))
    out = write_volume(read_volume(src), tmp_path / "b.mha")
    a, b = sitk.ReadImage(str(src)), sitk.ReadImage(str(out))
    assert (a.GetSpacing(), a.GetOrigin(), a.GetDirection()) == (
        b.GetSpacing(),
        b.GetOrigin(),
        b.GetDirection(),
    )


def test_write_from_made_geometry_and_metadata(tmp_path):
    g = make_geometry((4, 3, 2), slice_spacing_mm=1.25, pixel_spacing_mm=(0.5, 0.6), slice_thickness_mm=2.0)
    v = Volume(np.arange(24, dtype=np.float32).reshape(4, 3, 2), g, metadata={"sr4zct_version": "test"})
    out = write_volume(v, tmp_path / "o.nrrd", metadata={"method": "SR4ZCT", "params": {"T": 2.0}})
    image = sitk.ReadImage(str(out))
    assert image.GetSpacing() == (0.6, 0.5, 1.25)
    assert image.GetMetaData("method") == "SR4ZCT"
    assert image.GetMetaData("sr4zct_version") == "test"
    assert json.loads(image.GetMetaData("params")) == {"T": 2.0}
    assert float(image.GetMetaData("sr4zct_slice_thickness_mm")) == 2.0
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), v.array)


def test_nifti_sidecar_holds_metadata(tmp_path):
    g = make_geometry((3, 3, 3), slice_spacing_mm=2.0, slice_thickness_mm=3.0)
    v = Volume(np.zeros((3, 3, 3), np.float32), g)
    out = write_volume(v, tmp_path / "ct.nii.gz", metadata={"target_spacing_mm": 1.0})
    side = sidecar_path(out)
    assert side.name == "ct.json"
    assert json.loads(side.read_text()) == {
        "sr4zct_image_file": "ct.nii.gz",  # the file the sidecar belongs to
        "sr4zct_slice_axis": "0",
        "sr4zct_slice_thickness_mm": "3.0",
        "target_spacing_mm": "1.0",
    }
    g2 = read_geometry(out)
    assert g2.slice_thickness_mm == 3.0 and g2.thickness_source == "header"


def test_thickness_missing_from_plain_files(tmp_path):
    path = tmp_path / "a.nrrd"
    write_sitk(path, np.zeros((3, 4, 4), np.float32), (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3))
    g = read_geometry(path)
    assert g.slice_thickness_mm is None and g.thickness_source == "missing"
    assert any("--thickness" in w for w in g.warnings)
    write_sitk(
        path,
        np.zeros((3, 4, 4), np.float32),
        (1.0, 1.0, 2.0),
        (0, 0, 0),
        np.eye(3),
        {"sr4zct_slice_thickness_mm": "2.5"},
    )
    g = read_geometry(path)
    assert g.slice_thickness_mm == 2.5 and g.thickness_source == "header"
    g = read_geometry(path, thickness_mm=1.5)
    assert g.slice_thickness_mm == 1.5 and g.thickness_source == "user"


def test_isotropic_tie_goes_to_superior_inferior_axis():
    # ITK y axis points along S-I (direction column 1 = (0, 0, 1)); equal spacing everywhere
    d = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    axis, tie = choose_slice_axis((1.0, 1.0, 1.0), d)
    assert tie and axis == 1  # NumPy axis 1 = ITK y
    axis, tie = choose_slice_axis((1.0, 1.0, 2.0), d)
    assert not tie and axis == 0


def test_slice_axis_override(tmp_path):
    path = tmp_path / "a.mha"
    arr = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    write_sitk(path, arr, (1.0, 1.0, 1.0), (0, 0, 0), np.eye(3))
    v = read_volume(path, slice_axis=1)
    assert v.geometry.source_slice_axis == 1
    np.testing.assert_array_equal(v.array, np.transpose(arr, (1, 0, 2)))
    out = write_volume(v, tmp_path / "b.mha")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), arr)
    with pytest.raises(ParameterError):
        read_volume(path, slice_axis=3)


def test_bad_image_inputs(tmp_path):
    two_d = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkInt16), str(two_d))
    with pytest.raises(InputError, match="2-D"):
        read_volume(two_d)
    rgb = tmp_path / "rgb.mha"
    sitk.WriteImage(sitk.Image([4, 4, 4], sitk.sitkVectorUInt8, 3), str(rgb))
    with pytest.raises(InputError, match="components"):
        read_geometry(rgb)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file at all")
    with pytest.raises(InputError, match="Cannot read"):
        read_volume(broken)


def test_irregular_volume_cannot_be_written_to_a_grid_format(tmp_path):
    g = make_geometry((3, 2, 2), slice_spacing_mm=2.0, slice_positions_mm=(0.0, 2.0, 5.0))
    v = Volume(np.zeros((3, 2, 2), np.float32), g)
    with pytest.raises(OutputError, match="irregular"):
        write_volume(v, tmp_path / "x.nrrd")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.realdata
def test_vhm_head_geometry(vhm_head_path):
    g = read_geometry(vhm_head_path)
    assert g.shape == (245, 512, 512)
    assert g.spacing_mm == (1.0, 1.0, 1.0)
    assert g.to_dict()["through_plane_axis"].startswith("z")
    assert g.thickness_source == "missing"


def test_bids_sidecar_slice_thickness(tmp_path):
    path = tmp_path / "sub-01_ct.nii.gz"
    write_sitk(path, np.zeros((3, 4, 4), np.float32), (0.8, 0.8, 2.5), (0, 0, 0), np.eye(3))
    (tmp_path / "sub-01_ct.json").write_text(json.dumps({"Modality": "CT", "SliceThickness": 5}))
    g = read_geometry(path)
    assert g.slice_thickness_mm == 5.0 and g.thickness_source == "header"
    assert g.overlap_mm == pytest.approx(2.5)


# -- the through-plane axis recorded in the written file (sr4zct_slice_axis) ------------------------------


def _sagittal_isotropic_output(tmp_path, suffix):
    """An enhance-like output: read a sagittal stack (slices along patient L-R = ITK x = NumPy axis 2),
    then put it on an isotropic 0.74 mm grid as the pipeline does (same axes, new slice count)."""
    arr = np.random.default_rng(2).normal(size=(7, 6, 4)).astype(np.float32)
    src = tmp_path / f"sag{suffix}"
    write_sitk(src, arr, (2.0, 0.74, 0.74), (5.0, -3.0, 40.0), np.eye(3))
    read = read_volume(src, thickness_mm=3.0)
    assert read.geometry.source_slice_axis == 2
    n_out = 10
    g = dataclasses.replace(
        read.geometry,
        shape=(n_out, *read.geometry.shape[1:]),
        slice_spacing_mm=0.74,
        slice_thickness_mm=0.74,
        slice_positions_mm=tuple(k * 0.74 for k in range(n_out)),
    )
    enhanced = np.random.default_rng(3).normal(size=g.shape).astype(np.float32)
    return Volume(enhanced, g)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_isotropic_output_reads_back_without_slice_axis(tmp_path, suffix):
    v = _sagittal_isotropic_output(tmp_path, suffix)
    out = write_volume(v, tmp_path / f"enhanced{suffix}")
    # All spacings are 0.74 mm: the guess alone would take the S-I axis (NumPy 0), not the written one.
    assert choose_slice_axis((0.74, 0.74, 0.74), np.eye(3)) == (0, True)
    back = read_volume(out)
    g, gb = v.geometry, back.geometry
    assert gb.source_slice_axis == 2
    assert read_geometry(out).source_slice_axis == 2
    np.testing.assert_array_equal(back.array, v.array)
    assert gb.shape == g.shape
    assert gb.spacing_mm == pytest.approx(g.spacing_mm, rel=1e-6)
    np.testing.assert_allclose(gb.axes_lps, g.axes_lps, atol=1e-6)
    np.testing.assert_allclose(gb.origin_lps, g.origin_lps, atol=1e-4)
    assert not any("equal along several axes" in w for w in gb.warnings)
    # An explicit slice_axis still wins over the stored one.
    other = read_volume(out, slice_axis=0)
    assert other.geometry.source_slice_axis == 0
    file_array = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    np.testing.assert_array_equal(other.array, file_array)
    np.testing.assert_array_equal(back.array, np.transpose(file_array, (2, 0, 1)))


def test_stored_slice_axis_is_what_makes_the_difference(tmp_path):
    v = _sagittal_isotropic_output(tmp_path, ".nrrd")
    out = write_volume(v, tmp_path / "enhanced.nrrd")
    image = sitk.ReadImage(str(out))
    assert image.GetMetaData("sr4zct_slice_axis") == "2"
    image.EraseMetaData("sr4zct_slice_axis")
    sitk.WriteImage(image, str(tmp_path / "plain.nrrd"))
    assert read_geometry(tmp_path / "plain.nrrd").source_slice_axis == 0  # the old guess


@pytest.mark.parametrize("value", ["7", "-1", "x", "", "1.5", "[2]"])
def test_bad_stored_slice_axis_falls_back_to_the_guess(tmp_path, value):
    arr = np.zeros((3, 4, 5), np.float32)
    path = tmp_path / "a.nrrd"
    write_sitk(path, arr, (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3), {"sr4zct_slice_axis": value})
    g = read_geometry(path)
    assert g.source_slice_axis == 0 and g.shape == (3, 4, 5)
    assert any("sr4zct_slice_axis" in w for w in g.warnings)
    assert read_geometry(path, slice_axis=2).source_slice_axis == 2


def test_bad_stored_slice_axis_in_a_nifti_sidecar(tmp_path):
    path = tmp_path / "ct.nii.gz"
    write_sitk(path, np.zeros((3, 4, 5), np.float32), (1.0, 1.0, 1.0), (0, 0, 0), np.eye(3))
    sidecar_path(path).write_text(json.dumps({"sr4zct_slice_axis": 5}))
    g = read_geometry(path)
    assert g.source_slice_axis == 0 and any("sr4zct_slice_axis" in w for w in g.warnings)
    sidecar_path(path).write_text(json.dumps({"sr4zct_slice_axis": 1}))
    assert read_geometry(path).source_slice_axis == 1
