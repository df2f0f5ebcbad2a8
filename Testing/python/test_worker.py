"""Real worker processes (``python -m sr4zct.worker``) driven by :class:`BackgroundJob`.

These use the built-in ``selftest`` task so that protocol, cancel and crash behaviour never depend on
the training pipeline; ``test_worker_pipeline.py`` runs the real enhancement.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from sr4zct.errors import Cancelled, InputError, ParameterError, SR4ZCTError
from sr4zct.run.events import EVENT_TYPES, TERMINAL_EVENTS
from sr4zct.run.jobs import BackgroundJob, JobSpec, enhance_in_background, lock_path_for, run_blocking

WAIT_S = 60  # generous: the CI machine is shared; a hang still fails the test


def selftest(tmp_path: Path, name: str = "out.json", **options) -> JobSpec:
    return JobSpec(output_path=str(tmp_path / name), task="selftest", device="cpu", task_options=options)


def drain(job: BackgroundJob) -> list[dict]:
    job.wait(WAIT_S)
    return job.poll()


def assert_well_formed(events: list[dict]) -> None:
    assert events, "no events"
    for event in events:
        assert event["event"] in EVENT_TYPES and event["version"] == 1 and isinstance(event["time"], float)
    terminal = [e for e in events if e["event"] in TERMINAL_EVENTS]
    assert len(terminal) == 1 and events[-1] is terminal[0]
    times = [e["time"] for e in events if e["event"] != "log"]  # text lines get the client's clock
    assert times == sorted(times)


def assert_gone(pids: list[int]) -> None:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=5)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left running: {alive}"


def test_events_in_order_and_result(tmp_path):
    job = BackgroundJob(selftest(tmp_path, steps=8, value="A")).start()
    events = drain(job)
    assert_well_formed(events)
    assert events[0]["event"] == "started"
    started = events[0]
    assert started["device"] == "cpu" and started["planned_steps"] == 8 and started["pid"] == job.pid
    assert started["torch_version"]
    progress = [e for e in events if e["event"] == "progress"]
    fractions = [e["fraction"] for e in progress]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] == pytest.approx(1.0)
    assert {e["stage"] for e in progress} >= {"prepare", "train", "write"}
    assert all(e["elapsed_s"] >= 0 for e in progress)

    assert job.state == "finished" and job.returncode == 0
    assert job.result is events[-1] and job.error is None
    assert job.progress == progress[-1]
    out = tmp_path / "out.json"
    assert job.output_path == str(out.resolve())
    assert json.loads(out.read_text())["value"] == "A"
    assert not job.temp_dir.exists()
    assert not lock_path_for(out).exists()
    assert job.poll() == []  # drained


def test_relative_paths_mean_the_callers_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = BackgroundJob(JobSpec(output_path="rel.json", task="selftest", device="cpu")).start()
    assert job.wait(WAIT_S)["event"] == "finished"
    assert (tmp_path / "rel.json").is_file()
    assert job.output_path == str((tmp_path / "rel.json").resolve())


def test_garbage_on_stdout_becomes_log_events(tmp_path):
    job = BackgroundJob(selftest(tmp_path, steps=3, garbage=True)).start()
    events = drain(job)
    assert_well_formed(events)
    assert job.state == "finished"
    logs = [e["message"] for e in events if e["event"] == "log"]
    assert "garbage on the event stream {not json" in logs  # on the real stdout itself
    assert "garbage from print()" in logs  # print() inside the worker (redirected to stderr)
    assert "garbage written to file descriptor 1" in logs  # a C library writing to fd 1
    assert "a logged warning" in logs  # logging
    assert any(m.startswith("UserWarning: a Python warning") for m in logs)  # warnings


def test_cancel_during_training(tmp_path):
    job = BackgroundJob(selftest(tmp_path, steps=2000, step_s=0.01, child_sleep_s=120)).start()
    deadline = time.monotonic() + WAIT_S
    while (job.progress is None or job.progress["stage"] != "train") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.progress["stage"] == "train"
    pids = [job.pid] + [c.pid for c in psutil.Process(job.pid).children(recursive=True)]
    assert len(pids) == 2  # the worker and its child

    t0 = time.monotonic()
    job.cancel(timeout_s=5)
    assert job.state == "cancelling"
    terminal = job.wait(WAIT_S)
    assert time.monotonic() - t0 < 5
    assert terminal["event"] == "cancelled" and not terminal.get("forced")
    assert job.state == "cancelled" and job.returncode == 130
    assert_well_formed(job.poll())
    assert not (tmp_path / "out.json").exists()
    assert not list(tmp_path.iterdir())  # no partial or lock files either
    assert not job.temp_dir.exists()
    assert_gone(pids)


def _start_raw_worker(tmp_path: Path, spec: JobSpec) -> subprocess.Popen:
    spec.temp_dir = str(tmp_path / "temp")
    job_file = spec.save(tmp_path / "job.json")
    return subprocess.Popen([sys.executable, "-m", "sr4zct.run.worker", str(job_file)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip


def test_sigterm_alone_cancels(tmp_path):
    proc = _start_raw_worker(tmp_path, selftest(tmp_path, steps=2000, step_s=0.01))
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "progress" and events[-1]["stage"] == "train":
            proc.send_signal(signal.SIGTERM)
            break
    events += [json.loads(line) for line in proc.stdout]
    assert proc.wait(WAIT_S) == 130
    assert events[-1]["event"] == "cancelled"
    assert_well_formed(events)
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "temp").exists()


def test_worker_stops_when_its_reader_goes_away(tmp_path):
    proc = _start_raw_worker(tmp_path, selftest(tmp_path, steps=2000, step_s=0.01))
    assert json.loads(proc.stdout.readline())["event"] == "started"
    proc.stdout.close()  # the client crashed: the next event cannot be written
    assert proc.wait(WAIT_S) == 130
    assert not (tmp_path / "out.json").exists()


def test_cancel_kills_a_worker_that_does_not_listen(tmp_path):
    job = BackgroundJob(selftest(tmp_path, steps=2000, step_s=0.01, child_sleep_s=120, ignore_cancel=True))
    job.start()
    deadline = time.monotonic() + WAIT_S
    while job.progress is None and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [job.pid] + [c.pid for c in psutil.Process(job.pid).children(recursive=True)]
    t0 = time.monotonic()
    job.cancel(timeout_s=1)
    terminal = job.wait(WAIT_S)
    assert time.monotonic() - t0 < 5
    assert terminal["event"] == "cancelled" and terminal["forced"]
    assert job.state == "cancelled" and job.returncode == -signal.SIGKILL
    assert any("killing it" in line for line in job.last_log_lines)
    assert_gone(pids)
    assert not lock_path_for(tmp_path / "out.json").exists()  # the client removes a killed worker's lock
    assert not job.temp_dir.exists()


@pytest.mark.parametrize(("crash", "signum"), [("sigkill", signal.SIGKILL), ("segfault", signal.SIGSEGV)])
def test_worker_that_dies_reports_failed(tmp_path, crash, signum):
    job = BackgroundJob(selftest(tmp_path, steps=6, crash=crash)).start()
    events = drain(job)
    assert_well_formed(events)
    failed = events[-1]
    assert job.state == "failed" and failed["event"] == "failed"
    assert failed["code"] == "crashed" and failed["exit_code"] == -signum
    assert signal.Signals(signum).name in failed["message"]
    assert "started child process" not in failed["message"]
    if crash == "segfault":  # faulthandler's report on stderr reaches the last log lines
        assert any("Fatal Python error" in line for line in failed["last_log_lines"])
    assert job.error is failed and job.result is None
    assert not lock_path_for(tmp_path / "out.json").exists()


def test_crash_with_a_surviving_child_does_not_hang(tmp_path):
    job = BackgroundJob(selftest(tmp_path, steps=6, crash="sigkill", child_sleep_s=120)).start()
    t0 = time.monotonic()
    failed = job.wait(WAIT_S)
    assert time.monotonic() - t0 < 15  # the orphan holds the pipes; the client ends it
    assert failed["code"] == "crashed" and failed["exit_code"] == -signal.SIGKILL
    child = [line for line in failed["last_log_lines"] if line.startswith("started child process")]
    assert child
    assert_gone([int(child[0].split()[-1])])


def test_missing_input_fails_clearly(tmp_path):
    missing = tmp_path / "nope.nrrd"
    spec = JobSpec(input_path=str(missing), output_path=str(tmp_path / "o.nrrd"), device="cpu")
    job = BackgroundJob(spec).start()
    events = drain(job)
    assert_well_formed(events)
    assert [e["event"] for e in events if e["event"] != "log"] == ["failed"]  # never started
    failed = events[-1]
    assert failed["code"] == "input" and str(missing) in failed["message"]
    assert job.returncode == InputError.exit_code
    with pytest.raises(InputError, match="does not exist"):
        run_blocking(spec)


def test_bad_device_fails_clearly(tmp_path):
    with pytest.raises(ParameterError, match="device"):
        BackgroundJob(JobSpec(output_path=str(tmp_path / "o"), task="selftest", device="gpu"))
    # A hand-written job file is checked by the worker itself.
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"format": 1, "output_path": str(tmp_path / "o"), "device": "gpu",
                                    "task": "selftest"}))  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "sr4zct.run.worker", str(job_file)], capture_output=True,
                          text=True, timeout=WAIT_S)  # fmt: skip
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in lines] == ["failed"]
    assert lines[0]["code"] == "parameter" and "device" in lines[0]["message"]
    assert proc.returncode == ParameterError.exit_code


def test_unavailable_cuda_fails_with_resource_error(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    spec = JobSpec(output_path=str(tmp_path / "o.json"), task="selftest", device="cuda")
    job = BackgroundJob(spec).start()
    failed = job.wait(WAIT_S)
    assert failed["event"] == "failed" and failed["code"] == "resource"
    assert "CUDA" in failed["message"] and "cpu" in failed["message"]
    assert not (tmp_path / "o.json").exists()


def test_two_jobs_at_once_do_not_interfere(tmp_path):
    a = BackgroundJob(selftest(tmp_path, "a.json", steps=20, value="A")).start()
    b = BackgroundJob(selftest(tmp_path, "b.json", steps=20, value="B")).start()
    assert a.temp_dir != b.temp_dir
    ta, tb = a.wait(WAIT_S), b.wait(WAIT_S)
    assert ta["event"] == tb["event"] == "finished"
    assert json.loads((tmp_path / "a.json").read_text())["value"] == "A"
    assert json.loads((tmp_path / "b.json").read_text())["value"] == "B"
    assert a.started["pid"] != b.started["pid"]


def test_two_jobs_on_the_same_output_are_refused(tmp_path):
    first = BackgroundJob(selftest(tmp_path, steps=200, step_s=0.01, value="first")).start()
    deadline = time.monotonic() + WAIT_S
    while first.started is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = BackgroundJob(selftest(tmp_path, steps=2, value="second")).start()
    failed = second.wait(WAIT_S)
    assert failed["event"] == "failed" and failed["code"] == "output"
    assert "Another job is already writing" in failed["message"]
    assert first.wait(WAIT_S)["event"] == "finished"
    assert json.loads((tmp_path / "out.json").read_text())["value"] == "first"


def test_run_blocking_progress_and_env_overlay(tmp_path):
    seen = []
    finished = run_blocking(selftest(tmp_path, steps=5, echo_env="SR4ZCT_TEST_FLAG"),
                            progress_callback=seen.append, env={"SR4ZCT_TEST_FLAG": "on"})  # fmt: skip
    assert finished["event"] == "finished" and finished["parameters"]["env"] == "on"
    assert seen and all(e["event"] == "progress" for e in seen)
    assert [e["fraction"] for e in seen] == sorted(e["fraction"] for e in seen)


@pytest.mark.parametrize(("code", "exc_type"), [("parameter", ParameterError), ("internal", SR4ZCTError)])
def test_run_blocking_raises_the_failure(tmp_path, code, exc_type):
    with pytest.raises(exc_type) as info:
        run_blocking(selftest(tmp_path, steps=4, fail=code))
    assert info.value.code == code
    assert not (tmp_path / "out.json").exists()


def test_run_blocking_cancelled(tmp_path):
    spec = selftest(tmp_path, steps=2000, step_s=0.01)

    def cancel_on_first_progress(event):
        (Path(job_dir["temp"]) / "cancel").write_text("")

    # Cancel through the cancel file (the route that also works on Windows).
    job_dir = {}
    spec.temp_dir = str(tmp_path / "job-temp")
    job_dir["temp"] = spec.temp_dir
    with pytest.raises(Cancelled):
        run_blocking(spec, progress_callback=cancel_on_first_progress)
    assert not (tmp_path / "out.json").exists()
    assert not (tmp_path / "job-temp").exists()


def test_enhance_in_background_reads_the_input(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    image = sitk.GetImageFromArray(np.zeros((5, 8, 9), np.float32))
    image.SetSpacing((0.5, 0.5, 2.0))
    sitk.WriteImage(image, str(tmp_path / "in.nrrd"))
    job = enhance_in_background(tmp_path / "in.nrrd", tmp_path / "out.json", task="selftest", device="cpu",
                                task_options={"steps": 3})  # fmt: skip
    assert job.state in ("starting", "running", "finished")
    events = list(job.iter_events(timeout=WAIT_S))
    assert events[-1]["event"] == "finished"
    started = next(e for e in events if e["event"] == "started")
    assert started["input_shape"] == [5, 8, 9] and started["input_spacing_mm"] == [2.0, 0.5, 0.5]
    assert job.wait(WAIT_S) is events[-1] and job.state == "finished"


def test_slice_axis_reaches_the_worker_through_the_job_file(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    image = sitk.GetImageFromArray(np.zeros((5, 8, 9), np.float32))
    image.SetSpacing((0.6, 0.6, 0.5))  # slices finer than the pixels: the guess would take an in-plane axis
    sitk.WriteImage(image, str(tmp_path / "in.nrrd"))
    shapes = []
    for axis in (None, 0):
        job = enhance_in_background(tmp_path / "in.nrrd", tmp_path / "out.json", task="selftest", device="cpu",
                                    slice_axis=axis, overwrite=True, task_options={"steps": 1})  # fmt: skip
        events = list(job.iter_events(timeout=WAIT_S))
        assert events[-1]["event"] == "finished", events[-1]
        started = next(e for e in events if e["event"] == "started")
        shapes.append((started["input_shape"], started["input_spacing_mm"]))
    assert shapes[1] == ([5, 8, 9], [0.5, 0.6, 0.6])
    assert shapes[0][0] != [5, 8, 9]


def test_existing_output_is_refused_before_starting(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 6, 6), np.float32)), str(tmp_path / "in.nrrd"))
    (tmp_path / "out.nrrd").write_text("keep me")
    job = enhance_in_background(tmp_path / "in.nrrd", tmp_path / "out.nrrd", device="cpu")
    failed = job.wait(WAIT_S)
    assert failed["event"] == "failed" and failed["code"] == "output" and "exists" in failed["message"]
    assert job.started is None
    assert (tmp_path / "out.nrrd").read_text() == "keep me"


def test_missing_python_executable(tmp_path):
    job = BackgroundJob(selftest(tmp_path), python_executable=str(tmp_path / "no-python"))
    with pytest.raises(SR4ZCTError, match="Cannot start the background worker"):
        job.start()
    assert job.state == "failed"


def test_worker_usage_error():
    proc = subprocess.run([sys.executable, "-m", "sr4zct.run.worker"], capture_output=True, text=True,
                          timeout=WAIT_S, env={**os.environ})  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["failed"] and "Usage" in events[0]["message"]
    assert proc.returncode == ParameterError.exit_code
