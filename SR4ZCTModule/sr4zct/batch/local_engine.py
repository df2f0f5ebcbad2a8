"""The local engine: each job is ``sr4zct enhance ... --events`` in its own process
(:class:`~sr4zct.run.background.BackgroundJob`), one at a time, or ``jobs`` at once on as many GPUs.

A process per job isolates the batch from a job that crashes the interpreter or is killed for memory (it
is recorded as failed with code ``crashed`` and the batch goes on), gives each job a clean GPU context
pinned with ``CUDA_VISIBLE_DEVICES``, and lets a cancel remove the job's half-written outputs. When the
batch process dies, its jobs notice that nobody reads their events any more and cancel themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sr4zct.errors import ParameterError

__all__ = ["LocalEngine", "visible_gpus"]


def visible_gpus() -> list[str]:
    """The GPUs jobs may be pinned to: ``CUDA_VISIBLE_DEVICES`` when set, else every CUDA device torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [
            item.strip() for item in listed.split(",") if item.strip() and not item.strip().startswith("-")
        ]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


@dataclass
class _Running:
    run: Any
    job: Any  # BackgroundJob
    gpu: str | None


class LocalEngine:
    """Jobs as background processes on this machine.

    Parameters
    ----------
    jobs : int
        How many jobs run at once; more than one needs as many GPUs (each job gets one). On a machine
        without GPUs (or with ``device="cpu"``) it is clamped to 1 and :attr:`note` says so.
    python_executable : str, optional
        The interpreter of the job processes (``PythonSlicer`` in 3D Slicer); default the current one.
    device : str
        The batch's ``device`` option (``cpu`` means no GPU pinning).
    gpus : list of str, optional
        GPU ids to pin to (default :func:`visible_gpus`).
    env : dict, optional
        Variables for every job process (as :class:`~sr4zct.run.background.BackgroundJob` takes them; the
        3D Slicer module's: threads, a core left to its GUI); the GPU pinning is added to them.
    """

    name = "local"

    def __init__(
        self,
        jobs: int = 1,
        *,
        python_executable: str | None = None,
        device: str = "auto",
        gpus: list[str] | None = None,
        env: dict[str, str | None] | None = None,
    ):
        if not isinstance(jobs, int) or jobs < 1:
            raise ParameterError(f"jobs must be a whole number >= 1, got {jobs!r}.")
        self.python_executable = python_executable
        self.env = dict(env or {})
        self.note: str | None = None
        self._gpus: list[str] = []
        if jobs > 1:
            if device.startswith("cuda:"):
                raise ParameterError(
                    f"device {device} cannot be combined with jobs {jobs}: each job gets its own GPU; use auto or cuda."
                )
            found = [] if device in ("cpu", "mps") else (gpus if gpus is not None else visible_gpus())
            if not found:
                self.note = (
                    f"jobs {jobs} needs as many GPUs; this machine has none for the jobs, so they run one at a "
                    "time (several CPU jobs would only share the same cores)."
                )
                jobs = 1
            elif len(found) < jobs:
                self.note = f"jobs {jobs} but only {len(found)} GPU(s): running {len(found)} at a time."
                jobs = len(found)
            self._gpus = list(found[:jobs])
        self.slots = jobs
        self._running: list[_Running] = []

    @property
    def busy(self) -> int:
        return len(self._running)

    def submit(self, run) -> None:
        """Start ``run`` (a :class:`~sr4zct.batch.runner.JobRun`) in a process of its own."""
        from sr4zct.run.background import BackgroundJob

        used = {r.gpu for r in self._running}
        gpu = next((g for g in self._gpus if g not in used), None)
        env = {**self.env, "CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else self.env
        job = BackgroundJob(
            run.job.input_path, run.output, run.options, python_executable=self.python_executable, env=env
        )
        self._running.append(_Running(run, job, gpu))
        try:
            job.start()
        except Exception:
            self._running.pop()
            raise

    def poll(self) -> list[tuple[Any, dict]]:
        """``(run, event)`` for every event since the last call (docs/events.md); after a run's terminal
        event (``finished``, ``failed``, ``cancelled``) its process has ended."""
        from sr4zct.run.events import TERMINAL_EVENTS

        out = []
        for item in list(self._running):
            events = item.job.poll()
            out += [(item.run, event) for event in events]
            if any(event.get("event") in TERMINAL_EVENTS for event in events):
                self._running.remove(item)
        return out

    def cancel(self, grace_s: float = 5.0) -> None:
        """Ask every running job to stop (their processes remove their temporary outputs)."""
        for item in self._running:
            item.job.cancel(grace_s=grace_s)

    def close(self) -> None:
        for item in self._running:
            item.job.kill()
