"""What a batch run does with each job: run it, or skip it because the ledger says it is done (or failed,
without ``retry_failed``), and whether its output may be replaced.

A job is *done* when its latest attempt ended ``done`` with the same fingerprint (the options that change
the result, the output path, the format and the model reuse) and its output is still there. It is redone
when the options changed, the output was removed, or its latest attempt was cut short (``running``) or
cancelled. An existing output is only replaced when the ledger shows that this batch wrote (or was writing)
it, or when ``overwrite`` is given (and then, as always, only an earlier SR4ZCT output).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sr4zct.batch.jobs import BatchJob
from sr4zct.run.options import EnhanceOptions

__all__ = ["PlannedJob", "fingerprint", "plan_jobs"]

#: options that do not change the enhanced volume (where it runs, what may be replaced, batch-managed paths,
#: the live preview)
NEUTRAL_OPTIONS = (
    "device", "allow_cpu_fallback", "overwrite", "save_model_path", "uncertainty_path", "preview_path",
    "preview_row",
)  # fmt: skip


@dataclass
class PlannedJob:
    """One job of a batch run and what the run does with it.

    Attributes
    ----------
    job : BatchJob
    output : Path
        Where its enhanced volume goes.
    action : str
        ``run``, ``done`` (skipped: done earlier) or ``failed`` (skipped: failed earlier, no retry asked).
    attempt : int
        The attempt number a run records (1 for a job never tried).
    fingerprint : str
    replace_output : bool
        The output exists and this batch wrote it: the run may replace it.
    previous : dict or None
        The ledger's latest record of the job.
    """

    job: BatchJob
    output: Path
    action: str
    attempt: int
    fingerprint: str
    replace_output: bool = False
    previous: dict[str, Any] | None = None


def fingerprint(
    job: BatchJob, options: EnhanceOptions, *, output: Path, output_format: str, reuse_model: str
) -> str:
    """16 hex digits identifying what the job's result depends on."""
    data = {k: v for k, v in job.enhance_options(options).to_dict().items() if k not in NEUTRAL_OPTIONS}
    # the input is the job_id's (a series UID or a path): a DICOM cohort moved elsewhere is not redone
    data.update(
        output=str(output), format=output_format, reuse_model=reuse_model,
        uncertainty=options.uncertainty_path is not None,
    )  # fmt: skip
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def plan_jobs(
    jobs: list[BatchJob],
    outputs: dict[str, Path],
    fingerprints: dict[str, str],
    attempts: dict[str, list[dict[str, Any]]],
    *,
    retry_failed: bool,
) -> list[PlannedJob]:
    """Decide, from the ledger's ``attempts`` (:meth:`~sr4zct.batch.ledger.Ledger.attempts`), what to do
    with each job."""
    planned = []
    for job in jobs:
        history = attempts.get(job.job_id, [])
        latest = history[-1] if history else None
        output = outputs[job.job_id]
        same = latest is not None and latest.get("fingerprint") == fingerprints[job.job_id]
        status = latest.get("status") if latest else None
        if same and status == "done" and output.exists() and latest.get("output") == str(output):
            action = "done"
        elif same and status == "failed" and not retry_failed:
            action = "failed"
        else:
            action = "run"
        ours = any(record.get("output") == str(output) for record in history)
        attempt = max((int(r.get("attempt", 0)) for r in history), default=0) + 1
        planned.append(
            PlannedJob(
                job, output, action, attempt, fingerprints[job.job_id], ours and _exists(output), latest
            )
        )
    return planned


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()
