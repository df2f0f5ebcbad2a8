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

from sr4zct.system.devices import autocast

__all__ = ["InferenceTimer", "TimeBudget"]


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
    precision : the autocast type inference will run in (:func:`sr4zct.system.devices.autocast`; None: the
        device's default).
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
        precision: str | None = None,
    ):
        if pixels < 0 or min(pass_shape) < 1:
            raise ValueError("pixels must be >= 0 and every pass dimension >= 1")
        self.pixels = int(pixels)
        self.pass_shape = tuple(int(v) for v in pass_shape)
        self.device = torch.device(device)
        self.passes = int(passes)
        self.margin = float(margin)
        self.remeasure_s = float(remeasure_s)
        self.precision = precision
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
            with torch.inference_mode(), autocast(self.device, self.precision):
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


# Output voxels written per second (NRRD of the L291 result: 241 M voxels in about 4 s on the 2-core CPU)
WRITE_VOXELS_PER_S = 60e6


class TimeBudget:
    """The one place of a run's time-budget arithmetic: when training must stop, and the time left.

    A run with a time limit spends it on: what came before training (reading, checks, timing the network),
    training until its deadline, inference (the :class:`InferenceTimer`'s estimate) and writing the output
    (``write_s``, kept back). Training asks :meth:`training_over`; the progress model asks :meth:`eta_s`,
    which is (deadline - now) + planned inference + write while training is time-bound, refined as each
    stage goes: a step-bound training ends when its remaining steps at the measured rate say, inference
    ends when its measured progress says.

    Parameters
    ----------
    limit_s : the run's time limit in seconds (``--max-minutes``).
    start : clock reading at the run's start (the limit counts from there).
    timer : inference estimate (``None``: inference needs no time to be kept back, e.g. nothing to do).
    write_s : seconds kept back for writing the output and the process start-up before ``start``; default
        1 % of the limit, at least 5 s (a 45-min ``best`` run ended 8 s late with a fixed 5 s).
    min_train_fraction : training keeps at least this share of the limit (an untrained network is only
        linear interpolation), even when inference would eat the budget.
    output_voxels : size of the output; the ETA then counts writing at :data:`WRITE_VOXELS_PER_S` (at most
        ``write_s``) instead of the whole reserve.
    clock : monotonic clock in seconds (injected in tests).
    """

    def __init__(
        self,
        limit_s: float,
        *,
        start: float | None = None,
        timer: InferenceTimer | None = None,
        write_s: float | None = None,
        min_train_fraction: float = 0.25,
        output_voxels: int | None = None,
        clock=time.monotonic,
    ):
        if not limit_s > 0:
            raise ValueError("limit_s must be > 0")
        self.limit_s = float(limit_s)
        self.clock = clock
        self.start = clock() if start is None else float(start)
        self.timer = timer
        self.write_s = max(5.0, 0.01 * self.limit_s) if write_s is None else float(write_s)
        self.min_train_s = float(min_train_fraction) * self.limit_s
        self.write_eta_s = self.write_s
        if output_voxels is not None:
            self.write_eta_s = min(self.write_s, float(output_voxels) / WRITE_VOXELS_PER_S)
        self.train_start: float | None = None
        self.steps_total: int | None = None
        self._rate_mark: tuple[int, float] | None = None  # (step, time) where the step rate is counted from
        self._step_rate: float | None = None
        self._stage = "prepare"
        self._stage_start = self.start
        self._infer_done_s: float | None = None

    # -- the plan ---------------------------------------------------------------------------------------
    def elapsed(self, now: float | None = None) -> float:
        return (self.clock() if now is None else now) - self.start

    @property
    def inference_s(self) -> float:
        """Planned inference seconds (the timer's estimate; 0 without a timer, or before its first timing)."""
        if self.timer is None:
            return 0.0
        seconds = self.timer.seconds
        return 0.0 if math.isinf(seconds) else seconds

    def begin_training(self, steps_total: int, now: float | None = None) -> None:
        """Training starts now with a budget of ``steps_total`` steps."""
        self.train_start = self.clock() if now is None else now
        self.steps_total = int(steps_total)
        self._rate_mark = None
        self._step_rate = None
        self._enter("train", self.train_start)

    def training_deadline(self) -> float:
        """Clock reading at which training must stop: the limit minus inference and writing, but not before
        ``min_train_s`` of training."""
        train_start = self.start if self.train_start is None else self.train_start
        by_limit = self.start + self.limit_s - self.write_s - self.inference_s
        return max(train_start + self.min_train_s, by_limit)

    def training_left_s(self, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        return max(0.0, self.training_deadline() - now)

    def training_over(self, now: float | None = None) -> bool:
        """Whether training must stop now (its deadline has come)."""
        return self.training_left_s(now) <= 0.0

    def over_limit(self) -> bool:
        """True when inference alone needs more than the limit leaves (the run will end late)."""
        train_start = self.start if self.train_start is None else self.train_start
        return self.start + self.limit_s - self.write_s - self.inference_s < train_start + self.min_train_s

    def steps_that_fit(self, step: int, now: float | None = None) -> int:
        """Training steps that fit before the deadline at the measured step rate (``step`` done so far);
        the step budget when the rate is not known yet."""
        now = self.clock() if now is None else now
        self.train_step(step, now)
        total = self.steps_total if self.steps_total is not None else step
        if self._step_rate is None:
            return total
        return step + int(self._step_rate * self.training_left_s(now))

    # -- progress ---------------------------------------------------------------------------------------
    def _enter(self, stage: str, now: float) -> None:
        if stage != self._stage:
            if self._stage == "infer" and stage == "write":
                self._infer_done_s = now - self._stage_start
            self._stage, self._stage_start = stage, now

    def train_step(self, step: int, now: float) -> None:
        """Training has done ``step`` steps at ``now``: the step rate counts from the 5th step (the first
        steps include one-off set-up), from a later mark when the rate changes."""
        if step < 5:
            return
        if self._rate_mark is None:
            self._rate_mark = (step, now)
            return
        s0, t0 = self._rate_mark
        if step > s0 and now > t0:
            self._step_rate = (step - s0) / (now - t0)

    def eta_s(self, stage: str, step: int, total: int, now: float | None = None) -> float | None:
        """Seconds left of the whole run, seen from ``stage`` at ``step`` of ``total`` (``None``: not known
        yet, before training has started)."""
        now = self.clock() if now is None else now
        self._enter(stage, now)
        write = self.write_eta_s
        if stage == "prepare":
            return None
        if stage == "train":
            if self.train_start is None:
                return None
            self.train_step(step, now)
            left = self.training_left_s(now)
            if self._step_rate is not None and self.steps_total is not None:
                left = min(left, max(0, self.steps_total - step) / self._step_rate)
            return left + self.inference_s + write
        if stage == "infer":
            fraction = 0.0 if total <= 0 else min(max(step / total, 0.0), 1.0)
            spent = now - self._stage_start
            planned = self.inference_s * (1.0 - fraction)
            if fraction >= 0.05 and spent > 0:
                measured = spent * (1.0 - fraction) / fraction
                planned = measured if fraction >= 0.25 else 0.5 * (planned + measured)
            return planned + write
        if stage == "write":
            fraction = 0.0 if total <= 0 else min(max(step / total, 0.0), 1.0)
            return max(0.0, write - (now - self._stage_start)) * (1.0 - fraction)
        return None
