"""Every option and every custom ``Preset`` field is checked with the API's own names before any process
starts (reliability round 3; docs/errors.md row ``api-values``): 0, NaN, negative numbers, infinities and
wrong types give a :class:`ParameterError` naming the field, never a traceback from deep inside training.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sr4zct.batch import Batch, BatchJob
from sr4zct.errors import ParameterError
from sr4zct.run.background import BackgroundJob
from sr4zct.run.options import EnhanceOptions
from sr4zct.run.pipeline import enhance
from sr4zct.run.presets import PRESETS, Preset
from sr4zct.volume import Volume, make_geometry
from test_bad_input import assert_error, cli, ct_array, write_image

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", 0), ("steps", -5), ("steps", NAN), ("steps", 2.5), ("steps", "100"), ("steps", True),
        ("patch_px", 0), ("patch_px", 4), ("patch_px", -64), ("patch_px", 65), ("batch", 0), ("batch", NAN),
        ("max_minutes", 0), ("max_minutes", -1.0), ("max_minutes", NAN), ("max_minutes", INF),
        ("lr", 0.0), ("lr", NAN), ("lr", -1e-3), ("lr", 5.0), ("lr", "1e-3"), ("validate_every", 0),
        ("loss", "l3"), ("loss", None), ("test_time_flips", "yes"), ("name", ""), ("name", None),
        ("network_config", {"layers": 0}), ("network_config", {"channels": NAN}),
        ("network_config", {"unshuffle": 3}), ("network_config", {"depth": 4}), ("network_config", "abc"),
    ],
)  # fmt: skip
def test_a_custom_preset_with_an_unusable_value_is_refused_by_name(field, value):
    with pytest.raises(ParameterError) as info:
        PRESETS["fast"].replace(**{field: value})
    name = "name" if field == "name" else field
    assert name in info.value.message and "\n" not in info.value.message
    data = {**EnhanceOptions(preset=PRESETS["fast"]).to_dict()["preset"], field: value}
    with pytest.raises(ParameterError):  # a preset sent as a dict (the Ray engine, a JSON file)
        EnhanceOptions.from_dict({"preset": data})


def test_a_good_custom_preset_runs_and_cannot_go_to_a_process(tmp_path):
    tiny = Preset("tiny", steps=2, patch_px=16, batch=2, max_minutes=1.0, validate_every=2,
                  network_config={"layers": 2, "channels": 4, "unshuffle": 2})  # fmt: skip
    geometry = make_geometry(
        (6, 16, 16), slice_spacing_mm=2.0, slice_thickness_mm=3.0, pixel_spacing_mm=(0.8, 0.8)
    )
    result = enhance(Volume(ct_array().astype(np.float32), geometry), preset=tiny, device="cpu")
    assert result.parameters["preset"] == "tiny"
    with pytest.raises(ParameterError, match="custom Preset cannot be passed on the command line"):
        BackgroundJob(tmp_path / "a.nrrd", tmp_path / "b.nrrd", preset=tiny)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("thickness_mm", 0), ("thickness_mm", NAN), ("thickness_mm", -3.0), ("thickness_mm", "3"),
        ("spacing_mm", INF), ("target_spacing_mm", 0.0), ("max_minutes", -1), ("max_minutes", NAN),
        ("seed", -1), ("seed", 1.5), ("seed", 2**40), ("preview_row", -2), ("slice_axis", 3), ("slice_axis", True),
        ("series_uid", ""), ("series_uid", "1.2\x003"), ("model_path", "a\x00.pt"), ("device", "gpu"),
        ("overwrite", "yes"), ("profile", "boxy"), ("preset", "quick"), ("output_dtype", "int8"),
    ],
)  # fmt: skip
def test_an_unusable_option_is_refused_before_a_process_starts(tmp_path, name, value):
    for make in (
        lambda: EnhanceOptions(**{name: value}),
        lambda: BackgroundJob(tmp_path / "a.nrrd", tmp_path / "b.nrrd", **{name: value}),
        lambda: Batch(
            tmp_path / "out", [BatchJob.for_file(tmp_path / "a.nrrd")], EnhanceOptions(**{name: value})
        ),
    ):
        with pytest.raises(ParameterError) as info:
            make()
        assert name in info.value.message and "--" not in info.value.message
    assert not (tmp_path / "out").exists() and not (tmp_path / "b.nrrd").exists()


def test_batch_arguments_of_the_wrong_type_are_refused(tmp_path):
    job = BatchJob.for_file(tmp_path / "a.nrrd")
    for kwargs in ({"options": {"preset": "fast"}}, {"output_format": "png"}, {"reuse_model": "all"},
                   {"retry_failed": "yes"}, {"shard": 3}):  # fmt: skip
        with pytest.raises(ParameterError):
            Batch(tmp_path / "out", [job], **kwargs)
    with pytest.raises(ParameterError, match="jobs must be a list of BatchJob"):
        Batch(tmp_path / "out", [str(tmp_path / "a.nrrd")])


@pytest.mark.parametrize(
    ("option", "value", "flag"),
    [("--thickness", "nan", "--thickness"), ("--thickness", "0", "--thickness"), ("--spacing", "-2", "--spacing"),
     ("--target-spacing", "inf", "--target-spacing"), ("--max-minutes", "0", "--max-minutes"),
     ("--seed", "-1", "--seed"), ("--preview-row", "-3", "--preview-row"), ("--series", "", "--series")],
)  # fmt: skip
def test_the_command_line_refuses_the_same_values_by_flag(tmp_path, capsys, option, value, flag):
    path = write_image(tmp_path / "ct.nrrd", np.round(ct_array()).astype(np.int16))
    line = assert_error(
        cli(capsys, "enhance", path, "-o", tmp_path / "o.nrrd", option, value, "--quiet"), 4, flag
    )
    assert "_mm" not in line and not Path(tmp_path / "o.nrrd").exists()
