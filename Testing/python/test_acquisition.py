"""The exact acquisition model (sr4zct.method.acquisition) against the naive oracle (sr4zct.demo.reference) and physics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sr4zct.demo import reference as ref
from sr4zct.errors import ParameterError
from sr4zct.method import acquisition as acq

# (thickness, spacing): overlapping, half-overlap, non-integer ratios, a gap, contiguous
GEOMETRIES = [(3.0, 2.0), (2.5, 1.25), (5.0, 2.5), (3.3, 1.7), (2.0, 3.0), (5.0, 5.0)]
PROFILES = ["box", "gaussian"]


def _image(shape, seed=0):
    rng = np.random.default_rng(seed)
    # smooth structure plus noise, in HU-like units, so relative errors are meaningful
    y, x = np.meshgrid(np.linspace(0, 1, shape[0]), np.linspace(0, 1, shape[1]), indexing="ij")
    return 400.0 * np.sin(7 * y + 3 * x) + 50.0 * rng.normal(size=shape) - 300.0


def _rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# ------------------------------------------------------------------------------------------------
# fast path vs oracle


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("thickness", "spacing"), GEOMETRIES)
def test_degrade_matches_oracle(thickness, spacing, profile):
    img = _image((23, 9), seed=1)
    pixel = 0.7421875
    for phase in (0.0, 0.37 * spacing, 0.91 * spacing):
        fast = acq.degrade(
            img, pixel_mm=pixel, thickness_mm=thickness, spacing_mm=spacing, phase_mm=phase, profile=profile
        )
        slow = ref.reference_degrade_image(
            img, pixel_mm=pixel, thickness_mm=thickness, spacing_mm=spacing, phase_mm=phase, profile=profile
        )
        assert fast.shape == img.shape
        assert _rel_err(fast, slow) < 1e-5


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("thickness", "spacing"), GEOMETRIES)
def test_f_down_matches_oracle_horizontal(thickness, spacing, profile):
    img = _image((6, 29), seed=2)
    pixel, phase = 0.61, 0.43 * spacing
    fast = acq.f_down(
        img,
        pixel_mm=pixel,
        thickness_mm=thickness,
        spacing_mm=spacing,
        phase_mm=phase,
        profile=profile,
        axis=-1,
    )
    slow, centres = ref.reference_f_down_image(
        img,
        pixel_mm=pixel,
        thickness_mm=thickness,
        spacing_mm=spacing,
        phase_mm=phase,
        profile=profile,
        axis=1,
    )
    assert fast.shape == slow.shape
    assert _rel_err(fast, slow) < 1e-5
    np.testing.assert_allclose(
        acq.slice_centres_mm(29, pixel, thickness, spacing, phase), centres, rtol=1e-12
    )


@pytest.mark.parametrize("profile", PROFILES)
def test_training_pairs_match_oracle_with_anisotropic_pixels(profile):
    img = _image((21, 14), seed=3)
    row_mm, col_mm = 0.8, 0.55
    kwargs = {"thickness_mm": 2.5, "spacing_mm": 1.25, "phase_mm": 0.3, "profile": profile}
    (vin, vtarget), (hin, htarget) = acq.training_pairs(img, pixel_spacing_mm=(row_mm, col_mm), **kwargs)
    assert vin.shape == vtarget.shape == (21, 14)
    assert hin.shape == htarget.shape == (14, 21)
    np.testing.assert_array_equal(vtarget, img)
    np.testing.assert_array_equal(htarget, np.rot90(img))
    assert _rel_err(vin, ref.reference_degrade_image(img, pixel_mm=row_mm, axis=0, **kwargs)) < 1e-5
    horizontal = ref.reference_degrade_image(img, pixel_mm=col_mm, axis=1, **kwargs)
    assert _rel_err(hin, np.rot90(horizontal)) < 1e-5


@settings(max_examples=30, deadline=None, database=None)
@given(
    n=st.integers(min_value=8, max_value=40),
    pixel=st.floats(min_value=0.3, max_value=1.5),
    thickness=st.floats(min_value=0.2, max_value=6.0),
    spacing=st.floats(min_value=0.2, max_value=6.0),
    phase_frac=st.floats(min_value=0.0, max_value=0.999),
    profile=st.sampled_from(PROFILES),
    seed=st.integers(0, 1000),
)
def test_f_down_column_property(n, pixel, thickness, spacing, phase_frac, profile, seed):
    phase = phase_frac * spacing
    room = n * pixel - thickness - phase
    assume(abs(room - spacing) > 1e-6)  # the second slice exactly touching the end is a rounding coin-toss
    if room < spacing:  # fewer than two slices fit: must be refused
        with pytest.raises(ParameterError):
            acq.degrade_matrix(n, pixel, thickness, spacing, phase, profile)
        return
    w, centres = acq.degrade_matrix(n, pixel, thickness, spacing, phase, profile)
    assert np.all(w >= -1e-12)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    column = np.random.default_rng(seed).uniform(-1000, 1000, size=n)
    expected, ref_centres = ref.reference_f_down_column(
        column, pixel_mm=pixel, thickness_mm=thickness, spacing_mm=spacing, phase_mm=phase, profile=profile
    )
    np.testing.assert_allclose(centres, ref_centres, rtol=1e-12)
    assert _rel_err(w @ column, expected) < 1e-5


# ------------------------------------------------------------------------------------------------
# physics


@pytest.mark.parametrize("profile", PROFILES)
def test_constant_image_stays_constant(profile):
    img = np.full((30, 12), -123.5)
    down = acq.f_down(img, pixel_mm=0.7, thickness_mm=3.3, spacing_mm=1.7, phase_mm=0.5, profile=profile)
    np.testing.assert_allclose(down, -123.5, rtol=1e-12)
    centres = acq.slice_centres_mm(30, 0.7, 3.3, 1.7, 0.5)
    up = acq.f_up(down, n_pixels=30, pixel_mm=0.7, centres_mm=centres)
    np.testing.assert_allclose(up, -123.5, rtol=1e-12)
    np.testing.assert_allclose(acq.degrade(img, pixel_mm=0.7, thickness_mm=3.3, spacing_mm=1.7), -123.5)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("thickness", "spacing"), GEOMETRIES)
def test_profile_integrates_to_one(thickness, spacing, profile):
    w, centres = acq.degrade_matrix(64, 0.49, thickness, spacing, 0.1, profile)
    assert w.shape == (centres.size, 64)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-13)
    assert np.all(w >= -1e-15)


@pytest.mark.parametrize(("profile", "width_over_t"), [("box", 0.8), ("gaussian", 2 * 1.2815516 / 2.3548200)])
def test_step_edge_widens_by_thickness(profile, width_over_t):
    # fine pixel grid and fine slice spacing so the 10-90 % width is measured, not the sampling
    pixel, thickness, spacing = 0.02, 3.0, 0.05
    n = 1500
    z = (np.arange(n) + 0.5) * pixel
    edge_mm = 15.0
    step = (z > edge_mm).astype(np.float64)
    values = acq.f_down(
        step, pixel_mm=pixel, thickness_mm=thickness, spacing_mm=spacing, profile=profile, axis=0
    )
    centres = acq.slice_centres_mm(n, pixel, thickness, spacing)
    assert np.all(np.diff(values) >= -1e-12)  # monotone edge
    z10 = np.interp(0.1, values, centres)
    z90 = np.interp(0.9, values, centres)
    assert z90 - z10 == pytest.approx(width_over_t * thickness, abs=2 * pixel)
    assert 0.5 * (z10 + z90) == pytest.approx(edge_mm, abs=2 * pixel)


def test_zero_overlap_still_blurs():
    pixel, thickness = 0.5, 3.0
    step = np.zeros(60)
    step[23:] = 1.0  # edge at 11.5 mm, inside the slice centred at 10.5 mm (9..12 mm)
    values = acq.f_down(step, pixel_mm=pixel, thickness_mm=thickness, spacing_mm=thickness, axis=0)
    centres = acq.slice_centres_mm(60, pixel, thickness, thickness)
    np.testing.assert_allclose(np.diff(centres), thickness)
    k = int(np.argmin(np.abs(centres - 10.5)))
    assert 0.05 < values[k] < 0.95
    img = _image((60, 5))
    assert not np.allclose(acq.degrade(img, pixel_mm=pixel, thickness_mm=3.0, spacing_mm=3.0), img, atol=1.0)


def test_gap_ignores_signal_between_box_slices():
    # T = 2, d = 3: 1 mm gaps between slices; a spike entirely inside a gap must not be seen
    pixel = 0.1
    n = 200
    z = (np.arange(n) + 0.5) * pixel
    centres = acq.slice_centres_mm(n, pixel, 2.0, 3.0)
    gap_mid = centres[2] + 1.5  # halfway between slices 2 and 3
    spike = np.where(np.abs(z - gap_mid) < 0.25, 1000.0, 0.0)
    box = acq.f_down(spike, pixel_mm=pixel, thickness_mm=2.0, spacing_mm=3.0, axis=0)
    np.testing.assert_allclose(box, 0.0, atol=1e-9)
    gauss = acq.f_down(spike, pixel_mm=pixel, thickness_mm=2.0, spacing_mm=3.0, profile="gaussian", axis=0)
    assert gauss[2] > 1.0 and gauss[3] > 1.0  # the Gaussian tails do see it


def test_linear_ramp_sampled_at_slice_centres():
    # g(z) = z: every symmetric unit-area profile returns its centre while inside [p_0, p_{n-1}]
    n, pixel = 80, 0.37
    z = (np.arange(n) + 0.5) * pixel
    for profile in PROFILES:
        w, centres = acq.degrade_matrix(n, pixel, 2.2, 1.3, 0.45, profile)
        half = 1.1 if profile == "box" else 8 * acq.gaussian_sigma_mm(2.2)
        inside = (centres - half > z[0]) & (centres + half < z[-1])
        assert inside.sum() > 5
        np.testing.assert_allclose((w @ z)[inside], centres[inside], rtol=1e-12)


@pytest.mark.parametrize("profile", PROFILES)
def test_phase_shifts_centres(profile):
    n, pixel, thickness, spacing = 50, 0.7, 3.3, 1.7
    base = acq.slice_centres_mm(n, pixel, thickness, spacing, 0.0)
    np.testing.assert_allclose(base, thickness / 2 + spacing * np.arange(base.size))
    shifted = acq.slice_centres_mm(n, pixel, thickness, spacing, 0.6)
    np.testing.assert_allclose(shifted, base[: shifted.size] + 0.6)
    # moving the slice grid by exactly one pixel equals moving the image by one pixel the other way
    n = 120
    col = _image((n, 1))[:, 0]
    w0, _ = acq.degrade_matrix(n, pixel, thickness, spacing, 0.3, profile)
    w1, _ = acq.degrade_matrix(n, pixel, thickness, spacing, 1.0, profile)  # 0.3 + 0.7 (one pixel)
    shifted = np.append(col[1:], col[-1])  # g'(z) = g(z + r) wherever the continuation agrees
    k = min(w0.shape[0], w1.shape[0])
    # skip the first slices, whose support reaches below the first pixel centre (constant continuation)
    first = 1 if profile == "box" else 9
    np.testing.assert_allclose((w1 @ col)[first:k], (w0 @ shifted)[first:k], rtol=1e-9)


def test_sharp_thin_slices_are_nearly_identity():
    # a box much thinner than a pixel placed on the pixel centres returns the pixel values
    n, pixel = 20, 1.0
    col = _image((n, 1))[:, 0]
    values = acq.f_down(col, pixel_mm=pixel, thickness_mm=1e-6, spacing_mm=1.0, phase_mm=0.5 - 0.5e-6, axis=0)
    # error ~ slope jump x T / 4 at a kink of the linear interpolant: ~1e-4 for slopes of hundreds
    np.testing.assert_allclose(values, col[: values.size], atol=1e-3)


# ------------------------------------------------------------------------------------------------
# F_up and interpolation


def test_f_up_exact_on_linear_signals_including_extrapolation():
    centres = acq.slice_centres_mm(40, 0.6, 3.3, 1.7, 0.2)
    assert centres[0] > 0.3 and centres[-1] < 40 * 0.6 - 0.3  # there is something to extrapolate
    values = np.stack([2.5 * centres - 7.0, -0.3 * centres + 1.0], axis=1)
    up = acq.f_up(values, n_pixels=40, pixel_mm=0.6, centres_mm=centres, axis=0)
    z = (np.arange(40) + 0.5) * 0.6
    np.testing.assert_allclose(up, np.stack([2.5 * z - 7.0, -0.3 * z + 1.0], axis=1), rtol=1e-12, atol=1e-12)


def test_f_up_matches_oracle_on_random_values():
    centres = acq.slice_centres_mm(33, 0.8, 2.5, 1.25, 0.9)
    v = np.random.default_rng(5).normal(size=centres.size)
    up = acq.f_up(v, n_pixels=33, pixel_mm=0.8, centres_mm=centres, axis=0)
    np.testing.assert_allclose(
        up, ref.reference_f_up_column(v, centres, n_pixels=33, pixel_mm=0.8), atol=1e-12
    )


def test_interpolation_matrix_irregular_sources():
    src = np.array([0.0, 0.5, 2.0, 2.1, 5.0])
    dst = np.array([-1.0, 0.0, 0.25, 1.0, 2.05, 4.0, 5.0, 7.5])
    m = acq.interpolation_matrix(src, dst)
    assert m.shape == (dst.size, src.size)
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    np.testing.assert_allclose(m @ (3 * src - 1), 3 * dst - 1, atol=1e-12)
    vals = np.random.default_rng(0).normal(size=src.size)
    np.testing.assert_allclose(
        acq.interpolation_matrix(src, dst, extrapolate=False) @ vals, np.interp(dst, src, vals), atol=1e-12
    )
    with pytest.raises(ParameterError):
        acq.interpolation_matrix([0.0, 1.0, 1.0], dst)
    with pytest.raises(ParameterError):
        acq.interpolation_matrix([0.0], dst)


def test_clipping_per_image():
    # a bright bar near the end: linear extrapolation overshoots the image range and must be clipped
    imgs = np.zeros((2, 30, 4))
    imgs[0, 24:, :] = 100.0  # the last slice (centre 18.4 mm) lies inside the bar, the one before does not
    imgs[1] = -(np.linspace(0, 1, 30)[:, None] ** 2) * 50.0
    out = acq.degrade(imgs, pixel_mm=0.7, thickness_mm=3.0, spacing_mm=2.0, phase_mm=0.9)
    for i in range(2):
        assert out[i].min() >= imgs[i].min() and out[i].max() <= imgs[i].max()
    centres = acq.slice_centres_mm(30, 0.7, 3.0, 2.0, 0.9)
    slices = acq.f_down(imgs, pixel_mm=0.7, thickness_mm=3.0, spacing_mm=2.0, phase_mm=0.9)
    unclipped = acq.f_up(slices, n_pixels=30, pixel_mm=0.7, centres_mm=centres)
    assert unclipped[0].max() > 100.0  # clipping did something
    np.testing.assert_allclose(out, np.clip(unclipped, *acq.image_range(imgs)))
    clipped = acq.f_up(slices, n_pixels=30, pixel_mm=0.7, centres_mm=centres, clip_to=(0.0, 10.0))
    assert clipped.min() >= 0.0 and clipped.max() <= 10.0


# ------------------------------------------------------------------------------------------------
# torch, types, axes, batches


def test_numpy_and_torch_in_out_types():
    img32 = _image((24, 10)).astype(np.float32)
    kw = {"pixel_mm": 0.7, "thickness_mm": 3.0, "spacing_mm": 2.0}
    out_np = acq.degrade(img32, **kw)
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32
    out_t = acq.degrade(torch.from_numpy(img32), **kw)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), out_np)
    assert acq.degrade(img32.astype(np.float64), **kw).dtype == np.float64
    assert acq.f_down(img32.astype(np.int16), **kw).dtype == np.float32
    ro = img32.copy()
    ro.flags.writeable = False
    np.testing.assert_allclose(acq.degrade(ro, **kw), out_np)
    # float32 agrees with float64 to float32 precision
    assert _rel_err(out_np, acq.degrade(img32.astype(np.float64), **kw)) < 1e-5


def test_gradient_flows_through_operators():
    kw = {"pixel_mm": 0.7, "thickness_mm": 3.3, "spacing_mm": 1.7, "phase_mm": 0.2}
    small = torch.tensor(_image((12, 2)), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: acq.f_down(t, profile="gaussian", **kw), (small,), fast_mode=True
    )
    centres = acq.slice_centres_mm(12, 0.7, 3.3, 1.7, 0.2)
    s = torch.randn(centres.size, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: acq.f_up(t, n_pixels=12, pixel_mm=0.7, centres_mm=centres), (s,), fast_mode=True
    )
    x = torch.tensor(_image((20, 6)), dtype=torch.float64, requires_grad=True)
    y = acq.degrade(x, **kw)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
]


@pytest.mark.parametrize("device", DEVICES)
def test_device_agnostic_float32(device):
    img = np.stack([_image((40, 24), seed=s) for s in range(3)]).astype(np.float32)
    kw = {"pixel_mm": 0.74, "thickness_mm": 3.0, "spacing_mm": 2.0, "phase_mm": 0.5, "profile": "gaussian"}
    x = torch.from_numpy(img).to(device)
    out = acq.degrade(x, **kw)
    assert out.device.type == device and out.dtype == torch.float32 and out.shape == x.shape
    np.testing.assert_allclose(
        out.cpu().numpy(), acq.degrade(img.astype(np.float64), **kw), rtol=1e-5, atol=1e-3
    )
    down = acq.f_down(x, axis=-1, **kw)
    assert down.device.type == device
    up = acq.resample_slices(x, [0.0, 1.0, 2.0], [0.5, 1.5], axis=0)
    assert up.device.type == device


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_any_axis(axis):
    vol = _image((18, 21), seed=4)[None].repeat(16, axis=0) * np.linspace(1, 2, 16)[:, None, None]
    kw = {"pixel_mm": 0.9, "thickness_mm": 2.5, "spacing_mm": 1.25, "phase_mm": 0.1, "profile": "gaussian"}
    out = acq.f_down(vol, axis=axis, **kw)
    moved = np.moveaxis(vol, axis, -1)
    w, _ = acq.degrade_matrix(moved.shape[-1], 0.9, 2.5, 1.25, 0.1, "gaussian")
    np.testing.assert_allclose(out, np.moveaxis(moved @ w.T, -1, axis), rtol=1e-12, atol=1e-9)


def test_degrade_batch_equals_per_image_degrade():
    imgs = np.stack([_image((26, 8), seed=s) for s in range(3)]).astype(np.float32)
    phases = [0.0, 0.55, 1.9]
    kw = {"pixel_mm": 0.74, "thickness_mm": 3.0, "spacing_mm": 2.0, "profile": "box"}
    out = acq.degrade_batch(torch.from_numpy(imgs), phases_mm=phases, **kw)
    assert isinstance(out, torch.Tensor) and out.shape == imgs.shape
    for i, phase in enumerate(phases):
        np.testing.assert_allclose(
            out[i].numpy(), acq.degrade(imgs[i], phase_mm=phase, **kw), rtol=1e-5, atol=1e-3
        )
    with pytest.raises(ParameterError):
        acq.degrade_batch(imgs, phases_mm=[0.0], **kw)


def test_degrade_crop_with_explicit_clip_range():
    img = _image((30, 20))
    full = acq.degrade(img, pixel_mm=0.7, thickness_mm=3.0, spacing_mm=2.0)
    strip = acq.degrade(
        img[:, 5:9], pixel_mm=0.7, thickness_mm=3.0, spacing_mm=2.0, clip_to=acq.image_range(img)
    )
    np.testing.assert_allclose(strip, full[:, 5:9])


# ------------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    "kwargs",
    [
        {"thickness_mm": 0.0},
        {"thickness_mm": -1.0},
        {"spacing_mm": 0.0},
        {"pixel_mm": -0.5},
        {"pixel_mm": float("nan")},
        {"profile": "triangle"},
        {"phase_mm": -0.1},
        {"phase_mm": 2.0},  # phase must be < spacing
        {"thickness_mm": 30.0},  # no slice fits in 20 x 0.7 mm
        {"thickness_mm": 9.0, "spacing_mm": 6.0},  # only one slice fits
    ],
)
def test_invalid_arguments_raise_parameter_error(kwargs):
    base = {"pixel_mm": 0.7, "thickness_mm": 3.0, "spacing_mm": 2.0, "phase_mm": 0.0, "profile": "box"}
    base.update(kwargs)
    with pytest.raises(ParameterError) as info:
        acq.degrade(np.zeros((20, 4)), **base)
    assert info.value.message  # a user-facing sentence


def test_f_up_validation():
    with pytest.raises(ParameterError):
        acq.f_up(np.zeros((3, 2)), n_pixels=10, pixel_mm=1.0, centres_mm=[1.0, 3.0, 2.0])
    with pytest.raises(ParameterError):
        acq.f_up(np.zeros((3, 2)), n_pixels=10, pixel_mm=1.0, centres_mm=[1.0, 2.0])  # length mismatch
    for bad_n in (1, 2.5, "many", None):
        with pytest.raises(ParameterError):
            acq.f_up(np.zeros((3, 2)), n_pixels=bad_n, pixel_mm=1.0, centres_mm=[1.0, 2.0, 3.0])


# ------------------------------------------------------------------------------------------------
# z geometry helpers


def test_simulate_thick_slices_and_output_grid():
    vol = np.stack([_image((12, 9), seed=s) for s in range(60)])  # 60 thin 1 mm slices along axis 0
    thick, centres = acq.simulate_thick_slices(vol, pixel_mm=1.0, thickness_mm=5.0, spacing_mm=2.5)
    np.testing.assert_allclose(centres, 2.5 + 2.5 * np.arange(centres.size))
    assert centres[-1] + 2.5 <= 60.0 and centres[-1] + 2.5 + 2.5 > 60.0
    assert thick.shape == (centres.size, 12, 9)
    col, expected_centres = ref.reference_f_down_column(
        vol[:, 4, 7], pixel_mm=1.0, thickness_mm=5.0, spacing_mm=2.5
    )
    np.testing.assert_allclose(thick[:, 4, 7], col, rtol=1e-9)
    np.testing.assert_allclose(centres, expected_centres)

    out_pos = acq.output_positions_mm(centres, 1.0)
    assert out_pos[0] == centres[0] and out_pos[-1] <= centres[-1] + 1e-9 and out_pos[-1] + 1.0 > centres[-1]
    np.testing.assert_allclose(np.diff(out_pos), 1.0)
    up = acq.resample_slices(thick, centres, out_pos, axis=0)
    assert up.shape == (out_pos.size, 12, 9)
    np.testing.assert_allclose(up[:, 4, 7], np.interp(out_pos, centres, thick[:, 4, 7]), atol=1e-9)


def test_output_positions_exact_multiples_and_validation():
    pos = 2.0 * np.arange(343)  # L291: every 2 mm
    out = acq.output_positions_mm(pos, 0.7421875)
    assert out[0] == 0.0 and out.size == math.floor(684 / 0.7421875) + 1
    assert acq.output_positions_mm([0.0, 0.3, 0.6], 0.1).size == 7  # 0.6/0.1 is not exact in binary
    with pytest.raises(ParameterError):
        acq.output_positions_mm(pos, 0.0)
    with pytest.raises(ParameterError):
        acq.output_positions_mm([1.0], 0.5)


def test_resample_slices_extrapolation_and_torch():
    vol = torch.arange(5, dtype=torch.float32)[:, None, None].repeat(1, 2, 3) * 2.0  # value = 2 * position
    out = acq.resample_slices(vol, [0, 1, 2, 3, 4], [-1.0, 0.5, 4.5], axis=0)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out[:, 0, 0].numpy(), [-2.0, 1.0, 9.0])
    held = acq.resample_slices(vol, [0, 1, 2, 3, 4], [-1.0, 4.5], axis=0, extrapolate=False)
    np.testing.assert_allclose(held[:, 1, 2].numpy(), [0.0, 8.0])


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("extrapolate", [True, False])
def test_resample_slices_equals_the_interpolation_matrix(axis, extrapolate):
    rng = np.random.default_rng(5)
    vol = rng.normal(0, 300, size=(7, 6, 5)).astype(np.float32)
    n = vol.shape[axis]
    src = np.cumsum(rng.uniform(0.5, 2.0, size=n))  # irregular
    dst = np.linspace(src[0] - 1.0, src[-1] + 1.0, 17)  # beyond both ends too
    out = acq.resample_slices(vol, src, dst, axis=axis, extrapolate=extrapolate)
    m = acq.interpolation_matrix(src, dst, extrapolate=extrapolate)
    expected = np.moveaxis(np.tensordot(m, np.moveaxis(vol.astype(np.float64), axis, 0), axes=1), 0, axis)
    assert out.dtype == np.float32 and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-3)
    j, f = acq.interpolation_weights(src, dst, extrapolate=extrapolate)
    rows = np.arange(dst.size)
    np.testing.assert_allclose(m[rows, j], 1 - f)
    np.testing.assert_allclose(m[rows, j + 1], f)
    assert vol.flags.writeable  # the input is not modified or frozen


def test_resample_slices_rejects_a_position_count_that_does_not_fit():
    with pytest.raises(ParameterError, match="3 source positions"):
        acq.resample_slices(np.zeros((4, 2, 2), dtype=np.float32), [0.0, 1.0, 2.0], [0.5], axis=0)


# ------------------------------------------------------------------------------------------------
# real data


@pytest.mark.realdata
def test_simulate_on_real_head_matches_oracle(vhm_head_path):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(vhm_head_path))
    arr = sitk.GetArrayFromImage(image)  # (z, y, x), 1 mm
    columns = arr[:, 256, 200:208].astype(np.float32)
    thick, centres = acq.simulate_thick_slices(
        columns, pixel_mm=1.0, thickness_mm=5.0, spacing_mm=2.0, phase_mm=0.7, profile="gaussian"
    )
    expected, _ = ref.reference_f_down_image(
        columns, pixel_mm=1.0, thickness_mm=5.0, spacing_mm=2.0, phase_mm=0.7, profile="gaussian", axis=0
    )
    assert thick.dtype == np.float32
    assert _rel_err(thick, expected) < 1e-5
    assert centres.size == math.floor((arr.shape[0] - 5.0 - 0.7) / 2.0) + 1


@pytest.mark.parametrize(
    ("thickness", "spacing"), [(3.0, 2.0), (5.0, 2.5), (5.0, 5.0), (2.0, 1.0), (3.0, 4.0)]
)
@pytest.mark.parametrize("profile", ["box", "gaussian"])
def test_the_neighbour_noise_correlation_is_the_profiles_autocorrelation(profile, thickness, spacing):
    """White noise along z, sliced by the profile every d: the correlation of neighbouring slices, counted."""
    dz = 0.01
    z = np.arange(-4 * thickness, 4 * thickness + dz, dz)
    if profile == "box":
        s = (np.abs(z) <= thickness / 2).astype(float)
    else:
        s = np.exp(-0.5 * (z / acq.gaussian_sigma_mm(thickness)) ** 2)
    shifted = np.interp(z + spacing, z, s, left=0.0, right=0.0)
    counted = float(np.sum(s * shifted) / np.sum(s * s))
    implied = acq.neighbour_noise_correlation(profile, thickness, spacing)
    assert implied == pytest.approx(counted, abs=3e-3)
    with pytest.raises(ParameterError, match="Unknown profile"):
        acq.neighbour_noise_correlation("trapezoid", thickness, spacing)
