"""The batch ledger ``OUTDIR/batch.jsonl``: what was tried, when, how, and how it ended.

One JSON object per line. Every attempt of a job is recorded when it starts (``status`` ``running``) and
again when it ends (``done``, ``failed`` or ``cancelled``); the last record of an attempt is its state, so
an attempt whose last record is ``running`` was cut short (the batch was killed, the machine rebooted) and
is redone by the next run. Records are appended whole with one ``write`` under an exclusive lock
(several shards may share the folder) and flushed to disk; a line cut short by a crash is ignored when
reading and the next record starts on a new line.

Fields (``docs/batch.md`` has the table): ``ledger_version``, ``job_id``, ``attempt``, ``status``,
``time``, ``input``, ``series_uid``, ``output``, ``fingerprint``, ``options``, ``protocol``,
``model_role``, ``model_path``, ``engine``, ``host``, ``pid``, and once ended ``elapsed_s``, ``timings_s``,
``device``, ``training_steps``, ``validation_gain_db``, ``warnings``, ``error_code``, ``error_message``,
``exit_code``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

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

    # -- writing ----------------------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> None:
        """Append one record (a JSON object) as one line and flush it to disk."""
        data = json.dumps(_strict(record), ensure_ascii=False, allow_nan=False, sort_keys=False)
        line = (data.replace("\n", " ") + "\n").encode("utf-8")
        try:
            self.outdir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"Cannot write the ledger {self.path}: {exc.strerror or exc}.") from exc
        try:
            with _locked(fd):
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

    # -- reading ----------------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Every readable record, in file order (lines that are not a record are skipped)."""
        try:
            text = self.path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise OutputError(f"Cannot read the ledger {self.path}: {exc.strerror or exc}.") from exc
        out = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("job_id"), str) and "attempt" in record:
                out.append(record)
        return out

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


@contextlib.contextmanager
def _locked(fd: int):
    try:
        import fcntl
    except ImportError:  # Windows: one writer per ledger
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


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


def write_summary(path: str | os.PathLike, rows: list[dict[str, str]]) -> Path:
    """Write ``rows`` as CSV atomically, replacing the previous summary.

    The summary carries no SR4ZCT marker that :mod:`sr4zct.io.ownership` would recognise, so it is replaced
    here directly: it lies in a batch's output folder (beside the ledger, see :class:`~sr4zct.batch.Batch`),
    which only the batch writes into.
    """
    from sr4zct.io.atomic import temporary_name

    target = Path(path)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
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
