"""Noise of the thick slices, measured from the volume, and the same noise for the training inputs.

A real coronal or sagittal image is made of noisy thick slices; a training input is an axial image
degraded along one in-plane axis, which averages the axial image's noise away. Trained on such clean
inputs, a network learns to sharpen whatever it sees, noise included. :class:`TrainingNoise` adds noise of
the measured level and neighbour correlation to the simulated thick slices of each training input (targets
unchanged), so that training and the held-out validation see what inference sees.

* :func:`estimate_noise`: the noise of one slice from the pixel-to-pixel residual (pixel minus the mean of
  its 8 neighbours) in flat soft tissue (no bone or air near, no edge), MAD-robust; the correlation of neighbouring slices' noise from the
  residuals of the same pixels in slices ``k`` and ``k + 1`` (overlapping slices share noise).
* :class:`TrainingNoise`: the thick-slice noise ``F_up(n)`` with ``n`` Gaussian, correlated ``rho^|k - l|``
  between slices ``k`` and ``l``, of the level the degraded axial noise lacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from sr4zct.method import acquisition

__all__ = ["FLAT_RANGE_HU", "MIN_PIXELS", "NoiseEstimate", "TrainingNoise", "estimate_noise"]

#: soft tissue (fat to muscle and blood) whose neighbourhood holds no bone or air: where noise is measured
FLAT_RANGE_HU = (-250.0, 250.0)
#: fewer flat pixels than this: no estimate (sigma 0)
MIN_PIXELS = 2000
_SLICE_PAIRS = 24
_MAD_TO_SIGMA = 1.4826
_RESIDUAL_GAIN = math.sqrt(1.0 + 1.0 / 8.0)  # std of (pixel - mean of 8 neighbours) for white noise of std 1
_MAX_CORRELATION = 0.95


@dataclass(frozen=True)
class NoiseEstimate:
    """The noise of a thick-slice volume.

    Attributes
    ----------
    sigma_hu : float
        Standard deviation of one slice's pixel noise (the part independent from pixel to pixel), HU.
    correlation : float
        Correlation of that noise between neighbouring slices (0 to 0.95).
    pixels : int
        Flat soft-tissue pixels measured (0: none, then ``sigma_hu`` is 0).
    """

    sigma_hu: float
    correlation: float
    pixels: int

    def describe(self) -> str:
        if self.pixels == 0:
            return "not measured (too little flat soft tissue)"
        return f"{self.sigma_hu:.1f} HU, correlation of neighbouring slices {self.correlation:.2f}"

    def to_parameters(self) -> dict[str, str]:
        return {"noise_sigma_hu": f"{self.sigma_hu:.2f}", "noise_correlation": f"{self.correlation:.2f}"}


def _residual(image: np.ndarray) -> np.ndarray:
    """``pixel - mean of its 8 neighbours`` on the interior ``(rows - 2, columns - 2)``."""
    x = image.astype(np.float64)
    total = np.zeros((x.shape[0] - 2, x.shape[1] - 2))
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            total += x[dy : dy + total.shape[0], dx : dx + total.shape[1]]
    centre = x[1:-1, 1:-1]
    return centre - (total - centre) / 8.0


def _box_filter(x: np.ndarray, size: int, reduce) -> np.ndarray:
    """``reduce`` (np.maximum, np.minimum or np.add) over ``size x size`` windows: the interior, shrunk by
    ``size - 1`` along each axis."""
    out = x[: x.shape[0] - size + 1, : x.shape[1] - size + 1].copy()
    for dy in range(size):
        for dx in range(size):
            if dy or dx:
                out = reduce(out, x[dy : dy + out.shape[0], dx : dx + out.shape[1]])
    return out


def _flat(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interior pixels whose 5 x 5 neighbourhood lies within :data:`FLAT_RANGE_HU` (no bone or air), and the
    range of the 3 x 3 mean over that neighbourhood (large at edges: the mean keeps edges, not noise)."""
    x = image.astype(np.float64)
    inside = ((x > FLAT_RANGE_HU[0]) & (x < FLAT_RANGE_HU[1])).astype(np.uint8)
    ok = _box_filter(inside, 5, np.minimum).astype(bool)
    mean3 = _box_filter(x, 3, np.add) / 9.0
    spread = _box_filter(mean3, 3, np.maximum) - _box_filter(mean3, 3, np.minimum)
    mask = np.zeros((x.shape[0] - 2, x.shape[1] - 2), dtype=bool)
    span = np.zeros_like(mask, dtype=np.float64)
    mask[1:-1, 1:-1] = ok
    span[1:-1, 1:-1] = spread
    return mask, span


def _flat_sigma(residuals: list[np.ndarray], masks: list[np.ndarray], spans: list[np.ndarray]):
    """Noise sigma from the residuals at flat pixels, and the final flatness masks: pixels at edges (the
    3 x 3 mean varies by more than 3 sigma around them) are left out, sigma re-measured twice."""
    sigma = math.inf
    for _ in range(3):
        flat = [m & (s < 3.0 * sigma + 1.0) for m, s in zip(masks, spans, strict=True)]
        values = np.concatenate([r[f] for r, f in zip(residuals, flat, strict=True)])
        if values.size < MIN_PIXELS:
            return 0.0, None
        sigma = _MAD_TO_SIGMA * _mad(values) / _RESIDUAL_GAIN
    return sigma, [m & (s < 3.0 * sigma + 1.0) for m, s in zip(masks, spans, strict=True)]


def _mad(values: np.ndarray) -> float:
    return float(np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def estimate_noise(array_hu: np.ndarray, *, pairs: int = _SLICE_PAIRS) -> NoiseEstimate:
    """Measure the slice noise of a thick-slice volume (``(slice, row, column)`` HU).

    Parameters
    ----------
    array_hu : the volume.
    pairs : neighbouring slice pairs measured (evenly spread along z).

    Returns
    -------
    NoiseEstimate
        ``sigma_hu`` from the MAD of the residual over flat pixels of both slices of every pair;
        ``correlation`` = ``(s+^2 - s-^2) / (s+^2 + s-^2)`` with ``s+`` and ``s-`` the MADs of the sum and
        difference of the two slices' residuals at the pixels flat in both.
    """
    a = np.asarray(array_hu)
    if a.ndim != 3 or a.shape[0] < 2 or min(a.shape[1:]) < 8:
        return NoiseEstimate(0.0, 0.0, 0)
    firsts = np.unique(np.linspace(0, a.shape[0] - 2, min(pairs, a.shape[0] - 1)).round().astype(int))
    residuals, masks, spans = [], [], []
    for k in firsts:
        for image in (a[k], a[k + 1]):
            mask, span = _flat(image)
            residuals.append(_residual(image))
            masks.append(mask)
            spans.append(span)
    sigma, flat = _flat_sigma(residuals, masks, spans)
    if flat is None:
        return NoiseEstimate(0.0, 0.0, 0)
    both = [flat[i] & flat[i + 1] for i in range(0, len(flat), 2)]
    sums = np.concatenate([residuals[2 * i][b] + residuals[2 * i + 1][b] for i, b in enumerate(both)])
    diffs = np.concatenate([residuals[2 * i][b] - residuals[2 * i + 1][b] for i, b in enumerate(both)])
    s_plus, s_minus = _mad(sums), _mad(diffs)
    total = s_plus**2 + s_minus**2
    rho = (s_plus**2 - s_minus**2) / total if total > 0 else 0.0
    pixels = int(sum(int(f.sum()) for f in flat))
    return NoiseEstimate(float(sigma), float(np.clip(rho, 0.0, _MAX_CORRELATION)), pixels)


def correlated_noise_factor(size: int, correlation: float) -> np.ndarray:
    """Lower-triangular ``L`` with ``L L^T = [rho^|k - l|]`` (``size x size``): ``L @ e`` turns white noise
    ``e`` into noise correlated ``rho`` between neighbours."""
    k = np.arange(size)
    cov = float(correlation) ** np.abs(k[:, None] - k[None, :])
    return np.linalg.cholesky(cov + 1e-9 * np.eye(size))


class TrainingNoise:
    """Thick-slice noise added to degraded training patches (inputs only), on the patches' device.

    For each degraded direction and sub-spacing phase (as :class:`~sr4zct.method.training.PatchSampler`
    draws them) it keeps ``sigma_add * F_up`` (``(n_pixels, K)``): slice noise ``n`` becomes pixel noise
    ``F_up n`` as linear interpolation along z turns real slice noise into the network's input. The axial
    image's own noise survives ``F_down`` with variance ``sigma^2 * sum(w^2)`` per slice, so only
    ``sigma_add^2 = sigma^2 (1 - mean sum(w^2))`` is added.

    Parameters
    ----------
    sigma : noise standard deviation of one slice, in the patches' (normalised) units.
    correlation : correlation of neighbouring slices' noise.
    sizes : (rows, columns) of the axial images.
    pixel_spacing_mm, thickness_mm, spacing_mm, profile : the simulated acquisition.
    phases_mm : the sub-spacing phases, in the sampler's order.
    patch_px : patch side.
    device : where the patches are.
    """

    def __init__(
        self,
        sigma: float,
        correlation: float,
        *,
        sizes: tuple[int, int],
        pixel_spacing_mm: tuple[float, float],
        thickness_mm: float,
        spacing_mm: float,
        profile: str,
        phases_mm: list[float],
        patch_px: int,
        device: torch.device | str = "cpu",
    ):
        self.sigma = float(sigma)
        self.maps = [
            self._maps(n, px, thickness_mm, spacing_mm, profile, phases_mm, device)
            for n, px in zip(sizes, pixel_spacing_mm, strict=True)
        ]
        self.window = [
            min(m.shape[-1], math.ceil(patch_px * px / spacing_mm) + 4)
            for m, px in zip(self.maps, pixel_spacing_mm, strict=True)
        ]
        self.factor = [
            torch.tensor(correlated_noise_factor(w, correlation), dtype=torch.float32, device=device)
            for w in self.window
        ]
        # first slice centre of each phase
        self.first_mm = torch.tensor(phases_mm, dtype=torch.float64, device=device) + 0.5 * float(
            thickness_mm
        )
        self.pixel_mm = tuple(float(p) for p in pixel_spacing_mm)
        self.spacing_mm = float(spacing_mm)

    def _maps(self, n, pixel_mm, thickness_mm, spacing_mm, profile, phases_mm, device) -> torch.Tensor:
        """``(phases, n, K_max)``: ``sigma_add * F_up`` per phase, zero-padded to the most slices."""
        mats = []
        for phase in phases_mm:
            w, centres = acquisition.degrade_matrix(n, pixel_mm, thickness_mm, spacing_mm, phase, profile)
            up = acquisition.interpolation_matrix(centres, (np.arange(n) + 0.5) * pixel_mm)
            kept = max(0.0, 1.0 - float(np.mean(np.sum(w * w, axis=1))))
            mats.append(self.sigma * math.sqrt(kept) * up)
        k_max = max(m.shape[1] for m in mats)
        out = np.zeros((len(mats), n, k_max), dtype=np.float32)
        for i, m in enumerate(mats):
            out[i, :, : m.shape[1]] = m
        return torch.from_numpy(out).to(device)

    def _direction(self, d: int, phase, start, patch: int, generator: torch.Generator) -> torch.Tensor:
        """Noise ``(b, patch, patch)`` for patches whose degraded axis starts at pixel ``start``."""
        maps, window = self.maps[d], self.window[d]
        dev = maps.device
        # index of the slice just above the patch's first pixel, minus one
        first = ((start.to(torch.float64) + 0.5) * self.pixel_mm[d] - self.first_mm[phase]) / self.spacing_mm
        k0 = torch.clamp(torch.floor(first).to(torch.long) - 1, 0, maps.shape[-1] - window)
        # (b, P, window) with plain slices (advanced indexing is several times slower on the CPU)
        local = torch.stack(
            [
                maps[f, s : s + patch, k : k + window]
                for f, s, k in zip(phase.tolist(), start.tolist(), k0.tolist(), strict=True)
            ]
        )
        white = torch.randn((start.numel(), window, patch), generator=generator, device="cpu").to(dev)
        return torch.bmm(local, self.factor[d] @ white)

    def add(self, inputs: torch.Tensor, phase, rows, cols, rng: np.random.Generator) -> torch.Tensor:
        """``inputs`` (``(count, P, P)``: even samples vertical pairs starting at ``rows``, odd ones horizontal
        pairs starting at ``cols``, transposed) plus thick-slice noise. Draws come from ``rng``."""
        if self.sigma <= 0:
            return inputs
        generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        patch = inputs.shape[-1]
        out = inputs.clone()
        v, h = slice(0, inputs.shape[0], 2), slice(1, inputs.shape[0], 2)
        out[v] += self._direction(0, phase[v], rows[v], patch, generator).to(inputs.dtype)
        out[h] += self._direction(1, phase[h], cols[h], patch, generator).to(inputs.dtype)
        return out
