"""One unit of batch work, :class:`BatchJob`, its output path and the shard a job belongs to.

A job is one series to enhance: a DICOM series (one SeriesInstanceUID), or one NRRD/NIfTI/MHA file. Its
``job_id`` is stable across runs (the series UID for DICOM, the absolute path for a file), so that the
ledger recognises it again after the input folders were moved or listed in another order.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sr4zct.errors import ParameterError
from sr4zct.io import image_suffix
from sr4zct.run.options import EnhanceOptions
from sr4zct.volume import SeriesGeometry

__all__ = [
    "FORMATS",
    "BatchJob",
    "check_output_names",
    "output_path",
    "parse_shard",
    "safe_name",
    "select_shard",
]

#: output formats of ``sr4zct batch --format`` and the suffix each gets (DICOM: a folder)
FORMATS = {"nrrd": ".nrrd", "nii.gz": ".nii.gz", "mha": ".mha", "dicom": ""}

#: per-job options a job may set itself (from the manifest, from discovery or from the Slicer module)
JOB_OPTIONS = ("thickness_mm", "series_uid", "slice_axis", "spacing_mm")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class BatchJob:
    """One series to enhance.

    Attributes
    ----------
    job_id : str
        Stable identity in the ledger: ``dicom:<SeriesInstanceUID>``, ``file:<absolute path>`` or
        ``path:<absolute path>`` (a manifest row or a folder whose series could not be read).
    input_path : str
        Absolute path of the DICOM folder (the deepest folder holding every file of the series) or file.
    output_name : str
        Output path relative to the output folder, ``/``-separated, without the format's suffix (unless it
        ends with an image suffix, which is then kept).
    options : dict
        Per-job options (names of :data:`JOB_OPTIONS`: ``thickness_mm``, ``series_uid``, ...) that override
        the batch's.
    description : str
        What the summary shows (patient, study, series description).
    geometry : SeriesGeometry or None
        The geometry read at discovery (DICOM headers), or None (read when needed).
    problem : str or None
        Why the geometry could not be read at discovery (the job then runs on its own and fails there with
        the reader's own error).
    """

    job_id: str
    input_path: str
    output_name: str
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    geometry: SeriesGeometry | None = field(default=None, compare=False, repr=False)
    problem: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.options) - set(JOB_OPTIONS))
        if unknown:
            raise ParameterError(
                f"A batch job may only set {', '.join(JOB_OPTIONS)}; got {', '.join(unknown)}."
            )

    @property
    def series_uid(self) -> str | None:
        return self.options.get("series_uid")

    def enhance_options(self, base: EnhanceOptions) -> EnhanceOptions:
        """The batch's options with this job's own (thickness, series UID, ...) put over them."""
        return base.replace(**self.options) if self.options else base

    @classmethod
    def for_file(
        cls, path: str | os.PathLike, *, output_name: str | None = None, description: str = "", **options: Any
    ) -> BatchJob:
        """A job for one image file (or DICOM folder) given by path, e.g. a volume the Slicer module wrote.

        ``options`` are per-job options (``thickness_mm=3.0``, ``slice_axis=0``, ``series_uid=...``).
        """
        resolved = Path(path).expanduser().resolve()
        uid = options.get("series_uid")
        job_id = f"dicom:{uid}" if uid else f"{'file' if image_suffix(resolved) else 'path'}:{resolved}"
        name = output_name or _stem(resolved.name)
        return cls(job_id, str(resolved), name, dict(options), description or resolved.name)


def safe_name(text: Any, fallback: str) -> str:
    """``text`` as one file-name component: letters, digits, ``.``, ``_``, ``-`` (others become ``_``)."""
    name = _UNSAFE.sub("_", str(text or "").strip()).strip("._")[:120]
    return name or fallback


def _stem(name: str) -> str:
    suffix = image_suffix(name)
    return name[: -len(suffix)] if suffix else name


def output_path(outdir: str | os.PathLike, job: BatchJob, output_format: str) -> Path:
    """Where ``job``'s enhanced volume goes: ``outdir/<output_name><suffix of output_format>``."""
    if output_format not in FORMATS:
        raise ParameterError(f"output_format must be one of {', '.join(FORMATS)}, got {output_format!r}.")
    name = job.output_name
    suffix = "" if image_suffix(name) else FORMATS[output_format]
    return Path(outdir).joinpath(*PurePosixPath(name).parts).with_name(PurePosixPath(name).name + suffix)


def check_output_names(jobs: list[BatchJob]) -> None:
    """Every output name relative, without ``..``, and unique (case-insensitively: macOS, Windows);
    one name may not be a folder of another. Raises :class:`ParameterError`."""
    seen: dict[str, str] = {}
    for job in jobs:
        path = PurePosixPath(job.output_name)
        if path.is_absolute() or ".." in path.parts or not path.parts or job.output_name.startswith("~"):
            raise ParameterError(
                f"The output name {job.output_name!r} of {job.input_path} must be a relative path inside the "
                "output folder."
            )
        key = _stem(job.output_name).lower()
        if key in seen:
            raise ParameterError(
                f"Two jobs would write the same output {job.output_name!r}: {seen[key]} and {job.input_path}."
            )
        seen[key] = job.input_path
    for key in seen:
        parent = str(PurePosixPath(key).parent)
        while parent not in (".", ""):
            if parent in seen:
                raise ParameterError(
                    f"The output name {parent!r} of {seen[parent]} is a folder of another job's output."
                )
            parent = str(PurePosixPath(parent).parent)


def disambiguate(jobs: list[BatchJob]) -> list[BatchJob]:
    """Jobs whose output names clash get a short hash of their ``job_id`` appended (stable across runs)."""
    import dataclasses

    counts: dict[str, int] = {}
    for job in jobs:
        key = _stem(job.output_name).lower()
        counts[key] = counts.get(key, 0) + 1
    out = []
    for job in jobs:
        if counts[_stem(job.output_name).lower()] > 1:
            tag = hashlib.sha1(job.job_id.encode("utf-8")).hexdigest()[:8]
            job = dataclasses.replace(job, output_name=f"{job.output_name}-{tag}")
        out.append(job)
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N``; raises :class:`ParameterError`."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise ParameterError(f"shard must be K/N (e.g. 0/4), got {text!r}.")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 0 <= index < count:
        raise ParameterError(f"shard K/N needs 0 <= K < N, got {text!r}.")
    return index, count


def select_shard(jobs: list[BatchJob], index: int, count: int) -> list[BatchJob]:
    """The ``index``-th of ``count`` disjoint slices of ``jobs``: every ``count``-th job, from the
    ``index``-th, of the jobs sorted by ``job_id``.

    The order depends only on the jobs themselves (not on how the input folders were listed), so array tasks
    that discover the same inputs split them the same way, and the slices together cover every job once.
    """
    ordered = sorted(jobs, key=lambda job: job.job_id)
    return ordered[index::count]
