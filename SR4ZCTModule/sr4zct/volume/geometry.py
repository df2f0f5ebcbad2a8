"""Series geometry from per-slice DICOM attributes.

:func:`geometry_from_slices` is a pure function of the values a DICOM reader (``sr4zct.io.dicom``) or
the Slicer DICOM database provides for each slice: ImagePositionPatient (0020,0032),
ImageOrientationPatient (0020,0037), PixelSpacing (0028,0030), Rows/Columns and SliceThickness
(0018,0050). It sorts the slices along the stacking direction, measures the slice spacing from the
positions (never from SpacingBetweenSlices) and reports everything unusual in ``warnings``.

Tolerances (documented choices):

* Spacing: a gap between neighbouring slices is *irregular* when it differs from the median gap ``d`` by
  more than ``max(0.01 mm, 1 % of d)`` (:func:`spacing_tolerance_mm`). DICOM positions are usually
  written with 0.01 mm or finer resolution, so this catches any real irregularity without flagging
  rounding.
* Duplicates: two slices closer than that tolerance along the stacking direction.
* Gantry tilt: reported when the angle between the slice normal and the first-to-last stacking direction
  exceeds :data:`TILT_TOLERANCE_DEG`. Below it the slice normal itself is used as the stacking axis.
* Thickness values closer than 0.001 mm count as equal (mixed-thickness check).

Limits of a CT geometry (documented choices, see docs/errors.md; the up-front checks in
:mod:`sr4zct.run.validation` and the model-file checks use them):

* :data:`MAX_THICKNESS_MM`, :data:`MAX_SPACING_MM`: no clinical CT has slices thicker or further apart than
  50 mm; larger values are almost always a unit error (cm, um) or a damaged header.
* :data:`MAX_PIXEL_SPACING_MM`: in-plane pixels larger than 10 mm are not a diagnostic CT.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from sr4zct.errors import GeometryError
from sr4zct.volume import SeriesGeometry

#: A series needs at least this many slices: the slice spacing is measured between slice centres.
MIN_SLICES = 2
#: Tilt (degrees) below which the stacking direction is taken to be the slice normal.
TILT_TOLERANCE_DEG = 0.01
#: Relative and absolute tolerance on the slice spacing (see the module docstring).
SPACING_RELATIVE_TOLERANCE = 0.01
SPACING_ABSOLUTE_TOLERANCE_MM = 0.01
#: Thicknesses closer than this are the same value.
THICKNESS_TOLERANCE_MM = 1e-3
MAX_THICKNESS_MM = 50.0
MAX_SPACING_MM = 50.0
MAX_PIXEL_SPACING_MM = 10.0
# Direction cosines in DICOM are often written with ~6 significant digits.
_ORIENTATION_TOLERANCE = 1e-3


#: Spacings within this relative difference are a tie when choosing the through-plane axis.
AXIS_TIE_RTOL = 1e-4


def through_plane_axis(
    spacing_mm: Sequence[float], directions: Any, stacking_direction: Any = None
) -> tuple[int, bool]:
    """Which of a volume's three array axes runs through the slices.

    Parameters
    ----------
    spacing_mm : sequence of 3 float
        Spacing along each axis.
    directions : 3 x 3 array-like
        ``directions[a]`` is the unit vector of axis ``a`` in patient coordinates (LPS or RAS: only the
        third, superior-inferior, component matters here).
    stacking_direction : 3 floats, optional
        The acquisition's stacking direction (from DICOM) in the same frame; when given, the axis most
        parallel to it is the answer.

    Returns
    -------
    axis : int
        The through-plane axis: with no stacking direction, the one with the coarsest spacing.
    tie : bool
        Whether equal spacings had to be decided by orientation (the axis closest to patient S-I wins).
    """
    d = np.asarray(directions, dtype=float).reshape(3, 3)
    if stacking_direction is not None:
        return int(np.argmax(np.abs(d @ np.asarray(stacking_direction, dtype=float)))), False
    spacing = np.asarray(spacing_mm, dtype=float)
    candidates = np.nonzero(np.isclose(spacing, spacing.max(), rtol=AXIS_TIE_RTOL, atol=0.0))[0]
    if len(candidates) == 1:
        return int(candidates[0]), False
    return int(candidates[int(np.argmax(np.abs(d[candidates, 2])))]), True


def spacing_tolerance_mm(spacing_mm: float) -> float:
    """Largest deviation from the median slice spacing that still counts as regular."""
    return max(SPACING_ABSOLUTE_TOLERANCE_MM, SPACING_RELATIVE_TOLERANCE * abs(spacing_mm))


def slice_normal(orientation: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row direction, column direction and slice normal from ImageOrientationPatient.

    Parameters
    ----------
    orientation : six direction cosines, ``[row direction (x, y, z), column direction (x, y, z)]``.

    Returns
    -------
    row_dir, col_dir, normal : unit vectors (LPS); ``normal = row_dir x col_dir``.

    Raises
    ------
    GeometryError
        If the two vectors are not unit length or not orthogonal.
    """
    iop = np.asarray(orientation, dtype=np.float64).reshape(-1)
    if iop.shape != (6,) or not np.all(np.isfinite(iop)):
        raise GeometryError(
            f"ImageOrientationPatient must hold six finite numbers, got {list(np.asarray(orientation).ravel())}."
        )
    row_dir, col_dir = iop[:3], iop[3:]
    for name, vec in (("row", row_dir), ("column", col_dir)):
        norm = float(np.linalg.norm(vec))
        if abs(norm - 1.0) > 10 * _ORIENTATION_TOLERANCE:
            raise GeometryError(
                f"ImageOrientationPatient {name} direction {vec.tolist()} is not a unit vector (length {norm:.4f})."
            )
    row_dir = row_dir / np.linalg.norm(row_dir)
    col_dir = col_dir / np.linalg.norm(col_dir)
    if abs(float(row_dir @ col_dir)) > 10 * _ORIENTATION_TOLERANCE:
        raise GeometryError(
            f"ImageOrientationPatient row and column directions are not orthogonal "
            f"(dot product {float(row_dir @ col_dir):.4f})."
        )
    # Re-orthogonalise so the axes are exactly orthonormal.
    col_dir = col_dir - (row_dir @ col_dir) * row_dir
    col_dir = col_dir / np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    return row_dir, col_dir, normal / np.linalg.norm(normal)


def _clean_unit(vector: np.ndarray) -> tuple[float, float, float]:
    """Unit vector as floats, with components within 1e-9 of 0/+-1 snapped (keeps axial axes exact)."""
    v = np.asarray(vector, dtype=np.float64)
    v = v / np.linalg.norm(v)
    snapped = np.where(np.abs(v) < 1e-9, 0.0, v)
    snapped = np.where(np.abs(np.abs(snapped) - 1.0) < 1e-9, np.sign(snapped), snapped)
    snapped = snapped / np.linalg.norm(snapped)
    return (float(snapped[0]), float(snapped[1]), float(snapped[2]))


def _common_orientation(orientation: Any, n: int) -> np.ndarray:
    iop = np.asarray(orientation, dtype=np.float64)
    if iop.ndim == 1:
        return iop
    if iop.shape != (n, 6):
        raise GeometryError(f"expected one orientation or one per slice ({n}), got shape {iop.shape}.")
    spread = np.max(np.abs(iop - iop[0]), axis=0)
    if np.any(spread > _ORIENTATION_TOLERANCE):
        bad = [i for i in range(n) if np.any(np.abs(iop[i] - iop[0]) > _ORIENTATION_TOLERANCE)]
        raise GeometryError(
            f"The slices have different ImageOrientationPatient values (slice 0: {iop[0].tolist()}, "
            f"slice {bad[0]}: {iop[bad[0]].tolist()}; {len(bad)} slice(s) differ): this is not one stack of "
            "parallel slices (a localizer or a second series may be mixed in)."
        )
    return iop[0]


def _common_pixel_spacing(pixel_spacing_mm: Any, n: int) -> tuple[float, float]:
    ps = np.asarray(pixel_spacing_mm, dtype=np.float64)
    if ps.ndim == 2:
        if ps.shape != (n, 2):
            raise GeometryError(f"expected one pixel spacing or one per slice ({n}), got shape {ps.shape}.")
        if np.any(np.abs(ps - ps[0]) > 1e-6):
            raise GeometryError(
                f"The slices have different PixelSpacing values ({sorted({tuple(p) for p in ps.tolist()})})."
            )
        ps = ps[0]
    ps = ps.reshape(-1)
    if ps.shape != (2,) or not np.all(np.isfinite(ps)) or np.any(ps <= 0):
        raise GeometryError(f"PixelSpacing must be two positive numbers (mm), got {ps.tolist()}.")
    return float(ps[0]), float(ps[1])


def _parse_thicknesses(values: list[Any]) -> tuple[list[float], int, int]:
    """The valid (finite, positive) thicknesses, and how many were missing and how many invalid."""
    valid: list[float] = []
    n_missing = n_invalid = 0
    for v in values:
        if v is None or (isinstance(v, str) and not v.strip()):
            n_missing += 1
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            n_invalid += 1
            continue
        if math.isfinite(f) and f > 0:
            valid.append(f)
        else:
            n_invalid += 1
    return valid, n_missing, n_invalid


def _thickness(thicknesses_mm: Any, n: int) -> tuple[float | None, str, tuple[float, ...], list[str]]:
    """Nominal thickness, its source, the distinct values, and warnings."""
    if thicknesses_mm is None or np.isscalar(thicknesses_mm):
        values: list[Any] = [thicknesses_mm] * n
    else:
        values = list(thicknesses_mm)
        if len(values) != n:
            raise GeometryError(f"got {len(values)} slice thicknesses for {n} slices.")
    valid, n_missing, n_invalid = _parse_thicknesses(values)
    if not valid:
        what = "missing" if n_invalid == 0 else "missing or not positive"
        return None, "missing", (), [
            f"Slice thickness is {what} (DICOM SliceThickness 0018,0050): give the nominal thickness "
            "(thickness_mm; the Thickness field in Slicer); SR4ZCT needs it to model the slices."
        ]  # fmt: skip
    counts = Counter(round(v / THICKNESS_TOLERANCE_MM) * THICKNESS_TOLERANCE_MM for v in valid)
    distinct = tuple(sorted(float(round(v, 6)) for v in counts))
    # Most common value; ties go to the larger (a conservative model of the blur).
    thickness = float(round(max(counts, key=lambda v: (counts[v], v)), 6))
    warnings: list[str] = []
    if len(distinct) > 1:
        listing = ", ".join(f"{v:g} mm ({counts[v]} slices)" for v in sorted(counts))
        warnings.append(
            f"Mixed slice thickness: {listing}; using the most common value {thickness:g} mm. "
            "Check that the folder holds one reconstruction."
        )
    if n_missing or n_invalid:
        warnings.append(
            f"Slice thickness is missing or invalid on {n_missing + n_invalid} of {n} slices; "
            f"using {thickness:g} mm from the others."
        )
    return thickness, "dicom", distinct, warnings


def _checked_positions(positions_lps: Any, name: str) -> np.ndarray:
    positions = np.asarray(positions_lps, dtype=np.float64)
    if positions.ndim == 1 and positions.size == 3:
        positions = positions.reshape(1, 3)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise GeometryError(
            f"positions must be an (N, 3) array of ImagePositionPatient, got shape {positions.shape}."
        )
    n = positions.shape[0]
    if n < MIN_SLICES:
        raise GeometryError(
            f"The series{name} has {n} slice(s); SR4ZCT needs at least {MIN_SLICES} slices to measure the "
            "slice spacing (a single 2-D image has no through-plane axis to enhance)."
        )
    if not np.all(np.isfinite(positions)):
        raise GeometryError(f"The series{name} has missing or non-finite ImagePositionPatient values.")
    return positions


def _checked_size(rows: Any, columns: Any) -> tuple[int, int]:
    try:
        rows, columns = int(rows), int(columns)
    except (TypeError, ValueError):
        raise GeometryError(
            f"Rows and Columns must be positive integers, got {rows!r} x {columns!r}."
        ) from None
    if rows < 1 or columns < 1:
        raise GeometryError(f"Rows and Columns must be positive, got {rows} x {columns}.")
    return rows, columns


def _stacking_direction(
    sorted_pos: np.ndarray, normal: np.ndarray, name: str
) -> tuple[np.ndarray, float, list[str]]:
    """The direction the slices are stacked along, the gantry tilt in degrees, and a tilt warning."""
    first, span = sorted_pos[0], sorted_pos[-1] - sorted_pos[0]
    span_normal = float(span @ normal)
    if span_normal <= 0.0:
        raise GeometryError(
            f"All {len(sorted_pos)} slices of the series{name} lie at the same position along the slice normal "
            f"({float(first @ normal):.3f} mm): they are not a stack (duplicated images or several "
            "acquisitions at one table position)."
        )
    tilt_deg = math.degrees(math.acos(min(1.0, span_normal / float(np.linalg.norm(span)))))
    if tilt_deg <= TILT_TOLERANCE_DEG:
        return normal, tilt_deg, []
    normal_spacing = float(np.median(np.diff(sorted_pos @ normal)))
    return span / np.linalg.norm(span), tilt_deg, [
        f"Gantry tilt: the slices are stacked {tilt_deg:.2f} degrees away from the slice normal. "
        "Positions and spacing are measured along the actual stacking direction (the spacing along "
        f"the normal is {normal_spacing:.4g} mm); the images are sheared in patient space."
    ]  # fmt: skip


def _listed(items: list[str]) -> str:
    return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _spacing(slice_positions: np.ndarray, name: str) -> tuple[float, list[int], list[str]]:
    """The median slice spacing, the gaps that are irregular or duplicates, and warnings about them."""
    gaps = np.diff(slice_positions)
    spacing = float(np.median(gaps))
    tolerance = spacing_tolerance_mm(spacing)
    if spacing <= tolerance:
        raise GeometryError(
            f"The series{name} has duplicate slice positions for most slices (median spacing "
            f"{spacing:.4f} mm); it cannot be treated as one stack."
        )
    duplicates = [int(i) for i in np.nonzero(gaps <= tolerance)[0]]
    other = [int(i) for i in np.nonzero(np.abs(gaps - spacing) > tolerance)[0] if i not in set(duplicates)]
    warnings = []
    if duplicates:
        shown = _listed([f"{i}/{i + 1} at {slice_positions[i]:.3f} mm" for i in duplicates])
        warnings.append(
            f"Duplicate slice positions: {len(duplicates)} pair(s) of slices share a position "
            f"(sorted slices {shown}); the folder may hold duplicated images or two acquisitions."
        )
    if other:
        shown = _listed([f"{gaps[i]:.3f} mm between slices {i} and {i + 1} (at {slice_positions[i]:.3f} mm)"
                         for i in other])  # fmt: skip
        warnings.append(
            f"Irregular slice spacing: the median spacing is {spacing:.4g} mm but {len(other)} gap(s) differ "
            f"by more than {tolerance:.3g} mm: {shown}. Missing slices or a mixed series are likely."
        )
    return spacing, sorted(set(other) | set(duplicates)), warnings


def geometry_from_slices(
    positions_lps: Any,
    orientation: Any,
    pixel_spacing_mm: Any,
    rows: int,
    columns: int,
    thicknesses_mm: Any,
    *,
    description: str = "",
    series_uid: str | None = None,
    modality: str | None = None,
) -> tuple[SeriesGeometry, np.ndarray]:
    """Geometry of a stack of 2-D slices from their DICOM attributes.

    Parameters
    ----------
    positions_lps : (N, 3) ImagePositionPatient of every slice (centre of its first pixel), any order.
    orientation : ImageOrientationPatient, six values shared by all slices, or (N, 6) per slice (they
        must agree).
    pixel_spacing_mm : PixelSpacing ``(row spacing, column spacing)``, or (N, 2) per slice.
    rows, columns : image size of every slice.
    thicknesses_mm : SliceThickness per slice (``None`` entries allowed) or one value / ``None``.
    description, series_uid, modality : copied into the geometry for messages.

    Returns
    -------
    geometry : :class:`~sr4zct.volume.SeriesGeometry` in the ``(slice, row, column)`` layout.
        ``axes_lps`` = [stacking direction, column direction (IOP[3:6]), row direction (IOP[0:3])];
        the stacking direction is the slice normal ``row x column`` unless the gantry is tilted, then
        the unit vector from the first to the last slice position. ``origin_lps`` is the position of the
        first sorted slice; ``slice_positions_mm`` are distances along ``axes_lps[0]`` from it.
    order : (N,) permutation: ``order[k]`` is the index (in the given inputs) of the k-th sorted slice.

    Raises
    ------
    GeometryError
        Fewer than :data:`MIN_SLICES` slices, all slices at one position, invalid orientation or pixel
        spacing, or inconsistent per-slice values.

    Notes
    -----
    Slices are sorted by the projection of their position on the slice normal (ascending, stable).
    Irregular spacing, duplicate positions, tilt, mixed or missing thickness and slice centres off a
    straight line are reported in ``geometry.warnings`` (and ``irregular_positions`` /
    ``gantry_tilt_deg``), not corrected: the caller decides whether it can use the series.
    """
    name = f" '{description}'" if description else ""
    positions = _checked_positions(positions_lps, name)
    n = positions.shape[0]
    rows, columns = _checked_size(rows, columns)
    row_dir, col_dir, normal = slice_normal(_common_orientation(orientation, n))
    pixel_spacing = _common_pixel_spacing(pixel_spacing_mm, n)
    thickness, thickness_source, thickness_values, warnings = _thickness(thicknesses_mm, n)

    order = np.argsort(positions @ normal, kind="stable")
    sorted_pos = positions[order]
    first = sorted_pos[0]
    stack_dir, tilt_deg, tilt_warnings = _stacking_direction(sorted_pos, normal, name)
    rel = sorted_pos - first
    slice_positions = rel @ stack_dir
    spacing, irregular, spacing_warnings = _spacing(slice_positions, name)
    warnings += tilt_warnings + spacing_warnings
    # Slice centres must lie on one line along the stacking direction.
    max_off = float(np.max(np.linalg.norm(rel - np.outer(slice_positions, stack_dir), axis=1)))
    if max_off > spacing_tolerance_mm(spacing):
        warnings.append(
            f"The slice positions do not lie on a straight line: up to {max_off:.3f} mm off the line from "
            "the first to the last slice (varying in-plane offsets)."
        )

    geometry = SeriesGeometry(
        pixel_spacing_mm=pixel_spacing,
        slice_thickness_mm=thickness,
        slice_spacing_mm=spacing,
        slice_positions_mm=tuple(float(p) for p in slice_positions),
        shape=(n, rows, columns),
        origin_lps=(float(first[0]), float(first[1]), float(first[2])),
        axes_lps=(_clean_unit(stack_dir), _clean_unit(col_dir), _clean_unit(row_dir)),
        thickness_source=thickness_source,
        source_slice_axis=0,
        gantry_tilt_deg=float(tilt_deg),
        irregular_positions=tuple(irregular),
        thickness_values_mm=thickness_values,
        warnings=tuple(warnings),
        description=description,
        series_uid=series_uid,
        modality=modality,
        extra={
            "slice_normal_lps": _clean_unit(normal),
            "spacing_along_normal_mm": float(np.median(np.diff(rel @ normal))),
        },
    )
    return geometry, order
