"""Property-based test: corrupted DICOM series end in a result or an SR4ZCTError, never anything else.

A small synthetic series (4 slices of 8 x 8) is corrupted by a random list of operations: delete, mangle
(text, numbers, binary, wrong VR) or swap header tags, damage the file meta / transfer syntax, truncate,
flip bytes, drop, duplicate, rename (reorder) or replace whole files. ``read_geometry`` and
``read_volume`` must then return (a geometry / volume whose shapes agree) or raise the product's
exception family with a message.
"""

from __future__ import annotations

import functools
import io
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_series
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from sr4zct.errors import SR4ZCTError
from sr4zct.io import read_geometry, read_volume
from sr4zct.run.validation import validate_for_enhancement

N_SLICES = 4

TAGS = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "Rows",
    "Columns",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "RescaleSlope",
    "RescaleIntercept",
    "SamplesPerPixel",
    "NumberOfFrames",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PhotometricInterpretation",
    "PixelData",
    "ImageType",
    "InstanceNumber",
    "SeriesNumber",
    "SeriesDescription",
    "PlanarConfiguration",
)
VRS = ("US", "SS", "UL", "FL", "FD", "DS", "IS", "CS", "LO", "UI", "OB", "OW", "UN", "SQ", "AT")
TEXTS = (
    "",
    " ",
    "abc",
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1e400",
    "1\\2",
    "1\\2\\3\\4\\5\\6\\7",
    "0\\0\\0\\0\\0\\0",
    "1\\0\\0\\1\\0\\0",
    "99999999999999999999",
    "\x00\x00",
    "1.2.840.10008.1.2.4.50",
    "MR",
    "RGB",
)


@functools.cache
def template() -> tuple[bytes, ...]:
    """The intact series' file contents (written once)."""
    with tempfile.TemporaryDirectory() as tmp:
        s = write_series(Path(tmp) / "ct", n_slices=N_SLICES, rows=8, columns=8)
        return tuple(p.read_bytes() for p in s.paths)


def _payload(value) -> bytes:
    data = value if isinstance(value, bytes) else str(value).encode("latin-1", "replace")
    return data + b" " if len(data) % 2 else data


def _set_raw(ds, keyword: str, vr: str, value) -> None:
    tag = Tag(keyword)
    data = _payload(value)
    ds._dict[tag] = RawDataElement(tag, vr, len(data), data, 0, False, True)


def _dataset_bytes(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


tag_value = st.one_of(
    st.sampled_from(TEXTS),
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=0, max_size=7).map(
        lambda xs: "\\".join(f"{x:.6g}" for x in xs)
    ),
    st.binary(max_size=24),
)
file_index = st.integers(0, N_SLICES - 1)
operation = st.one_of(
    st.tuples(st.just("delete"), file_index | st.none(), st.sampled_from(TAGS)),
    st.tuples(st.just("mangle"), file_index | st.none(), st.sampled_from(TAGS), tag_value),
    st.tuples(
        st.just("wrong_vr"), file_index | st.none(), st.sampled_from(TAGS), st.sampled_from(VRS), tag_value
    ),
    st.tuples(st.just("swap_tag"), file_index, file_index, st.sampled_from(TAGS)),
    st.tuples(
        st.just("transfer_syntax"),
        file_index | st.none(),
        st.sampled_from(("1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.5", "1.2.3", "")),
    ),
    st.tuples(st.just("truncate"), file_index, st.floats(0.0, 1.0)),
    st.tuples(st.just("flip"), file_index, st.floats(0.0, 1.0), st.integers(1, 255)),
    st.tuples(st.just("drop"), file_index),
    st.tuples(st.just("duplicate"), file_index),
    st.tuples(st.just("junk"), file_index, st.binary(max_size=300)),
)


def _apply(files: list[bytes | None], op: tuple) -> list[bytes | None]:
    kind = op[0]
    files = list(files)
    if kind in ("delete", "mangle", "wrong_vr", "transfer_syntax"):
        targets = range(len(files)) if op[1] is None else [op[1] % len(files)]
        for i in targets:
            if files[i] is None:
                continue
            try:
                ds = pydicom.dcmread(io.BytesIO(files[i]), force=True)
            except Exception:
                continue  # already damaged beyond parsing: leave it
            if kind == "delete":
                if op[2] in ds:
                    delattr(ds, op[2])
            elif kind == "mangle":
                vr = pydicom.datadict.dictionary_VR(Tag(op[2]))
                _set_raw(ds, op[2], "OB" if vr == "OB or OW" else vr.split(" ")[0], op[3])
            elif kind == "wrong_vr":
                _set_raw(ds, op[2], op[3], op[4])
            else:
                ds.file_meta.TransferSyntaxUID = op[2]
            try:
                files[i] = _dataset_bytes(ds)
            except Exception:
                continue  # pydicom cannot write this combination: nothing to test
    elif kind == "swap_tag":
        i, j = op[1] % len(files), op[2] % len(files)
        if files[i] is None or files[j] is None or i == j:
            return files
        try:
            a = pydicom.dcmread(io.BytesIO(files[i]), force=True)
            b = pydicom.dcmread(io.BytesIO(files[j]), force=True)
            if op[3] in a and op[3] in b:
                tag = Tag(op[3])
                a[tag], b[tag] = b[tag], a[tag]
                files[i], files[j] = _dataset_bytes(a), _dataset_bytes(b)
        except Exception:
            return files
    elif kind == "truncate":
        i = op[1] % len(files)
        if files[i] is not None:
            files[i] = files[i][: int(op[2] * len(files[i]))]
    elif kind == "flip":
        i = op[1] % len(files)
        if files[i]:
            data = bytearray(files[i])
            k = min(len(data) - 1, int(op[2] * len(data)))
            data[k] ^= op[3]
            files[i] = bytes(data)
    elif kind == "drop":
        files[op[1] % len(files)] = None
    elif kind == "duplicate":
        files.append(files[op[1] % len(files)])
    elif kind == "junk":
        files[op[1] % len(files)] = op[2]
    return files


def _check(call, folder: Path):
    try:
        return call(folder)
    except SR4ZCTError as exc:
        assert exc.message and "\n" not in exc.message.split(":\n")[0]
        return None


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=5), order=st.permutations(range(N_SLICES + 5)))
def test_corrupted_series_read_to_a_result_or_an_sr4zct_error(ops, order):
    files: list[bytes | None] = list(template())
    for op in ops:
        files = _apply(files, op)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # Reordered names: the file order on disk must not matter.
        names = [f"IM{order[k % len(order)] + 1000 * (k // len(order)):05d}" for k in range(len(files))]
        for name, data in zip(names, files, strict=True):
            if data is not None:
                (folder / name).write_bytes(data)
        geometry = _check(read_geometry, folder)
        volume = _check(read_volume, folder)
        if geometry is not None:
            assert geometry.n_slices >= 2
        if volume is not None:
            assert volume.array.shape == volume.geometry.shape
            assert volume.array.dtype == np.float32
            # The up-front checks of an enhancement also end in a result or an SR4ZCTError.
            _check(lambda _: validate_for_enhancement(volume), folder)
