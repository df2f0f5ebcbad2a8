"""Noise-aware training: the slice noise measured from a volume, the noise added to training inputs, and the
noisy acquisitions the evaluation simulates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sr4zct.demo.evaluation import simulate_acquisition
from sr4zct.errors import ParameterError
from sr4zct.method import acquisition
from sr4zct.method.noise import TrainingNoise, correlated_noise_factor, estimate_noise
from sr4zct.method.training import Normalisation, PatchSampler, TrainingConfig, train_model
from sr4zct.volume import Volume, make_geometry

pytestmark = pytest.mark.filterwarnings("ignore:Training did not improve:RuntimeWarning")


def ar1_noise(shape, sigma, rho, rng):
    """Gaussian noise of std ``sigma``, correlated ``rho`` between neighbouring slices (axis 0)."""
    white = rng.standard_normal(shape)
    out = np.empty_like(white)
    out[0] = white[0]
    for k in range(1, shape[0]):
        out[k] = rho * out[k - 1] + np.sqrt(1.0 - rho * rho) * white[k]
    return sigma * out


def smooth_anatomy(shape=(30, 128, 128)):
    """Soft tissue with slow variations and one bright disc (its edge must not count as noise)."""
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    base = 40.0 + 30.0 * np.sin(x / 9.0) * np.cos(y / 13.0)
    base[(y - 64) ** 2 + (x - 64) ** 2 < 400] += 150.0
    return base


@pytest.mark.parametrize(("sigma", "rho"), [(8.0, 0.0), (15.0, 0.4), (3.0, 0.7)])
def test_noise_level_and_slice_correlation_are_measured(sigma, rho):
    rng = np.random.default_rng(0)
    volume = (smooth_anatomy() + ar1_noise((30, 128, 128), sigma, rho, rng)).astype(np.float32)
    found = estimate_noise(volume)
    assert found.sigma_hu == pytest.approx(sigma, rel=0.05)
    assert found.correlation == pytest.approx(rho, abs=0.05)
    assert found.pixels > 10_000
    assert f"{sigma:.0f}" in found.describe() or f"{found.sigma_hu:.1f}" in found.describe()


def test_no_flat_soft_tissue_no_estimate():
    air = np.full((6, 64, 64), -1000.0, np.float32)
    found = estimate_noise(air)
    assert (found.sigma_hu, found.pixels) == (0.0, 0)
    assert "not measured" in found.describe()
    assert estimate_noise(np.zeros((1, 64, 64), np.float32)).pixels == 0


def test_the_factor_correlates_neighbours():
    factor = correlated_noise_factor(6, 0.3)
    cov = factor @ factor.T
    k = np.arange(6)
    np.testing.assert_allclose(cov, 0.3 ** np.abs(k[:, None] - k[None, :]), atol=1e-6)


def test_training_noise_has_the_covariance_of_interpolated_slice_noise():
    """Many patches of zeros: the added noise's per-row variance is that of F_up(n), n correlated rho, with
    the part the axial noise keeps through F_down taken off."""
    sigma, rho, rows, pixel, thickness, spacing, patch = 0.02, 0.4, 96, 0.8, 3.0, 2.0, 24
    noise = TrainingNoise(
        sigma, rho, sizes=(rows, rows), pixel_spacing_mm=(pixel, pixel), thickness_mm=thickness,
        spacing_mm=spacing, profile="gaussian", phases_mm=[0.0, 1.0], patch_px=patch,
    )  # fmt: skip
    count, start = 4000, 30
    rng = np.random.default_rng(0)
    phase = torch.ones(count, dtype=torch.long)
    starts = torch.full((count,), start)
    added = noise.add(torch.zeros(count, patch, patch), phase, starts, starts, rng)
    w, centres = acquisition.degrade_matrix(rows, pixel, thickness, spacing, 1.0, "gaussian")
    up = acquisition.interpolation_matrix(centres, (np.arange(rows) + 0.5) * pixel)
    k = np.arange(len(centres))
    kept = 1.0 - np.mean(np.sum(w * w, axis=1))
    cov = sigma**2 * kept * up @ (rho ** np.abs(k[:, None] - k[None, :])) @ up.T
    expected = np.diag(cov)[start : start + patch]
    for part in (
        added[0::2],
        added[1::2],
    ):  # vertical pairs; horizontal ones, transposed: degraded vertically
        measured = part.double().var(dim=(0, 2)).numpy()
        np.testing.assert_allclose(measured, expected, rtol=0.1)
    neighbours = (added[0::2, :-1] * added[0::2, 1:]).double().mean(dim=(0, 2)).numpy()
    np.testing.assert_allclose(neighbours, np.diag(cov, 1)[start : start + patch - 1], rtol=0.15)


def _sampler(images, noise):
    return PatchSampler(
        images, pixel_spacing_mm=(1.0, 1.0), thickness_mm=3.0, spacing_mm=2.0, profile="box", patch_px=32,
        noise=noise,
    )  # fmt: skip


def test_noise_goes_to_the_inputs_only():
    images = torch.from_numpy(Normalisation().forward(smooth_anatomy((4, 96, 96)).astype(np.float32)))
    noise = TrainingNoise(
        0.01, 0.0, sizes=(96, 96), pixel_spacing_mm=(1.0, 1.0), thickness_mm=3.0, spacing_mm=2.0,
        profile="box", phases_mm=[2.0 * k / 16 for k in range(16)], patch_px=32,
    )  # fmt: skip
    clean_in, clean_target = _sampler(images, None).sample(64, np.random.default_rng(5), augment=False)
    noisy_in, noisy_target = _sampler(images, noise).sample(64, np.random.default_rng(5), augment=False)
    torch.testing.assert_close(noisy_target, clean_target)
    difference = (noisy_in - clean_in).std().item()
    assert 0.004 < difference < 0.012  # about 0.01 * sqrt(1 - sum w^2), less between slice centres


def test_validation_sees_the_noise():
    """The held-out validation patches carry the noise: linear interpolation's loss grows with it."""
    images = smooth_anatomy((16, 64, 64)).astype(np.float32)
    base = TrainingConfig(steps=2, patch_px=32, batch=4, validate_every=1, validation_patches=32,
                          network_config={"layers": 2, "channels": 4, "unshuffle": 2})  # fmt: skip
    common = {"pixel_spacing_mm": (1.0, 1.0), "thickness_mm": 3.0, "spacing_mm": 2.0}
    quiet = train_model(images, config=base, **common)
    noisy_config = TrainingConfig(**{**base.__dict__, "noise_sigma_hu": 20.0, "noise_correlation": 0.3})
    noisy = train_model(images, config=noisy_config, **common)
    assert noisy.identity_loss > 2.0 * quiet.identity_loss


def _ground_truth(shape=(60, 64, 64)):
    geometry = make_geometry(shape, slice_spacing_mm=1.0, pixel_spacing_mm=(1.0, 1.0), slice_thickness_mm=1.0)
    return Volume(np.full(shape, 40.0, np.float32), geometry)


@pytest.mark.parametrize(("model", "correlation"), [("independent", 0.0), ("integrated", 0.54)])
def test_simulated_noise_models(model, correlation):
    """Gaussian FWHM 3 mm every 2 mm: integrated noise correlates like the profile's autocorrelation at 2 mm,
    exp(-d^2 / (4 s^2)) = 0.54."""
    thick = simulate_acquisition(
        _ground_truth(), 3.0, 2.0, "gaussian", noise_sigma_hu=8.0, noise_model=model, seed=3
    )
    noise = thick.array - 40.0
    assert noise.std() == pytest.approx(8.0, rel=0.05)
    assert np.corrcoef(noise[:-1].ravel(), noise[1:].ravel())[0, 1] == pytest.approx(correlation, abs=0.05)
    assert thick.metadata["simulated_noise_model"] == model
    found = estimate_noise(thick.array)
    assert found.sigma_hu == pytest.approx(8.0, rel=0.05)
    assert found.correlation == pytest.approx(correlation, abs=0.06)


def test_simulated_noise_is_checked():
    with pytest.raises(ParameterError, match="noise model"):
        simulate_acquisition(_ground_truth(), 3.0, 2.0, noise_sigma_hu=5.0, noise_model="pink")
    clean = simulate_acquisition(_ground_truth(), 3.0, 2.0)
    assert "simulated_noise_hu" not in clean.metadata and float(np.ptp(clean.array)) < 1e-4
