"""What a batch run does with each job: run it, or skip it because the ledger says it is done (or failed,
without ``retry_failed``), and whether its output may be replaced.

A job is *done* when its latest attempt ended ``done`` with the same fingerprint (the options that change
the result, the output path, the format, the model reuse and the input's content identity), on the same
input content (:func:`same_content`), and its output is still there. It is redone when the options changed, the input's content changed, the output was removed,
or its latest attempt was cut short (``running``) or cancelled. An existing output is only replaced when
the ledger shows that this batch wrote (or was writing) it, or when ``overwrite`` is given (and then, as
always, only an earlier SR4ZCT output).

**Content identity** (:func:`content_identity`, recorded as ``content`` in every ledger record of an attempt):
for a DICOM series a hash of its SOPInstanceUIDs; for an image file (and a detached data file) its size,
modification time and a hash of its first and last :data:`HASHED_BYTES`, plus, recorded when the job runs, a
hash of the whole file. A file is the same content when size and partial hash agree and either the
modification time or the whole-file hash does (so a file written again with the same bytes, as 3D Slicer's
queue does, is not redone; a scan replaced by another is, even with an equal size and equal first and last
bytes). A record without ``content`` (an older ledger) counts as other content.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sr4zct.batch.jobs import BatchJob
from sr4zct.errors import SR4ZCTError
from sr4zct.run.options import EnhanceOptions

__all__ = ["PlannedJob", "content_identity", "fingerprint", "plan_jobs", "same_content"]

#: Bytes hashed from the start and from the end of a file for its cheap content identity.
HASHED_BYTES = 64 * 2**10

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
    content : dict or None
        The input's content identity (:func:`content_identity`), as the run records it.
    """

    job: BatchJob
    output: Path
    action: str
    attempt: int
    fingerprint: str
    replace_output: bool = False
    previous: dict[str, Any] | None = None
    content: dict[str, Any] | None = None


def fingerprint(
    job: BatchJob,
    options: EnhanceOptions,
    *,
    output: Path,
    output_format: str,
    reuse_model: str,
    content: dict[str, Any] | None = None,
) -> str:
    """16 hex digits identifying what the job's result depends on, its input's content included (the
    SOPInstanceUIDs of a series; a file's size and partial hash). ``content`` is
    :func:`content_identity` of the job (found when None); its time and whole-file hash are compared by
    :func:`same_content`, so that the same bytes written again keep the fingerprint."""
    data = {k: v for k, v in job.enhance_options(options).to_dict().items() if k not in NEUTRAL_OPTIONS}
    content = content_identity(job) if content is None else content
    stable = content.get("sop") or [[f.get("size"), f.get("part")] for f in content.get("files", [])]
    # the input is the job_id's (a series UID or a path) and what it holds: a DICOM cohort moved elsewhere
    # is not redone, a series or file replaced by another scan is
    data.update(
        output=str(output), format=output_format, reuse_model=reuse_model,
        uncertainty=options.uncertainty_path is not None, content=stable,
    )  # fmt: skip
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def content_identity(job: BatchJob, *, whole: bool = False) -> dict[str, Any]:
    """What the job's input holds (see the module docstring): ``{"sop": ...}`` for DICOM (found at
    discovery, else read from the headers now), ``{"files": [...]}`` for an image file and its detached data
    files, each ``{"size", "mtime_ns", "part"}`` and, with ``whole``, ``"sha256"`` of the whole file."""
    if job.content is not None:
        return {"sop": job.content}
    from sr4zct.io import image_suffix

    path = Path(job.input_path)
    if image_suffix(path) is not None and not path.is_dir():
        return {"files": [_file_identity(f, whole) for f in _image_files(path)]}
    return {"sop": _dicom_identity(path, job.series_uid)}


def same_content(stored: Any, job: BatchJob, current: dict[str, Any]) -> bool:
    """Whether the input still holds what the ledger's ``stored`` identity describes (``current`` is the cheap
    identity now; the whole-file hash is computed only for a file whose modification time changed)."""
    if not isinstance(stored, dict):
        return False
    if "sop" in current:
        return stored.get("sop") == current["sop"]
    files = stored.get("files")
    if not isinstance(files, list) or len(files) != len(current["files"]):
        return False
    whole = None
    for index, (old, new) in enumerate(zip(files, current["files"], strict=True)):
        if not isinstance(old, dict) or any(old.get(k) != new[k] for k in ("size", "part")):
            return False
        if old.get("mtime_ns") != new["mtime_ns"]:
            whole = whole or content_identity(job, whole=True)["files"]
            if old.get("sha256") is None or old.get("sha256") != whole[index].get("sha256"):
                return False
    return True


def _image_files(path: Path) -> list[Path]:
    """An image file and its detached data files."""
    from sr4zct.io.image_headers import inspect_image_file

    try:
        data_files = inspect_image_file(path, allow_detached_data=True).files
    except SR4ZCTError:
        data_files = ()
    return [path] + [Path(f) for f in data_files if Path(f) != path]


def _file_identity(path: Path, whole: bool) -> dict[str, Any]:
    """``size``, ``mtime_ns``, ``part`` (hash of the first and last :data:`HASHED_BYTES`) and with ``whole``
    ``sha256`` of a regular file (only regular files are opened); ``state`` for anything else."""
    from sr4zct.io.files import is_regular_file

    if not is_regular_file(path):
        state = "missing" if not os.path.lexists(path) else "not-a-file"
        return {"size": None, "mtime_ns": None, "part": state}
    try:
        st = os.stat(path)
        part, full = hashlib.sha256(), hashlib.sha256() if whole else None
        with open(path, "rb") as f:
            part.update(f.read(HASHED_BYTES))
            if st.st_size > 2 * HASHED_BYTES:
                f.seek(-HASHED_BYTES, os.SEEK_END)
            part.update(f.read(HASHED_BYTES))
            if full is not None:
                f.seek(0)
                for chunk in iter(lambda: f.read(2**20), b""):
                    full.update(chunk)
    except OSError:
        return {"size": None, "mtime_ns": None, "part": "unreadable"}
    out = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "part": part.hexdigest()[:32]}
    if full is not None:
        out["sha256"] = full.hexdigest()
    return out


def _dicom_identity(path: Path, series_uid: str | None) -> str:
    """The SOPInstanceUIDs of the series the job reads (a DICOM file stands for its folder's series)."""
    from sr4zct.batch.discovery import sop_identity
    from sr4zct.io.dicom import _header, _read_header, scan_folder

    try:
        if path.is_file():
            ds = _read_header(path)
            series_uid = series_uid or (_header(path, ds).series_uid if ds is not None else None)
            path = path.parent
        groups = scan_folder(path)
    except SR4ZCTError as exc:
        return "unreadable:" + hashlib.sha256(exc.message.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    if series_uid is not None:
        headers = groups.get(series_uid, [])
    else:
        headers = [h for group in groups.values() for h in group]
    return sop_identity(headers)


def plan_jobs(
    jobs: list[BatchJob],
    outputs: dict[str, Path],
    fingerprints: dict[str, str],
    attempts: dict[str, list[dict[str, Any]]],
    *,
    retry_failed: bool,
    contents: dict[str, dict[str, Any]] | None = None,
) -> list[PlannedJob]:
    """Decide, from the ledger's ``attempts`` (:meth:`~sr4zct.batch.ledger.Ledger.attempts`), what to do
    with each job; ``contents`` are the jobs' :func:`content_identity` (found when not given)."""
    planned = []
    for job in jobs:
        history = attempts.get(job.job_id, [])
        latest = history[-1] if history else None
        output = outputs[job.job_id]
        content = (contents or {}).get(job.job_id) or content_identity(job)
        action = _action(latest, fingerprints[job.job_id], job, content, output, retry_failed)
        ours = any(record.get("output") == str(output) for record in history)
        attempt = max((int(r.get("attempt", 0)) for r in history), default=0) + 1
        planned.append(
            PlannedJob(
                job, output, action, attempt, fingerprints[job.job_id], ours and _exists(output), latest, content
            )
        )  # fmt: skip
    return planned


def _action(
    latest: dict[str, Any] | None, print_: str, job: BatchJob, content: dict, output: Path, retry_failed: bool
) -> str:
    """``done`` (the latest attempt did this very job and its output is there), ``failed`` (it failed and no
    retry is asked) or ``run``."""
    if (
        latest is None
        or latest.get("fingerprint") != print_
        or not same_content(latest.get("content"), job, content)
    ):
        return "run"
    status = latest.get("status")
    if status == "done" and output.exists() and latest.get("output") == str(output):
        return "done"
    if status == "failed" and not retry_failed:
        return "failed"
    return "run"


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()
