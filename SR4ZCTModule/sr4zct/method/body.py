"""Where the patient is: the body box that training samples from, inference enhances and scoring measures.

Air outside the body is about -1000 HU and the table and soft tissue lie far above -500 HU, so a fixed
threshold separates them without any fitting.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BODY_THRESHOLD_HU", "body_box"]

BODY_THRESHOLD_HU = -500.0


def body_box(array_hu: np.ndarray, threshold_hu: float = BODY_THRESHOLD_HU) -> tuple[slice, slice]:
    """Rows and columns (as slices) of the box holding every voxel above ``threshold_hu`` in any slice.

    The whole image is returned when nothing exceeds the threshold (e.g. data not in HU).
    """
    footprint = np.zeros(array_hu.shape[1:], dtype=bool)
    for k in range(array_hu.shape[0]):  # slice by slice: no full-size temporary mask
        footprint |= array_hu[k] > threshold_hu
    rows = np.flatnonzero(footprint.any(axis=1))
    cols = np.flatnonzero(footprint.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return slice(0, array_hu.shape[1]), slice(0, array_hu.shape[2])
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
