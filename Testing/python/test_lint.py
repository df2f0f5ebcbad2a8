"""ruff lint and format checks over the whole project, for Python 3.10 (pip users) and 3.12 (Slicer)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

PATHS = ["SR4ZCTModule", "Testing", "benchmarks", "Resources"]


def _ruff() -> list[str]:
    exe = shutil.which("ruff")
    return [exe] if exe else [sys.executable, "-m", "ruff"]


@pytest.mark.parametrize("target", ["py310", "py312"])
def test_ruff_check_clean(repo_root, target):
    existing = [p for p in PATHS if (repo_root / p).exists()]
    proc = subprocess.run(
        [*_ruff(), "check", "--target-version", target, *existing],
        capture_output=True,
        text=True,
        cwd=repo_root,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_clean(repo_root):
    existing = [p for p in PATHS if (repo_root / p).exists()]
    proc = subprocess.run(
        [*_ruff(), "format", "--check", *existing],
        capture_output=True,
        text=True,
        cwd=repo_root,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
