"""The JSON-lines event protocol: building, encoding and robust parsing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sr4zct.run.events import (
    EVENT_VERSION,
    TERMINAL_EVENTS,
    encode_event,
    is_event,
    log_event,
    make_event,
    parse_line,
    progress_event,
)
from sr4zct.run.progress import Progress


def test_make_event_has_common_fields():
    event = make_event("finished", output_path="/x.nrrd")
    assert event["event"] == "finished"
    assert event["version"] == EVENT_VERSION
    assert isinstance(event["time"], float) and event["time"] > 1.6e9
    assert event["output_path"] == "/x.nrrd"
    assert "finished" in TERMINAL_EVENTS


def test_make_event_rejects_unknown_type():
    with pytest.raises(ValueError, match="unknown event type"):
        make_event("done")


def test_encode_is_one_line_of_strict_json():
    event = make_event(
        "progress",
        loss=float("nan"),
        eta_s=math.inf,
        shape=(2, 3),
        step=np.int64(4),
        fraction=np.float32(0.5),
        message="two\nlines",
    )
    line = encode_event(event)
    assert "\n" not in line
    decoded = json.loads(line)  # strict: json.loads would accept NaN, so check the values too
    assert "NaN" not in line and "Infinity" not in line
    assert decoded["loss"] is None and decoded["eta_s"] is None
    assert decoded["shape"] == [2, 3]
    assert decoded["step"] == 4 and decoded["fraction"] == 0.5
    assert decoded["message"] == "two\nlines"


def test_parse_line_round_trip():
    event = make_event("started", device="cpu", planned_steps=10)
    parsed = parse_line(encode_event(event) + "\n")
    assert parsed == json.loads(encode_event(event))
    assert is_event(parsed)


@pytest.mark.parametrize(
    "line",
    [
        "Some library says hello",
        "{not json at all",
        '{"a": 1}',  # JSON, but not an event
        '{"event": "started"}',  # no version
        "[1, 2, 3]",
    ],
)
def test_parse_line_turns_anything_else_into_log_text(line):
    parsed = parse_line(line + "\n")
    assert parsed["event"] == "log"
    assert parsed["level"] == "info"
    assert parsed["message"] == line
    assert parsed["source"] == "stdout"


def test_parse_line_stderr_is_always_text():
    line = encode_event(make_event("finished"))
    parsed = parse_line(line, stream="stderr")
    assert parsed["event"] == "log" and parsed["source"] == "stderr" and parsed["message"] == line


def test_parse_line_blank_is_none():
    assert parse_line("\n") is None
    assert parse_line("   \r\n") is None


def test_log_event_levels():
    assert log_event("x", "WARNING")["level"] == "warning"
    assert log_event("x", "CRITICAL")["level"] == "error"
    assert log_event("x", "chatty")["level"] == "info"


def test_progress_event_fields():
    record = Progress(stage="train", step=3, total=10, fraction=0.3, elapsed_s=1.5, eta_s=3.5, loss=0.1)
    event = progress_event(record)
    assert event["event"] == "progress"
    for key in ("stage", "step", "total", "fraction", "elapsed_s", "eta_s", "loss", "message"):
        assert event[key] == getattr(record, key)
