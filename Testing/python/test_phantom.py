"""The procedural phantom: determinism, CT-like HU, fine z structure, and the demo case geometry."""

from __future__ import annotations

import numpy as np
import pytest
from sr4zct.demo.phantom import HU, make_demo_case, make_phantom
from sr4zct.errors import ParameterError

SHAPE = (64, 96, 96)
VOXEL_MM = 0.75


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(SHAPE, VOXEL_MM, seed=0)


def test_geometry_and_dtype(phantom):
    g = phantom.geometry
    assert phantom.array.shape == SHAPE
    assert phantom.array.dtype == np.float32
    assert g.shape == SHAPE
    assert g.slice_spacing_mm == pytest.approx(VOXEL_MM)
    assert g.slice_thickness_mm == pytest.approx(VOXEL_MM)
    assert g.pixel_spacing_mm == pytest.approx((VOXEL_MM, VOXEL_MM))
    assert np.allclose(np.diff(g.slice_positions_mm), VOXEL_MM)
    assert np.all(np.isfinite(phantom.array))


def test_deterministic_per_seed(phantom):
    again = make_phantom(SHAPE, VOXEL_MM, seed=0)
    other = make_phantom(SHAPE, VOXEL_MM, seed=1)
    np.testing.assert_array_equal(phantom.array, again.array)
    assert np.mean(np.abs(phantom.array - other.array)) > 5.0


def test_ct_like_hu(phantom):
    a = phantom.array
    n0, n1, n2 = a.shape
    # air in the corners, noise of ~12 HU around -1000
    corner = a[:, :6, :6]
    assert abs(float(corner.mean()) - HU["air"]) < 5
    assert 5 < float(corner.std()) < 25
    # every tissue class is present in a sensible amount
    assert np.mean(a < -900) > 0.1  # air and lungs
    lung = (a > -900) & (a < -800)
    assert lung.sum() > 0.03 * a.size
    fat = (a > -130) & (a < -70)
    assert fat.sum() > 0.02 * a.size
    soft = (a > -20) & (a < 80)
    assert soft.sum() > 0.2 * a.size
    assert np.mean(a > 700) > 0.001  # cortical bone
    assert 900 < float(a.max()) < 1300
    assert float(a.min()) > -1150
    # the centre of the body is soft tissue, not air
    assert -150 < float(np.median(a[:, n1 // 2 - 5 : n1 // 2 + 5, n2 // 2 - 5 : n2 // 2 + 5])) < 300


def test_noise_level_is_adjustable():
    clean = make_phantom(SHAPE, VOXEL_MM, seed=0, noise_hu=0.0).array
    noisy = make_phantom(SHAPE, VOXEL_MM, seed=0, noise_hu=15.0).array
    assert float(np.std(noisy - clean)) == pytest.approx(15.0, rel=0.1)
    assert float(clean[:, :6, :6].std()) == 0.0


def _highpass_energy_z(a: np.ndarray) -> float:
    """Energy of the second difference along z (structure at the 1-2 mm scale)."""
    return float(np.mean(np.diff(a.astype(np.float64), n=2, axis=0) ** 2))


def test_fine_z_structure_is_lost_by_thick_slices():
    gt, thick = make_demo_case(3.0, 2.0, shape=SHAPE, voxel_mm=VOXEL_MM, seed=0, noise_hu=0.0)
    from sr4zct.demo.evaluation import interpolate_baseline, resample_to_reference

    linear = resample_to_reference(interpolate_baseline(thick, "linear"), gt)
    zs = slice(4, SHAPE[0] - 4)
    truth = gt.array[zs]
    # the phantom itself varies along z on the voxel scale: lots of second-difference energy
    assert _highpass_energy_z(truth) > 100.0
    # thick slices + interpolation keep less than half of it
    assert _highpass_energy_z(linear[zs]) < 0.5 * _highpass_energy_z(truth)
    # and the structure is not merely axial: along x the phantom is comparably rich
    energy_x = float(np.mean(np.diff(truth.astype(np.float64), n=2, axis=2) ** 2))
    assert _highpass_energy_z(truth) > 0.3 * energy_x


def test_demo_case_geometry():
    gt, thick = make_demo_case(3.0, 2.0, shape=SHAPE, voxel_mm=VOXEL_MM, seed=0, phase_mm=0.0)
    g = thick.geometry
    assert g.slice_thickness_mm == pytest.approx(3.0)
    assert g.slice_spacing_mm == pytest.approx(2.0)
    assert g.overlap_mm == pytest.approx(1.0)
    assert g.shape[1:] == SHAPE[1:]
    # first thick slice starts at the first thin voxel's lower edge: centre at T/2 from that edge
    expected_z = gt.geometry.origin_lps[2] - VOXEL_MM / 2 + 1.5
    assert g.origin_lps[2] == pytest.approx(expected_z)
    assert g.origin_lps[:2] == pytest.approx(gt.geometry.origin_lps[:2])
    # the last slice fits inside the thin-slice extent
    assert g.slice_positions_mm[-1] + 1.5 <= SHAPE[0] * VOXEL_MM + 1e-6
    assert len(g.slice_positions_mm) == int((SHAPE[0] * VOXEL_MM - 3.0) // 2.0) + 1
    # a thick slice integrates the linear interpolant of the thin slices it covers (box profile);
    # slice 3 covers [6, 9] mm from the first voxel edge = voxels 8..11 exactly, so the hats of voxels
    # 7 and 12 reach in by half a voxel (weight 1/8) and those of 8 and 11 reach out (weight 7/8)
    k = 3
    lo_mm = g.origin_lps[2] + g.slice_positions_mm[k] - 1.5 - (gt.geometry.origin_lps[2] - VOXEL_MM / 2)
    assert lo_mm == pytest.approx(6.0)
    w = np.array([1 / 8, 7 / 8, 1, 1, 7 / 8, 1 / 8]) / 4
    expected = np.tensordot(w, gt.array[7:13].astype(np.float64), axes=(0, 0))
    np.testing.assert_allclose(thick.array[k], expected, atol=1e-2)


@pytest.mark.parametrize(("thickness_mm", "spacing_mm"), [(3.0, 2.0), (2.5, 1.25), (5.0, 2.5), (1.6, 2.4)])
def test_demo_case_default_phase_aligns_first_centre_with_a_voxel(thickness_mm, spacing_mm):
    gt, thick = make_demo_case(thickness_mm, spacing_mm, shape=(40, 64, 64), voxel_mm=VOXEL_MM, noise_hu=0.0)
    first = (thick.geometry.origin_lps[2] - gt.geometry.origin_lps[2]) / VOXEL_MM
    assert first == pytest.approx(round(first), abs=1e-6)
    assert 0.0 <= float(thick.metadata["simulated_phase_mm"]) < spacing_mm


def test_invalid_arguments():
    with pytest.raises(ParameterError):
        make_phantom((4, 96, 96))
    with pytest.raises(ParameterError):
        make_phantom(SHAPE, voxel_mm=0.0)
