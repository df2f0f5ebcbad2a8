"""Property-based tests: NRRD, MHA and NIfTI files with damaged headers end in a result or an SR4ZCTError.

A small volume (5 x 6 x 7 voxels, written by SimpleITK: attached and detached, raw and compressed) gets a
random list of header changes (a field set to a hostile value, a line deleted, duplicated or added; for
NIfTI a binary header field overwritten) and byte-level damage (truncation, a flipped byte).
``read_geometry`` and ``read_volume`` must then

* return a volume whose shapes agree and whose spacing is positive, or raise the product's exception
  family with a one-line message; nothing else, and nothing printed by ITK on the console;
* never return bytes of a file outside the header's folder (a "secret" file in the parent folder holds a
  value the volume never has);
* never succeed on a file cut short (unless a changed size fits what is left);
* return exactly the stored values when no field that describes the pixel data was touched.
"""

from __future__ import annotations

import functools
import gzip
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sr4zct.errors import SR4ZCTError
from sr4zct.io import read_geometry, read_volume

SHAPE = (5, 6, 7)
#: The secret file's bytes: 0x5A everywhere. As int8/16/32/64 or float these are values the volume never
#: holds, so finding them means a header made the reader use the secret file.
SECRET_BYTE = 0x5A
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _volume(dtype) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.round(rng.uniform(-1100, 300, SHAPE)).astype(dtype)


def _secret_values() -> set[float]:
    raw = bytes([SECRET_BYTE]) * 8
    values = set()
    for code in ("i1", "u1", "<i2", ">i2", "<u2", "<i4", ">i4", "<f4", ">f4", "<f8", "<i8"):
        dtype = np.dtype(code)
        values.add(float(np.frombuffer(raw[: dtype.itemsize], dtype=dtype)[0]))
    return {v for v in values if abs(v) < 3e38}  # as the float32 volume can hold them


SECRET_VALUES = _secret_values()


@functools.cache
def templates() -> dict[str, dict[str, bytes]]:
    """name -> {file name: bytes}; the first file is the one to read."""
    out: dict[str, dict[str, bytes]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, dtype, compress in (
            ("ct.nrrd", np.int16, False),
            ("ctz.nrrd", np.float32, True),
            ("ct.mha", np.int16, False),
            ("ctz.mha", np.float32, True),
            ("ct.nii", np.int16, False),
            ("ctf.nii", np.float32, False),
            ("ct.nii.gz", np.float32, True),
        ):
            image = sitk.GetImageFromArray(_volume(dtype))
            image.SetSpacing((0.8, 0.8, 2.0))
            sitk.WriteImage(image, str(folder / name), useCompression=compress)
            out[name] = {name: (folder / name).read_bytes()}
    data = _volume(np.int16).astype("<i2").tobytes()
    out["ct.nhdr"] = {
        "ct.nhdr": b"NRRD0004\ntype: short\ndimension: 3\nsizes: 7 6 5\nspacings: 0.8 0.8 2\nencoding: raw\n"
        b"endian: little\ndata file: ct.raw\n",
        "ct.raw": data,
    }
    out["ct.mhd"] = {
        "ct.mhd": b"ObjectType = Image\nNDims = 3\nDimSize = 7 6 5\nElementSpacing = 0.8 0.8 2\n"
        b"ElementType = MET_SHORT\nBinaryData = True\nBinaryDataByteOrderMSB = False\nElementDataFile = ct.raw\n",
        "ct.raw": data,
    }
    return out


def expected_values(name: str) -> np.ndarray:
    dtype = np.int16 if name in ("ct.nrrd", "ct.mha", "ct.nii", "ct.nhdr", "ct.mhd") else np.float32
    return np.sort(_volume(dtype).astype(np.float32).ravel())


def _check(files: dict[str, bytes], *, truncated: bool, data_intact: bool, name: str, capfd) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "secret.raw").write_bytes(bytes([SECRET_BYTE]) * 4096)
        case = root / "case"
        case.mkdir()
        (case / "secret_beside.raw").write_bytes(bytes([SECRET_BYTE]) * 16)  # too small to be used whole
        for file_name, data in files.items():
            (case / file_name).write_bytes(data)
        path = case / next(iter(files))
        results = []
        for reader in (read_geometry, read_volume):
            try:
                results.append(reader(path, thickness_mm=3.0))
            except SR4ZCTError as exc:
                assert exc.message and "\n" not in exc.message.strip(), exc.message
                results.append(None)
        geometry, volume = results
        err = capfd.readouterr().err
        assert "WARNING" not in err and "ERROR" not in err and "MetaImage" not in err, err
        if geometry is not None:
            assert all(np.isfinite(geometry.spacing_mm)) and min(geometry.spacing_mm) > 0
        if volume is None:
            return
        assert not truncated, "a file cut short was read"
        assert volume.array.shape == volume.geometry.shape and volume.array.dtype == np.float32
        assert min(volume.geometry.spacing_mm) > 0
        values = volume.array[np.isfinite(volume.array)]
        hits = np.isin(values, np.array(sorted(SECRET_VALUES), dtype=np.float32)).mean() if values.size else 0
        assert hits < 0.5, "bytes of a file outside the header's folder were read"
        if data_intact and name not in ("secret",):
            np.testing.assert_array_equal(np.sort(volume.array.ravel()), expected_values(name))


# --- text headers: NRRD and MetaImage ---------------------------------------------------------------------

HOSTILE = (
    "", " ", "0", "-1", "1", "2", "3", "4", "7 6 5", "7 6 5 2", "70000 60000 50000", "1e400", "nan", "inf",
    "-inf", "abc", "short", "float", "double", "uchar", "block", "raw", "gzip", "bzip2", "ascii", "hex",
    "little", "big", "True", "False", "MET_FLOAT", "MET_UCHAR", "MET_LONG", "LOCAL", "LIST", "LIST 2D",
    "/etc/passwd", "../secret.raw", "secret_beside.raw", "ct.raw", "sub/ct.raw", "ct%d.raw 0 4 1",
    "../secret%d.raw 0 1 1", "(0,0,0) (0,1,0) (0,0,1)", "(1,0,0) (0,1,0) (0,0,2)", "none", "\x00",
    "0.8 0.8 0", "0.8 -0.8 2", "1 0 0 0 1 0 0 0 1", "0 0 0 0 0 0 0 0 0", "-1", "99999999999",
)  # fmt: skip
NRRD_FIELDS = ("type", "dimension", "sizes", "encoding", "endian", "spacings", "space directions",
               "space origin", "data file", "byte skip", "line skip", "kinds", "space")  # fmt: skip
META_FIELDS = ("NDims", "DimSize", "ElementType", "ElementSpacing", "ElementDataFile", "BinaryData",
               "BinaryDataByteOrderMSB", "CompressedData", "CompressedDataSize", "HeaderSize", "Offset",
               "TransformMatrix", "ElementNumberOfChannels", "ObjectType")  # fmt: skip
DATA_FIELDS = {
    "type", "dimension", "sizes", "encoding", "endian", "data file", "byte skip", "line skip", "NDims",
    "DimSize", "ElementType", "ElementDataFile", "BinaryData", "BinaryDataByteOrderMSB", "CompressedData",
    "CompressedDataSize", "HeaderSize", "ElementNumberOfChannels", "ElementByteOrderMSB",
}  # fmt: skip

text_value = st.one_of(st.sampled_from(HOSTILE), st.integers(-(2**40), 2**40).map(str), st.text(max_size=12))
text_operation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 99), text_value),
    st.tuples(st.just("delete"), st.integers(0, 99)),
    st.tuples(st.just("duplicate"), st.integers(0, 99)),
    st.tuples(st.just("insert"), st.integers(0, 99), st.integers(0, 99), text_value),
)
byte_damage = st.one_of(
    st.none(),
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("flip"), st.floats(0.0, 1.0), st.integers(1, 255)),
)


def _split_text_header(data: bytes, meta: bool) -> tuple[list[str], bytes]:
    if meta:
        end = data.index(b"ElementDataFile")
        end = data.index(b"\n", end) + 1
    else:
        end = data.index(b"\n\n") + 2 if b"\n\n" in data else len(data)
    text = data[:end].decode("latin-1")
    return text.split("\n"), data[end:]


def _mutate_text(data: bytes, ops: list[tuple], meta: bool) -> tuple[bytes, bool]:
    """Apply header operations; returns the bytes and whether a field describing the data changed."""
    lines, payload = _split_text_header(data, meta)
    head, tail = lines[:1], lines[1:]
    blank = [line for line in tail if line == ""]
    body = [line for line in tail if line != ""]
    if meta:
        head, body = [], [line for line in lines if line != ""]
    fields = META_FIELDS if meta else NRRD_FIELDS
    sep = " = " if meta else ": "
    touched = False
    for op in ops:
        kind = op[0]
        if not body and kind != "insert":
            continue
        k = op[1] % max(1, len(body))
        if kind == "set":
            key = body[k].split(sep, 1)[0]
            body[k] = f"{key}{sep}{op[2]}"
            touched |= key in DATA_FIELDS
        elif kind == "delete":
            touched |= body[k].split(sep, 1)[0] in DATA_FIELDS
            del body[k]
        elif kind == "duplicate":
            touched |= body[k].split(sep, 1)[0] in DATA_FIELDS
            body.insert(k, body[k])
        else:
            key = fields[op[2] % len(fields)]
            body.insert(k if body else 0, f"{key}{sep}{op[3]}")
            touched |= key in DATA_FIELDS
    if meta:
        # MetaIO reads up to ElementDataFile: keep that line last, as every writer does
        last = [line for line in body if line.startswith("ElementDataFile")]
        body = [line for line in body if not line.startswith("ElementDataFile")] + last[-1:]
        text = "\n".join(body) + "\n"
    else:
        text = "\n".join(head + body) + ("\n" + "\n".join(blank) if blank else "\n")
    return text.encode("latin-1", "replace") + payload, touched


def _damage(data: bytes, damage) -> tuple[bytes, bool, bool]:
    """Returns (bytes, truncated, data changed)."""
    if damage is None:
        return data, False, False
    if damage[0] == "truncate":
        return data[: int(damage[1] * len(data))], True, True
    k = min(len(data) - 1, int(damage[1] * len(data)))
    out = bytearray(data)
    out[k] ^= damage[2]
    return bytes(out), False, True


@pytest.mark.filterwarnings("ignore::UserWarning")
@SETTINGS
@given(
    name=st.sampled_from(["ct.nrrd", "ctz.nrrd", "ct.nhdr"]),
    ops=st.lists(text_operation, min_size=1, max_size=4),
    damage=byte_damage,
)
def test_fuzz_nrrd_headers(capfd, name, ops, damage):
    files = dict(templates()[name])
    first = next(iter(files))
    files[first], touched = _mutate_text(files[first], ops, meta=False)
    files[first], truncated, changed = _damage(files[first], damage)
    # a flipped or cut byte may land in the header text too: then any field may have changed
    intact = not touched and not changed
    cut = truncated and not touched and name != "ct.nhdr"  # a changed size may fit what is left
    _check(files, truncated=cut, data_intact=intact, name=name, capfd=capfd)


@pytest.mark.filterwarnings("ignore::UserWarning")
@SETTINGS
@given(
    name=st.sampled_from(["ct.mha", "ctz.mha", "ct.mhd"]),
    ops=st.lists(text_operation, min_size=1, max_size=4),
    damage=byte_damage,
)
def test_fuzz_mha_headers(capfd, name, ops, damage):
    files = dict(templates()[name])
    first = next(iter(files))
    files[first], touched = _mutate_text(files[first], ops, meta=True)
    files[first], truncated, changed = _damage(files[first], damage)
    intact = not touched and not changed
    cut = truncated and not touched and name != "ct.mhd"  # a changed size may fit what is left
    _check(files, truncated=cut, data_intact=intact, name=name, capfd=capfd)


# --- binary headers: NIfTI-1 -------------------------------------------------------------------------------

# (offset, struct format, describes the pixel data)
NIFTI_FIELDS = {
    "sizeof_hdr": (0, "<i", True),
    "dim0": (40, "<h", True), "dim1": (42, "<h", True), "dim2": (44, "<h", True), "dim3": (46, "<h", True),
    "dim4": (48, "<h", True), "dim5": (50, "<h", True),
    "datatype": (70, "<h", True), "bitpix": (72, "<h", True),
    "pixdim0": (76, "<f", False), "pixdim1": (80, "<f", False), "pixdim2": (84, "<f", False),
    "pixdim3": (88, "<f", False),
    "vox_offset": (108, "<f", True), "scl_slope": (112, "<f", True), "scl_inter": (116, "<f", True),
    "qform_code": (252, "<h", False), "sform_code": (254, "<h", False),
    "quatern_b": (256, "<f", False), "quatern_c": (260, "<f", False), "quatern_d": (264, "<f", False),
    "qoffset_x": (268, "<f", False), "srow_x0": (280, "<f", False), "srow_y1": (300, "<f", False),
    "srow_z2": (320, "<f", False), "srow_z3": (324, "<f", False),
    "magic": (344, "4s", True),
}  # fmt: skip
number = st.one_of(
    st.sampled_from([0, 1, -1, 2, 3, 4, 5, 7, 8, 16, 64, 255, 256, 348, 352, 512, 1024, 32767, -32768]),
    st.integers(-(2**31), 2**31 - 1),
)
real = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0, 0.5, 1e-30, 1e30, 352.0, 353.5, float("nan"), float("inf")]),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
)
nifti_operation = st.tuples(
    st.sampled_from(sorted(NIFTI_FIELDS)),
    number,
    real,
    st.sampled_from([b"n+1\0", b"ni1\0", b"n+2\0", b"xxxx"]),
)


def _set_nifti(data: bytearray, field: str, integer: int, value: float, magic: bytes) -> None:
    offset, fmt, _ = NIFTI_FIELDS[field]
    if fmt == "4s":
        packed = magic
    elif fmt.endswith("f"):
        packed = struct.pack(fmt, value)
    else:
        lo, hi = (-(2**15), 2**15 - 1) if fmt.endswith("h") else (-(2**31), 2**31 - 1)
        packed = struct.pack(fmt, min(max(integer, lo), hi))
    data[offset : offset + len(packed)] = packed


@pytest.mark.filterwarnings("ignore::UserWarning")
@SETTINGS
@given(
    name=st.sampled_from(["ct.nii", "ctf.nii", "ct.nii.gz"]),
    ops=st.lists(nifti_operation, min_size=1, max_size=4),
    damage=byte_damage,
    damage_compressed=st.booleans(),
)
def test_fuzz_nifti_headers(capfd, name, ops, damage, damage_compressed):
    data = templates()[name][name]
    compressed = name.endswith(".gz")
    raw = bytearray(gzip.decompress(data) if compressed else data)
    touched = False
    for field, integer, value, magic in ops:
        before = bytes(raw)
        _set_nifti(raw, field, integer, value, magic)
        touched |= NIFTI_FIELDS[field][2] and bytes(raw) != before
    if compressed and damage_compressed:
        out, truncated, changed = _damage(gzip.compress(bytes(raw)), damage)
    else:
        out, truncated, changed = _damage(bytes(raw), damage)
        out = gzip.compress(out) if compressed else out
    cut = truncated and not touched  # a changed size may fit what is left
    _check({name: out}, truncated=cut, data_intact=not touched and not changed, name=name, capfd=capfd)
