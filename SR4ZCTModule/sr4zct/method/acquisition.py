"""Exact acquisition model of SR4ZCT (docs/method.md, section 2) as small matrices applied with torch.

Geometry of one sampled axis: ``n`` pixels of pitch ``r`` (``pixel_mm``) have their centres at
``(i + 0.5) * r`` and cover ``[0, n * r]``. The continuous signal is the linear interpolant of the
samples, continued as a constant beyond the first and last pixel centre.

* ``F_down`` places virtual slice centres ``c_k = phase + T/2 + k * d`` (every slice inside the extent)
  and integrates the signal against the slice sensitivity profile ``s`` (``"box"`` of width ``T`` or
  ``"gaussian"`` with FWHM ``T``; both integrate to one). Because the signal is a linear combination of
  hat functions ``h_i``, ``F_down`` is exactly the matrix ``W[k, i] = integral s(z - c_k) h_i(z) dz``,
  computed in closed form (float64) from the profile's CDF ``S`` and first moment ``M``.
* ``F_up`` is linear interpolation from the slice centres back to the pixel centres with linear
  extrapolation at the ends: another small matrix, followed by optional clipping.

Nothing assumes integer ratios between ``T``, ``d`` and ``r``. Matrices are ``K x n`` and cached; they
are applied to arrays of any shape along any axis with one (batched) matmul, on any torch device.
Functions accept NumPy arrays or torch tensors and return the same kind.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sr4zct.errors import ParameterError
from sr4zct.method import PROFILES

__all__ = [
    "PROFILES",
    "gaussian_sigma_mm",
    "neighbour_noise_correlation",
    "slice_centres_mm",
    "degrade_matrix",
    "profile_weights",
    "interpolation_matrix",
    "interpolation_weights",
    "degrade_operator_matrix",
    "f_down",
    "f_up",
    "image_range",
    "degrade",
    "degrade_batch",
    "training_pairs",
    "simulate_thick_slices",
    "resample_slices",
    "output_positions_mm",
]


# Relative tolerance for "the last slice fits inside the extent" and "the grid reaches the last centre",
# so that e.g. 0.1 * 30 == 3.0000000000000004 does not drop a slice.
_FIT_RTOL = 1e-9

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


# --------------------------------------------------------------------------------------------------
# validation helpers


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(v) or v <= 0.0:
        raise ParameterError(f"{name} must be a positive number of millimetres, got {value!r}.")
    return v


def _check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ParameterError(f"Unknown slice profile {profile!r}; choose one of {', '.join(PROFILES)}.")
    return profile


def _check_n(n_pixels: Any) -> int:
    try:
        whole = int(n_pixels) == n_pixels and not isinstance(n_pixels, bool)
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or int(n_pixels) < 2:
        raise ParameterError(
            f"The number of pixels along the degraded axis must be an integer >= 2, got {n_pixels!r}."
        )
    return int(n_pixels)


def _check_phase(phase_mm: Any, spacing_mm: float) -> float:
    try:
        phi = float(phase_mm)
    except (TypeError, ValueError):
        raise ParameterError(f"phase_mm must be a number, got {phase_mm!r}.") from None
    if not math.isfinite(phi) or phi < 0.0 or phi >= spacing_mm:
        raise ParameterError(
            f"phase_mm must lie in [0, spacing_mm) = [0, {spacing_mm:g}) mm, got {phase_mm!r}."
        )
    return phi


def gaussian_sigma_mm(thickness_mm: float) -> float:
    """Standard deviation of the Gaussian slice profile whose FWHM is ``thickness_mm``."""
    return _positive("thickness_mm", thickness_mm) * _FWHM_TO_SIGMA


def neighbour_noise_correlation(profile: str, thickness_mm: float, spacing_mm: float) -> float:
    """The correlation of the noise of neighbouring slices that a profile implies, for noise that is white
    along z before slicing (quantum noise): the profile's normalised autocorrelation at the slice spacing,
    ``max(0, (T - d) / T)`` for a box, ``exp(-d^2 / (4 sigma^2))`` for a Gaussian of FWHM ``T``."""
    thickness_mm = _positive("thickness_mm", thickness_mm)
    spacing_mm = _positive("spacing_mm", spacing_mm)
    if profile == "box":
        return max(0.0, (thickness_mm - spacing_mm) / thickness_mm)
    if profile == "gaussian":
        return math.exp(-(spacing_mm**2) / (4.0 * gaussian_sigma_mm(thickness_mm) ** 2))
    raise ParameterError(f"Unknown profile {profile!r}; use {' or '.join(PROFILES)}.")


# --------------------------------------------------------------------------------------------------
# matrices (float64 NumPy, cached, read-only)


def slice_centres_mm(
    n_pixels: int, pixel_mm: float, thickness_mm: float, spacing_mm: float, phase_mm: float = 0.0
) -> np.ndarray:
    """Centres ``phase + T/2 + k*d`` of the virtual slices that fit inside ``[0, n_pixels * pixel_mm]``.

    Parameters
    ----------
    n_pixels : number of pixels along the axis.
    pixel_mm : pixel pitch ``r`` along the axis.
    thickness_mm : slice thickness ``T`` (box width or Gaussian FWHM).
    spacing_mm : distance ``d`` between slice centres.
    phase_mm : offset of the first slice's lower edge from 0, in ``[0, d)``.

    Returns
    -------
    centres : float64 array of length ``K >= 2``, increasing.

    Raises
    ------
    ParameterError
        On non-positive sizes, a phase outside ``[0, d)``, or when fewer than two slices fit.
    """
    n = _check_n(n_pixels)
    r = _positive("pixel_mm", pixel_mm)
    t = _positive("thickness_mm", thickness_mm)
    d = _positive("spacing_mm", spacing_mm)
    phi = _check_phase(phase_mm, d)
    extent = n * r
    room = extent - t - phi  # the first slice ends at phi + T, each further slice adds d
    count = math.floor(room / d + _FIT_RTOL * max(1.0, extent / d)) + 1 if room >= -_FIT_RTOL * extent else 0
    if count < 2:
        raise ParameterError(
            f"The axis is too short for the acquisition model: {n} pixels of {r:g} mm ({extent:g} mm) hold "
            f"{max(count, 0)} slice(s) of thickness {t:g} mm every {d:g} mm (phase {phi:g} mm); at least 2 are needed."
        )
    return phi + 0.5 * t + d * np.arange(count, dtype=np.float64)


def _erfc(x: np.ndarray) -> np.ndarray:
    # torch's float64 erfc is vectorised and accurate to a few ulp; SciPy is not a runtime dependency.
    return torch.special.erfc(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))).numpy()


def _profile_integrals(
    u: np.ndarray, thickness_mm: float, profile: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``S(u)``, ``1 - S(u)`` and ``M(u) = integral_{-inf}^u t s(t) dt`` of the unit-area profile.

    ``S`` is the CDF. Both tails are returned, each computed without cancellation, so that differences
    far out in either tail keep their relative precision.
    """
    if profile == "box":
        half = 0.5 * thickness_mm
        uc = np.clip(u, -half, half)
        return (
            (uc + half) / thickness_mm,
            (half - uc) / thickness_mm,
            (uc * uc - half * half) / (2.0 * thickness_mm),
        )
    sigma = thickness_mm * _FWHM_TO_SIGMA
    x = u / sigma
    lower = 0.5 * _erfc(-x / math.sqrt(2.0))
    upper = 0.5 * _erfc(x / math.sqrt(2.0))
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return lower, upper, -sigma * pdf


def profile_weights(
    n_pixels: int, pixel_mm: float, centres_mm: Any, thickness_mm: float, profile: str = "box"
) -> np.ndarray:
    """Exact ``F_down`` rows for slices centred anywhere: ``W[k, i] = integral s(z - c_k) h_i(z) dz``.

    Parameters
    ----------
    n_pixels, pixel_mm : the sampled axis (pixel ``i`` centred at ``(i + 0.5) * pixel_mm``).
    centres_mm : slice centres (any finite values; the signal is constant beyond the end pixels).
    thickness_mm : box width or Gaussian FWHM.
    profile : one of :data:`PROFILES`.

    Returns
    -------
    W : float64 array ``(len(centres_mm), n_pixels)``; every row sums to one.
    """
    n = _check_n(n_pixels)
    r = _positive("pixel_mm", pixel_mm)
    t = _positive("thickness_mm", thickness_mm)
    centres = np.asarray(centres_mm, dtype=np.float64).ravel()
    if not np.all(np.isfinite(centres)):
        raise ParameterError("Slice centres must be finite.")
    return _weights(n, r, centres, t, _check_profile(profile))


def _weights(n: int, r: float, centres: np.ndarray, t: float, profile: str) -> np.ndarray:
    pix = (np.arange(n, dtype=np.float64) + 0.5) * r
    u = pix[None, :] - centres[:, None]  # (K, n): pixel centres relative to each slice centre
    lower, upper, mom = _profile_integrals(u, t, profile)
    # Segment j = [p_j, p_{j+1}] (u_j..u_{j+1} relative to the slice centre), where
    # g(z) = (g_j (u_{j+1} - u) + g_{j+1} (u - u_j)) / r. With dS and dM the profile's mass and first
    # moment over the segment, g_j gets (u_{j+1} dS - dM) / r and g_{j+1} gets (dM - u_j dS) / r.
    d_mass = np.where(u[:, 1:] <= 0.0, np.diff(lower, axis=1), -np.diff(upper, axis=1))
    d_mom = np.diff(mom, axis=1)
    w = np.zeros_like(u)
    w[:, :-1] += (u[:, 1:] * d_mass - d_mom) / r
    w[:, 1:] += (d_mom - u[:, :-1] * d_mass) / r
    # constant continuation beyond the first and last pixel centre
    w[:, 0] += lower[:, 0]
    w[:, -1] += upper[:, -1]
    # the exact weights are >= 0; remove rounding residue of the order of 1e-17
    np.maximum(w, 0.0, out=w)
    return w


@functools.lru_cache(maxsize=512)
def _degrade_matrix_cached(
    n: int, r: float, t: float, d: float, phi: float, profile: str
) -> tuple[np.ndarray, np.ndarray]:
    centres = slice_centres_mm(n, r, t, d, phi)
    w = _weights(n, r, centres, t, profile)
    w.flags.writeable = False
    centres.flags.writeable = False
    return w, centres


def degrade_matrix(
    n_pixels: int,
    pixel_mm: float,
    thickness_mm: float,
    spacing_mm: float,
    phase_mm: float = 0.0,
    profile: str = "box",
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``F_down`` matrix of one axis.

    Returns
    -------
    W : float64 array ``(K, n_pixels)``, read-only; ``W @ column`` are the K slice values.
        Every row sums to one (the profile integrates to one).
    centres_mm : float64 array ``(K,)``, the slice centres (see :func:`slice_centres_mm`).
    """
    _check_profile(profile)
    slice_centres_mm(n_pixels, pixel_mm, thickness_mm, spacing_mm, phase_mm)  # validates
    return _degrade_matrix_cached(
        int(n_pixels), float(pixel_mm), float(thickness_mm), float(spacing_mm), float(phase_mm), profile
    )


def interpolation_weights(
    src_mm: Any, dst_mm: Any, *, extrapolate: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The two-tap form of linear interpolation: ``value(dst[k]) = (1 - f[k]) v[j[k]] + f[k] v[j[k] + 1]``.

    Parameters and checks as :func:`interpolation_matrix`; returns ``(j, f)`` (int64 and float64 arrays of
    ``len(dst_mm)``), ``f`` outside ``[0, 1]`` where the end segments are extrapolated.
    """
    src = np.asarray(src_mm, dtype=np.float64).ravel()
    dst = np.asarray(dst_mm, dtype=np.float64).ravel()
    if src.size < 2:
        raise ParameterError("Interpolation needs at least 2 source positions.")
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst))):
        raise ParameterError("Interpolation positions must be finite.")
    if np.any(np.diff(src) <= 0):
        raise ParameterError("Interpolation source positions must be strictly increasing.")
    j = np.clip(np.searchsorted(src, dst, side="right") - 1, 0, src.size - 2)
    frac = (dst - src[j]) / (src[j + 1] - src[j])
    if not extrapolate:
        frac = np.clip(frac, 0.0, 1.0)
    return j.astype(np.int64), frac


def interpolation_matrix(src_mm: Any, dst_mm: Any, *, extrapolate: bool = True) -> np.ndarray:
    """Linear interpolation from samples at ``src_mm`` to positions ``dst_mm`` as a matrix.

    Parameters
    ----------
    src_mm : strictly increasing positions (at least 2, spacing may be irregular).
    dst_mm : any positions.
    extrapolate : beyond the first/last source position continue the end segments linearly (default)
        or, when False, repeat the end values.

    Returns
    -------
    M : float64 array ``(len(dst_mm), len(src_mm))`` with ``M @ values`` the interpolated values.
    """
    j, frac = interpolation_weights(src_mm, dst_mm, extrapolate=extrapolate)
    n_src = np.asarray(src_mm).size
    m = np.zeros((frac.size, n_src), dtype=np.float64)
    rows = np.arange(frac.size)
    m[rows, j] = 1.0 - frac
    m[rows, j + 1] += frac
    return m


@functools.lru_cache(maxsize=512)
def _up_matrix_cached(n: int, r: float, centres: tuple[float, ...]) -> np.ndarray:
    m = interpolation_matrix(np.asarray(centres), (np.arange(n, dtype=np.float64) + 0.5) * r)
    m.flags.writeable = False
    return m


@functools.lru_cache(maxsize=512)
def _operator_cached(n: int, r: float, t: float, d: float, phi: float, profile: str) -> np.ndarray:
    w, centres = _degrade_matrix_cached(n, r, t, d, phi, profile)
    op = _up_matrix_cached(n, r, tuple(centres.tolist())) @ w
    op.flags.writeable = False
    return op


def degrade_operator_matrix(
    n_pixels: int,
    pixel_mm: float,
    thickness_mm: float,
    spacing_mm: float,
    phase_mm: float = 0.0,
    profile: str = "box",
) -> np.ndarray:
    """``F_up @ F_down`` of one axis as an ``(n, n)`` float64 matrix (read-only), before clipping."""
    degrade_matrix(n_pixels, pixel_mm, thickness_mm, spacing_mm, phase_mm, profile)  # validates
    return _operator_cached(
        int(n_pixels), float(pixel_mm), float(thickness_mm), float(spacing_mm), float(phase_mm), profile
    )


# --------------------------------------------------------------------------------------------------
# applying matrices to arrays / tensors


def _to_tensor(x: Any) -> tuple[torch.Tensor, bool]:
    """Tensor view of ``x`` (floating point) and whether the caller gave NumPy."""
    if isinstance(x, torch.Tensor):
        return (x if x.is_floating_point() else x.to(torch.float32)), False
    a = np.asarray(x)
    if a.dtype.kind not in "fc" or a.dtype == np.float16:
        a = a.astype(np.float32)
    elif not a.flags.writeable:
        a = a.copy()  # torch cannot wrap read-only memory
    return torch.from_numpy(np.ascontiguousarray(a)), True


def _back(t: torch.Tensor, was_numpy: bool) -> Any:
    return t.numpy() if was_numpy else t


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ParameterError(f"axis {axis} is out of range for an array with {ndim} dimension(s).")
    return axis % ndim


def _apply(matrix: np.ndarray, x: torch.Tensor, axis: int) -> torch.Tensor:
    """Contract ``matrix (m, n)`` with axis ``axis`` (length n) of ``x``; that axis becomes length m."""
    ax = _axis(axis, x.ndim)
    if x.shape[ax] != matrix.shape[1]:
        raise ParameterError(f"Axis {axis} has length {x.shape[ax]}, the operator expects {matrix.shape[1]}.")
    m = torch.tensor(matrix, dtype=x.dtype, device=x.device)  # copy: cached matrices are read-only
    if x.ndim >= 2 and ax == x.ndim - 2:
        return m @ x
    if ax == x.ndim - 1:
        return x @ m.T
    return torch.movedim(torch.tensordot(m, x, dims=([1], [ax])), 0, ax)


def image_range(images: Any) -> tuple[Any, Any]:
    """Per-2-D-image minimum and maximum over the last two axes (kept as size-1 axes, same kind as input)."""
    x, was_numpy = _to_tensor(images)
    if x.ndim < 2:
        lo, hi = x.amin(), x.amax()
    else:
        lo, hi = x.amin(dim=(-2, -1), keepdim=True), x.amax(dim=(-2, -1), keepdim=True)
    return _back(lo, was_numpy), _back(hi, was_numpy)


def _clip(x: torch.Tensor, clip_to: Any, *, fresh: bool = False) -> torch.Tensor:
    """Clip ``x`` to ``clip_to = (low, high)``; in place when ``x`` is a fresh result nobody else holds."""
    lo, hi = clip_to
    lo = torch.as_tensor(lo, dtype=x.dtype, device=x.device)
    hi = torch.as_tensor(hi, dtype=x.dtype, device=x.device)
    if fresh and not (x.requires_grad and torch.is_grad_enabled()):
        return x.clamp_(lo, hi)  # saves a full-size temporary on whole-volume calls
    return torch.clamp(x, lo, hi)


def f_down(
    images: Any,
    *,
    pixel_mm: float,
    thickness_mm: float,
    spacing_mm: float,
    phase_mm: float = 0.0,
    profile: str = "box",
    axis: int = -2,
) -> Any:
    """Integrate along ``axis`` with the slice profile: ``n`` pixels become ``K`` thick slices.

    Parameters
    ----------
    images : NumPy array or torch tensor, any shape; ``axis`` is the one degraded.
    pixel_mm, thickness_mm, spacing_mm, phase_mm, profile : see :func:`degrade_matrix`.
    axis : the sampled axis (default -2: the vertical axis of ``(..., rows, columns)`` images).

    Returns
    -------
    Same kind as ``images``; ``axis`` has length ``K``. The slice centres are
    ``slice_centres_mm(n, pixel_mm, thickness_mm, spacing_mm, phase_mm)``.
    """
    x, was_numpy = _to_tensor(images)
    n = x.shape[_axis(axis, x.ndim)]
    w, _ = degrade_matrix(n, pixel_mm, thickness_mm, spacing_mm, phase_mm, profile)
    return _back(_apply(w, x, axis), was_numpy)


def f_up(
    slices: Any,
    *,
    n_pixels: int,
    pixel_mm: float,
    centres_mm: Any,
    axis: int = -2,
    clip_to: tuple[Any, Any] | None = None,
) -> Any:
    """Linear interpolation along ``axis`` from slice centres back to ``n_pixels`` pixel centres.

    Parameters
    ----------
    slices : NumPy array or torch tensor; ``axis`` has length ``len(centres_mm)``.
    n_pixels, pixel_mm : the output grid, pixel ``i`` centred at ``(i + 0.5) * pixel_mm``.
    centres_mm : strictly increasing positions of the slices (same origin as the pixel grid).
    axis : the interpolated axis.
    clip_to : optional ``(low, high)``, scalars or arrays broadcastable to the output (for example
        :func:`image_range` of the source images); ``None`` does not clip.

    Returns
    -------
    Same kind as ``slices``; ``axis`` has length ``n_pixels``. Values outside the first/last centre are
    extrapolated linearly from the end segments.
    """
    n = _check_n(n_pixels)
    r = _positive("pixel_mm", pixel_mm)
    x, was_numpy = _to_tensor(slices)
    centres = np.asarray(centres_mm, dtype=np.float64).ravel()
    if centres.size < 2 or np.any(np.diff(centres) <= 0) or not np.all(np.isfinite(centres)):
        raise ParameterError("centres_mm must hold at least 2 strictly increasing finite positions.")
    m = _up_matrix_cached(n, r, tuple(centres.tolist()))
    out = _apply(m, x, axis)
    if clip_to is not None:
        out = _clip(out, clip_to, fresh=True)
    return _back(out, was_numpy)


def degrade(
    images: Any,
    *,
    pixel_mm: float,
    thickness_mm: float,
    spacing_mm: float,
    phase_mm: float = 0.0,
    profile: str = "box",
    axis: int = -2,
    clip_to: tuple[Any, Any] | None = None,
) -> Any:
    """``F_up(F_down(images))`` along ``axis``, clipped to each 2-D image's own ``[min, max]``.

    The range is taken over the last two axes of ``images`` (:func:`image_range`) unless ``clip_to``
    gives it explicitly (useful when ``images`` are crops of larger images). The output has the shape and
    kind of ``images``. Gradients flow through for torch inputs.
    """
    x, was_numpy = _to_tensor(images)
    n = x.shape[_axis(axis, x.ndim)]
    op = degrade_operator_matrix(n, pixel_mm, thickness_mm, spacing_mm, phase_mm, profile)
    out = _apply(op, x, axis)
    out = _clip(out, image_range(x) if clip_to is None else clip_to, fresh=True)
    return _back(out, was_numpy)


def degrade_batch(
    images: Any,
    *,
    pixel_mm: float,
    thickness_mm: float,
    spacing_mm: float,
    phases_mm: Sequence[float],
    profile: str = "box",
    clip_to: tuple[Any, Any] | None = None,
) -> Any:
    """Degrade a batch ``(B, ..., rows, columns)`` vertically with a different phase per batch element.

    ``phases_mm`` has length ``B``. Equivalent to calling :func:`degrade` with ``axis=-2`` on each
    element, but done with one batched matmul. ``clip_to`` as in :func:`degrade` (default: each 2-D
    image's own range).
    """
    x, was_numpy = _to_tensor(images)
    if x.ndim < 3:
        raise ParameterError("degrade_batch expects an array of shape (batch, ..., rows, columns).")
    phases = [float(p) for p in np.asarray(phases_mm, dtype=np.float64).ravel()]
    if len(phases) != x.shape[0]:
        raise ParameterError(f"phases_mm has {len(phases)} values for a batch of {x.shape[0]} images.")
    n = x.shape[-2]
    ops = np.stack(
        [degrade_operator_matrix(n, pixel_mm, thickness_mm, spacing_mm, p, profile) for p in phases]
    )
    m = torch.tensor(ops, dtype=x.dtype, device=x.device)
    m = m.reshape(m.shape[:1] + (1,) * (x.ndim - 3) + m.shape[1:])
    out = _clip(m @ x, image_range(x) if clip_to is None else clip_to, fresh=True)
    return _back(out, was_numpy)


def _rot90(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return torch.rot90(x, 1, dims=(-2, -1))
    return np.ascontiguousarray(np.rot90(x, 1, axes=(-2, -1)))


def training_pairs(
    image: Any,
    *,
    pixel_spacing_mm: tuple[float, float],
    thickness_mm: float,
    spacing_mm: float,
    phase_mm: float = 0.0,
    profile: str = "box",
) -> list[tuple[Any, Any]]:
    """The two self-supervised (input, target) pairs of axial image(s) ``(..., rows, columns)``.

    Pair 0 degrades along the rows (vertical axis, pixel size ``pixel_spacing_mm[0]``). Pair 1 degrades
    along the columns (pixel size ``pixel_spacing_mm[1]``) and rotates input and target by 90 degrees
    (counter-clockwise, ``rot90(k=1)`` on the last two axes) so that the degraded direction is vertical
    in both pairs. Shapes differ between the pairs when rows != columns.
    """
    if len(tuple(pixel_spacing_mm)) != 2:
        raise ParameterError("pixel_spacing_mm must be (row spacing, column spacing).")
    row_mm, col_mm = (float(v) for v in pixel_spacing_mm)
    common = {
        "thickness_mm": thickness_mm,
        "spacing_mm": spacing_mm,
        "phase_mm": phase_mm,
        "profile": profile,
    }
    vertical = degrade(image, pixel_mm=row_mm, axis=-2, **common)
    horizontal = degrade(image, pixel_mm=col_mm, axis=-1, **common)
    target = image if isinstance(image, torch.Tensor) else np.asarray(image)
    if isinstance(vertical, np.ndarray) and target.dtype != vertical.dtype:
        target = target.astype(vertical.dtype)
    return [(vertical, target), (_rot90(horizontal), _rot90(target))]


# --------------------------------------------------------------------------------------------------
# z geometry: simulation of thick slices, resampling along z


def simulate_thick_slices(
    volume_array: Any,
    *,
    pixel_mm: float,
    thickness_mm: float,
    spacing_mm: float,
    phase_mm: float = 0.0,
    profile: str = "box",
    axis: int = 0,
) -> tuple[Any, np.ndarray]:
    """Thick slices along ``axis`` of a thin-slice volume (evaluation protocol, method.md section 5).

    ``pixel_mm`` is the thin-slice spacing along ``axis``. Returns ``(thick, centres_mm)`` where
    ``thick`` has ``K`` slices along ``axis`` and ``centres_mm`` are their centres measured from the
    lower edge of the first thin slice (thin slice ``i`` is centred at ``(i + 0.5) * pixel_mm``).
    """
    x, _ = _to_tensor(volume_array)
    n = x.shape[_axis(axis, x.ndim)]
    _, centres = degrade_matrix(n, pixel_mm, thickness_mm, spacing_mm, phase_mm, profile)
    thick = f_down(
        volume_array,
        pixel_mm=pixel_mm,
        thickness_mm=thickness_mm,
        spacing_mm=spacing_mm,
        phase_mm=phase_mm,
        profile=profile,
        axis=axis,
    )
    return thick, np.array(centres)


def resample_slices(
    volume: Any, src_positions_mm: Any, dst_positions_mm: Any, axis: int = 0, *, extrapolate: bool = True
) -> Any:
    """Linear resampling along ``axis`` from ``src_positions_mm`` to ``dst_positions_mm``.

    Source positions must be strictly increasing (irregular spacing is fine). Outside the source range
    values are extrapolated linearly (``extrapolate=True``) or held constant. Returns the same kind as
    ``volume`` with ``len(dst_positions_mm)`` entries along ``axis``; float32 stays float32.

    Each output slice is the two-tap blend of its neighbours (:func:`interpolation_weights`), computed in
    blocks of output slices: no dense ``(n_dst, n_src)`` matrix product (for 343 -> 922 slices of
    512 x 512 that was 166 GFLOP where 0.5 are needed) and no full-size temporaries.
    """
    x, was_numpy = _to_tensor(volume)
    ax = _axis(axis, x.ndim)
    if x.shape[ax] != np.asarray(src_positions_mm).size:
        raise ParameterError(
            f"Axis {axis} has length {x.shape[ax]}, but {np.asarray(src_positions_mm).size} source positions "
            "were given."
        )
    j, frac = interpolation_weights(src_positions_mm, dst_positions_mm, extrapolate=extrapolate)
    src = torch.movedim(x, ax, 0)
    out = torch.empty((frac.size, *src.shape[1:]), dtype=x.dtype, device=x.device)
    lo = torch.from_numpy(j).to(x.device)
    w1 = torch.from_numpy(frac).to(x.device, x.dtype)
    w0 = torch.from_numpy(1.0 - frac).to(x.device, x.dtype)
    per_slice = max(1, math.prod(src.shape[1:]))
    block = max(1, (1 << 22) // per_slice)  # ~16 MB of float32 per block
    view = (-1,) + (1,) * (src.ndim - 1)
    for k0 in range(0, frac.size, block):
        k1 = min(frac.size, k0 + block)
        idx = lo[k0:k1]
        part = out[k0:k1]
        torch.mul(src.index_select(0, idx), w0[k0:k1].view(view), out=part)
        part.addcmul_(src.index_select(0, idx + 1), w1[k0:k1].view(view))
    return _back(torch.movedim(out, 0, ax).contiguous() if ax != 0 else out, was_numpy)


def output_positions_mm(slice_positions_mm: Any, target_spacing_mm: float) -> np.ndarray:
    """Output slice positions: from the first input slice centre up to the last, every ``target_spacing_mm``.

    The first output position equals the first input position; the last is the largest grid position
    not beyond the last input centre (within a relative tolerance of 1e-9).
    """
    step = _positive("target_spacing_mm", target_spacing_mm)
    pos = np.asarray(slice_positions_mm, dtype=np.float64).ravel()
    if pos.size < 2 or not np.all(np.isfinite(pos)):
        raise ParameterError("At least 2 finite slice positions are needed to define the output grid.")
    first, last = float(pos.min()), float(pos.max())
    span = last - first
    if span <= 0:
        raise ParameterError("The slice positions span no distance; the output grid is undefined.")
    count = math.floor(span / step + _FIT_RTOL * max(1.0, span / step)) + 1
    return first + step * np.arange(count, dtype=np.float64)
