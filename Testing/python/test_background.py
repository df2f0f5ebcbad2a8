"""BackgroundJob: real background processes (``python -m sr4zct enhance ... --events``) and misbehaving
stand-in processes (``python -c``) that speak the same event protocol."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from sr4zct.errors import Cancelled, ParameterError
from sr4zct.run import background
from sr4zct.run.background import BackgroundJob, error_from_event
from sr4zct.run.events import TERMINAL_EVENTS
from sr4zct.system import pid_exists

WAIT_S = 180
LAUNCHER = Path(__file__).resolve().parents[1] / "slicer_replica" / "bin" / "PythonSlicer"
THICKNESS_MM, SPACING_MM, PIXEL_MM = 3.0, 2.0, 0.75


@pytest.fixture(scope="module")
def tiny_nrrd(tmp_path_factory) -> Path:
    """A 12 x 48 x 48 'CT' (int16 HU): a disc of water in air whose HU change along z, 3 mm every 2 mm."""
    z, y, x = np.mgrid[0:12, 0:48, 0:48]
    disc = ((y - 24) ** 2 + (x - 24) ** 2) < 18**2
    array = (-1000 + 1000 * disc + 200 * disc * np.sin(z / 2.0)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((PIXEL_MM, PIXEL_MM, SPACING_MM))
    path = tmp_path_factory.mktemp("tiny") / "tiny.nrrd"
    sitk.WriteImage(image, str(path))
    return path


def job_for(tiny: Path, out: Path, **changes) -> BackgroundJob:
    options = dict(thickness_mm=THICKNESS_MM, preset="fast", device="cpu", max_minutes=0.3)
    return BackgroundJob(tiny, out, **{**options, **changes})


def stand_in(script: str) -> BackgroundJob:
    """A job running ``python -c script`` (with ``emit(kind, **fields)`` and ``args`` = its arguments)."""
    prelude = textwrap.dedent(
        """
        import json, os, sys, time
        args = sys.argv[1:]
        def emit(kind, **fields):
            print(json.dumps({"event": kind, "version": 2, "time": time.time(), **fields}), flush=True)
        """
    )
    return BackgroundJob.from_command([sys.executable, "-c", prelude + textwrap.dedent(script)])


def wait_for(condition, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def drain(job: BackgroundJob) -> list[dict]:
    return list(job.iter_events(timeout=WAIT_S))


def assert_well_formed(events: list[dict]) -> None:
    kinds = [e["event"] for e in events]
    assert sum(k in TERMINAL_EVENTS for k in kinds) == 1 and kinds[-1] in TERMINAL_EVENTS, kinds


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def assert_gone(pids: list[int], timeout_s: float = 10) -> None:
    wait_for(lambda: not any(pid_exists(p) and not _zombie(p) for p in pids), timeout_s)


@pytest.fixture
def launcher(monkeypatch) -> Path:
    """The Slicer replica's stand-in for ``PythonSlicer`` (a CTKAppLauncher), starting this interpreter."""
    monkeypatch.setenv("SR4ZCT_REPLICA_PYTHON_REAL", sys.executable)
    return LAUNCHER


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


# --- the real process ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_run_reports_started_progress_and_one_result(tiny_nrrd, tmp_path):
    out = tmp_path / "out.nrrd"
    job = job_for(tiny_nrrd, out, uncertainty_path=tmp_path / "unc.nrrd", save_model_path=tmp_path / "m.pt")
    seen = []
    job.add_done_callback(lambda j: seen.append((j.state, threading_name())))
    events = drain(job.start())
    assert_well_formed(events)
    assert job.state == "finished" and job.returncode == 0, job.error
    assert seen == [("finished", threading_name())]  # in the thread that drained the events
    assert events[0]["event"] == "started" and events[0]["options"]["preset"] == "fast"
    progress = [e for e in events if e["event"] == "progress"]
    fractions = [e["fraction"] for e in progress]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert {e["stage"] for e in progress} >= {"prepare", "train", "infer", "write"}
    finished = job.result
    assert finished["output_path"] == str(out) and Path(finished["saved_model_path"]).is_file()
    image = sitk.ReadImage(str(out))
    n_out = int(np.floor(11 * SPACING_MM / PIXEL_MM + 1e-6)) + 1
    assert image.GetSize() == (48, 48, n_out) and finished["output_shape"] == [n_out, 48, 48]
    assert image.GetPixelID() == sitk.sitkInt16  # integer HU in, int16 HU out
    assert image.GetSpacing() == pytest.approx((PIXEL_MM, PIXEL_MM, PIXEL_MM))
    assert image.GetMetaData("preset") == "fast" and image.GetMetaData("seed") == "0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "out.nrrd", "unc.nrrd"]


def threading_name() -> str:
    import threading

    return threading.current_thread().name


@pytest.mark.slow
@pytest.mark.parametrize("how", ["cancel", "sigterm"])
def test_cancel_during_training_leaves_nothing(tiny_nrrd, tmp_path, how):
    out = tmp_path / "out.nrrd"
    job = job_for(tiny_nrrd, out, max_minutes=2.0, save_model_path=tmp_path / "m.pt").start()
    wait_for(lambda: job.progress is not None and job.progress["stage"] == "train")
    t0 = time.monotonic()
    if how == "cancel":
        job.cancel(grace_s=10)
        assert job.state == "cancelling"
    else:
        os.killpg(job.pid, signal.SIGTERM)  # what a scheduler or a logout sends
    terminal = job.wait(WAIT_S)
    assert time.monotonic() - t0 < 10
    assert terminal["event"] == "cancelled" and not terminal.get("forced")
    if how == "cancel":  # the command on stdin interrupts the run where it is, as SIGINT would
        assert job.returncode == 130 and "cancel requested" in terminal["message"]
    else:
        assert job.returncode == 128 + signal.SIGTERM and "SIGTERM" in terminal["message"]
    assert list(tmp_path.iterdir()) == []  # no output, no model, no temporaries beside them
    assert_gone([job.pid])


@pytest.mark.slow
def test_the_process_stops_when_its_reader_goes_away(tiny_nrrd, tmp_path):
    out = tmp_path / "out.nrrd"
    command = [sys.executable, "-m", "sr4zct", "enhance", str(tiny_nrrd), "-o", str(out), "--thickness", "3",
               "--preset", "fast", "--max-minutes", "2", "--device", "cpu", "--events"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if '"stage":"train"' in line:
            break
    proc.stdout.close()  # the client crashed: the next event cannot be written
    assert proc.wait(WAIT_S) == 130
    assert list(tmp_path.iterdir()) == []


def test_bad_options_are_refused_before_anything_starts(tiny_nrrd, tmp_path):
    with pytest.raises(ParameterError, match="device must be"):
        job_for(tiny_nrrd, tmp_path / "o.nrrd", device="gpu")
    with pytest.raises(ParameterError, match="Unknown option"):
        job_for(tiny_nrrd, tmp_path / "o.nrrd", colour="red")


@pytest.mark.parametrize("which", ["input", "output"])
@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_path_is_refused_not_taken_as_the_current_folder(tiny_nrrd, tmp_path, which, empty):
    paths = {"input": tiny_nrrd, "output": tmp_path / "o.nrrd", which: empty}
    with pytest.raises(ParameterError, match=f"{which}_path must name a file"):
        BackgroundJob(paths["input"], paths["output"], thickness_mm=THICKNESS_MM)
    with pytest.raises(ParameterError, match=f"{which}_path must be a file or folder path"):
        BackgroundJob(*[None if k == which else v for k, v in paths.items()], thickness_mm=THICKNESS_MM)


def test_options_may_be_a_dict_of_option_names(tiny_nrrd, tmp_path):
    from sr4zct.run.options import EnhanceOptions

    job = BackgroundJob(tiny_nrrd, tmp_path / "o.nrrd", {"thickness_mm": 3.0, "preset": "fast"}, seed=5)
    assert job.options == EnhanceOptions(thickness_mm=3.0, preset="fast", seed=5)
    assert "--preset=fast" in job._command and "--seed=5" in job._command
    with pytest.raises(ParameterError, match="Unknown option"):
        BackgroundJob(tiny_nrrd, tmp_path / "o.nrrd", {"thickness": 3.0})
    with pytest.raises(TypeError, match="an EnhanceOptions or a dict of option names, got str"):
        BackgroundJob(tiny_nrrd, tmp_path / "o.nrrd", "fast")


@pytest.mark.parametrize(
    ("changes", "code", "exit_code", "fragment"),
    [
        ({"input": "missing.nrrd"}, "input", 2, "does not exist"),
        ({"device": "cuda"}, "resource", 7, "CUDA is not available"),
        ({"thickness_mm": None}, "parameter", 4, "thickness is unknown"),
    ],
)
def test_failures_arrive_as_one_failed_event(tiny_nrrd, tmp_path, changes, code, exit_code, fragment):
    if "cuda" in str(changes) and _cuda():
        pytest.skip("this machine has CUDA")
    source = tmp_path / changes.pop("input") if "input" in changes else tiny_nrrd
    if changes.get("thickness_mm", 1) is None:  # a file without a recorded thickness
        source = tmp_path / "plain.nrrd"
        sitk.WriteImage(sitk.ReadImage(str(tiny_nrrd)), str(source))
    job = job_for(source, tmp_path / "o.nrrd", **changes)
    events = drain(job.start())
    assert_well_formed(events)
    failed = job.error
    assert failed["code"] == code and failed["exit_code"] == exit_code == job.returncode
    assert fragment in failed["message"] and "\n" not in failed["message"]
    assert isinstance(error_from_event(failed), Exception) and error_from_event(failed).code == code
    assert not (tmp_path / "o.nrrd").exists()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_an_existing_save_model_folder_is_kept_whole(tiny_nrrd, tmp_path):
    folder = tmp_path / "keep"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    job = job_for(tiny_nrrd, tmp_path / "o.nrrd", save_model_path=folder)
    job.start().wait(WAIT_S)
    assert job.error["code"] == "output" and "is a folder" in job.error["message"]
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_a_launcher_that_forwards_no_signals_is_cancelled_with_its_child(tiny_nrrd, tmp_path, launcher):
    # Slicer's PythonSlicer (the replica's stand-in): starts the interpreter as a child, forwards no signal.
    out = tmp_path / "out" / "o.nrrd"
    job = BackgroundJob(tiny_nrrd, out, python_executable=launcher, thickness_mm=3.0, preset="fast",
                        device="cpu", max_minutes=2.0).start()  # fmt: skip
    wait_for(lambda: job.progress is not None and job.progress["stage"] == "train")
    interpreter = children_of(job.pid)
    assert interpreter == [job.interpreter_pid]  # the started event reports the interpreter's own pid
    job.cancel(grace_s=10)
    terminal = job.wait(WAIT_S)
    assert terminal["event"] == "cancelled" and not terminal.get("forced")  # it stopped by itself
    assert_gone([job.pid, *interpreter])
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_the_run_stops_by_itself_when_its_client_is_killed(tiny_nrrd, tmp_path, launcher):
    """The client (a script, or Slicer) dies without a word: the interpreter behind the launcher sees its
    stdin close and cancels itself; no process is left (checked by pid)."""
    out = tmp_path / "out" / "o.nrrd"
    client = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            f"""
            import time
            from sr4zct.run.background import BackgroundJob
            job = BackgroundJob({str(tiny_nrrd)!r}, {str(out)!r}, python_executable={str(launcher)!r},
                                thickness_mm=3.0, preset="fast", device="cpu", max_minutes=2.0).start()
            while job.progress is None or job.progress["stage"] != "train":
                job.poll()
                assert not job.done, job.terminal
                time.sleep(0.05)
            print(job.pid, job.interpreter_pid, flush=True)
            time.sleep(600)
            """)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    try:
        pids = [int(p) for p in client.stdout.readline().split()]
        assert len(pids) == 2 and all(pid_exists(p) for p in pids)
    finally:
        client.kill()  # SIGKILL: no clean-up of any kind in the client
        client.wait()
    assert_gone(pids, timeout_s=30)
    assert list(out.parent.iterdir()) == []  # the interpreter removed its temporary output


def test_a_cancel_sent_at_once_is_read_before_torch_is_imported(tiny_nrrd, tmp_path):
    out = tmp_path / "o.nrrd"
    command = [sys.executable, "-m", "sr4zct", "enhance", str(tiny_nrrd), "-o", str(out), "--thickness", "3",
               "--device", "cpu", "--events", "--control-file", "-"]  # fmt: skip
    proc = subprocess.run(command, input="cancel\n", capture_output=True, text=True, timeout=WAIT_S)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    # The started event (the first thing that needs torch: it names the device) never came.
    assert [e["event"] for e in events] == ["cancelled"] and proc.returncode == 130
    assert "cancel requested" in events[0]["message"]
    assert list(tmp_path.iterdir()) == []


# --- misbehaving processes ----------------------------------------------------------------------------


def test_text_that_is_not_an_event_becomes_log_lines():
    job = stand_in(
        """
        emit("started")
        print("a library printing on stdout", flush=True)
        print("{not json", flush=True)
        print("on stderr", file=sys.stderr, flush=True)
        emit("finished", output_path="x")
        """
    ).start()
    events = drain(job)
    assert_well_formed(events)
    logs = [e["message"] for e in events if e["event"] == "log"]
    assert "a library printing on stdout" in logs and "{not json" in logs and "on stderr" in logs
    assert job.result["output_path"] == "x"


def test_wait_shows_every_event_and_outcome_gives_the_result_or_the_error():
    job = stand_in(
        """
        emit("started")
        emit("progress", stage="train", step=1, total=2, fraction=0.5)
        emit("finished", output_path="x")
        """
    ).start()
    seen = []
    assert job.wait(WAIT_S, on_event=seen.append)["event"] == "finished"
    assert [e["event"] for e in seen] == ["started", "progress", "finished"]
    assert job.outcome()["output_path"] == "x"
    failed = stand_in('emit("failed", message="bad thickness", code="parameter")\n').start()
    failed.wait(WAIT_S)
    with pytest.raises(ParameterError, match="bad thickness"):
        failed.outcome()
    cancelled = stand_in('emit("cancelled", message="stopped by the user")\n').start()
    cancelled.wait(WAIT_S)
    with pytest.raises(Cancelled, match="stopped by the user"):
        cancelled.outcome()
    with pytest.raises(RuntimeError, match="has not ended"):
        stand_in("time.sleep(1)\n").outcome()


def test_a_process_that_ignores_cancel_is_killed(tmp_path):
    job = stand_in(
        """
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        emit("started")
        while True:
            emit("progress", stage="train", step=1, total=2, fraction=0.5)
            time.sleep(0.05)
        """
    ).start()
    wait_for(lambda: job.progress is not None)
    t0 = time.monotonic()
    job.cancel(grace_s=1)
    terminal = job.wait(WAIT_S)
    assert time.monotonic() - t0 < 6
    assert terminal["event"] == "cancelled" and terminal["forced"]
    assert job.returncode == -signal.SIGKILL
    assert any("killing it" in line for line in job.last_log_lines)


@pytest.mark.parametrize(
    ("how", "signum"), [("os.kill(os.getpid(), 9)", 9), ("import faulthandler; faulthandler._sigsegv()", 11)]
)
def test_a_process_that_dies_is_reported_failed(how, signum):
    job = stand_in(f'emit("started")\nprint("last words", file=sys.stderr, flush=True)\n{how}\n').start()
    events = drain(job)
    assert_well_formed(events)
    failed = job.error
    assert failed["code"] == "crashed" and failed["exit_code"] == -signum
    assert signal.Signals(signum).name in failed["message"] and "last words" in failed["detail"]
    assert job.state == "failed" and job.result is None


def test_a_crash_with_a_surviving_child_does_not_hang():
    job = stand_in(
        """
        import subprocess
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        emit("log", level="info", message=f"child {child.pid}")
        os.kill(os.getpid(), 9)
        """
    ).start()
    t0 = time.monotonic()
    failed = job.wait(WAIT_S)
    assert time.monotonic() - t0 < 15  # the orphan holds the pipes; the client ends the group
    child = [line for line in job.last_log_lines if line.startswith("child ")]
    assert failed["code"] == "crashed" and child
    assert_gone([int(child[0].split()[1])])


def test_a_done_callback_that_fails_turns_the_job_into_failed():
    job = stand_in('emit("started")\nemit("finished", output_path="x")\n')

    def load_result(job):
        raise OSError("cannot read x")

    job.add_done_callback(load_result)
    events = drain(job.start())
    assert_well_formed(events)
    assert events[-1]["event"] == "failed" and "cannot read x" in events[-1]["message"]
    assert job.state == "failed" and job.error is events[-1]


def test_poll_never_blocks_and_wait_times_out():
    job = stand_in('emit("started")\ntime.sleep(30)\n').start()
    t0 = time.monotonic()
    job.poll()
    assert time.monotonic() - t0 < 0.5
    with pytest.raises(TimeoutError):
        job.wait(timeout=0.5)
    job.cancel(grace_s=0.5)
    assert job.wait(WAIT_S)["event"] == "cancelled"


def test_a_missing_interpreter_is_a_resource_error(tiny_nrrd, tmp_path):
    from sr4zct.errors import ResourceError

    job = BackgroundJob(tiny_nrrd, tmp_path / "o.nrrd", python_executable=tmp_path / "nope", thickness_mm=3.0)
    with pytest.raises(ResourceError, match="Cannot start"):
        job.start()
    assert job.state == "failed"


# --- the Windows branches, with only the OS calls replaced --------------------------------------------


class WindowsCalls:
    """``subprocess.Popen`` and ``subprocess.run`` as on Windows, with their real signatures.

    Popen takes ``creationflags`` (the real one refuses them elsewhere, so the process starts without them,
    in this process group); run carries out ``taskkill /T /F /PID n`` by killing n and its descendants (by
    parent pid, as Windows finds them) and answers 128 when n does not exist, as taskkill does.
    """

    def __init__(self, monkeypatch):
        self._popen = subprocess.Popen
        self.creationflags: list[int] = []
        self.taskkills: list[list[str]] = []
        monkeypatch.setattr(background, "WINDOWS", True)
        monkeypatch.setattr(subprocess, "Popen", self.Popen)
        monkeypatch.setattr(subprocess, "run", self.run)

    def Popen(self, args, bufsize=-1, executable=None, stdin=None, stdout=None, stderr=None, *,  # noqa: N802
              creationflags=0, start_new_session=False, **kwargs):  # fmt: skip
        assert not start_new_session, "POSIX-only on Windows"
        self.creationflags.append(creationflags)
        return self._popen(args, bufsize, executable, stdin, stdout, stderr, **kwargs)

    def run(self, args, *, stdin=None, capture_output=False, timeout=None, check=False, **kwargs):
        self.taskkills.append(list(args))
        assert list(args[:4]) == ["taskkill", "/T", "/F", "/PID"] and kwargs.get("creationflags")
        root = int(args[4])
        tree = [root, *descendants(root)] if pid_exists(root) and not _zombie(root) else []
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return subprocess.CompletedProcess(list(args), 0 if tree else 128, b"", b"")


def descendants(pid: int) -> list[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, todo = [], [pid]
    while todo:
        parent_pid = todo.pop()
        children = [p for p, parent in parents.items() if parent == parent_pid]
        found += children
        todo += children
    return found


STUBBORN = """
import json, os, sys, time
print(json.dumps({"event": "started", "version": 2, "time": time.time(), "pid": os.getpid()}), flush=True)
time.sleep(600)  # never reads its stdin: only the tree kill ends it
"""


def test_windows_cancel_ends_the_launcher_and_its_interpreter_with_taskkill(monkeypatch, launcher):
    calls = WindowsCalls(monkeypatch)
    job = BackgroundJob.from_command([str(launcher), "-c", STUBBORN]).start()
    wait_for(lambda: job.poll() is not None and job.started is not None)
    interpreter = job.interpreter_pid
    assert interpreter != job.pid and calls.creationflags == [0x200 | 0x08000000]  # new group, no window
    job.cancel(grace_s=0.5)
    terminal = job.wait(WAIT_S)
    assert terminal["event"] == "cancelled" and terminal["forced"]
    assert calls.taskkills[0] == ["taskkill", "/T", "/F", "/PID", str(job.pid)]
    assert_gone([job.pid, interpreter])


def test_windows_kill_reaches_an_interpreter_whose_launcher_has_gone(monkeypatch, launcher):
    calls = WindowsCalls(monkeypatch)
    job = BackgroundJob.from_command([str(launcher), "-c", STUBBORN]).start()
    wait_for(lambda: job.poll() is not None and job.started is not None)
    interpreter = job.interpreter_pid
    os.kill(job.pid, signal.SIGKILL)  # the launcher ends (as Popen.kill() ends only it on Windows)
    time.sleep(background.STRAGGLER_S + 0.5)
    assert not job.done and pid_exists(interpreter)  # its interpreter still runs: the job waits for it
    job.cancel(grace_s=0.5)
    assert job.wait(WAIT_S)["event"] == "cancelled"
    assert ["taskkill", "/T", "/F", "/PID", str(interpreter)] in calls.taskkills
    assert_gone([interpreter])


@pytest.mark.skipif(os.name == "nt", reason="the stand-in interpreter is a POSIX shell script")
def test_a_local_engine_hands_its_environment_to_every_job(tiny_nrrd, tmp_path, monkeypatch):
    """``LocalEngine(env=...)`` (what the Slicer queue passes: the GUI run's threads and GPU choice) reaches each
    job's process through the public argument; a variable given as None is removed."""
    from sr4zct.batch import Batch, BatchJob
    from sr4zct.batch.local_engine import LocalEngine
    from sr4zct.run.options import EnhanceOptions

    seen = tmp_path / "seen.txt"
    failed = json.dumps(
        {"event": "failed", "version": 2, "time": 0, "message": "stand-in", "code": "internal"}
    )
    wrapper = tmp_path / "python-env"
    wrapper.write_text(f"#!/bin/sh\necho \"$SR4ZCT_TEST_VALUE|${{SR4ZCT_TEST_GONE-removed}}\" >> '{seen}'\n"
                       f"echo '{failed}'\nexit 1\n")  # fmt: skip
    wrapper.chmod(0o755)
    monkeypatch.setenv("SR4ZCT_TEST_GONE", "inherited")
    engine = LocalEngine(
        python_executable=str(wrapper), env={"SR4ZCT_TEST_VALUE": "given", "SR4ZCT_TEST_GONE": None}
    )
    jobs = [BatchJob.for_file(tiny_nrrd, output_name="tiny", thickness_mm=THICKNESS_MM)]
    result = Batch(tmp_path / "out", jobs, EnhanceOptions(device="cpu"), engine=engine).run()
    assert [row["status"] for row in result.rows] == ["failed"]
    assert seen.read_text().splitlines() == ["given|removed"]


@pytest.mark.skipif(sys.platform == "win32", reason="needs /bin/sh")
def test_a_process_that_dies_at_once_still_ends_its_job():
    """The stdout reader may reach EOF and join the stderr reader before the client has started that one
    (it hung the batch 1 time in 3 with an interpreter that crashed at start)."""
    for _ in range(25):
        job = BackgroundJob.from_command(["/bin/sh", "-c", "exit 3"]).start()
        terminal = job.wait(timeout=20)
        assert terminal["event"] == "failed" and terminal["exit_code"] == 3
