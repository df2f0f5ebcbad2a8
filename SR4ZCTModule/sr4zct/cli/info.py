"""``sr4zct info INPUT``: show the acquisition geometry SR4ZCT will use, and the slice profile and noise
estimated from the images (``--no-estimate``: headers only, no pixel data is read for DICOM)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

from sr4zct.run.options import EnhanceOptions
from sr4zct.volume import SeriesGeometry
from sr4zct.volume.scan_mode import SCAN_MODES

#: |overlap| up to this many millimetres counts as contiguous.
CONTIGUOUS_TOLERANCE_MM = 0.01

_SOURCES = {
    "dicom": "from DICOM SliceThickness",
    "user": "given with --thickness",
    "header": "from the file header",
    "missing": "missing",
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "info",
        help="show slice thickness, spacing, overlap and geometry of a CT series",
        description=(
            "Show the geometry of a CT series: slice thickness T, slice spacing d, overlap T - d, number "
            "of slices, in-plane pixel size, origin, direction and anything unusual (irregular spacing, "
            "gantry tilt, missing thickness). INPUT is a DICOM folder (or one of its files) or a "
            ".nrrd/.nii/.nii.gz/.mha file."
        ),
    )
    parser.add_argument("input", metavar="INPUT", help="DICOM folder, DICOM file, or NRRD/NIfTI/MHA volume")
    EnhanceOptions.add_arguments(
        parser, only=("thickness_mm", "series_uid", "slice_axis", "allow_detached_data")
    )
    parser.add_argument("--json", action="store_true", help="print the geometry record as JSON")
    parser.add_argument(
        "--no-estimate",
        action="store_true",
        help="headers only: do not read the images to estimate the slice profile and the noise",
    )
    parser.set_defaults(func=run)
    return parser


def overlap_meaning(overlap_mm: float | None) -> str:
    """``"overlapping"``, ``"contiguous"``, ``"gap"`` (or ``"unknown"`` without a thickness)."""
    if overlap_mm is None:
        return "unknown"
    if overlap_mm > CONTIGUOUS_TOLERANCE_MM:
        return "overlapping"
    if overlap_mm < -CONTIGUOUS_TOLERANCE_MM:
        return "gap"
    return "contiguous"


def _mm(value: float) -> str:
    return f"{value + 0.0:.8g} mm"


def _vec(v) -> str:
    # "+ 0.0" turns -0.0 into 0.0 for display.
    return "(" + ", ".join(f"{c + 0.0:.10g}" for c in v) + ")"


def format_geometry(geometry: SeriesGeometry) -> str:
    """Human-readable multi-line description of ``geometry``."""
    from sr4zct.cli.messages import printable

    g = geometry
    lines = _identity_lines(g) + _slab_lines(g) + _orientation_lines(g) + _regularity_lines(g)
    if g.warnings:
        lines.append("Warnings:")
        lines.extend(f"  - {w}" for w in g.warnings)
    return "\n".join(printable(line) for line in lines)  # text from the files: no escape sequences


def _identity_lines(g: SeriesGeometry) -> list[str]:
    """Series name, modality and UID, the image count and size."""
    name = g.description or "(unnamed)"
    lines = [f"Series:            {name}" + (f"  [{g.modality}]" if g.modality else "")]
    if g.series_uid:
        lines.append(f"Series UID:        {g.series_uid}")
    lines.append(f"Slices:            {g.n_slices} of {g.shape[1]} x {g.shape[2]} pixels (rows x columns)")
    return lines


def _slab_lines(g: SeriesGeometry) -> list[str]:
    """The in-plane spacing, slice thickness T, slice spacing d and their overlap T - d."""
    lines = [
        f"In-plane spacing:  {g.pixel_spacing_mm[0]:.8g} x {g.pixel_spacing_mm[1]:.8g} mm (row x column)"
    ]
    if g.slice_thickness_mm is None:
        lines.append("Slice thickness:   MISSING - give the nominal thickness with --thickness MM")
    else:
        lines.append(
            f"Slice thickness:   {_mm(g.slice_thickness_mm)} ({_SOURCES.get(g.thickness_source, g.thickness_source)})"
        )
    if g.scan_mode is not None:
        family = SCAN_MODES[g.scan_mode]
        lines.append(f"Scan mode:         {g.scan_mode} (DICOM {g.scan_mode_source}): {family} slice profile")
    elif "dicom" in g.extra:
        lines.append(
            "Scan mode:         not stated in the DICOM header (the profile family comes from the images)"
        )
    origin = "measured from the slice positions" if "dicom" in g.extra else "from the file header"
    lines.append(f"Slice spacing:     {_mm(g.slice_spacing_mm)} ({origin})")
    overlap = g.overlap_mm
    if overlap is None:
        lines.append("Overlap:           unknown (needs the slice thickness)")
    else:
        meaning = overlap_meaning(overlap)
        explain = {
            "overlapping": "neighbouring slices overlap",
            "contiguous": "slices touch without overlap or gap",
            "gap": "there are gaps between slices",
        }[meaning]
        lines.append(f"Overlap T - d:     {_mm(overlap)} ({meaning}: {explain})")
    return lines


def _orientation_lines(g: SeriesGeometry) -> list[str]:
    """The through-plane axis and extent, the origin, the axis directions and the gantry tilt."""
    extent = g.slice_positions_mm[-1] - g.slice_positions_mm[0] if g.slice_positions_mm else 0.0
    lines = [
        f"Through-plane:     {g.to_dict()['through_plane_axis']}, {_mm(extent)} from first to last slice centre"
    ]
    if g.source_slice_axis != 0:
        lines.append(f"                   (array axis {g.source_slice_axis} of the file)")
    lines.append(f"Origin (LPS):      {_vec(g.origin_lps)} mm (first slice, first pixel centre)")
    lines.append(f"Direction (LPS):   slices {_vec(g.axes_lps[0])}")
    lines.append(f"                   rows    {_vec(g.axes_lps[1])}")
    lines.append(f"                   columns {_vec(g.axes_lps[2])}")
    if g.gantry_tilt_deg > 0.01:
        lines.append(f"Gantry tilt:       {g.gantry_tilt_deg:.2f} degrees")
    return lines


def _regularity_lines(g: SeriesGeometry) -> list[str]:
    """Whether the slices are regularly spaced, and the thickness values when they vary."""
    if g.is_regular:
        lines = ["Spacing:           regular"]
    else:
        lines = [
            f"Spacing:           IRREGULAR after slice(s) {', '.join(str(i) for i in g.irregular_positions[:10])}"
        ]
    if len(g.thickness_values_mm) > 1:
        lines.append("Thickness values:  " + ", ".join(_mm(t) for t in g.thickness_values_mm))
    return lines


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    from sr4zct.cli.messages import echo, to_cli_words
    from sr4zct.io import read_geometry

    options = EnhanceOptions.from_args(args)
    geometry = read_geometry(
        args.input, series_uid=options.series_uid, thickness_mm=options.thickness_mm,
        slice_axis=options.slice_axis, allow_detached_data=options.allow_detached_data,
    )  # fmt: skip
    found = None if args.no_estimate else estimate_from_images(args, options)
    if args.json:
        record = geometry.to_dict()
        if found is not None:
            record.update(found)
        print(json.dumps(_json_safe(record), indent=2))
    else:
        text = format_geometry(geometry) + ("" if found is None else "\n" + "\n".join(estimate_lines(found)))
        echo("\n".join(to_cli_words(line) for line in text.splitlines()))
    return 0


def estimate_from_images(args: argparse.Namespace, options: EnhanceOptions) -> dict:
    """``profile_estimate`` and ``noise_estimate`` (dicts) from the series' images, or ``estimate_error``."""
    from sr4zct.errors import SR4ZCTError
    from sr4zct.io import read_volume
    from sr4zct.method.acquisition import PROFILES, neighbour_noise_correlation
    from sr4zct.method.noise import estimate_noise
    from sr4zct.method.profile import estimate_volume_profile

    try:
        volume = read_volume(
            args.input, series_uid=options.series_uid, thickness_mm=options.thickness_mm,
            slice_axis=options.slice_axis, allow_detached_data=options.allow_detached_data,
        )  # fmt: skip
        noise = estimate_noise(volume.array)
        profile = estimate_volume_profile(volume)
    except SR4ZCTError as exc:
        return {"estimate_error": exc.message}
    found = {"profile_estimate": profile.to_dict(), "noise_estimate": dataclasses.asdict(noise)}
    if profile.nominal_mm is not None:
        spacing = volume.geometry.slice_spacing_mm
        found["noise_estimate"]["implied_correlation"] = {
            family: neighbour_noise_correlation(family, profile.nominal_mm, spacing) for family in PROFILES
        }
    return found


def estimate_lines(found: dict) -> list[str]:
    """The estimated slice profile and noise as report lines."""
    if "estimate_error" in found:
        return [f"Slice profile:     not estimated ({found['estimate_error']})"]
    p, n = found["profile_estimate"], found["noise_estimate"]
    lo, hi = p["fwhm_range_mm"]
    if p.get("family_source", "images") != "images":
        family = f"{p['family']} (from the {p['family_source']})"
    else:
        family = p["family"] + ("" if p["family_certain"] else " (family uncertain)")
    lines = [f"Slice profile:     {family}, FWHM {p['fwhm_mm']:.2f} mm (range {lo:.2f}-{hi:.2f} mm), "
             "estimated from the images"]  # fmt: skip
    if p["disagrees_with_nominal"]:
        lines.append(f"                   WARNING: far from the slice thickness of {p['nominal_mm']:g} mm")
    if n["pixels"]:
        lines.append(
            f"Slice noise:       {n['sigma_hu']:.1f} HU (neighbouring slices correlated {n['correlation']:.2f})"
        )
        implied = n.get("implied_correlation")
        if implied:  # quantum noise is white along z before slicing: the correlation is a sign of the profile
            said = ", ".join(f"{family} {value:.2f}" for family, value in implied.items())
            lines.append(f"                   (white noise sliced by each profile would give: {said})")
    return lines
