"""Hostile NRRD / NIfTI / MHA files: truncated or damaged pixel data, NaN and Inf, a voxel size of 0,
NIfTI scaling, and detached-data headers that point outside their folder (docs/errors.md).

Each case is read through the Python API (the exception class and message) and, where the user meets it,
through the CLI with ``capfd``: one line on stderr and nothing that ITK or its C libraries print on their
own (they write to file descriptor 2, around Python).
"""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from sr4zct.cli import main
from sr4zct.errors import GeometryError, InputError
from sr4zct.io import read_geometry, read_volume

FORMATS = [
    (".nii", False),
    (".nii.gz", True),
    (".nrrd", False),
    (".nrrd", True),
    (".mha", False),
    (".mha", True),
]
IDS = ["nii", "nii.gz", "nrrd", "nrrd-gzip", "mha", "mha-zlib"]


def ct(shape=(6, 16, 16), dtype=np.int16, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.full(shape, -1000.0)
    a[:, 3:-3, 3:-3] = 40.0 + 30.0 * rng.standard_normal((shape[0], shape[1] - 6, shape[2] - 6))
    return np.round(a).astype(dtype)


def write(path: Path, array: np.ndarray, compress: bool = False, spacing=(0.8, 0.8, 2.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def run_cli(capfd, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, err


def one_line_error(err: str, *fragments: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("sr4zct: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def nifti_patch(path: Path, out: Path, **fields) -> Path:
    """Copy a NIfTI-1 file with header fields replaced (``pixdim3=``, ``scl=(slope, inter)``)."""
    data = bytearray(gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes())
    for name, value in fields.items():
        if name.startswith("pixdim"):
            k = int(name[-1])
            data[76 + 4 * k : 80 + 4 * k] = struct.pack("<f", value)
        elif name == "scl":
            data[112:120] = struct.pack("<2f", *value)
        elif name == "vox_offset":
            data[108:112] = struct.pack("<f", value)
    out.write_bytes(gzip.compress(bytes(data)) if out.name.endswith(".gz") else bytes(data))
    return out


# --- complete pixel data ----------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "compress"), FORMATS, ids=IDS)
def test_truncated_pixel_data_is_refused(tmp_path, capfd, suffix, compress):
    good = write(tmp_path / f"good{suffix}", ct(), compress)
    data = good.read_bytes()
    for fraction in (0.5, 0.97):
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(InputError, match="truncated") as info:
            read_volume(cut, thickness_mm=3.0)
        assert str(cut.name) in info.value.message and "\n" not in info.value.message
        code, err = run_cli(capfd, "enhance", cut, "-o", tmp_path / "o.nrrd", "--thickness", "3", "--quiet")
        assert code == 2
        one_line_error(err, "truncated")
        assert not (tmp_path / "o.nrrd").exists()
    # the intact file reads exactly
    np.testing.assert_array_equal(read_volume(good, thickness_mm=3.0, slice_axis=0).array, ct())


def test_truncated_nifti_was_read_as_zeros_by_simpleitk(tmp_path):
    """What the check guards against: SimpleITK reads a cut NIfTI without complaint, zeros for the rest."""
    good = write(tmp_path / "good.nii.gz", ct() + 2000, compress=True)
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) * 3 // 4])
    assert (sitk.GetArrayFromImage(sitk.ReadImage(str(cut))) == 0).sum() > 0
    with pytest.raises(InputError, match="truncated"):
        read_volume(cut)


def test_damaged_compressed_data_is_refused(tmp_path):
    good = write(tmp_path / "good.nrrd", ct(), compress=True)
    header, data = good.read_bytes().split(b"\n\n", 1)
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    bad = tmp_path / "bad.nrrd"
    bad.write_bytes(header + b"\n\n" + bytes(flipped))
    with pytest.raises(InputError, match="damaged|truncated"):
        read_volume(bad, thickness_mm=3.0)


# --- NaN and Inf --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "compress"), FORMATS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_are_kept_in_every_format(tmp_path, capfd, suffix, compress, dtype):
    a = ct(dtype=dtype)
    a[2, 5, 7] = np.nan
    a[3, 1, 1] = np.inf
    a[4, 0, 0] = -np.inf
    path = write(tmp_path / f"nan{suffix}", a, compress)
    vol = read_volume(path, thickness_mm=3.0, slice_axis=0)
    assert np.isnan(vol.array[2, 5, 7]) and vol.array[3, 1, 1] == np.inf and vol.array[4, 0, 0] == -np.inf
    finite = np.isfinite(a)
    assert np.isfinite(vol.array).sum() == finite.sum()
    np.testing.assert_array_equal(vol.array[finite], a[finite].astype(np.float32))
    code, err = run_cli(capfd, "enhance", path, "-o", tmp_path / "o.nrrd", "--thickness", "3", "--quiet")
    assert code == 2
    one_line_error(err, "The volume has 1 NaN and 2 infinite voxel(s) (the first at index [2, 5, 7])")


def test_nifti_nan_restored_with_the_axes_reordered(tmp_path):
    """The thick axis last in the file: the NaN is put back at its file position, then axes move."""
    a = ct((16, 16, 6), dtype=np.float32)
    a[9, 4, 2] = np.nan
    path = write(tmp_path / "side.nii.gz", a, compress=True, spacing=(2.0, 0.8, 0.8))
    vol = read_volume(path, thickness_mm=3.0)
    assert vol.geometry.source_slice_axis == 2
    assert np.isnan(vol.array[2, 9, 4]) and np.isnan(vol.array).sum() == 1


# --- NIfTI header values ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, -2.0, float("nan"), float("inf")])
def test_nifti_voxel_size_must_be_positive(tmp_path, capfd, value):
    good = write(tmp_path / "good.nii", ct())
    bad = nifti_patch(good, tmp_path / "bad.nii", pixdim3=value)
    with pytest.raises(GeometryError, match=r"pixdim\[3\] = .*every spacing must be a positive number"):
        read_geometry(bad)
    code, err = run_cli(capfd, "info", bad)
    assert code == 3
    one_line_error(err, "pixdim[3]")
    assert "WARNING" not in err and "sform" not in err


def test_nifti_scaling(tmp_path):
    raw = ct(dtype=np.int16) + 1024
    good = write(tmp_path / "good.nii", raw)
    scaled = nifti_patch(good, tmp_path / "scaled.nii", scl=(2.0, -1024.0))
    np.testing.assert_array_equal(read_volume(scaled, slice_axis=0).array, raw * 2.0 - 1024.0)
    # nibabel writes NaN for "no scaling": the stored values
    unset = nifti_patch(good, tmp_path / "unset.nii", scl=(float("nan"), float("nan")))
    np.testing.assert_array_equal(read_volume(unset, slice_axis=0).array, raw)
    cases = {
        (0.0, 5.0): "readers disagree whether to scale",
        (2.0, float("nan")): "scl_inter nan",
        (-1.0, 0.0): "negative scl_slope",
        (1e30, 0.0): "far outside any CT scale",
    }
    for (slope, inter), fragment in cases.items():
        bad = nifti_patch(good, tmp_path / "bad.nii", scl=(slope, inter))
        with pytest.raises(InputError, match=fragment):
            read_volume(bad, thickness_mm=3.0)


def test_nifti_vox_offset_and_pairs(tmp_path):
    good = write(tmp_path / "good.nii", ct())
    with pytest.raises(InputError, match="vox_offset"):
        read_volume(nifti_patch(good, tmp_path / "bad.nii", vox_offset=10.0), thickness_mm=3.0)
    data = bytearray(good.read_bytes())
    data[344:348] = b"ni1\0"
    (tmp_path / "pair.nii").write_bytes(bytes(data))
    with pytest.raises(InputError):
        read_volume(tmp_path / "pair.nii", thickness_mm=3.0)


# --- headers SimpleITK itself cannot take ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("NDims = -1", "NDims -1 is not between 1 and 10"),
        ("NDims = 3\nDimSize = 7 6", "does not give 3 sizes"),
        ("NDims = 3\nDimSize = 7 6 5\nElementSpacing = 1 1", "ElementSpacing has 2 values, not 3"),
        ("NDims = 3\nDimSize = 7 6 5\nTransformMatrix = 1 0 0", "TransformMatrix has 3 values, not 9"),
        ("NDims = 3\nDimSize = 7 6 5\nElementNumberOfChannels = 0", "ElementNumberOfChannels 0"),
    ],
)
def test_metaimage_header_checked_before_simpleitk(tmp_path, line, fragment):
    """Found by the fuzzer: SimpleITK hangs on ``NDims = -1`` (and sizes its arrays by NDims)."""
    path = tmp_path / "x.mha"
    text = f"ObjectType = Image\n{line}\nElementType = MET_SHORT\nElementDataFile = LOCAL\n"
    path.write_bytes(text.encode() + b"\0" * 420)
    with pytest.raises(InputError, match=fragment):
        read_geometry(path)


def test_header_key_that_is_not_text(tmp_path):
    """Found by the fuzzer: a key with a byte that is not UTF-8 made SimpleITK's GetMetaData raise
    TypeError; such keys are ignored."""
    good = write(tmp_path / "good.mha", ct())
    data = good.read_bytes().replace(b"ObjectType", b"Object\xffType = Image\nObjectType", 1)
    (tmp_path / "odd.mha").write_bytes(data)
    np.testing.assert_array_equal(
        read_volume(tmp_path / "odd.mha", thickness_mm=3.0, slice_axis=0).array, ct()
    )


# --- detached data -------------------------------------------------------------------------------------

NHDR = "NRRD0004\ntype: short\ndimension: 3\nsizes: 16 16 6\nspacings: 0.8 0.8 2\nencoding: raw\nendian: little\n"
MHD = (
    "ObjectType = Image\nNDims = 3\nDimSize = 16 16 6\nElementSpacing = 0.8 0.8 2\nElementType = MET_SHORT\n"
    "BinaryData = True\nBinaryDataByteOrderMSB = False\n"
)


def _raw(folder: Path, name="ct.raw") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(ct().astype("<i2").tobytes())
    return path


def test_detached_data_beside_the_header_is_read(tmp_path):
    _raw(tmp_path / "case")
    nhdr = tmp_path / "case" / "ct.nhdr"
    nhdr.write_text(NHDR + "data file: ct.raw\n")
    mhd = tmp_path / "case" / "ct.mhd"
    mhd.write_text(MHD + "ElementDataFile = ct.raw\n")
    for path in (nhdr, mhd):
        np.testing.assert_array_equal(read_volume(path, thickness_mm=3.0, slice_axis=0).array, ct())
    # a listed or numbered set of files beside the header is fine too
    for k in range(6):
        (tmp_path / "case" / f"s{k:02d}.raw").write_bytes(ct()[k].astype("<i2").tobytes())
    listed = tmp_path / "case" / "list.mhd"
    listed.write_text(MHD + "ElementDataFile = LIST 2D\n" + "".join(f"s{k:02d}.raw\n" for k in range(6)))
    numbered = tmp_path / "case" / "numbered.nhdr"
    numbered.write_text(NHDR + "data file: s%02d.raw 0 5 1 2\n")
    for path in (listed, numbered):
        np.testing.assert_array_equal(read_volume(path, thickness_mm=3.0, slice_axis=0).array, ct())


@pytest.mark.parametrize(
    "where",
    ["absolute", "parent", "subfolder", "symlink"],
)
def test_detached_data_elsewhere_is_refused(tmp_path, capfd, where):
    secret = _raw(tmp_path / "elsewhere", "secret.raw")
    case = tmp_path / "case"
    case.mkdir()
    if where == "absolute":
        name = str(secret)
    elif where == "parent":
        name = "../elsewhere/secret.raw"
    elif where == "subfolder":
        _raw(case / "sub", "secret.raw")
        name = "sub/secret.raw"
    else:
        (case / "link.raw").symlink_to(secret)
        name = "link.raw"
    headers = {
        case / "ct.nhdr": NHDR + f"data file: {name}\n",
        case / "attached.nrrd": NHDR + f"data file: {name}\n\n",
        case / "ct.mhd": MHD + f"ElementDataFile = {name}\n",
        case / "ct.mha": MHD + f"ElementDataFile = {name}\n",
        case / "list.nhdr": NHDR + f"data file: LIST 3\n{name}\n",
        case / "list.mhd": MHD + f"ElementDataFile = LIST 3D\n{name}\n",
    }
    for path, text in headers.items():
        path.write_text(text)
        for reader in (read_geometry, read_volume):
            with pytest.raises(InputError, match="does not lie beside the header") as info:
                reader(path, thickness_mm=3.0)
            assert "allow_detached_data=True" in info.value.message
        code, err = run_cli(capfd, "info", path)
        assert code == 2
        one_line_error(err, "does not lie beside the header", "--allow-detached-data")
    # the user can say they trust the header
    vol = read_volume(case / "ct.mhd", thickness_mm=3.0, slice_axis=0, allow_detached_data=True)
    np.testing.assert_array_equal(vol.array, ct())


def test_etc_passwd_is_never_read(tmp_path):
    nhdr = tmp_path / "x.nhdr"
    nhdr.write_text(
        "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 4 4 4\nencoding: raw\ndata file: /etc/passwd\n"
    )
    mhd = tmp_path / "x.mhd"
    mhd.write_text(
        MHD.replace("16 16 6", "4 4 4").replace("MET_SHORT", "MET_UCHAR") + "ElementDataFile = /etc/passwd\n"
    )
    for path in (nhdr, mhd):
        with pytest.raises(InputError, match="/etc/passwd"):
            read_volume(path, thickness_mm=3.0)


def test_missing_data_file_beside_the_header(tmp_path):
    nhdr = tmp_path / "ct.nhdr"
    nhdr.write_text(NHDR + "data file: gone.raw\n")
    with pytest.raises(InputError, match="gone.raw"):
        read_volume(nhdr, thickness_mm=3.0)


# --- DICOM: rescale values, unreadable and empty files, unreadable folders --------------------------------


def _raw_tag(path: Path, keyword: str, value: bytes, vr: str = "DS") -> None:
    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = pydicom.dcmread(path)
    tag = Tag(keyword)
    value = value + b" " if len(value) % 2 else value
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    ds.save_as(path)


@pytest.mark.parametrize(
    ("keyword", "value", "fragment"),
    [
        ("RescaleIntercept", b"abc", "has a RescaleIntercept that is not a number ('abc')"),
        ("RescaleSlope", b"x1", "has a RescaleSlope that is not a number ('x1')"),
        ("RescaleIntercept", b"nan", "invalid RescaleSlope/RescaleIntercept (1, nan)"),
        ("RescaleSlope", b"-1", "the slope must be a positive number"),
        ("RescaleSlope", b"0", "the slope must be a positive number"),
        ("RescaleSlope", b"1e30", "far outside any CT scale"),
        ("RescaleIntercept", b"-1e30", "far outside any CT scale"),
    ],
)
def test_unusable_rescale_values_are_refused(tmp_path, capfd, keyword, value, fragment):
    from dicom_factory import write_series

    s = write_series(tmp_path / "ct", n_slices=4, rows=8, columns=8)
    _raw_tag(s.paths[2], keyword, value)
    with pytest.raises(InputError) as info:
        read_volume(s.folder)
    assert fragment in info.value.message and s.paths[2].name in info.value.message
    code, err = run_cli(capfd, "enhance", s.folder, "-o", tmp_path / "o.nrrd", "--quiet")
    assert code == 2
    one_line_error(err, fragment)
    assert "RuntimeWarning" not in err and "overflow" not in err


def test_missing_or_empty_rescale_means_none(tmp_path):
    from dicom_factory import write_series

    s = write_series(tmp_path / "ct", n_slices=4, rows=8, columns=8, rescale_intercept=0.0)
    for path in s.paths:  # empty on every slice: none
        _raw_tag(path, "RescaleIntercept", b"")
    np.testing.assert_array_equal(read_volume(s.folder).array, s.hu)
    _raw_tag(s.paths[1], "RescaleIntercept", b"0")  # on some slices only: refused (test_io_safety)
    with pytest.raises(InputError, match="have no RescaleIntercept"):
        read_volume(s.folder)
    s = write_series(tmp_path / "ct2", n_slices=4, rows=8, columns=8, rescale_intercept=0.0,
                     missing_tags=["RescaleIntercept", "RescaleSlope"])  # fmt: skip
    np.testing.assert_array_equal(read_volume(s.folder).array, s.hu)


def test_unreadable_slice_file_is_refused(tmp_path, capfd):
    """A file that cannot be read may be a slice: never skipped silently (/proc/self/mem fails to read
    for any user, root included)."""
    from dicom_factory import write_series

    if not Path("/proc/self/mem").exists():
        pytest.skip("needs /proc/self/mem (Linux)")
    s = write_series(tmp_path / "ct", n_slices=5, rows=8, columns=8)
    s.paths[2].unlink()
    (s.folder / s.paths[2].name).symlink_to("/proc/self/mem")
    with pytest.raises(InputError, match=f"Cannot read {s.folder / s.paths[2].name}: "):
        read_geometry(s.folder)
    code, err = run_cli(capfd, "info", s.folder)
    assert code == 2
    one_line_error(err, "Cannot read", "may be a slice of the series")


def test_empty_slice_file_is_refused(tmp_path, capfd):
    from dicom_factory import write_series

    s = write_series(tmp_path / "ct", n_slices=5, rows=8, columns=8)
    s.paths[2].write_bytes(b"")
    with pytest.raises(InputError, match=r"1 empty \(0-byte\) file\(s\) lie among the DICOM images"):
        read_geometry(s.folder)
    code, err = run_cli(capfd, "enhance", s.folder, "-o", tmp_path / "o.nrrd", "--quiet")
    assert code == 2
    one_line_error(err, "empty (0-byte)", s.paths[2].name)
    # a folder of empty files only: no DICOM images, and the message says they are empty
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a").write_bytes(b"")
    with pytest.raises(InputError, match=r"No DICOM images found .*\(1 file\(s\) checked, 1 of them empty"):
        read_geometry(tmp_path / "blank")


def test_unreadable_folder_is_refused(tmp_path, capfd, monkeypatch):
    import os

    from dicom_factory import write_series

    s = write_series(tmp_path / "ct" / "part1", n_slices=3, rows=8, columns=8)
    locked = tmp_path / "ct" / "part2"
    write_series(locked, n_slices=3, rows=8, columns=8)
    os.chmod(locked, 0)
    try:
        if os.access(locked, os.R_OK):  # root reads anything: the OS refusing is simulated
            real = os.scandir

            def scandir(path="."):
                if Path(path) == locked:
                    raise PermissionError(13, "Permission denied", str(path))
                return real(path)

            monkeypatch.setattr(os, "scandir", scandir)
        with pytest.raises(InputError, match=f"Cannot read the folder {locked}: Permission denied"):
            read_geometry(s.folder.parent)
        code, err = run_cli(capfd, "info", s.folder.parent)
        assert code == 2
        one_line_error(err, "Cannot read the folder")
    finally:
        os.chmod(locked, 0o755)


# --- writers: unknown extensions, NaN/Inf, a full disk ------------------------------------------------


def _volume(array=None):
    from sr4zct.volume import Volume, make_geometry

    array = ct(dtype=np.float32) if array is None else array
    geometry = make_geometry(
        array.shape, slice_spacing_mm=2.0, slice_thickness_mm=3.0, pixel_spacing_mm=(0.8, 0.8)
    )
    return Volume(array, geometry)


@pytest.mark.parametrize("name", ["out.png", "out.xyz", "out.dcm", "out.nii.bz2"])
def test_unknown_output_extension_is_refused(tmp_path, capfd, name):
    from sr4zct.errors import OutputError
    from sr4zct.io import check_output, write_volume

    src = write(tmp_path / "in.nrrd", ct())
    out = tmp_path / name
    for call in (lambda: write_volume(_volume(), out), lambda: check_output(out)):
        with pytest.raises(OutputError, match=f"SR4ZCT does not write '{out.suffix}' files"):
            call()
    code, err = run_cli(capfd, "enhance", src, "-o", out, "--thickness", "3", "--quiet")
    assert code == 5
    one_line_error(err, "does not write", "a folder name without an extension for a DICOM series")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nrrd"]


def test_dicom_folder_names(tmp_path):
    from sr4zct.io import output_kind, read_volume, write_volume

    assert output_kind(tmp_path / "series") == "dicom" and output_kind(tmp_path / "series.2") == "dicom"
    (tmp_path / "existing.d").mkdir()
    assert output_kind(tmp_path / "existing.d") == "dicom"
    written = write_volume(_volume(), tmp_path / "series.2")
    assert read_volume(written).array.shape == (6, 16, 16)


@pytest.mark.parametrize("name", ["o.nrrd", "o.mha", "o.nii", "o.nii.gz", "o_dicom"])
def test_writers_never_write_nan_or_inf(tmp_path, name):
    from sr4zct.errors import OutputError
    from sr4zct.io import write_volume

    a = ct(dtype=np.float32)
    a[1, 2, 3] = np.nan
    a[2, 3, 4] = -np.inf
    with pytest.raises(OutputError, match=r"Refusing to write .*: the volume has 1 NaN and 1 infinite voxel"):
        write_volume(_volume(a), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii", ".nii.gz"])
def test_disk_full_while_writing_an_image_file(tmp_path, capfd, monkeypatch, suffix):
    """The temporary file is a link to /dev/full (every write fails with ENOSPC): SimpleITK raises ITK's
    text for NRRD/MHA and, for NIfTI, only prints a line and returns. Both end in the documented message
    when the disk has no room left, and nothing stays behind."""
    import shutil

    from sr4zct.errors import OutputError
    from sr4zct.io import atomic, write_volume

    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    real = atomic.temporary_name

    def onto_dev_full(path):
        tmp = real(path)
        tmp.symlink_to("/dev/full")
        return tmp

    monkeypatch.setattr(atomic, "temporary_name", onto_dev_full)
    out = tmp_path / f"o{suffix}"
    with pytest.raises(OutputError, match=r"Cannot write .*; nothing was written\.|The disk is full"):
        write_volume(_volume(), out)
    assert list(tmp_path.iterdir()) == []
    # as on a real full disk: no free space left
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.raises(OutputError, match=f"The disk is full while writing {out}; nothing was written."):
        write_volume(_volume(), out)
    assert list(tmp_path.iterdir()) == []
    assert "ERROR" not in capfd.readouterr().err


# --- overwrite replaces only what SR4ZCT wrote --------------------------------------------------------


def _state(path: Path) -> dict[str, tuple[bytes, int]]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def _foreign_outputs(tmp_path: Path) -> dict[Path, str]:
    """Existing paths an output name may hit that SR4ZCT did not write, and the reason given."""
    from dicom_factory import write_series

    out = {}
    (tmp_path / "text.nrrd").write_bytes(b"keep me")
    out[tmp_path / "text.nrrd"] = "its header cannot be read"
    for suffix in (".nrrd", ".mha", ".nii", ".nii.gz"):
        path = write(tmp_path / f"other{suffix}", ct())  # SimpleITK, not SR4ZCT
        out[path] = "no SR4ZCT" if "nii" not in suffix else "no SR4ZCT sidecar"
    scanner = write_series(tmp_path / "scanner", n_slices=3, rows=8, columns=8)
    out[scanner.folder] = "it holds DICOM files SR4ZCT did not write"
    return out


def test_overwrite_refuses_what_sr4zct_did_not_write(tmp_path, capfd):
    from sr4zct.errors import OutputError
    from sr4zct.io import check_output, write_volume

    for path, reason in _foreign_outputs(tmp_path).items():
        before = _state(path)
        for call in (
            lambda p=path: check_output(p, overwrite=True),
            lambda p=path: write_volume(_volume(), p, overwrite=True),
        ):
            with pytest.raises(OutputError, match="so it is not a previous output of SR4ZCT") as info:
                call()
            assert reason in info.value.message and "overwrite=True" in info.value.message
        assert _state(path) == before
    # through the CLI the refusal comes before any work: the input (no thickness) is never looked at
    src = write(tmp_path / "in.nrrd", ct())
    code, err = run_cli(capfd, "enhance", src, "-o", tmp_path / "scanner", "--overwrite", "--quiet")
    assert code == 5
    one_line_error(err, "Refusing to replace", "(--overwrite replaces only files and folders SR4ZCT wrote)")


def test_overwrite_refuses_a_mixed_dicom_folder(tmp_path, capfd):
    """An SR4ZCT series with someone's file added: refused up front, the folder stays as it is."""
    import shutil

    from dicom_factory import write_series
    from sr4zct.errors import OutputError
    from sr4zct.io import check_output, write_volume

    ours = write_volume(_volume(), tmp_path / "enhanced")
    scanner = write_series(tmp_path / "scanner", n_slices=2, rows=8, columns=8)
    shutil.copy(scanner.paths[0], ours / "ZZ.dcm")
    (tmp_path / "enhanced2").mkdir()
    shutil.copytree(ours, tmp_path / "enhanced2", dirs_exist_ok=True)
    (tmp_path / "enhanced2" / "ZZ.dcm").unlink()
    (tmp_path / "enhanced2" / "notes.txt").write_text("mine")
    (tmp_path / "enhanced3").mkdir()
    shutil.copytree(ours, tmp_path / "enhanced3", dirs_exist_ok=True)
    (tmp_path / "enhanced3" / "ZZ.dcm").unlink()
    (tmp_path / "enhanced3" / "sub").mkdir()
    cases = {
        ours: "DICOM files SR4ZCT did not write (ZZ.dcm)",
        tmp_path / "enhanced2": "files that are not DICOM (notes.txt)",
        tmp_path / "enhanced3": "it contains sub-folders",
    }
    src = write(tmp_path / "in.nrrd", ct())
    for folder, reason in cases.items():
        before = _state(folder)
        with pytest.raises(OutputError, match=re.escape(reason)):
            check_output(folder, overwrite=True)
        with pytest.raises(OutputError, match=re.escape(reason)):
            write_volume(_volume(), folder, overwrite=True)
        code, err = run_cli(capfd, "enhance", src, "-o", folder, "--overwrite", "--quiet")
        assert code == 5
        one_line_error(err, reason)
        assert _state(folder) == before


def test_overwrite_replaces_what_sr4zct_wrote(tmp_path):
    from sr4zct.io import read_volume, write_volume
    from sr4zct.io.image import sidecar_path

    for name in ("o.nrrd", "o.mha", "o.nii", "g.nii.gz", "o_dicom"):
        path = write_volume(_volume(), tmp_path / name)
        write_volume(_volume(ct(dtype=np.float32) + 5), path, overwrite=True)
        np.testing.assert_array_equal(read_volume(path, slice_axis=0).array, ct() + 5.0)
    # a NIfTI SR4ZCT wrote is recognised by its descrip even without its sidecar
    sidecar_path(tmp_path / "o.nii").unlink()
    write_volume(_volume(), tmp_path / "o.nii", overwrite=True)


def test_nifti_sidecar_of_someone_else_is_kept(tmp_path):
    from sr4zct.errors import OutputError
    from sr4zct.io import check_output, write_volume
    from sr4zct.io.image import sidecar_path

    side = sidecar_path(tmp_path / "o.nii.gz")
    side.write_text('{"Modality": "CT"}')
    with pytest.raises(OutputError, match="The sidecar .* exists; use overwrite=True"):
        check_output(tmp_path / "o.nii.gz")
    for call in (lambda: check_output(tmp_path / "o.nii.gz", overwrite=True),
                 lambda: write_volume(_volume(), tmp_path / "o.nii.gz", overwrite=True)):  # fmt: skip
        with pytest.raises(OutputError, match="is not a sidecar SR4ZCT wrote"):
            call()
    assert side.read_text() == '{"Modality": "CT"}' and not (tmp_path / "o.nii.gz").exists()


def test_overwrite_of_a_model_file(tmp_path):
    import torch
    from sr4zct.errors import OutputError
    from sr4zct.io.atomic import check_output_path
    from sr4zct.method.networks import build_network
    from sr4zct.run.model_file import save_model

    other = tmp_path / "weights.pt"
    torch.save({"format": "someone-else", "w": torch.zeros(2)}, other)
    with pytest.raises(OutputError, match="it is not an SR4ZCT model file"):
        check_output_path(other, overwrite=True)
    model = build_network("default", {"layers": 2, "channels": 4, "unshuffle": 2})
    ours = save_model(tmp_path / "m.pt", model, network="default", info={})
    assert check_output_path(ours, overwrite=True) == ours


def test_overwrite_of_a_preview_png(tmp_path):
    from PIL import Image
    from sr4zct.errors import OutputError
    from sr4zct.io.atomic import check_output_path
    from sr4zct.run.preview import write_preview_png

    Image.new("L", (4, 4)).save(tmp_path / "photo.png")
    with pytest.raises(OutputError, match="it is not an SR4ZCT preview"):
        check_output_path(tmp_path / "photo.png", overwrite=True)
    ours = write_preview_png(tmp_path / "p.png", np.zeros((4, 4)), np.zeros((4, 4)), "step 1")
    assert check_output_path(ours, overwrite=True) == ours


# --- model files: every metadata field checked -----------------------------------------------------------

MODEL_INFO = {
    "normalisation": {"offset": 1000.0, "scale": 1000.0},
    "thickness_mm": 3.0,
    "spacing_mm": 2.0,
    "profile": "box",
    "pixel_spacing_mm": (0.8, 0.8),
    "seed": 0,
    "preset": "tiny",
    "training": {"training_steps": 2},
}


def model_file(path: Path, **changes) -> Path:
    """A small saved model, then ``changes`` written into its payload (``None`` deletes a field)."""
    import torch
    from sr4zct.method.networks import build_network
    from sr4zct.run.model_file import save_model

    model = build_network("default", {"layers": 2, "channels": 4, "unshuffle": 2})
    save_model(path, model, network="default", info=dict(MODEL_INFO))
    if changes:
        payload = torch.load(path, weights_only=True)
        for key, value in changes.items():
            if value is None:
                payload.pop(key, None)
            elif key == "state_dict_nan":
                payload["state_dict"] = {
                    k: torch.full_like(v, float("nan")) for k, v in payload["state_dict"].items()
                }
            else:
                payload[key] = value
        torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"format_version": "abc"}, "format_version"),
        ({"format_version": True}, "format_version"),
        ({"thickness_mm": "abc"}, "thickness_mm"),
        ({"thickness_mm": float("nan")}, "thickness_mm"),
        ({"thickness_mm": 0.0}, "thickness_mm"),
        ({"spacing_mm": 1e9}, "spacing_mm"),
        ({"spacing_mm": None}, "spacing_mm"),
        ({"pixel_spacing_mm": 5}, "pixel_spacing_mm"),
        ({"pixel_spacing_mm": (0.8, -1.0)}, "pixel_spacing_mm"),
        ({"pixel_spacing_mm": ("a", "b")}, "pixel_spacing_mm"),
        ({"profile": "triangle"}, "profile"),
        ({"profile": None}, "profile"),
        ({"normalisation": None}, None),  # absent: the default normalisation applies
        ({"normalisation": "abc"}, "normalisation"),
        ({"normalisation": {"offset": 1000.0}}, "normalisation"),
        ({"normalisation": {"offset": 1000.0, "scale": 0.0}}, "normalisation.scale"),
        ({"normalisation": {"offset": 1000.0, "scale": float("nan")}}, "normalisation.scale"),
        ({"normalisation": {"offset": float("inf"), "scale": 1000.0}}, "normalisation.offset"),
        ({"normalisation": {"offset": 1000.0, "scale": 1000.0, "gain": 2.0}}, "normalisation"),
        ({"network": "unet"}, "network"),
        ({"network": 5}, "network"),
        ({"network_config": None}, "network_config"),
        ({"network_config": {"layers": 40, "channels": 3000, "unshuffle": 2}}, "network_config.channels"),
        ({"network_config": {"layers": 2.5, "channels": 4, "unshuffle": 2}}, "network_config.layers"),
        ({"network_config": {"layers": 2, "channels": 4, "unshuffle": 3}}, "network_config.unshuffle"),
        ({"network_config": {"depth": 10}}, "network_config"),
        ({"network_config": {"layers": 64, "channels": 512, "unshuffle": 1}}, "parameters, more than"),
        ({"state_dict_nan": True}, "holds NaN or Inf weights"),
        ({"state_dict": {}}, "state_dict"),
        ({"state_dict": {"body.0.weight": "abc"}}, "state_dict"),
        ({"seed": "x"}, "seed"),
        ({"training": 5}, "training"),
        ({"sr4zct_version": 3}, "sr4zct_version"),
    ],
)
def test_model_metadata_is_type_and_range_checked(tmp_path, capfd, changes, field):
    from sr4zct.errors import ModelError
    from sr4zct.run.model_file import load_model
    from sr4zct.run.validation import validate_model_file

    path = model_file(tmp_path / "m.pt", **changes)
    if field is None:
        load_model(path)
        validate_model_file(path)
        return
    for call in (load_model, validate_model_file):
        with pytest.raises(ModelError, match=re.escape(field)) as info:
            call(path)
        assert "\n" not in info.value.message
    # through the CLI: exit 6 before the input is read (this input has no thickness: that would be 4)
    src = write(tmp_path / "in.nrrd", ct())
    code, err = run_cli(capfd, "enhance", src, "-o", tmp_path / "o.nrrd", "--model", path, "--quiet")
    assert code == 6
    one_line_error(err, "is damaged" if "format" not in field or "version" in field else "")
    assert not (tmp_path / "o.nrrd").exists()


def test_a_good_model_file_loads_and_fits(tmp_path):
    import torch
    from sr4zct.run.model_file import check_model_geometry, load_model

    model, info = load_model(model_file(tmp_path / "m.pt"))
    check_model_geometry(info, thickness=3.0, spacing=2.0, pixel=(0.8, 0.8), profile="box", path="m.pt")
    x = torch.zeros(1, 1, 8, 8)
    assert torch.isfinite(model(x)).all()


def test_network_too_large_for_the_memory(tmp_path, monkeypatch):
    from sr4zct import system
    from sr4zct.errors import ResourceError
    from sr4zct.run.model_file import load_model

    path = model_file(tmp_path / "m.pt", network_config={"layers": 30, "channels": 256, "unshuffle": 2})
    monkeypatch.setattr(system, "available_memory_bytes", lambda: 50 * 2**20)
    with pytest.raises(ResourceError, match="larger than this machine holds"):
        load_model(path)


def test_a_model_with_nan_weights_is_never_saved(tmp_path):
    import torch
    from sr4zct.errors import OutputError
    from sr4zct.method.networks import build_network
    from sr4zct.run.model_file import save_model

    model = build_network("default", {"layers": 2, "channels": 4, "unshuffle": 2})
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(OutputError, match="its weights hold NaN or Inf"):
        save_model(tmp_path / "m.pt", model, network="default", info=dict(MODEL_INFO))
    assert list(tmp_path.iterdir()) == []


def test_pipes_and_devices_are_not_slices(tmp_path):
    """A named pipe among the slices would make any read wait forever: it is skipped (it cannot be a
    DICOM file); as the input itself it is refused."""
    import os

    from dicom_factory import write_series

    s = write_series(tmp_path / "ct", n_slices=4, rows=8, columns=8)
    os.mkfifo(s.folder / "pipe")
    (s.folder / "zero").symlink_to("/dev/zero")
    np.testing.assert_array_equal(read_volume(s.folder).array, s.hu)
    os.mkfifo(tmp_path / "in.nrrd")
    with pytest.raises(InputError, match="is neither a file nor a folder"):
        read_volume(tmp_path / "in.nrrd")
