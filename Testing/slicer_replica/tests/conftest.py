"""Fixtures of the Slicer-replica tests: Slicer set up over real MRML, the replica's PythonSlicer, L291."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the stand-ins package

import standins  # noqa: E402

ROOT = standins.ROOT
L291_DIR = (ROOT / ".." / "shared" / "data" / "L291_3mm_overlap1mm").resolve()
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_report_header(config):
    return f"Slicer replica: {sys.executable} (Python {sys.version.split()[0]})"


@pytest.fixture
def replica(monkeypatch, tmp_path):
    return standins.install(monkeypatch, tmp_path)


@pytest.fixture
def python_slicer(monkeypatch):
    """The replica's ``PythonSlicer`` launcher first on PATH, starting this venv's interpreter."""
    monkeypatch.setenv("PATH", f"{standins.LAUNCHER_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("SR4ZCT_REPLICA_PYTHON_REAL", sys.executable)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    return standins.LAUNCHER_DIR / "PythonSlicer"


@pytest.fixture(scope="session")
def l291_files() -> list[Path]:
    if not L291_DIR.is_dir():
        pytest.skip(f"real DICOM series not available ({L291_DIR} is absent; see ../shared/data/README.md)")
    return sorted(p for p in L291_DIR.iterdir() if p.is_file())


@pytest.fixture(scope="session")
def l291_database(l291_files):
    """The DICOM database after importing L291 (indexed once per session)."""
    return standins.ctkDICOMDatabase(l291_files)


@pytest.fixture(scope="session")
def l291_dir_core_volume(l291_files):
    """L291 as the core's own reader reads it (for comparison with Slicer's reader)."""
    sys.path.insert(0, str(standins.MODULE_DIR))
    import sr4zct

    return sr4zct.read_volume(L291_DIR)
