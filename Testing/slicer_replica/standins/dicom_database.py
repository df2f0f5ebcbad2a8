"""Stand-in for ``slicer.dicomDatabase`` (CTK's ``ctkDICOMDatabase``), answered from the real files (pydicom).

What it models, as the real database behaves:

* the files are indexed once (as the DICOM module's import does): SOP instance UID -> file, and the tags
  in ``tagsToPrecache`` (what the DICOM plugins register; the scalar-volume plugin's list by default) are
  cached at import time;
* ``instanceValue`` / ``fileValue`` return the tag's value as a string: text values as stored in the file
  (multi-valued with a backslash, e.g. ``"0.7421875\\0.7421875"``, trailing padding removed), binary
  values (US, UL, FD, ...) as decimal text, ``""`` for an absent tag, an unknown instance or an unknown
  file; the tag is ``"gggg,eeee"`` in hexadecimal (either case);
* a value that is not cached is read from the file's header and then cached (ctkDICOMDatabase::cacheTag).

``calls`` counts every query, ``headerReads`` every file header read to answer one.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement

# DICOMScalarVolumePlugin.tags (Slicer 5.13), which the DICOM module adds to tagsToPrecache.
SCALAR_VOLUME_PLUGIN_TAGS = (
    "0008,0016", "0028,0004", "0008,103e", "0020,000E", "0020,0011", "0020,0032", "0020,0037",
    "7fe0,0010", "0020,0012", "0008,0008", "0008,0033", "0018,1060", "0018,9089", "0028,0008",
    "0008,0018", "0028,1050", "0028,1051", "0028,0010", "0028,0011",
)  # fmt: skip

_BINARY_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "AT", "UV", "SV"}


def _tag_key(tag: str) -> int:
    group, _, element = tag.partition(",")
    if len(group) != 4 or len(element) != 4:
        raise ValueError(f"DICOM tag must be given as 'gggg,eeee', got {tag!r}")
    return (int(group, 16) << 16) | int(element, 16)


def _value_string(dataset: pydicom.Dataset, tag: str) -> str:
    key = _tag_key(tag)
    if key not in dataset:
        return ""
    element = dataset.get_item(key)
    if isinstance(element, RawDataElement) and element.VR not in _BINARY_VRS and element.VR is not None:
        raw = element.value or b""
        return raw.decode("latin-1").rstrip(" \x00")
    value = dataset[key].value
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip(" \x00")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


class ctkDICOMDatabase:
    """``slicer.dicomDatabase`` for a set of files, as after importing them in the DICOM module."""

    def __init__(
        self, files: list[str | os.PathLike], tagsToPrecache: tuple[str, ...] = SCALAR_VOLUME_PLUGIN_TAGS
    ):
        self.tagsToPrecache = list(tagsToPrecache)
        self._fileForInstance: dict[str, str] = {}
        self._instanceForFile: dict[str, str] = {}
        self._cache: dict[tuple[str, int], str] = {}
        self.calls: Counter[str] = Counter()
        self.headerReads = 0
        self.index(files)

    def index(self, files: list[str | os.PathLike]) -> None:
        """Index more files (what ctkDICOMIndexer does for the database on import)."""
        for f in files:
            path = str(Path(f).resolve())
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            uid = str(ds.SOPInstanceUID)
            self._fileForInstance[uid] = path
            self._instanceForFile[path] = uid
            for tag in self.tagsToPrecache:
                self._cache[(path, _tag_key(tag))] = _value_string(ds, tag)

    # -- the API the module uses (names and argument order of ctkDICOMDatabase) ----------------------
    def fileForInstance(self, sopInstanceUID: str) -> str:
        self.calls["fileForInstance"] += 1
        return self._fileForInstance.get(sopInstanceUID, "")

    def instanceForFile(self, fileName: str) -> str:
        self.calls["instanceForFile"] += 1
        return self._instanceForFile.get(str(Path(fileName).resolve()), "")

    def fileValue(self, fileName: str, tag: str) -> str:
        self.calls["fileValue"] += 1
        return self._value(str(Path(fileName).resolve()) if fileName else "", tag)

    def instanceValue(self, sopInstanceUID: str, tag: str) -> str:
        self.calls["instanceValue"] += 1
        return self._value(self._fileForInstance.get(sopInstanceUID, ""), tag)

    def fileValueExists(self, fileName: str, tag: str) -> bool:
        self.calls["fileValueExists"] += 1
        return self._value(str(Path(fileName).resolve()), tag) != ""

    # -- test helpers ----------------------------------------------------------------------------------
    @property
    def instanceUIDs(self) -> list[str]:
        return list(self._fileForInstance)

    def resetCounts(self) -> None:
        self.calls.clear()
        self.headerReads = 0

    @property
    def totalCalls(self) -> int:
        return sum(self.calls.values())

    def _value(self, path: str, tag: str) -> str:
        key = _tag_key(tag)
        if path not in self._instanceForFile:
            return ""
        cached = self._cache.get((path, key))
        if cached is not None:
            return cached
        self.headerReads += 1
        value = _value_string(pydicom.dcmread(path, stop_before_pixels=True), tag)
        self._cache[(path, key)] = value
        return value
