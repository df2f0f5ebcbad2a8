"""``sr4zct demo``: options, the end-to-end run on a tiny phantom, refusal to overwrite."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sr4zct.cli import build_parser, main
from sr4zct.cli.demo import OUTPUT_FILES, SIZES, format_table


def test_defaults():
    args = build_parser().parse_args(["demo"])
    assert args.output == "sr4zct-demo"
    assert args.preset == "fast"
    assert args.size == "small"
    assert (args.thickness_mm, args.spacing_mm, args.profile) == (3.0, 2.0, "box")
    assert args.device == "auto" and args.seed == 0 and args.max_minutes is None
    assert set(SIZES) >= {"small", "medium"}


def test_format_table():
    scores = {
        "linear": {"psnr_db": 30.0, "coronal_psnr_db": 31.0, "sagittal_psnr_db": 32.0, "coronal_ssim": 0.9,
                   "sagittal_ssim": 0.91},
        "SR4ZCT": {"psnr_db": 33.5, "coronal_psnr_db": 34.0, "sagittal_psnr_db": 35.0, "coronal_ssim": 0.95,
                   "sagittal_ssim": 0.96},
    }  # fmt: skip
    lines = format_table(scores).splitlines()
    assert lines[0].split()[:3] == ["method", "PSNR", "dB"]
    assert lines[2].split()[:3] == ["linear", "30.00", "+0.00"]
    assert lines[3].split()[:3] == ["SR4ZCT", "33.50", "+3.50"]
    assert "0.950" in lines[3] and "0.960" in lines[3]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo") / "out"
    argv = ["demo", "-o", str(folder), "--size", "tiny", "--max-minutes", "0.4", "--quiet", "--device", "cpu"]
    return folder, main(argv)


def test_demo_end_to_end(demo_run, capsys):
    folder, code = demo_run
    assert code == 0
    for name in OUTPUT_FILES:
        assert (folder / name).is_file(), name
    report = json.loads((folder / "scores.json").read_text())
    scores = report["scores"]
    assert set(scores) == {"linear", "B-spline", "SR4ZCT"}
    for s in scores.values():
        assert 15.0 < s["psnr_db"] < 50.0
        assert 0.0 < s["coronal_ssim"] <= 1.0 and 0.0 < s["sagittal_ssim"] <= 1.0
    assert scores["B-spline"]["psnr_db"] > scores["linear"]["psnr_db"]
    # the pipeline never does worse than its own starting point (linear upsampling) by much
    assert scores["SR4ZCT"]["psnr_db"] > scores["linear"]["psnr_db"] - 0.5
    assert report["gain_db"] == pytest.approx(scores["SR4ZCT"]["psnr_db"] - scores["linear"]["psnr_db"])


def test_demo_volumes_and_figure(demo_run):
    from sr4zct.demo.phantom import make_demo_case
    from sr4zct.io import read_volume

    folder, _ = demo_run
    shape, voxel_mm = SIZES["tiny"]
    ground_truth, thick = make_demo_case(3.0, 2.0, "box", 0, shape=shape, voxel_mm=voxel_mm)
    gt = read_volume(folder / "ground_truth.nrrd")
    np.testing.assert_allclose(gt.array, ground_truth.array, atol=1e-3)
    assert gt.geometry.slice_spacing_mm == pytest.approx(voxel_mm)
    thick_read = read_volume(folder / "thick_input.nrrd")
    assert thick_read.geometry.slice_spacing_mm == pytest.approx(2.0)
    assert thick_read.geometry.slice_thickness_mm == pytest.approx(3.0)
    np.testing.assert_allclose(thick_read.array, thick.array, atol=1e-3)
    sr = read_volume(folder / "sr4zct.nrrd")
    linear = read_volume(folder / "linear.nrrd")
    assert sr.array.shape == linear.array.shape
    assert sr.geometry.slice_spacing_mm == pytest.approx(voxel_mm)
    assert sr.geometry.origin_lps == pytest.approx(thick_read.geometry.origin_lps)
    assert np.all(np.isfinite(sr.array))
    image = pytest.importorskip("matplotlib.image").imread(folder / "coronal_comparison.png")
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
    assert float(image[..., :3].std()) > 0.05  # not blank


def test_demo_refuses_to_overwrite(demo_run, capsys):
    folder, _ = demo_run
    before = (folder / "scores.json").stat().st_mtime_ns
    code = main(["demo", "-o", str(folder), "--size", "tiny", "--quiet"])
    assert code == 5
    assert "--overwrite" in capsys.readouterr().err
    assert (folder / "scores.json").stat().st_mtime_ns == before


def test_demo_rejects_bad_thickness(tmp_path, capsys):
    code = main(["demo", "-o", str(tmp_path / "x"), "--thickness", "-1", "--quiet"])
    assert code == 4
    assert "thickness" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
