"""The slice profile estimated from the scan (``--profile auto``): the estimator on synthetic volumes of known
profile, its place in ``enhance`` (recorded, a user-given profile wins) and in ``sr4zct info``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sr4zct.cli import main
from sr4zct.errors import ParameterError
from sr4zct.method import acquisition
from sr4zct.method.profile import ProfileEstimate, estimate_profile, estimate_volume_profile
from sr4zct.run.pipeline import enhance
from sr4zct.run.presets import Preset
from sr4zct.volume import Volume, make_geometry

TINY = Preset(
    "tiny", steps=6, patch_px=24, batch=4, max_minutes=2.0, validate_every=3,
    network_config={"layers": 2, "channels": 4, "unshuffle": 2},
)  # fmt: skip

pytestmark = pytest.mark.filterwarnings("ignore:Training did not improve:RuntimeWarning")


def isotropic_texture(shape=(96, 128, 128), seed=0, scale_px=2.5) -> np.ndarray:
    """Soft tissue (0-230 HU) with blobs whose statistics are the same along every axis: the estimator's
    assumption holds exactly, so it must find the simulated profile."""
    rng = np.random.default_rng(seed)
    freq = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    gain = np.exp(-2.0 * (np.pi * scale_px) ** 2 * sum(f * f for f in freq))
    field = np.fft.ifftn(np.fft.fftn(rng.standard_normal(shape)) * gain).real
    field /= field.std()
    return (200.0 * (field > 0.3) + 30.0 * field).astype(np.float32)


@pytest.fixture(scope="module")
def texture():
    return isotropic_texture()


def thick_slices(texture, thickness, spacing, profile, noise_hu=0.0, seed=1):
    thick, _ = acquisition.simulate_thick_slices(
        texture, pixel_mm=1.0, thickness_mm=thickness, spacing_mm=spacing, profile=profile
    )
    if noise_hu:
        thick = thick + np.random.default_rng(seed).normal(0.0, noise_hu, thick.shape).astype(np.float32)
    return thick


@pytest.mark.parametrize("profile", ["box", "gaussian"])
@pytest.mark.parametrize(("thickness", "spacing"), [(5.0, 2.5), (3.0, 2.0)])
def test_family_and_width_of_simulated_acquisitions(texture, profile, thickness, spacing):
    thick = thick_slices(texture, thickness, spacing, profile)
    found = estimate_profile(thick, pixel_spacing_mm=(1.0, 1.0), spacing_mm=spacing, nominal_mm=thickness)
    assert found.family == profile and found.family_certain
    assert found.fwhm_mm == pytest.approx(thickness, rel=0.15)
    lo, hi = found.fwhm_range_mm
    assert lo <= found.fwhm_mm <= hi
    assert not found.disagrees_with_nominal


@pytest.mark.parametrize("profile", ["box", "gaussian"])
def test_noise_does_not_make_the_scan_look_sharper(texture, profile):
    """20 HU of noise (a tenth of the contrast): cross-spectra of neighbouring columns cancel it."""
    thick = thick_slices(texture, 4.0, 2.0, profile, noise_hu=20.0)
    found = estimate_profile(thick, pixel_spacing_mm=(1.0, 1.0), spacing_mm=2.0, nominal_mm=4.0)
    assert found.family == profile
    assert found.fwhm_mm == pytest.approx(4.0, rel=0.15)


def test_without_a_nominal_thickness_the_free_fit_decides(texture):
    thick = thick_slices(texture, 5.0, 2.5, "gaussian")
    found = estimate_profile(thick, pixel_spacing_mm=(1.0, 1.0), spacing_mm=2.5)
    assert found.nominal_mm is None and found.family == "gaussian"
    assert found.fwhm_mm == pytest.approx(5.0, rel=0.15)
    assert not found.disagrees_with_nominal


def test_a_wrong_nominal_thickness_is_flagged(texture):
    thick = thick_slices(texture, 6.0, 3.0, "gaussian")
    found = estimate_profile(thick, pixel_spacing_mm=(1.0, 1.0), spacing_mm=3.0, nominal_mm=3.0)
    assert found.fwhm_mm > 5.0 and found.disagrees_with_nominal
    assert "gaussian, FWHM" in found.describe()
    assert found.to_parameters()["profile_estimate_family"] == "gaussian"


def test_anisotropic_pixels_and_the_volume_helper(texture):
    """Rows of 1 mm and columns of 0.8 mm (the texture resampled along the columns)."""
    fine = acquisition.resample_slices(texture, np.arange(128) * 1.0, np.arange(150) * 0.8, axis=2)
    thick = thick_slices(fine, 5.0, 2.5, "box")
    geometry = make_geometry(
        thick.shape, slice_spacing_mm=2.5, pixel_spacing_mm=(1.0, 0.8), slice_thickness_mm=5.0
    )
    found = estimate_volume_profile(Volume(thick, geometry))
    assert found.family == "box" and found.fwhm_mm == pytest.approx(5.0, rel=0.15)
    assert found.nominal_mm == 5.0
    assert estimate_volume_profile(Volume(thick, geometry), thickness_mm=4.0).nominal_mm == 4.0


def test_volumes_that_cannot_be_estimated_say_why(texture):
    with pytest.raises(ParameterError, match="too small"):
        estimate_profile(texture[:5, :20, :20], pixel_spacing_mm=(1.0, 1.0), spacing_mm=2.0)
    air = np.full((40, 96, 96), -1000.0, np.float32)
    with pytest.raises(ParameterError, match="body"):
        estimate_profile(air, pixel_spacing_mm=(1.0, 1.0), spacing_mm=2.0)
    with pytest.raises(ParameterError, match="3-D"):
        estimate_profile(texture[0], pixel_spacing_mm=(1.0, 1.0), spacing_mm=2.0)


def test_estimate_record():
    found = ProfileEstimate("box", 3.2, (3.0, 3.4), {"box": 0.01, "gaussian": 0.02}, 1.1, 5.0, 100)
    assert not found.family_certain and "family uncertain" in found.describe()
    assert found.disagrees_with_nominal  # 3.2 vs 5 mm, and 5 lies outside 3.0-3.4
    record = found.to_dict()
    assert record["fwhm_range_mm"] == [3.0, 3.4] and record["family_certain"] is False


def _volume(thick, thickness, spacing):
    geometry = make_geometry(
        thick.shape, slice_spacing_mm=spacing, pixel_spacing_mm=(1.0, 1.0), slice_thickness_mm=thickness
    )
    return Volume(thick, geometry)


def test_auto_is_the_default_and_recorded(texture):
    vol = _volume(thick_slices(texture[:64], 5.0, 2.5, "gaussian", noise_hu=10.0), 5.0, 2.5)
    result = enhance(vol, preset=TINY)
    p = result.parameters
    assert p["profile_option"] == "auto" and p["profile"] == "gaussian"
    assert p["profile_estimate_family"] == "gaussian" and "FWHM" in p["profile_estimate"]
    assert float(p["noise_sigma_hu"]) == pytest.approx(10.0, rel=0.25) and p["training_noise"] == "on"
    assert result.volume.metadata["profile"] == "gaussian"


def test_a_user_given_profile_wins(texture):
    vol = _volume(thick_slices(texture[:64], 5.0, 2.5, "gaussian"), 5.0, 2.5)
    result = enhance(vol, preset=TINY, profile="box", noise="off")
    p = result.parameters
    assert p["profile"] == "box" and p["profile_option"] == "box"
    assert "profile_estimate" not in p and "noise_sigma_hu" not in p and p["training_noise"] == "off"


def test_a_volume_too_small_to_estimate_falls_back_to_box_with_a_warning(texture):
    vol = _volume(thick_slices(texture[:24, :40, :40], 3.0, 2.0, "gaussian"), 3.0, 2.0)
    result = enhance(vol, preset=TINY, noise="off")
    assert result.parameters["profile"] == "box"
    assert any("could not be estimated" in w for w in result.warnings)


def test_a_volume_too_small_to_estimate_takes_the_family_of_its_scan_mode_without_a_warning(texture):
    vol = _volume(thick_slices(texture[:24, :40, :40], 3.0, 2.0, "gaussian"), 3.0, 2.0)
    result = enhance(vol, preset=TINY, noise="off", scan_mode="helical")
    assert result.parameters["profile"] == "gaussian" and result.parameters["scan_mode"] == "helical"
    assert "profile_estimate" not in result.parameters
    assert not any("could not be estimated" in w for w in result.warnings)


def test_a_saved_model_brings_its_profile(texture, tmp_path):
    vol = _volume(thick_slices(texture[:64], 5.0, 2.5, "gaussian"), 5.0, 2.5)
    first = enhance(vol, preset=TINY, save_model_path=tmp_path / "m.pt")
    again = enhance(vol, preset=TINY, model_path=tmp_path / "m.pt")
    assert again.parameters["profile"] == first.parameters["profile"] == "gaussian"
    assert "profile_estimate" not in again.parameters


def test_info_shows_the_estimate(texture, tmp_path, capsys):
    from sr4zct.io import write_volume

    path = write_volume(
        _volume(thick_slices(texture, 5.0, 2.5, "gaussian"), 5.0, 2.5), tmp_path / "thick.nrrd"
    )
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Slice profile:     gaussian, FWHM" in out and "estimated from the images" in out
    assert "(white noise sliced by each profile would give: box 0.50, gaussian 0.71)" in out
    assert main(["info", str(path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["profile_estimate"]["family"] == "gaussian"
    assert record["profile_estimate"]["fwhm_mm"] == pytest.approx(5.0, rel=0.15)
    assert "sigma_hu" in record["noise_estimate"]
    assert record["noise_estimate"]["implied_correlation"] == pytest.approx({"box": 0.5, "gaussian": 2**-0.5})
    assert main(["info", str(path), "--no-estimate"]) == 0
    assert "Slice profile" not in capsys.readouterr().out


def test_info_says_why_there_is_no_estimate(tmp_path, capsys):
    from dicom_factory import write_series

    series = write_series(tmp_path / "ct", n_slices=5)
    assert main(["info", str(series.folder)]) == 0
    assert "Slice profile:     not estimated (" in capsys.readouterr().out


def test_the_run_warns_about_a_doubtful_estimate(texture, monkeypatch):
    """An estimate far from the thickness, of an unclear family: the run says so and keeps the thickness."""
    import sr4zct.method.profile as profile_module

    def doubtful(array_hu, *, pixel_spacing_mm, spacing_mm, nominal_mm=None, scan_mode=None):
        return ProfileEstimate(
            "gaussian", 9.0, (8.5, 9.5), {"box": 0.011, "gaussian": 0.01}, 1.1, nominal_mm, 50
        )

    monkeypatch.setattr(profile_module, "estimate_profile", doubtful)
    vol = _volume(thick_slices(texture[:64], 5.0, 2.5, "gaussian"), 5.0, 2.5)
    result = enhance(vol, preset=TINY, noise="off")
    text = " ".join(result.warnings)
    assert "disagrees with the slice thickness of 5 mm" in text and "the model uses 5 mm" in text
    assert "does not tell a box from a Gaussian" in text
    assert result.parameters["thickness_mm"] == "5" and result.parameters["profile"] == "gaussian"


def test_non_finite_values_give_no_estimate(texture):
    thick = thick_slices(texture, 5.0, 2.5, "box")
    thick[10:20] = np.nan
    with pytest.raises(ParameterError, match="finite"):
        estimate_profile(thick, pixel_spacing_mm=(1.0, 1.0), spacing_mm=2.5)


def test_a_body_narrower_than_a_segment_says_so():
    """A volume big enough in all but its body (the body box crops the in-plane images) is refused with the
    reason, not a NumPy error (it was ``ValueError: window shape cannot be larger than input array shape``)."""
    from sr4zct.demo.phantom import make_demo_case

    _, thick = make_demo_case(3.0, 2.0, "box", 0, shape=(40, 64, 64), voxel_mm=1.0)
    with pytest.raises(ParameterError, match=r"The body is too small .* must hold"):
        estimate_profile(thick.array, pixel_spacing_mm=(1.0, 1.0), spacing_mm=2.0, nominal_mm=3.0)


def test_a_scan_mode_fixes_the_family_and_the_images_give_the_width(texture):
    """A box acquisition said to be helical is read as a Gaussian: the scan mode wins over the images, whose
    preference stays visible (margin below 1); the FWHM is still the images' best Gaussian."""
    thick = thick_slices(texture, 5.0, 2.5, "box")
    images = estimate_profile(thick, pixel_spacing_mm=(1.0, 1.0), spacing_mm=2.5, nominal_mm=5.0)
    helical = estimate_profile(
        thick, pixel_spacing_mm=(1.0, 1.0), spacing_mm=2.5, nominal_mm=5.0, scan_mode="helical"
    )
    assert images.family == "box" and images.family_source == "images"
    assert helical.family == "gaussian" and helical.family_source == "helical scan" and helical.family_certain
    assert helical.family_margin == pytest.approx(1.0 / images.family_margin) and helical.family_margin < 1.0
    assert 3.0 < helical.fwhm_mm < 4.5  # narrower than the box: at equal width a Gaussian blurs more
    assert "gaussian (from the helical scan), FWHM" in helical.describe()
    assert helical.to_parameters()["profile_estimate_family_source"] == "helical scan"
    same = estimate_profile(
        thick, pixel_spacing_mm=(1.0, 1.0), spacing_mm=2.5, nominal_mm=5.0, scan_mode="sequential"
    )
    assert same.family == "box" and same.family_margin == images.family_margin
    with pytest.raises(ParameterError, match="Unknown scan mode 'spiral'"):
        estimate_profile(thick, pixel_spacing_mm=(1.0, 1.0), spacing_mm=2.5, scan_mode="spiral")


def test_the_run_takes_the_scan_mode_from_the_geometry_or_the_option(texture):
    import dataclasses

    vol = _volume(thick_slices(texture[:64], 5.0, 2.5, "box"), 5.0, 2.5)
    vol.geometry = dataclasses.replace(
        vol.geometry, scan_mode="helical", scan_mode_source="SpiralPitchFactor 1"
    )
    p = enhance(vol, preset=TINY, noise="off").parameters
    assert (p["profile"], p["scan_mode"], p["scan_mode_source"]) == (
        "gaussian",
        "helical",
        "DICOM SpiralPitchFactor 1",
    )
    assert p["profile_estimate_family_source"] == "helical scan"
    p = enhance(vol, preset=TINY, noise="off", scan_mode="sequential").parameters
    assert (p["profile"], p["scan_mode"], p["scan_mode_source"]) == (
        "box",
        "sequential",
        "the scan_mode option",
    )
    p = enhance(vol, preset=TINY, noise="off", profile="gaussian", scan_mode="sequential").parameters
    assert p["profile"] == "gaussian" and "scan_mode" not in p  # a given profile wins; no scan mode was used
