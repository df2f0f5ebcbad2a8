"""Shared pytest fixtures: locations of the real data beside the checkout, CPU thread settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
L291_DIR = SHARED_DATA / "L291_3mm_overlap1mm"
VHM_HEAD = SHARED_DATA / "vhm-head" / "vhm_head_1mm.nii.gz"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def l291_dir() -> Path:
    if not L291_DIR.is_dir():
        pytest.skip(f"real DICOM series not available ({L291_DIR} is absent; see ../shared/data/README.md)")
    return L291_DIR


@pytest.fixture(scope="session")
def vhm_head_path() -> Path:
    if not VHM_HEAD.is_file():
        pytest.skip(f"vhm-head ground truth not available ({VHM_HEAD} is absent)")
    return VHM_HEAD
