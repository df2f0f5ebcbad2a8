"""Every vocabulary has one source, and what shows it follows: the network names are the registry's, the preset
help the presets', the device forms one tuple's, the demo's options the enhancement's, and the ``--flag a|b|c``
lists of README.md and docs/*.md the options' choices. Each test fails when a copy drifts from its source."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from sr4zct.cli import build_parser, main
from sr4zct.cli.demo import DEMO_DEFAULTS, DEMO_OPTIONS
from sr4zct.errors import ParameterError
from sr4zct.run.options import (
    DEVICE_FORMS,
    DEVICES,
    NETWORK_DESCRIPTIONS,
    NETWORKS,
    PROFILES,
    EnhanceOptions,
    flag_of,
)
from sr4zct.run.presets import PRESETS, Preset

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[name]


def actions_of(name: str) -> dict[str, argparse.Action]:
    return {a.dest: a for a in subparser(name)._actions}


def test_the_network_choices_are_the_registry_and_the_model_file_limits():
    from sr4zct.method.networks import NETWORKS as REGISTRY
    from sr4zct.run.model_file import NETWORK_LIMITS

    assert NETWORKS == tuple(REGISTRY)
    assert set(NETWORK_LIMITS) == set(REGISTRY)
    network = actions_of("enhance")["network"]
    assert network.choices == NETWORKS
    for name, text in NETWORK_DESCRIPTIONS.items():
        assert f"{name} ({text})" in network.help
        EnhanceOptions(network=name)


def test_the_preset_help_names_every_preset_and_its_time_limit(monkeypatch):
    help_text = actions_of("enhance")["preset"].help
    for name, preset in PRESETS.items():
        assert name in help_text and f"{preset.max_minutes:g}" in help_text
    # a new preset shows up in the help without another edit
    from sr4zct.run import options

    monkeypatch.setitem(PRESETS, "quick", Preset("quick", steps=10, patch_px=32, batch=2, max_minutes=1.5))
    assert "fast, balanced, best or quick (about 5 / 15 / 45 / 1.5 min" in options._preset_help()


def test_every_device_form_comes_from_one_tuple():
    assert tuple(form for form in DEVICE_FORMS if form != "cuda:N") == DEVICES
    help_text = actions_of("enhance")["device"].help
    assert help_text.startswith(", ".join(DEVICE_FORMS[:-1]))
    for name in (*DEVICES, "cuda:0", "cuda:12"):
        assert EnhanceOptions(device=name).device == name
    with pytest.raises(ParameterError) as caught:
        EnhanceOptions(device="gpu")
    assert all(form in str(caught.value) for form in DEVICE_FORMS)
    for bad in ("cuda:", "cuda:x", "cpu:0", "mps:1", "Auto"):
        with pytest.raises(ParameterError):
            EnhanceOptions(device=bad)


def test_the_device_module_accepts_and_names_the_same_forms():
    from sr4zct.system.devices import choose_device

    assert choose_device("cpu").device.type == "cpu"
    assert choose_device("auto").device.type in DEVICES
    with pytest.raises(ParameterError) as caught:
        choose_device("gpu")
    assert all(form in str(caught.value) for form in DEVICE_FORMS)


def test_the_demo_takes_its_options_from_the_enhancement_definitions():
    demo, enhance = actions_of("demo"), actions_of("enhance")
    for name in DEMO_OPTIONS:
        assert demo[name].option_strings == [flag_of(name)] == enhance[name].option_strings
        assert demo[name].type is enhance[name].type and demo[name].metavar == enhance[name].metavar
        if enhance[name].choices is not None:
            assert set(demo[name].choices) <= set(enhance[name].choices)
        assert demo[name].default == DEMO_DEFAULTS.get(name, enhance[name].default)
    assert demo["profile"].choices == PROFILES


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--thickness", "0"], "--thickness (the slice thickness) must be a positive number of millimetres"),
        (["--spacing", "inf"], "--spacing (the slice spacing) must be a positive number of millimetres"),
        (["--seed", "-2"], "--seed (the random seed) must be an integer from 0"),
    ],
)
def test_the_demo_refuses_what_enhance_refuses_in_the_same_words(tmp_path, capsys, args, fragment):
    assert main(["demo", "-o", str(tmp_path / "out"), "--quiet", "--size", "tiny", *args]) == 4
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


_CHOICE_LIST = re.compile(r"`(--[a-z][a-z-]*) ([\w:.]+(?:\|[\w:.]+)+)`")


def _documented_lists() -> list[tuple[str, str, list[str]]]:
    found = []
    for path in DOCUMENTS:
        for flag, values in _CHOICE_LIST.findall(path.read_text(encoding="utf-8")):
            found.append((path.name, flag, values.split("|")))
    return found


def test_the_documented_choice_lists_are_the_options_choices():
    flags = {flag_of(name): name for name in EnhanceOptions.names()}
    checked = set()
    for document, flag, values in _documented_lists():
        name = flags.get(flag)
        if name is None:
            continue  # another command's flag (sr4zct batch --format)
        if name == "device":
            expected = set(DEVICES) | ({"cuda:N"} & set(values))
        else:
            expected = {
                str(choice) for choice in EnhanceOptions.__dataclass_fields__[name].metadata["choices"]
            }
        assert set(values) == expected, f"{document}: `{flag} {'|'.join(values)}` against {sorted(expected)}"
        checked.add(name)
    assert {"profile", "noise", "preset", "network", "device", "precision"} <= checked


def test_the_pages_give_the_presets_time_limits():
    minutes = " / ".join(f"{preset.max_minutes:g}" for preset in PRESETS.values())
    found = []
    for path in DOCUMENTS:
        for stated in re.findall(r"about (\d+(?: / \d+)+) min", path.read_text(encoding="utf-8")):
            found.append((path.name, stated))
    assert ("README.md", minutes) in found
    assert all(stated == minutes for _, stated in found), found


_PRESET_ROW = re.compile(
    r"^\| `(\w+)` \| ([\d,]+) \| (\d+) x (\d+) \| ([\d.]+) min \| (yes|no) \|$", re.MULTILINE
)


def test_the_method_page_has_the_presets_table():
    rows = _PRESET_ROW.findall((REPO_ROOT / "docs" / "method.md").read_text(encoding="utf-8"))
    assert [row[0] for row in rows] == list(PRESETS)
    for name, steps, layers, channels, minutes, flips in rows:
        preset = PRESETS[name]
        assert int(steps.replace(",", "")) == preset.steps, name
        assert (int(layers), int(channels)) == (
            preset.network_config["layers"],
            preset.network_config["channels"],
        )
        assert preset.network_config["unshuffle"] == 2 and float(minutes) == preset.max_minutes, name
        assert (flips == "yes") == preset.test_time_flips, name
