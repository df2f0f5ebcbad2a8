"""sr4zct.system: memory and process facts without psutil (3D Slicer does not ship it)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sr4zct import system


@pytest.fixture(params=["psutil", "stdlib"])
def backend(request, monkeypatch):
    if request.param == "stdlib":
        monkeypatch.setattr(system, "_psutil", lambda: None)
    elif system._psutil() is None:
        pytest.skip("psutil is not installed here")
    return request.param


def test_memory_figures_are_plausible(backend):
    total = system.total_memory_bytes()
    available = system.available_memory_bytes()
    assert total is not None and available is not None
    assert 2**28 < available <= total < 2**50


def test_pid_exists_tells_live_from_ended_processes(backend):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert system.pid_exists(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not system.pid_exists(child.pid)
    assert system.pid_exists(1) if sys.platform != "win32" else True  # init: another user's process
    assert not system.pid_exists(0) and not system.pid_exists(-5)
