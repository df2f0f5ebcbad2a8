"""How the scanner acquired a CT series, read from its DICOM attributes: helical or sequential.

The scan mode decides the shape of the slice sensitivity profile far better than the images can: a helical
(spiral) scan interpolates between rotations along z, so its slices have a bell-shaped profile (the
Gaussian family), while a sequential (step-and-shoot, axial) scan collimates each slice, so its profile is
close to a box of the nominal thickness (docs/method.md, section 2.7). The images alone cannot always tell
the two apart: anatomy that is smoother along z than in-plane blurs a box into a bell.

Attributes read, first match wins:

* AcquisitionType (0018,9302): ``SPIRAL`` is helical; ``SEQUENCED`` and ``STATIONARY`` are sequential.
* SpiralPitchFactor (0018,9311): present and above 0 in helical scans only.
* ScanOptions (0018,0022): ``HELICAL`` / ``SPIRAL`` or ``AXIAL`` (e.g. GE's ``HELICAL MODE``, ``AXIAL MODE``).
* ImageType (0008,0008): Siemens marks its original images ``CT_SOM<n> SPI`` (spiral) or ``CT_SOM<n> SEQ``.

A derived series (ImageType ``DERIVED``: thick slabs averaged from thin slices, reformats) has the profile
of the averaging, not of the scan: it gets no scan mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "SCAN_MODES",
    "SCAN_MODE_KEYWORDS",
    "scan_mode_from_attributes",
    "scan_mode_of_header",
    "series_scan_mode",
]

#: the scan modes, and the slice profile family each implies
SCAN_MODES = {"helical": "gaussian", "sequential": "box"}

#: the DICOM keywords the scan mode is read from, and the argument of scan_mode_from_attributes each fills
SCAN_MODE_KEYWORDS = {
    "AcquisitionType": "acquisition_type",
    "SpiralPitchFactor": "spiral_pitch_factor",
    "ScanOptions": "scan_options",
    "ImageType": "image_type",
}
_ACQUISITION_TYPES = {"SPIRAL": "helical", "SEQUENCED": "sequential", "STATIONARY": "sequential"}
_SIEMENS_IMAGE_TYPE = re.compile(r"^CT_SOM\d+\s+(SPI|SEQ)$")


def _words(value: Any) -> tuple[str, ...]:
    """A DICOM value (text, multi-value or None) as upper-case stripped strings."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        value = [value]
    return tuple(
        str(v.decode(errors="replace") if isinstance(v, bytes) else v).strip().upper() for v in value
    )


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def scan_mode_from_attributes(
    *,
    acquisition_type: Any = None,
    spiral_pitch_factor: Any = None,
    scan_options: Any = None,
    image_type: Any = None,
) -> tuple[str | None, str]:
    """The scan mode a series' attributes state, and which attribute said so.

    Parameters
    ----------
    acquisition_type : str or None
        AcquisitionType (0018,9302).
    spiral_pitch_factor : float or str or None
        SpiralPitchFactor (0018,9311).
    scan_options : str or sequence of str or None
        ScanOptions (0018,0022).
    image_type : sequence of str or None
        ImageType (0008,0008).

    Returns
    -------
    mode : str or None
        ``"helical"``, ``"sequential"`` (keys of :data:`SCAN_MODES`), or None when the attributes do not say
        (or the series is derived).
    source : str
        The attribute and value that decided, e.g. ``"SpiralPitchFactor 0.8"``; empty when ``mode`` is None.
    """
    image_words = _words(image_type)
    if "DERIVED" in image_words:
        return None, ""
    for word in _words(acquisition_type):
        if word in _ACQUISITION_TYPES:
            return _ACQUISITION_TYPES[word], f"AcquisitionType {word}"
    pitch = _positive(spiral_pitch_factor)
    if pitch is not None:
        return "helical", f"SpiralPitchFactor {pitch:g}"
    for word in _words(scan_options):
        if "HELICAL" in word or "SPIRAL" in word:
            return "helical", f"ScanOptions {word}"
        if "AXIAL" in word:
            return "sequential", f"ScanOptions {word}"
    for word in image_words:
        match = _SIEMENS_IMAGE_TYPE.match(word)
        if match:
            return ("helical" if match.group(1) == "SPI" else "sequential"), f"ImageType {word}"
    return None, ""


def scan_mode_of_header(get: Callable[[str], Any]) -> tuple[str | None, str]:
    """:func:`scan_mode_from_attributes` of one file's header; ``get(keyword)`` returns an attribute's value or
    None (``pydicom.Dataset.get``)."""
    return scan_mode_from_attributes(
        **{argument: get(keyword) for keyword, argument in SCAN_MODE_KEYWORDS.items()}
    )


def series_scan_mode(per_slice: Iterable[tuple[str | None, str]]) -> dict[str, str | None]:
    """The scan mode of a series from its slices' (mode, source) pairs, as the fields ``scan_mode`` and
    ``scan_mode_source`` of a :class:`~sr4zct.volume.SeriesGeometry`: the slices' when they all agree, else
    none (a series merged from two acquisitions)."""
    modes = set(per_slice)
    mode, source = modes.pop() if len(modes) == 1 else (None, "")
    return {"scan_mode": mode, "scan_mode_source": source}
