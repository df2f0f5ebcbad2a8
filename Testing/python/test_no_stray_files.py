"""A run leaves no files it did not need: creating the optimiser imports ``torch._dynamo``, which makes an empty
``$TMPDIR/torchinductor_<user>`` folder and sets ``TORCHINDUCTOR_CACHE_DIR``; enhance removes both again.

Each case runs in a fresh interpreter (torch makes the folder once per process, at that import) with a fresh
``TMPDIR`` and without ``TORCHINDUCTOR_CACHE_DIR``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, tempfile
    import numpy as np
    from sr4zct.io import write_volume
    from sr4zct.run.pipeline import enhance, enhance_file
    from sr4zct.run.presets import Preset
    from sr4zct.volume import Volume, make_geometry

    z, y, x = np.mgrid[0:10, 0:32, 0:32]
    disc = ((y - 16) ** 2 + (x - 16) ** 2) < 12**2
    array = (-1000 + 1040 * disc + 300 * disc * np.sin(z / 2.0 + x / 5.0)).astype(np.float32)
    volume = Volume(array, make_geometry(array.shape, slice_spacing_mm=2.0, slice_thickness_mm=3.0,
                                         pixel_spacing_mm=(0.8, 0.8)))
    tiny = Preset("tiny", steps=4, patch_px=16, batch=2, max_minutes=1.0, validate_every=2,
                  network_config={"layers": 2, "channels": 4, "unshuffle": 2})
    if sys.argv[1] == "train":  # trains (the optimiser) and saves the model
        enhance(volume, preset=tiny, device="cpu", save_model_path="model.pt")
    else:  # checks the saved model (building a network) and applies it
        write_volume(volume, "ct.nrrd", overwrite=True)
        enhance_file("ct.nrrd", "out.nrrd", model_path="model.pt", device="cpu", overwrite=True)
    import torch._dynamo  # already imported by the run: nothing more is made
    print(json.dumps({"entries": sorted(os.listdir(tempfile.gettempdir())),
                      "variable": os.environ.get("TORCHINDUCTOR_CACHE_DIR")}))
    """
)


def run_in_fresh_process(tmp: Path, mode: str = "train") -> dict:
    """Run SCRIPT (``mode`` train or apply) in ``tmp/work`` with ``TMPDIR`` = ``tmp``; what it found."""
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(TMPDIR=str(tmp), TEMP=str(tmp), TMP=str(tmp), CUDA_VISIBLE_DEVICES="-1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT / "SR4ZCTModule"), env.get("PYTHONPATH")) if p
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True, text=True, timeout=300, cwd=work
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_run_leaves_no_torch_cache_folder_and_no_variable(tmp_path):
    assert run_in_fresh_process(tmp_path, "train") == {"entries": ["work"], "variable": None}
    assert run_in_fresh_process(tmp_path, "apply") == {"entries": ["work"], "variable": None}
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["ct.nrrd", "model.pt", "out.nrrd"]


def test_a_cache_folder_that_was_there_stays(tmp_path, monkeypatch):
    cache_dir_utils = pytest.importorskip("torch._inductor.runtime.cache_dir_utils")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = Path(cache_dir_utils.default_cache_dir())  # where torch would make it
    assert folder.parent == tmp_path
    folder.mkdir()  # made before the run (by an earlier torch.compile, say), empty: kept as it is
    found = run_in_fresh_process(tmp_path)
    assert found == {"entries": sorted([folder.name, "work"]), "variable": None}
    assert folder.is_dir()
