"""One unit of batch work, :class:`BatchJob`, its output path and the shard a job belongs to.

A job is one series to enhance: a DICOM series (one SeriesInstanceUID), or one NRRD/NIfTI/MHA file. Its
``job_id`` is stable across runs (the series UID for DICOM, the absolute path for a file), so that the
ledger recognises it again after the input folders were moved or listed in another order.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import unicodedata
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
    "check_targets_distinct",
    "folds_case",
    "name_problem",
    "output_key",
    "output_path",
    "parse_shard",
    "safe_name",
    "select_shard",
]

#: output formats of ``sr4zct batch --format`` and the suffix each gets (DICOM: a folder)
FORMATS = {"nrrd": ".nrrd", "nii.gz": ".nii.gz", "mha": ".mha", "dicom": ""}

#: per-job options a job may set itself (from the manifest, from discovery or from the Slicer module)
JOB_OPTIONS = ("thickness_mm", "series_uid", "slice_axis", "spacing_mm", "scan_mode")

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
    content : str or None
        The input's content identity found at discovery (DICOM: a hash of the SOPInstanceUIDs), or None (it
        is found when the run is planned: :func:`sr4zct.batch.plan.content_identity`).
    """

    job_id: str
    input_path: str
    output_name: str
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    geometry: SeriesGeometry | None = field(default=None, compare=False, repr=False)
    problem: str | None = field(default=None, compare=False)
    content: str | None = field(default=None, compare=False, repr=False)

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
        from sr4zct.io import as_path

        resolved = as_path(path).expanduser().resolve()  # "" is refused, never the current folder
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


#: Names of the batch's own files and folders in the output folder, which no output may take.
RESERVED_NAMES = ("batch.jsonl", "summary.csv", "models")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _normal(name: str, fold_case: bool) -> str:
    text = unicodedata.normalize("NFC", str(name).replace("\\", "/"))
    parts = [part.rstrip(" .") or part for part in PurePosixPath(text).parts if part != "."]
    key = "/".join(parts)
    return key.casefold() if fold_case else key


def output_key(name: str, *, fold_case: bool = True) -> str:
    """The name as the file system sees it, for comparing output names: ``\\`` as ``/``, Unicode NFC (macOS
    stores names decomposed), ``.`` parts and trailing dots and spaces dropped (Windows ignores them),
    without an image suffix (``x`` and ``x.nrrd`` are one output), case-folded when ``fold_case``."""
    return _stem(_normal(name, fold_case))


def name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be an output name inside the output folder (None when it can)."""
    if not isinstance(name, str) or not name.strip():
        return "it is empty"
    if _CONTROL.search(name):
        return "it holds a control character"
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith("~") or re.match(r"^[A-Za-z]:", name) or ".." in path.parts:
        return "it must be a relative path inside the output folder"
    if any(part.startswith(".") for part in path.parts):
        return "a part of it starts with '.' (hidden; SR4ZCT's temporaries are named so)"
    if (
        output_key(path.parts[0]) in {output_key(r) for r in RESERVED_NAMES}
        or path.parts[0].casefold() in RESERVED_NAMES
    ):
        return f"{path.parts[0]!r} is the batch's own ({', '.join(RESERVED_NAMES)})"
    return None


def folds_case(outdir: str | os.PathLike) -> bool:
    """Whether names in ``outdir`` are compared without case (Windows, macOS by default): tried on an entry
    of ``outdir`` (or the folder's own name in its parent) whose name has letters; else the platform's
    default. Nothing is written."""
    folder = Path(outdir)
    candidates: list[Path] = []
    if folder.is_dir():
        try:
            candidates = sorted(folder.iterdir())[:20]
        except OSError:
            candidates = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    candidates.append(probe)
    for path in candidates:
        if path.name.swapcase() != path.name:
            other = path.with_name(path.name.swapcase())
            try:
                return other.exists() and os.path.samefile(path, other)
            except OSError:
                continue
    return sys.platform in ("win32", "darwin")


def check_output_names(jobs: list[BatchJob], *, fold_case: bool = True) -> None:
    """Every output name a relative path inside the output folder (:func:`name_problem`), and unique as the
    file system compares names (:func:`output_key`: normalised, case-insensitively when ``fold_case``); one
    name may not be a folder of another. Raises :class:`ParameterError` before any work."""
    seen: dict[str, BatchJob] = {}
    for job in jobs:
        problem = name_problem(job.output_name)
        if problem is not None:
            raise ParameterError(
                f"The output name {job.output_name!r} of {job.input_path} is unusable: {problem}."
            )
        key = output_key(job.output_name, fold_case=fold_case)
        if key in seen:
            raise ParameterError(
                f"Two jobs would write the same output: {seen[key].output_name!r} of {seen[key].input_path} and "
                f"{job.output_name!r} of {job.input_path}; give one of them another output_name."
            )
        seen[key] = job
    for key, job in seen.items():
        parent = str(PurePosixPath(key).parent)
        while parent not in (".", ""):
            if parent in seen:
                raise ParameterError(
                    f"The output name {seen[parent].output_name!r} of {seen[parent].input_path} is a folder of "
                    f"another job's output ({job.output_name!r})."
                )
            parent = str(PurePosixPath(parent).parent)


def check_targets_distinct(targets: list[tuple[BatchJob, Path]], *, fold_case: bool = True) -> None:
    """Every file the jobs write (their outputs, their uncertainty maps) is a different file."""
    seen: dict[str, BatchJob] = {}
    for job, path in targets:
        key = _normal(path.as_posix(), fold_case)
        if key in seen:
            raise ParameterError(
                f"Two outputs of the batch would be the same file {path}: of {seen[key].input_path} and of "
                f"{job.input_path}; choose another uncertainty folder or output names."
            )
        seen[key] = job


def disambiguate(jobs: list[BatchJob]) -> list[BatchJob]:
    """Jobs whose output names clash get a short hash of their ``job_id`` appended (stable across runs)."""
    import dataclasses

    counts: dict[str, int] = {}
    for job in jobs:
        key = output_key(job.output_name)
        counts[key] = counts.get(key, 0) + 1
    out = []
    for job in jobs:
        if counts[output_key(job.output_name)] > 1:
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
