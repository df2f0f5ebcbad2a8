"""The replica itself: exactly Slicer's packages, no SR4ZCT dependencies, a launcher like PythonSlicer,
and the command line under that interpreter with only Slicer's packages."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import standins

HERE = Path(__file__).resolve().parents[1]


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (HERE / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, version = line.split("==")
            pins[package] = version
    return pins


def _release() -> str:
    """The Slicer release whose pins this venv holds (run.sh says; else the pin set with this numpy)."""
    if os.environ.get("SR4ZCT_REPLICA_PINS"):
        return os.environ["SR4ZCT_REPLICA_PINS"]
    numpy = importlib.metadata.version("numpy")
    return next(
        p.stem[7:] for p in (HERE / "pins").glob("slicer-*.txt") if _pins(f"pins/{p.name}")["numpy"] == numpy
    )


def test_the_venv_has_exactly_slicers_pinned_packages():
    pins = _pins(f"pins/slicer-{_release()}.txt")
    assert len(pins) > 30 and {"numpy", "scipy", "pydicom", "simpleitk", "pillow"} <= set(pins)
    for package, version in {**pins, **_pins("requirements-mrml.txt")}.items():
        assert importlib.metadata.version(package) == version, package
    assert importlib.metadata.version("torch").startswith("2.13.0")


def test_the_pin_sets_are_slicers(tmp_path):
    """5.10 is the release with pydicom 2 and numpy 2.0 (issue 19); the generated files say where they come from."""
    assert (
        _pins("pins/slicer-5.10.txt")["pydicom"] == "2.4.4"
        and _pins("pins/slicer-5.10.txt")["numpy"] == "2.0.2"
    )
    assert _pins("pins/slicer-5.12.txt")["pydicom"] == "3.0.2"
    for path in (HERE / "pins").glob("slicer-*.txt"):
        assert "slicer_pins.py" in path.read_text().splitlines()[1]


@pytest.mark.parametrize("package", ["psutil", "tqdm", "pylibjpeg", "matplotlib", "sr4zct"])
def test_what_slicer_does_not_ship_is_absent(package):
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version(package)  # sr4zct: the core is on sys.path, never pip-installed


def _launch(code: str, tmp_path: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "SR4ZCT_REPLICA_PYTHON_REAL": sys.executable}
    env.pop("PYTHONPATH", None)
    return subprocess.Popen([str(standins.LAUNCHER_DIR / "PythonSlicer"), "-c", code], env=env, cwd=tmp_path,
                            text=True, **kwargs)  # fmt: skip


def test_python_slicer_runs_the_interpreter_as_a_child_and_forwards_no_signal(tmp_path):
    proc = _launch("import os, sys, time; print(os.getpid(), flush=True); time.sleep(60)", tmp_path,
                   stdout=subprocess.PIPE)  # fmt: skip
    child = int(proc.stdout.readline())
    try:
        assert child != proc.pid
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        time.sleep(0.3)
        os.kill(child, 0)  # still alive: orphaned, as with Slicer's launcher
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_python_slicer_dies_of_sigusr1_and_the_interpreter_goes_on(tmp_path):
    """What "finish now" did before issue 19: SIGUSR1 to the launcher's group. The launcher, with the default
    disposition, ends; the interpreter (which handles SIGUSR1 itself here) goes on, orphaned."""
    code = "import os, signal, time; signal.signal(signal.SIGUSR1, lambda *a: None); print(os.getpid(), flush=True); time.sleep(60)"
    proc = _launch(code, tmp_path, stdout=subprocess.PIPE, start_new_session=True)
    child = int(proc.stdout.readline())
    try:
        os.killpg(proc.pid, signal.SIGUSR1)
        assert proc.wait(timeout=10) == -signal.SIGUSR1
        os.kill(child, 0)
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_python_slicer_hands_its_stdin_to_the_interpreter_and_reports_a_crash_as_1(tmp_path):
    proc = _launch("import sys; print(sys.stdin.readline().strip().upper(), flush=True)", tmp_path,
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    out, _ = proc.communicate("finish\n", timeout=60)
    assert out.strip() == "FINISH" and proc.returncode == 0
    proc = _launch(
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", tmp_path, stderr=subprocess.PIPE
    )
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "exit abnormally" in err  # QProcess::CrashExit


def test_python_slicer_has_no_test_tools_and_propagates_the_exit_code(tmp_path):
    proc = _launch("import pytest", tmp_path, stderr=subprocess.PIPE)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "not bundled with 3D Slicer" in err
    # what every supported Slicer bundles (highdicom only from 5.12 on), plus torch
    proc = _launch("import numpy, scipy, SimpleITK, pydicom, PIL, requests, vtk, torch; raise SystemExit(3)",
                   tmp_path)  # fmt: skip
    assert proc.wait(timeout=120) == 3


def _cli(args: list[str], tmp_path: Path, timeout_s: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "SR4ZCT_REPLICA_PYTHON_REAL": sys.executable, "PYTHONPATH": str(standins.MODULE_DIR)}
    return subprocess.run([str(standins.LAUNCHER_DIR / "PythonSlicer"), "-m", "sr4zct", *args], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout_s)  # fmt: skip


@pytest.fixture
def l291_part(tmp_path, l291_files):
    folder = tmp_path / "L291-part"
    folder.mkdir()
    for f in l291_files[150:164]:
        shutil.copy(f, folder / f.name)
    return folder


def test_cli_info_under_python_slicer(l291_part, tmp_path):
    result = _cli(["info", str(l291_part), "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r'"slice_thickness_mm":\s*3(\.0)?\b', result.stdout)


@pytest.mark.slow
def test_cli_enhance_under_python_slicer_with_only_slicers_packages(l291_part, tmp_path):
    out = tmp_path / "enhanced.nrrd"
    result = _cli(
        ["enhance", str(l291_part), "-o", str(out), "--preset", "fast", "--max-minutes", "0.1"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.is_file()
