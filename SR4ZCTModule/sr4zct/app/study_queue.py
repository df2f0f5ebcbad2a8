"""The queue of a study's volumes (the panel's "Enhance every volume of this study"): which volumes it takes,
the batch job of each, the failures of those that cannot be enhanced, and the results as they come.

The queue runs :class:`sr4zct.batch.Batch` with its ledger (``batch.jsonl`` in the output folder: a volume
done earlier with the same options is not redone). The module gives it the volumes as opaque keys (its nodes)
with two callables each: the volume's geometry and the writing of its file; it gets its results back through
a loading callable.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sr4zct.errors import ParameterError, SR4ZCTError
from sr4zct.run.options import EnhanceOptions

__all__ = ["StudyQueue", "is_enhanceable", "job_ended_line"]

#: the node class of a scalar volume (label maps, vector and tensor volumes have their own)
SCALAR_VOLUME_CLASS = "vtkMRMLScalarVolumeNode"


def is_enhanceable(class_name: str, made_by_sr4zct: bool, modality: str | None) -> bool:
    """A CT scalar volume: a scalar volume node (not a label map, vector or tensor volume), not something
    SR4ZCT made, and CT when its DICOM modality is known."""
    if class_name != SCALAR_VOLUME_CLASS or made_by_sr4zct:
        return False
    return not modality or modality.strip().upper() == "CT"


def job_ended_line(event: dict) -> str:
    """The log line of a ``job_ended`` event: the volume, its status and why it failed."""
    record = event.get("record") or {}
    message = record.get("error_message")
    return f"{record.get('description') or event['job_id']}: {event['status']}" + (
        f" ({message})" if message else ""
    )


class StudyQueue:
    """Several volumes enhanced one after another by a :class:`~sr4zct.batch.Batch`.

    Parameters
    ----------
    folder : path-like
        The queue's temporary folder (the volumes' files); removed when the batch ends.
    options : EnhanceOptions
        Every volume's options, except the thickness and spacing: those apply to the first volume (the
        panel's) only; the others use their own.
    """

    def __init__(self, folder: str | os.PathLike, options: EnhanceOptions):
        self.folder = Path(folder)
        self.options = options
        self.batch = None
        self.discard = False  # no result is loaded any more (cancelled, the scene is closing)
        self._keys: dict[str, Any] = {}
        self._jobs: list = []
        self._outputs: dict[str, Any] = {}
        self._backlog: list[dict] = []
        self._added = 0

    def add(self, key: Any, name: str, geometry: Callable[[], Any], write: Callable[[str], None]) -> None:
        """Queue one volume: ``geometry()`` gives its :class:`~sr4zct.app.node_geometry.NodeGeometry` and
        ``write(path)`` writes its file. A volume that cannot be enhanced is recorded as failed (a
        ``job_ended`` event of :meth:`poll`); any other error removes the queue's folder and is raised."""
        from sr4zct.batch import BatchJob
        from sr4zct.batch.jobs import safe_name

        index, self._added = self._added, self._added + 1
        try:
            node = geometry()
            thickness = (self.options.thickness_mm if index == 0 else None) or node.thickness_mm
            if thickness is None:
                raise ParameterError("its slice thickness is unknown: select it and enter the thickness")
            path = self.folder / f"{index:03d}.nrrd"
            write(str(path))
        except SR4ZCTError as exc:
            self._backlog.append({"event": "job_ended", "job_id": f"slicer:{name}", "status": "failed",
                                  "record": {"description": name, "error_message": exc.message}})  # fmt: skip
            return
        except BaseException:
            self.remove_folder()
            raise
        options: dict[str, Any] = {"thickness_mm": float(thickness), "slice_axis": 2 - node.axis}
        if index == 0 and self.options.spacing_mm is not None:
            options["spacing_mm"] = float(self.options.spacing_mm)
        uid = node.series.series_uid if node.series is not None else None
        job = BatchJob.for_file(path, output_name=safe_name(name, f"volume{index}"), description=name,
                                **options, **({"series_uid": uid} if uid else {}))  # fmt: skip
        if uid is None:  # a volume in the scene has no lasting file: its name identifies it in the ledger
            job = dataclasses.replace(job, job_id=f"slicer:{name}")
        self._keys[job.job_id] = key
        self._jobs.append(job)

    def start(self, output_folder: str | os.PathLike, engine: Any = None, *, uncertainty: bool = False):
        """Start the batch (results and ledger in ``output_folder``) on ``engine``; returns it.

        The default engine runs one job at a time with the interpreter for background processes
        (``PythonSlicer`` in Slicer) in a GUI run's environment, as a single run. When the batch cannot start,
        the queue's folder is removed and the error raised."""
        from sr4zct.app.environment import gui_run_environment
        from sr4zct.batch import Batch
        from sr4zct.batch.local_engine import LocalEngine
        from sr4zct.run.background import python_for_background

        try:
            if not self._jobs:
                reasons = "; ".join(e["record"]["error_message"] for e in self._backlog)
                raise ParameterError(f"None of the volumes can be enhanced: {reasons}")
            options = self.options.replace(thickness_mm=None, spacing_mm=None)
            if uncertainty:
                options = options.replace(uncertainty_path=str(self.folder / "disagreement"))
            engine = engine or LocalEngine(python_executable=python_for_background(), device=options.device,
                                           env=gui_run_environment(options.device))  # fmt: skip
            self.batch = Batch(output_folder, self._jobs, options, engine=engine)
            self.batch.start()
        except BaseException:
            self.remove_folder()
            raise
        return self.batch

    def poll(self, load: Callable[[Any, dict], Any]) -> list[dict]:
        """The batch's events since the last call, after the volumes that could not be queued; each volume
        done is given to ``load(key, finished)`` (a ``finished`` event's fields: ``output_path``,
        ``parameters``, ``uncertainty_path``), which returns its result."""
        events, self._backlog = self._backlog + self.batch.poll(), []
        for event in events:
            if event.get("event") == "job_ended" and event["status"] == "done" and not self.discard:
                record = event["record"]
                finished = {"output_path": record["output"], "parameters": record.get("parameters") or {},
                            "uncertainty_path": (record.get("options") or {}).get("uncertainty_path")}  # fmt: skip
                self._outputs[event["job_id"]] = load(self._keys[event["job_id"]], finished)
            if event.get("event") == "batch_ended":
                self.remove_folder()
        return events

    def cancel(self) -> None:
        """No new volume starts, the running one is cancelled, no further result is loaded."""
        self.discard = True
        if self.batch is not None:
            self.batch.cancel()

    def progress(self, event: dict) -> tuple[int, int, float]:
        """Volumes done, volumes queued, and the fraction of the whole queue done after ``event`` (a
        ``job_progress`` event adds its volume's fraction; ``batch_ended`` is 1)."""
        done, total = len(self._outputs), len(self._jobs)
        if event.get("event") == "batch_ended":
            return done, total, 1.0
        within = float(event.get("fraction") or 0.0) if event.get("event") == "job_progress" else 0.0
        return done, total, min(1.0, (done + within) / max(total, 1))

    def outputs(self) -> list:
        """The results so far, in the order the volumes were queued."""
        return [self._outputs[job.job_id] for job in self._jobs if job.job_id in self._outputs]

    def remove_folder(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
