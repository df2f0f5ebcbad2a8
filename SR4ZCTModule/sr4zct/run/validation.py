"""Checks that refuse unusable input before any long computation (docs/errors.md lists every one).

Each function raises a specific :class:`~sr4zct.errors.SR4ZCTError` subclass with a one-line message that
says what is wrong and what to do, or returns warnings (strings) for inputs that are usable but unusual.
:func:`validate_for_enhancement` runs all checks in the order the pipeline needs them.

Limits (documented choices, see docs/errors.md):

* :data:`MAX_THICKNESS_MM`, :data:`MAX_SPACING_MM`, :data:`MAX_PIXEL_SPACING_MM`: the limits of a CT
  geometry, defined in :mod:`sr4zct.volume.geometry` (the model-file checks use them too).
* :data:`MAX_TILT_DEG`: scanners tilt the gantry by at most 30 degrees.
* :data:`MAX_GAP_FACTOR`: a gap wider than 4 slice spacings splits the series into separate ranges; smaller
  gaps (a few missing slices) are bridged by the z interpolation and reported.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sr4zct.errors import GeometryError, InputError, ModelError, ParameterError
from sr4zct.system import available_memory_bytes, check_memory, format_bytes
from sr4zct.volume import SeriesGeometry, Volume
from sr4zct.volume.geometry import MAX_PIXEL_SPACING_MM, MAX_SPACING_MM, MAX_THICKNESS_MM

__all__ = [
    "MAX_GAP_FACTOR",
    "MAX_PIXEL_SPACING_MM",
    "MAX_SPACING_MM",
    "MAX_THICKNESS_MM",
    "MAX_TILT_DEG",
    "AcquisitionParameters",
    "is_real_number",
    "positive_number",
    "available_memory_bytes",
    "check_dtype",
    "check_finite",
    "check_hu_range",
    "check_memory",
    "check_modality",
    "check_output_geometry",
    "estimate_memory_bytes",
    "format_bytes",
    "validate_for_enhancement",
    "validate_geometry_for_enhancement",
    "validate_model_file",
]

MAX_TILT_DEG = 30.0
MAX_GAP_FACTOR = 4.0
#: Memory the process needs beyond the volumes (torch, the network, training batches).
BASE_MEMORY_BYTES = 768 * 2**20
#: Modalities accepted without ``allow_non_ct`` (CT, and unknown for plain image files).
CT_MODALITIES = ("CT",)


class AcquisitionParameters(NamedTuple):
    """What the validation settled: the model's T and d, the slice positions and the output spacing."""

    thickness_mm: float
    spacing_mm: float
    positions_mm: np.ndarray
    target_spacing_mm: float
    warnings: list[str]


def _api_name(parameter: str) -> str:
    """The Python parameter name; older callers pass the flag (``"--max-minutes"`` -> ``max_minutes``)."""
    return parameter[2:].replace("-", "_") if parameter.startswith("--") else parameter


def is_real_number(value: Any) -> bool:
    """True for int/float (and NumPy) numbers; False for bool, str and everything else."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def positive_number(name: str, value: Any, parameter: str, unit: str = "millimetres") -> float:
    """``value`` as a finite float > 0, else a :class:`ParameterError` naming the parameter and unit.

    ``parameter`` is the Python API's name (``"spacing_mm"``); the CLI translates it to its flag. Strings
    are refused, even numeric ones (``"3"``): the API takes numbers.
    """
    parameter = _api_name(parameter)
    if not is_real_number(value):
        raise ParameterError(
            f"{name} must be a number of {unit} ({parameter}), got {value!r} ({type(value).__name__})."
        )
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ParameterError(f"{name} must be a positive number of {unit} ({parameter}), got {value!r}.")
    return v


def _not_absurd(name: str, value: float, limit: float, parameter: str, *, from_file: bool) -> None:
    if value <= limit:
        return
    if from_file:
        raise GeometryError(
            f"{name} in the file is {value:g} mm, more than {limit:g} mm: the header is probably damaged or "
            f"in other units; give the right value in millimetres with {parameter}."
        )
    raise ParameterError(
        f"{name} {value:g} mm is implausible (more than {limit:g} mm); {parameter} takes millimetres."
    )


def validate_geometry_for_enhancement(
    geometry: SeriesGeometry,
    *,
    thickness_mm: float | None = None,
    spacing_mm: float | None = None,
    target_spacing_mm: float | None = None,
) -> AcquisitionParameters:
    """Validate the acquisition SR4ZCT will model and the requested output grid.

    Parameters
    ----------
    geometry : the input's geometry.
    thickness_mm : slice thickness T overriding the geometry's.
    spacing_mm : slice spacing d overriding the measured one; the slices are then taken as regularly spaced.
    target_spacing_mm : output z spacing; default the row pixel spacing.

    Returns
    -------
    AcquisitionParameters
        ``(thickness_mm, spacing_mm, positions_mm, target_spacing_mm, warnings)``.

    Raises
    ------
    ParameterError
        Missing, non-positive or implausible thickness/spacing/target, nothing to gain (slices already as
        fine as the pixels), target spacing not finer than the slice spacing.
    GeometryError
        Fewer than 2 slices, implausible values in the file, duplicate positions, gaps splitting the
        series, gantry tilt beyond :data:`MAX_TILT_DEG`.
    """
    g = geometry
    name = f" '{g.description}'" if g.description else ""
    _check_slice_count(g, name)
    row_mm, col_mm = _check_pixel_spacing(g)
    t = _thickness(g, thickness_mm)
    positions = np.asarray(g.slice_positions_mm, dtype=np.float64)
    if positions.shape != (g.n_slices,) or not np.all(np.isfinite(positions)):
        raise GeometryError(f"The series{name} lacks finite positions for its {g.n_slices} slices.")
    if spacing_mm is None:
        d, warnings = _measured_spacing(g, positions, name)
    else:
        d, positions, warnings = _given_spacing(g, spacing_mm)
    warnings += _check_tilt(g, name)
    _check_something_to_gain(t, d, row_mm, col_mm)
    target = _target_spacing(target_spacing_mm, row_mm, d)
    return AcquisitionParameters(t, d, positions, target, warnings)


def _check_slice_count(g: SeriesGeometry, name: str) -> None:
    if g.n_slices < 2:
        raise GeometryError(
            f"The series{name} has {g.n_slices} slice(s); SR4ZCT needs at least 2 slices to measure the "
            "slice spacing (a single 2-D image has no through-plane axis to enhance)."
        )


def _check_pixel_spacing(g: SeriesGeometry) -> tuple[float, float]:
    """The in-plane pixel spacing (row, column) in mm, refused when not positive or implausible."""
    row_mm, col_mm = (float(v) for v in g.pixel_spacing_mm)
    for value in (row_mm, col_mm):
        if not math.isfinite(value) or value <= 0:
            raise GeometryError(f"The in-plane pixel spacing must be positive, got {row_mm} x {col_mm} mm.")
        if value > MAX_PIXEL_SPACING_MM:
            raise GeometryError(
                f"The in-plane pixel spacing {row_mm:g} x {col_mm:g} mm is implausible for CT (more than "
                f"{MAX_PIXEL_SPACING_MM:g} mm): the header is probably damaged or in other units."
            )
    return row_mm, col_mm


def _thickness(g: SeriesGeometry, thickness_mm: float | None) -> float:
    """The slice thickness T: the given one, else the geometry's; refused when unknown or implausible."""
    user_thickness = thickness_mm is not None
    if thickness_mm is None:
        thickness_mm = g.slice_thickness_mm
        user_thickness = g.thickness_source == "user"
    if thickness_mm is None:
        raise ParameterError(
            "The slice thickness is unknown (the file does not record it); give it in millimetres with "
            "thickness_mm, e.g. the value from the scanner protocol."
        )
    t = positive_number("The slice thickness", thickness_mm, "thickness_mm")
    _not_absurd("The slice thickness", t, MAX_THICKNESS_MM, "thickness_mm", from_file=not user_thickness)
    return t


def _measured_spacing(g: SeriesGeometry, positions: np.ndarray, name: str) -> tuple[float, list[str]]:
    """The geometry's slice spacing d and the warnings about its gaps; refused when the slices cannot be
    modelled as one series (duplicates, wide gaps)."""
    d = float(g.slice_spacing_mm)
    if not math.isfinite(d) or d <= 0:
        raise GeometryError(
            f"The measured slice spacing {d} mm is not positive; give it in millimetres with spacing_mm."
        )
    _not_absurd("The slice spacing", d, MAX_SPACING_MM, "spacing_mm", from_file=True)
    from sr4zct.volume.geometry import spacing_tolerance_mm

    gaps = np.diff(positions)
    tolerance = spacing_tolerance_mm(d)
    _check_duplicates(gaps, positions, tolerance, name)
    _check_wide_gaps(gaps, d, name)
    return d, _irregular_gap_warnings(gaps, d, tolerance)


def _check_duplicates(gaps: np.ndarray, positions: np.ndarray, tolerance: float, name: str) -> None:
    duplicates = np.nonzero(gaps <= tolerance)[0]
    if duplicates.size:
        i = int(duplicates[0])
        raise GeometryError(
            f"The series{name} has {duplicates.size} pair(s) of slices at the same position (first: "
            f"slices {i} and {i + 1} at {positions[i]:.3f} mm): the folder holds duplicated images or two "
            "acquisitions; separate them (e.g. by series or by folder) first."
        )


def _check_wide_gaps(gaps: np.ndarray, d: float, name: str) -> None:
    wide = np.nonzero(gaps > MAX_GAP_FACTOR * d)[0]
    if wide.size:
        i = int(wide[0])
        raise GeometryError(
            f"The series{name} has a gap of {gaps[i]:.3g} mm between slices {i} and {i + 1} "
            f"({gaps[i] / d:.1f} times the slice spacing {d:g} mm): it covers separate ranges; enhance "
            "each range separately."
        )


def _irregular_gap_warnings(gaps: np.ndarray, d: float, tolerance: float) -> list[str]:
    irregular = np.nonzero(np.abs(gaps - d) > tolerance)[0]
    if not irregular.size:
        return []
    missing = int(np.sum(np.maximum(np.round(gaps[irregular] / d) - 1, 0)))
    what = f"about {missing} missing slice(s)" if missing else "irregular gaps"
    return [
        f"Irregular slice spacing ({what}, {irregular.size} gap(s) differ from {d:g} mm, the first "
        f"after slice {int(irregular[0])}): the real positions are used for the z interpolation, so "
        "the result across the wider gaps is less sharp."
    ]


def _given_spacing(g: SeriesGeometry, spacing_mm: float) -> tuple[float, np.ndarray, list[str]]:
    """The user's slice spacing d, the regular positions it implies and the warning when the real ones are
    irregular."""
    d = positive_number("The slice spacing", spacing_mm, "spacing_mm")
    _not_absurd("The slice spacing", d, MAX_SPACING_MM, "spacing_mm", from_file=False)
    warnings = []
    if not g.is_regular:
        warnings.append(
            f"spacing_mm={d:g} given: the slices are taken as regularly spaced, ignoring their irregular "
            "positions."
        )
    return d, d * np.arange(g.n_slices, dtype=np.float64), warnings


def _check_tilt(g: SeriesGeometry, name: str) -> list[str]:
    """Refuse an implausible gantry tilt (inconsistent positions or orientations); warn about a real one."""
    tilt = float(g.gantry_tilt_deg)
    if tilt > MAX_TILT_DEG:
        raise GeometryError(
            f"The slices of the series{name} are stacked {tilt:.1f} degrees away from the slice normal (more "
            f"than the {MAX_TILT_DEG:g} degrees any gantry tilts): the positions or orientations are "
            "inconsistent."
        )
    if tilt > 0.01:
        return [
            f"Gantry tilt of {tilt:.2f} degrees: enhancing along the stacking direction of the sheared grid; "
            "the output keeps the shear (write NRRD, MHA or DICOM; NIfTI cannot store it)."
        ]
    return []


def _check_something_to_gain(t: float, d: float, row_mm: float, col_mm: float) -> None:
    if t <= min(row_mm, col_mm) and d <= max(row_mm, col_mm):
        raise ParameterError(
            f"Nothing to gain: the slices ({t:g} mm thick every {d:g} mm) are already as fine as the in-plane "
            f"pixels ({row_mm:g} x {col_mm:g} mm); SR4ZCT learns from the sharper in-plane resolution, "
            "and here it is not sharper."
        )


def _target_spacing(target_spacing_mm: float | None, row_mm: float, d: float) -> float:
    """The output z spacing: the given one, else the row pixel spacing; it must be finer than ``d``."""
    if target_spacing_mm is None:
        if row_mm >= d:
            raise ParameterError(
                f"The default target spacing (the in-plane pixel size, {row_mm:g} mm) is not finer than the "
                f"slice spacing ({d:g} mm); give a finer one in millimetres with target_spacing_mm."
            )
        return row_mm
    target = positive_number("The target spacing", target_spacing_mm, "target_spacing_mm")
    if target >= d:
        raise ParameterError(
            f"The target spacing ({target:g} mm) must be finer than the slice spacing ({d:g} mm)."
        )
    return target


def check_dtype(array: np.ndarray) -> None:
    """Refuse arrays that are not real numbers (bool, complex, object, strings).

    Integer (int8..uint64) and floating (float16..float64) arrays are accepted; the pipeline works in
    float32 HU.
    """
    dtype = np.asarray(array).dtype if not hasattr(array, "dtype") else array.dtype
    if dtype.kind not in "iuf":
        raise InputError(
            f"The volume has data type {dtype}; SR4ZCT needs integer or floating-point CT values (HU)."
        )


def check_finite(
    array: np.ndarray, *, policy: str = "error", fill_hu: float | None = None
) -> tuple[np.ndarray, int]:
    """Find NaN/Inf voxels and refuse them (``policy="error"``) or replace them (``policy="fill"``).

    Parameters
    ----------
    array : the volume (any shape).
    policy : ``"error"`` raises :class:`InputError` naming the count and the first bad voxel;
        ``"fill"`` returns a float32 copy with NaN and -Inf set to ``fill_hu`` (default: the smallest
        finite value, usually air) and +Inf set to the largest finite value.
    fill_hu : replacement for NaN and -Inf with ``policy="fill"``.

    Returns
    -------
    (array, n_bad) : the input itself when every voxel is finite, else the filled copy.
    """
    if policy not in ("error", "fill"):
        raise ParameterError(f"Unknown non-finite policy {policy!r}; choose 'error' or 'fill'.")
    a = np.asarray(array)
    if a.dtype.kind != "f":
        return array, 0
    # Slice by slice: no full-size boolean temporary for large volumes.
    n_nan = n_inf = 0
    first: tuple[int, ...] | None = None
    flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
    for k in range(flat.shape[0]):
        bad = ~np.isfinite(flat[k])
        if bad.any():
            nan = np.isnan(flat[k])
            n_nan += int(nan.sum())
            n_inf += int(bad.sum() - nan.sum())
            if first is None:
                first = np.unravel_index(k * flat.shape[1] + int(np.argmax(bad)), a.shape)
    n_bad = n_nan + n_inf
    if n_bad == 0:
        return array, 0
    if policy == "error":
        where = ", ".join(str(int(i)) for i in first) if first is not None else "?"
        raise InputError(
            f"The volume has {n_nan} NaN and {n_inf} infinite voxel(s) (the first at index [{where}]); "
            "SR4ZCT needs finite CT values. Replace them (e.g. with -1024 HU, air) before enhancing "
            "(sr4zct.run.validation.check_finite(array, policy='fill') does that)."
        )
    out = np.array(a, dtype=np.float32, copy=True)
    finite = out[np.isfinite(out)]
    if finite.size == 0:
        raise InputError("The volume holds no finite value at all.")
    low = float(finite.min()) if fill_hu is None else float(fill_hu)
    out[np.isnan(out) | np.isneginf(out)] = low
    out[np.isposinf(out)] = float(finite.max())
    return out, n_bad


def check_hu_range(array: np.ndarray) -> None:
    """Refuse values beyond +-1e6 HU (:data:`sr4zct.io.dicom.MAX_ABS_HU`), as every reader does: far outside
    any CT scale (the array is not HU, or is damaged). Integer arrays of at most 16 bits cannot exceed it."""
    from sr4zct.io.dicom import MAX_ABS_HU

    a = np.asarray(array)
    if a.size == 0 or (a.dtype.kind in "iu" and a.dtype.itemsize <= 2):
        return
    flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
    worst = 0.0
    for plane in flat:
        values = plane[np.isfinite(plane)] if plane.dtype.kind == "f" else plane.astype(np.float64)
        if values.size:
            worst = max(worst, abs(float(values.min())), abs(float(values.max())))
    if worst > MAX_ABS_HU:
        raise InputError(
            f"The volume holds values up to {worst:.3g}, far outside any CT scale (|HU| <= {MAX_ABS_HU:g}); "
            "SR4ZCT needs CT values in HU."
        )


def check_modality(modality: str | None, *, allow_non_ct: bool = False) -> str | None:
    """Refuse a DICOM modality other than CT unless ``allow_non_ct``; returns a warning then.

    ``None`` (plain image files carry no modality) is accepted without a warning.
    """
    if modality is None or str(modality).strip() == "":
        return None
    value = str(modality).strip().upper()
    if value in CT_MODALITIES:
        return None
    message = f"The series' modality is {value}, not CT: SR4ZCT models CT slice profiles and HU intensities"
    if not allow_non_ct:
        raise InputError(f"{message}; pass allow_non_ct=True to enhance it anyway.")
    return f"{message}; enhancing anyway (allow_non_ct=True)."


def _output_slices(n_slices: int, spacing_mm: float, target_spacing_mm: float) -> int:
    span = max(0.0, (n_slices - 1) * float(spacing_mm))
    return int(math.floor(span / float(target_spacing_mm) + 1e-9)) + 1


def estimate_memory_bytes(
    shape: Sequence[int],
    *,
    spacing_mm: float,
    target_spacing_mm: float,
    pixel_spacing_mm: Sequence[float] = (1.0, 1.0),
    uncertainty: bool = False,
) -> int:
    """Peak memory (bytes) of enhancing a ``(slices, rows, columns)`` volume, estimated before starting.

    Counted in float32: the input; the linearly upsampled volume on the internal grid (pitch = row
    pixel size) and the coronal estimate; the sagittal estimate (a second grid when the column pixel size
    differs); the fused output and its copy for writing; the uncertainty volume; plus
    :data:`BASE_MEMORY_BYTES` for torch, the network and training batches.
    """
    n, rows, columns = (int(s) for s in shape)
    plane = 4 * rows * columns
    row_mm, col_mm = (float(v) for v in pixel_spacing_mm)
    n_out = _output_slices(n, spacing_mm, target_spacing_mm)
    n_row_grid = _output_slices(n, spacing_mm, row_mm)
    n_col_grid = _output_slices(n, spacing_mm, col_mm)
    volumes = n + 2 * n_row_grid + (n_col_grid if abs(row_mm - col_mm) > 1e-6 * row_mm else 0)
    volumes += 2 * n_out + (n_out if uncertainty else 0)
    return int(BASE_MEMORY_BYTES + plane * volumes)


def _memory_hint(
    shape: Sequence[int], d: float, target: float, pixel: Sequence[float], available: int, held: int
) -> str:
    """Suggest the finest target spacing (0.1 mm steps) that fits, if any."""
    for candidate in np.arange(math.ceil(target * 10 + 1e-9) / 10, d, 0.1):
        need = estimate_memory_bytes(
            shape, spacing_mm=d, target_spacing_mm=float(candidate), pixel_spacing_mm=pixel
        )
        need -= held
        if need <= available:
            return (
                f"target_spacing_mm={candidate:.1f} would need about {format_bytes(need)}; or crop the volume"
            )
    return "crop the volume (fewer slices or a smaller in-plane region) or use a machine with more memory"


def check_output_geometry(geometry: SeriesGeometry, output_path: str | os.PathLike) -> None:
    """Refuse, before computing, an output format that cannot store ``geometry``'s grid.

    NIfTI stores only orthogonal axes: a sheared grid (gantry tilt) must go to NRRD, MHA or DICOM. The
    output grid is regular, so the other formats can store any enhanced volume.
    """
    name = Path(output_path).name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    axes = np.asarray(geometry.axes_lps, dtype=float)
    if np.max(np.abs(axes @ axes.T - np.eye(3))) > 1e-4:
        from sr4zct.errors import OutputError

        raise OutputError(
            f"Cannot write {Path(output_path).name}: the grid is sheared (gantry tilt "
            f"{geometry.gantry_tilt_deg:.2f} degrees) and NIfTI can only store orthogonal axes. Write .nrrd, "
            ".mha or a DICOM folder instead."
        )


def validate_model_file(path: str | os.PathLike) -> Path:
    """Check, before reading any data, that ``path`` is a usable SR4ZCT model file.

    Raises :class:`ModelError` for a missing path, a folder, an empty or truncated file, a file that is
    not a torch archive, and any metadata field or weight that :func:`sr4zct.run.model_file.check_model_payload`
    refuses (naming the field). Whether the model fits the data's geometry is checked when it is applied.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"The model file {path} does not exist.")
    if not path.is_file():
        raise ModelError(f"The model path {path} is not a file.")
    if path.stat().st_size == 0:
        raise ModelError(f"The model file {path} is empty.")
    try:
        ok = zipfile.is_zipfile(path)
        if ok:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
                ok = bad is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        ok = False
    if not ok:
        raise ModelError(
            f"The model file {path} is corrupt or not an SR4ZCT model (not a complete torch archive)."
        )
    from sr4zct.run.model_file import read_model_file

    read_model_file(path)
    return path


def validate_for_enhancement(
    volume: Volume,
    *,
    thickness_mm: float | None = None,
    spacing_mm: float | None = None,
    target_spacing_mm: float | None = None,
    allow_non_ct: bool = False,
    uncertainty: bool = False,
    available_bytes: int | None = None,
) -> AcquisitionParameters:
    """All checks the pipeline runs before training: modality, data type, finite values, geometry, memory.

    Returns the :class:`AcquisitionParameters`; their ``warnings`` include the modality warning (when
    ``allow_non_ct``) and the geometry's irregularities.
    """
    warnings: list[str] = []
    modality_warning = check_modality(volume.geometry.modality, allow_non_ct=allow_non_ct)
    if modality_warning:
        warnings.append(modality_warning)
    check_dtype(volume.array)
    params = validate_geometry_for_enhancement(
        volume.geometry, thickness_mm=thickness_mm, spacing_mm=spacing_mm, target_spacing_mm=target_spacing_mm
    )
    check_finite(volume.array, policy="error")
    check_hu_range(volume.array)
    shape = volume.array.shape
    pixel = volume.geometry.pixel_spacing_mm
    need = estimate_memory_bytes(
        shape,
        spacing_mm=params.spacing_mm,
        target_spacing_mm=params.target_spacing_mm,
        pixel_spacing_mm=pixel,
        uncertainty=uncertainty,
    )
    # The input volume is already in memory: it is part of the estimate but not of what is still needed.
    held = int(np.asarray(volume.array).nbytes)
    need -= held
    available = available_memory_bytes() if available_bytes is None else int(available_bytes)
    if available is not None and need > available:
        check_memory(
            need,
            available_bytes=available,
            hint=_memory_hint(shape, params.spacing_mm, params.target_spacing_mm, pixel, available, held),
        )
    return AcquisitionParameters(
        params.thickness_mm, params.spacing_mm, params.positions_mm, params.target_spacing_mm,
        [*warnings, *params.warnings],
    )  # fmt: skip
