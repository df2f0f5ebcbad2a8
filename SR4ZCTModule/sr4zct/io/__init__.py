"""Reading and writing CT volumes: DICOM folders (pydicom) and NRRD / NIfTI / MHA files (SimpleITK).

* :func:`read_volume` / :func:`read_geometry` take a DICOM folder (or one file of the series) or an image
  file and return a :class:`~sr4zct.volume.Volume` / :class:`~sr4zct.volume.SeriesGeometry` in the shared
  ``(slice, row, column)`` layout. ``read_geometry`` reads DICOM headers only.
* :func:`write_volume` writes atomically: an image file for ``.nrrd .nii .nii.gz .mha``, a DICOM series
  for an existing folder or a name without an extension; anything else is refused.
* :func:`list_series` lists the series of a DICOM folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from sr4zct.errors import InputError, OutputError, ParameterError
from sr4zct.io.dicom import SeriesInfo, list_series, read_dicom_geometry, read_dicom_volume
from sr4zct.volume import SeriesGeometry, Volume

IMAGE_SUFFIXES = (".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd")

__all__ = [
    "IMAGE_SUFFIXES",
    "WRITE_SUFFIXES",
    "SeriesInfo",
    "as_path",
    "check_output",
    "image_suffix",
    "is_dicom_path",
    "list_series",
    "output_kind",
    "read_geometry",
    "read_volume",
    "write_volume",
]


def image_suffix(path: str | os.PathLike) -> str | None:
    """The image-file suffix of ``path`` (``".nii.gz"``, ``".nrrd"``, ...) or None."""
    name = Path(path).name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def is_dicom_path(path: str | os.PathLike) -> bool:
    """True when ``path`` is read as DICOM: a folder, or a file that is not a NRRD/NIfTI/MHA image."""
    path = Path(path)
    return path.is_dir() or (path.is_file() and image_suffix(path) is None)


def _dicom_file_series(path: Path) -> tuple[Path, str | None]:
    """For a single DICOM file: its folder and its SeriesInstanceUID."""
    from sr4zct.io.dicom import _read_header

    ds = _read_header(path)
    if ds is None:
        raise InputError(
            f"{path} is neither a DICOM image nor a supported image file "
            f"({', '.join(IMAGE_SUFFIXES)}); give a DICOM folder or a volume file."
        )
    uid = ds.get("SeriesInstanceUID")
    return path.parent, (str(uid) if uid else None)


def as_path(path: object, parameter: str = "path") -> Path:
    """``path`` (a ``str`` or ``os.PathLike``) as a :class:`~pathlib.Path`; anything else is a
    :class:`ParameterError` naming ``parameter``."""
    if isinstance(path, Path):
        return path
    if isinstance(path, str) or (isinstance(path, os.PathLike) and isinstance(os.fspath(path), str)):
        if not str(path).strip() or "\0" in str(path):
            raise ParameterError(f"{parameter} must name a file or folder, got {str(path)!r}.")
        return Path(path)
    raise ParameterError(
        f"{parameter} must be a file or folder path (str or os.PathLike), got {path!r} ({type(path).__name__})."
    )


def _check_series_uid(series_uid: object) -> str | None:
    if series_uid is None or isinstance(series_uid, str):
        return series_uid
    raise ParameterError(f"series_uid must be a SeriesInstanceUID string, got {series_uid!r}.")


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError(f"Input {path} does not exist.")
    if not (path.is_file() or path.is_dir()):
        raise InputError(f"Input {path} is neither a file nor a folder (a pipe, socket or device).")


def read_volume(
    path: str | os.PathLike,
    *,
    series_uid: str | None = None,
    thickness_mm: float | None = None,
    slice_axis: int | None = None,
    allow_detached_data: bool = False,
) -> Volume:
    """Read a CT volume in HU (float32) with its geometry.

    Parameters
    ----------
    path : DICOM folder, one DICOM file of the series (its folder is read), or a NRRD/NIfTI/MHA file.
    series_uid : SeriesInstanceUID when a DICOM folder holds several series.
    thickness_mm : nominal slice thickness (overrides the file's; ``thickness_source = "user"``).
    slice_axis : image files only: which NumPy axis (as SimpleITK reads it, ``(z, y, x)``) is the
        through-plane axis; default is the axis recorded by :func:`write_volume` (header key
        ``sr4zct_slice_axis``), else the axis with the largest spacing. Ignored for DICOM.
    allow_detached_data : image files only: read a detached data file (``.mhd`` ``ElementDataFile``, NRRD
        ``data file``) that does not lie beside its header; refused by default.
    """
    path = as_path(path)
    series_uid = _check_series_uid(series_uid)
    _check_exists(path)
    if image_suffix(path) is not None and path.is_file():
        from sr4zct.io.image import read_image_volume

        return read_image_volume(
            path, thickness_mm=thickness_mm, slice_axis=slice_axis, allow_detached_data=allow_detached_data
        )
    if path.is_file():
        path, file_uid = _dicom_file_series(path)
        series_uid = series_uid or file_uid
    return read_dicom_volume(path, series_uid=series_uid, thickness_mm=thickness_mm)


def read_geometry(
    path: str | os.PathLike,
    *,
    series_uid: str | None = None,
    thickness_mm: float | None = None,
    slice_axis: int | None = None,
    allow_detached_data: bool = False,
) -> SeriesGeometry:
    """Geometry of a CT volume without reading DICOM pixel data. Parameters as :func:`read_volume`."""
    path = as_path(path)
    series_uid = _check_series_uid(series_uid)
    _check_exists(path)
    if image_suffix(path) is not None and path.is_file():
        from sr4zct.io.image import read_image_geometry

        return read_image_geometry(
            path, thickness_mm=thickness_mm, slice_axis=slice_axis, allow_detached_data=allow_detached_data
        )
    if path.is_file():
        path, file_uid = _dicom_file_series(path)
        series_uid = series_uid or file_uid
    return read_dicom_geometry(path, series_uid=series_uid, thickness_mm=thickness_mm)


WRITE_SUFFIXES = (".nrrd", ".mha", ".nii", ".nii.gz")


def output_kind(path: str | os.PathLike) -> str:
    """``"image"`` (one NRRD/MHA/NIfTI file) or ``"dicom"`` (a folder) for an output path.

    A DICOM series goes into an existing folder or a name without an extension (a purely numeric one such
    as ``series.2`` counts as none). Any other extension (``out.png``, ``out.xyz``, ``out.dcm``) is refused
    rather than silently becoming a folder of that name, as are ``.nhdr``/``.mhd`` (their data would be a
    second file that cannot be written atomically).

    Raises
    ------
    OutputError
        An extension SR4ZCT does not write.
    """
    path = as_path(path, "output_path")
    suffix = image_suffix(path)
    if suffix is not None and not path.is_dir():
        if suffix not in WRITE_SUFFIXES:
            raise OutputError(
                f"Cannot write {path.name}: use .nrrd, .mha, .nii or .nii.gz, or a folder for DICOM "
                "(.nhdr/.mhd keep the data in a second file and cannot be written atomically)."
            )
        return "image"
    extension = path.suffix
    if path.is_dir() or not extension or extension[1:].isdigit():
        return "dicom"
    raise OutputError(
        f"Cannot write {path.name}: SR4ZCT does not write {extension!r} files; use .nrrd, .mha, .nii or .nii.gz "
        "for a volume file, or a folder name without an extension for a DICOM series."
    )


def check_output(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    input_path: str | os.PathLike | None = None,
    content: str | None = None,
) -> Path:
    """Check, before any long computation, that :func:`write_volume` will accept ``path``.

    Applies the same rules as the writers: a known output type (:func:`output_kind`); an existing output
    needs ``overwrite`` and must be one SR4ZCT wrote, of the same kind when ``content`` is given
    (``"volume"``, ``"uncertainty"``, ``"preview"``; see :func:`sr4zct.io.atomic.check_output_path`); the
    output may not be a symbolic link, be the input, lie inside the input DICOM folder (a DICOM file input
    counts as its folder) or contain it; a NIfTI output may not share its sidecar with a sibling
    (``ct.nii`` beside ``ct.nii.gz``); an image file name must be UTF-8 text. Returns the resolved path;
    raises ``OutputError``.
    """
    from sr4zct.io.atomic import check_output_path

    path = as_path(path, "output_path")
    kind = output_kind(path)
    inputs: list[Path] = []
    if input_path is not None:
        source = as_path(input_path, "input_path")
        inputs.append(source)
        if source.is_file() and image_suffix(source) is None:
            inputs.append(source.parent)
    if kind == "image":
        from sr4zct.io.files import check_utf8_name

        check_utf8_name(path.absolute(), OutputError)
    resolved = check_output_path(
        path, overwrite=overwrite, directory=kind == "dicom", inputs=inputs, content=content
    )
    if kind == "image" and image_suffix(path) in (".nii", ".nii.gz"):
        from sr4zct.io.image import check_sidecar

        check_sidecar(resolved, overwrite=overwrite)
    return resolved


def _check_same_content(path: Path, volume: Volume, metadata: dict) -> None:
    """With ``overwrite``, an existing SR4ZCT output is replaced only by the same kind of output (an
    enhanced volume, an uncertainty map or a preview: ``sr4zct_content`` of the metadata); the writers'
    own checks, in their order, with that kind."""
    from sr4zct.io.atomic import check_output_path
    from sr4zct.io.ownership import content_of_metadata

    check_output_path(
        path, overwrite=True, directory=output_kind(path) == "dicom",
        inputs=[volume.geometry.extra.get("source_path")], content=content_of_metadata(metadata),
    )  # fmt: skip


def write_volume(
    volume: Volume,
    path: str | os.PathLike,
    *,
    metadata: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``volume`` atomically; returns the written path.

    ``.nrrd .nii .nii.gz .mha`` -> one image file via SimpleITK (NIfTI gets a ``<name>.json`` sidecar with
    the metadata); an existing folder or a name without an extension -> a DICOM series (a new
    SeriesInstanceUID in the reference study when ``volume.geometry.extra["dicom"]`` has one). Other
    extensions are refused (:func:`output_kind`).

    Raises
    ------
    OutputError
        Unknown extension, the output exists and ``overwrite`` is False (or it was not written by SR4ZCT),
        it is the input or inside the input DICOM folder, the volume holds NaN/Inf, or it cannot be written.
        Nothing partial is left behind.
    """
    if not isinstance(volume, Volume):
        raise ParameterError(f"write_volume needs a Volume, got {type(volume).__name__}.")
    path = as_path(path, "output_path")
    if overwrite:
        _check_same_content(path, volume, {**volume.metadata, **(metadata or {})})
    if output_kind(path) == "image":
        from sr4zct.io.image import write_image_volume

        return write_image_volume(volume, path, metadata=metadata, overwrite=overwrite)
    from sr4zct.io.dicom_writer import write_dicom_series

    return write_dicom_series(volume, path, metadata=metadata, overwrite=overwrite)
