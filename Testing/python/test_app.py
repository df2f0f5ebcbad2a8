"""sr4zct.app: what the Slicer module does beyond GUI and scene work, tested without Slicer."""

from __future__ import annotations

import dataclasses

import pytest
from sr4zct.app.panel_options import (
    PANEL_OPTIONS,
    option_name,
    options_from_panel,
    panel_fields,
    panel_number,
    slicer_name,
)
from sr4zct.run.options import SEED_MAX, EnhanceOptions

# --- the panel's options ---------------------------------------------------------------------------------


def test_panel_names_are_the_options_in_slicers_spelling():
    assert [slicer_name(name) for name in PANEL_OPTIONS[:3]] == [
        "thicknessMm",
        "spacingMm",
        "targetSpacingMm",
    ]
    for name in EnhanceOptions.names():
        assert option_name(slicer_name(name)) == name and option_name(name) == name


def test_panel_fields_carry_the_options_defaults_choices_and_limits():
    fields = {f.option: f for f in panel_fields()}
    assert tuple(fields) == PANEL_OPTIONS
    options = {f.name: f for f in dataclasses.fields(EnhanceOptions)}
    for name, field in fields.items():
        assert field.kind is options[name].metadata["kind"] and field.help == options[name].metadata["help"]
    assert fields["preset"].choices == ("fast", "balanced", "best") and fields["preset"].default == "balanced"
    assert fields["device"].choices == ("auto", "cpu", "cuda", "mps")
    assert (fields["seed"].minimum, fields["seed"].maximum, fields["seed"].default) == (0, SEED_MAX, 0)
    assert (fields["thickness_mm"].default, fields["thickness_mm"].minimum, fields["thickness_mm"].maximum) == (
        0.0, 0.0, 50.0
    )  # fmt: skip
    assert fields["model_path"].default == ""


def test_the_panels_values_become_options():
    values = {f.name: f.default for f in panel_fields()}
    assert EnhanceOptions(**options_from_panel(values)) == EnhanceOptions()
    values.update(thicknessMm=3.0, spacingMm=2.0, targetSpacingMm=1.0, modelPath="m.pt", seed=SEED_MAX)
    options = options_from_panel(values, measured_spacing_mm=2.00001)
    assert options["spacing_mm"] is None  # the measured spacing: the run measures it (irregular positions)
    assert (options["thickness_mm"], options["target_spacing_mm"], options["model_path"]) == (
        3.0,
        1.0,
        "m.pt",
    )
    assert options_from_panel(values, measured_spacing_mm=2.5)["spacing_mm"] == 2.0  # changed by the user
    assert EnhanceOptions(**options).seed == SEED_MAX


@pytest.mark.parametrize(
    ("value", "shown"), [(3.0, 3.0), (None, 0.0), (50.0, 50.0), (60.0, 0.0), (-1.0, 0.0)]
)
def test_a_value_the_panel_cannot_hold_shows_as_unset(value, shown):
    assert panel_number("thicknessMm", value) == shown
