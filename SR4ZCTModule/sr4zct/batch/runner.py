"""Running a batch: :class:`Batch` plans the jobs against the ledger, hands the ready ones to an engine,
shares one model per protocol, and records every attempt.

Blocking use (the command line)::

    batch = Batch("out", discover_jobs(["cohort/"]), EnhanceOptions(preset="fast"))
    result = batch.run(on_event=print)          # returns when every job has ended
    result.exit_code                             # 0 all done, 8 some failed

Non-blocking use (a GUI timer)::

    batch.start()
    for event in batch.poll(): ...               # call again and again until batch.done
    batch.cancel()                               # running jobs stop and are recorded as cancelled
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sr4zct.batch.jobs import (
    FORMATS,
    BatchJob,
    check_output_names,
    check_targets_distinct,
    folds_case,
    output_path,
)  # fmt: skip
from sr4zct.batch.ledger import LEDGER_NAME, LEDGER_VERSION, SUMMARY_NAME, Ledger, summary_rows, write_summary
from sr4zct.batch.lock import OutdirLock
from sr4zct.batch.plan import PlannedJob, fingerprint, plan_jobs
from sr4zct.batch.protocol import Protocol, assign_protocols, job_protocol, model_file
from sr4zct.errors import OutputError, ParameterError
from sr4zct.run.options import EnhanceOptions

__all__ = ["EXIT_ALL_DONE", "EXIT_SOME_FAILED", "REUSE_MODES", "Batch", "BatchResult", "JobRun"]

#: every job of the run is done (now or in an earlier run)
EXIT_ALL_DONE = 0
#: at least one job failed (or was cancelled); the others are done. See summary.csv
EXIT_SOME_FAILED = 8
REUSE_MODES = ("protocol", "none")


@dataclass
class JobRun:
    """One attempt of a job handed to an engine.

    Attributes
    ----------
    planned : PlannedJob
    options : EnhanceOptions
        What the job process gets (the batch's and the job's options, the model to train or apply, the
        uncertainty path, overwrite when the batch's own earlier output is replaced).
    protocol : Protocol or None
    model_role : str
        ``train`` (trains and saves the protocol's model), ``apply`` (applies it), ``own`` (trains its own
        model, not shared) or ``given`` (applies the user's ``model_path``).
    """

    planned: PlannedJob
    options: EnhanceOptions
    protocol: Protocol | None
    model_role: str
    started_s: float = field(default_factory=time.monotonic)
    started_event: dict | None = None
    progress: dict | None = None

    @property
    def job(self) -> BatchJob:
        return self.planned.job

    @property
    def output(self) -> Path:
        return self.planned.output


@dataclass
class BatchResult:
    """How a batch run ended: ``exit_code`` and one summary row per job (see summary.csv)."""

    exit_code: int
    rows: list[dict[str, str]]
    ran: int
    skipped: int
    cancelled: bool = False


class Batch:
    """Enhance many series with one ledger in ``outdir``.

    Parameters
    ----------
    outdir : path-like
        Output folder: the enhanced volumes (``<output name>.<format>``), ``batch.jsonl``, ``summary.csv``
        and ``models/``. It must be empty, or a batch's own output folder (it holds ``batch.jsonl``).
    jobs : list of BatchJob
        From :func:`~sr4zct.batch.discovery.discover_jobs`, :func:`~sr4zct.batch.manifest.read_manifest`
        or :meth:`BatchJob.for_file`.
    options : EnhanceOptions, optional
        The options of every job (a job's own thickness etc. override them). ``save_model_path`` is not
        allowed (models go to ``outdir/models``); ``model_path`` applies one model to every job;
        ``uncertainty_path`` is taken as a folder that gets one uncertainty volume per job.
    output_format : str
        ``nrrd``, ``nii.gz``, ``mha`` or ``dicom`` (a folder per series).
    reuse_model : str
        ``protocol``: jobs of one acquisition protocol share one trained model; ``none``: each trains its own.
    retry_failed : bool
        Run again the jobs that failed in an earlier run with the same options.
    engine : LocalEngine or RayEngine, optional
        Default: :class:`~sr4zct.batch.local_engine.LocalEngine` (one job at a time).
    shard : str
        Tag of a ``--shard`` slice (``"1of4"``): its models are its own, so shards never write one file.
    """

    def __init__(
        self,
        outdir: str | os.PathLike,
        jobs: list[BatchJob],
        options: EnhanceOptions | None = None,
        *,
        output_format: str = "nrrd",
        reuse_model: str = "protocol",
        retry_failed: bool = False,
        engine: Any = None,
        shard: str = "",
    ):
        from sr4zct.io import as_path

        self.outdir = as_path(outdir, "outdir").expanduser().resolve()  # "" is refused, never "here"
        self.options = options or EnhanceOptions()
        if not isinstance(self.options, EnhanceOptions):
            raise ParameterError(f"options must be an EnhanceOptions, got {type(self.options).__name__}.")
        if output_format not in FORMATS:
            raise ParameterError(f"output_format must be one of {', '.join(FORMATS)}, got {output_format!r}.")
        if reuse_model not in REUSE_MODES:
            raise ParameterError(f"reuse_model must be one of {', '.join(REUSE_MODES)}, got {reuse_model!r}.")
        if self.options.save_model_path is not None:
            raise ParameterError(
                "save_model_path does not apply to a batch: the models are saved in the output folder's "
                "models/ (reuse_model protocol)."
            )
        self.jobs = list(jobs)
        if not all(isinstance(job, BatchJob) for job in self.jobs):
            raise ParameterError(
                "jobs must be a list of BatchJob (discover_jobs, read_manifest, BatchJob.for_file)."
            )
        if not isinstance(retry_failed, bool) or not isinstance(shard, str):
            raise ParameterError("retry_failed must be True or False and shard a text such as 'shard1of4'.")
        self.output_format = output_format
        self.reuse_model = "none" if self.options.model_path is not None else reuse_model
        self.retry_failed = retry_failed
        self.shard = shard
        self._engine = engine
        self.ledger = Ledger(self.outdir)
        self.lock = OutdirLock(self.outdir, shard or "all")
        self.planned: list[PlannedJob] = []
        self._queue: list[PlannedJob] = []
        self._protocols: dict[str, Protocol | None] = {}
        self._training: dict[Protocol, str] = {}  # protocol -> job_id training its model now
        self._trained_for: dict[Path, Protocol] = {}  # model file -> the protocol of the job that trained it
        self._runs: dict[str, JobRun] = {}
        self._ended: dict[str, str] = {}  # job_id -> status of this run's attempt
        self._own: dict[str, Protocol | None] = {}  # job_id -> the job's own protocol
        self._backlog: list[dict[str, Any]] = []
        self._started = False
        self._cancelled = False
        self.done = False

    # -- planning ---------------------------------------------------------------------------------------
    def plan(self, *, lock: bool = True) -> list[PlannedJob]:
        """Decide per job: run, or skip (done earlier; failed earlier without ``retry_failed``).

        Every output name of the whole job list is checked first (:func:`~sr4zct.batch.jobs.check_output_names`,
        case-insensitively where the output folder's file system is). With ``lock`` (not for a dry run) the
        output folder's run lock is taken (:class:`~sr4zct.batch.lock.OutdirLock`; a second run refuses) and
        held until the batch ends (:meth:`close`).
        """
        self._check_outdir()
        outputs = self._check_outputs()
        if lock:
            self.lock.acquire()
        try:
            return self._plan(outputs)
        except BaseException:
            self.lock.release()
            raise

    def _check_outputs(self) -> dict[str, Path]:
        """Each job's output path; refuses clashing names and files (outputs, uncertainty maps) up front."""
        fold = folds_case(self.outdir)
        check_output_names(self.jobs, fold_case=fold)
        outputs = {job.job_id: output_path(self.outdir, job, self.output_format) for job in self.jobs}
        targets = [(job, outputs[job.job_id]) for job in self.jobs]
        if self.options.uncertainty_path is not None:
            targets += [(job, self._uncertainty_path(job)) for job in self.jobs]
        check_targets_distinct(targets, fold_case=fold)
        return outputs

    def _uncertainty_path(self, job: BatchJob) -> Path:
        return output_path(
            Path(self.options.uncertainty_path).expanduser().resolve(), job,
            self.output_format if self.output_format != "dicom" else "nrrd",
        )  # fmt: skip

    def _plan(self, outputs: dict[str, Path]) -> list[PlannedJob]:
        from sr4zct.batch.plan import content_identity

        contents = {job.job_id: content_identity(job) for job in self.jobs}  # read once per run
        prints = {
            job.job_id: fingerprint(job, self.options, output=outputs[job.job_id], output_format=self.output_format,
                                    reuse_model=self.reuse_model, content=contents[job.job_id])
            for job in self.jobs
        }  # fmt: skip
        attempts = self.ledger.attempts()
        self.planned = plan_jobs(
            self.jobs, outputs, prints, attempts, retry_failed=self.retry_failed, contents=contents
        )
        for history in attempts.values():
            for record in history:
                values = record.get("protocol_values")  # checked by the ledger: 4 numbers, a profile, a path
                if record.get("model_role") == "train" and record.get("status") == "done" and values:
                    self._trained_for[Path(record["model_path"])] = Protocol(
                        float(values[0]),
                        float(values[1]),
                        (float(values[2]), float(values[3])),
                        str(values[4]),
                    )
        return self.planned

    def _check_outdir(self) -> None:
        if self.outdir.exists() and not self.outdir.is_dir():
            raise OutputError(f"The output folder {self.outdir} is a file.")
        if self.outdir.is_dir() and not (self.outdir / LEDGER_NAME).exists() and _has_entries(self.outdir):
            raise OutputError(
                f"The output folder {self.outdir} is not empty and holds no {LEDGER_NAME}: it is not a batch's "
                "output folder. Choose an empty or new folder."
            )
        for job in self.jobs:
            source = Path(job.input_path)
            if source.is_dir() and (self.outdir == source or source in self.outdir.parents):
                raise OutputError(
                    f"The output folder {self.outdir} is inside the input DICOM folder {source}; choose one "
                    "outside it."
                )

    # -- running ----------------------------------------------------------------------------------------
    def start(self) -> Batch:
        """Plan (unless done already), create the output folder and the ledger, and start the first jobs."""
        if self._started:
            raise RuntimeError("A Batch can only be started once.")
        self._started = True
        if not self.planned or not self.lock.held:
            self.plan()
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.ledger.path.touch(exist_ok=True)
        if self._engine is None:
            from sr4zct.batch.local_engine import LocalEngine

            self._engine = LocalEngine(device=self.options.device)
        self._queue = [p for p in self.planned if p.action == "run"]
        if self.reuse_model == "protocol" and self._queue:
            self._own = {p.job.job_id: job_protocol(p.job, self.options) for p in self._queue}
            self._protocols = assign_protocols(self._own)
        self._backlog += self._fill()
        if self._finish_if_idle():
            self._backlog.append({"event": "batch_ended", "exit_code": self.exit_code})
        return self

    @property
    def engine(self) -> Any:
        """Where the jobs run (set it before :meth:`start`; default a one-job-at-a-time LocalEngine)."""
        return self._engine

    @engine.setter
    def engine(self, engine: Any) -> None:
        if self._started:
            raise RuntimeError("The engine cannot change once the batch has started.")
        self._engine = engine

    def poll(self) -> list[dict[str, Any]]:
        """Collect what the engine reports, record it, start the next ready jobs; never blocks.

        Returns
        -------
        list of dict
            Batch events: ``job_started`` (``job_id``, ``description``, ``model_role``, ``attempt``),
            ``job_progress`` (``job_id``, ``stage``, ``fraction``, ``eta_s`` ... of docs/events.md),
            ``job_ended`` (``job_id``, ``status``, ``record``: the ledger record), and ``batch_ended`` once.
        """
        if not self._started:
            raise RuntimeError("Call start() first.")
        out, self._backlog = self._backlog, []
        if self.done:
            return out
        for run, event in self._engine.poll():
            out += self._handle(run, event)
        if not self._cancelled:
            out += self._fill()
        if self._finish_if_idle():
            out.append({"event": "batch_ended", "exit_code": self.exit_code})
        return out

    def cancel(self) -> None:
        """Stop: no new jobs start, running ones are asked to stop (they end as ``cancelled``)."""
        self._cancelled = True
        self._queue.clear()
        if self._engine is not None:
            self._engine.cancel()

    def run(self, on_event=None, should_stop=None, interval_s: float = 0.1) -> BatchResult:
        """Run every job to its end (blocking); ``on_event`` gets each batch event, ``should_stop()`` is polled
        (True cancels)."""
        try:
            if not self._started:
                self.start()
            while True:
                if should_stop is not None and not self._cancelled and should_stop():
                    self.cancel()
                for event in self.poll():
                    if on_event is not None:
                        on_event(event)
                if self.done and not self._backlog:
                    break
                time.sleep(interval_s)
        finally:
            if self._engine is not None:
                self._engine.close()
            self.lock.release()
        return self.result()

    def close(self) -> None:
        """Release the output folder's run lock (done by :meth:`run` and when :meth:`poll` sees the end)."""
        self.lock.release()

    # -- results ----------------------------------------------------------------------------------------
    @property
    def exit_code(self) -> int:
        """0 when every job of this batch is done, else 8 (failed, cancelled or not run)."""
        latest = self.ledger.latest()
        ok = all(latest.get(p.job.job_id, {}).get("status") == "done" for p in self.planned)
        return EXIT_ALL_DONE if ok else EXIT_SOME_FAILED

    def summary_rows(self) -> list[dict[str, str]]:
        return summary_rows(self.jobs, self.ledger.latest())

    def result(self) -> BatchResult:
        return BatchResult(
            exit_code=self.exit_code, rows=self.summary_rows(), ran=len(self._ended),
            skipped=sum(p.action != "run" for p in self.planned), cancelled=self._cancelled,
        )  # fmt: skip

    # -- internals --------------------------------------------------------------------------------------
    def _fill(self) -> list[dict[str, Any]]:
        events = []
        while self._engine.busy < self._engine.slots and not self._cancelled:
            run = self._next_ready()
            if run is None:
                break
            events += self._launch(run)
        return events

    def _next_ready(self) -> JobRun | None:
        for index, planned in enumerate(self._queue):
            run = self._job_run(planned)
            if run is not None:
                del self._queue[index]
                return run
        return None

    def _job_run(self, planned: PlannedJob) -> JobRun | None:
        """The attempt to start for ``planned``, or None while it waits for its protocol's model."""
        job = planned.job
        options = job.enhance_options(self.options)
        changes: dict[str, Any] = {}
        if planned.replace_output:
            changes["overwrite"] = True
        if self.options.uncertainty_path is not None:
            changes["uncertainty_path"] = str(self._uncertainty_path(job))
        protocol = self._protocols.get(job.job_id)
        role = "given" if self.options.model_path is not None else "own"
        if protocol is not None:
            model = model_file(self.outdir, protocol, options, self.shard)
            own = self._own.get(job.job_id)
            trained_for = self._trained_for.get(model, protocol)
            if model.is_file() and (own is None or trained_for.matches(own)):
                role, changes["model_path"] = "apply", str(model)
            elif model.is_file():
                role = "own"  # close to the group's first job, not to the one whose model is there
            elif protocol in self._training:
                return None
            else:
                role, changes["save_model_path"] = "train", str(model)
                self._training[protocol] = job.job_id
        return JobRun(planned, options.replace(**changes) if changes else options, protocol, role)

    def _launch(self, run: JobRun) -> list[dict[str, Any]]:
        from sr4zct.batch.plan import content_identity

        self._runs[run.job.job_id] = run
        run.planned.content = content_identity(run.job, whole=True)  # recorded: a re-run compares it
        self.ledger.append(self._record(run, "running"))
        try:
            self._engine.submit(run)
        except Exception as exc:  # the process could not even start
            from sr4zct.run.events import failed_event

            return self._end(run, failed_event(exc))
        return [{
            "event": "job_started", "job_id": run.job.job_id, "description": run.job.description,
            "model_role": run.model_role, "attempt": run.planned.attempt, "output": str(run.output),
        }]  # fmt: skip

    def _handle(self, run: JobRun, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("event")
        if kind == "started":
            run.started_event = event
            return []
        if kind == "progress":
            run.progress = event
            return [{**event, "event": "job_progress", "job_id": run.job.job_id}]
        if kind in ("finished", "failed", "cancelled"):
            return self._end(run, event)
        return []

    def _end(self, run: JobRun, terminal: dict[str, Any]) -> list[dict[str, Any]]:
        status = {"finished": "done", "failed": "failed", "cancelled": "cancelled"}[terminal["event"]]
        record = self._record(run, status, terminal)
        self.ledger.append(record)
        self._ended[run.job.job_id] = status
        if run.protocol is not None and self._training.get(run.protocol) == run.job.job_id:
            del self._training[run.protocol]
            if status == "done" and run.options.save_model_path:
                self._trained_for[Path(run.options.save_model_path)] = (
                    self._own.get(run.job.job_id) or run.protocol
                )
        self._runs.pop(run.job.job_id, None)
        return [{"event": "job_ended", "job_id": run.job.job_id, "status": status, "record": record}]

    def _record(self, run: JobRun, status: str, terminal: dict[str, Any] | None = None) -> dict[str, Any]:
        own = self._own.get(run.job.job_id) if run.model_role == "train" else None
        record: dict[str, Any] = {
            "ledger_version": LEDGER_VERSION, "job_id": run.job.job_id, "attempt": run.planned.attempt,
            "status": status, "time": time.time(), "input": run.job.input_path, "series_uid": run.job.series_uid,
            "description": run.job.description, "output": str(run.output), "fingerprint": run.planned.fingerprint,
            "options": run.options.to_dict(), "protocol": run.protocol.key if run.protocol else None,
            "model_role": run.model_role,
            "model_path": run.options.model_path or run.options.save_model_path,
            "engine": getattr(self._engine, "name", type(self._engine).__name__), "host": socket.gethostname(),
            "pid": os.getpid(), "content": run.planned.content,
        }  # fmt: skip
        if own is not None:
            record["protocol_values"] = [own.thickness_mm, own.spacing_mm, *own.pixel_spacing_mm, own.profile]
        if terminal is None:
            return record
        record["elapsed_s"] = time.monotonic() - run.started_s
        started = run.started_event or {}
        record["device"] = terminal.get("device_description") or started.get("device_description")
        if terminal["event"] == "finished":
            parameters = terminal.get("parameters") or {}
            record.update(
                timings_s=terminal.get("timings_s"), warnings=terminal.get("warnings") or [],
                training_steps=_number(parameters.get("steps"), int),
                validation_gain_db=_number(parameters.get("validation_gain_db"), float),
                output_shape=terminal.get("output_shape"), parameters=parameters,
            )  # fmt: skip
        else:
            record.update(
                error_code=terminal.get("code") or ("cancelled" if terminal["event"] == "cancelled" else None),
                error_message=terminal.get("message"), exit_code=terminal.get("exit_code"),
                error_detail=(terminal.get("detail") or "")[-2000:] or None,
            )  # fmt: skip
        return record

    def _finish_if_idle(self) -> bool:
        if self.done or self._engine.busy or (self._queue and not self._cancelled):
            return False
        self.done = True
        try:
            self._write_summary()
        finally:
            self.lock.release()
        return True

    def _write_summary(self) -> None:
        if self.outdir.is_dir():
            write_summary(self.outdir / SUMMARY_NAME, self.summary_rows())


def _has_entries(folder: Path) -> bool:
    """Whether ``folder`` holds anything besides run-lock files (left by a run that stopped before its ledger)."""
    from sr4zct.batch.lock import LOCK_PREFIX

    return any(not entry.name.startswith(LOCK_PREFIX) for entry in folder.iterdir())


def _number(value: Any, kind: type) -> Any:
    try:
        return kind(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
