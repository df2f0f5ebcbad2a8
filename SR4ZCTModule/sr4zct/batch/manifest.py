"""Jobs given explicitly: a CSV manifest, one row per series.

Columns (a header row names them; only ``path`` is required, order does not matter):

``path``
    DICOM folder or file, or NRRD/NIfTI/MHA file; relative paths are relative to the manifest's folder.
``series_uid``
    SeriesInstanceUID when the folder holds several series.
``thickness_mm`` (or ``thickness``)
    Slice thickness in mm (image files record none unless SR4ZCT wrote them).
``scan_mode``
    ``helical`` or ``sequential`` (image files state none; for ``--profile auto`` it fixes the profile family,
    :mod:`sr4zct.volume.scan_mode`); empty or ``auto``: from the DICOM header, if any.
``output_name`` (or ``output``)
    Output path inside the output folder, without suffix (the ``--format``'s is added).

Rows whose ``path`` is empty or starts with ``#`` are skipped.

The manifest must be a regular file of UTF-8 text (a byte-order mark is allowed); a byte that is not UTF-8,
a NUL or another control character in a field, a malformed CSV line, two columns naming one field, or a
field SR4ZCT cannot use is refused with the manifest's line number, before any work.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path
from typing import Any

from sr4zct.batch.jobs import BatchJob, check_output_names, disambiguate, name_problem, safe_name
from sr4zct.errors import InputError, ParameterError
from sr4zct.io import as_path, image_suffix
from sr4zct.io.files import require_regular_file
from sr4zct.volume.scan_mode import SCAN_MODES

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
    "scan_mode": "scan_mode",
}


def read_manifest(path: str | os.PathLike) -> list[BatchJob]:
    """The jobs of a CSV manifest (see the module docstring), in its row order.

    Raises
    ------
    InputError
        The manifest cannot be read, has no ``path`` column or no rows.
    ParameterError
        A row's thickness is not a positive number, its scan mode not one of :data:`SCAN_MODES`, or two rows
        name the same output.
    """
    manifest = as_path(path, "manifest").expanduser().resolve()
    text = _manifest_text(manifest, path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = reader.fieldnames or []
    except csv.Error as exc:
        raise InputError(f"The manifest {path}, line 1, is not valid CSV: {exc}.") from None
    columns = _columns(fieldnames, path)
    try:
        jobs = _rows_to_jobs(reader, columns, manifest.parent, path)
    except csv.Error as exc:
        # (the reader counts a line once it is parsed: the failing one is the next)
        raise InputError(
            f"The manifest {path}, line {reader.line_num + 1}, is not valid CSV: {exc}."
        ) from None
    seen: set[str] = set()
    for job in jobs:
        if job.job_id in seen:
            raise ParameterError(f"The manifest {path} lists {job.input_path} twice.")
        seen.add(job.job_id)
    check_output_names(jobs)
    return jobs


def _manifest_text(manifest: Path, shown: Any) -> str:
    """The manifest as text: a regular file (a named pipe would wait forever) of UTF-8 without NUL bytes."""
    require_regular_file(manifest, "The manifest")
    try:
        data = manifest.read_bytes()
    except OSError as exc:
        raise InputError(f"Cannot read the manifest {shown}: {exc.strerror or exc}.") from None
    data = data[3:] if data.startswith(b"\xef\xbb\xbf") else data  # a byte-order mark
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"The manifest {shown}, line {line}, is not UTF-8 text (byte {data[exc.start]:#04x}); save it as UTF-8."
        ) from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise InputError(f"The manifest {shown}, line {line}, holds a NUL byte; it is not a CSV text file.")
    return text


def _columns(fieldnames: list[str], path: Any) -> dict[str, str | None]:
    """Column name -> field; refuses a missing ``path`` column and two columns naming one field."""
    columns = {name: _ALIASES.get((name or "").strip().lower()) for name in fieldnames}
    if "path" not in columns.values():
        raise InputError(f"The manifest {path} needs a header row with a 'path' column.")
    fields = [field for field in columns.values() if field]
    if len(fields) != len(set(fields)) or len(columns) != len(fieldnames):
        raise InputError(
            f"The manifest {path}, line 1, names one field in two columns ({', '.join(map(str, fieldnames))})."
        )
    return columns


def _rows_to_jobs(reader: csv.DictReader, columns: dict, base: Path, path: Any) -> list[BatchJob]:
    """The rows' jobs in row order; names the manifest gives are kept, default names that clash get a hash."""
    named, unnamed = [], []
    for row in reader:
        number = reader.line_num
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
    for field, value in values.items():
        if _CONTROL.search(value):
            raise ParameterError(f"{where}: {field} holds a control character ({value!r}).")
    try:
        source = (base / values["path"]).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise InputError(f"{where}: the path {values['path']!r} cannot be used ({exc}).") from None
    options: dict = {}
    if values.get("series_uid"):
        options["series_uid"] = values["series_uid"]
    if values.get("thickness_mm"):
        options["thickness_mm"] = _thickness(values["thickness_mm"], where)
    if values.get("scan_mode", "auto").lower() != "auto":
        options["scan_mode"] = _scan_mode(values["scan_mode"], where)
    if values.get("output_name"):
        problem = name_problem(values["output_name"])
        if problem is not None:
            raise ParameterError(
                f"{where}: the output_name {values['output_name']!r} is unusable: {problem}."
            )
    name = values.get("output_name") or _default_name(source, options.get("series_uid"))
    return BatchJob.for_file(source, output_name=name, description=values["path"], **options)


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _thickness(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ParameterError(f"{where}: thickness_mm must be a positive number of millimetres, got {text!r}.")
    return value


def _scan_mode(text: str, where: str) -> str:
    if text.lower() not in SCAN_MODES:
        raise ParameterError(
            f"{where}: scan_mode must be {' or '.join(SCAN_MODES)} (or empty), got {text!r}."
        )
    return text.lower()


def _default_name(source: Path, series_uid: str | None) -> str:
    suffix = image_suffix(source.name)
    stem = source.name[: -len(suffix)] if suffix else source.name
    if series_uid:
        return f"{safe_name(stem, 'input')}/{safe_name(series_uid, 'series')}"
    return safe_name(stem, "input")
