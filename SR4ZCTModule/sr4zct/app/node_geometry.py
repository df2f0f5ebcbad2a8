"""The acquisition geometry of a volume node, as the Slicer panel shows it and the run needs it.

The module reads a node's numbers (dimensions, spacing, IJK directions, parent transform) and, when the node
came from DICOM, the per-slice attributes in Slicer's DICOM database; :func:`geometry_of_node` turns them into a
:class:`NodeGeometry` with the warnings the panel shows. :func:`series_geometry` builds the core's
:class:`~sr4zct.volume.SeriesGeometry` from the database's attributes (positions and orientations from its
tag cache; thickness, pixel spacing and the scan mode from one header read per file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence

from sr4zct.errors import GeometryError, SR4ZCTError
from sr4zct.volume import SeriesGeometry, make_geometry
from sr4zct.volume.scan_mode import SCAN_MODE_KEYWORDS, scan_mode_of_header, series_scan_mode

__all__ = [
    "LPS_TO_RAS", "NodeGeometry", "check_dimensions", "geometry_of_node", "ijk_to_ras", "kji_geometry",
    "row_at", "series_geometry", "split_dicom_value", "thickness_from_file",
]  # fmt: skip

#: patient LPS coordinates to Slicer's RAS, per axis
LPS_TO_RAS = (-1.0, -1.0, 1.0)
# DICOM tags read per slice from the database (group,element as ctkDICOMDatabase takes them).
TAG_POSITION = "0020,0032"
TAG_ORIENTATION = "0020,0037"
TAG_ROWS = "0028,0010"
TAG_COLUMNS = "0028,0011"
TAG_SERIES_UID = "0020,000E"
TAG_SERIES_DESCRIPTION = "0008,103E"
#: files whose header may record SR4ZCT's slice thickness (``sr4zct_slice_thickness_mm``)
HEADER_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


@dataclasses.dataclass
class NodeGeometry:
    """What the panel shows about a volume node, and what the run takes from it.

    Attributes
    ----------
    source : str
        Where the thickness came from (``"DICOM"``, a node attribute, a file header).
    axis : int
        The node's IJK axis through the slices.
    in_plane_spacing_mm : tuple of float
        Pixel spacing (row, column).
    node_spacing_mm : float
        The node's spacing along ``axis``.
    spacing_mm : float
        The slice spacing d: from the DICOM slice positions when known, else the node's.
    thickness_mm : float or None
        The slice thickness T; None when unknown.
    n_slices : int
        Slices along ``axis``.
    warnings : list of str
        What the user should check.
    series : SeriesGeometry or None
        The DICOM series' geometry, when read from the database.
    """

    source: str
    axis: int
    in_plane_spacing_mm: tuple[float, float]
    node_spacing_mm: float
    spacing_mm: float
    thickness_mm: float | None
    n_slices: int
    warnings: list[str]
    series: SeriesGeometry | None = dataclasses.field(default=None, repr=False)

    @property
    def overlap_mm(self) -> float | None:
        """T - d: positive for overlapping slices, None while the thickness is unknown."""
        return None if self.thickness_mm is None else self.thickness_mm - self.spacing_mm


def split_dicom_value(value: str | None) -> list[float]:
    """The numbers of a multi-valued DICOM string such as ``"-1.5\\2\\3"`` (empty list for empty values)."""
    if not value:
        return []
    return [float(v) for v in str(value).replace(",", "\\").split("\\") if v.strip()]


def check_dimensions(name: str, dimensions: Sequence[int]) -> None:
    """Raise :class:`GeometryError` unless the volume ``name`` has more than one voxel along each axis."""
    if sum(1 for d in dimensions if d > 1) < 3:
        x, y, z = dimensions
        raise GeometryError(f"'{name}' is not a 3-D volume (size {x} x {y} x {z}).")


def series_geometry(
    instance_uids: Sequence[str], instance_value: Callable[[str, str], str], files: Sequence[str]
) -> SeriesGeometry:
    """The core's geometry of a DICOM series from its per-slice attributes.

    Parameters
    ----------
    instance_uids : sequence of str
        SOPInstanceUIDs of the slices (a Slicer node's ``DICOM.instanceUIDs``).
    instance_value : callable
        ``instance_value(uid, "gggg,eeee")``: the attribute's text (``ctkDICOMDatabase.instanceValue``,
        answered from its tag cache).
    files : sequence of str
        The slices' files: SliceThickness, PixelSpacing and the attributes that state the scan mode
        (:mod:`sr4zct.volume.scan_mode`), which the database does not cache, are read from their headers with
        pydicom (one read per file).
    """
    import pydicom
    import pydicom.errors

    from sr4zct.volume.geometry import geometry_from_slices

    positions, orientations = [], []
    for uid in instance_uids:
        position = split_dicom_value(instance_value(uid, TAG_POSITION))
        if len(position) != 3:
            raise GeometryError(
                f"Slice {uid} has no valid ImagePositionPatient; the slice positions cannot be measured."
            )
        positions.append(position)
        orientations.append(split_dicom_value(instance_value(uid, TAG_ORIENTATION)))
    spacings, thicknesses, modality, modes = [], [], None, []
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
                "PixelSpacing", "SliceThickness", "Modality", *SCAN_MODE_KEYWORDS])  # fmt: skip
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise GeometryError(f"Cannot read the DICOM header of {path}: {exc}.") from None
        spacings.append([float(v) for v in header.get("PixelSpacing") or []])
        thicknesses.append(header.get("SliceThickness"))
        modality = modality or header.get("Modality")
        modes.append(scan_mode_of_header(header.get))
    first = instance_uids[0]
    rows = int(split_dicom_value(instance_value(first, TAG_ROWS))[0])
    columns = int(split_dicom_value(instance_value(first, TAG_COLUMNS))[0])
    geometry, _order = geometry_from_slices(
        positions, orientations, spacings, rows, columns, thicknesses,
        description=instance_value(first, TAG_SERIES_DESCRIPTION) or "",
        series_uid=instance_value(first, TAG_SERIES_UID) or None, modality=modality or None,
    )  # fmt: skip
    return dataclasses.replace(geometry, **series_scan_mode(modes))


def thickness_from_file(path: str | None) -> float | None:
    """The slice thickness SR4ZCT recorded in an image file's header (its outputs, the sample phantom), or
    None (no such file, no such key, a file that cannot be read)."""
    if not path or not os.path.isfile(path) or not path.lower().endswith(HEADER_SUFFIXES):
        return None
    from sr4zct.io import read_geometry

    with contextlib.suppress(SR4ZCTError, OSError, RuntimeError):
        thickness = read_geometry(path).slice_thickness_mm
        return float(thickness) if thickness else None
    return None


def geometry_of_node(
    *,
    dimensions: Sequence[int],
    spacing_mm: Sequence[float],
    directions_ras: Sequence[Sequence[float]],
    thickness_mm: float | None,
    source: str,
    series: SeriesGeometry | None = None,
    transform_name: str | None = None,
    dicom_missing: bool = False,
) -> NodeGeometry:
    """The geometry of a volume node and the warnings about it.

    Parameters
    ----------
    dimensions, spacing_mm : 3 numbers each
        The node's image dimensions and spacing, in IJK order.
    directions_ras : 3 x 3
        ``directions_ras[a]``: the unit vector of IJK axis ``a`` in RAS.
    thickness_mm, source : float or None, str
        The slice thickness and where it comes from.
    series : SeriesGeometry, optional
        The DICOM series (:func:`series_geometry`): its stacking direction picks the slice axis, its slice
        positions give the spacing.
    transform_name : str, optional
        The node's parent transform (the result gets it too).
    dicom_missing : bool
        The node names DICOM instances the database does not have (a scene from another machine).
    """
    warnings = []
    if dicom_missing:
        warnings.append("The volume's DICOM instances are not in this Slicer's DICOM database: its geometry is "
                        "read from the volume itself; check the slice thickness.")  # fmt: skip
    stacking = None if series is None else [LPS_TO_RAS[i] * series.axes_lps[0][i] for i in range(3)]
    from sr4zct.volume.geometry import through_plane_axis

    axis = through_plane_axis(spacing_mm, directions_ras, stacking)[0]
    in_plane = tuple(float(spacing_mm[a]) for a in (1, 0, 2) if a != axis)  # (row = J-ish, column = I-ish)
    spacing = float(spacing_mm[axis])
    if series is not None:
        in_plane, spacing = tuple(float(s) for s in series.pixel_spacing_mm), float(series.slice_spacing_mm)
        warnings += series.warnings
        if series.n_slices != dimensions[axis]:
            warnings.append(
                f"The DICOM series has {series.n_slices} slices but the volume has {dimensions[axis]} along "
                f"{'IJK'[axis]}; check that the volume was loaded from a single series."
            )
    warnings += _spacing_and_transform_warnings(spacing, in_plane, transform_name)
    return NodeGeometry(source, axis, in_plane, float(spacing_mm[axis]), spacing, thickness_mm, dimensions[axis],
                        warnings, series)  # fmt: skip


def _spacing_and_transform_warnings(
    spacing_mm: float, in_plane: Sequence[float], transform: str | None
) -> list:
    warnings = []
    if spacing_mm < min(in_plane) - 1e-6:
        warnings.append(f"The slice spacing ({spacing_mm:g} mm) is finer than the in-plane pixel size; SR4ZCT "
                        "expects thicker slices than pixels.")  # fmt: skip
    if transform is not None and "acquisition transform" in transform.lower():
        warnings.append(f"Slicer regularised an irregular acquisition with the transform '{transform}'; the "
                        "result gets the same transform, but check the slice spacing.")  # fmt: skip
    elif transform is not None:
        warnings.append(f"The volume is under the transform '{transform}'; the result gets the same one.")
    return warnings


def ijk_to_ras(geometry: SeriesGeometry) -> list[list[float]]:
    """The 4 x 4 IJK-to-RAS matrix of a volume node holding an array ``(slice, row, column)`` of this
    geometry: IJK = array axes (2, 1, 0), their LPS directions turned RAS-wards."""
    matrix = [[0.0, 0.0, 0.0, LPS_TO_RAS[row] * geometry.origin_lps[row]] for row in range(3)]
    for ijk, axis in enumerate((2, 1, 0)):
        for row in range(3):
            matrix[row][ijk] = LPS_TO_RAS[row] * geometry.axes_lps[axis][row] * geometry.spacing_mm[axis]
    return [*matrix, [0.0, 0.0, 0.0, 1.0]]


def kji_geometry(
    shape: Sequence[int], spacing_mm: Sequence[float], directions_ras: Sequence[Sequence[float]],
    origin_ras: Sequence[float], *, thickness_mm: float | None = None, name: str = "",
) -> SeriesGeometry:  # fmt: skip
    """The geometry of a node's voxel array (``(K, J, I)``, K taken as the slice axis) from the node's spacing,
    IJK directions and origin (RAS)."""
    axes_lps = [[LPS_TO_RAS[row] * directions_ras[ijk][row] for row in range(3)] for ijk in (2, 1, 0)]
    return make_geometry(tuple(shape), slice_spacing_mm=spacing_mm[2], pixel_spacing_mm=(spacing_mm[1], spacing_mm[0]),
                         slice_thickness_mm=thickness_mm, origin_lps=[LPS_TO_RAS[r] * origin_ras[r] for r in range(3)],
                         axes_lps=axes_lps, description=name)  # fmt: skip


def row_at(
    point_ras: Sequence[float], ras_to_ijk: Sequence[Sequence[float]], axis: int, dimensions: Sequence[int]
) -> int:
    """The row (coronal image, as the core's live preview counts them) of a node through ``point_ras``.

    ``ras_to_ijk`` is the node's 4 x 4 RAS-to-IJK matrix, ``axis`` its IJK slice axis, ``dimensions`` its I, J,
    K sizes. The file written for the run holds the array ``(K, J, I)``; the core puts the slice axis first
    and keeps the other two in file order, so the rows run along the first other NumPy axis: J for slices
    along K, K for slices along I or J. The row is clipped to the volume.
    """
    point = [*point_ras[:3], 1.0]
    ijk = [sum(ras_to_ijk[r][c] * point[c] for c in range(4)) for r in range(3)]
    row_axis = 2 - next(n for n in range(3) if n != 2 - axis)  # NumPy axis n is IJK axis 2 - n
    return int(min(max(round(ijk[row_axis]), 0), dimensions[row_axis] - 1))
