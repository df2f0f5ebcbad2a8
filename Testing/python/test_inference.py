"""Inference: z grid, identity model = linear interpolation, tiling, body crop, fusion, uncertainty."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sr4zct.method import acquisition
from sr4zct.method.body import body_box
from sr4zct.method.inference import enhance_array, predict_images
from sr4zct.method.networks import ResidualCNN


def _random_model(seed=0, **kwargs) -> ResidualCNN:
    torch.manual_seed(seed)
    model = ResidualCNN(**{"layers": 3, "channels": 8, "unshuffle": 2, **kwargs})
    torch.nn.init.normal_(model.head.weight, std=0.05)
    return model.eval()


def _volume(shape=(9, 40, 36), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = np.full(shape, -1000.0, dtype=np.float32)
    vol[:, 8:30, 10:28] = rng.normal(40, 200, size=(shape[0], 22, 18))
    return vol


def test_body_box():
    vol = _volume()
    rows, cols = body_box(vol)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (8, 30, 10, 28)
    air = np.full((3, 5, 6), -1000.0, dtype=np.float32)
    assert body_box(air) == (slice(0, 5), slice(0, 6))


def test_identity_model_gives_linear_interpolation_on_the_right_grid():
    vol = _volume()
    positions = np.array([0.0, 2.0, 4.0, 6.5, 8.5, 10.5, 12.5, 14.5, 16.5])  # one irregular gap
    model = ResidualCNN(layers=3, channels=8).eval()  # zero-initialised head: identity
    res = enhance_array(model, vol, slice_positions_mm=positions, pixel_spacing_mm=(0.75, 0.75))
    expected_positions = np.arange(0.0, 16.5 + 1e-9, 0.75)
    np.testing.assert_allclose(res.positions_mm, expected_positions)
    assert res.array.shape == (len(expected_positions), 40, 36)
    assert res.array.dtype == np.float32
    # linear interpolation from the true (irregular) slice positions, checked voxel by voxel with np.interp
    for r, c in [(12, 15), (20, 20), (0, 0)]:
        np.testing.assert_allclose(
            res.array[:, r, c], np.interp(expected_positions, positions, vol[:, r, c]), atol=1e-3
        )
    np.testing.assert_allclose(res.array[0], vol[0], atol=1e-4)  # first output centre = first input centre
    assert res.uncertainty is None


def test_target_spacing_sets_the_output_grid():
    vol = _volume()
    positions = 2.0 * np.arange(vol.shape[0])
    model = _random_model()
    res = enhance_array(
        model, vol, slice_positions_mm=positions, pixel_spacing_mm=(0.75, 0.75), target_spacing_mm=0.5
    )
    np.testing.assert_allclose(res.positions_mm, np.arange(0, 16.0 + 1e-9, 0.5))
    assert res.array.shape[0] == 33


def test_network_changes_only_the_body_box_and_uncertainty_is_disagreement():
    vol = _volume()
    positions = 2.0 * np.arange(vol.shape[0])
    res = enhance_array(
        _random_model(), vol, slice_positions_mm=positions, pixel_spacing_mm=(1.0, 1.0), uncertainty=True
    )
    linear = acquisition.resample_slices(vol, positions, res.positions_mm, axis=0)
    changed = np.abs(res.array - linear) > 1e-3
    assert changed[:, 8:30, 10:28].mean() > 0.5
    outside = np.ones(vol.shape[1:], dtype=bool)
    outside[8:30, 10:28] = False
    assert not changed[:, outside].any()
    assert res.uncertainty.shape == res.array.shape
    assert res.uncertainty.min() >= 0 and res.uncertainty[:, 8:30, 10:28].max() > 0
    assert not res.uncertainty[:, outside].any()


def test_fusion_is_mean_of_coronal_and_sagittal():
    vol = np.random.default_rng(3).normal(0, 300, size=(5, 24, 24)).astype(np.float32)
    positions = 3.0 * np.arange(5)
    model = _random_model(unshuffle=1)
    res = enhance_array(
        model,
        vol,
        slice_positions_mm=positions,
        pixel_spacing_mm=(1.0, 1.0),
        uncertainty=True,
        crop_body=False,
    )
    up = acquisition.resample_slices(vol, positions, res.positions_mm, axis=0).astype(np.float32)
    with torch.no_grad():
        cor = model(torch.from_numpy((up.transpose(1, 0, 2) + 1000) / 1000)[:, None])[:, 0].numpy()
        sag = model(torch.from_numpy((up.transpose(2, 0, 1) + 1000) / 1000)[:, None])[:, 0].numpy()
    cor = cor.transpose(1, 0, 2) * 1000 - 1000
    sag = sag.transpose(1, 2, 0) * 1000 - 1000
    # fused = mean, kept inside the input's intensity range
    np.testing.assert_allclose(res.array, np.clip(0.5 * (cor + sag), vol.min(), vol.max()), atol=0.05)
    np.testing.assert_allclose(res.uncertainty, np.abs(cor - sag), atol=0.1)


@pytest.mark.parametrize("unshuffle", [1, 2])
def test_tiled_prediction_equals_whole_images(unshuffle):
    model = _random_model(layers=4, unshuffle=unshuffle)
    images = torch.randn(3, 30, 101)
    with torch.inference_mode():
        whole = predict_images(model, images, device=torch.device("cpu"), max_pixels=10**6)
        tiled = predict_images(model, images, device=torch.device("cpu"), max_pixels=30 * 60)
        direct = model(images[:, None])[:, 0]
    torch.testing.assert_close(whole, direct)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def test_unequal_pixel_spacing():
    vol = _volume()
    positions = 2.0 * np.arange(vol.shape[0])
    res = enhance_array(
        _random_model(), vol, slice_positions_mm=positions, pixel_spacing_mm=(0.8, 0.6), uncertainty=True
    )
    np.testing.assert_allclose(res.positions_mm, np.arange(0, 16.0 + 1e-9, 0.8))
    assert np.isfinite(res.array).all()


def test_no_model_gives_the_identity_networks_result_without_running_it():
    vol = _volume()
    positions = 2.0 * np.arange(vol.shape[0])
    identity = ResidualCNN(layers=3, channels=8).eval()  # zero-initialised head
    kwargs = {"slice_positions_mm": positions, "pixel_spacing_mm": (0.75, 0.75), "uncertainty": True}
    with_net = enhance_array(identity, vol, **kwargs)
    without = enhance_array(None, vol, **kwargs)
    np.testing.assert_allclose(without.array, with_net.array, atol=1e-4)
    np.testing.assert_array_equal(without.positions_mm, with_net.positions_mm)
    assert float(np.abs(without.uncertainty).max()) == 0.0


def test_test_time_flips_average_the_four_flipped_predictions():
    from sr4zct.method.inference import FlipAverage

    model = _random_model(seed=4)
    x = torch.randn(2, 1, 30, 26)
    with torch.no_grad():
        expected = sum(model(x.flip(d)).flip(d) if d else model(x) for d in FlipAverage.FLIPS) / 4
        torch.testing.assert_close(FlipAverage(model)(x), expected)
    vol = _volume()
    kwargs = {"slice_positions_mm": 2.0 * np.arange(vol.shape[0]), "pixel_spacing_mm": (0.75, 0.75)}
    plain = enhance_array(model, vol, **kwargs).array
    flipped = enhance_array(model, vol, test_time_flips=True, **kwargs).array
    assert not np.allclose(plain, flipped, atol=1e-3)  # a random network is not flip-equivariant
    identity = ResidualCNN(layers=3, channels=8).eval()
    np.testing.assert_allclose(
        enhance_array(identity, vol, test_time_flips=True, **kwargs).array,
        enhance_array(None, vol, **kwargs).array,
        atol=1e-4,
    )
