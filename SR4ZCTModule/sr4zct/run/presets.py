"""Speed/quality presets: ``fast``, ``balanced``, ``best``.

Budgets are set for a 2-core CPU and a 512 x 512 CT so that the whole run stays within ``max_minutes``
(fast 5, balanced 15, best 45); training stops at whichever comes first, the step budget or its share of
the time limit. On a GPU the step budget is reached long before the time. On a CPU the number of steps
matters more than the network size, so the presets grow the network only a little. ``best`` also averages
the network over the four flips of every image at inference. The measured quality and time of each preset
are in BENCHMARKS.md (``python -m benchmarks.run``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from sr4zct.errors import ParameterError

__all__ = ["PRESETS", "Preset", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """Training and inference budget.

    Attributes
    ----------
    steps : Adam steps (upper bound; time may stop training earlier).
    patch_px : square training patch side in pixels.
    batch : patches per step.
    network_config : overrides of the ``"default"`` network's constructor arguments.
    max_minutes : wall-time cap of the whole run (training gets what inference will not need).
    lr : peak learning rate (cosine decay driven by step *or* time, whichever is further along).
    loss : ``"l1"`` or ``"l2"``.
    validate_every : steps between validations (best checkpoint selection).
    test_time_flips : average the network over the four flips of every image at inference (4x its time).
    """

    name: str
    steps: int
    patch_px: int
    batch: int
    max_minutes: float
    network_config: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-3
    loss: str = "l1"
    validate_every: int = 100
    test_time_flips: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or "\0" in self.name:
            raise ParameterError(f"A Preset needs a name (non-empty text), got {self.name!r}.")
        for name in ("steps", "patch_px", "batch", "validate_every"):
            _whole(self, name, *LIMITS[name])
        for name in ("max_minutes", "lr"):
            _positive(self, name, LIMITS[name][1])
        if self.loss not in ("l1", "l2"):
            raise ParameterError(f"Preset {self.name!r}: loss must be 'l1' or 'l2', got {self.loss!r}.")
        if not isinstance(self.test_time_flips, bool):
            raise ParameterError(
                f"Preset {self.name!r}: test_time_flips must be True or False, got {self.test_time_flips!r}."
            )
        _check_network_config(self)

    def replace(self, **changes: Any) -> Preset:
        return dataclasses.replace(self, **changes)


#: Bounds of the Preset fields: (lowest, highest), both allowed.
LIMITS: dict[str, tuple[float, float]] = {
    "steps": (1, 10_000_000),
    "patch_px": (8, 4096),
    "batch": (1, 4096),
    "validate_every": (1, 10_000_000),
    "max_minutes": (0.0, 60.0 * 24 * 365),
    "lr": (0.0, 1.0),
}


def _whole(preset: Preset, name: str, low: float, high: float) -> None:
    value = getattr(preset, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ParameterError(
            f"Preset {preset.name!r}: {name} must be a whole number from {low} to {high}, got {value!r}."
        )


def _positive(preset: Preset, name: str, high: float) -> None:
    value = getattr(preset, name)
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if not ok or not 0 < float(value) <= high:
        raise ParameterError(
            f"Preset {preset.name!r}: {name} must be a number above 0 and at most {high:g}, got {value!r}."
        )


def _check_network_config(preset: Preset) -> None:
    """The default network's constructor arguments: known names, whole numbers within the limits a saved
    model may have (:data:`sr4zct.run.model_file.NETWORK_LIMITS`)."""
    from sr4zct.run.model_file import NETWORK_LIMITS

    config, limits = preset.network_config, NETWORK_LIMITS["default"]
    if not isinstance(config, dict):
        raise ParameterError(f"Preset {preset.name!r}: network_config must be a dict, got {config!r}.")
    for key, value in config.items():
        allowed = limits.get(key)
        if allowed is None:
            raise ParameterError(
                f"Preset {preset.name!r}: network_config has an unknown key {key!r}; the keys are "
                f"{', '.join(limits)}."
            )
        whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        inside = whole and (
            value in allowed if isinstance(allowed, set) else allowed[0] <= value <= allowed[1]
        )
        if not inside:
            shown = (
                ", ".join(map(str, sorted(allowed)))
                if isinstance(allowed, set)
                else "{} to {}".format(*allowed)
            )
            raise ParameterError(
                f"Preset {preset.name!r}: network_config {key} must be a whole number ({shown}), got {value!r}."
            )
    unshuffle = config.get("unshuffle", 1)
    if preset.patch_px % unshuffle:
        raise ParameterError(
            f"Preset {preset.name!r}: patch_px ({preset.patch_px}) must be a multiple of network_config unshuffle "
            f"({unshuffle})."
        )


PRESETS: dict[str, Preset] = {
    "fast": Preset("fast", steps=3000, patch_px=64, batch=16, max_minutes=5.0,
                   network_config={"layers": 8, "channels": 32, "unshuffle": 2}),
    "balanced": Preset("balanced", steps=12000, patch_px=64, batch=16, max_minutes=15.0,
                       network_config={"layers": 10, "channels": 32, "unshuffle": 2}, validate_every=200),
    "best": Preset("best", steps=40000, patch_px=64, batch=16, max_minutes=45.0,
                   network_config={"layers": 12, "channels": 40, "unshuffle": 2}, validate_every=250,
                   test_time_flips=True),
}  # fmt: skip


def get_preset(name: str) -> Preset:
    """The preset called ``name``; unknown names raise :class:`~sr4zct.errors.ParameterError`."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ParameterError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.") from None
