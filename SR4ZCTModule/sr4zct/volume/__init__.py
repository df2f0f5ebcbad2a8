"""The two data types every part of the core shares: :class:`SeriesGeometry` and :class:`Volume`.

Conventions (fixed here, used everywhere):

* Physical coordinates are DICOM patient coordinates (LPS), in millimetres.
* A :class:`Volume` array is always ordered ``(slice, row, column)``: array axis 0 is the through-plane
  (acquisition) axis, axes 1 and 2 span the sharp acquired image plane. Readers reorder the data to this
  layout from the geometry (never by assumption) and record in ``SeriesGeometry.source_slice_axis`` which
  axis of the file it came from; writers put it back.
* ``axes_lps[a]`` is the unit vector (LPS) along which array axis ``a`` advances. For a DICOM series,
  ``axes_lps[2]`` is the ImageOrientationPatient row direction (along a row = column index increases),
  ``axes_lps[1]`` the column direction, ``axes_lps[0]`` the slice stacking direction.
* ``origin_lps`` is the centre of voxel ``[0, 0, 0]``, i.e. the first slice centre.
* ``spacing_mm`` is per array axis: ``(slice spacing, row spacing, column spacing)``; row spacing is the
  distance between rows (DICOM PixelSpacing[0]), column spacing between columns (PixelSpacing[1]).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SeriesGeometry:
    """Acquisition geometry of a CT series, in millimetres.

    Attributes
    ----------
    pixel_spacing_mm : (row_spacing, column_spacing)
    slice_thickness_mm : nominal slice thickness T (DICOM 0018,0050), ``None`` when unknown.
    slice_spacing_mm : distance d between neighbouring slice centres, measured from the positions
        (median of the differences when irregular).
    slice_positions_mm : position of every slice centre along ``axes_lps[0]``, relative to the first
        slice (so it starts at 0.0 and increases).
    shape : (n_slices, n_rows, n_columns) of the :class:`Volume` array.
    origin_lps : centre of the first voxel.
    axes_lps : 3x3, row ``a`` is the LPS unit vector of array axis ``a``.
    thickness_source : "dicom", "user", "header" or "missing".
    source_slice_axis : which array axis of the source file (NumPy order as read) was through-plane.
    gantry_tilt_deg : angle between the slice normal (row x column direction) and the stacking direction.
    irregular_positions : indices ``i`` where the gap between slice ``i`` and ``i+1`` differs from
        ``slice_spacing_mm`` by more than the tolerance.
    thickness_values_mm : the distinct thicknesses found (mixed thickness when more than one).
    warnings : human-readable findings (irregular spacing, tilt, mixed thickness, thickness missing ...).
    description : series description / file name, for messages.
    scan_mode : "helical", "sequential" or ``None`` (unknown): how the scanner acquired the series, from its
        DICOM attributes (:mod:`sr4zct.volume.scan_mode`); it decides the slice profile's family.
    scan_mode_source : the attribute that stated the scan mode (``"SpiralPitchFactor 0.8"``), or "".
    """

    pixel_spacing_mm: tuple[float, float]
    slice_thickness_mm: float | None
    slice_spacing_mm: float
    slice_positions_mm: tuple[float, ...]
    shape: tuple[int, int, int]
    origin_lps: tuple[float, float, float]
    axes_lps: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
    thickness_source: str = "missing"
    source_slice_axis: int = 0
    gantry_tilt_deg: float = 0.0
    irregular_positions: tuple[int, ...] = ()
    thickness_values_mm: tuple[float, ...] = ()
    warnings: tuple[str, ...] = ()
    description: str = ""
    series_uid: str | None = None
    modality: str | None = None
    scan_mode: str | None = None
    scan_mode_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def n_slices(self) -> int:
        return self.shape[0]

    @property
    def overlap_mm(self) -> float | None:
        """Overlap ``T - d``: positive for overlapping slices, zero contiguous, negative for gaps."""
        if self.slice_thickness_mm is None:
            return None
        return self.slice_thickness_mm - self.slice_spacing_mm

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return (self.slice_spacing_mm, self.pixel_spacing_mm[0], self.pixel_spacing_mm[1])

    @property
    def is_regular(self) -> bool:
        return not self.irregular_positions

    def with_thickness(self, thickness_mm: float, source: str = "user") -> SeriesGeometry:
        """Return a copy with the slice thickness set (e.g. from ``--thickness``)."""
        warnings = tuple(w for w in self.warnings if "thickness" not in w.lower() or "mixed" in w.lower())
        return dataclasses.replace(
            self, slice_thickness_mm=float(thickness_mm), thickness_source=source, warnings=warnings
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record with snake-case keys carrying units."""
        return {
            "description": self.description,
            "series_uid": self.series_uid,
            "modality": self.modality,
            "shape": list(self.shape),
            "num_slices": self.n_slices,
            "rows": self.shape[1],
            "columns": self.shape[2],
            "pixel_spacing_mm": [self.pixel_spacing_mm[0], self.pixel_spacing_mm[1]],
            "slice_thickness_mm": self.slice_thickness_mm,
            "thickness_source": self.thickness_source,
            "slice_spacing_mm": self.slice_spacing_mm,
            "overlap_mm": self.overlap_mm,
            "origin_lps_mm": list(self.origin_lps),
            "direction_cosines": [list(a) for a in self.axes_lps],
            "through_plane_axis": _axis_name(self.axes_lps[0]),
            "source_slice_axis": self.source_slice_axis,
            "gantry_tilt_deg": self.gantry_tilt_deg,
            "regular_spacing": self.is_regular,
            "irregular_positions": list(self.irregular_positions),
            "slice_positions_mm": list(self.slice_positions_mm),
            "thickness_values_mm": list(self.thickness_values_mm),
            "scan_mode": self.scan_mode,
            "scan_mode_source": self.scan_mode_source,
            "warnings": list(self.warnings),
        }


def _axis_name(vector: tuple[float, float, float]) -> str:
    """Anatomical name of the patient axis closest to ``vector`` ("z (S-I)" for axial stacks)."""
    names = ("x (R-L)", "y (A-P)", "z (S-I)")
    return names[int(np.argmax(np.abs(np.asarray(vector))))]


@dataclass
class Volume:
    """A CT volume in HU with its geometry. ``array`` is ``(slice, row, column)``."""

    array: np.ndarray
    geometry: SeriesGeometry
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume array must be 3-D (slice, row, column), got shape {self.array.shape}")
        if tuple(self.array.shape) != tuple(self.geometry.shape):
            raise ValueError(f"array shape {self.array.shape} does not match geometry {self.geometry.shape}")

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return self.geometry.spacing_mm


def make_geometry(
    shape: tuple[int, int, int],
    *,
    slice_spacing_mm: float,
    pixel_spacing_mm: tuple[float, float] = (1.0, 1.0),
    slice_thickness_mm: float | None = None,
    origin_lps: tuple[float, float, float] = (0.0, 0.0, 0.0),
    axes_lps: Any = ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)),
    slice_positions_mm: Any = None,
    thickness_source: str | None = None,
    description: str = "",
) -> SeriesGeometry:
    """Geometry for a regular stack (phantoms, tests, in-memory arrays).

    The default axes describe an axial stack: slices advance along +z (superior in LPS), rows along +y
    (posterior), columns along +x (left).
    """
    n = int(shape[0])
    if slice_positions_mm is None:
        slice_positions_mm = tuple(float(k * slice_spacing_mm) for k in range(n))
    axes = tuple(tuple(float(c) for c in a) for a in axes_lps)
    for a in axes:
        if not math.isclose(float(np.linalg.norm(a)), 1.0, abs_tol=1e-6):
            raise ValueError(f"axes_lps rows must be unit vectors, got {a}")
    if thickness_source is None:
        thickness_source = "user" if slice_thickness_mm is not None else "missing"
    return SeriesGeometry(
        pixel_spacing_mm=(float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1])),
        slice_thickness_mm=None if slice_thickness_mm is None else float(slice_thickness_mm),
        slice_spacing_mm=float(slice_spacing_mm),
        slice_positions_mm=tuple(float(p) for p in slice_positions_mm),
        shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        origin_lps=tuple(float(o) for o in origin_lps),
        axes_lps=axes,
        thickness_source=thickness_source,
        description=description,
    )
