"""EnhanceOptions: the one definition of every enhancement option, and everything that uses it."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from sr4zct.cli import build_parser
from sr4zct.errors import ParameterError
from sr4zct.run.options import DEVICES, NETWORKS, PROFILE_CHOICES, PROFILES, EnhanceOptions, flag_of
from sr4zct.run.presets import PRESETS, Preset


def enhance_subparser() -> argparse.ArgumentParser:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["enhance"]


def test_the_command_line_takes_choices_and_defaults_from_the_dataclass():
    actions = {a.dest: a for a in enhance_subparser()._actions}
    for f in dataclasses.fields(EnhanceOptions):
        action = actions[f.name]
        assert flag_of(f.name) in action.option_strings
        assert action.default == f.default, f.name
        if f.metadata["choices"] is not None:
            assert tuple(action.choices) == tuple(f.metadata["choices"]), f.name
        if f.metadata["kind"] is not bool:
            assert action.type is f.metadata["kind"], f.name
    assert actions["profile"].choices == PROFILE_CHOICES
    assert tuple(actions["preset"].choices) == tuple(PRESETS)
    assert PROFILE_CHOICES == ("auto", *PROFILES) and actions["profile"].default == "auto"
    assert actions["noise"].choices == ("auto", "off") and actions["noise"].default == "auto"
    assert actions["network"].choices == NETWORKS


def test_the_vocabularies_are_the_ones_the_method_uses():
    from sr4zct.method import acquisition, networks

    assert acquisition.PROFILES == PROFILES
    assert set(NETWORKS) <= set(networks.NETWORKS)  # every choice builds a registered network
    assert set(DEVICES) <= {"auto", "cpu", "cuda", "mps"}


def test_round_trips_through_json_and_the_command_line(tmp_path):
    options = EnhanceOptions(
        thickness_mm=3.0, spacing_mm=2.5, target_spacing_mm=0.6, profile="gaussian", noise="off", preset="fast", seed=7,
        max_minutes=1.5, model_path=str(tmp_path / "m.pt"), device="cuda:1", allow_cpu_fallback=True,
        precision="bf16", series_uid="1.2.3", slice_axis=0, allow_non_ct=True, uncertainty_path="u.nrrd", output_dtype="float32",
        overwrite=True,
    )  # fmt: skip
    assert EnhanceOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options
    args = enhance_subparser().parse_args(["in.nrrd", "-o", "out.nrrd", *options.to_args()])
    assert EnhanceOptions.from_args(args) == options
    assert EnhanceOptions().to_args() == []


def test_values_are_converted_and_paths_become_strings(tmp_path):
    options = EnhanceOptions(
        thickness_mm=3, seed=np.int64(4), max_minutes=np.float32(2.5), model_path=tmp_path
    )
    assert options.thickness_mm == 3.0 and isinstance(options.thickness_mm, float)
    assert options.seed == 4 and type(options.seed) is int
    assert options.model_path == str(tmp_path) and isinstance(options.model_path, str)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        (
            {"thickness_mm": "3"},
            "thickness_mm (the slice thickness) must be a number of millimetres, got '3'",
        ),
        ({"thickness_mm": -1}, "thickness_mm (the slice thickness) must be a positive number of millimetres"),
        ({"spacing_mm": float("nan")}, "spacing_mm (the slice spacing) must be a positive number"),
        ({"target_spacing_mm": True}, "target_spacing_mm (the output slice spacing) must be a number"),
        ({"max_minutes": 0}, "max_minutes (the time limit) must be a positive number of minutes"),
        ({"preset": "quick"}, "preset must be one of fast, balanced, best"),
        ({"profile": "triangle"}, "profile must be one of auto, box, gaussian"),
        ({"noise": "on"}, "noise must be one of auto, off"),
        ({"network": "unet"}, "network must be one of default, msd"),
        ({"device": "gpu"}, "device must be auto, cpu, cuda, cuda:N or mps"),
        ({"precision": "fp16"}, "precision must be one of auto, fp32, bf16"),
        ({"precision": None}, "precision must be text, got None"),
        ({"seed": -1}, "seed (the random seed) must be an integer from 0 to 4294967295"),
        ({"seed": 2**32}, "seed (the random seed) must be an integer from 0 to 4294967295"),
        ({"preview_row": -1}, "preview_row (the preview's coronal row) must be an integer 0 or more"),
        ({"seed": 1.5}, "seed (the random seed) must be an integer"),
        ({"slice_axis": 3}, "slice_axis (the through-plane axis) must be one of 0, 1, 2"),
        ({"overwrite": "yes"}, "overwrite must be True or False"),
        ({"model_path": ""}, "model_path must be a non-empty text"),
        ({"preset": None}, "preset must be text, got None"),
        ({"colour": "red"}, "Unknown option(s): colour"),
    ],
)
def test_bad_values_name_the_option(changes, fragment):
    with pytest.raises(ParameterError) as info:
        EnhanceOptions.from_dict(changes)
    assert fragment in info.value.message


def test_replace_checks_like_the_constructor():
    options = EnhanceOptions(preset="fast")
    assert options.replace(seed=3).seed == 3 and options.preset == "fast"
    with pytest.raises(ParameterError, match="Unknown option"):
        options.replace(sead=3)
    with pytest.raises(ParameterError, match="seed"):
        options.replace(seed="3")


def test_a_custom_preset_is_for_the_python_api_only():
    tiny = Preset("tiny", steps=2, patch_px=16, batch=2, max_minutes=1.0)
    options = EnhanceOptions(preset=tiny)
    assert EnhanceOptions.from_dict(json.loads(json.dumps(options.to_dict()))).preset == tiny
    with pytest.raises(ParameterError, match="custom Preset cannot be passed on the command line"):
        options.to_args()


def test_the_command_line_refuses_bad_values_with_the_flag(capsys):
    from sr4zct.cli import main

    with pytest.raises(SystemExit) as info:  # argparse's own check
        main(["enhance", "in.nrrd", "-o", "o.nrrd", "--preset", "quick"])
    assert info.value.code == 2
    assert "--preset" in capsys.readouterr().err
    code = main(["enhance", str(Path("missing.nrrd")), "-o", "o.nrrd", "--thickness", "-2"])
    err = capsys.readouterr().err
    assert code == 4 and "--thickness (the slice thickness) must be a positive number of millimetres" in err
