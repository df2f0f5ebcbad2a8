"""Fusion of the coronal and sagittal estimates."""

from __future__ import annotations

import numpy as np
from sr4zct.method.fusion import fuse_estimates


def test_fusion_is_the_mean_within_the_input_range():
    rng = np.random.default_rng(0)
    coronal = rng.uniform(-1100, 1500, (4, 5, 6)).astype(np.float32)
    sagittal = rng.uniform(-1100, 1500, (4, 5, 6)).astype(np.float32)
    expected_difference = np.abs(coronal - sagittal)
    expected = np.clip((coronal + sagittal) / 2, -1024, 1200)
    fused, difference = fuse_estimates(coronal.copy(), sagittal, value_range=(-1024, 1200), disagreement=True)
    np.testing.assert_allclose(fused, expected, rtol=1e-6)
    np.testing.assert_allclose(difference, expected_difference)
    assert fused.min() >= -1024 and fused.max() <= 1200
    _, none = fuse_estimates(coronal.copy(), sagittal, value_range=(-1024, 1200))
    assert none is None
