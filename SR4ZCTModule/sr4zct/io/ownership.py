"""Is an existing path an output SR4ZCT wrote? ``overwrite`` replaces only those.

A path is recognised by SR4ZCT's own metadata, never by its name:

* NRRD / MHA (``.nrrd .nhdr .mha .mhd``): the header key ``sr4zct_slice_axis`` that every SR4ZCT image
  file carries;
* NIfTI (``.nii .nii.gz``): ``descrip`` starting with ``SR4ZCT``, or a ``<name>.json`` sidecar with that key;
* a DICOM folder: every entry is a DICOM file whose DerivationDescription starts with ``SR4ZCT`` (the
  derived-series marker of :mod:`sr4zct.io.dicom_writer`); no sub-folders, no other files;
* a model file: a torch archive whose payload has ``format`` ``"sr4zct-model"``;
* a JSON report: an object with an ``sr4zct_version`` key;
* a preview PNG: the text chunk ``sr4zct_preview`` (:data:`PNG_MARKER`).

:func:`foreign_reason` returns why a path is *not* such an output (None when it is); the output checks
(:func:`sr4zct.io.atomic.check_output_path`) refuse to replace it with that reason, before any work.
:func:`sr4zct_content` tells what kind of output it is (:data:`CONTENTS`): ``overwrite`` replaces an output only
with one of the same kind. The kind of an image or DICOM output is its ``sr4zct_content`` record (an
uncertainty map or a live preview), else an enhanced volume.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from sr4zct.errors import SR4ZCTError

__all__ = [
    "CONTENTS",
    "DICOM_MARK",
    "PNG_MARKER",
    "content_of_metadata",
    "foreign_reason",
    "is_sr4zct_output",
    "sr4zct_content",
]

#: The kinds of output SR4ZCT writes, as the messages name them.
CONTENTS = {
    "volume": "an enhanced volume",
    "uncertainty": "an uncertainty map",
    "preview": "a live preview",
    "model": "a model file",
    "report": "a report",
}

#: DerivationDescription of every slice SR4ZCT writes starts with this.
DICOM_MARK = "SR4ZCT "
_SLICE_AXIS_KEY = "sr4zct_slice_axis"
_MODEL_FORMAT = b"sr4zct-model"
#: text chunk key that marks a PNG as an SR4ZCT preview (only such a file is ever replaced)
PNG_MARKER = "sr4zct_preview"
_MAX_PICKLE_BYTES = 16 * 2**20


def _image_reason(path: Path) -> str | None:
    from sr4zct.io.image import OUTPUT_MARK
    from sr4zct.io.image_headers import inspect_image_file

    try:
        info = inspect_image_file(path, allow_detached_data=True)
    except SR4ZCTError:
        return "its header cannot be read"
    if info.kind == "nifti":
        if info.descrip.startswith(OUTPUT_MARK) or _own_sidecar(path):
            return None
        return f"its descrip is {info.descrip[:40]!r} and it has no SR4ZCT sidecar"
    if _SLICE_AXIS_KEY in info.keys:
        return None
    return f"its header has no SR4ZCT key ({_SLICE_AXIS_KEY})"


def _own_sidecar(path: Path) -> bool:
    """True when the sidecar beside a NIfTI file is SR4ZCT's and belongs to that file."""
    from sr4zct.io.image import _is_our_sidecar, sidecar_path

    side = sidecar_path(path)
    return side.is_file() and side.stat().st_size <= _MAX_PICKLE_BYTES and _is_our_sidecar(side, path)


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
    odd = [e.name for e in entries if not e.is_file(follow_symlinks=False)]
    if odd:  # a link, pipe or device is never a file SR4ZCT wrote (and reading a pipe would wait forever)
        return f"it holds entries that are not regular files ({', '.join(odd[:3])})"
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


def content_of_metadata(metadata: dict | None) -> str:
    """The kind of output (:data:`CONTENTS`) a volume with this metadata is: its ``sr4zct_content``."""
    text = str((metadata or {}).get("sr4zct_content", "")).strip().lower()
    for kind in ("uncertainty", "preview"):
        if text.startswith(kind):
            return kind
    return "volume"


def sr4zct_content(path: str | os.PathLike) -> str | None:
    """What kind of SR4ZCT output (a key of :data:`CONTENTS`) the existing ``path`` is; None when it does
    not exist or is not recognised as one (see :func:`foreign_reason`)."""
    path = Path(path)
    if path.is_symlink() or not path.exists() or foreign_reason(path) is not None:
        return None
    if path.is_dir():
        return _dicom_content(path)
    name = path.name.lower()
    if name.endswith((".nrrd", ".nhdr", ".mha", ".mhd", ".nii", ".nii.gz")):
        return _image_content(path)
    if name.endswith(".json"):
        return "report"
    if name.endswith(".png"):
        return "preview"
    return "model"


def _image_content(path: Path) -> str:
    from sr4zct.io.image import _load_sidecar, sidecar_path
    from sr4zct.io.image_headers import inspect_image_file

    try:
        keys = dict(inspect_image_file(path, allow_detached_data=True).keys)
    except SR4ZCTError:
        keys = {}
    if path.name.lower().endswith((".nii", ".nii.gz")):
        keys.update({str(k): str(v) for k, v in (_load_sidecar(sidecar_path(path)) or {}).items()})
    return content_of_metadata(keys)


def _dicom_content(folder: Path) -> str | None:
    import pydicom

    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        try:
            ds = pydicom.dcmread(entry.path, stop_before_pixels=True, specific_tags=["DerivationDescription"])
            text = str(ds.get("DerivationDescription", ""))
        except Exception:  # pydicom raises many types; foreign_reason has vetted the folder already
            return None
        return "uncertainty" if "sr4zct_content=uncertainty" in text else "volume"
    return None
