"""Every bad input of docs/errors.md through the real entry points: the CLI (one line on stderr, no
traceback, the documented exit code), the Python API (the exception class) and the background worker.

Enhancement runs use tiny synthetic volumes and a 2-step network so that each takes about a second.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_factory import CORONAL, write_series
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, RLELossless
from sr4zct import system
from sr4zct.cli import main
from sr4zct.errors import GeometryError, InputError, ModelError, ParameterError, ResourceError
from sr4zct.io import read_geometry, read_volume
from sr4zct.run import validation
from sr4zct.run.pipeline import enhance, enhance_file
from sr4zct.run.presets import Preset
from sr4zct.volume import Volume, make_geometry

REPO = Path(__file__).resolve().parents[2]
TINY = Preset(
    "tiny", steps=2, patch_px=16, batch=2, max_minutes=1.0, validate_every=2,
    network_config={"layers": 2, "channels": 4, "unshuffle": 2},
)  # fmt: skip


CPU = ["--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> list[str]:
    """CLI options for a fast run on the small series (3 mm every 2 mm, 0.8 mm pixels): a saved tiny model."""
    return ["--model", str(tiny_model_file(tmp_path_factory.mktemp("model"))), "--device", "cpu", "--quiet"]


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(result: tuple[int, str, str], exit_code: int, *fragments: str) -> str:
    """One line ``sr4zct: error: ...`` on stderr, no traceback, the documented exit code."""
    code, _, err = result
    # Apart from a progress bar that may have started, stderr holds exactly the error line.
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]
    assert code == exit_code, err
    assert len(lines) == 1, err
    assert lines[0].startswith("sr4zct: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def small_series(folder: Path, **kwargs):
    kwargs = {"n_slices": 5, "rows": 16, "columns": 16, "pixel_spacing_mm": (0.8, 0.8), **kwargs}
    return write_series(folder, **kwargs)


def write_image(
    path: Path, array: np.ndarray, spacing=(0.8, 0.8, 2.0), thickness: float | None = 3.0
) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[: image.GetDimension()])
    if thickness is not None:
        image.SetMetaData("sr4zct_slice_thickness_mm", str(thickness))
    sitk.WriteImage(image, str(path))
    return path


def ct_array(shape=(6, 16, 16), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.full(shape, -1000.0)
    a[:, 3:-3, 3:-3] = 40.0 + 30.0 * rng.standard_normal((shape[0], shape[1] - 6, shape[2] - 6))
    return a


# --- inputs ----------------------------------------------------------------------------------------


def test_missing_path(tmp_path, capsys):
    missing = tmp_path / "nope"
    with pytest.raises(InputError, match="does not exist"):
        read_volume(missing)
    with pytest.raises(InputError, match="does not exist"):
        enhance_file(missing, tmp_path / "out.nrrd")
    assert_error(cli(capsys, "info", missing), 2, f"Input {missing} does not exist.")
    assert_error(cli(capsys, "enhance", missing, "-o", tmp_path / "o.nrrd"), 2, "does not exist")
    assert not (tmp_path / "o.nrrd").exists()


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"No DICOM images found .* \(0 file\(s\) checked\)"):
        read_geometry(tmp_path / "empty")
    assert_error(
        cli(capsys, "info", tmp_path / "empty"), 2, "No DICOM images found in", "(0 file(s) checked)"
    )


def test_folder_without_dicom(tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a CT")
    (folder / "scan.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 200)
    assert_error(cli(capsys, "info", folder), 2, "No DICOM images found in", "(2 file(s) checked)")
    line = assert_error(cli(capsys, "info", folder / "notes.txt"), 2, "is neither a DICOM image")
    assert ".nrrd" in line
    with pytest.raises(InputError):
        read_volume(folder / "notes.txt")


def test_several_series(quick, tmp_path, capsys):
    a = small_series(tmp_path / "mixed", series_description="soft", series_number=2)
    b = small_series(
        tmp_path / "mixed", series_description="bone", series_number=3, name_pattern="B{index}.dcm"
    )
    line = assert_error(
        cli(capsys, "info", a.folder), 2, "holds 2 DICOM series; choose one with --series UID"
    )
    assert a.series_uid in line and b.series_uid in line and "'soft'" in line and "'bone'" in line
    code, out, _ = cli(capsys, "info", a.folder, "--series", b.series_uid)
    assert code == 0 and "bone" in out
    assert_error(cli(capsys, "info", a.folder, "--series", "1.2.3"), 2, "Series 1.2.3 is not in")
    assert_error(cli(capsys, "enhance", a.folder, "-o", tmp_path / "o.nrrd", *quick), 2, "--series UID")
    np.testing.assert_array_equal(read_volume(a.folder, series_uid=a.series_uid).array, a.hu)


def test_single_slice_and_2d_image(tmp_path, capsys):
    s = small_series(tmp_path / "one", n_slices=1)
    assert_error(cli(capsys, "info", s.folder), 3, "has 1 slice(s); SR4ZCT needs at least 2 slices")
    with pytest.raises(GeometryError):
        read_volume(s.folder)
    flat = write_image(tmp_path / "flat.nrrd", np.zeros((16, 16), np.int16))
    assert_error(cli(capsys, "info", flat), 2, "is a 2-D image; SR4ZCT needs a 3-D volume")
    with pytest.raises(GeometryError, match="at least 2 slices"):
        validation.validate_geometry_for_enhancement(make_geometry((1, 8, 8), slice_spacing_mm=2.0))


def test_rgb_multicomponent_and_multiframe(tmp_path, capsys):
    rgb = small_series(
        tmp_path / "rgb", samples_per_pixel=3, rescale_intercept=0.0, hu=np.full((5, 16, 16), 50.0)
    )
    assert_error(cli(capsys, "info", rgb.folder), 2, "holds colour (RGB, 3 samples per pixel) images")
    vector = sitk.GetImageFromArray(np.zeros((4, 8, 8, 3), np.float32), isVector=True)
    sitk.WriteImage(vector, str(tmp_path / "vector.nrrd"))
    assert_error(cli(capsys, "info", tmp_path / "vector.nrrd"), 2, "has 3 components per voxel")
    multi = small_series(tmp_path / "mf", number_of_frames=4)
    assert_error(cli(capsys, "enhance", multi.folder, "-o", tmp_path / "o.nrrd"), 2, "multi-frame DICOM")


def test_non_ct_modality(quick, tmp_path, capsys):
    s = small_series(tmp_path / "mr", modality="MR")
    code, out, _ = cli(capsys, "info", s.folder)
    assert code == 0 and "[MR]" in out
    out_path = tmp_path / "mr.nrrd"
    assert_error(
        cli(capsys, "enhance", s.folder, "-o", out_path, *quick),
        2,
        "modality is MR, not CT",
        "--allow-non-ct",
    )
    assert not out_path.exists()
    with pytest.raises(InputError, match="not CT"):
        enhance_file(s.folder, out_path, preset=TINY)
    result = enhance_file(s.folder, out_path, preset=TINY, allow_non_ct=True)
    assert any("not CT" in w for w in result.warnings) and out_path.is_file()
    code, _, err = cli(
        capsys, "enhance", s.folder, "-o", tmp_path / "mr2.nrrd", "--allow-non-ct", *quick[:-1]
    )
    assert code == 0 and "warning: The series' modality is MR" in err
    assert validation.check_modality(None) is None and validation.check_modality("ct") is None


@pytest.mark.parametrize(
    ("syntax", "size"),
    [(JPEGLosslessSV1, 16), (RLELossless, 16), (JPEG2000Lossless, 32)],
    ids=["jpeg", "rle", "j2k"],
)
def test_compressed_transfer_syntaxes_decode(quick, tmp_path, capsys, syntax, size):
    s = small_series(tmp_path / "c", rows=size, columns=size, transfer_syntax=syntax)
    import pydicom

    assert pydicom.dcmread(s.paths[0]).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(read_volume(s.folder).array, s.hu)
    out = tmp_path / "out.nrrd"
    assert cli(capsys, "enhance", s.folder, "-o", out, *quick)[0] == 0
    assert read_volume(out, slice_axis=0).array.shape[1:] == (size, size)


def test_missing_decoder_is_named(quick, tmp_path, capsys, monkeypatch):
    from pydicom.pixels.decoders import JPEGLosslessSV1Decoder

    s = small_series(tmp_path / "jpeg", n_slices=3, transfer_syntax=JPEGLosslessSV1)
    # As if pylibjpeg-libjpeg were not installed (it is a dependency, so it is here).
    monkeypatch.setattr(JPEGLosslessSV1Decoder, "_available", {})
    monkeypatch.setattr(JPEGLosslessSV1Decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg-libjpeg>=2.1",)})
    assert read_geometry(s.folder).n_slices == 3  # headers need no decoder
    line = assert_error(
        cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", *quick),
        2,
        "cannot decode the pixel data (transfer syntax JPEG Lossless, Non-Hierarchical, First-Order Prediction",
        "A decoder for this compression is not installed: install",
    )
    assert "pylibjpeg-libjpeg" in line
    assert not (tmp_path / "o.nrrd").exists()


def test_damaged_dicom_files(tmp_path, capsys):
    import pydicom

    # A file marked as DICOM, cut inside its header: refused, never silently skipped.
    s = small_series(tmp_path / "cut")
    s.paths[2].write_bytes(s.paths[2].read_bytes()[:200])
    assert_error(cli(capsys, "info", s.folder), 2, "is damaged and cannot be read")
    # Missing image size.
    s = small_series(tmp_path / "size", missing_tags=["Columns"])
    assert_error(cli(capsys, "info", s.folder), 2, "have no valid image size")
    # Rows that do not match the pixel data: the headers are fine, the pixels are not.
    s = small_series(tmp_path / "rows", extra_tags={"Rows": 17})
    assert cli(capsys, "info", s.folder)[0] == 0
    with pytest.raises(InputError, match="does not match the image header"):
        read_volume(s.folder)
    # An unusable rescale.
    s = small_series(tmp_path / "slope", extra_tags={"RescaleSlope": 0})
    with pytest.raises(InputError, match="invalid RescaleSlope"):
        read_volume(s.folder)
    # A value whose bytes do not fit its VR counts as missing (here a description).
    s = small_series(tmp_path / "vr")
    for p in s.paths:
        ds = pydicom.dcmread(p)
        from pydicom.dataelem import RawDataElement

        tag = pydicom.tag.Tag("SeriesDescription")
        ds._dict[tag] = RawDataElement(tag, "FD", 2, b"\x10 ", 0, False, True)
        ds.save_as(p)
    assert read_volume(s.folder).geometry.n_slices == 5


def test_damaged_image_files(tmp_path, capsys):
    path = write_image(tmp_path / "ok.nrrd", ct_array().astype(np.int16))
    header, data = path.read_bytes().split(b"\n\n", 1)
    cut = tmp_path / "cut.nrrd"
    cut.write_bytes(path.read_bytes()[:-50])
    assert read_geometry(cut).shape == (6, 16, 16)  # the header is intact
    with pytest.raises(InputError, match="truncated"):
        read_volume(cut)
    garbage = tmp_path / "garbage.nrrd"
    garbage.write_bytes(b"NRRD0004\nnonsense\n\n" + data)
    assert_error(cli(capsys, "info", garbage), 2, f"Cannot read {garbage}")
    zero = tmp_path / "zero.nrrd"
    zero.write_bytes(
        re.sub(rb"space directions: \([^)]*\)", b"space directions: (0,0,0)", header) + b"\n\n" + data
    )
    assert_error(cli(capsys, "info", zero), 3, "every spacing must be a positive number")


def test_missing_slice_thickness(quick, tmp_path, capsys):
    s = small_series(tmp_path / "nothick", thickness_mm=None)
    code, out, _ = cli(capsys, "info", s.folder)
    assert code == 0 and "MISSING" in out
    out_path = tmp_path / "o.nrrd"
    assert_error(
        cli(capsys, "enhance", s.folder, "-o", out_path, *quick),
        4,
        "The slice thickness is unknown (the file does not record it); give it in millimetres with --thickness",
    )
    assert not out_path.exists()
    assert cli(capsys, "enhance", s.folder, "-o", out_path, "--thickness", "3", *quick)[0] == 0
    with pytest.raises(ParameterError, match="thickness is unknown"):
        enhance(read_volume(s.folder), preset=TINY)


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        (["--thickness", "-1"], "--thickness (the slice thickness) must be a positive number of millimetres"),
        (["--thickness", "0"], "--thickness (the slice thickness) must be a positive number of millimetres"),
        (
            ["--thickness", "nan"],
            "--thickness (the slice thickness) must be a positive number of millimetres",
        ),
        (["--spacing", "0"], "--spacing (the slice spacing) must be a positive number of millimetres"),
        (["--spacing", "-2"], "--spacing (the slice spacing) must be a positive number of millimetres"),
        (["--thickness", "80"], "The slice thickness 80 mm is implausible (more than 50 mm)"),
        (["--spacing", "60"], "The slice spacing 60 mm is implausible"),
    ],
)
def test_thickness_or_spacing_not_positive_or_absurd(quick, tmp_path, capsys, option, fragment):
    s = small_series(tmp_path / "ct")
    assert_error(cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", *option, *quick), 4, fragment)
    assert not (tmp_path / "o.nrrd").exists()


def test_thickness_or_spacing_api():
    vol = Volume(ct_array().astype(np.float32), make_geometry((6, 16, 16), slice_spacing_mm=2.0, slice_thickness_mm=3.0,
                                                            pixel_spacing_mm=(0.8, 0.8)))  # fmt: skip
    for kwargs in (
        {"thickness_mm": -1.0},
        {"thickness_mm": math.inf},
        {"spacing_mm": 0.0},
        {"thickness_mm": 51.0},
    ):
        with pytest.raises(ParameterError):
            enhance(vol, preset=TINY, **kwargs)


def test_absurd_geometry_in_the_file(quick, tmp_path, capsys):
    s = small_series(tmp_path / "thick80", thickness_mm=80.0)
    assert_error(cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", *quick), 3,
                 "The slice thickness in the file is 80 mm, more than 50 mm")  # fmt: skip
    assert cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", "--thickness", "3", *quick)[0] == 0
    s = small_series(tmp_path / "far", spacing_mm=60.0)
    assert_error(cli(capsys, "enhance", s.folder, "-o", tmp_path / "o2.nrrd", *quick), 3,
                 "The slice spacing in the file is 60 mm")  # fmt: skip
    s = small_series(tmp_path / "px0", pixel_spacing_mm=(0.0, 0.8))
    assert_error(cli(capsys, "info", s.folder), 3, "PixelSpacing must be two positive numbers (mm)")
    s = small_series(tmp_path / "px20", pixel_spacing_mm=(20.0, 20.0), thickness_mm=40.0, spacing_mm=40.0)
    assert_error(
        cli(capsys, "enhance", s.folder, "-o", tmp_path / "o3.nrrd", *quick), 3, "is implausible for CT"
    )


def test_thickness_finer_than_pixels_nothing_to_gain(quick, tmp_path, capsys):
    s = small_series(tmp_path / "thin", pixel_spacing_mm=(1.0, 1.0), thickness_mm=0.6, spacing_mm=0.6)
    line = assert_error(
        cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", *quick), 4, "Nothing to gain"
    )
    assert "0.6 mm thick every 0.6 mm" in line and "sharper in-plane resolution" in line
    # Thin slices with gaps still have something to gain (the gaps).
    g = make_geometry((5, 8, 8), slice_spacing_mm=3.0, slice_thickness_mm=0.6, pixel_spacing_mm=(1.0, 1.0))
    assert validation.validate_geometry_for_enhancement(g).spacing_mm == 3.0


def test_target_spacing_not_finer(quick, tmp_path, capsys):
    s = small_series(tmp_path / "ct")  # d = 2 mm, pixels 0.8 mm
    for value in ("2", "3"):
        assert_error(cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", "--target-spacing", value, *quick),
                     4, f"The target spacing ({value} mm) must be finer than the slice spacing (2 mm).")  # fmt: skip
    assert_error(cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", "--target-spacing", "0", *quick),
                 4, "--target-spacing (the output slice spacing) must be a positive number")  # fmt: skip
    coarse = small_series(tmp_path / "coarse", pixel_spacing_mm=(2.5, 2.5), thickness_mm=3.0, spacing_mm=2.0)
    assert_error(cli(capsys, "enhance", coarse.folder, "-o", tmp_path / "o.nrrd", *quick), 4,
                 "The default target spacing (the in-plane pixel size, 2.5 mm) is not finer")  # fmt: skip
    assert not (tmp_path / "o.nrrd").exists()


def test_irregular_spacing_and_missing_slices(quick, tmp_path, capsys):
    z = np.array([0.0, 2.0, 4.0, 8.0, 10.0, 12.0])  # the slice at 6 mm is missing
    positions = np.stack([np.full(6, -10.0), np.full(6, -20.0), -30.0 + z], axis=1)
    s = small_series(tmp_path / "gap", positions=positions)
    code, out, _ = cli(capsys, "info", s.folder)
    assert code == 0 and "IRREGULAR" in out
    code, _, err = cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", *quick[:-1])
    assert code == 0 and "warning: Irregular slice spacing (about 1 missing slice(s)" in err
    # the output grid is regular from the first to the last slice centre
    assert read_volume(tmp_path / "o.nrrd", slice_axis=0).geometry.shape[0] == 16


def test_gaps_and_duplicate_positions(quick, tmp_path, capsys):
    def series(name, z):
        z = np.asarray(z, dtype=float)
        positions = np.stack([np.full(len(z), -10.0), np.full(len(z), -20.0), z], axis=1)
        return small_series(tmp_path / name, positions=positions)

    s = series("ranges", [0, 2, 4, 40, 42, 44])
    line = assert_error(
        cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", *quick), 3, "has a gap of 36 mm"
    )
    assert "separate ranges" in line
    s = series("dup", [0, 2, 2, 4, 6, 8])
    assert_error(cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", *quick), 3,
                 "1 pair(s) of slices at the same position")  # fmt: skip
    s = series("same", [5, 5, 5])
    assert_error(cli(capsys, "info", s.folder), 3, "lie at the same position along the slice normal")
    assert not (tmp_path / "o.nrrd").exists()


def test_gantry_tilt(quick, tmp_path, capsys):
    s = small_series(tmp_path / "tilt", tilt_deg=12.0)
    g = read_geometry(s.folder)
    assert g.gantry_tilt_deg == pytest.approx(12.0, abs=0.01)
    result = enhance_file(s.folder, tmp_path / "tilt.nrrd", preset=TINY)
    assert any("Gantry tilt of 12.00 degrees" in w for w in result.warnings)
    back = read_volume(tmp_path / "tilt.nrrd", slice_axis=0).geometry
    np.testing.assert_allclose(back.axes_lps, g.axes_lps, atol=1e-6)
    out = tmp_path / "tilt.nii.gz"
    assert_error(cli(capsys, "enhance", s.folder, "-o", out, *quick), 5, "the grid is sheared")
    assert not out.exists()
    s = small_series(tmp_path / "steep", tilt_deg=40.0)
    assert_error(cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", *quick), 3,
                 "degrees away from the slice normal (more than the 30 degrees")  # fmt: skip


def test_oblique_and_non_axial(quick, tmp_path, capsys):
    # Coronal acquisition: the slices advance along patient y, found from the orientation.
    s = small_series(tmp_path / "cor", orientation=CORONAL)
    g = read_geometry(s.folder)
    assert g.axes_lps[0] == (0.0, 1.0, 0.0) and g.to_dict()["through_plane_axis"].startswith("y")
    out = tmp_path / "cor_out"
    result = enhance_file(s.folder, out, preset=TINY)
    back = read_volume(out).geometry
    np.testing.assert_allclose(back.axes_lps, g.axes_lps, atol=1e-6)
    assert back.slice_spacing_mm == pytest.approx(0.8) and back.origin_lps == pytest.approx(
        g.origin_lps, abs=1e-4
    )
    assert result.volume.array.shape == (11, 16, 16)
    # Oblique: rotated 20 degrees about x.
    c, si = math.cos(math.radians(20)), math.sin(math.radians(20))
    oblique = (1.0, 0.0, 0.0, 0.0, c, si)
    s = small_series(tmp_path / "obl", orientation=oblique)
    result = enhance_file(s.folder, tmp_path / "obl.mha", preset=TINY)
    np.testing.assert_allclose(result.volume.geometry.axes_lps[0], (0.0, -si, c), atol=1e-6)
    # Image file whose thick axis is the last NumPy axis.
    write_image(tmp_path / "side.nrrd", ct_array((16, 16, 6)).astype(np.int16), spacing=(2.0, 0.8, 0.8))
    assert read_geometry(tmp_path / "side.nrrd").source_slice_axis == 2
    assert cli(capsys, "enhance", tmp_path / "side.nrrd", "-o", tmp_path / "side_out.nrrd", *quick)[0] == 0
    # Inconsistent orientations are refused.
    s = small_series(tmp_path / "skew", orientation=(1.0, 0.0, 0.0, 0.3, 0.95, 0.0))
    assert_error(cli(capsys, "info", s.folder), 3, "row and column directions are not orthogonal")
    s = small_series(
        tmp_path / "mixed",
        per_slice_tags={"ImageOrientationPatient": [list(oblique)] + [[1, 0, 0, 0, 1, 0]] * 4},
    )
    assert_error(cli(capsys, "info", s.folder), 3, "The slices have different ImageOrientationPatient values")


def test_nan_and_inf_voxels(quick, tmp_path, capsys):
    a = ct_array().astype(np.float32)
    a[2, 5, 7] = np.nan
    a[3, 1, 1] = np.inf
    a[4, 0, 0] = -np.inf
    path = write_image(tmp_path / "nan.nrrd", a)
    out = tmp_path / "o.nrrd"
    assert_error(cli(capsys, "enhance", path, "-o", out, *quick), 2,
                 "The volume has 1 NaN and 2 infinite voxel(s) (the first at index [2, 5, 7])")  # fmt: skip
    assert not out.exists()
    vol = read_volume(path)
    with pytest.raises(InputError, match="NaN"):
        enhance(vol, preset=TINY)
    filled, n_bad = validation.check_finite(vol.array, policy="fill")
    assert n_bad == 3 and np.isfinite(filled).all()
    finite = a[np.isfinite(a)]
    assert (
        filled[2, 5, 7] == finite.min()
        and filled[3, 1, 1] == finite.max()
        and filled[4, 0, 0] == finite.min()
    )
    assert np.isnan(vol.array[2, 5, 7])  # the input array is not modified
    same, n = validation.check_finite(filled)
    assert n == 0 and same is filled
    enhance(Volume(filled, vol.geometry), preset=TINY)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.float32, np.float64])
def test_integer_and_float_inputs(quick, tmp_path, capsys, dtype):
    values = ct_array() + (1024 if dtype == np.uint16 else 0)
    path = write_image(tmp_path / "v.nrrd", np.round(values).astype(dtype))
    vol = read_volume(path)
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, np.round(values).astype(np.float32))
    if dtype in (np.int16, np.float64):
        assert cli(capsys, "enhance", path, "-o", tmp_path / "o.nrrd", *quick)[0] == 0
        assert read_volume(tmp_path / "o.nrrd", slice_axis=0).array.dtype == np.float32
        # Plain arrays of the same type through the Python API.
        result = enhance(np.round(values).astype(dtype), geometry=vol.geometry, preset=TINY)
        assert result.volume.array.dtype == (
            np.int16 if dtype == np.int16 else np.float32
        )  # output_dtype auto


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_])
def test_non_numeric_arrays_are_refused(dtype):
    geometry = make_geometry(
        (6, 16, 16), slice_spacing_mm=2.0, slice_thickness_mm=3.0, pixel_spacing_mm=(0.8, 0.8)
    )
    with pytest.raises(InputError, match="data type"):
        enhance(np.zeros((6, 16, 16), dtype=dtype), geometry=geometry, preset=TINY)


def test_array_that_does_not_fit_the_geometry():
    geometry = make_geometry(
        (6, 16, 16), slice_spacing_mm=2.0, slice_thickness_mm=3.0, pixel_spacing_mm=(0.8, 0.8)
    )
    for array in (np.zeros((5, 16, 16)), np.zeros((16, 16)), np.zeros((6, 16, 16, 3))):
        with pytest.raises(ParameterError, match="does not fit the geometry"):
            enhance(array, geometry=geometry, preset=TINY)
    with pytest.raises(ParameterError, match="needs geometry="):
        enhance(np.zeros((6, 16, 16)), preset=TINY)


def test_volume_too_large_for_memory(quick, tmp_path, capsys, monkeypatch):
    s = small_series(tmp_path / "ct")
    out = tmp_path / "o.nrrd"
    need = validation.estimate_memory_bytes((5, 16, 16), spacing_mm=2.0, target_spacing_mm=0.8,
                                            pixel_spacing_mm=(0.8, 0.8))  # fmt: skip
    monkeypatch.setattr(validation, "available_memory_bytes", lambda: need // 2)
    line = assert_error(cli(capsys, "enhance", s.folder, "-o", out, *quick), 7,
                        "Not enough memory: enhancing needs about")  # fmt: skip
    assert validation.format_bytes(need // 2) in line
    assert not out.exists()
    # The reader refuses a volume that cannot even be held.
    monkeypatch.setattr(system, "available_memory_bytes", lambda: 1000)
    with pytest.raises(ResourceError, match="of memory as float32 but only"):
        read_volume(s.folder)
    with pytest.raises(ResourceError):
        read_volume(write_image(tmp_path / "v.nrrd", ct_array().astype(np.int16)))


def test_memory_estimate_and_hint():
    shape = (343, 512, 512)  # L291
    need = validation.estimate_memory_bytes(shape, spacing_mm=2.0, target_spacing_mm=0.7421875,
                                            pixel_spacing_mm=(0.7421875, 0.7421875))  # fmt: skip
    n_out = int(342 * 2.0 / 0.7421875) + 1
    assert need >= 4 * 512 * 512 * (343 + 3 * n_out)  # input, upsampled, two estimates, fused output
    coarser = validation.estimate_memory_bytes(shape, spacing_mm=2.0, target_spacing_mm=1.5,
                                               pixel_spacing_mm=(0.7421875, 0.7421875))  # fmt: skip
    more = validation.estimate_memory_bytes(shape, spacing_mm=2.0, target_spacing_mm=0.7421875,
                                            pixel_spacing_mm=(0.7421875, 0.7421875), uncertainty=True)  # fmt: skip
    assert coarser < need < more
    geometry = make_geometry(shape, slice_spacing_mm=2.0, slice_thickness_mm=3.0,
                             pixel_spacing_mm=(0.7421875, 0.7421875))  # fmt: skip
    vol = Volume(np.zeros((2, 2, 2), np.float32), make_geometry((2, 2, 2), slice_spacing_mm=1.0))
    vol.array = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=shape, strides=(0, 0, 0))
    vol.geometry = geometry
    budget = coarser - 4 * 512 * 512 * 343 + 1
    with pytest.raises(ResourceError, match=r"target_spacing_mm=1\.\d would need about"):
        validation.validate_for_enhancement(vol, available_bytes=budget)


def tiny_model_file(tmp_path: Path, thickness=3.0, spacing=2.0) -> Path:
    path = tmp_path / f"model_{thickness}_{spacing}.pt"
    geometry = make_geometry((8, 24, 24), slice_spacing_mm=spacing, slice_thickness_mm=thickness,
                             pixel_spacing_mm=(0.8, 0.8))  # fmt: skip
    enhance(Volume(ct_array((8, 24, 24)).astype(np.float32), geometry), preset=TINY, save_model_path=path)
    return path


def test_model_from_a_different_geometry(tmp_path, capsys):
    model = tiny_model_file(tmp_path, thickness=5.0, spacing=2.5)
    s = small_series(tmp_path / "ct")  # 3 mm every 2 mm
    out = tmp_path / "o.nrrd"
    line = assert_error(cli(capsys, "enhance", s.folder, "-o", out, "--model", model, *CPU), 6,
                        f"The model {model} was trained for a different acquisition (")  # fmt: skip
    assert "thickness 5.0 mm vs 3 mm" in line
    assert not out.exists()
    assert cli(capsys, "enhance", s.folder, "-o", out, "--model", tiny_model_file(tmp_path), *CPU)[0] == 0


def test_corrupt_or_missing_model_file(tmp_path, capsys):
    s = small_series(tmp_path / "ct")
    good = tiny_model_file(tmp_path)
    out = tmp_path / "o.nrrd"
    cases = {
        tmp_path / "missing.pt": "does not exist",
        tmp_path / "empty.pt": "is empty",
        tmp_path / "cut.pt": "is corrupt or not an SR4ZCT model",
        tmp_path / "text.pt": "is corrupt or not an SR4ZCT model",
    }
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "text.pt").write_text("weights")
    for path, fragment in cases.items():
        assert_error(cli(capsys, "enhance", s.folder, "-o", out, "--model", path, *CPU), 6, fragment)
        with pytest.raises(ModelError):
            validation.validate_model_file(path)
    assert not out.exists()
    assert validation.validate_model_file(good) == good


# --- entry points ------------------------------------------------------------------------------------


def test_debug_shows_the_traceback(tmp_path, capsys):
    code, _, err = cli(capsys, "--debug", "info", tmp_path / "nope")
    assert (
        code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("sr4zct: error: Input")
    )


def test_non_conforming_values_do_not_flood_the_console(tmp_path):
    """Clinical DICOM often holds values its VR does not allow (IS "1.5", a bad UID): ``sr4zct info``
    prints its report, not pydicom's warnings (``--debug`` shows them)."""
    import subprocess
    import sys

    import pydicom
    from pydicom.dataelem import RawDataElement

    s = small_series(tmp_path / "messy")
    for p in s.paths:
        ds = pydicom.dcmread(p)
        for keyword, vr, raw in (("SeriesNumber", "IS", b"1.5 "), ("StudyID", "SH", b"x" * 40)):
            tag = pydicom.tag.Tag(keyword)
            ds._dict[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
        ds.save_as(p)
    command = [sys.executable, "-m", "sr4zct", "info", str(s.folder)]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "Slice thickness:   3 mm" in quiet.stdout
    assert quiet.stderr == ""
    debug = subprocess.run(
        [*command[:3], "--debug", *command[3:]], capture_output=True, text=True, timeout=120
    )
    assert debug.returncode == 0 and "not valid for elements with a VR of IS" in debug.stderr


def test_a_background_job_reports_the_same_error(tmp_path, quick):
    from sr4zct.run.background import BackgroundJob, error_from_event

    s = small_series(tmp_path / "ct", thickness_mm=None)
    job = BackgroundJob(s.folder, tmp_path / "o.nrrd", device="cpu").start()
    job.wait(180)
    assert (
        isinstance(error_from_event(job.error), ParameterError)
        and "thickness is unknown" in job.error["message"]
    )
    assert not (tmp_path / "o.nrrd").exists()
    # The non-CT override reaches the pipeline through the command line of the background process.
    mr = small_series(tmp_path / "mr", modality="MR")
    job = BackgroundJob(mr.folder, tmp_path / "mr.nrrd", device="cpu", model_path=quick[1]).start()
    job.wait(180)
    assert job.error["code"] == "input" and "not CT" in job.error["message"]
    job = BackgroundJob(mr.folder, tmp_path / "mr.nrrd", device="cpu", model_path=quick[1], allow_non_ct=True)
    finished = job.start().wait(180)
    assert any("not CT" in w for w in finished["warnings"]) and (tmp_path / "mr.nrrd").is_file()


# --- the Python API speaks its own names, the CLI its flags ---------------------------------------------


def _plain_volume(thickness_mm=3.0) -> Volume:
    geometry = make_geometry((6, 16, 16), slice_spacing_mm=2.0, slice_thickness_mm=thickness_mm,
                             pixel_spacing_mm=(0.8, 0.8))  # fmt: skip
    return Volume(ct_array().astype(np.float32), geometry)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"thickness_mm": "3"}, "thickness_mm"),
        ({"thickness_mm": True}, "thickness_mm"),
        ({"spacing_mm": "2"}, "spacing_mm"),
        ({"spacing_mm": -2.0}, "spacing_mm"),
        ({"target_spacing_mm": "0.5"}, "target_spacing_mm"),
        ({"target_spacing_mm": 0.0}, "target_spacing_mm"),
        ({"thickness_mm": 80.0}, "thickness_mm"),
        ({"max_minutes": "1"}, "max_minutes"),
        ({"max_minutes": -1.0}, "max_minutes"),
    ],
)
def test_api_errors_name_the_python_parameters(kwargs, name):
    with pytest.raises(ParameterError) as info:
        enhance(_plain_volume(), preset=TINY, device="cpu", **kwargs)
    assert name in info.value.message and "--" not in info.value.message


def test_api_type_errors_are_clear(tmp_path):
    with pytest.raises(ParameterError, match="thickness_mm") as info:
        enhance(_plain_volume(thickness_mm=None), preset=TINY)
    assert "--" not in info.value.message
    with pytest.raises(ParameterError, match="geometry must be a SeriesGeometry"):
        enhance(np.zeros((6, 16, 16)), geometry="abc", preset=TINY)
    for bad in (5, None, 3.0, b"/tmp", ["a"]):
        with pytest.raises(
            ParameterError, match=r"path must be a file or folder path \(str or os.PathLike\)"
        ):
            read_volume(bad)
        with pytest.raises(ParameterError, match="path must be"):
            read_geometry(bad)
    with pytest.raises(ParameterError, match="path must name a file or folder"):
        read_volume("")
    path = write_image(tmp_path / "v.nrrd", ct_array().astype(np.int16))
    with pytest.raises(ParameterError, match=r"thickness_mm\), got '3'"):
        read_volume(path, thickness_mm="3")
    with pytest.raises(ParameterError, match="slice_axis must be 0, 1 or 2"):
        read_volume(path, slice_axis=True)
    with pytest.raises(ParameterError, match="series_uid must be"):
        read_volume(path, series_uid=5)
    s = small_series(tmp_path / "ct")
    with pytest.raises(ParameterError, match="thickness_mm"):
        read_volume(s.folder, thickness_mm=-1.0)
    small_series(tmp_path / "ct", series_description="other", name_pattern="B{index}.dcm")
    with pytest.raises(InputError, match="choose one with series_uid=UID:"):
        read_volume(s.folder)


def test_cli_errors_name_the_flags(quick, tmp_path, capsys):
    s = small_series(tmp_path / "nothick", thickness_mm=None)
    line = assert_error(cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", *quick), 4, "--thickness")
    assert "thickness_mm" not in line
    line = assert_error(cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", "--thickness", "3",
                            "--spacing", "-2", *quick), 4, "--spacing")  # fmt: skip
    assert "spacing_mm" not in line
    line = assert_error(cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", "--thickness", "3",
                            "--max-minutes", "0", *quick), 4, "--max-minutes")  # fmt: skip
    b = small_series(tmp_path / "nothick", series_description="other", name_pattern="B{index}.dcm")
    line = assert_error(cli(capsys, "info", b.folder), 2, "choose one with --series UID:")
    mr = small_series(tmp_path / "mr", modality="MR")
    assert_error(cli(capsys, "enhance", mr.folder, "-o", tmp_path / "o.nrrd", *quick), 2,
                 "pass --allow-non-ct to enhance it anyway")  # fmt: skip
    out = tmp_path / "exists.nrrd"
    out.write_text("keep")
    assert_error(
        cli(capsys, "enhance", mr.folder, "-o", out, *quick), 5, "exists; use --overwrite to replace it."
    )


def test_to_cli_words():
    from sr4zct.cli.messages import API_TO_FLAG, to_cli_words

    assert API_TO_FLAG["thickness_mm"] == "--thickness" and API_TO_FLAG["series_uid"] == "--series"
    assert to_cli_words("give it with thickness_mm, e.g.") == "give it with --thickness, e.g."
    assert to_cli_words("use overwrite=True to replace it.") == "use --overwrite to replace it."
    assert to_cli_words("target_spacing_mm=1.5 would need") == "--target-spacing 1.5 would need"
    assert to_cli_words("(spacing_mm), got -2.") == "(--spacing), got -2."
    # Whole words only: prose, longer names, paths and flags stay as they are.
    for text in ("cannot overwrite it", "the network and the device", "sr4zct_slice_thickness_mm=3",
                 "/data/model_path/x.pt", "save_model_path_old", "--thickness MM"):  # fmt: skip
        assert to_cli_words(text) == text
    assert to_cli_words("save_model_path and model_path") == "--save-model and --model"
    # an option's own check names it first, before its label
    assert to_cli_words("seed (the random seed) must be") == "--seed (the random seed) must be"
    assert to_cli_words("on the device (cuda) it") == "on the device (cuda) it"


def test_cli_allow_detached_data_flag(quick, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "ct.raw").write_bytes(np.round(ct_array()).astype("<i2").tobytes())
    mhd = tmp_path / "case" / "ct.mhd"
    mhd.parent.mkdir()
    mhd.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 16 16 6\nElementSpacing = 0.8 0.8 2\nElementType = MET_SHORT\n"
        "ElementDataFile = ../elsewhere/ct.raw\n"
    )
    assert_error(cli(capsys, "info", mhd), 2, "--allow-detached-data")
    assert cli(capsys, "info", mhd, "--allow-detached-data")[0] == 0
    out = tmp_path / "o.nrrd"
    assert cli(capsys, "enhance", mhd, "-o", out, "--thickness", "3", "--allow-detached-data", *quick)[0] == 0


def test_cli_warnings_name_the_flags(quick, tmp_path, capsys):
    z = np.array([0.0, 2.0, 4.0, 8.0, 10.0, 12.0])
    positions = np.stack([np.full(6, -10.0), np.full(6, -20.0), -30.0 + z], axis=1)
    s = small_series(tmp_path / "gap", positions=positions)
    code, _, err = cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", "--spacing", "2", *quick[:-1])
    assert code == 0 and "warning: --spacing 2 given" in err and "spacing_mm" not in err


# --- docs/errors.md and the tests stay in sync ---------------------------------------------------------


def _table_rows() -> list[dict[str, str]]:
    text = (REPO / "docs" / "errors.md").read_text(encoding="utf-8")
    section = text.split("## Bad inputs and faults", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    header = [c.strip() for c in rows[0].strip("|").split(" | ")]
    return [
        dict(zip(header, (c.strip() for c in row.strip().strip("|").split(" | ")), strict=True))
        for row in rows[1:]
    ]


def _test_names(filename: str) -> set[str]:
    tree = ast.parse((Path(__file__).parent / filename).read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def _source_strings() -> list[str]:
    """Every string literal of the package, f-string placeholders replaced by NUL."""
    out = []
    for path in (REPO / "SR4ZCTModule" / "sr4zct").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                out.append("".join(v.value if isinstance(v, ast.Constant) else "\0" for v in node.values))
    return out


def test_every_row_has_a_test():
    files = {
        "B": "test_bad_input.py",
        "S": "test_data_safety.py",
        "F": "test_fuzz_dicom.py",
        "I": "test_io_bad_files.py",
        "Z": "test_fuzz_images.py",
        "M": "test_fuzz_model.py",
        "W": "test_io_safety.py",
        "K": "test_batch_safety.py",
        "A": "test_api_safety.py",
        "L": "test_fuzz_batch.py",
    }
    names = {key: _test_names(name) for key, name in files.items()}
    rows = _table_rows()
    assert len(rows) >= 30
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    for row in rows:
        refs = re.findall(r"\b([BSFIZMWKAL]) `(test_\w+)`", row["test"])
        assert refs, f"row {row['id']} names no test"
        for key, name in refs:
            assert name in names[key], f"row {row['id']}: {files[key]} has no {name}"
        assert row["exception"] and row["exit"], row["id"]


def test_documented_messages_are_the_real_ones():
    """The table quotes messages as the CLI prints them: the API's names translated to flags."""
    from sr4zct.cli.messages import to_cli_words

    strings = _source_strings()
    strings += [to_cli_words(s) for s in strings]
    for row in _table_rows():
        for fragment in re.findall(r"`([^`]+)`", row["message (stable beginning)"]):
            pieces = [p for p in re.split(r"<[^>]*>", fragment) if len(p.strip()) >= 6]
            for piece in pieces:
                assert any(piece in s or piece.strip() in s for s in strings), (row["id"], piece)
