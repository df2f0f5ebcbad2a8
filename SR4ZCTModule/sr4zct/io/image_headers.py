"""What a NRRD, NIfTI or MetaImage header says about its pixel data, checked before SimpleITK reads it.

SimpleITK trusts the header: it reads a detached data file wherever the header points (``/etc/passwd``),
fills a truncated NIfTI with zeros, turns NIfTI NaN and Inf into 0 and reads ``pixdim = 0`` as 1 mm. This
module parses the headers itself (standard library and NumPy only) so that the readers can

* refuse a data file that does not lie beside its header (:func:`inspect_image_file`, unless
  ``allow_detached_data``);
* count the pixel-data bytes against the size and type in the header, decompressing gzip, zlib and bzip2
  streams (:func:`check_pixel_data`);
* for NIfTI, refuse non-positive ``pixdim`` and unusable ``scl_slope``/``scl_inter``, and find the NaN/Inf
  voxels that SimpleITK zeroes, so that the reader can put them back;
* for NIfTI with an sform (``sform_code > 0``), refuse a header whose sform gives another voxel size than
  ``pixdim`` along any of the three axes (more than :data:`SFORM_TOLERANCE` apart): SimpleITK and Slicer take
  ``pixdim``, nibabel and FSL the sform, so the slice spacing would depend on the reader;
* refuse a data file (or header) that is not a regular file: opening a named pipe waits forever;
* tell a file written by SR4ZCT (its header key, or the NIfTI ``descrip``) from any other.

Every problem is an :class:`~sr4zct.errors.InputError` (or :class:`~sr4zct.errors.GeometryError` for a
voxel size) with a one-line message.
"""

from __future__ import annotations

import bz2
import math
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sr4zct.errors import GeometryError, InputError
from sr4zct.io.files import is_regular_file, require_regular_file

__all__ = [
    "MAX_ABS_VALUE",
    "NonFinite",
    "PixelData",
    "check_pixel_data",
    "inspect_image_file",
]

#: Largest magnitude a rescaled value may have: far beyond any CT scale (-1024 .. ~70000 HU), far below
#: float32 overflow. A header whose scaling gives more is damaged.
MAX_ABS_VALUE = 1.0e6
#: Largest relative difference between a NIfTI ``pixdim`` and the voxel size its sform gives.
SFORM_TOLERANCE = 1.0e-3
#: Headers are read up to this size; a longer one is refused as damaged.
MAX_HEADER_BYTES = 4 * 2**20
#: Most dimensions a MetaImage or NRRD header may declare.
MAX_DIMENSIONS = 10
#: At most this many data files (NRRD/MetaImage LIST or pattern).
MAX_DATA_FILES = 100_000
_CHUNK = 8 * 2**20
_DRAIN_BYTES = 2**20


@dataclass(frozen=True)
class PixelData:
    """Where an image file's pixel data is and what the header says it holds.

    ``files`` are the files holding the bytes (the header itself when attached); ``offset`` is where they
    start in ``files[0]`` (``-1``: the last ``n_bytes`` of the file). ``n_bytes`` is the decoded size the
    header describes (None when it cannot be computed: text encodings, several data files, unusual skips).
    ``dtype`` is the stored NumPy type with byte order (NIfTI only). ``scale`` is the NIfTI
    ``(scl_slope, scl_inter)`` that SimpleITK applies, None when it applies none. ``skip`` decoded bytes
    come before the data (a gzipped NIfTI compresses its header too).
    """

    kind: str
    header: Path
    files: tuple[Path, ...]
    offset: int
    encoding: str
    n_bytes: int | None
    dtype: str | None = None
    scale: tuple[float, float] | None = None
    keys: dict[str, str] = field(default_factory=dict)
    descrip: str = ""
    skip: int = 0

    @property
    def detached(self) -> bool:
        return self.files != (self.header,)


@dataclass(frozen=True)
class NonFinite:
    """NaN/Inf voxels found in the stored data: flat indices (file order) and their values."""

    indices: np.ndarray
    values: np.ndarray
    minimum: float | None = None
    maximum: float | None = None


# --- header parsing ---------------------------------------------------------------------------------------


def _damaged(path: Path, what: str) -> InputError:
    return InputError(f"Cannot read {path}: {what}; the header is damaged.")


def _read_head(path: Path, n: int = MAX_HEADER_BYTES) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as exc:
        raise InputError(f"Cannot read {path}: {exc.strerror or exc}.") from exc


def _header_lines(path: Path, *, stop_at_blank: bool) -> tuple[list[str], int | None]:
    """Text lines of a NRRD or MetaImage header and the byte offset after it (None: no end found)."""
    head = _read_head(path)
    lines: list[str] = []
    pos = 0
    while pos < len(head):
        end = head.find(b"\n", pos)
        if end < 0:
            if len(head) >= MAX_HEADER_BYTES:
                raise _damaged(path, f"no end of the header within {MAX_HEADER_BYTES // 2**20} MiB")
            lines.append(head[pos:].decode("latin-1").rstrip("\r"))
            return lines, None
        line = head[pos:end].decode("latin-1").rstrip("\r")
        pos = end + 1
        if stop_at_blank and line.strip() == "" and lines:
            return lines, pos
        lines.append(line)
        if not stop_at_blank and line.split("=", 1)[0].strip().lower() == "elementdatafile":
            return lines, pos
    return lines, None


def _int(text: str, path: Path, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise _damaged(path, f"{what} {text.strip()!r} is not an integer") from None
    return value


def _sizes(tokens: list[str], path: Path, what: str) -> list[int]:
    sizes = [_int(t, path, what) for t in tokens]
    if not sizes or any(s < 1 for s in sizes):
        raise _damaged(path, f"{what} {' '.join(tokens)!r} are not positive integers")
    return sizes


def _beside(header: Path, name: str, what: str, allow_detached_data: bool) -> Path:
    """The data file ``name`` relative to the header's folder; refused unless it lies in that folder."""
    name = name.strip()
    if not name or "\0" in name:
        raise _damaged(header, f"the {what} field names no file")
    data = header.parent / name
    _regular_if_present(header, data)
    if not allow_detached_data:
        try:
            inside = data.resolve().parent == header.parent.resolve()
        except (OSError, RuntimeError, ValueError):
            inside = False
        if not inside:
            raise InputError(
                f"{header} keeps its pixel data in {name!r} ({what}), which does not lie beside the header; "
                "SR4ZCT reads only data files in the header's own folder. Move the data file there, or pass "
                "allow_detached_data=True if you trust this header."
            )
    return data


def _regular_if_present(header: Path, data: Path) -> None:
    """A data file that exists must be a regular file: SimpleITK opens it even to read the header
    information, and a named pipe would make that wait forever."""
    try:
        present = data.exists()
    except (OSError, ValueError):
        present = False
    if present and not is_regular_file(data):
        raise InputError(
            f"{header} keeps its pixel data in {data.name!r}, which is not a regular file (a named pipe, "
            "socket, device or folder); SR4ZCT reads only files."
        )


def _data_file_list(
    header: Path, value: str, rest: list[str], what: str, allow_detached_data: bool
) -> tuple[Path, ...] | None:
    """The files named by a NRRD ``data file`` / MetaImage ``ElementDataFile`` value; None for LOCAL."""
    tokens = value.split()
    if not tokens:
        raise _damaged(header, f"the {what} field is empty")
    if tokens[0].upper() == "LOCAL" and len(tokens) == 1:
        return None
    if tokens[0].upper() == "LIST":
        names = [line.strip() for line in rest if line.strip()]
    elif "%" in tokens[0] and len(tokens) >= 4:
        names = _pattern_names(header, tokens, what)
    else:
        names = [value.strip()]
    if not names or len(names) > MAX_DATA_FILES:
        raise _damaged(header, f"the {what} field lists {len(names)} files")
    return tuple(_beside(header, name, what, allow_detached_data) for name in names)


def _pattern_names(header: Path, tokens: list[str], what: str) -> list[str]:
    """The file names of a ``<printf pattern> <first> <last> <step>`` data file value."""
    first, last, step = (_int(t, header, f"the {what} range") for t in tokens[1:4])
    if step == 0 or (last - first) / step < 0 or abs((last - first) // step) + 1 > MAX_DATA_FILES:
        raise _damaged(header, f"the {what} range {' '.join(tokens[1:4])!r} is unusable")
    try:
        return [tokens[0] % i for i in range(first, last + (1 if step > 0 else -1), step)]
    except (TypeError, ValueError, OverflowError):
        raise _damaged(header, f"the {what} pattern {tokens[0]!r} is unusable") from None


_NRRD_TYPES = {
    1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t", "char"),
    2: ("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
        "unsigned short", "unsigned short int", "uint16", "uint16_t"),
    4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
    8: ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
        "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t",
        "double"),
}  # fmt: skip
_NRRD_TYPE_SIZE = {name: size for size, names in _NRRD_TYPES.items() for name in names}
_ENCODINGS = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2"}


def _inspect_nrrd(path: Path, allow_detached_data: bool) -> PixelData:
    lines, end = _header_lines(path, stop_at_blank=True)
    fields, keys, rest = _nrrd_fields(path, lines)
    _check_nrrd_dimension(path, fields)
    files = None
    if "datafile" in fields:
        files = _data_file_list(path, fields["datafile"], rest, "data file", allow_detached_data)
    elif end is None:
        raise _damaged(path, "no blank line ends the header and no data file is named")
    encoding, offset, n_bytes = _nrrd_layout(path, fields, files, end)
    return PixelData(
        kind="nrrd",
        header=path,
        files=files or (path,),
        offset=offset,
        encoding=encoding,
        n_bytes=n_bytes,
        keys=keys,
    )


def _nrrd_fields(path: Path, lines: list[str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """``(fields, keys, rest)`` of a NRRD header: the fields by lower-case name without spaces, the
    ``key:=value`` pairs, and the lines after a ``data file: LIST`` field (the file names)."""
    fields: dict[str, str] = {}
    keys: dict[str, str] = {}
    for k, line in enumerate(lines[1:], start=1):
        if line.startswith("#"):
            continue
        if ":=" in line:
            key, value = line.split(":=", 1)
            keys[key] = value
            continue
        if ": " not in line:
            raise _damaged(path, f"line {k + 1} {line[:40]!r} is neither a field nor a key")
        name, value = line.split(": ", 1)
        name = name.strip().lower().replace(" ", "")
        fields[name] = value
        if name == "datafile" and value.split()[:1] and value.split()[0].upper() == "LIST":
            return fields, keys, lines[k + 1 :]
    return fields, keys, []


def _check_nrrd_dimension(path: Path, fields: dict[str, str]) -> None:
    if "dimension" in fields:
        dimension = _int(fields["dimension"], path, "dimension")
        if not 1 <= dimension <= MAX_DIMENSIONS:
            raise _damaged(path, f"dimension {dimension} is not between 1 and {MAX_DIMENSIONS}")
        if "sizes" in fields and len(fields["sizes"].split()) != dimension:
            raise _damaged(path, f"sizes {fields['sizes'][:40]!r} does not give {dimension} sizes")


def _nrrd_layout(
    path: Path, fields: dict[str, str], files: tuple[Path, ...] | None, end: int | None
) -> tuple[str, int, int | None]:
    """``(encoding, offset, n_bytes)`` of a NRRD's pixel data (see :class:`PixelData`)."""
    encoding = _ENCODINGS.get(fields.get("encoding", "").strip().lower(), "other")
    size = _NRRD_TYPE_SIZE.get(" ".join(fields.get("type", "").split()).lower())
    n_bytes = None
    line_skip = _int(fields.get("lineskip", "0"), path, "line skip")
    byte_skip = _int(fields.get("byteskip", "0"), path, "byte skip")
    sizes = _sizes(fields.get("sizes", "").split(), path, "sizes") if "sizes" in fields else None
    offset = 0 if files else int(end or 0)
    simple = line_skip == 0 and (byte_skip == 0 or (encoding == "raw" and byte_skip >= -1))
    if size and sizes and simple and encoding != "other" and (files is None or len(files) == 1):
        n_bytes = size * math.prod(sizes)
        offset = -1 if byte_skip == -1 else offset + byte_skip
    return encoding, offset, n_bytes


_META_TYPE_SIZE = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}  # fmt: skip
_META_STANDARD = {
    "objecttype", "objectsubtype", "ndims", "dimsize", "elementtype", "elementnumberofchannels",
    "headersize", "compresseddata", "compresseddatasize", "binarydata", "binarydatabyteordermsb",
    "elementbyteordermsb", "elementdatafile", "elementspacing", "elementsize", "offset", "position",
    "origin", "transformmatrix", "rotation", "orientation", "centerofrotation", "anatomicalorientation",
    "comment", "name", "id", "parentid", "color", "transformtype", "modality", "elementmin", "elementmax",
    "sequenceid", "acquisitiondate",
}  # fmt: skip


_META_VECTORS = ("elementspacing", "elementsize", "offset", "position", "origin", "centerofrotation")
_META_MATRICES = ("transformmatrix", "rotation", "orientation")


def _numbers(path: Path, name: str, text: str, count: int) -> None:
    tokens = text.split()
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise _damaged(path, f"{name} {text[:40]!r} is not a list of numbers") from None
    if len(values) != count:
        raise _damaged(path, f"{name} has {len(values)} values, not {count}")


def _check_meta_fields(path: Path, fields: dict[str, str], names: dict[str, str]) -> None:
    """The fields MetaIO sizes its arrays by: SimpleITK hangs or crashes on some inconsistent ones
    (``NDims = -1``), so they are checked before it reads the header."""
    if "ndims" not in fields:
        raise _damaged(path, "no NDims line")
    ndims = _int(fields["ndims"], path, "NDims")
    if not 1 <= ndims <= MAX_DIMENSIONS:
        raise _damaged(path, f"NDims {ndims} is not between 1 and {MAX_DIMENSIONS}")
    if "dimsize" not in fields:
        raise _damaged(path, "no DimSize line")
    if len(_sizes(fields["dimsize"].split(), path, "DimSize")) != ndims:
        raise _damaged(path, f"DimSize {fields['dimsize'][:40]!r} does not give {ndims} sizes")
    for name in _META_VECTORS:
        if name in fields:
            _numbers(path, names[name], fields[name], ndims)
    for name in _META_MATRICES:
        if name in fields:
            _numbers(path, names[name], fields[name], ndims * ndims)
    element_type = fields.get("elementtype", "").strip().upper()
    if element_type not in _META_TYPE_SIZE and element_type not in ("MET_LONG", "MET_ULONG"):
        raise _damaged(path, f"ElementType {fields.get('elementtype', '')[:40]!r} is not a scalar type")
    channels = _int(fields.get("elementnumberofchannels", "1"), path, "ElementNumberOfChannels")
    if not 1 <= channels <= 64:
        raise _damaged(path, f"ElementNumberOfChannels {channels} is not between 1 and 64")
    for name in ("headersize", "compresseddatasize"):
        if name in fields:
            _int(fields[name], path, names[name])


def _inspect_meta(path: Path, allow_detached_data: bool) -> PixelData:
    lines, end = _header_lines(path, stop_at_blank=False)
    fields, names, keys = _meta_fields(path, lines)
    if "elementdatafile" not in fields:
        raise _damaged(path, "no ElementDataFile line")
    _check_meta_fields(path, fields, names)
    rest: list[str] = []
    if fields["elementdatafile"].split()[:1] and fields["elementdatafile"].split()[0].upper() == "LIST":
        rest = _read_head(path)[int(end or 0) :].decode("latin-1").splitlines()
    files = _data_file_list(path, fields["elementdatafile"], rest, "ElementDataFile", allow_detached_data)
    encoding, offset, n_bytes = _meta_layout(path, fields, files, end)
    return PixelData(
        kind="meta",
        header=path,
        files=files or (path,),
        offset=offset,
        encoding=encoding,
        n_bytes=n_bytes,
        keys=keys,
    )


def _meta_fields(path: Path, lines: list[str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """``(fields, names, keys)`` of a MetaImage header: the values by lower-case key, the keys as
    written, and the non-standard ``Key = Value`` pairs."""
    fields: dict[str, str] = {}
    names: dict[str, str] = {}
    keys: dict[str, str] = {}
    for line in lines:
        if "=" not in line:
            if line.strip():
                raise _damaged(path, f"line {line[:40]!r} is not 'Key = Value'")
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        fields[key.lower()] = value
        names[key.lower()] = key
        if key.lower() not in _META_STANDARD:
            keys[key] = value
    return fields, names, keys


def _meta_layout(
    path: Path, fields: dict[str, str], files: tuple[Path, ...] | None, end: int | None
) -> tuple[str, int, int | None]:
    """``(encoding, offset, n_bytes)`` of a MetaImage's pixel data (see :class:`PixelData`)."""
    compressed = fields.get("compresseddata", "false").strip().lower() == "true"
    binary = fields.get("binarydata", "true").strip().lower() == "true"
    encoding = "zlib" if compressed else ("raw" if binary else "other")
    size = _META_TYPE_SIZE.get(fields.get("elementtype", "").strip().upper())
    dims = _sizes(fields.get("dimsize", "").split(), path, "DimSize") if "dimsize" in fields else None
    channels = _int(fields.get("elementnumberofchannels", "1"), path, "ElementNumberOfChannels")
    header_size = _int(fields.get("headersize", "0"), path, "HeaderSize") if files else 0
    n_bytes = None
    offset = int(end or 0) if files is None else max(header_size, 0)
    if size and dims and channels >= 1 and (files is None or len(files) == 1) and header_size >= -1:
        n_bytes = size * channels * math.prod(dims)
        if header_size == -1 and files is not None:
            offset = -1
    return encoding, offset, n_bytes


_NIFTI_DTYPES = {
    2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8",
}  # fmt: skip


def _open_maybe_gzip_head(path: Path, n: int) -> bytes:
    head = _read_head(path, 2)
    if head[:2] != b"\x1f\x8b":
        return _read_head(path, n)
    out = b""
    for chunk in _decoded_chunks(path, 0, "gzip", n):
        out += chunk
        if len(out) >= n:
            break
    return out[:n]


class _NiftiHeader(NamedTuple):
    """The fields of a NIfTI-1 or NIfTI-2 header that locate and describe the pixel data."""

    order: str  # struct byte order, "<" or ">"
    sizeof_hdr: int
    magic: bytes
    dim: tuple[int, ...]
    datatype: int
    bitpix: int
    pixdim: tuple[float, ...]
    vox_offset: float
    slope: float
    inter: float
    descrip: bytes
    single: bool  # one .nii file (not a .hdr/.img pair)
    sform_code: int = 0
    srow: tuple[float, ...] = ()  # srow_x, srow_y, srow_z: 12 numbers


def _inspect_nifti(path: Path) -> PixelData:
    h = _nifti_header(path, _open_maybe_gzip_head(path, 540))
    if not h.single:
        raise InputError(
            f"{path} is not a single-file NIfTI image (magic {h.magic[:4]!r}); convert a .hdr/.img pair to one "
            ".nii file."
        )
    ndim = _check_nifti_sizes(path, h)
    _check_nifti_sform(path, h, ndim)
    n_bytes = math.prod(int(d) for d in h.dim[1 : ndim + 1]) * (h.bitpix // 8)
    code = _NIFTI_DTYPES.get(int(h.datatype))
    dtype = h.order + code if code is not None and np.dtype(code).itemsize * 8 == h.bitpix else None
    gzipped = _read_head(path, 2)[:2] == b"\x1f\x8b"
    return PixelData(
        kind="nifti",
        header=path,
        files=(path,),
        offset=0 if gzipped else int(h.vox_offset),
        skip=int(h.vox_offset) if gzipped else 0,
        encoding="gzip" if gzipped else "raw",
        n_bytes=n_bytes,
        dtype=dtype,
        scale=_nifti_scale(path, float(h.slope), float(h.inter)),
        descrip=h.descrip.split(b"\0", 1)[0].decode("latin-1", "replace"),
    )


def _nifti_header(path: Path, head: bytes) -> _NiftiHeader:
    """Parse the first 348 (NIfTI-1) or 540 (NIfTI-2) bytes, in the byte order ``sizeof_hdr`` shows."""
    if len(head) < 348:
        raise _damaged(path, f"only {len(head)} bytes of the NIfTI header")
    for order in "<>":
        (sizeof_hdr,) = struct.unpack(order + "i", head[:4])
        if sizeof_hdr in (348, 540):
            break
    else:
        raise _damaged(path, "sizeof_hdr is neither 348 (NIfTI-1) nor 540 (NIfTI-2)")
    if sizeof_hdr == 348:
        magic = head[344:348]
        dim = struct.unpack(order + "8h", head[40:56])
        datatype, bitpix = struct.unpack(order + "2h", head[70:74])
        pixdim = struct.unpack(order + "8f", head[76:108])
        (vox_offset,) = struct.unpack(order + "f", head[108:112])
        slope, inter = struct.unpack(order + "2f", head[112:120])
        (sform_code,) = struct.unpack(order + "h", head[254:256])
        srow = struct.unpack(order + "12f", head[280:328])
        return _NiftiHeader(order, sizeof_hdr, magic, dim, datatype, bitpix, pixdim, vox_offset, slope, inter,
                            head[148:228], magic == b"n+1\0", sform_code, srow)  # fmt: skip
    if len(head) < 540:
        raise _damaged(path, f"only {len(head)} bytes of the NIfTI-2 header")
    magic = head[4:12]
    datatype, bitpix = struct.unpack(order + "2h", head[12:16])
    dim = struct.unpack(order + "8q", head[16:80])
    pixdim = struct.unpack(order + "8d", head[104:168])
    (vox_offset,) = struct.unpack(order + "q", head[168:176])
    slope, inter = struct.unpack(order + "2d", head[176:192])
    (sform_code,) = struct.unpack(order + "i", head[348:352])
    srow = struct.unpack(order + "12d", head[400:496])
    return _NiftiHeader(order, sizeof_hdr, magic, dim, datatype, bitpix, pixdim, vox_offset, slope, inter,
                        head[240:320], magic[:4] == b"n+2\0", sform_code, srow)  # fmt: skip


def _check_nifti_sizes(path: Path, h: _NiftiHeader) -> int:
    """Refuse an unusable ``dim``, ``pixdim``, ``vox_offset`` or ``bitpix``; returns the dimension count."""
    dim = h.dim
    ndim = int(dim[0])
    if not 1 <= ndim <= 7 or any(int(d) < 1 for d in dim[1 : ndim + 1]):
        raise _damaged(
            path, f"dim {list(dim[: ndim + 1]) if 0 <= ndim <= 7 else list(dim)} is not a valid size"
        )
    for axis in range(1, min(ndim, 3) + 1):
        value = float(h.pixdim[axis])
        if not math.isfinite(value) or value <= 0:
            raise GeometryError(
                f"{path.name} has pixdim[{axis}] = {value:g} (the voxel size along axis {axis}): every spacing "
                "must be a positive number; the header is damaged."
            )
    if not math.isfinite(h.vox_offset) or h.vox_offset < h.sizeof_hdr or h.vox_offset != int(h.vox_offset):
        raise _damaged(path, f"vox_offset {h.vox_offset!r} is not a byte offset after the header")
    if h.bitpix <= 0 or h.bitpix % 8:
        raise _damaged(path, f"bitpix {h.bitpix} is not a whole number of bytes")
    return ndim


def _check_nifti_sform(path: Path, h: _NiftiHeader, ndim: int) -> None:
    """With an sform (``sform_code > 0``), the voxel size along each of the three axes (the length of its
    sform column) must agree with ``pixdim`` within :data:`SFORM_TOLERANCE`; else the geometry depends on
    the reader (SimpleITK takes ``pixdim``, nibabel the sform) and is refused."""
    if h.sform_code <= 0 or ndim < 3 or len(h.srow) != 12:
        return
    matrix = np.asarray(h.srow, dtype=np.float64).reshape(3, 4)[:, :3]
    if not np.all(np.isfinite(matrix)):
        raise _damaged(path, "the sform (srow_x, srow_y, srow_z) holds values that are not numbers")
    for axis in range(3):
        from_pixdim = float(h.pixdim[axis + 1])
        from_sform = float(np.linalg.norm(matrix[:, axis]))
        if abs(from_sform - from_pixdim) > SFORM_TOLERANCE * max(from_pixdim, from_sform):
            raise GeometryError(
                f"{path.name} records two voxel sizes along axis {axis + 1}: pixdim[{axis + 1}] = {from_pixdim:g} "
                f"mm but its sform gives {from_sform:g} mm. Readers disagree which to use (SimpleITK and Slicer "
                "take pixdim, nibabel and FSL the sform), so the slice spacing is ambiguous; rewrite the header "
                "so that they agree (or set sform_code to 0 if the sform is wrong)."
            )


def _nifti_scale(path: Path, slope: float, inter: float) -> tuple[float, float] | None:
    """The ``(slope, inter)`` SimpleITK applies, or None; refuses what readers interpret differently.

    The standard (and nibabel) apply no scaling when ``scl_slope`` is 0 or not finite; SimpleITK then still
    adds a finite ``scl_inter``, and it ignores a NaN ``scl_inter`` with a real slope: both are refused.
    """
    if not math.isfinite(slope) or slope == 0:
        if math.isfinite(inter) and inter != 0:
            raise InputError(
                f"{path} has scl_slope {slope:g} with scl_inter {inter:g}: NIfTI readers disagree whether to "
                "scale these values; the header is damaged."
            )
        return None
    if not math.isfinite(inter):
        raise InputError(f"{path} has scl_slope {slope:g} but scl_inter {inter:g}; the header is damaged.")
    if slope < 0:
        raise InputError(
            f"{path} has a negative scl_slope ({slope:g}): CT values are never stored inverted; the header is "
            "damaged."
        )
    return None if (slope, inter) == (1.0, 0.0) else (slope, inter)


def inspect_image_file(path: str | os.PathLike, *, allow_detached_data: bool = False) -> PixelData:
    """Parse the header of a ``.nrrd .nhdr .nii .nii.gz .mha .mhd`` file (see the module docstring).

    Raises
    ------
    InputError
        A damaged header, a data file outside the header's folder (unless ``allow_detached_data``), a
        NIfTI ``.hdr``/``.img`` pair or unusable NIfTI scaling.
    GeometryError
        A NIfTI voxel size (``pixdim``) that is not a positive number, or that its sform contradicts.
    """
    path = Path(path)
    require_regular_file(path, "The image file")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _inspect_nifti(path)
    if name.endswith((".nrrd", ".nhdr")):
        return _inspect_nrrd(path, allow_detached_data)
    if name.endswith((".mha", ".mhd")):
        return _inspect_meta(path, allow_detached_data)
    raise InputError(f"{path} is not a NRRD/NIfTI/MHA file.")


# --- pixel data -----------------------------------------------------------------------------------------


def _decoded_chunks(path: Path, offset: int, encoding: str, limit: int) -> Iterator[bytes]:
    """The decoded bytes of ``path`` from ``offset``, in chunks of at most ``_CHUNK``, at most ``limit``.

    Decompression is bounded by ``limit``, so a small file that claims to expand enormously costs time in
    proportion to what is counted, not memory.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            if encoding == "raw":
                yield from _raw_chunks(f, limit)
            elif encoding == "bzip2":
                yield from _bzip2_chunks(f, limit)
            else:
                yield from _zlib_chunks(f, limit)
    except EOFError as exc:
        raise InputError(
            f"{path} is truncated: its compressed data ends before all the pixel data its header describes; "
            "restore it from the original data."
        ) from exc
    except (OSError, zlib.error, ValueError) as exc:
        if encoding == "raw":
            raise InputError(f"Cannot read {path}: {getattr(exc, 'strerror', None) or exc}.") from exc
        raise InputError(
            f"Cannot read {path}: its compressed pixel data is damaged ({exc}); restore the file."
        ) from exc


def _raw_chunks(f, limit: int) -> Iterator[bytes]:
    while limit > 0:
        chunk = f.read(min(_CHUNK, limit))
        if not chunk:
            return
        limit -= len(chunk)
        yield chunk


def _zlib_chunks(f, limit: int) -> Iterator[bytes]:
    """gzip or zlib streams (several gzip members in a row count as one stream, as zlib's gzread does).

    After ``limit`` bytes the stream is still decoded to its end (output discarded, at most
    :data:`_DRAIN_BYTES` more): only there does zlib compare the checksum, which catches damaged data.
    """
    decoder = zlib.decompressobj(47)
    data = b""
    while limit > 0:
        if not data:
            data = f.read(_CHUNK)
            if not data:
                if not decoder.eof:
                    raise EOFError("the compressed stream ends early")
                return
        out = decoder.decompress(data, min(limit, _CHUNK))
        data = decoder.unconsumed_tail
        if out:
            limit -= len(out)
            yield out
        if decoder.eof:
            data = decoder.unused_data + data
            if not data.strip(b"\0"):
                data = f.read(_CHUNK)
                if not data.strip(b"\0"):
                    return  # end of the last member (and padding)
            decoder = zlib.decompressobj(47)
    extra = 0
    while not decoder.eof and extra <= _DRAIN_BYTES:
        if not data:
            data = f.read(_CHUNK)
            if not data:
                raise EOFError("the compressed stream ends early")
        extra += len(decoder.decompress(data, _CHUNK))
        data = decoder.unconsumed_tail


def _bzip2_chunks(f, limit: int) -> Iterator[bytes]:
    decoder = bz2.BZ2Decompressor()
    extra = 0
    while not decoder.eof and extra <= _DRAIN_BYTES:
        data = b"" if not decoder.needs_input else f.read(_CHUNK)
        if decoder.needs_input and not data:
            raise EOFError("the compressed stream ends early")
        out = decoder.decompress(data, _CHUNK)
        if limit > 0:
            out = out[:limit]
            limit -= len(out)
            if out:
                yield out
        else:
            extra += len(out)


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise InputError(f"Cannot read the data file {path}: {exc.strerror or exc}.") from exc


def _truncated(info: PixelData, got: int) -> InputError:
    where = f" (in {info.files[0].name})" if info.detached else ""
    return InputError(
        f"{info.header} holds only {got} of the {info.n_bytes} bytes of pixel data its header describes"
        f"{where}: the file is truncated or damaged; restore it from the original data."
    )


def check_pixel_data(info: PixelData, *, find_non_finite: bool = False) -> NonFinite | None:
    """Check that the stored pixel data is complete; optionally find its NaN/Inf voxels.

    ``find_non_finite`` (float NIfTI data, which SimpleITK zeroes) returns their flat indices in file
    order and values (scaled like SimpleITK scales), plus the finite minimum and maximum when the header
    scales the values. Returns None when nothing had to be found.

    Raises
    ------
    InputError
        Missing or unreadable data file, fewer bytes than the header describes, damaged compressed data,
        scaling that gives values beyond :data:`MAX_ABS_VALUE`.
    """
    _check_data_files_exist(info)
    if info.n_bytes is None:
        return None
    dtype = np.dtype(info.dtype) if info.dtype else None
    scan = _values_needed(info, dtype, find_non_finite)
    if info.encoding == "raw" and not scan:
        available = _size_of(info.files[0]) - max(info.offset, 0)
        if available < info.n_bytes:
            raise _truncated(info, max(available, 0))
        return None
    scanner = _NonFiniteScan(dtype, track_range=info.scale is not None) if scan else None
    got = 0
    chunks = _decoded_chunks(info.files[0], _data_offset(info), info.encoding, info.skip + info.n_bytes)
    for chunk in _after_skip(chunks, info.skip):
        got += len(chunk)
        if scanner is not None:
            scanner.add(chunk)
    if got < info.n_bytes:
        raise _truncated(info, got)
    if scanner is None:
        return None
    found = scanner.result()
    if info.scale is None:
        return found
    _check_scaled_range(info, found)
    slope, inter = info.scale
    return NonFinite(found.indices, found.values * slope + inter, found.minimum, found.maximum)


def _values_needed(info: PixelData, dtype: np.dtype | None, find_non_finite: bool) -> bool:
    """Whether the values must be decoded, not only counted: to find NaN/Inf in float data, or the range
    a NIfTI scaling gives."""
    return dtype is not None and (
        (find_non_finite and dtype.kind == "f") or (info.scale is not None and dtype.kind in "iuf")
    )


def _data_offset(info: PixelData) -> int:
    """Where the pixel data starts in its file (an offset of -1: the last ``n_bytes`` of the file)."""
    if info.offset != -1:
        return info.offset
    offset = _size_of(info.files[0]) - info.n_bytes
    if offset < 0:
        raise _truncated(info, _size_of(info.files[0]))
    return offset


def _check_data_files_exist(info: PixelData) -> None:
    for data_file in info.files:
        if not data_file.exists():
            raise InputError(
                f"{info.header} keeps its pixel data in {data_file}, which does not exist; restore it beside "
                "the header."
            )
        if not data_file.is_file():
            raise InputError(
                f"{info.header} keeps its pixel data in {data_file}, which is not a regular file."
            )


def _after_skip(chunks: Iterator[bytes], skip: int) -> Iterator[bytes]:
    """``chunks`` without their first ``skip`` bytes."""
    for chunk in chunks:
        if skip:
            chunk, skip = chunk[skip:], max(0, skip - len(chunk))
            if not chunk:
                continue
        yield chunk


class _NonFiniteScan:
    """Finds the NaN/Inf values (float data) and the finite range of a stream of stored bytes."""

    def __init__(self, dtype: np.dtype, *, track_range: bool) -> None:
        self.dtype = dtype
        self.track_range = track_range
        self.carry = b""  # the bytes of an element split between chunks
        self.n_values = 0  # elements decoded so far
        self.indices: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.low, self.high = math.inf, -math.inf

    def add(self, chunk: bytes) -> None:
        chunk = self.carry + chunk
        usable = len(chunk) - len(chunk) % self.dtype.itemsize
        self.carry = chunk[usable:]
        block = np.frombuffer(chunk[:usable], dtype=self.dtype)
        start = self.n_values
        self.n_values += block.size
        if self.dtype.kind == "f":
            bad = ~np.isfinite(block)
            if bad.any():
                where = np.nonzero(bad)[0]
                self.indices.append(where + start)
                self.values.append(block[where].astype(np.float64))
                block = block[~bad]
        if self.track_range and block.size:
            self.low, self.high = min(self.low, float(block.min())), max(self.high, float(block.max()))

    def result(self) -> NonFinite:
        return NonFinite(
            indices=np.concatenate(self.indices) if self.indices else np.zeros(0, np.int64),
            values=np.concatenate(self.values) if self.values else np.zeros(0, np.float64),
            minimum=self.low if math.isfinite(self.low) else None,
            maximum=self.high if math.isfinite(self.high) else None,
        )


def _check_scaled_range(info: PixelData, found: NonFinite) -> None:
    slope, inter = info.scale
    ends = [v * slope + inter for v in (found.minimum, found.maximum) if v is not None]
    if any(not math.isfinite(v) or abs(v) > MAX_ABS_VALUE for v in ends):
        raise InputError(
            f"{info.header} has scl_slope {slope:g} and scl_inter {inter:g}, which give values up to "
            f"{max(abs(v) for v in ends):.3g}, far outside any CT scale (|value| <= {MAX_ABS_VALUE:g}); the "
            "header is damaged."
        )
