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

    def replace(self, **changes: Any) -> Preset:
        return dataclasses.replace(self, **changes)


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
