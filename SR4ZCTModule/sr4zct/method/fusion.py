"""Fusion of the coronal and sagittal estimates (docs/method.md, section 3).

The network enhances every coronal and every sagittal image of the z-upsampled volume: two estimates of the
same voxels. Their mean is the result; where they disagree is a measure of how much to trust it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fuse_estimates"]


def fuse_estimates(
    coronal: np.ndarray,
    sagittal: np.ndarray,
    *,
    value_range: tuple[float, float],
    disagreement: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean of the two estimates, kept inside the input's intensity range.

    Parameters
    ----------
    coronal, sagittal : np.ndarray
        The two estimates, same shape, float32 HU. ``coronal`` is overwritten with the result.
    value_range : tuple of float
        ``(min, max)`` HU of the input volume: like ``F_up`` in the acquisition model, the result never
        leaves it (no undershoot below air at edges).
    disagreement : bool
        Also return ``|coronal - sagittal|`` in HU.

    Returns
    -------
    fused : np.ndarray
        The fused volume (``coronal``'s buffer).
    difference : np.ndarray or None
        ``|coronal - sagittal|`` when ``disagreement``, else None.
    """
    difference = np.abs(coronal - sagittal) if disagreement else None
    coronal += sagittal
    coronal *= 0.5
    np.clip(coronal, float(value_range[0]), float(value_range[1]), out=coronal)
    return coronal, difference
