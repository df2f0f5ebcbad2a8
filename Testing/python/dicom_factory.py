"""Small synthetic DICOM series for tests (good and bad inputs).

Typical use::

    from dicom_factory import write_series
    series = write_series(tmp_path / "ct", n_slices=6, thickness_mm=3.0, spacing_mm=2.0)
    series.hu          # (n, rows, columns) float32 HU the files encode, in stacking order
    series.positions   # (n, 3) ImagePositionPatient in stacking order
    series.paths       # the files, in stacking order

Everything is a parameter: thickness (one value, one per slice, or None to omit the tag), explicit
positions, orientation, gantry tilt, in-plane size and spacing, modality, missing tags, file naming and
order (shuffled, reversed, Siemens-like ``.IMA``), transfer syntax (RLE Lossless and JPEG 2000 Lossless
encode with the installed plugins), several series into one folder (call it twice with the same folder).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGLosslessSV1, generate_uid

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


@dataclass
class SyntheticSeries:
    folder: Path
    paths: list[Path]  # in stacking order (ascending along the slice normal + tilt)
    positions: np.ndarray  # (n, 3) ImagePositionPatient, stacking order
    hu: np.ndarray  # (n, rows, columns) float32, stacking order, as encoded (integer HU)
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    orientation: tuple[float, ...]
    pixel_spacing_mm: tuple[float, float]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def normal(self) -> np.ndarray:
        o = np.asarray(self.orientation, dtype=float)
        return np.cross(o[:3], o[3:])


def default_hu(n_slices: int, rows: int, columns: int, seed: int = 0) -> np.ndarray:
    """Integer HU values that differ per slice, row and column (order errors show up)."""
    k, i, j = np.meshgrid(np.arange(n_slices), np.arange(rows), np.arange(columns), indexing="ij")
    rng = np.random.default_rng(seed)
    noise = rng.integers(-20, 21, size=(n_slices, rows, columns))
    return (-1000 + 100 * k + 7 * i + 3 * j + noise).astype(np.float32)


def positions_for(
    n_slices: int,
    *,
    spacing_mm: float = 2.0,
    origin_lps: Sequence[float] = (-10.0, -20.0, -30.0),
    orientation: Sequence[float] = AXIAL,
    tilt_deg: float = 0.0,
) -> np.ndarray:
    """Slice positions spaced ``spacing_mm`` along the normal; a tilt shears them along the column direction."""
    o = np.asarray(orientation, dtype=float)
    normal = np.cross(o[:3], o[3:])
    shear = math.tan(math.radians(tilt_deg)) * spacing_mm
    k = np.arange(n_slices, dtype=float)[:, None]
    return np.asarray(origin_lps, dtype=float) + k * spacing_mm * normal + k * shear * o[3:]


def write_series(
    folder: str | Path,
    *,
    n_slices: int = 5,
    rows: int = 12,
    columns: int = 10,
    pixel_spacing_mm: tuple[float, float] = (0.5, 0.6),
    thickness_mm: float | Sequence[float | None] | None = 3.0,
    spacing_mm: float = 2.0,
    positions: Sequence[Sequence[float]] | np.ndarray | None = None,
    origin_lps: Sequence[float] = (-10.0, -20.0, -30.0),
    orientation: Sequence[float] = AXIAL,
    tilt_deg: float = 0.0,
    hu: np.ndarray | None = None,
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    modality: str = "CT",
    series_uid: str | None = None,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_description: str = "synthetic",
    series_number: int = 1,
    missing_tags: Sequence[str] = (),
    extra_tags: dict[str, Any] | None = None,
    per_slice_tags: dict[str, Sequence[Any]] | None = None,
    file_order: str = "sorted",
    name_pattern: str = "IM{index:04d}.dcm",
    transfer_syntax: str = ExplicitVRLittleEndian,
    samples_per_pixel: int = 1,
    number_of_frames: int | None = None,
    preamble: bool = True,
    seed: int = 0,
) -> SyntheticSeries:
    """Write a synthetic single-frame DICOM series into ``folder`` (created if needed).

    Parameters
    ----------
    thickness_mm : SliceThickness for every slice, a per-slice sequence (``None`` entries omit the tag on
        that slice), or ``None`` to omit it everywhere.
    positions : explicit ImagePositionPatient per slice (stacking order); otherwise from ``origin_lps``,
        ``spacing_mm``, ``orientation`` and ``tilt_deg`` (:func:`positions_for`).
    hu : (n, rows, columns) HU values; default :func:`default_hu`. Stored as
        ``round((hu - intercept) / slope)`` in uint16/int16, so use integer HU with slope 1 for exactness.
    missing_tags : DICOM keywords to delete from every file (e.g. ``"ImagePositionPatient"``).
    extra_tags : keyword -> value set on every file (a list value is one multi-valued attribute).
    per_slice_tags : keyword -> sequence of one value per slice (stacking order).
    file_order : how files are named relative to the stacking order: ``"sorted"`` (index k = slice k),
        ``"reversed"`` or ``"shuffled"`` (a seeded permutation).
    name_pattern : file name format, ``{index}`` (file index) and ``{uid}`` available; e.g.
        ``"CT.{index:04d}.IMA"`` or ``"{index}"`` for no extension.
    transfer_syntax : UID; compressed syntaxes are encoded with pydicom: RLE Lossless at any size, JPEG 2000
        Lossless only for images of at least 32 x 32 pixels (an OpenJPEG limit); JPEG Lossless SV1
        (1.2.840.10008.1.2.4.70, which pydicom cannot encode) with :func:`jpeg_lossless_sv1` here.
    samples_per_pixel : 3 writes an RGB image (for bad-input tests).
    number_of_frames : writes a NumberOfFrames attribute (multi-frame bad input; pixel data stays 2-D).
    preamble : False writes files without the 128-byte preamble and ``DICM`` marker.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if positions is None:
        pos = positions_for(
            n_slices, spacing_mm=spacing_mm, origin_lps=origin_lps, orientation=orientation, tilt_deg=tilt_deg
        )
    else:
        pos = np.asarray(positions, dtype=float)
        n_slices = len(pos)
    if hu is None:
        hu = default_hu(n_slices, rows, columns, seed=seed)
    hu = np.asarray(hu, dtype=np.float32)
    if hu.shape != (n_slices, rows, columns):
        raise ValueError(f"hu must have shape {(n_slices, rows, columns)}, got {hu.shape}")
    if thickness_mm is None or np.isscalar(thickness_mm):
        thicknesses = [thickness_mm] * n_slices
    else:
        thicknesses = list(thickness_mm)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_of_reference_uid or generate_uid()
    rng = np.random.default_rng(seed)
    if file_order == "sorted":
        file_index = list(range(n_slices))
    elif file_order == "reversed":
        file_index = list(range(n_slices))[::-1]
    elif file_order == "shuffled":
        file_index = [int(i) for i in rng.permutation(n_slices)]
    else:
        raise ValueError(f"unknown file_order {file_order!r}")

    stored = np.round((hu - rescale_intercept) / rescale_slope)
    signed = bool(stored.min() < 0)
    dtype = np.int16 if signed else np.uint16
    paths: list[Path] = []
    for k in range(n_slices):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / name_pattern.format(index=file_index[k] + 1, uid=sop_uid)
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.Modality = modality
        ds.PatientName = "Synthetic^Phantom"
        ds.PatientID = "SR4ZCT-TEST"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.StudyDescription = "sr4zct tests"
        ds.SeriesDescription = series_description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = file_index[k] + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in pos[k]]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1])]
        if thicknesses[k] is not None:
            ds.SliceThickness = float(thicknesses[k])
        ds.Rows = rows
        ds.Columns = columns
        ds.SamplesPerPixel = samples_per_pixel
        ds.PhotometricInterpretation = "MONOCHROME2" if samples_per_pixel == 1 else "RGB"
        ds.BitsAllocated = 16 if samples_per_pixel == 1 else 8
        ds.BitsStored = ds.BitsAllocated
        ds.HighBit = ds.BitsAllocated - 1
        ds.PixelRepresentation = 1 if (signed and samples_per_pixel == 1) else 0
        ds.RescaleSlope = rescale_slope
        ds.RescaleIntercept = rescale_intercept
        if samples_per_pixel == 1:
            ds.PixelData = stored[k].astype(dtype).tobytes()
        else:
            ds.PlanarConfiguration = 0
            rgb = np.repeat(
                np.clip(stored[k], 0, 255).astype(np.uint8)[..., None], samples_per_pixel, axis=-1
            )
            ds.PixelData = rgb.tobytes()
        if number_of_frames is not None:
            ds.NumberOfFrames = number_of_frames
        for key, value in (extra_tags or {}).items():
            setattr(ds, key, value)
        for key, values in (per_slice_tags or {}).items():
            setattr(ds, key, values[k])
        for key in missing_tags:
            if key in ds:
                delattr(ds, key)
        if transfer_syntax == JPEGLosslessSV1 and samples_per_pixel == 1:
            frame = jpeg_lossless_sv1(stored[k].astype(dtype).view(np.uint16))
            ds.PixelData = encapsulate([frame])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        elif transfer_syntax != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax)
        ds.save_as(path, enforce_file_format=preamble)
        paths.append(path)
    return SyntheticSeries(
        folder=folder,
        paths=paths,
        positions=pos,
        hu=hu,
        series_uid=series_uid,
        study_uid=study_uid,
        frame_of_reference_uid=frame_uid,
        orientation=tuple(float(v) for v in orientation),
        pixel_spacing_mm=(float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1])),
    )


def jpeg_lossless_sv1(image: np.ndarray) -> bytes:
    """Encode a 2-D uint16 image as a JPEG Lossless, Non-Hierarchical, First-Order Prediction stream.

    Process 14, selection value 1 (left neighbour), 16-bit precision, no point transform; a fixed Huffman
    table gives every difference category (0..16) a 5-bit code. Small and slow: for test images only.
    """
    image = np.asarray(image, dtype=np.uint16)
    rows, columns = image.shape
    x = image.astype(np.int64)
    pred = np.empty_like(x)
    pred[0, 0] = 1 << 15
    pred[0, 1:] = x[0, :-1]
    pred[1:, 0] = x[:-1, 0]
    pred[1:, 1:] = x[1:, :-1]
    diff = (x - pred) % 65536
    diff = np.where(diff > 32768, diff - 65536, diff)  # modulo-2^16 difference in [-32767, 32768]

    bits: list[str] = []
    for d in diff.ravel().tolist():
        ssss = 16 if d == 32768 else abs(d).bit_length()
        bits.append(format(ssss, "05b"))
        if 0 < ssss < 16:
            value = d if d > 0 else d + (1 << ssss) - 1
            bits.append(format(value, f"0{ssss}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    scan = bytearray()
    for i in range(0, len(stream), 8):
        byte = int(stream[i : i + 8], 2)
        scan.append(byte)
        if byte == 0xFF:
            scan.append(0x00)

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    counts = bytes([0, 0, 0, 0, 17] + [0] * 11)  # 17 codes of length 5
    dht = segment(0xC4, bytes([0x00]) + counts + bytes(range(17)))
    sof3 = segment(
        0xC3, bytes([16]) + rows.to_bytes(2, "big") + columns.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    )
    sos = segment(0xDA, bytes([1, 1, 0x00, 1, 0, 0]))
    return b"\xff\xd8" + dht + sof3 + sos + bytes(scan) + b"\xff\xd9"
