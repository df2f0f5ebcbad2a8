"""NRRD / NIfTI / MetaImage volumes via SimpleITK, converted to and from the shared Volume layout.

SimpleITK gives physical geometry in LPS for every format (it converts NIfTI's RAS itself), so no sign
flips are needed. A SimpleITK image of size ``(nx, ny, nz)`` becomes a NumPy array ``(nz, ny, nx)``: NumPy
axis ``a`` is ITK axis ``2 - a``, whose direction is column ``2 - a`` of the direction matrix.

Reading picks the through-plane axis, moves it to array axis 0 keeping the other two in file order, and
records it in ``SeriesGeometry.source_slice_axis`` (a NumPy axis index). The axis is ``slice_axis=`` when
given, else the header key ``sr4zct_slice_axis`` that this writer records (an enhanced output is often
isotropic, so spacing alone cannot tell), else the axis with the largest spacing (ties go to the axis whose
direction is closest to patient S-I). Writing puts the axes back, so origin, spacing and direction
round-trip exactly (up to NIfTI's float32 storage).

Slice thickness is not part of these formats: it comes from ``thickness_mm=`` (source ``"user"``), else the
header key ``sr4zct_slice_thickness_mm`` (NRRD/MHA header, or the NIfTI JSON sidecar ``<name>.json``,
where a BIDS/dcm2niix ``SliceThickness`` also counts; source ``"header"``), else it is missing.

A NIfTI sidecar ``<stem>.json`` belongs to the one NIfTI file beside it: SR4ZCT's own sidecars name that file
(``sr4zct_image_file``), a sidecar naming another file is not read, and when both ``<stem>.nii`` and
``<stem>.nii.gz`` exist a sidecar that names neither is not read (a warning says so). A NIfTI output whose
sidecar would be shared with such a sibling is refused. Values beyond +-1e6 (far outside any CT scale, as the
DICOM reader refuses them) are refused, and so is a file name that is not UTF-8 text (SimpleITK would abort).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sr4zct._version import __version__
from sr4zct.errors import GeometryError, InputError, OutputError, ParameterError
from sr4zct.io.atomic import atomic_output, check_finite_output, check_output_path, disk_full_or
from sr4zct.io.dicom import MAX_ABS_HU, check_thickness
from sr4zct.io.files import check_utf8_name, require_regular_file
from sr4zct.io.image_headers import PixelData, check_pixel_data, inspect_image_file
from sr4zct.volume import SeriesGeometry, Volume

THICKNESS_KEY = "sr4zct_slice_thickness_mm"
#: Start of the NIfTI ``descrip`` of every NIfTI file SR4ZCT writes (NRRD/MHA carry SLICE_AXIS_KEY).
OUTPUT_MARK = "SR4ZCT"
SLICE_AXIS_KEY = "sr4zct_slice_axis"
#: The sidecar key naming the NIfTI file a sidecar SR4ZCT wrote belongs to.
IMAGE_FILE_KEY = "sr4zct_image_file"
READ_SUFFIXES = (".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd")
WRITE_SUFFIXES = (".nii.gz", ".nrrd", ".nii", ".mha")


def _sitk():
    import SimpleITK as sitk

    return sitk


@contextlib.contextmanager
def itk_quiet() -> Iterator[list[str]]:
    """Run SimpleITK calls without their console output; yields a list that receives that text.

    ITK prints warnings (``pixdim`` 0, sform scales) and its C libraries print errors (MetaIO, the NIfTI
    library) straight to file descriptor 2, around Python. The readers and writers turn what matters into
    their own one-line messages; the raw text goes into the exception's ``detail``.
    """
    sitk = _sitk()
    captured: list[str] = []
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        saved = None
    try:
        if saved is None:
            yield captured
            return
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield captured
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                captured.append(sink.read(65536).decode("utf-8", "replace"))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _itk_reason(exc: RuntimeError) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in READ_SUFFIXES if name.endswith(s)), None)


def sidecar_path(path: str | os.PathLike) -> Path:
    """``<name>.json`` beside a NIfTI file (``ct.nii.gz`` -> ``ct.json``)."""
    path = Path(path)
    suffix = _suffix(path) or path.suffix
    return path.with_name(path.name[: len(path.name) - len(suffix)] + ".json")


def nifti_sibling(path: str | os.PathLike) -> Path | None:
    """The other NIfTI name that shares ``path``'s sidecar (``ct.nii`` <-> ``ct.nii.gz``), or None."""
    path = Path(path)
    name = path.name
    if name.lower().endswith(".nii.gz"):
        return path.with_name(name[: -len(".gz")])
    if name.lower().endswith(".nii"):
        return path.with_name(name + ".gz")
    return None


def permutation(source_slice_axis: int) -> tuple[int, int, int]:
    """Source NumPy axes in Volume order: the slice axis first, the other two in file order."""
    s = int(source_slice_axis)
    return (s, *(a for a in range(3) if a != s))


def choose_slice_axis(spacing_xyz: Any, direction: Any) -> tuple[int, bool]:
    """Through-plane NumPy axis from ITK spacing ``(x, y, z)`` and the 3x3 direction matrix
    (:func:`sr4zct.volume.geometry.through_plane_axis`); also whether a spacing tie was broken."""
    from sr4zct.volume.geometry import through_plane_axis

    d = np.asarray(direction, dtype=float).reshape(3, 3)
    # NumPy axis a is ITK axis 2 - a, whose direction is column 2 - a of the matrix
    return through_plane_axis(np.asarray(spacing_xyz, dtype=float)[::-1], d[:, ::-1].T)


def _header(reader_or_image: Any) -> dict[str, str]:
    out = {}
    try:
        keys = reader_or_image.GetMetaDataKeys()
    except (RuntimeError, TypeError, UnicodeError):
        return out
    for key in keys:
        try:
            out[key] = reader_or_image.GetMetaData(key)
        except (RuntimeError, TypeError, UnicodeError):  # keys or values that are not UTF-8 text
            continue
    return out


def _check_image_info(path: Path, dimension: int, components: int) -> None:
    if dimension == 2:
        raise InputError(f"{path} is a 2-D image; SR4ZCT needs a 3-D volume (a stack of slices).")
    if dimension != 3:
        raise InputError(f"{path} is a {dimension}-D image; SR4ZCT needs a 3-D volume.")
    if components != 1:
        raise InputError(
            f"{path} has {components} components per voxel (colour or vector image), not CT intensities."
        )


def _geometry(
    path: Path,
    reader: Any,
    header: dict[str, str],
    *,
    thickness_mm: float | None,
    slice_axis: int | None,
    notes: list[str] | None = None,
) -> SeriesGeometry:
    """The geometry of the image whose information ``reader`` (a SimpleITK ImageFileReader) has read;
    ``notes`` start its warnings."""
    origin = reader.GetOrigin()
    d = np.asarray(reader.GetDirection(), dtype=float).reshape(3, 3)
    spacing_np = np.asarray(reader.GetSpacing(), dtype=float)[::-1]
    shape_np = tuple(int(s) for s in reader.GetSize())[::-1]
    _check_spacing_and_directions(path, spacing_np, d)
    warnings: list[str] = list(notes or ())
    axis = _through_plane_axis(slice_axis, header, reader.GetSpacing(), d, warnings)
    perm = permutation(axis)
    axes = tuple(tuple(float(c) for c in d[:, 2 - a]) for a in perm)
    spacing = [float(spacing_np[a]) for a in perm]
    shape = tuple(shape_np[a] for a in perm)
    tilt_deg = _tilt_deg(axes, warnings)
    thickness_mm, source = _thickness_and_source(thickness_mm, header, warnings)
    n = shape[0]
    return SeriesGeometry(
        pixel_spacing_mm=(spacing[1], spacing[2]),
        slice_thickness_mm=thickness_mm,
        slice_spacing_mm=spacing[0],
        slice_positions_mm=tuple(float(k * spacing[0]) for k in range(n)),
        shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        origin_lps=tuple(float(o) for o in origin),
        axes_lps=axes,
        thickness_source=source,
        source_slice_axis=axis,
        gantry_tilt_deg=float(tilt_deg),
        thickness_values_mm=() if thickness_mm is None else (float(thickness_mm),),
        warnings=tuple(warnings),
        description=path.name,
        extra={"source_path": str(path.resolve()), "header": header},
    )


def _check_spacing_and_directions(path: Path, spacing_np: np.ndarray, direction: np.ndarray) -> None:
    """Refuse a header whose spacings are not positive or whose axis directions are degenerate."""
    if not np.all(np.isfinite(spacing_np)) or np.any(spacing_np <= 0):
        raise GeometryError(
            f"{path.name} has a voxel spacing of {', '.join(f'{v:g}' for v in spacing_np[::-1])} mm (x, y, z): "
            "every spacing must be a positive number; the header is damaged."
        )
    if not np.all(np.isfinite(direction)) or abs(float(np.linalg.det(direction))) < 1e-6:
        raise GeometryError(
            f"{path.name} has degenerate axis directions {direction.tolist()}; the header is damaged."
        )


def _through_plane_axis(
    slice_axis: Any, header: dict[str, str], spacing_xyz: Any, direction: np.ndarray, warnings: list[str]
) -> int:
    """The through-plane NumPy axis: ``slice_axis`` when given, else the one the header records, else the
    axis with the largest spacing (a tie goes to the patient's S-I direction, with a warning)."""
    if slice_axis is None:
        slice_axis = _stored_slice_axis(header, warnings)
    if slice_axis is not None:
        if (
            not isinstance(slice_axis, (int, np.integer))
            or isinstance(slice_axis, (bool, np.bool_))
            or not -3 <= int(slice_axis) <= 2
        ):
            raise ParameterError(f"slice_axis must be 0, 1 or 2 (NumPy order z, y, x), got {slice_axis!r}.")
        return int(slice_axis) % 3
    axis, tie = choose_slice_axis(spacing_xyz, direction)
    if tie:
        spacing_np = np.asarray(spacing_xyz, dtype=float)[::-1]
        warnings.append(
            f"The spacing is equal along several axes ({', '.join(f'{s:g}' for s in spacing_np)} mm); "
            f"took the axis closest to the patient's S-I direction (array axis {axis}) as through-plane. "
            "Pass slice_axis to choose another."
        )
    return axis


def _tilt_deg(axes: tuple, warnings: list[str]) -> float:
    """The angle between the through-plane axis and the slice normal, in degrees (warned when not 0)."""
    normal = np.cross(axes[2], axes[1])
    cos_tilt = abs(float(np.dot(normal, axes[0]))) / (float(np.linalg.norm(normal)) or 1.0)
    tilt_deg = math.degrees(math.acos(min(1.0, cos_tilt)))
    if tilt_deg > 0.01:
        warnings.append(
            f"The through-plane axis is {tilt_deg:.2f} degrees away from the slice normal (sheared grid, "
            "e.g. gantry tilt)."
        )
    return tilt_deg


def _thickness_and_source(
    thickness_mm: float | None, header: dict[str, str], warnings: list[str]
) -> tuple[float | None, str]:
    """The slice thickness and where it came from (``"user"``, ``"header"`` or ``"missing"``)."""
    thickness_mm = check_thickness(thickness_mm)
    if thickness_mm is not None:
        return thickness_mm, "user"
    raw = header.get(THICKNESS_KEY)
    if raw is not None:
        try:
            return check_thickness(float(raw)), "header"
        except (ValueError, ParameterError):
            warnings.append(f"Ignored the header value {THICKNESS_KEY}={raw!r}: not a positive number.")
    warnings.append(
        "Slice thickness is unknown: NRRD/NIfTI/MHA files do not record it. Give the nominal slice "
        "thickness of the acquisition in millimetres: thickness_mm in Python, --thickness MM on the "
        "command line, the Thickness field in Slicer."
    )
    return None, "missing"


def _stored_slice_axis(header: dict[str, str], warnings: list[str]) -> int | None:
    """The through-plane NumPy axis recorded by :func:`write_image_volume`; None (and a warning when the
    value is unusable) otherwise."""
    raw = header.get(SLICE_AXIS_KEY)
    if raw is None:
        return None
    text = raw.strip()
    if text in ("0", "1", "2"):
        return int(text)
    warnings.append(
        f"Ignored the header value {SLICE_AXIS_KEY}={raw!r}: not 0, 1 or 2; guessed the through-plane "
        "axis from the spacing instead."
    )
    return None


def _load_sidecar(side: Path) -> dict | None:
    """The JSON object of a sidecar, or None (missing, not a regular file, not a JSON object)."""
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def sidecar_owner_problem(path: Path, data: dict) -> str | None:
    """Why the sidecar ``data`` beside ``path`` does not belong to ``path`` (None when it does): it names
    another file, or it names none while the NIfTI sibling that shares its name exists."""
    side = sidecar_path(path)
    owner = data.get(IMAGE_FILE_KEY)
    if owner is not None:
        return None if str(owner) == path.name else f"{side.name} belongs to {owner!s}, not to {path.name}"
    sibling = nifti_sibling(path)
    if sibling is not None and sibling.exists():
        return f"{side.name} may belong to {sibling.name} or to {path.name} (both exist)"
    return None


def _read_sidecar(path: Path, notes: list[str]) -> dict[str, str]:
    data = _load_sidecar(sidecar_path(path))
    if data is None:
        return {}
    problem = sidecar_owner_problem(path, data)
    if problem is not None:
        notes.append(f"Did not read the sidecar: {problem}.")
        return {}
    out = {str(k): str(v) for k, v in data.items()}
    # BIDS sidecars (dcm2niix) record the DICOM SliceThickness under this name.
    if THICKNESS_KEY not in out and isinstance(data.get("SliceThickness"), (int, float)):
        out[THICKNESS_KEY] = str(data["SliceThickness"])
    return out


def _check_input(path: Path) -> None:
    if not path.exists():
        raise InputError(f"Image file {path} does not exist.")
    require_regular_file(path, "The image file")
    if _suffix(path) is None:
        raise InputError(f"{path} is not a NRRD/NIfTI/MHA file ({', '.join(READ_SUFFIXES)}).")
    check_utf8_name(path.absolute())  # SimpleITK aborts the interpreter on such a name


def _read_information(
    path: Path, allow_detached_data: bool, notes: list[str]
) -> tuple[Any, dict[str, str], PixelData]:
    """SimpleITK's header reader, the header's key/values and what :mod:`sr4zct.io.image_headers` found;
    notes about the sidecar go to ``notes``."""
    sitk = _sitk()
    _check_input(path)
    # Our own parse first: SimpleITK follows any data-file pointer and hangs or crashes on some
    # inconsistent headers.
    info = inspect_image_file(path, allow_detached_data=allow_detached_data)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with itk_quiet() as native:
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise InputError(f"Cannot read {path}: {_itk_reason(exc)}", detail="".join(native)) from exc
    _check_image_info(path, reader.GetDimension(), reader.GetNumberOfComponents())
    header = _header(reader)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        header = {**header, **_read_sidecar(path, notes)}
    return reader, header, info


def read_image_geometry(
    path: str | os.PathLike,
    *,
    thickness_mm: float | None = None,
    slice_axis: int | None = None,
    allow_detached_data: bool = False,
) -> SeriesGeometry:
    """Geometry of a NRRD/NIfTI/MHA file from its header only (see :func:`read_image_volume`)."""
    path = Path(path)
    notes: list[str] = []
    reader, header, _ = _read_information(path, allow_detached_data, notes)
    return _geometry(path, reader, header, thickness_mm=thickness_mm, slice_axis=slice_axis, notes=notes)


def _check_fits_in_memory(geometry: SeriesGeometry, path: Path) -> None:
    from sr4zct.errors import ResourceError
    from sr4zct.system import available_memory_bytes, format_bytes

    # float32 result plus SimpleITK's float32 image it is copied from
    n_bytes = 2 * 4 * int(np.prod(geometry.shape, dtype=np.int64))
    available = available_memory_bytes()
    if available is not None and n_bytes > available:
        raise ResourceError(
            f"{path.name} needs {format_bytes(n_bytes)} of memory as float32 but only "
            f"{format_bytes(available)} is available."
        )


def read_image_volume(
    path: str | os.PathLike,
    *,
    thickness_mm: float | None = None,
    slice_axis: int | None = None,
    allow_detached_data: bool = False,
) -> Volume:
    """Read a NRRD/NIfTI/MHA volume as float32 in the ``(slice, row, column)`` layout.

    Parameters
    ----------
    path : ``.nrrd .nhdr .nii .nii.gz .mha .mhd`` file.
    thickness_mm : nominal slice thickness (source ``"user"``); otherwise from the header key
        ``sr4zct_slice_thickness_mm`` (source ``"header"``) or missing.
    slice_axis : NumPy axis of the file array (``(z, y, x)`` as SimpleITK reads it) that is through-plane;
        default: the header key ``sr4zct_slice_axis`` (written by :func:`write_image_volume`; an unusable
        value is ignored with a warning), else the axis with the largest spacing, ties broken towards
        patient S-I.
    allow_detached_data : read a detached data file (``.mhd`` ``ElementDataFile``, NRRD ``data file``)
        that does not lie in the header's folder; by default that is refused, because a header can point
        anywhere (``/etc/passwd``).

    The pixel data is checked before SimpleITK reads it: complete (its size against the header), NIfTI
    NaN/Inf kept as they are (SimpleITK alone reads them as 0), NIfTI scaling within any CT scale.

    Raises
    ------
    InputError
        Unreadable, truncated or damaged file, 2-D or 4-D image, colour/vector image, a detached data file
        elsewhere.
    GeometryError
        A voxel spacing that is not a positive number.
    """
    sitk = _sitk()
    path = Path(path)
    notes: list[str] = []
    reader, header, info = _read_information(path, allow_detached_data, notes)
    geometry = _geometry(path, reader, header, thickness_mm=thickness_mm, slice_axis=slice_axis, notes=notes)
    _check_fits_in_memory(geometry, path)
    non_finite = check_pixel_data(info, find_non_finite=info.kind == "nifti")
    with itk_quiet() as native:
        try:
            image = sitk.ReadImage(str(path), sitk.sitkFloat32)
        except RuntimeError as exc:
            raise InputError(f"Cannot read {path}: {_itk_reason(exc)}", detail="".join(native)) from exc
    array = sitk.GetArrayFromImage(image)
    _check_value_range(array, path)
    if non_finite is not None and non_finite.indices.size:
        # SimpleITK's NIfTI reader turns NaN and Inf into 0: put the stored values back.
        array.reshape(-1)[non_finite.indices] = non_finite.values.astype(np.float32)
    perm = permutation(geometry.source_slice_axis)
    if perm != (0, 1, 2):
        array = np.ascontiguousarray(np.transpose(array, perm), dtype=np.float32)
    return Volume(array=np.asarray(array, dtype=np.float32), geometry=geometry)


def _check_value_range(array: np.ndarray, path: Path) -> None:
    """Refuse finite values beyond +-:data:`~sr4zct.io.dicom.MAX_ABS_HU`, as the DICOM reader does: far
    outside any CT scale (a damaged file, or not CT)."""
    low = high = None
    for plane in array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(1, -1):
        finite = plane[np.isfinite(plane)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            low, high = lo if low is None else min(low, lo), hi if high is None else max(high, hi)
    worst = max(abs(low), abs(high)) if low is not None else 0.0
    if worst > MAX_ABS_HU:
        raise InputError(
            f"{path} holds values up to {worst:.3g}, far outside any CT scale (|HU| <= {MAX_ABS_HU:g}); the file "
            "is damaged or does not hold CT values in HU."
        )


def _regular_or_raise(geometry: SeriesGeometry, path: Path) -> None:
    from sr4zct.volume.geometry import spacing_tolerance_mm

    n = geometry.n_slices
    expected = np.arange(n) * geometry.slice_spacing_mm
    deviation = np.max(np.abs(np.asarray(geometry.slice_positions_mm) - expected)) if n else 0.0
    if deviation > spacing_tolerance_mm(geometry.slice_spacing_mm):
        raise OutputError(
            f"Cannot write {path.name}: the slice positions are irregular (up to {deviation:.3f} mm off a "
            f"{geometry.slice_spacing_mm:g} mm grid) and {path.suffix} files need a regular grid. "
            "Write a DICOM folder instead, or resample the slices first."
        )


_KEY_RE = re.compile(r"[^A-Za-z0-9_.\-]")


def header_items(volume: Volume, metadata: dict | None) -> dict[str, str]:
    """Header key/values for a written file: ``volume.metadata``, ``metadata``, the thickness key and the
    through-plane axis (``sr4zct_slice_axis``, always the one the file is written with)."""
    items: dict[str, Any] = {**volume.metadata, **(metadata or {})}
    thickness = items.get("slice_thickness_mm", volume.geometry.slice_thickness_mm)
    if thickness is not None and THICKNESS_KEY not in items:
        items[THICKNESS_KEY] = thickness
    items[SLICE_AXIS_KEY] = int(volume.geometry.source_slice_axis)
    out = {}
    for key, value in items.items():
        if value is None:
            continue
        text = (
            value
            if isinstance(value, str)
            else json.dumps(value)
            if isinstance(value, (dict, list))
            else str(value)
        )
        out[_KEY_RE.sub("_", str(key))] = " ".join(text.splitlines())
    return out


def check_sidecar(path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """A NIfTI output's ``<name>.json`` sidecar may be replaced only with ``overwrite`` and only when
    SR4ZCT wrote it (it holds ``sr4zct_slice_axis``).

    Raises
    ------
    OutputError
        The sidecar exists and ``overwrite`` is False, or it is not SR4ZCT's.
    """
    from sr4zct.io.ownership import foreign_reason

    _check_no_sibling(Path(path))
    side = sidecar_path(path)
    if not side.exists() and not side.is_symlink():
        return
    if not overwrite:
        raise OutputError(f"The sidecar {side} exists; use overwrite=True to replace it.")
    if (
        side.is_symlink()
        or not side.is_file()
        or foreign_reason(path) is not None
        or not _is_our_sidecar(side, Path(path))
    ):
        raise OutputError(
            f"Refusing to replace {side}: it is not a sidecar SR4ZCT wrote beside a NIfTI file it wrote; "
            "remove it yourself or choose another output path."
        )


def _check_no_sibling(path: Path) -> None:
    """A NIfTI output may not lie beside its sibling (``ct.nii`` beside ``ct.nii.gz``): the two would share
    one sidecar ``ct.json``, and writing one would replace the other's."""
    sibling = nifti_sibling(path)
    if sibling is not None and (sibling.exists() or sibling.is_symlink()):
        raise OutputError(
            f"Cannot write {path.name}: {sibling.name} lies beside it and the two would share the sidecar "
            f"{sidecar_path(path).name}, which belongs to {sibling.name}; choose another output name."
        )


def _is_our_sidecar(side: Path, image: Path | None = None) -> bool:
    """True for a sidecar SR4ZCT wrote (it holds ``sr4zct_slice_axis``) that belongs to ``image``."""
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    if not isinstance(data, dict) or SLICE_AXIS_KEY not in data:
        return False
    return image is None or data.get(IMAGE_FILE_KEY, image.name) == image.name


def image_from_volume(volume: Volume) -> Any:
    """SimpleITK image in the source axis order with the volume's exact geometry."""
    sitk = _sitk()
    g = volume.geometry
    perm = permutation(g.source_slice_axis)
    inverse = tuple(int(i) for i in np.argsort(perm))
    array = np.ascontiguousarray(np.transpose(volume.array, inverse))
    image = sitk.GetImageFromArray(array, isVector=False)
    spacing_vol = g.spacing_mm
    direction = np.zeros((3, 3))
    spacing_itk = [0.0, 0.0, 0.0]
    for k, a in enumerate(perm):
        j = 2 - a
        direction[:, j] = g.axes_lps[k]
        spacing_itk[j] = float(spacing_vol[k])
    image.SetSpacing(spacing_itk)
    image.SetOrigin([float(o) for o in g.origin_lps])
    image.SetDirection([float(v) for v in direction.ravel()])
    return image


def write_image_volume(
    volume: Volume,
    path: str | os.PathLike,
    *,
    metadata: dict | None = None,
    overwrite: bool = False,
    compress: bool | None = None,
) -> Path:
    """Write ``volume`` as ``.nrrd``, ``.mha``, ``.nii`` or ``.nii.gz`` atomically; returns the path.

    The source axis order and the exact geometry (origin, direction, spacing; the slice spacing is
    ``geometry.slice_spacing_mm``) are restored. ``metadata`` (plus ``volume.metadata``, the slice
    thickness as ``sr4zct_slice_thickness_mm`` and the through-plane NumPy axis of the file as
    ``sr4zct_slice_axis``, which :func:`read_image_volume` uses when no ``slice_axis`` is given) goes into
    the NRRD/MHA header, or a JSON sidecar ``<name>.json`` for NIfTI. ``compress`` defaults to True only
    for ``.nii.gz``.

    Raises
    ------
    OutputError
        Unsupported suffix, irregular slice positions, output exists (without ``overwrite``), output is
        the input, or the write fails (nothing is left behind).
    """
    sitk = _sitk()
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise OutputError(
            f"Cannot write {path.name}: use one of {', '.join(WRITE_SUFFIXES)} or a folder for DICOM "
            "(.nhdr/.mhd keep the data in a second file and cannot be written atomically)."
        )
    _regular_or_raise(volume.geometry, path)
    is_nifti = suffix in (".nii", ".nii.gz")
    axes = np.asarray(volume.geometry.axes_lps, dtype=float)
    if is_nifti and np.max(np.abs(axes @ axes.T - np.eye(3))) > 1e-4:
        raise OutputError(
            f"Cannot write {path.name}: the grid is sheared (gantry tilt {volume.geometry.gantry_tilt_deg:.2f} "
            "degrees) and NIfTI can only store orthogonal axes. Write .nrrd, .mha or a DICOM folder instead."
        )
    items = header_items(volume, metadata)
    source = volume.geometry.extra.get("source_path")
    check_utf8_name(path.absolute(), OutputError)  # SimpleITK aborts the interpreter on such a name
    check_output_path(path, overwrite=overwrite, inputs=[source])
    check_finite_output(volume.array, path)
    if is_nifti:
        check_sidecar(path, overwrite=overwrite)
    image = image_from_volume(volume)
    if is_nifti:
        # NIfTI has no key/value header: the 80-character descrip marks the file as ours (and the sidecar)
        image.SetMetaData("ITK_FileNotes", f"{OUTPUT_MARK} {__version__}")
    else:
        for key, value in items.items():
            image.SetMetaData(key, value)
    needed = 4 * int(volume.array.size) + 2**20
    with atomic_output(
        path, overwrite=overwrite, inputs=[source], extra_suffixes=(".json",) if is_nifti else ()
    ) as tmp:
        with itk_quiet():
            try:
                sitk.WriteImage(
                    image,
                    str(tmp),
                    useCompression=bool(suffix == ".nii.gz" if compress is None else compress),
                )
            except RuntimeError as exc:
                raise disk_full_or(path, tmp.parent, needed, _itk_reason(exc)) from exc
        _verify_written(tmp, path, needed)
        if is_nifti:
            side = {**items, IMAGE_FILE_KEY: path.name}  # the sidecar names the file it belongs to
            sidecar_path(tmp).write_text(json.dumps(side, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path.expanduser().resolve()


def _verify_written(tmp: Path, target: Path, needed: int) -> None:
    """Read back what SimpleITK wrote: its NIfTI writer reports a short write (a full disk) only on the
    console, and the file would be renamed into place incomplete."""
    try:
        check_pixel_data(inspect_image_file(tmp))
    except InputError as exc:
        raise disk_full_or(target, tmp.parent, needed, "the written file is incomplete") from exc
