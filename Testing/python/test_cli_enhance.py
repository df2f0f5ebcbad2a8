"""``sr4zct enhance`` on small NRRD files: output file, geometry and metadata, saved models, errors."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from sr4zct.cli import main
from sr4zct.io import read_volume, write_volume
from sr4zct.run.pipeline import enhance
from sr4zct.volume import Volume, make_geometry
from test_pipeline import LEARN, thick_volume


@pytest.fixture(scope="module")
def nrrd_case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    _, vol = thick_volume((30, 40, 40), origin_lps=(5.0, -7.0, 12.5))
    path = folder / "thick.nrrd"
    write_volume(vol, path)
    return folder, path, vol


def test_enhance_writes_volume_with_metadata(nrrd_case, capsys):
    folder, path, vol = nrrd_case
    out = folder / "enhanced.nrrd"
    code = main(
        ["enhance", str(path), "-o", str(out), "--preset", "fast", "--max-minutes", "0.15", "--seed", "2"]
    )
    assert code == 0
    assert out.is_file()
    printed = capsys.readouterr().out
    assert "wrote" in printed
    assert "training steps ran on CPU (" in printed or "training steps ran on CUDA" in printed
    result = read_volume(out)
    g, g0 = result.geometry, read_volume(path).geometry
    np.testing.assert_allclose(g.origin_lps, g0.origin_lps, atol=1e-4)
    np.testing.assert_allclose(g.axes_lps, g0.axes_lps, atol=1e-6)
    assert g.slice_spacing_mm == pytest.approx(1.0)
    assert g.pixel_spacing_mm == pytest.approx(g0.pixel_spacing_mm)
    assert result.array.shape == (int(g0.slice_positions_mm[-1]) + 1, 40, 40)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(out))
    reader.ReadImageInformation()
    meta = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}
    assert meta["thickness_mm"] == "3" and meta["spacing_mm"] == "2"
    assert meta["preset"] == "fast" and meta["seed"] == "2"
    assert meta["precision"] in ("fp32", "bf16") and meta["precision"] in meta["device"]
    assert "sr4zct_version" in meta and "torch_version" in meta


def test_saved_model_uncertainty_and_target_spacing(nrrd_case, tmp_path):
    _, path, vol = nrrd_case
    model = tmp_path / "model.pt"
    enhance(vol, preset=LEARN, save_model_path=model)
    out, unc = tmp_path / "out.nrrd", tmp_path / "unc.mha"
    code = main(
        ["enhance", str(path), "-o", str(out), "--model", str(model), "--uncertainty", str(unc),
         "--target-spacing", "0.5", "--quiet"]
    )  # fmt: skip
    assert code == 0
    # the output is finer along z than in-plane: tell the reader which axis is through-plane
    enhanced, disagreement = read_volume(out, slice_axis=0), read_volume(unc, slice_axis=0)
    assert enhanced.geometry.slice_spacing_mm == pytest.approx(0.5)
    assert disagreement.array.shape == enhanced.array.shape
    assert disagreement.array.min() >= 0 and disagreement.array.max() > 0


def test_existing_output_is_refused_before_any_work(nrrd_case, capsys):
    folder, path, _ = nrrd_case
    out = folder / "exists.nrrd"
    out.write_bytes(b"keep me")
    code = main(["enhance", str(path), "-o", str(out), "--quiet"])
    assert code == 5
    err = capsys.readouterr().err
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"keep me"


def test_missing_thickness_is_one_line_error(tmp_path, capsys):
    _, vol = thick_volume((20, 32, 32))
    geom = make_geometry(vol.array.shape, slice_spacing_mm=2.0)  # no thickness recorded
    path = tmp_path / "nothick.mha"
    write_volume(Volume(vol.array, geom), path)
    code = main(["enhance", str(path), "-o", str(tmp_path / "o.nrrd"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 4, err
    assert "--thickness" in err
    assert not (tmp_path / "o.nrrd").exists()


def test_bad_device_is_resource_or_parameter_error(nrrd_case, tmp_path, capsys):
    _, path, _ = nrrd_case
    code = main(["enhance", str(path), "-o", str(tmp_path / "o.nrrd"), "--device", "tpu", "--quiet"])
    assert code in (4, 7)
    assert "device" in capsys.readouterr().err.lower()


def test_slice_axis_option_names_the_through_plane_axis(tmp_path):
    """Slices 2 mm thick every 0.5 mm with 0.6 mm pixels: the reader's guess (the coarsest axis) is an
    in-plane one; ``--slice-axis 0`` enhances along z and the output records its axis."""
    n, px = 12, 24
    z, y, x = np.mgrid[0:n, 0:px, 0:px]
    disc = ((y - 12) ** 2 + (x - 12) ** 2) < 9**2
    image = sitk.GetImageFromArray(
        (-1000.0 + 1000.0 * disc + 150.0 * disc * np.sin(z / 3.0)).astype(np.float32)
    )
    image.SetSpacing((0.6, 0.6, 0.5))
    src, out = tmp_path / "thin.nrrd", tmp_path / "out.nrrd"
    sitk.WriteImage(image, str(src))
    assert read_volume(src).geometry.source_slice_axis != 0
    args = ["enhance", str(src), "-o", str(out), "--thickness", "2", "--target-spacing", "0.25"]
    assert main([*args, "--slice-axis", "0", "--max-minutes", "0.1", "--quiet"]) == 0
    result = read_volume(out)
    assert result.geometry.source_slice_axis == 0
    assert result.array.shape == (int(round((n - 1) * 0.5 / 0.25)) + 1, px, px)
    assert result.geometry.slice_spacing_mm == pytest.approx(0.25)
