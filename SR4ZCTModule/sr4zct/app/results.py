"""What a result node records: the ``SR4ZCT.*`` attributes of a finished run, and back from them the metadata
of a DICOM export.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sr4zct import __version__

__all__ = [
    "ATTRIBUTE_PREFIX", "OUTPUT_SUFFIX", "REFERENCE_ATTRIBUTE", "THICKNESS_ATTRIBUTE", "dicom_export",
    "export_metadata", "made_by_sr4zct", "result_attributes", "write_dicom_export",
]  # fmt: skip

#: node attributes SR4ZCT writes start with this
ATTRIBUTE_PREFIX = "SR4ZCT."
#: a volume not from DICOM may carry its slice thickness in this attribute (the user's, not SR4ZCT's making)
THICKNESS_ATTRIBUTE = ATTRIBUTE_PREFIX + "sliceThicknessMm"
#: a result is named "<input> SR4ZCT"; so is the SeriesDescription of its DICOM export
OUTPUT_SUFFIX = " SR4ZCT"
#: the attribute naming the input's first DICOM instance: the study an export joins
REFERENCE_ATTRIBUTE = ATTRIBUTE_PREFIX + "referenceInstanceUID"


def result_attributes(input_name: str, finished: Mapping[str, Any]) -> dict[str, str]:
    """The attributes (full names, text values) recording how a result was made, from its ``finished`` event
    (or a batch ledger record turned into one): the input, the version, every parameter, the timings."""
    attributes = {"inputVolume": input_name, "version": __version__}
    for key, value in (finished.get("parameters") or {}).items():
        if value is not None:
            attributes[key] = value if isinstance(value, str) else json.dumps(value)
    if finished.get("timings_s"):
        attributes["timings_s"] = json.dumps(finished["timings_s"])
    return {ATTRIBUTE_PREFIX + key: value for key, value in attributes.items()}


def made_by_sr4zct(attribute_names: list[str] | tuple[str, ...]) -> bool:
    """Whether a node with these attributes is SR4ZCT's (a result, a preview, a disagreement map)."""
    return any(n.startswith(ATTRIBUTE_PREFIX) and n != THICKNESS_ATTRIBUTE for n in attribute_names)


def export_metadata(attributes: Mapping[str, str], name: str) -> dict[str, str]:
    """The metadata a result's DICOM export records (ImageComments, SeriesDescription) from the node's
    attributes and name."""
    metadata = {
        key[len(ATTRIBUTE_PREFIX) :]: value
        for key, value in attributes.items()
        if key.startswith(ATTRIBUTE_PREFIX) and key != REFERENCE_ATTRIBUTE
    }
    metadata["series_description"] = name if name.endswith(OUTPUT_SUFFIX.strip()) else name + OUTPUT_SUFFIX
    return metadata


def write_dicom_export(
    volume: Any, folder: str | os.PathLike, attributes: Mapping[str, str], name: str, reference: str | None
) -> tuple[Path, str]:
    """Write a result as a derived DICOM series into ``folder/series``: in the study of the DICOM file
    ``reference`` (the input's first slice) when given, with a new series UID, the result's parameters in
    ImageComments and its SeriesDescription (:func:`export_metadata`). Returns the series folder and its
    SeriesInstanceUID."""
    import pydicom

    from sr4zct.io import write_volume
    from sr4zct.io.dicom import reference_attributes

    if reference:
        volume.geometry.extra["dicom"] = reference_attributes(reference)
    series = Path(folder) / "series"
    write_volume(volume, series, metadata=export_metadata(attributes, name))
    first = sorted(series.iterdir())[0]
    return series, str(pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID)


@contextlib.contextmanager
def dicom_export(
    volume: Any, attributes: Mapping[str, str], name: str, reference: str | None, parent: str | os.PathLike
) -> Iterator[tuple[Path, str]]:
    """:func:`write_dicom_export` into a run folder of ``parent`` (Slicer's temporary folder): gives the series
    folder and its SeriesInstanceUID while the caller imports it; the folder is removed afterwards."""
    from sr4zct.app.run_folder import make_run_folder

    folder = make_run_folder(parent)
    try:
        yield write_dicom_export(volume, folder, attributes, name, reference)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
