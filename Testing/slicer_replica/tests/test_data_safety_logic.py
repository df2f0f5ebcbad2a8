"""Issue 11's data-safety reproductions through the Slicer logic: ``SR4ZCTLogic.enhance`` on a real MRML node,
its background process started by the replica's PythonSlicer launcher. Each case snapshots the user's folders,
Slicer's temporary folder and the process's TMPDIR (every path; every file's bytes and modification time):
a refused or cancelled run leaves them exactly as they were, a successful one only adds its outputs.

The command line's, the Python API's and the background job's cases are in
Testing/python/test_data_safety_entry_points.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import slicer
import standins
from test_logic_real_mrml import _ct_node

WAIT_S = 240.0
# The node of _ct_node: 14 slices 2 mm apart, 0.75 mm pixels, 3 mm thick; a short real training run.
QUICK = {"preset": "fast", "maxMinutes": 0.05, "device": "cpu"}
pytestmark = pytest.mark.slow


@dataclass
class Folders:
    user: Path  # the user's own files, where they save models and maps
    results: Path
    scanner: Path  # original scanner DICOM
    slicer_temp: Path  # slicer.app.temporaryPath
    tmp: Path  # TMPDIR of this process and of the background process

    def snapshot(self) -> dict[str, dict[str, tuple]]:
        """The user's folder (results and scanner are inside it), Slicer's temporary folder and TMPDIR.

        torch (Slicer's build) adds its own cache folder ``torchinductor_<user>`` to TMPDIR; it is not
        SR4ZCT's and holds nothing of the user's, so it is left out.
        """
        tmp = {k: v for k, v in snapshot(self.tmp).items() if not k.startswith("torchinductor_")}
        return {"user": snapshot(self.user), "slicer_temp": snapshot(self.slicer_temp), "tmp": tmp}


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: folders and links by name, files with content hash, size and mtime (ns)."""
    out: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            out[key] = ("link", os.readlink(path))
        elif path.is_dir():
            out[key] = ("dir",)
        else:
            st = path.stat()
            out[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns)
    return out


def _scanner_dicom(folder: Path, n: int = 3) -> None:
    """A few CT images as a scanner writes them (no SR4ZCT derivation mark)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    series = generate_uid()
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"IM{k:04d}"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.Manufacturer, ds.SeriesInstanceUID = "CT", "SIEMENS", series
        ds.Rows = ds.Columns = 4
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 2 * k], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.75, 0.75], 3
        ds.PixelData = np.zeros((4, 4), "<i2").tobytes()
        if int(pydicom.__version__.split(".")[0]) >= 3:
            ds.save_as(folder / f"IM{k:04d}", enforce_file_format=True)
        else:  # pydicom 2.4 (Slicer 5.10)
            ds.is_little_endian, ds.is_implicit_VR = True, False
            ds.save_as(folder / f"IM{k:04d}", write_like_original=False)


@pytest.fixture
def setup(monkeypatch, tmp_path, python_slicer):
    """Slicer (replica) with a small CT node, and the user's folders."""
    replica = standins.install(monkeypatch, tmp_path)
    node = _ct_node(replica)
    user = tmp_path / "user"
    results = user / "results"
    results.mkdir(parents=True)
    (user / "notes.txt").write_text("my notes")
    (results / "earlier.txt").write_text("an earlier result of mine")
    scanner = user / "scanner"
    _scanner_dicom(scanner)
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    folders = Folders(user, results, scanner, Path(slicer.app.temporaryPath), tmp)
    return replica.module.SR4ZCTLogic(), node, folders


def _refused(logic, node, fragment: str, **options) -> None:
    from sr4zct.errors import OutputError

    with pytest.raises(OutputError, match=fragment):
        logic.enhance(node, showResult=False, **QUICK, **options)


def test_a_save_model_folder_is_refused_and_kept(setup):
    logic, node, folders = setup
    before = folders.snapshot()
    _refused(logic, node, "is a folder; give a file name", saveModelPath=str(folders.user), overwrite=True)
    _refused(logic, node, "is a folder; give a file name", saveModelPath=str(folders.results))
    assert folders.snapshot() == before


def test_overwrite_refuses_scanner_dicom_and_files_sr4zct_did_not_write(setup):
    logic, node, folders = setup
    foreign_model = folders.results / "model.pt"
    foreign_model.write_bytes(b"PK\x03\x04 another program's model")
    foreign_map = folders.results / "map.nrrd"
    foreign_map.write_bytes(b"NRRD0004\ntype: short\ndimension: 1\nsizes: 1\nencoding: raw\n\n\0\0")
    before = folders.snapshot()
    _refused(
        logic, node, "DICOM files SR4ZCT did not write", uncertaintyPath=str(folders.scanner), overwrite=True
    )
    _refused(logic, node, "not a previous output of SR4ZCT", saveModelPath=str(foreign_model), overwrite=True)
    _refused(logic, node, "not a previous output of SR4ZCT", uncertaintyPath=str(foreign_map), overwrite=True)
    assert folders.snapshot() == before


def test_folders_named_like_temporaries_are_never_touched(setup):
    logic, node, folders = setup
    ended = {"pid": 2**22 + 12345, "host": "another-machine"}  # another Slicer's run folder
    decoys = {
        folders.slicer_temp / "SR4ZCT-user-data": None,  # no run marker: not the module's
        folders.slicer_temp / "SR4ZCT2026-01-01_00+00+02.000": ended,
        folders.slicer_temp / "SR4ZCT2026-01-01_00+00+03.000": "not json",
        folders.slicer_temp
        / ".SR4ZCT-run.sr4zct-tmp-00000000-4206641-0123456789ab": None,  # another host's run
        folders.tmp / "sr4zct-control-abc123": None,
        folders.tmp / "sr4zct-job-7": None,
        folders.results / "sr4zct-job-1": None,
        folders.results / ".u.sr4zct-tmp-00000000-1-0123456789ab.nrrd": None,
    }
    for path, marker in decoys.items():
        path.mkdir()
        (path / "control").write_text("cancel\n")  # a command that must never reach a run
        (path / "input.nrrd").write_bytes(os.urandom(256))
        if marker is not None:
            (path / "sr4zct-run.json").write_text(marker if isinstance(marker, str) else json.dumps(marker))
    before = folders.snapshot()
    model, unc = folders.results / "m.pt", folders.results / "u.nrrd"
    out = logic.enhance(node, showResult=False, saveModelPath=str(model), uncertaintyPath=str(unc), **QUICK)
    assert out is not None and model.is_file() and unc.is_file()
    after = folders.snapshot()
    added = {"results/m.pt", "results/u.nrrd"}
    assert set(after["user"]) == set(before["user"]) | added
    assert {k: v for k, v in after["user"].items() if k not in added} == before["user"]
    # the run's own folder and its control folder are gone; every other one is as it was
    for root in ("slicer_temp", "tmp"):
        assert set(after[root]) == set(before[root]), root
        assert after[root] == before[root], root
    assert socket.gethostname() != ended["host"]


def test_a_cancel_during_training_leaves_nothing(setup):
    logic, node, folders = setup
    before = folders.snapshot()
    options = {**QUICK, "maxMinutes": 2.0}
    job = logic.enhance(node, showResult=False, wait=False, saveModelPath=str(folders.results / "m.pt"),
                        uncertaintyPath=str(folders.results / "u.nrrd"), **options)  # fmt: skip
    deadline = time.monotonic() + WAIT_S
    while job.progress is None or job.progress["stage"] != "train":
        assert time.monotonic() < deadline and not job.done, job.terminal
        job.poll()
        time.sleep(0.05)
    job.cancel(grace_s=30)
    terminal = job.wait(WAIT_S)
    assert terminal["event"] == "cancelled", terminal
    assert folders.snapshot() == before
