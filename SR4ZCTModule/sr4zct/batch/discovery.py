"""Finding the jobs of a batch: every DICOM series and every image file under the input paths.

DICOM files are recognised by content (as :mod:`sr4zct.io.dicom` does) and grouped by SeriesInstanceUID
over all inputs: one job per series, read from the deepest folder that holds all of its files. Output
names are ``<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>`` for DICOM (UIDs are unique, so names
cannot collide) and the path relative to the input folder for image files.

Links to folders are followed (a linked patient folder is searched, never skipped silently); a folder reached
a second time (a link loop, two links to one folder) is searched once, with a note. Named pipes, sockets and
devices are never opened (a pipe would make the search wait forever): they are skipped with a note. Each
DICOM job records the SOPInstanceUIDs of its images (:attr:`BatchJob.content`), which the run's fingerprint
includes, so a series whose images were replaced is enhanced again.

A damaged DICOM file does not stop the discovery: the series around it fail when they are read (the reader
refuses a series with a damaged file, so no slice goes missing silently), and a folder whose files are all
damaged becomes a job of its own that fails with the reader's message.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from sr4zct.batch.jobs import BatchJob, check_output_names, disambiguate, safe_name
from sr4zct.errors import InputError, SR4ZCTError
from sr4zct.io import as_path, image_suffix
from sr4zct.io.files import is_regular_file, walk_files

__all__ = ["discover_jobs"]

#: files that are never an input: the batch's own ledger and summary, NIfTI sidecars, model files
_SKIP_SUFFIXES = (".json", ".jsonl", ".csv", ".pt", ".md", ".txt", ".raw", ".zraw", ".png", ".py")


def discover_jobs(
    inputs: Iterable[str | os.PathLike],
    *,
    exclude: Iterable[str | os.PathLike] = (),
    warn=None,
) -> list[BatchJob]:
    """Every job under ``inputs`` (folders are searched recursively; files are taken as they are).

    Parameters
    ----------
    inputs : paths
        DICOM folders, folders of image files (or both), image files, single DICOM files (their series).
    exclude : paths
        Folders not to search (the batch's output folder).
    warn : callable, optional
        Receives one-line notes (duplicate series, damaged files); default prints to stderr.

    Returns
    -------
    list of BatchJob
        In a stable order: DICOM series by patient, study and series, then image files by path.

    Raises
    ------
    InputError
        An input does not exist, or nothing to enhance was found.
    """
    warn = warn or (lambda text: print(f"sr4zct batch: {text}", file=sys.stderr))
    excluded = [Path(p).expanduser().resolve() for p in exclude]
    series: dict[str, list] = {}  # SeriesInstanceUID -> SliceHeaders
    seen_sop: dict = {}  # SOPInstanceUID -> the first SliceHeader with it
    damaged: list[tuple[Path, str]] = []
    images: list[tuple[Path, Path]] = []  # (file, the input folder it was found under)
    for raw in inputs:
        root = as_path(raw, "input").expanduser().resolve()  # an empty path is refused, never "here"
        if not root.exists():
            raise InputError(f"Input {raw} does not exist.")
        for path in _walk(root, excluded, warn):
            if image_suffix(path) is not None:
                images.append((path, root if root.is_dir() else path.parent))
                continue
            if path.suffix.lower() in _SKIP_SUFFIXES:
                continue
            _add_dicom_file(path, series, seen_sop, damaged)
    jobs = [_dicom_job(uid, headers) for uid, headers in series.items()]
    jobs.sort(key=lambda job: job.output_name)
    jobs += _damaged_jobs(damaged, jobs, warn)
    jobs += _image_jobs(images)
    if not jobs:
        listed = ", ".join(str(p) for p in inputs)
        raise InputError(f"No DICOM series or image files found under {listed}.")
    jobs = disambiguate(jobs)
    check_output_names(jobs)
    return jobs


def _image_jobs(images: list[tuple[Path, Path]]) -> list[BatchJob]:
    """One job per image file (found once), named by its path under the input folder it was found in."""
    jobs, seen = [], set()
    for path, root in images:
        real = os.path.realpath(path)  # one file reached through two links is one job
        if real in seen:
            continue
        seen.add(real)
        rel = path.relative_to(root).as_posix() if path != root else path.name
        suffix = image_suffix(rel) or ""
        name = _usable_name(rel[: len(rel) - len(suffix)])
        jobs.append(BatchJob(f"file:{path}", str(path), name, {}, rel))
    return jobs


_UNUSABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def _usable_name(relative: str) -> str:
    """An image file's output name from its path under the input folder: control characters and bytes
    that are not UTF-8 (which no image writer can take) become ``_``; clashes then get a hash
    (:func:`~sr4zct.batch.jobs.disambiguate`)."""
    return "/".join(_UNUSABLE.sub("_", part) for part in relative.split("/"))


def _walk(root: Path, excluded: list[Path], warn) -> Iterator[Path]:
    """The regular files under ``root`` (links to folders followed, loops searched once, the excluded
    folders left out); anything else is skipped with a note."""
    if not root.is_dir():
        if is_regular_file(root):
            yield root
        else:
            warn(f"skipped {root}: not a regular file (a named pipe, socket or device).")
        return

    def skip(folder: Path) -> bool:
        return any(_same(folder, e) for e in excluded)

    def loop(folder: Path) -> None:
        warn(f"skipped {folder}: it leads to {os.path.realpath(folder)}, which is searched already (a link).")

    for path in walk_files(root, skip_dir=skip, on_loop=loop):
        if is_regular_file(path):
            yield path
        elif os.path.lexists(path) and not path.exists():
            warn(f"skipped {path}: a link to nothing.")
        else:
            warn(f"skipped {path}: not a regular file (a named pipe, socket or device).")


def _same(path: Path, other: Path) -> bool:
    try:
        return path.resolve() == other
    except OSError:
        return False


def _add_dicom_file(
    path: Path, series: dict[str, list], seen_sop: dict, damaged: list[tuple[Path, str]]
) -> None:
    # The reader's own per-file functions, so that the batch sees the files exactly as the reader does.
    from sr4zct.io.dicom import _header, _read_header, is_copy

    try:
        ds = _read_header(path)
    except InputError as exc:
        damaged.append((path, exc.message))
        return
    if ds is None:
        return
    header = _header(path, ds)
    if is_copy(header, seen_sop):
        return  # the same image stored twice (a copy): the reader keeps the first too
    series.setdefault(header.series_uid, []).append(header)


def _common_folder(paths: list[Path]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in paths]))


def _dicom_job(uid: str, headers: list) -> BatchJob:
    from sr4zct.io.dicom import _NO_UID, _geometry

    folder = _common_folder([h.path for h in headers])
    ref = headers[0].reference
    patient = safe_name(ref.get("PatientID"), "no-patient-id")
    study = safe_name(ref.get("StudyInstanceUID"), "no-study-uid")
    leaf = safe_name(uid, "no-series-uid")
    number = f"#{headers[0].series_number} " if headers[0].series_number is not None else ""
    description = f"{ref.get('PatientID', '?')} {number}{headers[0].description}".strip()
    geometry, problem = None, None
    try:
        geometry, _ = _geometry(headers, folder, None)
    except SR4ZCTError as exc:
        problem = exc.message
    options = {} if uid == _NO_UID else {"series_uid": uid}
    job_id = f"dicom:{uid}" if uid != _NO_UID else f"path:{folder}"
    content = sop_identity(headers)
    return BatchJob(
        job_id, str(folder), f"{patient}/{study}/{leaf}", options, description, geometry, problem, content
    )


def sop_identity(headers: list) -> str:
    """The content identity of a DICOM series: a hash of its SOPInstanceUIDs (a file without one counts by
    its size and modification time)."""
    import hashlib

    items = []
    for header in headers:
        if header.sop_uid:
            items.append(f"uid:{header.sop_uid}")
        else:
            try:
                st = header.path.stat()
                items.append(f"file:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                items.append("file:?")
    return "sop:" + hashlib.sha256("\n".join(sorted(items)).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _damaged_jobs(damaged: list[tuple[Path, str]], jobs: list[BatchJob], warn) -> list[BatchJob]:
    """Damaged files outside every series' folder: one failing job per folder (else they would go unseen)."""
    out: dict[Path, BatchJob] = {}
    for path, message in damaged:
        covered = any(Path(job.input_path) in path.parents for job in jobs)
        warn(message if covered else f"{message} (no readable series beside it)")
        folder = path.parent
        if not covered and folder not in out:
            out[folder] = BatchJob(
                f"path:{folder}", str(folder), f"unreadable/{safe_name(folder.name, 'folder')}", {},
                f"damaged DICOM in {folder.name}", problem=message,
            )  # fmt: skip
    return list(out.values())
