"""The event protocol of ``sr4zct enhance --events``: one JSON object per line on stdout (docs/events.md).

:class:`EventWriter` writes them (the command-line process); :func:`parse_line` reads them (the
:class:`~sr4zct.run.background.BackgroundJob` client) and never fails: a line that is not an event (a
library printing on stdout) comes back as a ``log`` event carrying the text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, TextIO

from sr4zct.errors import SR4ZCTError

__all__ = [
    "EVENT_VERSION",
    "EventWriter",
    "TERMINAL_EVENTS",
    "encode_event",
    "failed_event",
    "make_event",
    "parse_line",
]

EVENT_VERSION = 2

EVENT_TYPES = ("started", "progress", "preview", "log", "finished", "cancelled", "failed")
TERMINAL_EVENTS = ("finished", "cancelled", "failed")
LOG_LEVELS = ("debug", "info", "warning", "error")

# Error codes that do not come from an SR4ZCTError subclass.
CODE_INTERNAL = "internal"  # unexpected exception (a bug)
CODE_CRASHED = "crashed"  # the process died without a terminal event (set by the client)

# Progress events are rate-limited (stage changes and stage ends always pass): a GUI timer drains them.
MIN_PROGRESS_INTERVAL_S = 0.2


def _clean(value: Any) -> Any:
    """Make ``value`` strict-JSON safe: NaN/inf become None, tuples lists, paths strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if hasattr(value, "item") and callable(value.item):  # NumPy / torch scalars
        with contextlib.suppress(TypeError, ValueError):
            return _clean(value.item())
    if hasattr(value, "tolist") and callable(value.tolist):  # small NumPy arrays
        return _clean(value.tolist())
    return str(value)


def make_event(event: str, **fields: Any) -> dict:
    """An event dict: ``{"event": event, "version": 2, "time": <Unix time, s>, **fields}`` (strict JSON types)."""
    if event not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event!r}; expected one of {', '.join(EVENT_TYPES)}")
    out = {"event": event, "version": EVENT_VERSION, "time": time.time()}
    out.update(_clean(fields))
    return out


def encode_event(event: dict) -> str:
    """One line of strict ASCII JSON (no NaN, no newline inside), without the trailing newline: a path with
    bytes that are not UTF-8 (lone surrogates) or a line separator from DICOM text is an escape (``\\u...``), so
    the event can always be written (a write that failed broke the event stream)."""
    return json.dumps(_clean(event), allow_nan=False, ensure_ascii=True, separators=(",", ":"))


def log_event(message: str, level: str = "info", **fields: Any) -> dict:
    """A ``log`` event; unknown levels are reported as ``info``."""
    level = {"critical": "error", "warn": "warning"}.get(level.lower(), level.lower())
    return make_event("log", level=level if level in LOG_LEVELS else "info", message=str(message), **fields)


def failed_event(exc: BaseException) -> dict:
    """The ``failed`` event for an exception: its code and one-line message, and the traceback."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    if isinstance(exc, SR4ZCTError):
        return make_event("failed", message=" ".join(exc.message.split()), code=exc.code, detail=exc.detail,
                          traceback=tb, exit_code=exc.exit_code)  # fmt: skip
    first = " ".join(str(exc).split()) or type(exc).__name__
    message = f"Internal error ({type(exc).__name__}: {first}). Please report it with the log."
    return make_event("failed", message=message, code=CODE_INTERNAL, detail=tb, traceback=tb, exit_code=1)


def parse_line(line: str, *, stream: str = "stdout") -> dict | None:
    """Turn one line of the process's output into an event.

    Parameters
    ----------
    line : str
        A line with or without its newline.
    stream : str
        ``"stdout"`` or ``"stderr"``, recorded on log events made from plain text.

    Returns
    -------
    dict or None
        The decoded event; a ``log`` event (``source`` = stream) for any text that is not an event; None
        for a blank line.
    """
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    if stream == "stdout" and text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and obj.get("event") in EVENT_TYPES and isinstance(obj.get("version"), int):
            return obj
    return log_event(text, "info", source=stream)


class EventWriter:
    """Writes events on the process's real stdout, one JSON line each, flushed; thread-safe; never raises.

    :meth:`take_stdout` keeps file descriptor 1 for events and points it (and ``sys.stdout``) at stderr, so
    whatever a library prints cannot corrupt the stream. Python logging and warnings become ``log`` events.
    When the reader has gone away (a broken pipe), :attr:`broken` is set: the run treats it as a cancel.
    """

    def __init__(self, file: TextIO):
        self._file = file
        self._lock = threading.Lock()
        self.broken = False
        self._last_emit = 0.0
        self._last_stage: str | None = None

    @classmethod
    def take_stdout(cls) -> EventWriter:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        events_fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        writer = cls(os.fdopen(events_fd, "w", encoding="utf-8", buffering=1, newline="\n"))
        writer._capture_logging()
        return writer

    def emit(self, event: dict) -> None:
        with self._lock:
            if self.broken:
                return
            try:
                self._file.write(encode_event(event) + "\n")
                self._file.flush()
            except (OSError, ValueError):  # BrokenPipeError, closed file
                self.broken = True

    def progress(self, record: Any) -> None:
        """Progress callback for the pipeline: rate-limited ``progress`` events."""
        now = time.monotonic()
        stage_end = record.total > 0 and record.step >= record.total
        if (
            record.stage == self._last_stage
            and not stage_end
            and now - self._last_emit < MIN_PROGRESS_INTERVAL_S
        ):
            return
        self._last_stage, self._last_emit = record.stage, now
        self.emit(make_event("progress", **dataclasses.asdict(record)))

    def log(self, message: str, level: str = "info", **fields: Any) -> None:
        self.emit(log_event(message, level, **fields))

    def _capture_logging(self) -> None:
        writer = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    writer.log(record.getMessage(), record.levelname, logger=record.name)
                except Exception:  # a logging failure must never end the run
                    self.handleError(record)

        root = logging.getLogger()
        root.addHandler(Handler(logging.INFO))
        root.setLevel(min(root.level or logging.INFO, logging.INFO))

        def show_warning(message, category, filename, lineno, file=None, line=None):
            writer.log(f"{category.__name__}: {message} ({Path(filename).name}:{lineno})", "warning",
                       logger="py.warnings")  # fmt: skip

        warnings.showwarning = show_warning
