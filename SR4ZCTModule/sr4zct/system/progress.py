"""Progress reporting and cooperative cancellation shared by the pipeline, the worker and the CLI.

The pipeline reports :class:`Progress` records through a plain callback and polls a ``should_stop``
callable between steps; it never prints. The CLI turns records into a tqdm bar, the background worker
into JSON lines (see ``docs/events.md``), the Slicer module into a progress bar. Every one of them shows
the time left as :func:`format_duration` writes it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sr4zct.errors import Cancelled

STAGES = ("prepare", "train", "infer", "write")

# Share of the whole job's wall time each stage is expected to take; used to turn a stage-local step
# count into a monotone whole-job fraction. The pipeline may pass its own weights.
DEFAULT_STAGE_WEIGHTS = {"prepare": 0.03, "train": 0.72, "infer": 0.22, "write": 0.03}


@dataclass(frozen=True)
class Progress:
    stage: str
    step: int
    total: int
    fraction: float
    elapsed_s: float
    eta_s: float | None = None
    loss: float | None = None
    message: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


ProgressCallback = Callable[[Progress], None]
StopCheck = Callable[[], bool]


def format_duration(seconds: float | None) -> str:
    """A duration as every client shows the time left: ``"1 h 05 min"``, ``"4 min 10 s"``, ``"12 s"``;
    empty when unknown (None, negative, not finite)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


class ProgressReporter:
    """Maps stage-local steps to a whole-job fraction and estimates the remaining time.

    Parameters
    ----------
    callback : called with each :class:`Progress`; ``None`` disables reporting.
    should_stop : polled by :meth:`check_cancel`; when it returns True, :class:`Cancelled` is raised.
    weights : stage name -> share of the whole job (normalised internally).
    clock : monotonic clock in seconds (injected in tests).

    Attributes
    ----------
    plan : the run's :class:`~sr4zct.method.budget.TimeBudget` once the pipeline has one (set it with the
        same clock). From then on the ETA is the plan's (training's deadline or remaining steps, then the
        planned and the measured inference, then writing) and the whole-job fraction is
        ``elapsed / (elapsed + ETA)``, so that the bar and the ETA tell the same story; before it, the
        fraction comes from the stage weights and the ETA from the elapsed time.
    """

    def __init__(
        self,
        callback: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
        weights: dict[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.callback = callback
        self.should_stop = should_stop
        weights = dict(weights or DEFAULT_STAGE_WEIGHTS)
        total = sum(weights.values())
        self.weights = {k: v / total for k, v in weights.items()}
        self._clock = clock
        self._t0 = clock()
        self._last_fraction = 0.0
        self.plan = None

    def _stage_start(self, stage: str) -> float:
        start = 0.0
        for name in STAGES:
            if name == stage:
                return start
            start += self.weights.get(name, 0.0)
        return start

    def elapsed(self) -> float:
        return self._clock() - self._t0

    def check_cancel(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled("Cancelled by the user; nothing was written.")

    def report(
        self,
        stage: str,
        step: int,
        total: int,
        *,
        loss: float | None = None,
        message: str | None = None,
        eta_s: float | None = None,
    ) -> None:
        """Report ``step`` of ``total`` in ``stage``; also checks for cancellation."""
        self.check_cancel()
        now = self._clock()
        elapsed = now - self._t0
        if eta_s is None and self.plan is not None:
            eta_s = self.plan.eta_s(stage, step, total, now=now)
        if eta_s is not None and elapsed + eta_s > 0:
            fraction = elapsed / (elapsed + max(0.0, eta_s))
        else:
            local = 1.0 if total <= 0 else min(max(step / total, 0.0), 1.0)
            fraction = self._stage_start(stage) + self.weights.get(stage, 0.0) * local
        fraction = max(self._last_fraction, min(fraction, 1.0))
        self._last_fraction = fraction
        if eta_s is None and fraction > 0.01:
            eta_s = elapsed * (1.0 - fraction) / fraction
        if self.callback is not None:
            self.callback(
                Progress(
                    stage=stage,
                    step=int(step),
                    total=int(total),
                    fraction=float(fraction),
                    elapsed_s=float(elapsed),
                    eta_s=None if eta_s is None else float(eta_s),
                    loss=None if loss is None else float(loss),
                    message=message,
                )
            )
