"""Reading and writing that never mixes, loses or mislabels (reliability round 3, docs/errors.md rows
``mixed-series``, ``rescale-mixed``, ``not-a-file``, ``non-utf8-name``, ``nifti-sform``, ``hu-range``,
``empty-path``, ``linked-folders``, ``output-link``, ``overwrite-all-or-none``, ``sidecar-owner``,
``overwrite-kind``): each example of the issue through the command line and the Python API.
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from sr4zct.cli import main
from sr4zct.errors import GeometryError, InputError, OutputError, ParameterError
from sr4zct.io import read_geometry, read_volume, write_volume
from sr4zct.run.pipeline import enhance_file
from test_bad_input import assert_error, cli, ct_array, small_series, tiny_model_file, write_image
from test_data_safety import snapshot

REPO = Path(__file__).resolve().parents[2]
CPU = ["--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("model"))


def sr4zct_process(*args, timeout=60) -> subprocess.CompletedProcess:
    """The command line in a process of its own (a hang is a timeout, a native abort a negative code)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "SR4ZCTModule")}
    return subprocess.run(
        [sys.executable, "-m", "sr4zct", *map(os.fsdecode, args)],
        capture_output=True,
        timeout=timeout,
        env=env,
    )


# --- a series is one patient and one study ----------------------------------------------------------------


def test_slices_of_two_patients_sharing_a_series_uid_are_refused(tmp_path, capsys):
    s = small_series(tmp_path / "mixed", per_slice_tags={"PatientID": ["A", "A", "A", "B", "B"]})
    line = assert_error(cli(capsys, "info", s.folder), 2, "holds slices of 2 patients", "'A'", "'B'")
    assert s.paths[0].name in line and s.paths[3].name in line  # both named, with a file of each
    with pytest.raises(InputError, match="holds slices of 2 patients"):
        read_volume(s.folder)
    names = small_series(
        tmp_path / "names", per_slice_tags={"PatientName": ["X^A", "X^A", "Y^B", "Y^B", "Y^B"]}
    )
    with pytest.raises(InputError, match="PatientName 'Y\\^B'"):
        read_geometry(names.folder)
    import pydicom

    reused = small_series(tmp_path / "reused" / "a")  # another patient's files that reuse the SOPInstanceUIDs
    (tmp_path / "reused" / "b").mkdir()
    for path in reused.paths:
        ds = pydicom.dcmread(path)
        ds.PatientID = "SOMEONE-ELSE"
        ds.save_as(tmp_path / "reused" / "b" / path.name)
    with pytest.raises(InputError, match="holds slices of 2 patients"):  # was: dropped as "copies"
        read_geometry(tmp_path / "reused")
    studies = small_series(
        tmp_path / "studies", per_slice_tags={"StudyInstanceUID": ["1.2.3"] * 2 + ["1.2.4"] * 3}
    )
    assert_error(cli(capsys, "enhance", studies.folder, "-o", tmp_path / "o.nrrd", *CPU), 2, "2 studies")
    assert not (tmp_path / "o.nrrd").exists()


def test_rescale_on_some_slices_only_is_refused(tmp_path, capsys):
    import pydicom

    s = small_series(tmp_path / "ct")  # RescaleIntercept -1024 on every slice
    ds = pydicom.dcmread(s.paths[2])
    del ds.RescaleIntercept  # one slice without it was read 1024 HU off
    ds.save_as(s.paths[2])
    line = assert_error(cli(capsys, "info", s.folder), 2, "1 of 5 slice(s)", "have no RescaleIntercept")
    assert s.paths[2].name in line
    assert_error(
        cli(capsys, "enhance", s.folder, "-o", tmp_path / "o.nrrd", *CPU), 2, "have no RescaleIntercept"
    )
    with pytest.raises(InputError, match="have no RescaleIntercept"):
        read_volume(s.folder)
    none = small_series(
        tmp_path / "none", rescale_intercept=0.0, missing_tags=["RescaleIntercept", "RescaleSlope"]
    )
    assert read_volume(none.folder).array.shape == (5, 16, 16)  # on no slice: the stored values


# --- only regular files, never a hang -------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_never_hangs_a_read(tmp_path):
    fifo = tmp_path / "data.raw"
    os.mkfifo(fifo)
    header = "type: short\ndimension: 3\nsizes: 16 16 6\nspacings: 0.8 0.8 2\nencoding: raw\nendian: little\n"
    (tmp_path / "ct.nhdr").write_text(f"NRRD0004\n{header}data file: data.raw\n\n")
    (tmp_path / "ct.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 16 16 6\nElementType = MET_SHORT\nElementDataFile = data.raw\n"
    )
    for name in ("ct.nhdr", "ct.mhd"):  # info reads headers only; SimpleITK opened the pipe and waited
        done = sr4zct_process("info", tmp_path / name, timeout=60)
        assert done.returncode == 2, done.stderr
        assert b"is not a regular file" in done.stderr and b"Traceback" not in done.stderr
        with pytest.raises(InputError, match="not a regular file"):
            read_geometry(tmp_path / name)
    os.mkfifo(tmp_path / "ct.nrrd")
    assert sr4zct_process("info", tmp_path / "ct.nrrd").returncode == 2
    folder = tmp_path / "dicom"
    small_series(folder)
    os.mkfifo(folder / "IM9999.dcm")  # never a slice: skipped, and never opened
    assert sr4zct_process("info", folder).returncode == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names are bytes")
def test_a_file_name_that_is_not_utf8_is_refused_before_simpleitk(tmp_path):
    good = write_image(tmp_path / "ct.nrrd", np.round(ct_array()).astype(np.int16))
    bad = os.fsencode(tmp_path) + b"/ct\xff.nrrd"
    os.rename(good, bad)
    done = sr4zct_process("info", bad)
    assert done.returncode == 2, done  # was -6: SimpleITK aborted the interpreter
    assert b"is not valid UTF-8 text" in done.stderr and b"ct\\xff.nrrd" in done.stderr
    with pytest.raises(InputError, match="is not valid UTF-8 text"):
        read_volume(os.fsdecode(bad))
    plain = write_image(tmp_path / "plain.nrrd", np.round(ct_array()).astype(np.int16))
    out = os.fsencode(tmp_path) + b"/out\xfe.nrrd"
    done = sr4zct_process("enhance", plain, "-o", out, "--thickness", "3", "--device", "cpu", "--quiet")
    assert done.returncode == 5 and b"is not valid UTF-8 text" in done.stderr, done
    assert not os.path.lexists(out)


# --- NIfTI pixdim against sform; values beyond any CT scale ------------------------------------------


def _nifti_with_sform_z(path: Path, factor: float) -> Path:
    image = sitk.GetImageFromArray(np.round(ct_array()).astype(np.int16))
    image.SetSpacing((0.8, 0.8, 2.0))
    sitk.WriteImage(image, str(path))
    data = bytearray(path.read_bytes())
    assert struct.unpack("<h", data[254:256])[0] > 0  # SimpleITK writes an sform
    for offset in (280, 296, 312):  # srow_x, srow_y, srow_z: scale the z column
        row = list(struct.unpack("<4f", data[offset : offset + 16]))
        row[2] *= factor
        data[offset : offset + 16] = struct.pack("<4f", *row)
    path.write_bytes(bytes(data))
    return path


def test_nifti_pixdim_and_sform_must_agree(tmp_path, capsys):
    path = _nifti_with_sform_z(tmp_path / "ct.nii", 1.5)  # pixdim says 2 mm, the sform 3 mm
    line = assert_error(cli(capsys, "info", path), 3, "pixdim[3] = 2 mm but its sform gives 3 mm")
    assert "ambiguous" in line
    with pytest.raises(GeometryError, match="records two voxel sizes along axis 3"):
        read_volume(path)
    near = _nifti_with_sform_z(tmp_path / "near.nii", 1.0 + 1e-5)  # float32 rounding: the same
    assert read_geometry(near).slice_spacing_mm == pytest.approx(2.0)


def test_values_beyond_the_hu_range_are_refused_in_every_format(tmp_path, capsys):
    array = ct_array().astype(np.float32)
    array[2, 5, 5] = 3.0e7
    for name in ("ct.nrrd", "ct.mha", "ct.nii.gz"):
        path = write_image(tmp_path / name, array)
        assert_error(
            cli(capsys, "enhance", path, "-o", tmp_path / "o.nrrd", *CPU), 2, "far outside any CT scale"
        )
        with pytest.raises(InputError, match="far outside any CT scale"):
            read_volume(path)
    from sr4zct.run.pipeline import enhance
    from sr4zct.volume import Volume, make_geometry

    geometry = make_geometry(
        (6, 16, 16), slice_spacing_mm=2.0, slice_thickness_mm=3.0, pixel_spacing_mm=(0.8, 0.8)
    )
    with pytest.raises(InputError, match="far outside any CT scale"):
        enhance(Volume(array, geometry), device="cpu")


# --- an empty path is never the current folder ---------------------------------------------------------


def test_an_empty_path_is_refused(tmp_path, capsys, monkeypatch, model):
    s = small_series(tmp_path / "ct")
    monkeypatch.chdir(s.folder)  # the current folder holds a series that must not be read
    assert_error(cli(capsys, "info", ""), 4, "must name a file or folder")
    assert_error(
        cli(capsys, "enhance", "", "-o", tmp_path / "o.nrrd", "--model", model, *CPU), 4, "input_path"
    )
    assert not (tmp_path / "o.nrrd").exists()
    with pytest.raises(ParameterError, match="input_path must name a file or folder"):
        enhance_file("", tmp_path / "o.nrrd", model_path=model, device="cpu")
    with pytest.raises(ParameterError, match="output_path must name"):
        enhance_file(s.folder, "", model_path=model, device="cpu")


# --- links: folders followed (with a loop guard), outputs never through a link ---------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_slices_in_a_linked_folder_are_read_and_a_loop_is_searched_once(tmp_path, capsys):
    s = small_series(tmp_path / "store" / "all", n_slices=6)
    series = tmp_path / "series"
    series.mkdir()
    for path in s.paths[:3]:
        path.rename(series / path.name)
    (series / "more").symlink_to(s.folder, target_is_directory=True)  # slices in a linked sub-folder
    (series / "loop").symlink_to(series, target_is_directory=True)  # a link back up: searched once
    assert read_volume(series).array.shape[0] == 6  # were 3: the linked folder's slices went missing
    code, out, _ = cli(capsys, "info", series)
    assert code == 0 and "6 of 16 x 16" in out
    patient = tmp_path / "cohort" / "P1"
    patient.parent.mkdir()
    patient.symlink_to(series, target_is_directory=True)  # a linked patient folder
    assert read_volume(patient).array.shape[0] == 6


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_an_output_path_that_is_a_link_is_refused(tmp_path, capsys, model):
    nrrd = write_volume(read_volume(small_series(tmp_path / "in").folder), tmp_path / "in.nrrd")
    earlier = tmp_path / "elsewhere" / "earlier.nrrd"
    assert main(["enhance", str(nrrd), "-o", str(earlier), "--model", str(model), *CPU]) == 0
    before = snapshot(earlier.parent)
    for option, name in (("-o", "o.nrrd"), ("--uncertainty", "u.nrrd"), ("--save-model", "m.pt"),
                         ("--preview", "p.png")):  # fmt: skip
        link = tmp_path / "out" / name
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(earlier)
        args = ["-o", tmp_path / "out" / "x.nrrd", option, link] if option != "-o" else ["-o", link]
        assert_error(cli(capsys, "enhance", nrrd, *args, "--overwrite", "--model", model, *CPU), 5,
                     "is a symbolic link")  # fmt: skip
        assert link.is_symlink() and snapshot(earlier.parent) == before
    dangling = tmp_path / "out" / "dangling.nrrd"
    dangling.symlink_to(tmp_path / "nowhere.nrrd")
    with pytest.raises(OutputError, match="is a symbolic link"):
        write_volume(read_volume(nrrd), dangling)
    assert not (tmp_path / "nowhere.nrrd").exists()
    folder_link = tmp_path / "out" / "dicom_link"
    folder_link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(OutputError, match="is a symbolic link"):
        enhance_file(nrrd, folder_link, model_path=model, device="cpu", overwrite=True)
    assert snapshot(earlier.parent) == before


# --- --overwrite: all new files first, then replaced together ---------------------------------------------


def _earlier_result(tmp_path: Path, nrrd: Path, model: Path, suffix: str = ".nrrd") -> dict[str, Path]:
    paths = {"out": tmp_path / "res" / f"out{suffix}", "unc": tmp_path / "res" / "unc.nrrd",
             "saved": tmp_path / "res" / "saved.pt"}  # fmt: skip
    enhance_file(nrrd, paths["out"], uncertainty_path=paths["unc"], device="cpu", preset=_tiny(),
                 save_model_path=paths["saved"])  # fmt: skip
    return paths


def _tiny():
    from test_bad_input import TINY

    return TINY


@pytest.mark.parametrize(
    ("entry", "where", "suffix"),
    [("cli", "uncertainty", ".nii.gz"), ("api", "uncertainty", ".nii.gz"), ("cli", "commit", ".nii.gz"),
     ("api", "commit", ".nii.gz"), ("api", "commit", ""), ("api", "model", "")],
)  # fmt: skip
def test_overwrite_leaves_the_earlier_result_when_a_later_write_fails(
    tmp_path, capsys, monkeypatch, entry, where, suffix
):
    """The new files fail at different points: the disk fills up writing the uncertainty map (after the
    volume); every file is complete but moving one into place fails (a NIfTI with its sidecar, or a DICOM
    folder, before it); the saved model cannot be moved in. Each time the earlier result stays as it was."""
    nrrd = write_volume(read_volume(small_series(tmp_path / "in").folder), tmp_path / "in.nrrd")
    paths = _earlier_result(tmp_path, nrrd, None, suffix)
    before = snapshot(paths["out"].parent)
    names = sorted(p.name for p in paths["out"].parent.iterdir())
    fail_at = {"uncertainty": None, "commit": "unc.nrrd", "model": "saved.pt"}[where]
    if where == "uncertainty":  # the disk fills up at the uncertainty map, after the volume was written
        original = sitk.WriteImage

        def write(image, name, *args, **kwargs):
            if "unc" in Path(name).name:
                Path(name).write_bytes(b"NRRD0004\n")
                raise OSError(errno.ENOSPC, "No space left on device", name)
            return original(image, name, *args, **kwargs)

        monkeypatch.setattr(sitk, "WriteImage", write)
    else:  # every file is complete; moving one of the new files into place fails
        original = os.replace

        def replace(src, dst, *args, **kwargs):
            if Path(dst).name == fail_at and ".sr4zct-tmp-" in Path(src).name:
                raise OSError(errno.EIO, "Input/output error", str(dst))
            return original(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
    options = dict(uncertainty_path=paths["unc"], save_model_path=paths["saved"], overwrite=True)
    if entry == "cli":
        args = ["--uncertainty", paths["unc"], "--save-model", paths["saved"], "--overwrite"]
        code, _, err = cli(capsys, "enhance", nrrd, "-o", paths["out"], "--preset", "fast", "--max-minutes",
                           "0.05", *args, *CPU)  # fmt: skip
        assert code == 5 and "Traceback" not in err, err
    else:
        with pytest.raises(OutputError):
            enhance_file(nrrd, paths["out"], device="cpu", preset=_tiny(), **options)
    monkeypatch.undo()
    assert snapshot(paths["out"].parent) == before  # every earlier file as it was, nothing added
    assert sorted(p.name for p in paths["out"].parent.iterdir()) == names
    assert "out.json" in names or suffix == ""


def test_overwrite_replaces_every_file_when_all_are_written(tmp_path):
    nrrd = write_volume(read_volume(small_series(tmp_path / "in").folder), tmp_path / "in.nrrd")
    paths = _earlier_result(tmp_path, nrrd, None)
    before = snapshot(paths["out"].parent)
    enhance_file(nrrd, paths["out"], uncertainty_path=paths["unc"], save_model_path=paths["saved"],
                 device="cpu", preset=_tiny(), overwrite=True, target_spacing_mm=1.0)  # fmt: skip
    after = snapshot(paths["out"].parent)
    assert set(after) == set(before) and all(after[k] != before[k] for k in after)
    assert read_volume(paths["out"]).geometry.slice_spacing_mm == pytest.approx(1.0)


# --- a sidecar belongs to the file beside it; a result is replaced only by its own kind ------------------------


def test_a_nifti_output_never_replaces_the_sidecar_of_another_file(tmp_path, capsys, model):
    nrrd = write_volume(read_volume(small_series(tmp_path / "in").folder), tmp_path / "in.nrrd")
    source = tmp_path / "data" / "ct.nii.gz"
    write_volume(read_volume(nrrd), source)
    assert read_geometry(source).slice_thickness_mm == 3.0
    before = snapshot(source.parent)
    line = assert_error(cli(capsys, "enhance", source, "-o", tmp_path / "data" / "ct.nii", "--overwrite",
                            "--model", model, *CPU), 5, "would share the sidecar ct.json")  # fmt: skip
    assert "ct.nii.gz" in line
    with pytest.raises(OutputError, match="would share the sidecar"):
        enhance_file(source, tmp_path / "data" / "ct.nii", model_path=model, device="cpu", overwrite=True)
    assert snapshot(source.parent) == before and read_geometry(source).slice_thickness_mm == 3.0
    # a sidecar that names another file is not read for this one (and a warning says so)
    other = tmp_path / "data" / "ct.nii"
    sitk.WriteImage(sitk.ReadImage(str(source)), str(other))
    geometry = read_geometry(other)
    assert geometry.slice_thickness_mm is None
    assert any("belongs to ct.nii.gz, not to ct.nii" in w for w in geometry.warnings)


def test_overwrite_replaces_an_earlier_result_only_by_the_same_kind(tmp_path, capsys, model):
    nrrd = write_volume(read_volume(small_series(tmp_path / "in").folder), tmp_path / "in.nrrd")
    volume, unc = tmp_path / "volume.nrrd", tmp_path / "unc.nrrd"
    assert (
        main(
            ["enhance", str(nrrd), "-o", str(volume), "--uncertainty", str(unc), "--model", str(model), *CPU]
        )
        == 0
    )
    before = snapshot(volume, unc, model)
    cases = [
        (["-o", unc], "it is an uncertainty map SR4ZCT wrote earlier and this run writes an enhanced volume"),
        (
            ["-o", tmp_path / "new.nrrd", "--uncertainty", volume],
            "it is an enhanced volume SR4ZCT wrote earlier",
        ),
        (["-o", tmp_path / "new.nrrd", "--save-model", volume], "this run writes a model file"),
    ]
    for args, fragment in cases:
        assert_error(cli(capsys, "enhance", nrrd, *args, "--overwrite", "--model", model, *CPU), 5, fragment)
        with pytest.raises(OutputError, match="same kind of output"):
            enhance_file(nrrd, args[1], model_path=model, device="cpu", overwrite=True,
                         **({"uncertainty_path": args[3]} if "--uncertainty" in args else {}),
                         **({"save_model_path": args[3]} if "--save-model" in args else {}))  # fmt: skip
    assert snapshot(volume, unc, model) == before and not (tmp_path / "new.nrrd").exists()
    assert main(["enhance", str(nrrd), "-o", str(volume), "--uncertainty", str(unc), "--overwrite",
                 "--model", str(model), *CPU]) == 0  # fmt: skip
