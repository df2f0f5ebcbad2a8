"""Data safety: outputs that must not be written, write faults, interruption at every stage, and inputs
that stay byte-for-byte (and modification time) unchanged after every kind of run (docs/errors.md)."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import numpy as np
import pydicom.dataset
import pytest
import SimpleITK as sitk
from sr4zct.cli import main
from sr4zct.errors import Cancelled, OutputError
from sr4zct.io import read_volume, write_volume
from sr4zct.run.pipeline import enhance_file
from test_bad_input import TINY, assert_error, cli, small_series, tiny_model_file

CPU = ["--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("model"))


@pytest.fixture
def inputs(tmp_path):
    """A DICOM series and an NRRD volume of the same data (3 mm every 2 mm, 0.8 mm pixels)."""
    series = small_series(tmp_path / "in" / "ct")
    nrrd = tmp_path / "in" / "ct.nrrd"
    write_volume(read_volume(series.folder), nrrd)
    return series.folder, nrrd


def snapshot(*roots: Path) -> dict[str, tuple[str, int, int]]:
    """Every file under ``roots``: content hash, size and modification time (ns)."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            st = p.stat()
            out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns)
    return out


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files the writers may have left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if "sr4zct" in p.name or p.name.startswith("."))


def run(*args) -> int:
    return main([str(a) for a in args])


# --- outputs that must not be written -----------------------------------------------------------------


def test_output_equal_to_input(inputs, capsys, model):
    folder, nrrd = inputs
    before = snapshot(folder, nrrd)
    for extra in ([], ["--overwrite"]):
        assert_error(cli(capsys, "enhance", nrrd, "-o", nrrd, "--model", model, *CPU, *extra), 5,
                     f"The output {nrrd} is the input; choose another output path.")  # fmt: skip
        assert_error(
            cli(capsys, "enhance", folder, "-o", folder, "--model", model, *CPU, *extra), 5, "is the input"
        )
    out = nrrd.parent.parent / "o.nrrd"
    for option in ("--uncertainty", "--save-model"):
        assert_error(
            cli(capsys, "enhance", nrrd, "-o", out, option, nrrd, *CPU, "--preset", "fast"), 5, "is the input"
        )
    with pytest.raises(OutputError, match="is the input"):
        enhance_file(nrrd, nrrd, overwrite=True, preset=TINY)
    assert snapshot(folder, nrrd) == before
    assert not out.exists()


def test_output_inside_input_folder(inputs, capsys, model, tmp_path):
    folder, nrrd = inputs
    before = snapshot(folder)
    for target in (folder / "enhanced", folder / "enhanced.nrrd", folder / "sub" / "deeper"):
        assert_error(cli(capsys, "enhance", folder, "-o", target, "--model", model, *CPU), 5,
                     f"The output {target} is inside the input folder {folder}")  # fmt: skip
    # One file of the series as input: its folder is the input.
    one_file = sorted(folder.iterdir())[0]
    assert_error(
        cli(capsys, "enhance", one_file, "-o", folder / "x.nrrd", "--model", model, *CPU),
        5,
        "inside the input folder",
    )
    # Side outputs too: a model file saved into the DICOM folder would pollute it.
    assert_error(cli(capsys, "enhance", folder, "-o", tmp_path / "o.nrrd", "--save-model", folder / "m.pt", *CPU),
                 5, "inside the input folder")  # fmt: skip
    # An output folder that contains the input.
    assert_error(cli(capsys, "enhance", folder, "-o", folder.parent, "--overwrite", "--model", model, *CPU), 5,
                 "contains the input")  # fmt: skip
    assert snapshot(folder) == before
    assert not (tmp_path / "o.nrrd").exists()


def test_existing_output_needs_overwrite(inputs, capsys, model, tmp_path):
    _, nrrd = inputs
    out = tmp_path / "exists.nrrd"
    out.write_bytes(b"keep me")
    assert_error(cli(capsys, "enhance", nrrd, "-o", out, "--model", model, *CPU), 5,
                 f"The output {out} exists; use --overwrite to replace it.")  # fmt: skip
    assert out.read_bytes() == b"keep me"
    unc = tmp_path / "unc.nrrd"
    unc.write_bytes(b"keep me too")
    assert_error(cli(capsys, "enhance", nrrd, "-o", tmp_path / "new.nrrd", "--uncertainty", unc, "--model", model,
                     *CPU), 5, "exists; use --overwrite")  # fmt: skip
    assert unc.read_bytes() == b"keep me too" and not (tmp_path / "new.nrrd").exists()
    saved = tmp_path / "saved.pt"
    saved.write_bytes(b"an older model")
    assert_error(cli(capsys, "enhance", nrrd, "-o", tmp_path / "new.nrrd", "--save-model", saved, *CPU), 5,
                 "exists; use --overwrite")  # fmt: skip
    assert saved.read_bytes() == b"an older model"
    # A non-empty folder is not replaced without --overwrite, and never when it holds other files.
    folder_out = tmp_path / "dicom_out"
    folder_out.mkdir()
    (folder_out / "notes.txt").write_text("mine")
    assert_error(
        cli(capsys, "enhance", nrrd, "-o", folder_out, "--model", model, *CPU), 5, "exists and is not empty"
    )
    assert_error(cli(capsys, "enhance", nrrd, "-o", folder_out, "--overwrite", "--model", model, *CPU), 5,
                 "not a previous output")  # fmt: skip
    assert (folder_out / "notes.txt").read_text() == "mine"
    # With --overwrite only a previous output of SR4ZCT is replaced, never another file.
    assert_error(cli(capsys, "enhance", nrrd, "-o", out, "--overwrite", "--model", model, *CPU), 5,
                 "not a previous output of SR4ZCT")  # fmt: skip
    assert out.read_bytes() == b"keep me"
    out = tmp_path / "previous.nrrd"
    assert run("enhance", nrrd, "-o", out, "--model", model, *CPU) == 0
    assert run("enhance", nrrd, "-o", out, "--overwrite", "--model", model, *CPU) == 0
    assert read_volume(out, slice_axis=0).array.shape[0] == 11
    dicom_out = tmp_path / "previous"
    assert run("enhance", nrrd, "-o", dicom_out, "--model", model, *CPU) == 0
    assert run("enhance", nrrd, "-o", dicom_out, "--overwrite", "--model", model, *CPU) == 0
    assert len(list(dicom_out.iterdir())) == 11 and leftovers(tmp_path) == []


def test_unwritable_output(inputs, capsys, model, tmp_path, monkeypatch):
    _, nrrd = inputs
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert_error(cli(capsys, "enhance", nrrd, "-o", blocker / "o.nrrd", "--model", model, *CPU), 5,
                 "Cannot create the output folder")  # fmt: skip
    assert_error(cli(capsys, "enhance", nrrd, "-o", "/proc/sr4zct-out.nrrd", "--model", model, *CPU), 5,
                 "is not writable")  # fmt: skip

    # Permission refused at write time (as root, chmod does not stop us: simulate the OS refusing).
    def refuse(image, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(sitk, "WriteImage", refuse)
    out = tmp_path / "o.nrrd"
    assert_error(cli(capsys, "enhance", nrrd, "-o", out, "--model", model, *CPU), 5,
                 f"No permission to write {out}; nothing was written.")  # fmt: skip
    assert not out.exists() and leftovers(tmp_path) == []


def _disk_full_after(n_ok: int):
    """A pydicom ``save_as`` that writes ``n_ok`` files, then half a file and fails with ENOSPC."""
    original = pydicom.dataset.Dataset.save_as
    calls = {"n": 0}

    def save_as(self, filename, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_ok:
            Path(filename).write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", str(filename))
        return original(self, filename, *args, **kwargs)

    return save_as


def test_disk_full_leaves_nothing(inputs, capsys, model, tmp_path, monkeypatch):
    folder, nrrd = inputs
    before = snapshot(folder, nrrd)
    # DICOM output: the disk fills up after 4 of 11 slices.
    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", _disk_full_after(4))
    out = tmp_path / "dicom_out"
    assert_error(cli(capsys, "enhance", folder, "-o", out, "--model", model, *CPU), 5,
                 f"The disk is full while writing {out}; nothing was written.")  # fmt: skip
    assert not out.exists() and leftovers(tmp_path) == []
    monkeypatch.undo()

    # NRRD output: the image writer fails half-way.
    def full(image, path, *args, **kwargs):
        Path(path).write_bytes(b"NRRD0004\n")
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(sitk, "WriteImage", full)
    out = tmp_path / "o.nrrd"
    with pytest.raises(OutputError, match="The disk is full while writing"):
        enhance_file(nrrd, out, model_path=model, device="cpu")
    assert not out.exists() and leftovers(tmp_path) == []
    monkeypatch.undo()

    # The uncertainty map fails after the main output was written: both are removed.
    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", _disk_full_after(0))
    main_out, unc = tmp_path / "main.nrrd", tmp_path / "unc_dicom"
    with pytest.raises(OutputError, match="disk is full"):
        enhance_file(nrrd, main_out, uncertainty_path=unc, model_path=model, device="cpu")
    assert not main_out.exists() and not unc.exists() and leftovers(tmp_path) == []
    assert snapshot(folder, nrrd) == before


@pytest.mark.parametrize("exception", [KeyboardInterrupt, Cancelled])
def test_interrupt_during_write_leaves_no_output(inputs, capsys, model, tmp_path, monkeypatch, exception):
    folder, _ = inputs
    original = pydicom.dataset.Dataset.save_as
    calls = {"n": 0}

    def save_as(self, filename, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            Path(filename).write_bytes(b"\0" * 64)  # half a file, then Ctrl-C / cancel
            raise (
                exception("Cancelled by the user; nothing was written.")
                if exception is Cancelled
                else exception()
            )
        return original(self, filename, *args, **kwargs)

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", save_as)
    out = tmp_path / "out"
    code, _, err = cli(capsys, "enhance", folder, "-o", out, "--model", model, *CPU)
    assert code == 130 and "nothing was written" in err and "Traceback" not in err
    assert calls["n"] == 5
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("stage", ["prepare", "train", "infer"])
def test_cancel_at_every_stage_leaves_no_output(inputs, tmp_path, stage):
    folder, nrrd = inputs
    before = snapshot(folder, nrrd)
    seen: list[str] = []

    def progress(p):
        seen.append(p.stage)

    def should_stop() -> bool:
        return stage in seen

    out = tmp_path / "o.nrrd"
    with pytest.raises(Cancelled, match="nothing was written"):
        enhance_file(nrrd, out, uncertainty_path=tmp_path / "u.nrrd", preset=TINY, device="cpu",
                     save_model_path=tmp_path / "m.pt", progress=progress, should_stop=should_stop)  # fmt: skip
    assert seen[-1] == stage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    assert snapshot(folder, nrrd) == before


def test_cancel_after_the_output_is_complete_keeps_it(inputs, tmp_path, model):
    """A cancel that arrives once everything is written must not leave a run that says 'nothing was
    written' while the output exists: the run counts as finished."""
    _, nrrd = inputs
    seen: list[str] = []
    out = tmp_path / "o.nrrd"
    result = enhance_file(nrrd, out, model_path=model, device="cpu", progress=lambda p: seen.append(p.stage),
                          should_stop=lambda: "write" in seen)  # fmt: skip
    assert out.is_file() and result.volume.array.shape[0] == 11


def test_ctrl_c_during_training(inputs, capsys, tmp_path, monkeypatch):
    _, nrrd = inputs
    from sr4zct.method import training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_model", interrupted)
    out = tmp_path / "o.nrrd"
    code, _, err = cli(capsys, "enhance", nrrd, "-o", out, "--save-model", tmp_path / "m.pt", *CPU)
    assert code == 130 and err.strip().endswith("sr4zct: cancelled by SIGINT; nothing was written.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_inputs_unchanged_after_every_kind_of_run(inputs, capsys, model, tmp_path, monkeypatch):
    folder, nrrd = inputs
    before = snapshot(folder, nrrd)
    names = sorted(p.name for p in folder.iterdir())

    def unchanged():
        assert snapshot(folder, nrrd) == before
        assert sorted(p.name for p in folder.iterdir()) == names

    # info
    assert run("info", folder) == 0 and run("info", nrrd, "--json") == 0
    unchanged()
    # successful enhance runs (DICOM and NRRD inputs, DICOM and NRRD outputs), with a trained model
    assert run("enhance", folder, "-o", tmp_path / "a.nrrd", "--model", model, *CPU) == 0
    assert run("enhance", nrrd, "-o", tmp_path / "b_dicom", "--model", model, *CPU) == 0
    result = enhance_file(
        folder, tmp_path / "c.mha", preset=TINY, device="cpu", save_model_path=tmp_path / "m.pt"
    )
    assert result.volume.array.shape[0] == 11
    unchanged()
    # failed runs: a bad option, an unusable model, a full disk
    assert run("enhance", folder, "-o", tmp_path / "d.nrrd", "--target-spacing", "5", *CPU) == 4
    assert run("enhance", folder, "-o", tmp_path / "d.nrrd", "--model", nrrd, *CPU) == 6
    with monkeypatch.context() as m:
        m.setattr(pydicom.dataset.Dataset, "save_as", _disk_full_after(2))
        assert run("enhance", nrrd, "-o", tmp_path / "e_dicom", "--model", model, *CPU) == 5
    unchanged()
    # cancelled runs: cooperative cancel during training, Ctrl-C during inference
    with pytest.raises(Cancelled):
        enhance_file(folder, tmp_path / "f.nrrd", preset=TINY, device="cpu",
                     should_stop=lambda: True)  # fmt: skip
    with monkeypatch.context() as m:

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        import sr4zct.method.inference

        m.setattr(sr4zct.method.inference, "enhance_array", interrupted)
        assert run("enhance", folder, "-o", tmp_path / "g.nrrd", "--model", model, *CPU) == 130
    unchanged()
    assert not any((tmp_path / n).exists() for n in ("d.nrrd", "e_dicom", "f.nrrd", "g.nrrd"))
    capsys.readouterr()
    assert np.array_equal(read_volume(folder).array, read_volume(nrrd).array)


@pytest.mark.realdata
def test_real_series_untouched(l291_dir, capsys, tmp_path):
    """The real Siemens series: info and refused enhance runs leave every file as it was."""
    before = snapshot(l291_dir)
    assert run("info", l291_dir) == 0
    assert_error(
        cli(capsys, "enhance", l291_dir, "-o", l291_dir / "enhanced", *CPU), 5, "inside the input folder"
    )
    assert_error(cli(capsys, "enhance", l291_dir, "-o", tmp_path / "o.nrrd", "--target-spacing", "2", *CPU), 4,
                 "must be finer than the slice spacing (2 mm)")  # fmt: skip
    assert snapshot(l291_dir) == before
    assert list(tmp_path.iterdir()) == []
