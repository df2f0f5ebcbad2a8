"""The live preview: one coronal image before and after the network, as a PNG and as a placed volume."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sr4zct.errors import OutputError
from sr4zct.method import acquisition
from sr4zct.method.networks import build_network
from sr4zct.method.training import Normalisation
from sr4zct.run.preview import PNG_MARKER, CoronalPreview, write_preview_png
from sr4zct.volume import make_geometry


def _preview(row=None):
    rng = np.random.default_rng(0)
    array = np.full((10, 24, 20), -1000.0, np.float32)
    array[:, 6:18, 4:16] = rng.normal(40, 30, (10, 12, 12))
    geometry = make_geometry(array.shape, slice_spacing_mm=2.0, pixel_spacing_mm=(0.8, 0.8), slice_thickness_mm=3.0,
                             origin_lps=(10.0, 20.0, 30.0))  # fmt: skip
    positions = np.asarray(geometry.slice_positions_mm)
    return array, geometry, CoronalPreview(array, geometry, slice_positions_mm=positions, normalisation=Normalisation(),
                                           device="cpu", row=row)  # fmt: skip


def test_the_linear_image_is_the_z_interpolated_coronal_plane():
    array, geometry, preview = _preview()
    assert preview.row == 12  # the middle of the body box (rows 6-17)
    grid = acquisition.output_positions_mm(np.asarray(geometry.slice_positions_mm), 0.8)
    expected = acquisition.resample_slices(array[:, 12:13, :], np.asarray(geometry.slice_positions_mm), grid)[
        :, 0
    ]
    np.testing.assert_allclose(preview.linear, expected)
    np.testing.assert_array_equal(preview.render(None), preview.linear)


def test_the_untrained_residual_network_gives_linear_interpolation():
    _, _, preview = _preview(row=8)
    model = build_network("default", {"layers": 2, "channels": 4, "unshuffle": 2})
    rendered = preview.render(model)  # the last layer starts at zero: the identity over linear interpolation
    assert rendered.shape == preview.linear.shape and rendered.dtype == np.float32
    np.testing.assert_allclose(rendered, preview.linear, atol=0.05)
    assert preview.seconds > 0
    assert model.training  # its mode is left as it was


def test_the_preview_volume_lies_in_the_coronal_plane_of_the_result():
    _, geometry, preview = _preview(row=8)
    volume = preview.volume(preview.linear)
    g = volume.geometry
    assert volume.array.shape == (len(preview.positions_mm), 1, 20)
    assert g.spacing_mm == pytest.approx((0.8, 0.8, 0.8))
    # the first z position is the first slice centre, the row is 8 rows down from the origin
    assert g.origin_lps == pytest.approx((10.0, 20.0 + 8 * 0.8, 30.0))


def test_the_png_is_side_by_side_and_only_replaces_a_preview(tmp_path):
    _, _, preview = _preview()
    path = tmp_path / "preview.png"
    write_preview_png(path, preview.linear, preview.render(None), "step 0, +0.00 dB")
    with Image.open(path) as image:
        assert image.size == (2 * 20 + 4, preview.linear.shape[0] + 32)
        assert image.text[PNG_MARKER] == "step 0, +0.00 dB"
    write_preview_png(path, preview.linear, preview.linear, "step 100, +1.20 dB")  # replaces its own
    with Image.open(path) as image:
        assert image.text[PNG_MARKER] == "step 100, +1.20 dB"
    other = tmp_path / "holiday.png"
    Image.new("L", (4, 4)).save(other)
    before = other.read_bytes()
    with pytest.raises(OutputError, match="not an SR4ZCT preview"):
        write_preview_png(other, preview.linear, preview.linear, "x")
    assert other.read_bytes() == before
    with pytest.raises(OutputError, match="must be a .png"):
        write_preview_png(tmp_path / "p.jpg", preview.linear, preview.linear, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday.png", "preview.png"]  # no temporaries


def test_previews_are_due_when_the_best_changes_and_never_cost_more_than_five_percent():
    from sr4zct.method.networks import build_network
    from sr4zct.method.training import Checkpoint
    from sr4zct.run.preview import PreviewPublisher

    _, _, preview = _preview()
    now = [100.0]
    seen = []
    publisher = PreviewPublisher(preview, lambda: build_network("default", {"layers": 2, "channels": 4}),
                                 emit=seen.append, min_interval_s=5.0, clock=lambda: now[0])  # fmt: skip
    state = build_network("default", {"layers": 2, "channels": 4}).state_dict()

    def checkpoint(step, best_step):
        return Checkpoint(
            step, best_step, best_loss=0.5, identity_loss=1.0, best_state=state, elapsed_s=now[0]
        )

    publisher(checkpoint(0, 0))  # the first is always shown
    assert len(seen) == 1 and seen[0]["best_step"] == 0 and "image_hu" in seen[0]
    now[0] += 60
    publisher(checkpoint(100, 0))  # the best did not change: nothing new to show
    assert len(seen) == 1
    now[0] += 1
    publisher(checkpoint(200, 200))  # too soon after the last one? no: 61 s
    assert len(seen) == 2 and seen[1]["validation_gain_db"] == pytest.approx(3.0103, abs=1e-3)
    now[0] += 2
    publisher(checkpoint(300, 300))  # 2 s < 5 s
    assert len(seen) == 2
    publisher._cost = 1.0  # a preview that took 1 s waits 20 s (5 % of the time)
    now[0] += 10
    publisher(checkpoint(400, 400))
    assert len(seen) == 2
    now[0] += 10
    publisher(checkpoint(500, 500))
    assert len(seen) == 3 and publisher.count == 3
