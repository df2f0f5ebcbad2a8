r"""The batch ledger ``OUTDIR/batch.jsonl``: what was tried, when, how, and how it ended.

One JSON object per line. Every attempt of a job is recorded when it starts (``status`` ``running``) and
again when it ends (``done``, ``failed`` or ``cancelled``); the last record of an attempt is its state, so
an attempt whose last record is ``running`` was cut short (the batch was killed, the machine rebooted) and
is redone by the next run. Records are appended whole with one ``write`` under an exclusive lock
(several shards may share the folder, :func:`sr4zct.batch.lock.locked`) and flushed to disk.

No character can split or corrupt a record: records are written as ASCII JSON (``ensure_ascii``: line
breaks, U+2028, control characters and bytes of file names that are not UTF-8 are ``\u`` escapes), so the
only line break is the one that ends a record, and lines are split at ``\n`` alone. Reading is strict
(:meth:`Ledger.records`): every line must be one JSON object (no NaN, no repeated key) with the fields'
types (:data:`FIELD_TYPES`); a damaged or hand-edited record raises :class:`~sr4zct.errors.OutputError`
naming its line. A line cut short by a crash (it starts a record, ``{``, but does not end one) is skipped
with a note in
:attr:`Ledger.notes`, and the next record starts on a new line.

Fields (``docs/batch.md`` has the table): ``ledger_version``, ``job_id``, ``attempt``, ``status``,
``time``, ``input``, ``series_uid``, ``output``, ``fingerprint``, ``options``, ``protocol``,
``model_role``, ``model_path``, ``engine``, ``host``, ``pid``, and once ended ``elapsed_s``, ``timings_s``,
``device``, ``training_steps``, ``validation_gain_db``, ``warnings``, ``error_code``, ``error_message``,
``exit_code``.

``summary.csv`` neutralises spreadsheet formulas: a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return (and is not a plain number) gets a leading ``'``, so that DICOM text or a file name
never runs as a formula.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from sr4zct.batch.lock import locked
from sr4zct.errors import OutputError

__all__ = [
    "LEDGER_NAME", "LEDGER_VERSION", "SUMMARY_NAME", "Ledger", "format_table", "summary_rows", "write_summary",
]  # fmt: skip

LEDGER_NAME = "batch.jsonl"
SUMMARY_NAME = "summary.csv"
LEDGER_VERSION = 1
STATUSES = ("running", "done", "failed", "cancelled")

SUMMARY_COLUMNS = (
    "job_id", "status", "attempt", "description", "input", "series_uid", "output", "protocol", "model_role",
    "device", "training_steps", "validation_gain_db", "elapsed_s", "error_code", "error_message",
)  # fmt: skip


class Ledger:
    """Append-only record of a batch's attempts in ``outdir/batch.jsonl``.

    Parameters
    ----------
    outdir : path-like
        The batch's output folder (created when missing).
    """

    def __init__(self, outdir: str | os.PathLike):
        self.outdir = Path(outdir).expanduser().resolve()
        self.path = self.outdir / LEDGER_NAME
        #: notes about lines skipped when reading (cut short by a crash), with their line numbers
        self.notes: list[str] = []

    # -- writing ----------------------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> None:
        """Append one record (a JSON object) as one line and flush it to disk."""
        data = json.dumps(_strict(record), ensure_ascii=True, allow_nan=False, sort_keys=False)
        line = (data + "\n").encode("ascii")  # ASCII JSON holds no line break of its own
        fd = self._open_for_append()
        try:
            with locked(fd):
                if _ends_without_newline(self.path):
                    line = b"\n" + line  # a line cut short by a crash stays alone on its line
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
        except OSError as exc:
            raise OutputError(f"Cannot write the ledger {self.path}: {exc.strerror or exc}.") from exc
        finally:
            os.close(fd)

    def _open_for_append(self) -> int:
        """The ledger opened for appending; never through a link, never anything but a regular file."""
        if self.path.is_symlink():
            raise OutputError(
                f"The ledger {self.path} is a symbolic link; SR4ZCT never writes through a link."
            )
        try:
            self.outdir.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | _NONBLOCK
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise OutputError(f"Cannot write the ledger {self.path}: {exc.strerror or exc}.") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OutputError(f"The ledger {self.path} is not a regular file (a pipe or device); remove it.")
        return fd

    # -- reading ----------------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Every record, in file order, read strictly (see the module docstring).

        Raises
        ------
        OutputError
            The ledger cannot be read, is a link or not a regular file, or a line is damaged (named by its
            number).
        """
        data = self._read()
        out = []
        self.notes = []
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            if raw.lstrip().startswith(b"{") and not raw.rstrip().endswith(b"}"):  # cut short by a crash
                self.notes.append(
                    f"{self.path} line {number} was cut short (a crash while writing); skipped."
                )
                continue
            record, problem = parse_record(raw)
            if problem is not None:
                raise OutputError(
                    f"The ledger {self.path} line {number} is damaged: {problem}. Fix or delete that line (its "
                    "job is then run again), or use another output folder."
                )
            out.append(record)
        return out

    def _read(self) -> bytes:
        if self.path.is_symlink():
            raise OutputError(
                f"The ledger {self.path} is a symbolic link; SR4ZCT never reads through a link."
            )
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise OutputError(f"Cannot read the ledger {self.path}: {exc.strerror or exc}.") from exc
        if not stat.S_ISREG(mode):
            raise OutputError(f"The ledger {self.path} is not a regular file (a pipe, device or folder).")
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise OutputError(f"Cannot read the ledger {self.path}: {exc.strerror or exc}.") from exc

    def attempts(self) -> dict[str, list[dict[str, Any]]]:
        """``job_id`` -> the last record of each of its attempts, oldest attempt first."""
        last: dict[tuple[str, int], dict[str, Any]] = {}
        for record in self.records():
            last[(record["job_id"], int(record["attempt"]))] = record
        out: dict[str, list[dict[str, Any]]] = {}
        for (job_id, _), record in sorted(last.items(), key=lambda item: item[0]):
            out.setdefault(job_id, []).append(record)
        return out

    def latest(self) -> dict[str, dict[str, Any]]:
        """``job_id`` -> the state of its latest attempt (its last record)."""
        return {job_id: records[-1] for job_id, records in self.attempts().items()}


_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a pipe for writing must not wait for a reader


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) < len(keys):
        repeated = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"the field {repeated!r} appears twice")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def parse_record(raw: bytes | str) -> tuple[dict[str, Any] | None, str | None]:
    """One ledger line as a record, or None and why it is not one (strict JSON, then :data:`FIELD_TYPES`)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        record = json.loads(
            text, object_pairs_hook=_no_repeated_keys, parse_constant=_no_constant, parse_float=_finite
        )
    except UnicodeDecodeError:
        return None, "it is not UTF-8 text"
    except RecursionError:
        return None, "it is nested too deeply"
    except ValueError as exc:
        return None, f"it is not one JSON object ({' '.join(str(exc).split())[:120]})"
    if not isinstance(record, dict):
        return None, f"it is a JSON {type(record).__name__}, not an object"
    problem = check_record(record)
    return (None, problem) if problem is not None else (record, None)


def _is_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_whole(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


#: The type of every field a run reads back: text, whole number, number, object or list (None allowed).
FIELD_TYPES: dict[str, tuple[str, Any]] = {
    **{name: ("text or null", _is_text) for name in (
        "input", "series_uid", "description", "output", "fingerprint", "protocol", "model_role", "model_path",
        "engine", "host", "device", "error_code", "error_message", "error_detail",
    )},
    **{name: ("a whole number or null", _is_whole) for name in ("pid", "exit_code", "training_steps")},
    **{name: ("a number or null", _is_number) for name in ("time", "elapsed_s", "validation_gain_db")},
    **{name: ("an object or null", lambda v: v is None or isinstance(v, dict))
       for name in ("options", "timings_s", "parameters", "content")},
    **{name: ("a list or null", lambda v: v is None or isinstance(v, list)) for name in ("warnings", "output_shape")},
}  # fmt: skip


def check_record(record: dict[str, Any]) -> str | None:
    """Why ``record`` is not a valid ledger record (None when it is)."""
    version = record.get("ledger_version", LEDGER_VERSION)
    if version != LEDGER_VERSION or isinstance(version, bool):
        return f"ledger_version is {version!r}; this SR4ZCT reads version {LEDGER_VERSION}"
    job_id, attempt, status = record.get("job_id"), record.get("attempt"), record.get("status")
    if not isinstance(job_id, str) or not job_id:
        return f"job_id must be non-empty text, got {job_id!r}"
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        return f"attempt must be a whole number of at least 1, got {attempt!r}"
    if status not in STATUSES:
        return f"status must be one of {', '.join(STATUSES)}, got {status!r}"
    for name, (words, fits) in FIELD_TYPES.items():
        if not fits(record.get(name)):
            return f"{name} must be {words}, got {record.get(name)!r}"[:300]
    return _check_protocol_values(record)


def _check_protocol_values(record: dict[str, Any]) -> str | None:
    values = record.get("protocol_values")
    if values is None:
        return None
    numbers = values[:4] if isinstance(values, list) and len(values) == 5 else []
    if not (
        len(numbers) == 4
        and all(_is_number(v) and v is not None and math.isfinite(v) and v > 0 for v in numbers)
        and isinstance(values[4], str)
        and isinstance(record.get("model_path"), str)
    ):
        return (
            "protocol_values must be [thickness, spacing, pixel row, pixel column, profile] (positive numbers and "
            f"a text) with a model_path, got {values!r}"
        )[:300]
    return None


def _ends_without_newline(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


def _strict(value: Any) -> Any:
    """JSON-ready: NaN and infinity become None, paths and other objects text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def summary_rows(jobs_in_order: list[Any], latest: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """One row per job (its latest attempt), for ``summary.csv`` and the printed table.

    ``jobs_in_order`` are :class:`~sr4zct.batch.jobs.BatchJob` objects; a job never tried shows ``pending``.
    """
    rows = []
    for job in jobs_in_order:
        record = latest.get(job.job_id, {})
        row = {column: _cell(record.get(column)) for column in SUMMARY_COLUMNS}
        row.update(job_id=job.job_id, description=job.description, input=job.input_path)
        row["series_uid"] = row["series_uid"] or (job.series_uid or "")
        row["status"] = record.get("status", "pending")
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return " ".join(str(value).split())


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: Any) -> str:
    """A CSV cell no spreadsheet runs as a formula: text starting with ``= + - @``, a tab or a carriage
    return gets a leading ``'`` (plain numbers such as ``-1.25`` stay numbers); characters that cannot be
    written as UTF-8 (bytes of a file name in another encoding) are escaped."""
    text = "" if value is None else str(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if text.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_summary(path: str | os.PathLike, rows: list[dict[str, str]]) -> Path:
    """Write ``rows`` as CSV atomically, replacing the previous summary.

    The summary carries no SR4ZCT marker that :mod:`sr4zct.io.ownership` would recognise, so it is replaced
    here directly: it lies in a batch's output folder (beside the ledger, see :class:`~sr4zct.batch.Batch`),
    which only the batch writes into.
    """
    from sr4zct.io.atomic import temporary_name

    target = Path(path)
    if target.is_symlink():
        raise OutputError(f"The summary {target} is a symbolic link; SR4ZCT never writes through a link.")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: safe_cell(row.get(key)) for key in SUMMARY_COLUMNS} for row in rows)
    tmp = temporary_name(target)
    try:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"Cannot write the summary {target}: {exc.strerror or exc}.") from exc
    return target


def format_table(rows: list[dict[str, str]], note_width: int = 70) -> str:
    """The summary as a plain-text table: status, time, model role, steps, gain, series, and the error
    message (or the output) cut to ``note_width`` characters (summary.csv has them whole)."""
    header = ("status", "time", "model", "steps", "gain dB", "series", "note")
    lines = []
    for row in rows:
        seconds = row["elapsed_s"]
        note = row["error_message"] or row["output"]
        lines.append(
            (
                row["status"], f"{float(seconds):.0f} s" if seconds else "", row["model_role"],
                row["training_steps"], row["validation_gain_db"], row["description"] or row["job_id"], note,
            )
        )  # fmt: skip
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]
    widths[-2], widths[-1] = min(widths[-2], 40), min(widths[-1], note_width)
    out = []
    for cells in [header, *lines]:
        text = "  ".join(
            (c if len(c) <= widths[i] else c[: widths[i] - 1] + "~").ljust(widths[i])
            for i, c in enumerate(cells)
        )
        out.append(text.rstrip())
    return "\n".join(out)
