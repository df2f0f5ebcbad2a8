"""Writing a Volume as a derived DICOM series (one file per slice, uncompressed, int16 + rescale).

The new series gets its own SeriesInstanceUID and SOPInstanceUIDs, ImageType ``DERIVED\\SECONDARY``,
and joins the patient, study and frame of reference of the series it was computed from when the
geometry carries them (``geometry.extra["dicom"]``, filled by :mod:`sr4zct.io.dicom`); otherwise new
study and frame-of-reference UIDs are generated. Every slice gets its exact ImagePositionPatient
(``origin + position * axes_lps[0]``), so the reader rebuilds the same geometry.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import numpy as np

from sr4zct._version import __version__
from sr4zct.errors import OutputError
from sr4zct.io.atomic import atomic_output, check_finite_output, check_output_path
from sr4zct.io.ownership import DICOM_MARK
from sr4zct.volume import Volume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

#: Reference attributes copied unchanged into the derived series (patient, study, frame of reference).
COPIED_KEYWORDS = (
    "SpecificCharacterSet",
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
    "Manufacturer",
    "BodyPartExamined",
    "ConvolutionKernel",
    "KVP",
)


def rescale_for_int16(array: np.ndarray) -> tuple[float, float]:
    """``(slope, intercept)`` so that ``round((hu - intercept) / slope)`` fits int16.

    Integer HU are kept exactly (slope 1, intercept 0) whenever the range fits; wider ranges are scaled.
    """
    if array.size == 0:
        return 1.0, 0.0
    lo = float(np.nanmin(array))
    hi = float(np.nanmax(array))
    if lo >= -32768 and hi <= 32767:
        return 1.0, 0.0
    slope = (hi - lo) / 65535.0
    intercept = lo + 32768.0 * slope
    return slope, intercept


def _ds_number(value: float) -> str:
    """A DS value (at most 16 characters) as precise as the VR allows."""
    for digits in range(15, 5, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.6g}"


def _comment(metadata: dict[str, Any]) -> str:
    return "; ".join(f"{k}={v}" for k, v in metadata.items() if v is not None)


def write_dicom_series(
    volume: Volume,
    path: str | os.PathLike,
    *,
    metadata: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``volume`` as a derived DICOM series into the folder ``path`` atomically.

    Parameters
    ----------
    volume : HU volume; ``volume.geometry.extra["dicom"]`` (reference attributes) is used when present.
    path : output folder; it must not exist, be empty, or (``overwrite=True``) hold only DICOM files of a
        previous output. It may not be the input folder or lie inside it.
    metadata : recorded in ImageComments and DerivationDescription. Special keys:
        ``slice_thickness_mm`` (SliceThickness; default: ``geometry.slice_thickness_mm``, or the slice
        spacing when that is unknown), ``series_description`` or ``SeriesDescription``
        (SeriesDescription; default: the reference's + " SR4ZCT").

    Returns
    -------
    The resolved output folder; files are named ``IM00001.dcm`` ... in slice order.

    Raises
    ------
    OutputError
        Output exists / is the input / is not writable, or the geometry cannot be expressed in DICOM
        (non-orthogonal in-plane axes).
    """
    g = volume.geometry
    metadata = {**volume.metadata, **(metadata or {})}
    ref: dict[str, Any] = dict(g.extra.get("dicom") or {})
    source = g.extra.get("source_path")
    target = check_output_path(path, overwrite=overwrite, directory=True, inputs=[source])
    check_finite_output(volume.array, target)

    row_dir, col_dir = _in_plane_axes(volume)
    normal = np.cross(row_dir, col_dir)
    origin = np.asarray(g.origin_lps, dtype=float)
    stack_dir = np.asarray(g.axes_lps[0], dtype=float)
    positions = origin + np.outer(np.asarray(g.slice_positions_mm, dtype=float), stack_dir)
    slope, intercept = rescale_for_int16(volume.array)
    common = {
        **_reference_attributes(ref),
        **_series_attributes(volume, ref, metadata, normal),
        **_image_attributes(volume, metadata, row_dir, col_dir, slope, intercept),
    }
    with atomic_output(target, overwrite=overwrite, directory=True, inputs=[source]) as tmp:
        for k in range(g.shape[0]):
            slice_attributes = {
                "InstanceNumber": k + 1,
                "ImagePositionPatient": [_ds_number(float(v)) for v in positions[k]],
                "SliceLocation": _ds_number(float(positions[k] @ normal)),
                "PixelData": _stored_int16(volume.array[k], slope, intercept),
            }
            _write_slice(tmp / f"IM{k + 1:05d}.dcm", {**common, **slice_attributes})
    return target


def _in_plane_axes(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """The row and column directions (LPS unit vectors); refused when not orthogonal."""
    row_dir = np.asarray(volume.geometry.axes_lps[2], dtype=float)
    col_dir = np.asarray(volume.geometry.axes_lps[1], dtype=float)
    if abs(float(row_dir @ col_dir)) > 1e-4:
        raise OutputError(
            "Cannot write DICOM: the in-plane axes are not orthogonal, which ImageOrientationPatient cannot "
            "express. Write a .nrrd or .mha file instead."
        )
    return row_dir, col_dir


def _reference_attributes(ref: dict[str, Any]) -> dict[str, Any]:
    """The patient, study and frame-of-reference attributes copied from the reference series; the patient
    and study identifiers DICOM requires are blank when the reference has none."""
    out = {key: ref[key] for key in COPIED_KEYWORDS if ref.get(key) is not None}
    for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID"):
        out.setdefault(key, "")
    return out


def _series_attributes(
    volume: Volume, ref: dict[str, Any], metadata: dict[str, Any], normal: np.ndarray
) -> dict[str, Any]:
    """What identifies and describes the new derived series: its UIDs, number, description, dates and the
    derivation that marks it as SR4ZCT's."""
    from pydicom.uid import generate_uid

    g = volume.geometry
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    description, comment, derivation = _series_text(volume, ref, metadata)
    out: dict[str, Any] = {
        "SOPClassUID": ref.get("SOPClassUID") or CT_IMAGE_STORAGE,
        "ImageType": ["DERIVED", "SECONDARY", "AXIAL"] if abs(normal[2]) > 0.9 else ["DERIVED", "SECONDARY"],
        "Modality": ref.get("Modality") or g.modality or "CT",
        "StudyInstanceUID": ref.get("StudyInstanceUID") or generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": ref.get("FrameOfReferenceUID") or generate_uid(),
        "SeriesNumber": _series_number(ref),
        "SeriesDescription": description,
        "SeriesDate": date,
        "ContentDate": date,
        "SeriesTime": time,
        "ContentTime": time,
        "DerivationDescription": derivation[:1024],
    }
    if ref.get("StudyDate") is None:
        out["StudyDate"], out["StudyTime"] = date, time
    if comment:
        out["ImageComments"] = comment[:10240]
    return out


def _series_number(ref: dict[str, Any]) -> int:
    """The reference's series number + 1000 (1001 without a usable one)."""
    try:
        return int(ref.get("SeriesNumber")) + 1000
    except (TypeError, ValueError):
        return 1001


def _series_text(volume: Volume, ref: dict[str, Any], metadata: dict[str, Any]) -> tuple[str, str, str]:
    """``(SeriesDescription, ImageComments, DerivationDescription)`` from the metadata and the reference."""
    description = metadata.get("series_description", metadata.get("SeriesDescription"))
    if description is None:
        base = ref.get("SeriesDescription") or volume.geometry.description or "CT"
        description = f"{base} SR4ZCT"
    comment = _comment(
        {k: v for k, v in metadata.items() if k not in ("series_description", "SeriesDescription")}
    )
    # DICOM_MARK starts it: overwrite=True replaces only folders whose every file carries it
    derivation = f"{DICOM_MARK}{__version__} through-plane resolution enhancement" + (
        f"; {comment}" if comment else ""
    )
    return str(description)[:64], comment, derivation


def _image_attributes(
    volume: Volume,
    metadata: dict[str, Any],
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    slope: float,
    intercept: float,
) -> dict[str, Any]:
    """The image plane and pixel attributes every slice shares (int16 pixels, rescaled to HU)."""
    g = volume.geometry
    thickness = metadata.get("slice_thickness_mm", g.slice_thickness_mm)
    thickness = float(thickness) if thickness is not None else float(g.slice_spacing_mm)
    _, rows, columns = g.shape
    return {
        "ImageOrientationPatient": [_ds_number(float(v)) for v in (*row_dir, *col_dir)],
        "PixelSpacing": [_ds_number(g.pixel_spacing_mm[0]), _ds_number(g.pixel_spacing_mm[1])],
        "SliceThickness": _ds_number(thickness),
        "SpacingBetweenSlices": _ds_number(float(g.slice_spacing_mm)),
        "Rows": rows,
        "Columns": columns,
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "BitsAllocated": 16,
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": 1,
        "RescaleSlope": _ds_number(slope),
        "RescaleIntercept": _ds_number(intercept),
        "RescaleType": "HU",
    }


def _stored_int16(image_hu: np.ndarray, slope: float, intercept: float) -> bytes:
    """One slice's PixelData: ``round((hu - intercept) / slope)`` clipped to int16, little endian."""
    stored = np.round((image_hu.astype(np.float64) - intercept) / slope)
    return np.clip(stored, -32768, 32767).astype("<i2").tobytes()


def _write_slice(file: Path, attributes: dict[str, Any]) -> None:
    """Write one CT image file with a new SOPInstanceUID and the given attributes (by keyword)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = attributes["SOPClassUID"]
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(file), {}, file_meta=meta, preamble=b"\0" * 128)
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.SOPInstanceUID = sop_uid
    import pydicom

    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(file, enforce_file_format=True)
    else:  # pydicom 2.4 (3D Slicer 5.10) has no enforce_file_format; the encoding is set on the dataset
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(file, write_like_original=False)
