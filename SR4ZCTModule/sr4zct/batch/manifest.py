"""Jobs given explicitly: a CSV manifest, one row per series.

Columns (a header row names them; only ``path`` is required, order does not matter):

``path``
    DICOM folder or file, or NRRD/NIfTI/MHA file; relative paths are relative to the manifest's folder.
``series_uid``
    SeriesInstanceUID when the folder holds several series.
``thickness_mm`` (or ``thickness``)
    Slice thickness in mm (image files record none unless SR4ZCT wrote them).
``output_name`` (or ``output``)
    Output path inside the output folder, without suffix (the ``--format``'s is added).

Rows whose ``path`` is empty or starts with ``#`` are skipped.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

from sr4zct.batch.jobs import BatchJob, check_output_names, disambiguate, safe_name
from sr4zct.errors import InputError, ParameterError
from sr4zct.io import image_suffix

__all__ = ["read_manifest"]

_ALIASES = {
    "path": "path",
    "input": "path",
    "series_uid": "series_uid",
    "series": "series_uid",
    "seriesinstanceuid": "series_uid",
    "thickness_mm": "thickness_mm",
    "thickness": "thickness_mm",
    "output_name": "output_name",
    "output": "output_name",
}


def read_manifest(path: str | os.PathLike) -> list[BatchJob]:
    """The jobs of a CSV manifest (see the module docstring), in its row order.

    Raises
    ------
    InputError
        The manifest cannot be read, has no ``path`` column or no rows.
    ParameterError
        A row's thickness is not a positive number, or two rows name the same output.
    """
    manifest = Path(path).expanduser().resolve()
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"Cannot read the manifest {path}: {exc.strerror or exc}.") from None
    reader = csv.DictReader(text.splitlines())
    columns = {name: _ALIASES.get((name or "").strip().lower()) for name in reader.fieldnames or []}
    if "path" not in columns.values():
        raise InputError(f"The manifest {path} needs a header row with a 'path' column.")
    jobs = _rows_to_jobs(reader, columns, manifest.parent, path)
    seen: set[str] = set()
    for job in jobs:
        if job.job_id in seen:
            raise ParameterError(f"The manifest {path} lists {job.input_path} twice.")
        seen.add(job.job_id)
    check_output_names(jobs)
    return jobs


def _rows_to_jobs(reader: csv.DictReader, columns: dict, base: Path, path: Any) -> list[BatchJob]:
    """The rows' jobs in row order; names the manifest gives are kept, default names that clash get a hash."""
    named, unnamed = [], []
    for number, row in enumerate(reader, start=2):
        values = {columns[k]: (v or "").strip() for k, v in row.items() if k in columns and columns[k]}
        if not values.get("path") or values["path"].startswith("#"):
            continue
        job = _job(values, base, f"{path}, line {number}")
        (named if values.get("output_name") else unnamed).append((number, job))
    if not named and not unnamed:
        raise InputError(f"The manifest {path} lists no series.")
    renamed = dict(zip([n for n, _ in unnamed], disambiguate([job for _, job in unnamed]), strict=True))
    return [job for _, job in sorted(named + list(renamed.items()), key=lambda item: item[0])]


def _job(values: dict[str, str], base: Path, where: str) -> BatchJob:
    source = (base / values["path"]).expanduser().resolve()
    options: dict = {}
    if values.get("series_uid"):
        options["series_uid"] = values["series_uid"]
    if values.get("thickness_mm"):
        options["thickness_mm"] = _thickness(values["thickness_mm"], where)
    name = values.get("output_name") or _default_name(source, options.get("series_uid"))
    return BatchJob.for_file(source, output_name=name, description=values["path"], **options)


def _thickness(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ParameterError(f"{where}: thickness_mm must be a positive number of millimetres, got {text!r}.")
    return value


def _default_name(source: Path, series_uid: str | None) -> str:
    suffix = image_suffix(source.name)
    stem = source.name[: -len(suffix)] if suffix else source.name
    if series_uid:
        return f"{safe_name(stem, 'input')}/{safe_name(series_uid, 'series')}"
    return safe_name(stem, "input")
