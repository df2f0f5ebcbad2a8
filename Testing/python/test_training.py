"""Self-supervised patch training: pair construction, learning, reproducibility, identity fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sr4zct.errors import Cancelled
from sr4zct.method import acquisition
from sr4zct.method.training import Normalisation, PatchSampler, TrainingConfig, train_model
from sr4zct.system.progress import ProgressReporter

SMALL_NET = {"layers": 4, "channels": 16, "unshuffle": 2}


def synthetic_ct(shape=(40, 64, 64), seed=0) -> np.ndarray:
    """Air around an elliptic body with random ellipsoids (bone, fat, air pockets) and oblique rods, HU."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    nz, ny, nx = shape
    vol = np.full(shape, -1000.0, dtype=np.float32)
    body = ((y - ny / 2) / (0.42 * ny)) ** 2 + ((x - nx / 2) / (0.45 * nx)) ** 2 < 1
    vol[body] = 40.0
    for _ in range(14):
        c = rng.uniform([0, 0.3 * ny, 0.3 * nx], [nz, 0.7 * ny, 0.7 * nx])
        a = rng.uniform(1.5, 7.0, size=3)
        hu = rng.choice([-600.0, -100.0, 300.0, 900.0])
        inside = ((z - c[0]) / a[0]) ** 2 + ((y - c[1]) / a[1]) ** 2 + ((x - c[2]) / a[2]) ** 2 < 1
        vol[inside & body] = hu
    for _ in range(6):  # thin oblique rods: detail that thick slices smear
        p0 = rng.uniform([0, 0.3 * ny, 0.3 * nx], [nz, 0.7 * ny, 0.7 * nx])
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        d = np.stack([z - p0[0], y - p0[1], x - p0[2]])
        t = np.tensordot(direction, d, axes=1)
        dist2 = (d**2).sum(0) - t**2
        vol[(dist2 < 1.2**2) & body] = 600.0
    vol += rng.normal(0, 5, size=shape).astype(np.float32) * body
    return vol


def test_sampler_pairs_are_the_exact_acquisition_model():
    rng = np.random.default_rng(1)
    img = torch.tensor(synthetic_ct((3, 40, 40))[1:2] / 1000.0, dtype=torch.float32)
    spacing = (0.8, 0.6)  # rows and columns differ: each direction must use its own pixel size
    sampler = PatchSampler(
        img, pixel_spacing_mm=spacing, thickness_mm=3.0, spacing_mm=2.2, patch_px=40, n_phases=1
    )
    inputs, targets = sampler.sample(2, rng, augment=False)
    common = {"thickness_mm": 3.0, "spacing_mm": 2.2}
    vertical = acquisition.degrade(img[0].numpy(), pixel_mm=0.8, axis=-2, **common)
    horizontal = acquisition.degrade(img[0].numpy(), pixel_mm=0.6, axis=-1, **common)
    np.testing.assert_allclose(inputs[0, 0].numpy(), vertical, atol=1e-5)
    np.testing.assert_allclose(inputs[1, 0].numpy(), horizontal.T, atol=1e-5)
    np.testing.assert_array_equal(targets[0, 0].numpy(), img[0].numpy())
    np.testing.assert_array_equal(targets[1, 0].numpy(), img[0].numpy().T)


@pytest.mark.parametrize("profile", ["box", "gaussian"])
def test_patches_of_a_large_image_are_cut_from_the_whole_degraded_image(profile):
    # the sampler degrades only a band around each patch; the result must equal degrading the whole image
    rng = np.random.default_rng(2)
    images = torch.tensor(rng.normal(size=(3, 150, 130)), dtype=torch.float32)
    common = {"thickness_mm": 3.0, "spacing_mm": 2.0, "profile": profile}
    corners = [(0, 0, 0), (1, 0, 0), (2, 126, 106), (0, 126, 106), (1, 3, 60), (2, 70, 2), (0, 70, 100)]
    corners += [
        (k, int(r), int(c))
        for k, r, c in zip([0, 1, 2, 0, 1], rng.integers(0, 127, 5), rng.integers(0, 107, 5), strict=True)
    ]

    class AtCorners(PatchSampler):  # patches at the image edges, where the strip's start is clamped
        def positions(self, count, rng):
            return corners[:count]

    sampler = AtCorners(images, pixel_spacing_mm=(0.7, 0.8), patch_px=24, n_phases=1, **common)
    assert sampler.windows[0] < 150 and sampler.windows[1] < 130  # the band is really narrower
    inputs, targets = sampler.sample(len(corners), np.random.default_rng(5), augment=False)
    positions = corners
    for i, (k, r, c) in enumerate(positions):
        image = images[k].numpy()
        if i % 2 == 0:
            full = acquisition.degrade(image, pixel_mm=0.7, axis=-2, **common)
            expected, target = full[r : r + 24, c : c + 24], image[r : r + 24, c : c + 24]
        else:
            full = acquisition.degrade(image, pixel_mm=0.8, axis=-1, **common)
            expected, target = full[r : r + 24, c : c + 24].T, image[r : r + 24, c : c + 24].T
        np.testing.assert_allclose(inputs[i, 0].numpy(), expected, atol=1e-5)
        np.testing.assert_array_equal(targets[i, 0].numpy(), target)


def test_intensity_augmentation_scales_both_patches_of_a_pair_alike():
    img = torch.tensor(synthetic_ct((3, 40, 40))[1:2] / 1000.0 + 1.0, dtype=torch.float32)
    kwargs = {
        "pixel_spacing_mm": (0.8, 0.6),
        "thickness_mm": 3.0,
        "spacing_mm": 2.2,
        "patch_px": 40,
        "n_phases": 1,
    }
    plain = PatchSampler(img, **kwargs).sample(8, np.random.default_rng(4))
    scaled = PatchSampler(img, intensity_scale=0.25, **kwargs).sample(8, np.random.default_rng(4))
    # same positions, phases and flips (the factors are drawn after them); one factor per pair
    factor = scaled[1].flatten(1).amax(1) / plain[1].flatten(1).amax(1)
    assert ((factor >= 1 / 1.25 - 1e-6) & (factor <= 1.25 + 1e-6)).all() and factor.std() > 0
    for x, y in zip(plain, scaled, strict=True):
        torch.testing.assert_close(y, x * factor[:, None, None, None], atol=1e-5, rtol=1e-5)


def test_the_flat_sampling_weight_spreads_patches_over_the_body():
    vol = synthetic_ct((4, 96, 96))
    images = Normalisation().forward(torch.from_numpy(vol))
    kwargs = {"pixel_spacing_mm": (1.0, 1.0), "thickness_mm": 3.0, "spacing_mm": 2.0, "patch_px": 16}
    sharp = PatchSampler(images, flat_weight=0.0, **kwargs)
    flat = PatchSampler(images, flat_weight=100.0, **kwargs)
    grad = (images[:, 1:, :] - images[:, :-1, :]).abs()

    def structure(sampler):
        pos = sampler.positions(400, np.random.default_rng(0))
        return float(np.mean([grad[k, r : r + 15, c : c + 16].mean() for k, r, c in pos]))

    assert structure(sharp) > 1.1 * structure(flat)  # measured 1.2x on this phantom


def test_sampler_favours_the_body():
    vol = synthetic_ct((4, 96, 96))
    vol[:, :, :48] = -1000.0  # left half is air
    sampler = PatchSampler(
        Normalisation().forward(torch.from_numpy(vol)),
        pixel_spacing_mm=(1.0, 1.0), thickness_mm=3.0, spacing_mm=2.0, patch_px=16,
        body_threshold=0.5,
    )  # fmt: skip
    cols = np.array([c for _, _, c in sampler.positions(400, np.random.default_rng(0))])
    assert np.mean(cols + 16 > 48) > 0.95


def _config(**changes) -> TrainingConfig:
    base = {
        "steps": 160,
        "patch_px": 32,
        "batch": 8,
        "lr": 2e-3,
        "network_config": SMALL_NET,
        "validate_every": 40,
        "validation_patches": 48,
    }
    base.update(changes)
    return TrainingConfig(**base)


def test_training_reduces_validation_loss():
    vol = synthetic_ct()
    config = _config(steps=320, validate_every=80)  # 160 steps ended at 0.86-0.89 of the identity's loss
    result = train_model(vol, pixel_spacing_mm=(1.0, 1.0), thickness_mm=3.0, spacing_mm=2.0, config=config)
    assert result.steps == 320
    assert not result.used_identity
    assert result.validation_loss < 0.85 * result.identity_loss
    assert result.validation_gain_db > 0.5
    assert [h["step"] for h in result.history] == [80, 160, 240, 320]
    assert not result.model.training


def test_training_is_reproducible():
    vol = synthetic_ct((12, 48, 48))
    kwargs = {"pixel_spacing_mm": (1.0, 1.0), "thickness_mm": 4.0, "spacing_mm": 3.0}
    a = train_model(vol, config=_config(steps=20, validate_every=10, seed=5), **kwargs)
    b = train_model(vol, config=_config(steps=20, validate_every=10, seed=5), **kwargs)
    c = train_model(vol, config=_config(steps=20, validate_every=10, seed=6), **kwargs)
    assert len(a.history) == 2
    assert a.history == b.history  # every loss identical, bit for bit
    assert a.history != c.history
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_no_improvement_keeps_identity():
    vol = synthetic_ct((12, 48, 48))
    with pytest.warns(RuntimeWarning, match="linear interpolation"):
        result = train_model(
            vol,
            pixel_spacing_mm=(1.0, 1.0),
            thickness_mm=3.0,
            spacing_mm=2.0,
            config=_config(steps=10, lr=0.0),
        )
    assert result.used_identity
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), x)


def test_time_limit_stops_training():
    vol = synthetic_ct((12, 48, 48))
    result = train_model(
        vol,
        pixel_spacing_mm=(1.0, 1.0),
        thickness_mm=3.0,
        spacing_mm=2.0,
        config=_config(steps=100_000, max_seconds=3.0),  # > set-up time on a busy 2-core machine
    )
    assert 0 < result.steps < 100_000
    assert any("time limit" in m for m in result.warnings)


def test_training_can_be_cancelled():
    vol = synthetic_ct((12, 48, 48))
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 5

    with pytest.raises(Cancelled):
        train_model(
            vol,
            pixel_spacing_mm=(1.0, 1.0),
            thickness_mm=3.0,
            spacing_mm=2.0,
            config=_config(steps=1000),
            reporter=ProgressReporter(None, stop),
        )
    assert len(calls) == 6
