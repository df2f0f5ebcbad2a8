"""Reading a DICOM series from a folder with pydicom.

Files are recognised by content, not by name or extension (Siemens ``.IMA``, no extension, ``.dcm``):
everything under the folder (recursively) is tried and non-DICOM files are skipped. Slices are grouped
by SeriesInstanceUID and sorted by position (:func:`sr4zct.volume.geometry.geometry_from_slices`), never by file
name or InstanceNumber. Pixel values are converted to HU with RescaleSlope/RescaleIntercept (per slice).

A series is one patient's and one study's: slices that share a SeriesInstanceUID but differ in PatientID,
PatientName or StudyInstanceUID are refused, naming both. RescaleSlope and RescaleIntercept must be on every
slice of a series or on none (a slice without them would be read about 1024 HU off). Links to folders are
followed (with a loop guard, :func:`sr4zct.io.files.walk_files`); only regular files are opened.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from sr4zct.errors import GeometryError, InputError, ParameterError, ResourceError
from sr4zct.io.files import require_regular_file, walk_files
from sr4zct.volume import SeriesGeometry, Volume
from sr4zct.volume.geometry import geometry_from_slices
from sr4zct.volume.scan_mode import scan_mode_of_header, series_scan_mode

#: Attributes copied from the first slice into ``geometry.extra["dicom"]`` so that a derived series can
#: be written into the same study (see ``sr4zct.io.dicom_writer``).
REFERENCE_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientPosition",
    "StudyInstanceUID",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ReferringPhysicianName",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "Modality",
    "Manufacturer",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "SOPClassUID",
    "ConvolutionKernel",
    "KVP",
    "SpecificCharacterSet",
)

#: Largest magnitude of a rescaled value: far beyond any CT scale (-1024 .. ~70000 HU), far below float32
#: overflow. RescaleSlope/RescaleIntercept that give more are a damaged header.
MAX_ABS_HU = 1.0e6

_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_NO_UID = "(no SeriesInstanceUID)"


@dataclass(frozen=True)
class SliceHeader:
    """What the geometry needs from one DICOM file (read without pixel data)."""

    path: Path
    series_uid: str
    sop_uid: str | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    rows: int | None
    columns: int | None
    thickness: float | None
    samples_per_pixel: int
    frames: int
    instance_number: int | None
    description: str
    modality: str | None
    series_number: int | None
    reference: dict[str, Any]
    image_type: tuple[str, ...] = ()
    rescale: tuple[bool, bool] = (False, False)  # RescaleSlope, RescaleIntercept present with a value
    scan_mode: tuple[str | None, str] = (None, "")  # helical / sequential and the attribute that said so


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a folder (see :func:`list_series`)."""

    series_uid: str
    description: str
    modality: str | None
    series_number: int | None
    n_slices: int

    def describe(self) -> str:
        number = f"#{self.series_number} " if self.series_number is not None else ""
        desc = f"'{self.description}'" if self.description else "(no description)"
        return f"{number}{desc} {self.modality or ''} {self.n_slices} slice(s), SeriesInstanceUID {self.series_uid}"


def _pydicom():
    import pydicom

    return pydicom


def _get(ds: Any, keyword: str) -> Any:
    """Element value, or None when absent or when its bytes cannot be converted (damaged header)."""
    try:
        return ds.get(keyword)
    except Exception:  # pydicom raises many types for malformed values (struct, length, VR errors)
        return None


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _float_or_none(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _plain(value: Any) -> Any:
    """DICOM element value as a JSON-ready Python value."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_plain(v) for v in value]
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, bytes):
        return None
    return str(value)


def _starts_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head[:2] in (b"\x02\x00", b"\x08\x00") and len(head) == 4


def _has_dicm_marker(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _read_header(path: Path) -> Any | None:
    """Dataset without pixel data, or None when the file is not a DICOM image.

    A file marked as DICOM (``DICM`` after the preamble) that cannot be parsed is damaged: that raises
    :class:`InputError` instead of being skipped, so that a broken slice is never silently missing.
    """
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    require_regular_file(path, "The DICOM file")  # a named pipe would make the read wait forever
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except OSError as exc:
        raise InputError(
            f"Cannot read {path}: {exc.strerror or exc}; a file that cannot be read may be a slice of the "
            "series (fix its permissions, or remove it)."
        ) from exc
    except InvalidDicomError:
        # Files written without the 128-byte preamble: accept only if they start like a DICOM data set
        # (a group 0002 or 0008 tag, little endian) and parse into image attributes.
        if not _starts_like_dicom(path):
            return None
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception:
            return None
        if "SOPClassUID" not in ds or "Rows" not in ds:
            return None
    except Exception as exc:  # pydicom raises many types for damaged files
        if _has_dicm_marker(path):
            detail = " ".join(str(exc).split())[:200]
            raise InputError(
                f"DICOM file {path} is damaged and cannot be read ({type(exc).__name__}: {detail}); "
                "remove it or restore it from the original data."
            ) from exc
        return None
    try:
        meta_class = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
        is_image = "Rows" in ds
    except Exception:
        return None
    if meta_class == _DICOMDIR_CLASS:
        return None
    if not is_image:
        if _is_image_storage(meta_class) and _has_dicm_marker(path):
            # An image file whose data set ends before the image attributes: truncated or damaged.
            raise InputError(
                f"DICOM file {path} is damaged and cannot be read (it is marked as an image but holds no "
                "image attributes; truncated?); remove it or restore it from the original data."
            )
        return None
    return ds


def _is_image_storage(sop_class: Any) -> bool:
    try:
        return "Image Storage" in str(getattr(sop_class, "name", ""))
    except Exception:
        return False


def _image_type(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = [value]
    return tuple(str(v).strip().upper() for v in value)


def _header(path: Path, ds: Any) -> SliceHeader:
    reference = {}
    for key in REFERENCE_KEYWORDS:
        value = _plain(_get(ds, key))
        if value is not None:
            reference[key] = value
    modality = _get(ds, "Modality")
    sop_uid = _get(ds, "SOPInstanceUID")
    return SliceHeader(
        path=path,
        series_uid=str(_get(ds, "SeriesInstanceUID") or "") or _NO_UID,
        sop_uid=str(sop_uid) if sop_uid else None,
        position=_floats(_get(ds, "ImagePositionPatient"), 3),
        orientation=_floats(_get(ds, "ImageOrientationPatient"), 6),
        pixel_spacing=_floats(_get(ds, "PixelSpacing"), 2),
        rows=_int_or_none(_get(ds, "Rows")),
        columns=_int_or_none(_get(ds, "Columns")),
        thickness=_float_or_none(_get(ds, "SliceThickness")),
        samples_per_pixel=_int_or_none(_get(ds, "SamplesPerPixel")) or 1,
        frames=_int_or_none(_get(ds, "NumberOfFrames")) or 1,
        instance_number=_int_or_none(_get(ds, "InstanceNumber")),
        description=str(_get(ds, "SeriesDescription") or ""),
        modality=str(modality).strip() if modality else None,
        series_number=_int_or_none(_get(ds, "SeriesNumber")),
        reference=reference,
        image_type=_image_type(_get(ds, "ImageType")),
        rescale=_rescale_present(ds),
        scan_mode=scan_mode_of_header(lambda keyword: _get(ds, keyword)),
    )


def _rescale_present(ds: Any) -> tuple[bool, bool]:
    """Whether RescaleSlope and RescaleIntercept are present with a (non-empty) value."""
    out = []
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        try:
            present = keyword in ds and _raw_value(ds, keyword) not in (None, "", b"")
        except Exception:  # a damaged element counts as present: the pixel read refuses it by name
            present = True
        out.append(bool(present))
    return out[0], out[1]


def _unreadable_folder(exc: OSError) -> None:
    raise InputError(
        f"Cannot read the folder {exc.filename}: {exc.strerror or exc}; it may hold slices of the series "
        "(fix its permissions, or point to a folder that can be read)."
    ) from exc


def _iter_files(folder: Path) -> Iterator[Path]:
    """Every non-hidden file under ``folder``, through links to folders (a loop is searched once); a folder
    that cannot be listed raises :class:`InputError` (``os.walk`` alone skips it silently, and its slices
    would be missing)."""
    for path in walk_files(folder, onerror=_unreadable_folder):
        if _is_regular(path):
            yield path


def _is_regular(path: Path) -> bool:
    """Regular files (also through a link); a named pipe, socket or device is never a slice, and opening
    a pipe would wait forever."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return True  # let the read report why it cannot be opened


def _is_empty_file(path: Path) -> bool:
    """True for a file without a single byte (read, not stat: some files report size 0 and are not)."""
    try:
        with open(path, "rb") as f:
            return f.read(1) == b""
    except OSError as exc:
        raise InputError(
            f"Cannot read {path}: {exc.strerror or exc}; a file that cannot be read may be a slice of the "
            "series (fix its permissions, or remove it)."
        ) from exc


def scan_folder(folder: str | os.PathLike) -> dict[str, list[SliceHeader]]:
    """Headers of every DICOM image under ``folder``, grouped by SeriesInstanceUID.

    Raises
    ------
    InputError
        The folder does not exist or holds no DICOM image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"DICOM folder {folder} does not exist or is not a folder.")
    groups: dict[str, list[SliceHeader]] = {}
    seen_sop: dict[str, SliceHeader] = {}
    n_files = 0
    empty: list[Path] = []
    for path in _iter_files(folder):
        n_files += 1
        if _is_empty_file(path):
            empty.append(path)
            continue
        ds = _read_header(path)
        if ds is None:
            continue
        header = _header(path, ds)
        if is_copy(header, seen_sop):
            continue  # the same image stored twice (copies): keep the first
        groups.setdefault(header.series_uid, []).append(header)
    if not groups:
        note = f", {len(empty)} of them empty (0 bytes)" if empty else ""
        raise InputError(
            f"No DICOM images found in {folder} ({n_files} file(s) checked{note}). Point to the folder that "
            "holds the series' files."
        )
    if empty:
        raise InputError(
            f"{len(empty)} empty (0-byte) file(s) lie among the DICOM images in {folder} (e.g. "
            f"{empty[0].name}): a slice that was not copied completely? Restore or remove them."
        )
    return groups


def is_copy(header: SliceHeader, seen: dict[str, SliceHeader]) -> bool:
    """True when ``header`` is an image already in ``seen`` (by SOPInstanceUID) stored a second time; records
    it otherwise. A file that reuses a SOPInstanceUID for another patient, study, series or position is no
    copy: it is kept, and the series checks refuse what it mixes up."""
    if header.sop_uid is None:
        return False
    first = seen.setdefault(header.sop_uid, header)
    if first is header:
        return False
    keys = ("PatientID", "PatientName", "StudyInstanceUID")
    return (
        _identity(first, keys) == _identity(header, keys)
        and first.series_uid == header.series_uid
        and first.position == header.position
    )


def _summaries(groups: dict[str, list[SliceHeader]]) -> list[SeriesInfo]:
    out = []
    for uid, headers in groups.items():
        h = headers[0]
        out.append(SeriesInfo(uid, h.description, h.modality, h.series_number, len(headers)))
    return sorted(out, key=lambda s: (s.series_number is None, s.series_number or 0, s.series_uid))


def list_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """Every DICOM series under ``folder`` (by SeriesInstanceUID), sorted by SeriesNumber."""
    return _summaries(scan_folder(folder))


def _select(groups: dict[str, list[SliceHeader]], folder: Path, series_uid: str | None) -> list[SliceHeader]:
    if series_uid is not None:
        if series_uid not in groups:
            listing = "; ".join(s.describe() for s in _summaries(groups))
            raise InputError(f"Series {series_uid} is not in {folder}. Available: {listing}.")
        return groups[series_uid]
    if len(groups) > 1:
        listing = "; ".join(s.describe() for s in _summaries(groups))
        raise InputError(
            f"{folder} holds {len(groups)} DICOM series; choose one with series_uid=UID: {listing}"
        )
    return next(iter(groups.values()))


def _check_images(headers: list[SliceHeader], description: str) -> None:
    """Refuse a series SR4ZCT cannot read as one grey-level volume: multi-frame or colour images, damaged
    or differing image sizes, missing position, orientation or pixel spacing."""
    name = f" '{description}'" if description else ""
    _check_one_patient_and_study(headers, name)
    _check_single_frame_grey(headers, name)
    _check_image_sizes(headers, name)
    _check_plane_attributes(headers, name)
    _check_rescale_everywhere(headers, name)


def _identity(header: SliceHeader, keywords: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(" ".join(str(header.reference.get(k) or "").split()) for k in keywords)


def _check_one_patient_and_study(headers: list[SliceHeader], name: str) -> None:
    """Refuse slices of two patients (PatientID, PatientName) or two studies (StudyInstanceUID) that share
    a SeriesInstanceUID: read together they would be one wrong volume."""
    for what, keywords in (("patients", ("PatientID", "PatientName")), ("studies", ("StudyInstanceUID",))):
        first: dict[tuple[str, ...], SliceHeader] = {}
        for header in headers:
            first.setdefault(_identity(header, keywords), header)
        if len(first) > 1:
            (a, ha), (b, hb) = list(first.items())[:2]
            raise InputError(
                f"The series{name} (SeriesInstanceUID {headers[0].series_uid}) holds slices of {len(first)} "
                f"{what}: {_shown(keywords, a)} (e.g. {ha.path}) and {_shown(keywords, b)} (e.g. {hb.path}); a "
                "series is one patient's scan in one study. Separate the files into one folder per series."
            )


def _shown(keywords: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ", ".join(f"{k} {v!r}" for k, v in zip(keywords, values, strict=True))


def _check_rescale_everywhere(headers: list[SliceHeader], name: str) -> None:
    """RescaleSlope and RescaleIntercept on every slice or on none: a slice without them among slices with
    them would be read with slope 1 and intercept 0 (about 1024 HU off)."""
    for index, keyword in enumerate(("RescaleSlope", "RescaleIntercept")):
        lacking = [h for h in headers if not h.rescale[index]]
        if 0 < len(lacking) < len(headers):
            raise InputError(
                f"{len(lacking)} of {len(headers)} slice(s) of the series{name} have no {keyword} (e.g. "
                f"{lacking[0].path}) while the others have one; their values cannot be converted to HU "
                "consistently. Restore the files from the original data."
            )


def _check_single_frame_grey(headers: list[SliceHeader], name: str) -> None:
    if any(x.frames > 1 for x in headers):
        raise InputError(
            f"The series{name} is stored as multi-frame DICOM ({max(x.frames for x in headers)} frames in one "
            "file, e.g. Enhanced CT); only one-image-per-file series are supported. Export it as classic "
            "single-frame DICOM (e.g. with Slicer or dcmtk) and try again."
        )
    if any(x.samples_per_pixel != 1 for x in headers):
        raise InputError(
            f"The series{name} holds colour (RGB, {headers[0].samples_per_pixel} samples per pixel) images, "
            "not CT intensities."
        )


def _valid_size(header: SliceHeader) -> bool:
    return 0 < (header.rows or 0) <= 65535 and 0 < (header.columns or 0) <= 65535


def _check_image_sizes(headers: list[SliceHeader], name: str) -> None:
    bad_size = [x for x in headers if not _valid_size(x)]
    if bad_size:
        x = bad_size[0]
        raise InputError(
            f"{len(bad_size)} of {len(headers)} file(s) of the series{name} have no valid image size (Rows "
            f"{x.rows}, Columns {x.columns} in {x.path.name}); the files are damaged."
        )
    sizes = {(x.rows, x.columns) for x in headers}
    if len(sizes) > 1:
        raise GeometryError(f"The slices of the series{name} have different image sizes: {sorted(sizes)}.")


def _check_plane_attributes(headers: list[SliceHeader], name: str) -> None:
    missing = [x.path.name for x in headers if x.position is None or x.orientation is None]
    if missing:
        raise GeometryError(
            f"{len(missing)} of {len(headers)} slice(s) of the series{name} lack ImagePositionPatient or "
            f"ImageOrientationPatient (e.g. {missing[0]}); slice positions cannot be determined."
        )
    if any(x.pixel_spacing is None for x in headers):
        raise GeometryError(f"The series{name} lacks PixelSpacing (0028,0030).")


def check_thickness(thickness_mm: float | None) -> float | None:
    """Validate a user-given slice thickness (ParameterError when not a positive finite number; strings,
    even numeric ones, are refused: the API takes numbers)."""
    if thickness_mm is None:
        return None
    if not isinstance(thickness_mm, (int, float, np.integer, np.floating)) or isinstance(
        thickness_mm, (bool, np.bool_)
    ):
        raise ParameterError(
            f"Slice thickness must be a number of millimetres (thickness_mm), got {thickness_mm!r} "
            f"({type(thickness_mm).__name__})."
        )
    value = float(thickness_mm)
    if not np.isfinite(value) or value <= 0:
        raise ParameterError(
            f"Slice thickness must be positive (thickness_mm, millimetres), got {thickness_mm} mm."
        )
    return value


def _geometry(
    headers: list[SliceHeader], folder: Path, thickness_mm: float | None
) -> tuple[SeriesGeometry, list[SliceHeader]]:
    description = headers[0].description or folder.resolve().name
    n_localizers = sum("LOCALIZER" in h.image_type for h in headers)
    if 0 < n_localizers < len(headers):
        # Scout images sometimes share the series UID; they are not part of the stack.
        headers = [h for h in headers if "LOCALIZER" not in h.image_type]
    else:
        n_localizers = 0
    _check_images(headers, description)
    geometry, order = geometry_from_slices(
        [h.position for h in headers],
        [h.orientation for h in headers],
        [h.pixel_spacing for h in headers],
        headers[0].rows,
        headers[0].columns,
        [h.thickness for h in headers],
        description=description,
        series_uid=headers[0].series_uid if headers[0].series_uid != _NO_UID else None,
        modality=headers[0].modality,
    )
    sorted_headers = [headers[int(i)] for i in order]
    geometry = dataclasses.replace(geometry, **series_scan_mode(map(attrgetter("scan_mode"), sorted_headers)))
    reference = dict(sorted_headers[0].reference)
    geometry.extra["dicom"] = reference
    geometry.extra["source_path"] = str(folder.resolve())
    geometry.extra["files"] = [str(h.path) for h in sorted_headers]
    thickness_mm = check_thickness(thickness_mm)
    if thickness_mm is not None:
        geometry = geometry.with_thickness(thickness_mm, source="user")
    if n_localizers:
        note = f"Ignored {n_localizers} localizer (scout) image(s) stored in this series."
        geometry = dataclasses.replace(geometry, warnings=(*geometry.warnings, note))
    return geometry, sorted_headers


def reference_attributes(path: str | os.PathLike) -> dict[str, Any]:
    """The patient, study and frame-of-reference attributes of one DICOM file, as a derived series written by
    :func:`sr4zct.io.write_volume` needs them (``geometry.extra["dicom"]``) to join that study."""
    ds = _read_header(Path(path))
    if ds is None:
        raise InputError(f"{path} is not a DICOM image file.")
    return dict(_header(Path(path), ds).reference)


def read_dicom_geometry(
    folder: str | os.PathLike, *, series_uid: str | None = None, thickness_mm: float | None = None
) -> SeriesGeometry:
    """Geometry of a DICOM series from its headers only (no pixel data is read).

    Parameters
    ----------
    folder : folder holding the series (searched recursively; file names do not matter).
    series_uid : SeriesInstanceUID to pick when the folder holds several series.
    thickness_mm : nominal slice thickness overriding SliceThickness (``thickness_source = "user"``).

    Raises
    ------
    InputError
        No DICOM images, several series and no ``series_uid``, multi-frame or colour images.
    GeometryError
        Missing positions, a single slice, inconsistent slices (see :func:`~sr4zct.geometry.geometry_from_slices`).
    """
    folder = Path(folder)
    headers = _select(scan_folder(folder), folder, series_uid)
    geometry, _ = _geometry(headers, folder, thickness_mm)
    return geometry


def _decode_hint(exc: Exception, transfer_syntax: Any) -> str:
    name = getattr(transfer_syntax, "name", str(transfer_syntax))
    detail = " ".join(str(exc).split())
    text = f"cannot decode the pixel data (transfer syntax {name}, {transfer_syntax}): {detail}"
    if (
        "missing" in detail.lower()
        or "unavailable" in detail.lower()
        or "no pixel data decoders" in detail.lower()
    ):
        return (
            f"{text}. A decoder for this compression is not installed: install the plugin named above "
            "(sr4zct installs pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg and pylibjpeg-rle; JPEG-LS "
            "also needs pyjpegls, or install python-gdcm) or convert the series to uncompressed DICOM."
        )
    try:
        compressed = bool(transfer_syntax.is_compressed)
    except (AttributeError, ValueError):  # not a known transfer syntax UID
        compressed = True
    if compressed:
        return f"{text}. The compressed pixel data appears to be damaged."
    return f"{text}. The pixel data does not match the image header (size, bits) or the file is damaged."


def _read_pixels(header: SliceHeader, shape: tuple[int, int]) -> np.ndarray:
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(header.path, force=True)
    except Exception as exc:
        raise InputError(f"Cannot read DICOM file {header.path}: {exc}") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise InputError(f"DICOM file {header.path} has no pixel data.")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise InputError(f"DICOM file {header.path}: {_decode_hint(exc, ts)}") from exc
    if pixels.shape != shape:
        raise InputError(
            f"DICOM file {header.path} holds an image of shape {pixels.shape}, expected {shape}."
        )
    slope, intercept = _rescale(ds, header.path)
    _check_hu_range(pixels, slope, intercept, header.path)
    if slope == 1.0 and intercept == 0.0:
        return pixels.astype(np.float32)  # float data keeps NaN/Inf: the enhancement checks refuse them
    if slope == 1.0:
        return pixels.astype(np.float32) + np.float32(intercept)
    return (pixels.astype(np.float64) * slope + intercept).astype(np.float32)


def _check_hu_range(pixels: np.ndarray, slope: float, intercept: float, path: Path) -> None:
    """Refuse finite values beyond +-:data:`MAX_ABS_HU` after rescaling (float pixel data included, which
    has no rescale to blame): far outside any CT scale, and beyond float32 precision for the network."""
    finite = pixels[np.isfinite(pixels)] if pixels.dtype.kind == "f" else pixels
    ends = [float(v) * slope + intercept for v in ((finite.min(), finite.max()) if finite.size else ())]
    if not any(abs(v) > MAX_ABS_HU for v in ends):
        return
    worst = max(abs(v) for v in ends)
    if (slope, intercept) == (1.0, 0.0):
        raise InputError(
            f"DICOM file {path} holds values up to {worst:.3g} HU, far outside any CT scale (|HU| <= "
            f"{MAX_ABS_HU:g}); the pixel data is damaged or not CT."
        )
    raise InputError(
        f"DICOM file {path} has RescaleSlope {slope:g} and RescaleIntercept {intercept:g}, which give "
        f"values up to {worst:.3g} HU, far outside any CT scale (|HU| <= {MAX_ABS_HU:g}); the header is damaged."
    )


def _rescale(ds: Any, path: Path) -> tuple[float, float]:
    """RescaleSlope and RescaleIntercept (1 and 0 when absent or empty); present but unusable values are
    refused: a damaged intercept read as 0 would shift every value by about +1024 HU."""
    values = []
    for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        present = keyword in ds
        value = _float_or_none(_get(ds, keyword)) if present else default
        raw = _raw_value(ds, keyword) if present else None
        if value is None and raw not in (None, "", b""):
            raise InputError(
                f"DICOM file {path} has a {keyword} that is not a number ({raw!r}); its values cannot be "
                "converted to HU."
            )
        values.append(default if value is None else value)
    slope, intercept = values
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope <= 0:
        raise InputError(
            f"DICOM file {path} has an invalid RescaleSlope/RescaleIntercept ({slope:g}, {intercept:g}): the "
            "slope must be a positive number and the intercept finite; its values cannot be converted to HU."
        )
    return slope, intercept


def _raw_value(ds: Any, keyword: str) -> Any:
    """The element's value as stored (bytes of a raw element), for messages."""
    try:
        element = ds.get_item(keyword)
    except Exception:
        return "?"
    value = getattr(element, "value", None)
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.strip(b" \0").decode("latin-1", "replace")
    try:
        return str(value).strip()
    except Exception:
        return "?"


def _check_fits_in_memory(n_bytes: int, folder: Path) -> None:
    from sr4zct.system import available_memory_bytes, format_bytes

    available = available_memory_bytes()
    if available is not None and n_bytes > available:
        raise ResourceError(
            f"The series in {folder} needs {format_bytes(n_bytes)} of memory as float32 but only "
            f"{format_bytes(available)} is available."
        )


def read_dicom_volume(
    folder: str | os.PathLike,
    *,
    series_uid: str | None = None,
    thickness_mm: float | None = None,
    workers: int | None = None,
) -> Volume:
    """Read a DICOM series into a :class:`~sr4zct.volume.Volume` in HU (float32), sorted by position.

    Parameters
    ----------
    folder, series_uid, thickness_mm : as for :func:`read_dicom_geometry`.
    workers : threads used to read and decode files (default: up to 4).

    Raises
    ------
    InputError
        As for :func:`read_dicom_geometry`, plus undecodable pixel data (the message says which decoder
        is missing).
    """
    folder = Path(folder)
    headers = _select(scan_folder(folder), folder, series_uid)
    geometry, sorted_headers = _geometry(headers, folder, thickness_mm)
    n, rows, columns = geometry.shape
    _check_fits_in_memory(n * rows * columns * 4, folder)
    array = np.empty((n, rows, columns), dtype=np.float32)

    def load(k: int) -> None:
        array[k] = _read_pixels(sorted_headers[k], (rows, columns))

    workers = workers or min(4, os.cpu_count() or 1)
    if workers > 1 and n > 8:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(load, range(n)))
    else:
        for k in range(n):
            load(k)
    return Volume(array=array, geometry=geometry)
