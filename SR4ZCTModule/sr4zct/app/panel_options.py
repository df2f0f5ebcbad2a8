"""The enhancement options the Slicer panel shows, derived from :class:`~sr4zct.run.options.EnhanceOptions`.

The module builds its parameter node and the limits of its widgets from :func:`panel_fields`, so the
panel's defaults, choices and limits are the options' own. A Qt widget cannot hold None: an option whose
default is None (the thickness read from the input, the isotropic output spacing, no saved model) shows as
0 or as empty text, and :func:`options_from_panel` turns those back into None.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from sr4zct.run.options import DEVICES, EnhanceOptions
from sr4zct.run.validation import MAX_SPACING_MM, MAX_THICKNESS_MM

__all__ = [
    "PANEL_OPTIONS", "PanelField", "option_name", "options_from_panel", "panel_fields", "panel_number", "slicer_name"
]  # fmt: skip

#: the options the panel shows, in its order
PANEL_OPTIONS = (
    "thickness_mm", "spacing_mm", "target_spacing_mm", "profile", "noise", "preset", "device", "precision", "seed",
    "model_path", "save_model_path",
)  # fmt: skip
#: upper limits of the millimetre options: the values the run itself accepts (run/validation.py)
_MAX_MM = {
    "thickness_mm": MAX_THICKNESS_MM,
    "spacing_mm": MAX_SPACING_MM,
    "target_spacing_mm": MAX_SPACING_MM,
}
#: the device option takes cuda:N too (so its metadata has no choices); the panel offers the vocabulary
_CHOICES = {"device": DEVICES}


@dataclasses.dataclass(frozen=True)
class PanelField:
    """One option as the panel shows it.

    Attributes
    ----------
    option : str
        The option's name (``thickness_mm``).
    name : str
        Its name in the parameter node, in Slicer's spelling (``thicknessMm``).
    kind : type
        ``float``, ``int`` or ``str``.
    default : Any
        The panel's value for the option's default (0.0 or "" where the option's default is None).
    choices : tuple or None
        The allowed values of a choice.
    minimum, maximum : float or int or None
        The limits of a number (0 stands for None where the option's default is None).
    help : str
        The option's help text.
    """

    option: str
    name: str
    kind: type
    default: Any
    choices: tuple | None
    minimum: float | int | None
    maximum: float | int | None
    help: str


def slicer_name(option: str) -> str:
    """An option's name in Slicer's spelling: ``thickness_mm`` -> ``thicknessMm``."""
    first, *rest = option.split("_")
    return first + "".join(word.capitalize() for word in rest)


def option_name(name: str) -> str:
    """The option for a name in Slicer's spelling (``thicknessMm`` -> ``thickness_mm``); option names pass."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def panel_fields() -> tuple[PanelField, ...]:
    """The panel's options (:data:`PANEL_OPTIONS`) with their kinds, defaults, choices and limits."""
    fields = {f.name: f for f in dataclasses.fields(EnhanceOptions)}
    out = []
    for option in PANEL_OPTIONS:
        meta, default = fields[option].metadata, fields[option].default
        kind = meta["kind"]
        minimum, maximum = meta["minimum"], meta["maximum"]
        if kind is float:  # 0 = unset (the input's value, isotropic)
            minimum, maximum = 0.0, _MAX_MM[option]
        unset = {float: 0.0, str: ""}.get(kind)
        out.append(
            PanelField(option, slicer_name(option), kind, unset if default is None else default,
                       _CHOICES.get(option, meta["choices"]), minimum, maximum, meta["help"])
        )  # fmt: skip
    return tuple(out)


def options_from_panel(
    values: Mapping[str, Any], *, measured_spacing_mm: float | None = None
) -> dict[str, Any]:
    """The options (their names and values) of the panel's ``values`` (parameter-node names).

    0 and empty text become None (the option's default). The spacing becomes None too when it equals the
    one measured from the slice positions (``measured_spacing_mm``): the run then measures it itself and
    honours irregular positions; only a spacing the user changed is passed on.
    """
    options = {}
    for field in panel_fields():
        value = values[field.name]
        if value in (0.0, "") and field.kind in (float, str):
            value = None
        options[field.option] = value
    spacing = options["spacing_mm"]
    if spacing is not None and measured_spacing_mm is not None:
        if math.isclose(spacing, measured_spacing_mm, abs_tol=1e-4):
            options["spacing_mm"] = None
    return options


def panel_number(name: str, value: float | None) -> float:
    """``value`` (a thickness or spacing read from the input) as the panel's field ``name`` holds it: 0.0
    (unset) for None and for a value beyond the field's limits, which the run would refuse anyway."""
    field = next(f for f in panel_fields() if f.name == name)
    if value is None or not field.minimum <= value <= field.maximum:
        return 0.0
    return float(value)
