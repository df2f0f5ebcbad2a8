"""Naive reference implementation of the acquisition model (docs/method.md, section 2).

Written directly from the description, one pixel column at a time, with no matrices: it is the test
oracle for :mod:`sr4zct.method.acquisition` and the baseline of ``benchmarks/bench_acquisition.py``. It favours
being obviously right over being fast.

* The signal along a column is ``np.interp`` of the pixel values at the pixel centres
  ``(i + 0.5) * pixel_mm`` (constant beyond the first and last centre).
* A slice centred at ``c`` is ``integral s(z - c) g(z) dz`` over the profile's support (box: width T;
  Gaussian with FWHM T: truncated at +/- 8 sigma). The support is split at every pixel centre inside it
  and each piece is integrated with Gauss-Legendre quadrature (pieces are further split to at most
  sigma/2 for the Gaussian), which is exact for the box and accurate to ~1e-12 for the Gaussian.
* ``F_up`` is ``np.interp`` between slice centres plus explicit linear extrapolation beyond the ends,
  then clipping to the source image's [min, max].
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "reference_slice_centres_mm",
    "reference_f_down_column",
    "reference_f_up_column",
    "reference_f_down_image",
    "reference_degrade_image",
]

_GAUSS_TRUNCATION_SIGMAS = 8.0
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(8)


def reference_slice_centres_mm(
    n_pixels: int, pixel_mm: float, thickness_mm: float, spacing_mm: float, phase_mm: float = 0.0
) -> np.ndarray:
    """Slice centres ``phase + T/2 + k*d`` for every slice whose upper edge stays inside ``n * r``."""
    extent = n_pixels * pixel_mm
    centres = []
    k = 0
    while True:
        c = phase_mm + thickness_mm / 2.0 + k * spacing_mm
        if c + thickness_mm / 2.0 > extent * (1.0 + 1e-9):
            break
        centres.append(c)
        k += 1
    return np.array(centres, dtype=np.float64)


def _profile(z: np.ndarray, centre: float, thickness_mm: float, profile: str) -> np.ndarray:
    if profile == "box":
        return np.full_like(z, 1.0 / thickness_mm)
    sigma = thickness_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    return np.exp(-0.5 * ((z - centre) / sigma) ** 2) / (sigma * math.sqrt(2.0 * math.pi))


def _integrate_piece(f, a: float, b: float) -> float:
    half = 0.5 * (b - a)
    z = 0.5 * (a + b) + half * _NODES
    return float(half * np.sum(_WEIGHTS * f(z)))


def reference_f_down_column(
    column: np.ndarray,
    *,
    pixel_mm: float,
    thickness_mm: float,
    spacing_mm: float,
    phase_mm: float = 0.0,
    profile: str = "box",
) -> tuple[np.ndarray, np.ndarray]:
    """Thick-slice values of one pixel column and their centres, by quadrature."""
    g = np.asarray(column, dtype=np.float64)
    n = g.size
    pixel_centres = (np.arange(n) + 0.5) * pixel_mm
    centres = reference_slice_centres_mm(n, pixel_mm, thickness_mm, spacing_mm, phase_mm)
    if profile == "box":
        half_support = thickness_mm / 2.0
        max_piece = np.inf
    elif profile == "gaussian":
        sigma = thickness_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        half_support = _GAUSS_TRUNCATION_SIGMAS * sigma
        max_piece = sigma / 2.0
    else:
        raise ValueError(f"unknown profile {profile!r}")

    values = np.empty(centres.size)
    for k, c in enumerate(centres):
        lo, hi = c - half_support, c + half_support
        inside = pixel_centres[(pixel_centres > lo) & (pixel_centres < hi)]
        breaks = np.concatenate([[lo], inside, [hi]])

        def integrand(z, c=c):
            return _profile(z, c, thickness_mm, profile) * np.interp(z, pixel_centres, g)

        total = 0.0
        for a, b in zip(breaks[:-1], breaks[1:], strict=True):
            parts = max(1, math.ceil((b - a) / max_piece)) if np.isfinite(max_piece) else 1
            edges = np.linspace(a, b, parts + 1)
            for a2, b2 in zip(edges[:-1], edges[1:], strict=True):
                total += _integrate_piece(integrand, a2, b2)
        values[k] = total
    return values, centres


def reference_f_up_column(
    values: np.ndarray,
    centres_mm: np.ndarray,
    *,
    n_pixels: int,
    pixel_mm: float,
    clip_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Linear interpolation of slice values back to pixel centres, linear extrapolation, optional clip."""
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(centres_mm, dtype=np.float64)
    z = (np.arange(n_pixels) + 0.5) * pixel_mm
    out = np.interp(z, c, v)
    below = z < c[0]
    above = z > c[-1]
    slope_lo = (v[1] - v[0]) / (c[1] - c[0])
    slope_hi = (v[-1] - v[-2]) / (c[-1] - c[-2])
    out[below] = v[0] + slope_lo * (z[below] - c[0])
    out[above] = v[-1] + slope_hi * (z[above] - c[-1])
    if clip_range is not None:
        out = np.clip(out, clip_range[0], clip_range[1])
    return out


def reference_f_down_image(
    image: np.ndarray,
    *,
    pixel_mm: float,
    thickness_mm: float,
    spacing_mm: float,
    phase_mm: float = 0.0,
    profile: str = "box",
    axis: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``F_down`` of every column of a 2-D image along ``axis`` (0 = vertical); returns (slices, centres)."""
    img = np.asarray(image, dtype=np.float64)
    if axis in (1, -1):
        img = img.T
    cols = []
    centres = None
    for j in range(img.shape[1]):
        values, centres = reference_f_down_column(
            img[:, j],
            pixel_mm=pixel_mm,
            thickness_mm=thickness_mm,
            spacing_mm=spacing_mm,
            phase_mm=phase_mm,
            profile=profile,
        )
        cols.append(values)
    out = np.stack(cols, axis=1)
    return (out.T if axis in (1, -1) else out), centres


def reference_degrade_image(
    image: np.ndarray,
    *,
    pixel_mm: float,
    thickness_mm: float,
    spacing_mm: float,
    phase_mm: float = 0.0,
    profile: str = "box",
    axis: int = 0,
    columns: np.ndarray | None = None,
) -> np.ndarray:
    """``F_up(F_down(image))`` of a 2-D image along ``axis`` (0 = vertical), clipped to the image range.

    ``columns`` optionally restricts the work to some column indices (the others are returned as NaN);
    the benchmark uses this to time a sample.
    """
    img = np.asarray(image, dtype=np.float64)
    if axis in (1, -1):
        img = img.T
    n, m = img.shape
    lo, hi = float(img.min()), float(img.max())
    out = np.full_like(img, np.nan)
    for j in range(m) if columns is None else columns:
        values, centres = reference_f_down_column(
            img[:, j],
            pixel_mm=pixel_mm,
            thickness_mm=thickness_mm,
            spacing_mm=spacing_mm,
            phase_mm=phase_mm,
            profile=profile,
        )
        out[:, j] = reference_f_up_column(values, centres, n_pixels=n, pixel_mm=pixel_mm, clip_range=(lo, hi))
    return out.T if axis in (1, -1) else out
