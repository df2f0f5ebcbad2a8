"""The JSON-lines event protocol: building, encoding and robust parsing; the control channel."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from sr4zct.errors import GeometryError
from sr4zct.run.events import (
    EVENT_VERSION,
    TERMINAL_EVENTS,
    EventWriter,
    encode_event,
    failed_event,
    log_event,
    make_event,
    parse_line,
)
from sr4zct.system.progress import Progress


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


def test_progress_events_are_rate_limited_but_stage_ends_pass():
    buffer = io.StringIO()
    writer = EventWriter(buffer)
    for step in range(1, 101):
        writer.progress(Progress(stage="train", step=step, total=100, fraction=step / 200, elapsed_s=0.0))
    events = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert 2 <= len(events) < 10  # the first one, the stage end, and at most one per 0.2 s
    assert events[0]["step"] == 1 and events[-1]["step"] == 100
    record = Progress(stage="infer", step=0, total=5, fraction=0.6, elapsed_s=1.5, eta_s=3.5, loss=0.1)
    writer.progress(record)
    last = json.loads(buffer.getvalue().splitlines()[-1])
    for key in ("stage", "step", "total", "fraction", "elapsed_s", "eta_s", "loss", "message"):
        assert last[key] == getattr(record, key)


def test_a_broken_pipe_is_remembered_not_raised():
    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError

    writer = EventWriter(Closed())
    writer.emit(make_event("started"))
    assert writer.broken


def test_failed_event_for_user_errors_and_bugs():
    user = failed_event(GeometryError("Two\nlines of   text."))
    assert user["code"] == "geometry" and user["exit_code"] == 3 and user["message"] == "Two lines of text."
    bug = failed_event(ZeroDivisionError("division by zero"))
    assert bug["code"] == "internal" and bug["exit_code"] == 1 and "ZeroDivisionError" in bug["traceback"]


def test_take_stdout_keeps_the_stream_for_events_only():
    script = (
        "import logging, os, warnings\n"
        "from sr4zct.run.events import EventWriter, make_event\n"
        "w = EventWriter.take_stdout()\n"
        "print('print() goes to stderr')\n"
        "os.write(1, b'so does file descriptor 1\\n')\n"
        "logging.getLogger('x').warning('a logged warning')\n"
        "warnings.warn('a Python warning')\n"
        "w.emit(make_event('finished'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["log", "log", "finished"]
    assert events[0]["message"] == "a logged warning" and events[0]["level"] == "warning"
    assert events[1]["logger"] == "py.warnings" and "a Python warning" in events[1]["message"]
    assert "print() goes to stderr" in proc.stderr and "so does file descriptor 1" in proc.stderr


# --- the control channel (run/control.py) ---------------------------------------------------------------


def _wait(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _busy(seconds: float) -> None:
    """Python work for ``seconds`` (a signal handler runs between its bytecodes)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        sum(range(1000))


def test_commands_on_stdin_finish_then_interrupt_the_run_where_it_is():
    from sr4zct.run.control import Interrupted, RunControl

    read_end, write_end = os.pipe()
    control = RunControl("-", stdin_fd=read_end)
    with pytest.raises(Interrupted) as info, control.signals():
        os.write(write_end, b"fini")  # a command may arrive in pieces
        os.write(write_end, b"sh\n")
        _wait(control.should_finish)
        assert not control.should_stop()
        t0 = time.monotonic()  # before the command: the interrupt may come before the next line runs
        os.write(write_end, b"cancel\n")
        _busy(5.0)  # the run's own work: interrupted there, not at its next check
    assert time.monotonic() - t0 < 2.0
    assert info.value.reason == "cancel requested" and control.should_stop()
    os.close(write_end)
    os.close(read_end)


def test_the_end_of_stdin_means_the_client_is_gone():
    from sr4zct.run.control import CLIENT_GONE, Interrupted, RunControl

    read_end, write_end = os.pipe()
    control = RunControl("-", stdin_fd=read_end)
    with pytest.raises(Interrupted) as info, control.signals():
        os.close(write_end)  # the client died: its end of the pipe closes
        t0 = time.monotonic()
        _busy(5.0)
    assert time.monotonic() - t0 < 2.0
    assert info.value.reason == CLIENT_GONE
    os.close(read_end)


def test_a_command_after_the_run_has_ended_interrupts_nothing(tmp_path):
    from sr4zct.run.control import RunControl

    path = tmp_path / "control"
    control = RunControl(path)
    with control.signals():
        path.write_text("finish\n")
        _wait(control.should_finish)
    control.command("cancel")  # the block has ended: nothing is raised
    assert control.should_stop()


# --- the time left, one format for every client (system/progress.py) ---------------------------------------


def test_the_time_left_is_written_one_way_by_every_client():
    from sr4zct.cli.progress_bar import describe
    from sr4zct.system.progress import format_duration

    assert [format_duration(s) for s in (None, -1.0, math.inf, 12.4, 250, 3900)] == [
        "", "", "", "12 s", "4 min 10 s", "1 h 05 min"
    ]  # fmt: skip
    record = Progress(
        stage="train", step=120, total=3000, fraction=0.1, elapsed_s=30.0, eta_s=151, loss=0.0123
    )
    assert describe(record) == ("train 120/3000", "loss 0.0123, ETA 2 min 31 s")
    assert describe(Progress(stage="prepare", step=0, total=1, fraction=0.0, elapsed_s=0.0)) == (
        "prepare",
        "",
    )
