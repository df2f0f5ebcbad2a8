"""geometry_from_slices: sorting, spacing, overlap, irregularities, tilt, thickness findings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sr4zct.errors import GeometryError
from sr4zct.volume.geometry import MIN_SLICES, geometry_from_slices, slice_normal, spacing_tolerance_mm

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def axial_positions(n, spacing, z0=-50.0, xy=(-100.0, -120.0)):
    return [(xy[0], xy[1], z0 + k * spacing) for k in range(n)]


@pytest.mark.parametrize(
    ("thickness", "spacing", "overlap"),
    [(3.0, 2.0, 1.0), (2.0, 2.0, 0.0), (1.0, 2.5, -1.5), (0.625, 0.5, 0.125)],
)
def test_thickness_spacing_overlap(thickness, spacing, overlap):
    g, order = geometry_from_slices(axial_positions(6, spacing), AXIAL, (0.7, 0.8), 20, 30, [thickness] * 6)
    assert g.slice_thickness_mm == thickness
    assert g.thickness_source == "dicom"
    assert g.slice_spacing_mm == pytest.approx(spacing, abs=1e-12)
    assert g.overlap_mm == pytest.approx(overlap, abs=1e-12)
    assert g.shape == (6, 20, 30)
    assert g.pixel_spacing_mm == (0.7, 0.8)
    assert g.spacing_mm == pytest.approx((spacing, 0.7, 0.8))
    assert list(order) == list(range(6))
    assert g.is_regular and g.warnings == ()
    assert g.gantry_tilt_deg == pytest.approx(0.0, abs=1e-9)


def test_axes_origin_and_relative_positions_follow_volume_conventions():
    g, _ = geometry_from_slices(axial_positions(4, 2.0), AXIAL, (0.5, 0.5), 8, 8, 3.0)
    # [stacking direction, column direction IOP[3:6], row direction IOP[0:3]]
    assert g.axes_lps == ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))
    assert g.origin_lps == (-100.0, -120.0, -50.0)
    assert g.slice_positions_mm == pytest.approx((0.0, 2.0, 4.0, 6.0))


def test_reversed_input_is_sorted_along_the_normal():
    pos = axial_positions(5, 2.0)[::-1]
    thick = [1.0, 2.0, 3.0, 4.0, 5.0][::-1]
    g, order = geometry_from_slices(pos, AXIAL, (1.0, 1.0), 4, 4, thick)
    assert list(order) == [4, 3, 2, 1, 0]
    assert g.origin_lps == pos[4]
    assert g.slice_positions_mm == pytest.approx((0.0, 2.0, 4.0, 6.0, 8.0))


@settings(max_examples=40, deadline=None)
@given(
    perm_seed=st.integers(0, 10_000),
    n=st.integers(2, 12),
    spacing=st.floats(0.3, 8.0),
    angles=st.tuples(
        st.floats(-math.pi, math.pi), st.floats(-math.pi, math.pi), st.floats(-math.pi, math.pi)
    ),
)
def test_any_orientation_and_file_order(perm_seed, n, spacing, angles):
    """Sorting uses the position projected on row x column, for any orientation and input order."""
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    rot = rz @ ry @ rx
    row, col = rot[:, 0], rot[:, 1]
    normal = np.cross(row, col)
    origin = np.array([3.0, -7.0, 11.0])
    true_pos = origin + np.arange(n)[:, None] * spacing * normal
    perm = np.random.default_rng(perm_seed).permutation(n)
    g, order = geometry_from_slices(true_pos[perm], (*row, *col), (0.5, 0.5), 4, 4, 2.0)
    np.testing.assert_array_equal(perm[order], np.arange(n))
    np.testing.assert_allclose(g.origin_lps, origin, atol=1e-9)
    np.testing.assert_allclose(g.axes_lps[0], normal, atol=1e-9)
    np.testing.assert_allclose(g.axes_lps[1], col, atol=1e-9)
    np.testing.assert_allclose(g.axes_lps[2], row, atol=1e-9)
    np.testing.assert_allclose(g.slice_positions_mm, np.arange(n) * spacing, atol=1e-9)
    assert g.slice_spacing_mm == pytest.approx(spacing)
    assert g.is_regular


def test_sagittal_primary_stacks_along_x():
    normal = np.cross(SAGITTAL[:3], SAGITTAL[3:])
    assert tuple(normal) == (-1.0, 0.0, 0.0)
    pos = [(10.0 - 1.5 * k, -40.0, 60.0) for k in range(5)]
    g, order = geometry_from_slices(pos[::-1], SAGITTAL, (0.4, 0.5), 10, 12, 2.0)
    assert list(order) == [4, 3, 2, 1, 0]
    assert g.axes_lps == ((-1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))
    assert g.origin_lps == (10.0, -40.0, 60.0)
    assert g.slice_spacing_mm == pytest.approx(1.5)
    assert g.to_dict()["through_plane_axis"].startswith("x")


def test_irregular_spacing_reports_the_gap():
    z = [0.0, 2.0, 4.0, 6.0, 10.0, 12.0, 14.0]  # one slice missing between 6 and 10
    g, _ = geometry_from_slices([(0, 0, v) for v in z], AXIAL, (1, 1), 4, 4, 3.0)
    assert g.slice_spacing_mm == 2.0
    assert g.irregular_positions == (3,)
    assert not g.is_regular
    assert any("Irregular slice spacing" in w and "4.000 mm between slices 3 and 4" in w for w in g.warnings)


def test_spacing_within_tolerance_is_regular():
    d = 2.0
    tol = spacing_tolerance_mm(d)
    assert tol == pytest.approx(0.02)  # max(0.01 mm, 1 % of d)
    z = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    z[3] = 6.0 + 0.5 * tol
    g, _ = geometry_from_slices([(0, 0, v) for v in z], AXIAL, (1, 1), 4, 4, 3.0)
    assert g.is_regular
    assert g.slice_spacing_mm == pytest.approx(d)
    z[3] = 6.0 + 1.5 * tol  # gaps 2-3 and 3-4 now differ from d by 1.5 tolerances
    g, _ = geometry_from_slices([(0, 0, v) for v in z], AXIAL, (1, 1), 4, 4, 3.0)
    assert g.irregular_positions == (2, 3)


def test_duplicate_positions_are_reported():
    z = [0.0, 2.0, 2.0, 4.0, 6.0, 8.0]
    g, _ = geometry_from_slices([(0, 0, v) for v in z], AXIAL, (1, 1), 4, 4, 3.0)
    assert 1 in g.irregular_positions
    assert any("Duplicate slice positions" in w for w in g.warnings)


def test_all_slices_at_one_position_is_an_error():
    with pytest.raises(GeometryError, match="same position"):
        geometry_from_slices([(0, 0, 5.0)] * 3, AXIAL, (1, 1), 4, 4, 3.0)


@pytest.mark.parametrize("n", [0, 1])
def test_too_few_slices(n):
    assert MIN_SLICES == 2
    with pytest.raises(GeometryError, match=f"at least {MIN_SLICES} slices"):
        geometry_from_slices(axial_positions(n, 2.0) or np.zeros((0, 3)), AXIAL, (1, 1), 4, 4, 3.0)


@pytest.mark.parametrize("tilt_deg", [5.0, 20.0])
def test_gantry_tilt_is_measured_and_reported(tilt_deg):
    d = 2.0
    shear = math.tan(math.radians(tilt_deg)) * d
    pos = [(0.0, k * shear, k * d) for k in range(6)]  # sheared along the column direction (y)
    g, _ = geometry_from_slices(pos, AXIAL, (1, 1), 4, 4, 3.0)
    assert g.gantry_tilt_deg == pytest.approx(tilt_deg, abs=1e-6)
    assert any("Gantry tilt" in w and f"{tilt_deg:.2f} degrees" in w for w in g.warnings)
    # positions are along the actual stacking direction, so origin + s * axis reproduces every slice
    axis = np.asarray(g.axes_lps[0])
    rebuilt = np.asarray(g.origin_lps) + np.outer(g.slice_positions_mm, axis)
    np.testing.assert_allclose(rebuilt, pos, atol=1e-9)
    assert g.extra["spacing_along_normal_mm"] == pytest.approx(d)


def test_mixed_thickness_uses_most_common_and_warns():
    g, _ = geometry_from_slices(axial_positions(5, 2.0), AXIAL, (1, 1), 4, 4, [3.0, 3.0, 5.0, 3.0, 5.0])
    assert g.slice_thickness_mm == 3.0
    assert g.thickness_values_mm == (3.0, 5.0)
    assert any("Mixed slice thickness" in w for w in g.warnings)


@pytest.mark.parametrize("thick", [None, [None] * 4, [0.0] * 4, ["", "", "", ""]])
def test_missing_thickness(thick):
    g, _ = geometry_from_slices(axial_positions(4, 2.0), AXIAL, (1, 1), 4, 4, thick)
    assert g.slice_thickness_mm is None
    assert g.thickness_source == "missing"
    assert g.overlap_mm is None
    assert any("thickness_mm" in w for w in g.warnings)  # the CLI shows it as --thickness
    g2 = g.with_thickness(2.5)
    assert g2.slice_thickness_mm == 2.5 and g2.thickness_source == "user"
    assert not any("thickness" in w.lower() for w in g2.warnings)


def test_partly_missing_thickness_uses_the_others():
    g, _ = geometry_from_slices(axial_positions(4, 2.0), AXIAL, (1, 1), 4, 4, [3.0, None, 3.0, 3.0])
    assert g.slice_thickness_mm == 3.0
    assert any("1 of 4 slices" in w for w in g.warnings)


def test_inconsistent_orientation_is_an_error():
    iops = [AXIAL] * 3 + [SAGITTAL]
    with pytest.raises(GeometryError, match="different ImageOrientationPatient"):
        geometry_from_slices(axial_positions(4, 2.0), iops, (1, 1), 4, 4, 3.0)


def test_invalid_orientation_and_pixel_spacing():
    with pytest.raises(GeometryError, match="not orthogonal"):
        slice_normal((1, 0, 0, 1, 0, 0))
    with pytest.raises(GeometryError, match="unit vector"):
        slice_normal((2, 0, 0, 0, 1, 0))
    with pytest.raises(GeometryError, match="PixelSpacing"):
        geometry_from_slices(axial_positions(3, 2.0), AXIAL, (0.0, 1.0), 4, 4, 3.0)


def test_positions_off_a_line_are_reported():
    pos = [(0.0, 0.0, 0.0), (0.0, 0.0, 2.0), (3.0, 0.0, 4.0), (0.0, 0.0, 6.0)]
    g, _ = geometry_from_slices(pos, AXIAL, (1, 1), 4, 4, 3.0)
    assert any("straight line" in w for w in g.warnings)


def test_to_dict_is_json_ready():
    import json

    g, _ = geometry_from_slices(axial_positions(3, 2.0), AXIAL, (0.7421875, 0.7421875), 4, 4, 3.0)
    d = json.loads(json.dumps(g.to_dict()))
    assert d["slice_thickness_mm"] == 3.0 and d["slice_spacing_mm"] == 2.0 and d["overlap_mm"] == 1.0
    assert d["through_plane_axis"].startswith("z")


def test_through_plane_axis_is_one_rule_for_files_and_nodes():
    from sr4zct.volume.geometry import through_plane_axis

    axial = np.eye(3)  # axis 2 runs along S-I
    assert through_plane_axis((0.7, 0.7, 3.0), axial) == (2, False)
    assert through_plane_axis((3.0, 0.7, 0.7), axial) == (0, False)
    # equal spacing: the axis closest to S-I, and the tie is reported
    assert through_plane_axis((1.0, 1.0, 1.0), axial) == (2, True)
    # a known stacking direction wins over the spacing (slices spaced more finely than the pixels)
    assert through_plane_axis((0.9, 0.9, 0.5), axial, stacking_direction=(0.0, 0.0, -1.0)) == (2, False)
    oblique = [(0.0, 0.6, 0.8), (0.0, 0.8, -0.6), (1.0, 0.0, 0.0)]
    assert through_plane_axis((0.8, 0.8, 0.8), oblique, stacking_direction=(0.0, 0.58, 0.81))[0] == 0
