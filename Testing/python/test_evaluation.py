"""Evaluation protocol: simulated acquisition, baselines, resampling, body box, PSNR/SSIM, score."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sr4zct.demo import evaluation as ev
from sr4zct.errors import GeometryError, ParameterError
from sr4zct.volume import Volume, make_geometry


def _volume(array, spacing_mm=1.0, pixel_mm=0.5, origin=(0.0, 0.0, 0.0), thickness_mm=None) -> Volume:
    array = np.asarray(array, np.float32)
    geom = make_geometry(
        array.shape,
        slice_spacing_mm=spacing_mm,
        pixel_spacing_mm=(pixel_mm, pixel_mm),
        slice_thickness_mm=thickness_mm if thickness_mm is not None else spacing_mm,
        origin_lps=origin,
    )
    return Volume(array, geom)


def _z_signal(fn, n=60, spacing_mm=0.5, shape_xy=(4, 5)) -> Volume:
    z = np.arange(n) * spacing_mm
    array = np.broadcast_to(fn(z)[:, None, None], (n, *shape_xy)).copy()
    return _volume(array, spacing_mm=spacing_mm, pixel_mm=spacing_mm)


# ------------------------------------------------------------------------------------------------
# PSNR / SSIM


def test_psnr_identical_is_infinite():
    a = np.random.default_rng(0).normal(size=(10, 12))
    assert ev.psnr(a, a.copy(), 4.0) == math.inf


def test_psnr_of_known_noise_level():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1000, size=(64, 64, 64))
    sigma = 10.0
    b = a + rng.normal(0, sigma, a.shape)
    expected = 20 * math.log10(1000.0 / sigma)  # 40 dB
    assert ev.psnr(b, a, 1000.0) == pytest.approx(expected, abs=0.02)
    # a constant offset of 1 % of the range is exactly 40 dB
    assert ev.psnr(a + 10.0, a, 1000.0) == pytest.approx(40.0, abs=1e-9)


def test_psnr_rejects_bad_input():
    with pytest.raises(ParameterError):
        ev.psnr(np.zeros((3, 3)), np.zeros((3, 4)), 1.0)
    with pytest.raises(ParameterError):
        ev.psnr(np.zeros((3, 3)), np.ones((3, 3)), 0.0)


def test_ssim_identical_and_degraded():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(48, 40)).cumsum(axis=0)  # structured image
    assert ev.ssim(a, a.copy(), float(np.ptp(a))) == pytest.approx(1.0)
    slightly = ev.ssim(a + rng.normal(0, 0.1, a.shape), a, float(np.ptp(a)))
    strongly = ev.ssim(a + rng.normal(0, 2.0, a.shape), a, float(np.ptp(a)))
    assert 0.0 < strongly < slightly < 1.0


def test_numpy_ssim_matches_scikit_image():
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 30, 41)).cumsum(axis=1)
    b = a + rng.normal(0, 0.5, a.shape)
    mine = ev._ssim_numpy(a, b, 20.0)
    for k in range(3):
        reference = structural_similarity(
            a[k], b[k], data_range=20.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert mine[k] == pytest.approx(reference, abs=1e-9)


def test_ssim_rejects_small_images():
    with pytest.raises(ParameterError):
        ev.ssim(np.zeros((8, 30)), np.zeros((8, 30)), 1.0)


# ------------------------------------------------------------------------------------------------
# body box


def test_body_box():
    a = np.full((40, 30, 20), -1000.0, np.float32)
    a[10:20, 5:12, 3:9] = 40.0  # body
    a[30, 25, 15] = -600.0  # below the threshold: not body
    a[2, 20, 2] = 100.0  # a bright voxel near the z end still widens the y/x box
    zs, ys, xs = ev.body_box(a, thickness_mm=3.0, slice_mm=1.0)
    assert (zs.start, zs.stop) == (3, 37)
    assert (ys.start, ys.stop) == (5, 21)
    assert (xs.start, xs.stop) == (2, 9)
    # one thickness of 2.5 mm with 0.75 mm slices: slices closer than 2.5 mm to an end centre drop
    zs, _, _ = ev.body_box(a, thickness_mm=2.5, slice_mm=0.75)
    assert (zs.start, zs.stop) == (4, 36)
    zs, _, _ = ev.body_box(a, thickness_mm=2.25, slice_mm=0.75)  # exactly 3 slices away is kept
    assert (zs.start, zs.stop) == (3, 37)


def test_body_box_errors():
    with pytest.raises(ParameterError):
        ev.body_box(np.full((20, 5, 5), -1000.0), 3.0, 1.0)
    with pytest.raises(ParameterError):
        ev.body_box(np.zeros((6, 5, 5)), 3.0, 1.0)


# ------------------------------------------------------------------------------------------------
# simulated acquisition


def test_simulate_acquisition_geometry_and_values():
    gt = _z_signal(lambda z: 3.0 * z - 20.0, n=40, spacing_mm=0.5)
    thick = ev.simulate_acquisition(gt, 2.0, 1.5, profile="box", phase_mm=0.25)
    g = thick.geometry
    assert g.slice_thickness_mm == 2.0 and g.slice_spacing_mm == 1.5
    # centres at phase + T/2 + k d from the first voxel's lower edge (at -0.25 mm)
    assert g.origin_lps[2] == pytest.approx(-0.25 + 0.25 + 1.0)
    assert np.allclose(np.diff(g.slice_positions_mm), 1.5)
    # a linear signal is unchanged by a symmetric profile: value = signal at the slice centre
    centres = g.origin_lps[2] + np.asarray(g.slice_positions_mm)
    np.testing.assert_allclose(thick.array[:, 0, 0], 3.0 * centres - 20.0, atol=1e-4)
    assert thick.array.dtype == np.float32


def test_simulate_acquisition_gaussian_blurs_more_than_nothing():
    gt = _z_signal(lambda z: np.where((z > 9.9) & (z < 10.6), 100.0, 0.0), n=60, spacing_mm=0.5)
    thick = ev.simulate_acquisition(gt, 3.0, 1.0, profile="gaussian")
    assert 0 < thick.array.max() < 60  # a 1.5 mm bar in a 3 mm FWHM profile is much attenuated
    assert thick.array.sum(axis=0)[0, 0] == pytest.approx(gt.array.sum(axis=0)[0, 0] * 0.5, rel=0.05)


@pytest.mark.parametrize(
    ("thickness_mm", "spacing_mm", "slice_mm"),
    [(2.5, 1.25, 1.0), (3.0, 2.0, 0.75), (5.0, 2.5, 1.0), (3.75, 1.875, 0.7)],
)
def test_aligned_phase_puts_first_centre_on_a_slice(thickness_mm, spacing_mm, slice_mm):
    phase = ev.aligned_phase_mm(thickness_mm, spacing_mm, slice_mm)
    assert 0.0 <= phase < min(spacing_mm, slice_mm)
    gt = _z_signal(lambda z: np.sin(z), n=40, spacing_mm=slice_mm)
    thick = ev.simulate_acquisition(gt, thickness_mm, spacing_mm, phase_mm=phase)
    first = thick.geometry.origin_lps[2] / slice_mm
    assert first == pytest.approx(round(first), abs=1e-9)
    # so the linear baseline lands on the ground-truth slices: resampling it changes nothing
    linear = ev.interpolate_baseline(thick, "linear", target_spacing_mm=slice_mm)
    resampled = ev.resample_to_reference(linear, gt)
    start = round(first)
    np.testing.assert_allclose(resampled[start : start + linear.array.shape[0]], linear.array, atol=1e-4)


def test_simulate_acquisition_rejects_irregular_ground_truth():
    gt = _z_signal(lambda z: z, n=10)
    geom = make_geometry(
        gt.array.shape, slice_spacing_mm=0.5, slice_positions_mm=[0, 0.5, 1, 2, 2.5, 3, 3.5, 4, 4.5, 5]
    )
    with pytest.raises(GeometryError):
        ev.simulate_acquisition(Volume(gt.array, geom), 2.0, 1.0)


# ------------------------------------------------------------------------------------------------
# baselines


def _thick_of(fn, spacing_mm=2.0, n=12, pixel_mm=0.5):
    z = np.arange(n) * spacing_mm
    array = np.broadcast_to(fn(z)[:, None, None], (n, 4, 5)).astype(np.float32)
    return _volume(array, spacing_mm=spacing_mm, pixel_mm=pixel_mm, thickness_mm=3.0), z


@pytest.mark.parametrize("method", ev.BASELINES)
def test_baseline_output_grid_and_exact_at_centres(method):
    thick, z = _thick_of(lambda z: np.sin(z / 3.0) * 100)
    out = ev.interpolate_baseline(thick, method)
    g = out.geometry
    assert g.slice_spacing_mm == pytest.approx(0.5)  # default: in-plane pixel size
    assert g.shape == (45, 4, 5)  # 0 .. 22 mm every 0.5 mm
    assert g.origin_lps == thick.geometry.origin_lps
    # every method interpolates: the input centres are reproduced
    np.testing.assert_allclose(out.array[::4, 0, 0], thick.array[:, 0, 0], atol=1e-3)


def test_linear_baseline_is_exact_on_linear_signal():
    thick, _ = _thick_of(lambda z: 7.5 * z - 300.0)
    out = ev.interpolate_baseline(thick, "linear", target_spacing_mm=0.3)
    z = np.asarray(out.geometry.slice_positions_mm)
    np.testing.assert_allclose(out.array[:, 2, 3], 7.5 * z - 300.0, atol=1e-3)


def test_smooth_signal_splines_beat_linear():
    fn = lambda z: 200.0 * np.sin(2 * np.pi * z / 9.0)  # noqa: E731
    thick, _ = _thick_of(fn, n=20)
    errors = {}
    for method in ev.BASELINES:
        out = ev.interpolate_baseline(thick, method)
        z = np.asarray(out.geometry.slice_positions_mm)
        inner = (z > 6) & (z < 32)  # away from the boundary handling
        errors[method] = float(np.abs(out.array[inner, 0, 0] - fn(z[inner])).max())
    assert errors["bspline"] < 0.3 * errors["linear"]
    assert errors["lanczos"] < 0.5 * errors["linear"]


def test_bspline_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(4)
    array = rng.normal(size=(15, 3, 2)).astype(np.float32)
    thick = _volume(array, spacing_mm=2.0, pixel_mm=0.7)
    out = ev.interpolate_baseline(thick, "bspline")
    index = np.asarray(out.geometry.slice_positions_mm) / 2.0
    coords = np.meshgrid(index, np.arange(3), np.arange(2), indexing="ij")
    expected = ndimage.map_coordinates(array.astype(np.float64), coords, order=3, mode="mirror")
    np.testing.assert_allclose(out.array, expected, atol=1e-4)


def test_unknown_baseline():
    thick, _ = _thick_of(lambda z: z)
    with pytest.raises(ParameterError):
        ev.interpolate_baseline(thick, "cubic")


# ------------------------------------------------------------------------------------------------
# resampling to the reference grid


def test_resample_to_reference_linear_in_physical_z():
    reference = _z_signal(lambda z: 0 * z, n=30, spacing_mm=0.5)  # z = 0 .. 14.5
    # result: 1.2 mm slices starting at z = 2.3 holding a linear function of physical z
    n = 9
    z_res = 2.3 + 1.2 * np.arange(n)
    array = np.broadcast_to((4.0 * z_res + 1.0)[:, None, None], (n, 4, 5)).copy()
    result = _volume(array, spacing_mm=1.2, pixel_mm=0.5, origin=(0.0, 0.0, 2.3))
    out = ev.resample_to_reference(result, reference)
    assert out.shape == reference.array.shape
    z_ref = np.arange(30) * 0.5
    inside = (z_ref >= 2.3 - 1e-9) & (z_ref <= z_res[-1] + 1e-9)
    np.testing.assert_allclose(out[inside, 1, 1], 4.0 * z_ref[inside] + 1.0, atol=1e-4)
    assert np.all(np.isnan(out[~inside]))


def test_resample_to_reference_checks_in_plane_grid():
    reference = _z_signal(lambda z: z, n=10)
    shifted = _volume(reference.array, spacing_mm=0.5, pixel_mm=0.5, origin=(0.3, 0.0, 0.0))
    with pytest.raises(GeometryError):
        ev.resample_to_reference(shifted, reference)
    other_pixels = _volume(reference.array, spacing_mm=0.5, pixel_mm=0.6)
    with pytest.raises(GeometryError):
        ev.resample_to_reference(other_pixels, reference)
    with pytest.raises(GeometryError):
        ev.resample_to_reference(_volume(reference.array[:, :3], spacing_mm=0.5, pixel_mm=0.5), reference)


# ------------------------------------------------------------------------------------------------
# score


@pytest.fixture(scope="module")
def demo_case():
    from sr4zct.demo.phantom import make_demo_case

    return make_demo_case(3.0, 2.0, shape=(48, 64, 64), voxel_mm=1.0, seed=0)


def test_score_perfect_result_and_baseline_ranking(demo_case):
    gt, thick = demo_case
    perfect = ev.score(gt, gt, 3.0)
    assert perfect["psnr_db"] == math.inf
    assert perfect["coronal_ssim"] == pytest.approx(1.0)
    assert perfect["sagittal_ssim"] == pytest.approx(1.0)
    assert perfect["data_range_hu"] == pytest.approx(float(gt.array.max() - gt.array.min()))
    assert perfect["box"]["z"] == [3, 45]
    scores = {m: ev.score(ev.interpolate_baseline(thick, m), gt, 3.0) for m in ev.BASELINES}
    for s in scores.values():
        assert 20.0 < s["psnr_db"] < 45.0
        assert 0.5 < s["coronal_ssim"] < 1.0 and 0.5 < s["sagittal_ssim"] < 1.0
    assert scores["bspline"]["psnr_db"] > scores["linear"]["psnr_db"]
    assert scores["lanczos"]["psnr_db"] > scores["linear"]["psnr_db"]


def test_score_is_the_box_psnr_of_the_resampled_result(demo_case):
    gt, thick = demo_case
    linear = ev.interpolate_baseline(thick, "linear")
    s = ev.score(linear, gt, 3.0)
    resampled = ev.resample_to_reference(linear, gt)
    box = tuple(slice(*s["box"][k]) for k in "zyx")
    assert s["psnr_db"] == pytest.approx(ev.psnr(resampled[box], gt.array[box], s["data_range_hu"]))
    # a worse result scores worse
    noisy = Volume(linear.array + np.float32(100.0), linear.geometry)
    assert ev.score(noisy, gt, 3.0)["psnr_db"] < s["psnr_db"] - 2.0
