"""Is an existing path an output SR4ZCT wrote? ``overwrite`` replaces only those.

A path is recognised by SR4ZCT's own metadata, never by its name:

* NRRD / MHA (``.nrrd .nhdr .mha .mhd``): the header key ``sr4zct_slice_axis`` that every SR4ZCT image
  file carries;
* NIfTI (``.nii .nii.gz``): ``descrip`` starting with ``SR4ZCT``, or a ``<name>.json`` sidecar with that key;
* a DICOM folder: every entry is a DICOM file whose DerivationDescription starts with ``SR4ZCT`` (the
  derived-series marker of :mod:`sr4zct.io.dicom_writer`); no sub-folders, no other files;
* a model file: a torch archive whose payload has ``format`` ``"sr4zct-model"``;
* a JSON report: an object with an ``sr4zct_version`` key;
* a preview PNG: the text chunk ``sr4zct_preview`` (:data:`sr4zct.run.preview.PNG_MARKER`).

:func:`foreign_reason` returns why a path is *not* such an output (None when it is); the output checks
(:func:`sr4zct.io.atomic.check_output_path`) refuse to replace it with that reason, before any work.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from sr4zct.errors import SR4ZCTError

__all__ = ["DICOM_MARK", "foreign_reason", "is_sr4zct_output"]

#: DerivationDescription of every slice SR4ZCT writes starts with this.
DICOM_MARK = "SR4ZCT "
_SLICE_AXIS_KEY = "sr4zct_slice_axis"
_MODEL_FORMAT = b"sr4zct-model"
_MAX_PICKLE_BYTES = 16 * 2**20


def _image_reason(path: Path) -> str | None:
    from sr4zct.io.image import OUTPUT_MARK, sidecar_path
    from sr4zct.io.image_headers import inspect_image_file

    try:
        info = inspect_image_file(path, allow_detached_data=True)
    except SR4ZCTError:
        return "its header cannot be read"
    if info.kind == "nifti":
        if info.descrip.startswith(OUTPUT_MARK) or _json_has(sidecar_path(path), _SLICE_AXIS_KEY):
            return None
        return f"its descrip is {info.descrip[:40]!r} and it has no SR4ZCT sidecar"
    if _SLICE_AXIS_KEY in info.keys:
        return None
    return f"its header has no SR4ZCT key ({_SLICE_AXIS_KEY})"


def _json_has(path: Path, key: str) -> bool:
    try:
        if not path.is_file() or path.stat().st_size > _MAX_PICKLE_BYTES:
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and key in data


def _model_reason(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) == 1 and archive.getinfo(names[0]).file_size <= _MAX_PICKLE_BYTES:
                if _MODEL_FORMAT in archive.read(names[0]):
                    return None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, KeyError, RuntimeError):
        pass
    return "it is not an SR4ZCT model file"


def _dicom_reason(folder: Path) -> str | None:
    import pydicom

    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        return f"it cannot be listed ({exc.strerror or exc})"
    if any(e.is_dir(follow_symlinks=False) for e in entries):
        return "it contains sub-folders"
    foreign: list[str] = []
    others: list[str] = []
    for entry in entries:
        try:
            ds = pydicom.dcmread(entry.path, stop_before_pixels=True, specific_tags=["DerivationDescription"])
            mark = str(ds.get("DerivationDescription", ""))
        except Exception:  # pydicom raises many types for files that are not DICOM
            foreign.append(entry.name)
            continue
        if not mark.startswith(DICOM_MARK):
            others.append(entry.name)
    if foreign:
        return f"it holds files that are not DICOM ({', '.join(foreign[:3])})"
    if others:
        return f"it holds DICOM files SR4ZCT did not write ({', '.join(others[:3])})"
    return None


def foreign_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not an output SR4ZCT wrote (see the module docstring), or None when it is one.

    A path that does not exist, and an empty folder, count as SR4ZCT's (there is nothing to lose).
    """
    path = Path(path)
    if path.is_symlink():
        return "it is a symbolic link"
    if not path.exists():
        return None
    if path.is_dir():
        return _dicom_reason(path)
    if not path.is_file():
        return "it is not a regular file"
    name = path.name.lower()
    if name.endswith((".nrrd", ".nhdr", ".mha", ".mhd", ".nii", ".nii.gz")):
        return _image_reason(path)
    if name.endswith(".json"):
        return None if _json_has(path, "sr4zct_version") else "it is not an SR4ZCT report"
    if name.endswith(".png"):
        return _png_reason(path)
    return _model_reason(path)


def _png_reason(path: Path) -> str | None:
    from sr4zct.run.preview import PNG_MARKER

    try:
        from PIL import Image

        with Image.open(path) as image:
            if PNG_MARKER in getattr(image, "text", {}):
                return None
    except (ImportError, OSError, ValueError):
        pass
    return "it is not an SR4ZCT preview"


def is_sr4zct_output(path: str | os.PathLike) -> bool:
    """True when ``path`` is an existing output SR4ZCT wrote (or does not exist)."""
    return foreign_reason(path) is None
