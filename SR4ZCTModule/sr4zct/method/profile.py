"""The slice sensitivity profile estimated from the volume itself (``--profile auto``).

An axial image is sharp along both in-plane axes; along z the thick volume holds the same kind of anatomy
blurred by the slice profile and sampled every ``d`` mm (docs/method.md, section 2). For a candidate profile
(box or Gaussian of FWHM ``w``) the exact acquisition model turns in-plane pixel columns into samples every
``d`` mm; the candidate whose samples have the through-plane samples' spectrum is the estimate.

* Statistic: the mean spectrum of mean-removed, Hann-windowed segments of ``L`` samples that lie in the body
  (every sample above -500 HU), aliasing included on both sides (the in-plane side is sampled like z).
* Noise: cross-spectra of neighbouring columns (one pixel apart) instead of power spectra. Noise that is
  independent from pixel to pixel cancels, so a noisy scan does not look sharper than it is.
* Speed: the in-plane side is the quadratic form ``g C g^H`` with ``C`` the second-moment matrix of fine
  pixel segments (measured once) and ``g`` a candidate's ``F_down`` rows (:func:`acquisition.profile_weights`)
  combined with the window and the DFT; a candidate costs microseconds, the whole estimate about a second.
* Misfit: mean squared log ratio of the two spectra up to a free scale (contrast differs between directions),
  over the frequencies whose z cross-spectrum stands above its standard error.
* Family: given by the caller when the scan mode is known (helical: Gaussian, sequential: box;
  :mod:`sr4zct.volume.scan_mode`), since the images alone cannot always tell (below). Otherwise, with a
  nominal thickness ``T`` (DICOM SliceThickness), the family that fits better at widths near ``T`` (within a
  factor :data:`FAMILY_BAND`); a box of width ``T`` and a Gaussian of FWHM ``T`` blur very differently, so this
  holds where the free fits of the two families are confounded by anatomy. Without ``T``, the family of the
  best free fit. The FWHM is then the free best fit within that family.
* Uncertainty: the widths that fit nearly as well as the best, widened to hold the FWHM estimated on
  separate blocks of slices (anatomy changes along z).

The estimate assumes the anatomy's statistics along z resemble those in-plane; where they do not (long
structures along z, or a ground truth that is itself blurred along z), the FWHM is biased accordingly, and
so is the family: a box profile on anatomy smoother along z has nearly the spectrum of a Gaussian profile
until the box's first null, which only slices overlapping by more than half their thickness resolve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sr4zct.errors import ParameterError
from sr4zct.method.acquisition import PROFILES, gaussian_sigma_mm, profile_weights
from sr4zct.method.body import BODY_THRESHOLD_HU, body_box
from sr4zct.system.devices import single_thread
from sr4zct.volume.scan_mode import SCAN_MODES

__all__ = [
    "DISAGREEMENT",
    "FAMILY_BAND",
    "FAMILY_MARGIN",
    "RANGE_TOLERANCE",
    "ProfileEstimate",
    "estimate_profile",
    "estimate_volume_profile",
]

SEGMENT = 16  #: samples per segment (L)
MIN_SEGMENT = 6  #: the fewest samples per segment an estimate uses
BLOCKS = 4  #: blocks of slices whose separate estimates give the uncertainty
FAMILY_BAND = 1.05  #: the family is decided on widths from T / FAMILY_BAND to T * FAMILY_BAND
FAMILY_MARGIN = 1.25  #: misfit ratio of the two families below which the family is uncertain
RANGE_TOLERANCE = 1.1  #: widths whose misfit is within this factor of the least are in the range
DISAGREEMENT = 1.3  #: FWHM / nominal thickness beyond this factor (and outside the range) disagrees
_PHASES = 2  # sub-pixel phases of the slice grid averaged on the in-plane side
_MAX_COLUMNS = 4000  # through-plane column pairs per direction
_IMAGES_PER_BLOCK = 3  # axial images per block for the in-plane statistics
_COLUMN_STEP = 4  # in-plane: every 4th column, segments starting every 4th pixel
_GAUSS_REACH = 3.5  # a Gaussian profile is cut at 3.5 sigma (mass beyond: 5e-4)
_WIDTHS = 96  # candidate widths (log-spaced)


@dataclass(frozen=True)
class ProfileEstimate:
    """The slice profile estimated from a volume.

    Attributes
    ----------
    family : str
        ``"box"`` or ``"gaussian"`` (:data:`~sr4zct.method.acquisition.PROFILES`).
    fwhm_mm : float
        Its width: box width or Gaussian FWHM, in mm.
    fwhm_range_mm : (float, float)
        Uncertainty: the lowest and highest FWHM estimated on separate blocks of slices (and the whole).
    misfit : dict of str to float
        The best misfit of each family (mean squared log spectrum ratio; 0 is a perfect match).
    family_margin : float
        The other family's misfit over this family's (where the family was decided); above
        :data:`FAMILY_MARGIN` the images prefer it clearly, below 1 they prefer the other (possible only when
        the scan mode fixed the family).
    nominal_mm : float or None
        The nominal thickness it was compared with (DICOM SliceThickness), if any.
    segments : int
        Through-plane segments used (a measure of how much body the volume holds).
    family_source : str
        What decided the family: ``"images"``, or the scan mode that fixed it (``"helical scan"``).
    """

    family: str
    fwhm_mm: float
    fwhm_range_mm: tuple[float, float]
    misfit: dict[str, float] = field(default_factory=dict)
    family_margin: float = math.inf
    nominal_mm: float | None = None
    segments: int = 0
    family_source: str = "images"

    @property
    def family_certain(self) -> bool:
        """True when the scan mode fixed the family or the data prefer it clearly (:data:`FAMILY_MARGIN`)."""
        return self.family_source != "images" or self.family_margin >= FAMILY_MARGIN

    @property
    def disagrees_with_nominal(self) -> bool:
        """True when the FWHM differs from the nominal thickness by more than :data:`DISAGREEMENT` times and
        the nominal thickness lies outside the estimate's range."""
        if self.nominal_mm is None:
            return False
        lo, hi = self.fwhm_range_mm
        ratio = self.fwhm_mm / self.nominal_mm
        outside = not lo <= self.nominal_mm <= hi
        return outside and not 1.0 / DISAGREEMENT <= ratio <= DISAGREEMENT

    def describe(self) -> str:
        """One line, e.g. ``"gaussian, FWHM 3.1 mm (2.9-3.4 mm over 4 blocks of slices)"``."""
        lo, hi = self.fwhm_range_mm
        if self.family_source != "images":
            family = f"{self.family} (from the {self.family_source})"
        else:
            family = self.family if self.family_certain else f"{self.family} (family uncertain)"
        return f"{family}, FWHM {self.fwhm_mm:.2f} mm (range {lo:.2f}-{hi:.2f} mm)"

    def to_parameters(self) -> dict[str, str]:
        """The estimate as the text fields of a run's ``parameters`` (prefix ``profile_estimate``)."""
        lo, hi = self.fwhm_range_mm
        return {
            "profile_estimate": self.describe(),
            "profile_estimate_family": self.family,
            "profile_estimate_fwhm_mm": f"{self.fwhm_mm:.3g}",
            "profile_estimate_range_mm": f"{lo:.3g}-{hi:.3g}",
            "profile_estimate_family_margin": f"{min(self.family_margin, 1e6):.3g}",
            "profile_estimate_family_source": self.family_source,
        }

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields (``sr4zct info --json``)."""
        return {
            "family": self.family,
            "fwhm_mm": self.fwhm_mm,
            "fwhm_range_mm": list(self.fwhm_range_mm),
            "misfit": dict(self.misfit),
            "family_margin": None if math.isinf(self.family_margin) else self.family_margin,
            "family_certain": self.family_certain,
            "nominal_mm": self.nominal_mm,
            "disagrees_with_nominal": self.disagrees_with_nominal,
            "segments": self.segments,
            "family_source": self.family_source,
        }


# --------------------------------------------------------------------------------------------------
# statistics


@dataclass
class _Stats:
    """Sums over segments: the z cross-spectrum (and its square, for the standard error) and, per in-plane
    direction, the second-moment matrix of fine pixel segments of neighbouring columns."""

    z_sum: np.ndarray
    z_sq: np.ndarray
    z_count: int
    moments: list[np.ndarray]
    counts: list[int]

    def __add__(self, other: _Stats) -> _Stats:
        return _Stats(
            self.z_sum + other.z_sum,
            self.z_sq + other.z_sq,
            self.z_count + other.z_count,
            [a + b for a, b in zip(self.moments, other.moments, strict=True)],
            [a + b for a, b in zip(self.counts, other.counts, strict=True)],
        )

    @property
    def usable(self) -> bool:
        finite = np.isfinite(self.z_sum).all() and all(np.isfinite(m).all() for m in self.moments)
        return bool(finite) and self.z_count >= 50 and min(self.counts) >= 50


@dataclass(frozen=True)
class _Design:
    """Sizes shared by every statistic and candidate."""

    segment: int  # L, slices per segment
    spacing_mm: float  # d
    pixel_mm: tuple[float, float]  # in-plane pixel of the row and the column direction
    fine_px: tuple[int, int]  # m, fine pixels per in-plane segment (per direction)
    margin_mm: float  # room kept on either side of the slices for the widest candidate's profile
    widths_mm: np.ndarray

    def transform(self) -> np.ndarray:
        """``(J, L)`` complex: mean removal, Hann window and DFT bins 1..L/2 of a segment."""
        n = self.segment
        window = np.hanning(n + 2)[1:-1]
        centring = np.eye(n) - 1.0 / n
        k = np.arange(n)
        bins = np.arange(1, n // 2 + 1)
        dft = np.exp(-2j * np.pi * np.outer(bins, k) / n)
        return dft @ (window[:, None] * centring)


def _widths(spacing_mm: float, pixel_mm: float, nominal_mm: float | None) -> np.ndarray:
    """Log-spaced candidate widths (and the nominal thickness itself, where the family is decided)."""
    low = max(0.5 * pixel_mm, 0.2 * spacing_mm)
    high = 3.0 * max(spacing_mm, nominal_mm or spacing_mm)
    widths = np.exp(np.linspace(math.log(low), math.log(high), _WIDTHS))
    if nominal_mm is not None and low <= nominal_mm <= high:
        widths = np.unique(np.append(widths, float(nominal_mm)))
    return widths


def _design(shape: tuple[int, int, int], pixel_mm, spacing_mm: float, nominal_mm) -> _Design:
    """The segment length and fine segment sizes that fit the volume, or a ParameterError."""
    widths = _widths(spacing_mm, min(pixel_mm), nominal_mm)
    margin = _GAUSS_REACH * gaussian_sigma_mm(float(widths[-1])) + max(pixel_mm)
    for segment in range(min(SEGMENT, shape[0]), MIN_SEGMENT - 1, -1):
        fine = tuple(math.ceil(((segment - 1) * spacing_mm + 2 * margin) / p) + 1 for p in pixel_mm)
        if fine[0] <= shape[1] - 8 and fine[1] <= shape[2] - 8:
            return _Design(segment, spacing_mm, tuple(pixel_mm), fine, margin, widths)
    raise ParameterError(
        f"The volume is too small to estimate the slice profile ({shape[0]} slices of {shape[1]} x {shape[2]} "
        f"pixels; at least {MIN_SEGMENT} slices and room for {MIN_SEGMENT} slices every {spacing_mm:g} mm "
        "in-plane are needed)."
    )


def _segments(columns: np.ndarray, length: int, hop: int) -> np.ndarray:
    """``(n_segments, length)`` windows of each row of ``columns`` (rows are sequences), every ``hop``."""
    windows = np.lib.stride_tricks.sliding_window_view(columns, length, axis=1)[:, ::hop]
    return windows.reshape(-1, length)


def _z_stats(block: np.ndarray, design: _Design, rows: slice, cols: slice) -> tuple[np.ndarray, ...]:
    """Cross-spectrum sums of through-plane segments of neighbouring columns (along x and along y)."""
    n_rows, n_cols = rows.stop - rows.start, cols.stop - cols.start
    step = max(1, math.ceil(math.sqrt(n_rows * n_cols / _MAX_COLUMNS)))
    ys = np.arange(rows.start, rows.stop - 1, step)
    xs = np.arange(cols.start, cols.stop - 1, step)
    g = design.transform()
    total, sq, count = np.zeros(g.shape[0]), np.zeros(g.shape[0]), 0
    for dy, dx in ((0, 1), (1, 0)):
        a = block[:, ys[:, None], xs[None, :]].reshape(block.shape[0], -1).T
        b = block[:, ys[:, None] + dy, xs[None, :] + dx].reshape(block.shape[0], -1).T
        sa = _segments(a, design.segment, max(1, design.segment // 2))
        sb = _segments(b, design.segment, max(1, design.segment // 2))
        keep = (sa.min(axis=1) > BODY_THRESHOLD_HU) & (sb.min(axis=1) > BODY_THRESHOLD_HU)
        cross = ((sa[keep] @ g.T) * np.conj(sb[keep] @ g.T)).real
        total += cross.sum(axis=0)
        sq += (cross * cross).sum(axis=0)
        count += int(keep.sum())
    return total, sq, count


def _reference(design: _Design, direction: int) -> np.ndarray:
    """``(L, m)``: a box of width d at the slice centres, to tell in-plane segments that lie in the body."""
    centres = design.margin_mm + design.spacing_mm * np.arange(design.segment)
    return profile_weights(design.fine_px[direction], design.pixel_mm[direction], centres, design.spacing_mm)


def _plane_moments(images: np.ndarray, design: _Design, direction: int) -> tuple[np.ndarray, int]:
    """Sum of ``u v^T`` over fine segments ``u``, ``v`` of neighbouring columns of axial images.

    ``direction`` 0 degrades along the rows (vertical pixel columns), 1 along the columns.
    """
    m = design.fine_px[direction]
    ref = _reference(design, direction).astype(np.float32)
    moment = np.zeros((m, m))
    count = 0
    for image in images:
        lines = image.T if direction == 0 else image  # rows of `lines` are the sequences degraded
        a = _segments(np.ascontiguousarray(lines[:-1:_COLUMN_STEP]), m, _COLUMN_STEP)
        b = _segments(np.ascontiguousarray(lines[1::_COLUMN_STEP]), m, _COLUMN_STEP)
        keep = ((a @ ref.T).min(axis=1) > BODY_THRESHOLD_HU) & ((b @ ref.T).min(axis=1) > BODY_THRESHOLD_HU)
        a, b = a[keep].astype(np.float64), b[keep].astype(np.float64)
        moment += a.T @ b
        count += int(keep.sum())
    return 0.5 * (moment + moment.T), count


def _block_stats(array: np.ndarray, design: _Design, z0: int, z1: int, rows, cols) -> _Stats:
    block = array[z0:z1]
    z_sum, z_sq, z_count = _z_stats(block, design, rows, cols)
    picks = np.unique(np.linspace(z0, z1 - 1, _IMAGES_PER_BLOCK).round().astype(int))
    images = array[picks][:, rows, cols]
    moments, counts = [], []
    for direction in (0, 1):
        moment, count = _plane_moments(images, design, direction)
        moments.append(moment)
        counts.append(count)
    return _Stats(z_sum, z_sq, z_count, moments, counts)


def _all_stats(array: np.ndarray, design: _Design) -> list[_Stats]:
    """Statistics of each block of slices (blocks hold at least two segments' worth of slices)."""
    rows, cols = body_box(array)
    rows = slice(rows.start, max(rows.stop, rows.start + 2))
    cols = slice(cols.start, max(cols.stop, cols.start + 2))
    body_px = (rows.stop - rows.start, cols.stop - cols.start)
    if body_px[0] < design.fine_px[0] or body_px[1] < design.fine_px[1]:
        raise ParameterError(
            f"The body is too small to estimate the slice profile ({body_px[0]} x {body_px[1]} pixels; the "
            f"in-plane images must hold {design.fine_px[0]} x {design.fine_px[1]})."
        )
    n = array.shape[0]
    blocks = max(1, min(BLOCKS, (2 * n) // (3 * design.segment)))
    edges = np.linspace(0, n, blocks + 1).round().astype(int)
    return [
        _block_stats(array, design, int(a), int(b), rows, cols)
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]


# --------------------------------------------------------------------------------------------------
# candidates and misfit


def _candidate_filters(design: _Design, family: str, width_mm: float) -> list[np.ndarray]:
    """Per direction, the ``(phases, J, m)`` filters whose quadratic forms with ``C`` give the spectrum."""
    g = design.transform()
    out = []
    for direction in (0, 1):
        pixel = design.pixel_mm[direction]
        filters = []
        for phase in range(_PHASES):
            centres = (
                design.margin_mm + pixel * phase / _PHASES + design.spacing_mm * np.arange(design.segment)
            )
            w = profile_weights(design.fine_px[direction], pixel, centres, width_mm, family)
            filters.append(g @ w)
        out.append(np.stack(filters))
    return out


def _candidate_spectrum(stats: _Stats, filters: list[np.ndarray]) -> np.ndarray:
    total = 0.0
    for f, moment in zip(filters, stats.moments, strict=True):
        total = total + np.einsum("pjm,mn,pjn->j", f, moment, np.conj(f)).real / _PHASES
    return total / max(1, sum(stats.counts))


def _z_spectrum(stats: _Stats) -> tuple[np.ndarray, np.ndarray]:
    """Mean z cross-spectrum and the bins that stand above twice their standard error."""
    n = max(1, stats.z_count)
    mean = stats.z_sum / n
    var = np.maximum(stats.z_sq / n - mean * mean, 0.0)
    stderr = np.sqrt(var / n)
    return mean, mean > 2.0 * stderr


def _misfit(z: np.ndarray, good: np.ndarray, candidate: np.ndarray) -> float:
    """Mean squared log ratio over the good bins, up to a free scale (inf with fewer than 2 good bins)."""
    if good.sum() < 2:
        return math.inf
    c = np.maximum(candidate[good], 1e-12 * float(np.abs(candidate).max() or 1.0))
    r = np.log(z[good]) - np.log(c)
    r = np.clip(r - np.median(r), -4.0, 4.0)
    r -= r.mean()
    return float(np.mean(r * r))


def _misfit_table(design: _Design, stats: list[_Stats]) -> dict[str, np.ndarray]:
    """``table[family][s, i]``: misfit of width ``i`` on statistics ``s`` (blocks, then their sum)."""
    spectra = [_z_spectrum(s) for s in stats]
    table = {}
    for family in PROFILES:
        rows = np.full((len(stats), design.widths_mm.size), math.inf)
        for i, width in enumerate(design.widths_mm):
            filters = _candidate_filters(design, family, float(width))
            for s, st in enumerate(stats):
                if st.usable:
                    rows[s, i] = _misfit(*spectra[s], _candidate_spectrum(st, filters))
        table[family] = rows
    return table


def _choose_family(table: dict[str, np.ndarray], widths: np.ndarray, nominal_mm) -> tuple[str, float]:
    """The family (on the whole volume's statistics, the last row) and its margin over the other."""
    if nominal_mm is not None:
        band = (widths >= nominal_mm / FAMILY_BAND) & (widths <= nominal_mm * FAMILY_BAND)
    else:
        band = np.ones_like(widths, dtype=bool)
    best = {f: float(np.min(t[-1][band])) if band.any() else math.inf for f, t in table.items()}
    family = min(best, key=best.get)
    other = max(best, key=best.get)
    margin = best[other] / best[family] if best[family] > 0 else math.inf
    return family, margin


def _width_range(rows: np.ndarray, widths: np.ndarray) -> tuple[float, float]:
    """The widths that fit nearly as well as the best on the whole volume (misfit within
    :data:`RANGE_TOLERANCE` times the least), widened to hold each block's own best width."""
    whole = rows[-1]
    near = widths[whole <= RANGE_TOLERANCE * np.min(whole)]
    spread = [float(near.min()), float(near.max())]
    spread += [float(widths[int(np.argmin(r))]) for r in rows[:-1] if np.isfinite(r).any()]
    return min(spread), max(spread)


def estimate_profile(
    array_hu: np.ndarray,
    *,
    pixel_spacing_mm: tuple[float, float],
    spacing_mm: float,
    nominal_mm: float | None = None,
    scan_mode: str | None = None,
) -> ProfileEstimate:
    """Estimate the slice profile (family and FWHM) of a thick-slice CT volume from its own images.

    Parameters
    ----------
    array_hu : (slice, row, column) HU, slices every ``spacing_mm`` along axis 0.
    pixel_spacing_mm : (row spacing, column spacing) in mm.
    spacing_mm : slice spacing d in mm.
    nominal_mm : nominal slice thickness (DICOM SliceThickness), optional; it decides the family where the
        two families' free fits are close (see the module notes) and is recorded.
    scan_mode : ``"helical"`` or ``"sequential"`` (:data:`~sr4zct.volume.scan_mode.SCAN_MODES`), optional: fixes
        the family (Gaussian or box); the images then give the FWHM, and the margin still says which family
        they prefer.

    Returns
    -------
    ProfileEstimate

    Raises
    ------
    ParameterError
        When the volume is too small, holds too little body (above -500 HU), or no candidate fits.
    """
    if scan_mode is not None and scan_mode not in SCAN_MODES:
        raise ParameterError(f"Unknown scan mode {scan_mode!r}; use {' or '.join(SCAN_MODES)}.")
    a = np.asarray(array_hu)
    if a.ndim != 3:
        raise ParameterError(f"The slice profile is estimated from a 3-D volume, got shape {a.shape}.")
    pixel = (float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1]))
    design = _design(a.shape, pixel, float(spacing_mm), nominal_mm)
    blocks = _all_stats(a, design)
    whole = blocks[0]
    for b in blocks[1:]:
        whole = whole + b
    if not whole.usable:
        raise ParameterError(
            "Too little of the volume is body (finite values above -500 HU) to estimate the slice profile."
        )
    stats = blocks + [whole] if len(blocks) > 1 else [whole]
    with single_thread():  # hundreds of tiny tensor operations: thread hand-offs would cost more
        table = _misfit_table(design, stats)
    family, margin = _choose_family(table, design.widths_mm, nominal_mm)
    source = "images"
    if scan_mode is not None:
        if SCAN_MODES[scan_mode] != family:  # the margin stays the fixed family's: below 1, images disagree
            family, margin = SCAN_MODES[scan_mode], 1.0 / margin if margin > 0 else math.inf
        source = f"{scan_mode} scan"
    rows = table[family]
    if not np.isfinite(rows[-1]).any():
        raise ParameterError("No candidate slice profile matches the volume's statistics.")
    fwhm = float(design.widths_mm[int(np.argmin(rows[-1]))])
    low, high = _width_range(rows, design.widths_mm)
    return ProfileEstimate(
        family=family,
        fwhm_mm=fwhm,
        fwhm_range_mm=(low, high),
        misfit={f: float(np.min(t[-1])) for f, t in table.items()},
        family_margin=margin,
        nominal_mm=None if nominal_mm is None else float(nominal_mm),
        segments=whole.z_count,
        family_source=source,
    )


def estimate_volume_profile(
    volume, *, thickness_mm: float | None = None, scan_mode: str | None = None
) -> ProfileEstimate:
    """:func:`estimate_profile` of a :class:`~sr4zct.volume.Volume`, from its own geometry.

    ``thickness_mm`` replaces the geometry's nominal thickness (as a user-given thickness does), ``scan_mode``
    the geometry's scan mode (read from DICOM). The slice spacing is the geometry's (the median step when the
    positions are irregular).
    """
    g = volume.geometry
    nominal = thickness_mm if thickness_mm is not None else g.slice_thickness_mm
    return estimate_profile(
        np.asarray(volume.array, dtype=np.float32),
        pixel_spacing_mm=g.pixel_spacing_mm,
        spacing_mm=g.slice_spacing_mm,
        nominal_mm=nominal,
        scan_mode=scan_mode if scan_mode is not None else g.scan_mode,
    )
