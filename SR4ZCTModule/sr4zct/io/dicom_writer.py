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
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    g = volume.geometry
    metadata = {**volume.metadata, **(metadata or {})}
    ref: dict[str, Any] = dict(g.extra.get("dicom") or {})
    source = g.extra.get("source_path")
    target = check_output_path(path, overwrite=overwrite, directory=True, inputs=[source])
    check_finite_output(volume.array, target)

    row_dir = np.asarray(g.axes_lps[2], dtype=float)
    col_dir = np.asarray(g.axes_lps[1], dtype=float)
    stack_dir = np.asarray(g.axes_lps[0], dtype=float)
    if abs(float(row_dir @ col_dir)) > 1e-4:
        raise OutputError(
            "Cannot write DICOM: the in-plane axes are not orthogonal, which ImageOrientationPatient cannot "
            "express. Write a .nrrd or .mha file instead."
        )
    normal = np.cross(row_dir, col_dir)
    origin = np.asarray(g.origin_lps, dtype=float)
    positions = origin + np.outer(np.asarray(g.slice_positions_mm, dtype=float), stack_dir)

    thickness = metadata.get("slice_thickness_mm", g.slice_thickness_mm)
    thickness = float(thickness) if thickness is not None else float(g.slice_spacing_mm)
    description = metadata.get("series_description", metadata.get("SeriesDescription"))
    if description is None:
        base = ref.get("SeriesDescription") or g.description or "CT"
        description = f"{base} SR4ZCT"
    description = str(description)[:64]
    comment_items = {
        k: v for k, v in metadata.items() if k not in ("series_description", "SeriesDescription")
    }
    comment = _comment(comment_items)
    # DICOM_MARK starts it: overwrite=True replaces only folders whose every file carries it
    derivation = f"{DICOM_MARK}{__version__} through-plane resolution enhancement" + (
        f"; {comment}" if comment else ""
    )

    slope, intercept = rescale_for_int16(volume.array)
    series_uid = generate_uid()
    study_uid = ref.get("StudyInstanceUID") or generate_uid()
    frame_uid = ref.get("FrameOfReferenceUID") or generate_uid()
    sop_class = ref.get("SOPClassUID") or CT_IMAGE_STORAGE
    try:
        series_number = int(ref.get("SeriesNumber")) + 1000
    except (TypeError, ValueError):
        series_number = 1001
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    n, rows, columns = g.shape

    with atomic_output(target, overwrite=overwrite, directory=True, inputs=[source]) as tmp:
        for k in range(n):
            sop_uid = generate_uid()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = sop_class
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            file = tmp / f"IM{k + 1:05d}.dcm"
            ds = FileDataset(str(file), {}, file_meta=meta, preamble=b"\0" * 128)
            for key in COPIED_KEYWORDS:
                value = ref.get(key)
                if value is not None:
                    setattr(ds, key, value)
            for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID"):
                if key not in ds:
                    setattr(ds, key, "")
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = sop_uid
            ds.ImageType = (
                ["DERIVED", "SECONDARY", "AXIAL"] if abs(normal[2]) > 0.9 else ["DERIVED", "SECONDARY"]
            )
            ds.Modality = ref.get("Modality") or g.modality or "CT"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.FrameOfReferenceUID = frame_uid
            ds.SeriesNumber = series_number
            ds.SeriesDescription = description
            ds.SeriesDate = ds.ContentDate = date
            ds.SeriesTime = ds.ContentTime = time
            if "StudyDate" not in ds:
                ds.StudyDate, ds.StudyTime = date, time
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [_ds_number(float(v)) for v in positions[k]]
            ds.ImageOrientationPatient = [_ds_number(float(v)) for v in (*row_dir, *col_dir)]
            ds.SliceLocation = _ds_number(float(positions[k] @ normal))
            ds.PixelSpacing = [_ds_number(g.pixel_spacing_mm[0]), _ds_number(g.pixel_spacing_mm[1])]
            ds.SliceThickness = _ds_number(thickness)
            ds.SpacingBetweenSlices = _ds_number(float(g.slice_spacing_mm))
            ds.Rows, ds.Columns = rows, columns
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.RescaleSlope = _ds_number(slope)
            ds.RescaleIntercept = _ds_number(intercept)
            ds.RescaleType = "HU"
            ds.DerivationDescription = derivation[:1024]
            if comment:
                ds.ImageComments = comment[:10240]
            stored = np.round((volume.array[k].astype(np.float64) - intercept) / slope)
            ds.PixelData = np.clip(stored, -32768, 32767).astype("<i2").tobytes()
            ds.save_as(file, enforce_file_format=True)
    return target
