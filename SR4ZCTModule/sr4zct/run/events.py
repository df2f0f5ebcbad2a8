"""The background job event protocol: one JSON object per line (see ``docs/events.md``).

The worker (:mod:`sr4zct.run.worker`) writes events with :func:`encode_event`; clients read them with
:func:`parse_line`, which never fails: a line that is not an event (a library printing on stdout) comes
back as a ``log`` event carrying the text, so stray output can never break a client.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from sr4zct.run.progress import Progress

EVENT_VERSION = 1

EVENT_TYPES = ("started", "progress", "log", "finished", "cancelled", "failed")
TERMINAL_EVENTS = ("finished", "cancelled", "failed")
LOG_LEVELS = ("debug", "info", "warning", "error")

# Worker exit codes. A failed job exits with the error's ``SR4ZCTError.exit_code`` (2-7, see errors.py)
# or EXIT_INTERNAL for an unexpected exception.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CANCELLED = 130

# Error codes that do not come from an SR4ZCTError subclass.
CODE_INTERNAL = "internal"  # unexpected exception inside the worker (a bug)
CODE_CRASHED = "crashed"  # the worker process died without a terminal event (set by the client)


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
        try:
            return _clean(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):  # small NumPy arrays
        return _clean(value.tolist())
    return str(value)


def make_event(event: str, **fields: Any) -> dict:
    """Build an event dict with the common fields ``event``, ``version`` and ``time``.

    Parameters
    ----------
    event : one of :data:`EVENT_TYPES`.
    **fields : event-specific fields; values are converted to strict JSON types.

    Returns
    -------
    dict
        ``{"event": event, "version": 1, "time": <Unix time, s>, **fields}``.
    """
    if event not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event!r}; expected one of {', '.join(EVENT_TYPES)}")
    out = {"event": event, "version": EVENT_VERSION, "time": time.time()}
    out.update(_clean(fields))
    return out


def encode_event(event: dict) -> str:
    """One line of strict JSON (no NaN, no newline inside), without the trailing newline."""
    return json.dumps(_clean(event), allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def is_event(obj: Any) -> bool:
    """True if ``obj`` is a dict that looks like a protocol event."""
    return isinstance(obj, dict) and obj.get("event") in EVENT_TYPES and isinstance(obj.get("version"), int)


def log_event(message: str, level: str = "info", **fields: Any) -> dict:
    """A ``log`` event; unknown levels are reported as ``info``."""
    level = level.lower()
    if level == "critical":
        level = "error"
    if level not in LOG_LEVELS:
        level = "info"
    return make_event("log", level=level, message=str(message), **fields)


def progress_event(progress: Progress) -> dict:
    """The ``progress`` event for a :class:`~sr4zct.progress.Progress` record."""
    return make_event("progress", **progress.to_dict())


def parse_line(line: str, *, stream: str = "stdout") -> dict | None:
    """Turn one line read from the worker into an event.

    Parameters
    ----------
    line : a line of worker output (with or without its newline).
    stream : "stdout" or "stderr", recorded on log events made from plain text.

    Returns
    -------
    dict or None
        The decoded event; a ``log`` event (level ``info``, ``source`` = stream) for any text that is
        not an event; ``None`` for a blank line.
    """
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    if stream == "stdout" and text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if is_event(obj):
            return obj
    return log_event(text, "info", source=stream)
