"""JobSpec (job file) validation and the worker's job logic run in-process (no subprocess)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sr4zct.errors import Cancelled, InputError, OutputError, ParameterError, ResourceError, SR4ZCTError
from sr4zct.run.jobs import JOB_FORMAT, JobSpec, error_from_event, lock_path_for
from sr4zct.run.worker import OutputLock, is_gpu_out_of_memory, run_job


def _spec(tmp_path: Path, **changes) -> JobSpec:
    fields = {"input_path": str(tmp_path / "in.nrrd"), "output_path": str(tmp_path / "out.nrrd")}
    fields.update(changes)
    return JobSpec(**fields)


def test_round_trip_json(tmp_path):
    spec = _spec(tmp_path, thickness_mm=3.0, spacing_mm=2.0, preset="fast", device="cuda:1", seed=7,
                 max_minutes=2.5, keep_temp=True, task_options={"k": [1, 2]})  # fmt: skip
    text = spec.to_json()
    assert json.loads(text)["format"] == JOB_FORMAT
    assert JobSpec.from_json(text) == spec
    path = spec.save(tmp_path / "job.json")
    assert JobSpec.load(path) == spec


def test_paths_accept_pathlike(tmp_path):
    spec = JobSpec(input_path=tmp_path / "a.nrrd", output_path=tmp_path / "b.nrrd").validate()
    assert spec.input_path == str(tmp_path / "a.nrrd")
    assert json.loads(spec.to_json())["output_path"] == str(tmp_path / "b.nrrd")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"thickness_mm": 0}, "thickness_mm"),
        ({"spacing_mm": -2.0}, "spacing_mm"),
        ({"target_spacing_mm": float("nan")}, "target_spacing_mm"),
        ({"thickness_mm": "3"}, "thickness_mm"),
        ({"thickness_mm": True}, "thickness_mm"),
        ({"max_minutes": 0}, "max_minutes"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"profile": "triangle"}, "profile"),
        ({"preset": "ultra"}, "preset"),
        ({"device": "gpu"}, "device"),
        ({"device": "cuda:x"}, "device"),
        ({"overwrite": "yes"}, "overwrite"),
        ({"allow_cpu_fallback": 1}, "allow_cpu_fallback"),
        ({"task": "mine_bitcoin"}, "task"),
        ({"output_path": None}, "output_path"),
        ({"output_path": ""}, "output_path"),
        ({"input_path": None}, "input_path"),
        ({"format": 2}, "format"),
        ({"task_options": [1]}, "task_options"),
        ({"slice_axis": 3}, "slice_axis"),
        ({"slice_axis": -1}, "slice_axis"),
        ({"slice_axis": 1.0}, "slice_axis"),
        ({"slice_axis": True}, "slice_axis"),
    ],
)
def test_validation_names_the_bad_field(tmp_path, changes, fragment):
    with pytest.raises(ParameterError, match=fragment):
        _spec(tmp_path, **changes).validate()


def test_outputs_must_differ_from_input_and_each_other(tmp_path):
    with pytest.raises(ParameterError, match="input image itself"):
        _spec(tmp_path, output_path=str(tmp_path / "in.nrrd")).validate()
    with pytest.raises(ParameterError, match="same file"):
        _spec(tmp_path, uncertainty_path=str(tmp_path / "out.nrrd")).validate()


def test_from_dict_rejects_unknown_and_unversioned(tmp_path):
    data = _spec(tmp_path).to_dict()
    with pytest.raises(ParameterError, match="Unknown job file field"):
        JobSpec.from_dict({**data, "thickness": 3})
    data.pop("format")
    with pytest.raises(ParameterError, match="format"):
        JobSpec.from_dict(data)
    with pytest.raises(ParameterError, match="not valid JSON"):
        JobSpec.from_json("{oops")
    with pytest.raises(InputError, match="Cannot read the job file"):
        JobSpec.load(tmp_path / "missing.json")


def test_slice_axis_in_the_job_file_and_old_files_without_it(tmp_path):
    spec = _spec(tmp_path, slice_axis=2)
    assert json.loads(spec.to_json())["slice_axis"] == 2
    assert JobSpec.load(spec.save(tmp_path / "job.json")).slice_axis == 2
    old = _spec(tmp_path).to_dict()
    del old["slice_axis"]  # a job file written before the field existed
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = JobSpec.load(tmp_path / "old.json")
    assert loaded.slice_axis is None and loaded == _spec(tmp_path)


def test_error_from_event_picks_the_class():
    exc = error_from_event({"event": "failed", "code": "output", "message": "exists", "detail": "d"})
    assert isinstance(exc, OutputError) and exc.message == "exists" and exc.detail == "d"
    assert isinstance(error_from_event({"event": "failed", "code": "geometry", "message": "m"}), InputError)
    exc = error_from_event({"event": "failed", "code": "internal", "message": "bug"})
    assert type(exc) is SR4ZCTError and exc.code == "internal"


# -- run_job in-process: the worker's logic with injected tasks -----------------------------------------


def _run(spec, task, device=("cpu", "CPU"), should_stop=lambda: False):
    events: list[dict] = []
    code = run_job(spec, events.append, should_stop, task=task, device=device)
    return code, events


class _FakeCudaOOM(RuntimeError):
    pass


_FakeCudaOOM.__name__ = "OutOfMemoryError"  # what torch.cuda.OutOfMemoryError is called


def _oom_on_gpu_task(spec, ctx):
    if ctx.device != "cpu":
        raise _FakeCudaOOM("CUDA out of memory. Tried to allocate 2.00 GiB")
    Path(spec.output_path).write_text("cpu result")
    return {"output_path": spec.output_path, "device": ctx.device}


def test_gpu_oom_falls_back_to_cpu_when_allowed(tmp_path):
    spec = JobSpec(output_path=str(tmp_path / "o.txt"), task="selftest", allow_cpu_fallback=True)
    code, events = _run(spec, _oom_on_gpu_task, device=("cuda:0", "fake GPU"))
    assert code == 0
    assert events[0]["event"] == "started" and events[0]["device"] == "cuda:0"
    assert events[-1]["event"] == "finished" and events[-1]["device"] == "cpu"
    assert any(e["event"] == "log" and e["level"] == "warning" and "CPU" in e["message"] for e in events)
    assert (tmp_path / "o.txt").read_text() == "cpu result"


def test_gpu_oom_fails_with_advice_when_fallback_not_allowed(tmp_path):
    spec = JobSpec(output_path=str(tmp_path / "o.txt"), task="selftest")
    code, events = _run(spec, _oom_on_gpu_task, device=("cuda:0", "fake GPU"))
    assert code == ResourceError.exit_code
    failed = events[-1]
    assert failed["event"] == "failed" and failed["code"] == "resource"
    assert "GPU ran out of memory" in failed["message"] and "cpu" in failed["message"].lower()
    assert not (tmp_path / "o.txt").exists()


def test_is_gpu_out_of_memory_follows_the_cause():
    try:
        try:
            raise _FakeCudaOOM("boom")
        except RuntimeError as inner:
            raise ResourceError("Not enough GPU memory") from inner
    except ResourceError as exc:
        assert is_gpu_out_of_memory(exc)
    assert not is_gpu_out_of_memory(MemoryError("host RAM"))
    assert not is_gpu_out_of_memory(ValueError("nothing to do with memory"))


def _cancel_after_writing(spec, ctx):
    Path(spec.output_path).write_text("partial")
    raise Cancelled("Cancelled by the user; nothing was written.")


def test_cancel_removes_what_the_job_created(tmp_path):
    spec = JobSpec(output_path=str(tmp_path / "o.txt"), task="selftest")
    code, events = _run(spec, _cancel_after_writing)
    assert code == 130
    assert events[-1]["event"] == "cancelled"
    assert events[-1]["removed"] == [str(tmp_path / "o.txt")]
    assert not (tmp_path / "o.txt").exists()


def test_cancel_keeps_a_file_the_job_did_not_touch(tmp_path):
    out = tmp_path / "o.txt"
    out.write_text("precious")

    def cancel_early(spec, ctx):
        raise Cancelled("Cancelled by the user; nothing was written.")

    code, events = _run(JobSpec(output_path=str(out), task="selftest", overwrite=True), cancel_early)
    assert code == 130 and events[-1]["removed"] == []
    assert out.read_text() == "precious"


def test_internal_error_reports_traceback(tmp_path):
    def buggy(spec, ctx):
        return {}["missing"]

    code, events = _run(JobSpec(output_path=str(tmp_path / "o"), task="selftest"), buggy)
    assert code == 1
    failed = events[-1]
    assert failed["code"] == "internal" and "KeyError" in failed["message"]
    assert "\n" not in failed["message"]
    assert "Traceback" in failed["detail"] and "buggy" in failed["detail"]


def test_temp_dir_is_removed_unless_kept(tmp_path):
    seen = {}

    def record(spec, ctx):
        seen["temp"] = ctx.temp_dir
        assert ctx.temp_dir.is_dir()
        return {"output_path": spec.output_path}

    _run(JobSpec(output_path=str(tmp_path / "o"), task="selftest"), record)
    assert seen["temp"].name.startswith("sr4zct-job-")
    assert not seen["temp"].exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("x")
    (mine / "job.json").write_text("{}")
    _run(JobSpec(output_path=str(tmp_path / "o"), task="selftest", temp_dir=str(mine)), record)
    assert sorted(p.name for p in mine.iterdir()) == ["precious.txt"]  # a folder the user chose stays
    created = tmp_path / "created"
    _run(JobSpec(output_path=str(tmp_path / "o"), task="selftest", temp_dir=str(created)), record)
    assert not created.exists()
    kept = tmp_path / "kept"
    code, events = _run(JobSpec(output_path=str(tmp_path / "o"), task="selftest", keep_temp=True,
                                temp_dir=str(kept)), record)  # fmt: skip
    assert code == 0 and kept.is_dir()
    assert any(e["event"] == "log" and str(kept) in e["message"] for e in events)


def test_output_lock_blocks_a_live_owner_and_takes_over_a_dead_one(tmp_path):
    out = tmp_path / "out.nrrd"
    first = OutputLock(out).acquire()
    assert lock_path_for(out).exists()
    with pytest.raises(OutputError, match="Another job is already writing"):
        OutputLock(out).acquire()
    first.release()
    assert not lock_path_for(out).exists()

    # A lock left behind by a process that has exited is stale.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info = {"pid": dead.pid, "host": socket.gethostname(), "create_time": 0}
    lock_path_for(out).write_text(json.dumps(info))
    os.utime(lock_path_for(out), (time.time() - 60, time.time() - 60))
    OutputLock(out).acquire().release()


def test_output_lock_in_missing_folder(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        OutputLock(tmp_path / "nowhere" / "out.nrrd").acquire()


def test_default_python_executable(tmp_path, monkeypatch):
    import types

    from sr4zct.run.jobs import default_python_executable

    assert default_python_executable() == sys.executable
    monkeypatch.setitem(sys.modules, "slicer", types.ModuleType("slicer"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "SlicerApp-real"))
    with pytest.raises(ResourceError, match="PythonSlicer"):
        default_python_executable()
    launcher = tmp_path / ("PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    assert Path(default_python_executable()) == launcher


# -- slice_axis through the real enhancement (in-process, tiny network) --------------------------------


def test_enhance_job_uses_the_given_slice_axis(tmp_path):
    """2 mm slices every 0.5 mm with 0.6 mm pixels: the slice spacing is the finest, so the guess (the
    largest spacing) would take an in-plane axis; slice_axis=0 makes the job enhance along z."""
    sitk = pytest.importorskip("SimpleITK")
    pytest.importorskip("sr4zct.run.pipeline")
    from sr4zct.io import read_geometry, read_volume
    from test_pipeline import TINY

    n, px = 16, 32
    z, y, x = np.mgrid[0:n, 0:px, 0:px]
    disc = ((y - 16) ** 2 + (x - 16) ** 2) < 12**2
    array = (-1000.0 + 1000.0 * disc + 150.0 * disc * np.sin(z / 3.0)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.6, 0.6, 0.5))
    src = tmp_path / "thin.nrrd"
    sitk.WriteImage(image, str(src))
    assert read_geometry(src).source_slice_axis != 0  # the guess alone is wrong here

    spec = JobSpec(input_path=str(src), output_path=str(tmp_path / "out.nrrd"), thickness_mm=2.0,
                   target_spacing_mm=0.25, slice_axis=0, device="cpu", preset="fast",
                   task_options={"preset": TINY}).validate()  # fmt: skip
    code, events = _run(spec, None)
    assert code == 0, events[-1]
    started, finished = events[0], events[-1]
    assert started["event"] == "started" and started["input_shape"] == [n, px, px]
    assert started["input_spacing_mm"] == pytest.approx([0.5, 0.6, 0.6])
    n_out = int(round((n - 1) * 0.5 / 0.25)) + 1
    assert finished["event"] == "finished"
    assert finished["output_shape"] == [n_out, px, px]
    assert finished["output_spacing_mm"] == pytest.approx([0.25, 0.6, 0.6])
    out = sitk.ReadImage(str(tmp_path / "out.nrrd"))
    assert out.GetSize() == (px, px, n_out) and out.GetSpacing() == pytest.approx((0.6, 0.6, 0.25))
    back = read_volume(tmp_path / "out.nrrd")  # the output records its axis: no slice_axis needed
    assert back.geometry.source_slice_axis == 0 and back.array.shape == (n_out, px, px)
    assert np.isfinite(back.array).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nrrd", "thin.nrrd"]
