"""How long applying the network will take: the share of a run's time limit that training must leave.

A run with a time limit (``--max-minutes``) trains until the time left equals the time inference will need.
That need is ``pixels / rate``: the pixels the network will process (known before training) over the
forward-pass rate of this network on this device. The rate is measured, not assumed, by timing forward
passes of one representative pass shape. A single up-front timing is fragile: on a machine that is busy at
that moment it can be several times too slow, and training would then stop far too early. So the timer is
re-run during training (each time the network is validated, at most every ``remeasure_s``) and keeps the
fastest rate seen: the estimate can only improve as the machine calms down.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from sr4zct.run.devices import autocast

__all__ = ["InferenceTimer"]


class InferenceTimer:
    """Estimates the seconds inference needs from timed forward passes.

    Parameters
    ----------
    pixels : pixels the network will process in all (both orientations, tile halos included).
    pass_shape : ``(batch, height, width)`` of one representative forward pass.
    device : where inference will run.
    passes : forward passes per image (4 with test-time flips).
    margin : factor for the work around the forward passes (gathering images, resampling, fusion) and for
        the fastest pass being faster than the average one. L291 ``fast`` on 2 cores: 116.5 s of inference
        against about 98 s of forward passes at the rate measured for its pass shape; 1.15 let that run end
        17 s past its limit.
    remeasure_s : minimum seconds between two timings (:meth:`maybe_measure`).
    """

    def __init__(
        self,
        pixels: int,
        pass_shape: tuple[int, int, int],
        device: torch.device | str,
        *,
        passes: int = 1,
        margin: float = 1.3,
        remeasure_s: float = 30.0,
    ):
        if pixels < 0 or min(pass_shape) < 1:
            raise ValueError("pixels must be >= 0 and every pass dimension >= 1")
        self.pixels = int(pixels)
        self.pass_shape = tuple(int(v) for v in pass_shape)
        self.device = torch.device(device)
        self.passes = int(passes)
        self.margin = float(margin)
        self.remeasure_s = float(remeasure_s)
        self.best_rate_px_s = 0.0
        self.timings = 0
        self._last = -math.inf
        self._pass_s = 0.0

    @property
    def seconds(self) -> float:
        """Estimated inference time (``inf`` before the first timing, 0 when there is nothing to process)."""
        if self.pixels == 0:
            return 0.0
        if self.best_rate_px_s <= 0:
            return math.inf
        return self.margin * self.passes * self.pixels / self.best_rate_px_s

    def measure(self, model: nn.Module, repeats: int = 2) -> float:
        """Time ``repeats`` forward passes of ``model`` (after a warm-up pass the first time); returns
        :attr:`seconds`. The model's training/evaluation mode is restored."""
        was_training = model.training
        model.eval()
        x = torch.zeros((self.pass_shape[0], 1, *self.pass_shape[1:]), device=self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        try:
            with torch.inference_mode(), autocast(self.device):
                for i in range(repeats + (1 if self.timings == 0 else 0)):
                    self._sync()
                    t0 = time.perf_counter()
                    model(x)
                    self._sync()
                    dt = time.perf_counter() - t0
                    self._pass_s = dt
                    if self.timings > 0 or i > 0:
                        self.best_rate_px_s = max(self.best_rate_px_s, x.numel() / max(dt, 1e-9))
                    self.timings += 1
        finally:
            model.train(was_training)
        self._last = time.monotonic()
        return self.seconds

    def maybe_measure(self, model: nn.Module) -> float:
        """:meth:`measure` once if ``remeasure_s`` have passed since the last timing (and at least 20 passes'
        time, so that timing a slow network never costs more than 5 % of training); returns :attr:`seconds`."""
        if time.monotonic() - self._last >= max(self.remeasure_s, 20.0 * self._pass_s):
            return self.measure(model, repeats=1)
        return self.seconds

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
