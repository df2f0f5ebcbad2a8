"""Evaluation protocol of docs/method.md, section 5.

Take a thin-slice ground truth, simulate a thick-slice acquisition along z with the exact model
(:func:`simulate_acquisition`), enhance it (or interpolate it: :func:`interpolate_baseline`), resample the
result onto the ground truth's grid linearly in physical coordinates (:func:`resample_to_reference`) and
score it inside the body box (:func:`body_box`, :func:`score`): the headline body-box PSNR with data range
= ground-truth max - min, plus the mean per-slice PSNR and SSIM of the coronal and sagittal images.

Only NumPy is needed; scikit-image's SSIM is used when installed, otherwise an equivalent NumPy
implementation with the same settings (Gaussian window, sigma 1.5, Wang et al. 2004).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sr4zct.errors import GeometryError, ParameterError
from sr4zct.method.body import body_box as body_box_yx
from sr4zct.volume import Volume, make_geometry

__all__ = [
    "BASELINES",
    "NOISE_MODELS",
    "aligned_phase_mm",
    "body_box",
    "interpolate_baseline",
    "psnr",
    "resample_to_reference",
    "score",
    "simulate_acquisition",
    "ssim",
]

BASELINES = ("linear", "bspline", "lanczos")

# SSIM settings of Wang et al. (2004), as skimage uses them with gaussian_weights=True
_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03

_BLOCK = 32  # output slices interpolated at once (bounds the temporary memory)


def _regular_spacing_mm(volume: Volume, what: str) -> float:
    geom = volume.geometry
    pos = np.asarray(geom.slice_positions_mm, float)
    if pos.size >= 2:
        steps = np.diff(pos)
        if np.any(steps <= 0) or np.ptp(steps) > 1e-3 * float(np.median(steps)):
            raise GeometryError(f"The {what} must have regularly spaced slices along z.")
    return float(geom.slice_spacing_mm)


def aligned_phase_mm(thickness_mm: float, spacing_mm: float, slice_mm: float) -> float:
    """Acquisition phase that puts the first thick slice centre on a ground-truth slice centre.

    With it, an output grid of spacing ``slice_mm`` starting at the first thick centre (the pipeline's
    and the baselines' default when ``slice_mm`` is the pixel size) coincides with the ground truth's
    slices, so :func:`resample_to_reference` does not interpolate (which would blur every method alike).
    Returns 0 when that phase would not be below ``spacing_mm``.
    """
    phase = (0.5 * slice_mm - 0.5 * thickness_mm) % slice_mm
    if phase >= spacing_mm or math.isclose(phase, slice_mm, abs_tol=1e-9):
        return 0.0
    return float(phase)


#: how simulated noise is made: ``independent`` (every thick slice its own noise, as added to a finished
#: series) or ``integrated`` (white noise on the thin grid integrated by the slice profile, so that
#: overlapping slices share noise as a real reconstruction's do)
NOISE_MODELS = ("independent", "integrated")


def simulate_acquisition(
    ground_truth: Volume,
    thickness_mm: float,
    spacing_mm: float,
    profile: str = "box",
    phase_mm: float = 0.0,
    *,
    noise_sigma_hu: float = 0.0,
    noise_model: str = "independent",
    seed: int = 0,
) -> Volume:
    """Thick slices along z (array axis 0) of a thin-slice ground truth, with the exact acquisition model.

    Parameters
    ----------
    ground_truth : thin-slice volume with regular slice spacing.
    thickness_mm : slice thickness T (box width or Gaussian FWHM).
    spacing_mm : distance d between the simulated slice centres.
    profile : ``"box"`` or ``"gaussian"``.
    phase_mm : offset of the first thick slice's lower edge from the ground truth's first voxel edge,
        in ``[0, d)``.
    noise_sigma_hu : standard deviation of the Gaussian noise of every thick-slice voxel (0: none).
    noise_model : one of :data:`NOISE_MODELS`; both give every thick voxel noise of ``noise_sigma_hu``,
        white in-plane.
    seed : seeds the noise.

    Returns
    -------
    Volume
        float32 HU, slice thickness T, spacing d, same in-plane grid and direction cosines, origin at the
        first thick slice centre in the ground truth's physical coordinates.
    """
    from sr4zct.method.acquisition import simulate_thick_slices

    slice_mm = _regular_spacing_mm(ground_truth, "ground truth")
    geom = ground_truth.geometry
    common = {
        "pixel_mm": slice_mm,
        "thickness_mm": thickness_mm,
        "spacing_mm": spacing_mm,
        "phase_mm": phase_mm,
        "profile": profile,
        "axis": 0,
    }
    thick, centres = simulate_thick_slices(np.asarray(ground_truth.array, np.float32), **common)
    if noise_sigma_hu > 0:
        thick = thick + _simulated_noise(ground_truth.array.shape, noise_sigma_hu, noise_model, seed, common)
    # centres are measured from the lower edge of the first thin slice, whose centre is at slice_mm / 2
    first_mm = float(centres[0]) - 0.5 * slice_mm
    axis0 = np.asarray(geom.axes_lps[0], float)
    origin = np.asarray(geom.origin_lps, float) + first_mm * axis0
    thick_geom = make_geometry(
        thick.shape,
        slice_spacing_mm=float(spacing_mm),
        pixel_spacing_mm=geom.pixel_spacing_mm,
        slice_thickness_mm=float(thickness_mm),
        origin_lps=tuple(origin),
        axes_lps=geom.axes_lps,
        slice_positions_mm=np.asarray(centres, float) - float(centres[0]),
        description=f"{geom.description} simulated {thickness_mm:g} mm every {spacing_mm:g} mm ({profile})".strip(),
    )
    metadata = dict(ground_truth.metadata)
    metadata.update(
        {
            "simulated_thickness_mm": f"{thickness_mm:g}",
            "simulated_spacing_mm": f"{spacing_mm:g}",
            "simulated_profile": profile,
            "simulated_phase_mm": f"{phase_mm:g}",
        }
    )
    if noise_sigma_hu > 0:
        metadata.update({"simulated_noise_hu": f"{noise_sigma_hu:g}", "simulated_noise_model": noise_model})
    return Volume(np.ascontiguousarray(thick, dtype=np.float32), thick_geom, metadata)


def _simulated_noise(shape, sigma_hu: float, model: str, seed: int, acquisition: dict) -> np.ndarray:
    """Noise of the thick slices (float32, std ``sigma_hu`` per voxel) under ``model``."""
    from sr4zct.method.acquisition import degrade_matrix, simulate_thick_slices

    if model not in NOISE_MODELS:
        raise ParameterError(f"Unknown noise model {model!r}; choose one of {', '.join(NOISE_MODELS)}.")
    if not (math.isfinite(sigma_hu) and sigma_hu > 0):
        raise ParameterError(f"The noise level must be a positive number of HU, got {sigma_hu!r}.")
    rng = np.random.default_rng(seed)
    w, _ = degrade_matrix(shape[0], **{k: v for k, v in acquisition.items() if k != "axis"})
    if model == "independent":
        return sigma_hu * rng.standard_normal((w.shape[0], *shape[1:]), dtype=np.float32)
    gain = math.sqrt(float(np.mean(np.sum(w * w, axis=1))))  # std of a thick slice of unit white noise
    thin = rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma_hu / gain)
    noise, _ = simulate_thick_slices(thin, **acquisition)
    return noise.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# interpolation along axis 0 with separable kernels in (fractional) slice-index space


def _lanczos3(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)


def _cubic_bspline(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return np.where(a < 1.0, 2.0 / 3.0 - a * a + 0.5 * a**3, np.where(a < 2.0, (2.0 - a) ** 3 / 6.0, 0.0))


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Whole-sample mirror (d c b | a b c d | c b a), as scipy.ndimage mode='mirror'."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * n - 2
    index = np.mod(index, period)
    return np.where(index >= n, period - index, index)


def _bspline_coefficients(array: np.ndarray) -> np.ndarray:
    """Cubic B-spline interpolation coefficients along axis 0 (recursive filter, mirror boundary)."""
    c = np.asarray(array, np.float64) * 6.0
    n = c.shape[0]
    if n == 1:
        return c / 6.0
    pole = math.sqrt(3.0) - 2.0
    # exact causal initialisation for the mirror-symmetric extension
    k = np.arange(n)
    weights = pole**k + np.where((k > 0) & (k < n - 1), pole ** (2 * n - 2 - k), 0.0)
    weights /= 1.0 - pole ** (2 * n - 2)
    c[0] = np.tensordot(weights, c, axes=(0, 0))
    for i in range(1, n):
        c[i] += pole * c[i - 1]
    c[n - 1] = (pole / (pole * pole - 1.0)) * (c[n - 1] + pole * c[n - 2])
    for i in range(n - 2, -1, -1):
        c[i] = pole * (c[i + 1] - c[i])
    return c


def _kernel_resample(
    samples: np.ndarray, index: np.ndarray, kernel, taps: int, boundary: str, fill: float | None = None
) -> np.ndarray:
    """Evaluate ``sum_i kernel(index - i) * samples[i]`` along axis 0 at fractional indices ``index``.

    ``taps`` neighbours are used (floor(index) - taps/2 + 1 ... floor(index) + taps/2). ``boundary`` is
    ``"clamp"`` (edge values repeat) or ``"mirror"``. With ``fill`` set, indices outside [0, n - 1] get
    ``fill``. Weights are normalised to sum to one.
    """
    n = samples.shape[0]
    out = np.empty((len(index), *samples.shape[1:]), np.float32)
    base = np.floor(index).astype(np.int64)
    offsets = np.arange(-(taps // 2) + 1, taps // 2 + 1)
    neighbours = base[:, None] + offsets[None, :]
    weights = kernel(index[:, None] - neighbours)
    weights /= weights.sum(axis=1, keepdims=True)
    if boundary == "mirror":
        neighbours = _mirror(neighbours, n)
    else:
        neighbours = np.clip(neighbours, 0, n - 1)
    for start in range(0, len(index), _BLOCK):
        stop = min(start + _BLOCK, len(index))
        acc = np.zeros((stop - start, *samples.shape[1:]), np.float64)
        for t in range(len(offsets)):
            w = weights[start:stop, t]
            if np.any(w != 0):
                acc += w.reshape(-1, *([1] * (samples.ndim - 1))) * samples[neighbours[start:stop, t]]
        out[start:stop] = acc
    if fill is not None:
        outside = (index < -1e-6) | (index > n - 1 + 1e-6)
        out[outside] = fill
    return out


def _resample_axis0(
    array: np.ndarray, src_mm: np.ndarray, dst_mm: np.ndarray, method: str, fill: float | None = None
) -> np.ndarray:
    """Resample ``array`` along axis 0 from positions ``src_mm`` to ``dst_mm`` (both increasing)."""
    src_mm = np.asarray(src_mm, float)
    dst_mm = np.asarray(dst_mm, float)
    n = len(src_mm)
    # fractional index of every output position (exact for irregular positions with "linear")
    index = np.interp(dst_mm, src_mm, np.arange(n, dtype=float))
    if n >= 2:
        below, above = dst_mm < src_mm[0], dst_mm > src_mm[-1]
        index[below] = (dst_mm[below] - src_mm[0]) / (src_mm[1] - src_mm[0])
        index[above] = n - 1 + (dst_mm[above] - src_mm[-1]) / (src_mm[-1] - src_mm[-2])
    if method == "linear":
        return _kernel_resample(array, index, lambda x: np.clip(1.0 - np.abs(x), 0.0, None), 2, "clamp", fill)
    if method == "lanczos":
        return _kernel_resample(array, index, _lanczos3, 6, "clamp", fill)
    if method == "bspline":
        return _kernel_resample(_bspline_coefficients(array), index, _cubic_bspline, 4, "mirror", fill)
    raise ParameterError(f"Unknown interpolation method {method!r}; choose one of {', '.join(BASELINES)}.")


def interpolate_baseline(
    thick: Volume, method: str = "linear", target_spacing_mm: float | None = None
) -> Volume:
    """Interpolate a thick-slice series along z onto the output grid (the baselines SR4ZCT must beat).

    Parameters
    ----------
    thick : the thick-slice series.
    method : ``"linear"``, ``"bspline"`` (cubic, interpolating) or ``"lanczos"`` (Lanczos-3 windowed
        sinc), all along z only.
    target_spacing_mm : output slice spacing; default the finer in-plane pixel spacing (isotropic).

    Returns
    -------
    Volume
        Slices from the first input slice centre to the last, every ``target_spacing_mm``; same in-plane
        grid, direction cosines and origin as ``thick``.
    """
    from sr4zct.method.acquisition import output_positions_mm

    if method not in BASELINES:
        raise ParameterError(
            f"Unknown interpolation method {method!r}; choose one of {', '.join(BASELINES)}."
        )
    geom = thick.geometry
    if target_spacing_mm is None:
        target_spacing_mm = float(min(geom.pixel_spacing_mm))
    if method != "linear":
        _regular_spacing_mm(thick, "input of a B-spline or Lanczos baseline")
    src = np.asarray(geom.slice_positions_mm, float)
    dst = output_positions_mm(src, target_spacing_mm)
    array = _resample_axis0(np.asarray(thick.array, np.float32), src, dst, method)
    out_geom = make_geometry(
        array.shape,
        slice_spacing_mm=float(target_spacing_mm),
        pixel_spacing_mm=geom.pixel_spacing_mm,
        slice_thickness_mm=float(target_spacing_mm),
        origin_lps=geom.origin_lps,
        axes_lps=geom.axes_lps,
        slice_positions_mm=dst - dst[0],
        description=f"{geom.description} {method} along z".strip(),
    )
    metadata = dict(thick.metadata)
    metadata["interpolation"] = method
    return Volume(array, out_geom, metadata)


def resample_to_reference(result: Volume, reference: Volume) -> np.ndarray:
    """Resample ``result`` along z onto the slices of ``reference``, linearly in physical coordinates.

    Both volumes must share the in-plane grid (shape, pixel spacing, in-plane origin, direction
    cosines); only the slice positions along z differ. Reference slices outside the result's z range
    are NaN.

    Returns
    -------
    numpy.ndarray
        float32 array of the reference's shape.

    Raises
    ------
    GeometryError
        When the in-plane grids or the directions differ.
    """
    rg, fg = result.geometry, reference.geometry
    if tuple(rg.shape[1:]) != tuple(fg.shape[1:]):
        raise GeometryError(f"In-plane sizes differ: result {rg.shape[1:]} vs reference {fg.shape[1:]}.")
    if not np.allclose(rg.pixel_spacing_mm, fg.pixel_spacing_mm, rtol=1e-4, atol=1e-6):
        raise GeometryError(
            f"Pixel spacings differ: result {rg.pixel_spacing_mm} vs reference {fg.pixel_spacing_mm} mm."
        )
    axes_r, axes_f = np.asarray(rg.axes_lps, float), np.asarray(fg.axes_lps, float)
    if not np.allclose(axes_r, axes_f, atol=1e-4):
        raise GeometryError("The result and the reference have different direction cosines.")
    offset = np.asarray(rg.origin_lps, float) - np.asarray(fg.origin_lps, float)
    in_plane = np.abs(axes_f[1:] @ offset)
    if np.any(in_plane > 1e-3 * np.asarray(fg.pixel_spacing_mm) + 1e-6):
        raise GeometryError(f"The in-plane grids are shifted by {in_plane.round(4).tolist()} mm.")
    src = float(axes_f[0] @ offset) + np.asarray(rg.slice_positions_mm, float)
    dst = np.asarray(fg.slice_positions_mm, float)
    if len(src) == 1:
        out = np.full(fg.shape, np.nan, np.float32)
        out[np.abs(dst - src[0]) < 1e-6] = result.array[0]
        return out
    return _resample_axis0(np.asarray(result.array, np.float32), src, dst, "linear", fill=np.nan)


# --------------------------------------------------------------------------------------------------
# scoring


def body_box(
    ground_truth_array: np.ndarray, thickness_mm: float, slice_mm: float, threshold_hu: float = -500.0
) -> tuple[slice, slice, slice]:
    """The region scored: body box in y and x, z without one slice thickness at either end.

    Parameters
    ----------
    ground_truth_array : (slice, row, column) HU.
    thickness_mm : slice thickness T of the simulated acquisition.
    slice_mm : slice spacing of the ground truth.
    threshold_hu : voxels above this value (anywhere along z) define the y/x box.

    Returns
    -------
    (z, y, x) slices; z keeps the slices whose centre is at least ``thickness_mm`` from the first and the
    last slice centre.

    Raises
    ------
    ParameterError
        When nothing is above the threshold or no slice is left along z.
    """
    a = np.asarray(ground_truth_array)
    if a.ndim != 3:
        raise ParameterError(f"The ground truth must be 3-D, got shape {a.shape}.")
    if not (thickness_mm > 0 and slice_mm > 0):
        raise ParameterError("Slice thickness and ground-truth spacing must be positive.")
    drop = math.ceil(thickness_mm / slice_mm - 1e-6)
    if a.shape[0] - 2 * drop < 1:
        raise ParameterError(
            f"The ground truth has {a.shape[0]} slices of {slice_mm:g} mm: none is left after dropping "
            f"{thickness_mm:g} mm at either end."
        )
    if not np.any(a > threshold_hu):
        raise ParameterError(f"No ground-truth voxel is above {threshold_hu:g} HU; the body box is empty.")
    rows, cols = body_box_yx(a, threshold_hu)
    return slice(drop, a.shape[0] - drop), rows, cols


def psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``; ``inf`` when identical."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ParameterError(f"PSNR needs equal shapes, got {a.shape} and {b.shape}.")
    if not data_range > 0:
        raise ParameterError(f"PSNR needs a positive data range, got {data_range}.")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(float(data_range) ** 2 / mse)


def _gaussian_window() -> np.ndarray:
    radius = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / _SSIM_SIGMA) ** 2)
    return w / w.sum()


def _filter_valid(images: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation with ``window`` over the last two axes."""
    out = images
    for axis in (out.ndim - 2, out.ndim - 1):
        n = out.shape[axis] - len(window) + 1
        acc = np.zeros(out.shape[:axis] + (n,) + out.shape[axis + 1 :], np.float64)
        index = [slice(None)] * out.ndim
        for k, w in enumerate(window):
            index[axis] = slice(k, k + n)
            acc += w * out[tuple(index)]
        out = acc
    return out


def _ssim_numpy(a: np.ndarray, b: np.ndarray, data_range: float) -> np.ndarray:
    """Mean SSIM of each 2-D image of a stack (last two axes), same result as scikit-image's
    ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``."""
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    window = _gaussian_window()
    ux, uy = _filter_valid(x, window), _filter_valid(y, window)
    uxx, uyy, uxy = _filter_valid(x * x, window), _filter_valid(y * y, window), _filter_valid(x * y, window)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(axis=(-2, -1))


def _skimage_ssim() -> Any:
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        return None
    return structural_similarity


def _ssim_per_image(a: np.ndarray, b: np.ndarray, data_range: float) -> np.ndarray:
    size = len(_gaussian_window())
    if min(a.shape[-2:]) < size:
        raise ParameterError(f"SSIM needs images of at least {size} x {size} pixels, got {a.shape[-2:]}.")
    skimage_ssim = _skimage_ssim()
    if skimage_ssim is None:
        return np.atleast_1d(_ssim_numpy(a, b, data_range))
    a2 = np.asarray(a, np.float64).reshape(-1, *a.shape[-2:])
    b2 = np.asarray(b, np.float64).reshape(-1, *b.shape[-2:])
    return np.array(
        [
            skimage_ssim(
                x,
                y,
                data_range=data_range,
                gaussian_weights=True,
                sigma=_SSIM_SIGMA,
                use_sample_covariance=False,
            )
            for x, y in zip(a2, b2, strict=True)
        ]
    )


def ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Mean structural similarity of two 2-D images (Gaussian window, sigma 1.5, Wang et al. 2004).

    Uses scikit-image when installed, otherwise an equivalent NumPy implementation.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ParameterError(f"SSIM needs two 2-D images of equal shape, got {a.shape} and {b.shape}.")
    if not data_range > 0:
        raise ParameterError(f"SSIM needs a positive data range, got {data_range}.")
    return float(_ssim_per_image(a, b, float(data_range))[0])


def score(
    result: Volume, ground_truth: Volume, thickness_mm: float, *, threshold_hu: float = -500.0
) -> dict[str, Any]:
    """Score an enhanced (or interpolated) volume against the thin-slice ground truth.

    The result is resampled onto the ground truth's slices (:func:`resample_to_reference`) and compared
    inside :func:`body_box`, restricted to the slices the result covers.

    Returns
    -------
    dict
        ``psnr_db`` (body box, data range = ground-truth max - min), ``coronal_psnr_db``,
        ``sagittal_psnr_db``, ``coronal_ssim``, ``sagittal_ssim`` (means over the images in the box),
        ``data_range_hu`` and ``box`` (start/stop indices per axis of the ground truth array).
    """
    gt = np.asarray(ground_truth.array, np.float32)
    slice_mm = _regular_spacing_mm(ground_truth, "ground truth")
    resampled = resample_to_reference(result, ground_truth)
    zs, ys, xs = body_box(gt, thickness_mm, slice_mm, threshold_hu)
    covered = np.flatnonzero(np.isfinite(resampled[:, 0, 0]))
    z0, z1 = (
        max(zs.start, int(covered.min(initial=gt.shape[0]))),
        min(zs.stop, int(covered.max(initial=-1)) + 1),
    )
    if z1 <= z0:
        raise ParameterError("The result does not cover the scored ground-truth slices.")
    zs = slice(z0, z1)
    data_range = float(gt.max() - gt.min())
    ref_box = gt[zs, ys, xs]
    res_box = resampled[zs, ys, xs]
    coronal_ref, coronal_res = ref_box.transpose(1, 0, 2), res_box.transpose(1, 0, 2)  # (y, z, x)
    sagittal_ref, sagittal_res = ref_box.transpose(2, 0, 1), res_box.transpose(2, 0, 1)  # (x, z, y)
    return {
        "psnr_db": psnr(res_box, ref_box, data_range),
        "coronal_psnr_db": float(
            np.mean([psnr(r, g, data_range) for r, g in zip(coronal_res, coronal_ref, strict=True)])
        ),
        "sagittal_psnr_db": float(
            np.mean([psnr(r, g, data_range) for r, g in zip(sagittal_res, sagittal_ref, strict=True)])
        ),
        "coronal_ssim": float(np.mean(_ssim_per_image(coronal_res, coronal_ref, data_range))),
        "sagittal_ssim": float(np.mean(_ssim_per_image(sagittal_res, sagittal_ref, data_range))),
        "data_range_hu": data_range,
        "box": {
            "z": [int(zs.start), int(zs.stop)],
            "y": [int(ys.start), int(ys.stop)],
            "x": [int(xs.start), int(xs.stop)],
        },
    }
