"""What the Slicer panel shows of the slice model and the precision: the slice profile estimated from the
selected volume (on request, in a thread, so the panel stays responsive) and, after a run, the profile, noise
and precision its ``finished`` event records.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sr4zct.errors import SR4ZCTError

__all__ = ["estimate_lines", "estimate_text", "result_lines", "start_estimate"]


def estimate_lines(estimate: Any) -> list[str]:
    """A :class:`~sr4zct.method.profile.ProfileEstimate` as the panel's lines: family, FWHM and its range, and
    a warning when it disagrees with the slice thickness (or the family is unclear)."""
    lines = [f"Estimated from the scan: {estimate.describe()}"]
    if estimate.disagrees_with_nominal:
        lines.append(
            f"\u26a0 Far from the slice thickness of {estimate.nominal_mm:g} mm: check the thickness (the run uses "
            "the thickness given)."
        )
    return lines


def estimate_text(
    array_hu: np.ndarray,
    pixel_spacing_mm: tuple[float, float],
    spacing_mm: float,
    thickness_mm: float | None,
    scan_mode: str | None = None,
) -> str:
    """:func:`estimate_lines` of a ``(slice, row, column)`` array (as
    :func:`~sr4zct.method.profile.estimate_profile` takes it), or why it could not be estimated; a known
    ``scan_mode`` fixes the family. Imports torch; takes about 2 s for a 512 x 512 x 343 series."""
    from sr4zct.method.profile import estimate_profile

    try:
        estimate = estimate_profile(
            array_hu,
            pixel_spacing_mm=pixel_spacing_mm,
            spacing_mm=spacing_mm,
            nominal_mm=thickness_mm,
            scan_mode=scan_mode,
        )
    except SR4ZCTError as exc:
        return f"Slice profile not estimated: {exc.message}"
    return "\n".join(estimate_lines(estimate))


def start_estimate(
    array_kji: np.ndarray, voxel_mm_ijk: Sequence[float], geometry: Any, thickness_mm: float | None = None
) -> concurrent.futures.Future:
    """:func:`estimate_text` of a volume node's voxels in a thread of its own; the returned future gets the
    text (or the exception).

    Parameters
    ----------
    array_kji : the node's voxel array, ``(K, J, I)`` (``slicer.util.arrayFromVolume``); copied here, before
        the thread starts, so that the node may change meanwhile.
    voxel_mm_ijk : the node's spacing along I, J, K.
    geometry : its :class:`~sr4zct.app.node_geometry.NodeGeometry` (the slice axis and spacing, and the scan
        mode of its DICOM series, if any).
    thickness_mm : the slice thickness to compare with; default the geometry's.
    """
    axis = 2 - geometry.axis  # the NumPy axis of the slices
    array = np.array(np.moveaxis(np.asarray(array_kji), axis, 0), dtype=np.float32)
    pixel = tuple(float(voxel_mm_ijk[2 - n]) for n in range(3) if n != axis)
    nominal = thickness_mm or geometry.thickness_mm
    scan_mode = geometry.series.scan_mode if geometry.series is not None else None
    future: concurrent.futures.Future = concurrent.futures.Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(estimate_text(array, pixel, geometry.spacing_mm, nominal, scan_mode))
        except BaseException as exc:  # handed to the panel, which shows it
            future.set_exception(exc)

    threading.Thread(target=work, name="sr4zct-profile-estimate", daemon=True).start()
    return future


def result_lines(finished: Mapping[str, Any]) -> list[str]:
    """What a finished run used (its ``parameters``): the slice profile (and the estimate it came from), the
    slice noise the training added, the precision and why; then the run's warnings (among them the estimate's
    disagreement with the slice thickness)."""
    p = finished.get("parameters") or {}
    lines = []
    if p.get("profile"):
        if p.get("profile_option") != "auto":
            how = "given"
        elif p.get("profile_estimate"):
            how = f"estimated from the scan: {p['profile_estimate']}"
        else:  # too little body, or a saved model that brings its own profile
            how = "auto, not estimated from the scan"
        lines.append(f"Slice profile: {p['profile']} ({how})")
    if p.get("noise_sigma_hu"):
        training = "added to the training inputs" if p.get("training_noise") == "on" else "not added"
        lines.append(f"Slice noise: {p['noise_sigma_hu']} HU, {training}")
    if p.get("precision"):
        reason = f" ({p['precision_reason']})" if p.get("precision_reason") else ""
        lines.append(f"Precision: {p['precision']}{reason}")
    return lines + [f"\u26a0 {warning}" for warning in finished.get("warnings") or ()]
