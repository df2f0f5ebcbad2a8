"""Apply a trained network to a thick-slice volume (docs/method.md, section 3).

1. Resample along z (array axis 0) from the true slice centres (irregular spacing allowed) to an internal
   grid whose pitch equals the in-plane pixel size: the row spacing for coronal images (they match the
   vertical training pairs) and the column spacing for sagittal images (horizontal pairs).
2. Run the network on every coronal image ``up[:, r, :]`` and sagittal image ``up[:, :, c]`` inside the
   body bounding box (outside it the result stays linear interpolation), batched and tiled so that memory
   stays bounded.
3. Resample both estimates to the output grid if it differs from the internal one, and fuse them
   (:func:`sr4zct.method.fusion.fuse_estimates`: mean, and optionally ``|coronal - sagittal|``).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from sr4zct.method import acquisition
from sr4zct.method.body import body_box
from sr4zct.method.fusion import fuse_estimates
from sr4zct.method.training import Normalisation
from sr4zct.system.devices import (
    autocast,
    configure_device,
    free_memory_bytes,
    gpu_pass_pixels,
    is_out_of_memory,
)
from sr4zct.system.progress import ProgressReporter

__all__ = [
    "CPU_PASS_PIXELS",
    "FlipAverage",
    "GPU_PASS_PIXELS",
    "InferenceResult",
    "body_box",
    "default_pass_pixels",
    "enhance_array",
    "inference_workload",
    "predict_images",
]


@dataclass
class InferenceResult:
    array: np.ndarray  # (n_out, rows, columns) float32 HU
    positions_mm: np.ndarray  # output slice positions, same origin as the input positions
    uncertainty: np.ndarray | None
    messages: list[str]
    # seconds per part: resample (to the internal and the output grid), gather (images out of the volume,
    # normalised), network (forward passes, tiling), scatter (back into the volume), fuse (mean, clip)
    timings_s: dict[str, float] = field(default_factory=dict)


class FlipAverage(nn.Module):
    """Test-time augmentation: the mean of ``model`` over the four horizontal/vertical flips of its input.

    Training sees random flips, so the four estimates are equally good and partly independent; their mean
    measured +0.13 dB body-box PSNR on vhm-head (5 mm every 2.5 mm) for four times the inference time.
    """

    FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.halo_px = int(getattr(model, "halo_px", 16))
        self.multiple_px = int(getattr(model, "multiple_px", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.model(x)
        for dims in self.FLIPS[1:]:
            total = total + self.model(x.flip(dims)).flip(dims)
        return total / len(self.FLIPS)


# Pixels per forward pass on the CPU. Measured on 2 cores (default network, 8 x 32): 256 k pixels per pass
# run 1.25-1.65x faster than 2 M (the feature maps of a pass stay in cache); 128 k is no faster again.
CPU_PASS_PIXELS = 262_144
# On a GPU without a free-memory reading (MPS): a pass of this size fits any device SR4ZCT supports.
GPU_PASS_PIXELS = 4_000_000


def default_pass_pixels(device: torch.device | str) -> int:
    """Pixels per forward pass that suit ``device``: :data:`CPU_PASS_PIXELS` on the CPU, on CUDA what fits in
    the free memory (:func:`sr4zct.system.devices.gpu_pass_pixels`), else :data:`GPU_PASS_PIXELS`."""
    device = torch.device(device)
    if device.type == "cpu":
        return CPU_PASS_PIXELS
    free = free_memory_bytes(device)
    return GPU_PASS_PIXELS if free is None else gpu_pass_pixels(free)


@dataclass(frozen=True)
class Tile:
    """One forward pass of a tiled image: rows ``[y0, y1)`` and columns ``[x0, x1)`` are kept from the pass
    over rows ``[ya, yb)`` and columns ``[xa, xb)`` (the kept part plus the halo, within the image)."""

    y0: int
    y1: int
    ya: int
    yb: int
    x0: int
    x1: int
    xa: int
    xb: int

    @property
    def pixels(self) -> int:
        return (self.yb - self.ya) * (self.xb - self.xa)


def _grid(n: int, parts: int, multiple: int) -> list[tuple[int, int]]:
    size = math.ceil(math.ceil(n / parts) / multiple) * multiple
    return [(a, min(n, a + size)) for a in range(0, n, size)]


@functools.lru_cache(maxsize=64)
def _tile_plan(
    height: int, width: int, *, max_pixels: int, halo: int, multiple: int
) -> tuple[Tile, ...] | None:
    """How :func:`predict_images` cuts an image too large for one pass, ``None`` when it fits in one.

    Near-equal tiles on the ``multiple`` grid (the halo rounded up to it, so that every pass keeps the
    network's pixel-unshuffle phase); of the splits whose passes hold at most ``max_pixels`` pixels (or, if
    none does, the finest split considered), the one that passes the fewest pixels in all: splitting both
    axes keeps the halo overhead small (a 922 x 512 image at 256 k pixels per pass: 2 x 1 tiles pass 4 %
    more pixels than the image has, 3 vertical strips 14 %).
    """
    if height * width <= max_pixels:
        return None
    halo = math.ceil(halo / multiple) * multiple

    def splits(n: int) -> dict[int, tuple[list[tuple[int, int]], int, int]]:
        """Parts -> (the parts, their passed length in all, the longest passed length)."""
        out = {}
        for parts in range(1, min(64, max(1, n // multiple)) + 1):
            grid = _grid(n, parts, multiple)
            spans = [min(n, b + halo) - max(0, a - halo) for a, b in grid]
            out[len(grid)] = (grid, sum(spans), max(spans))
        return out

    rows, cols = splits(height), splits(width)
    # passed pixels factorise: (row spans in all) x (column spans in all); the largest pass likewise
    best = min(
        (
            (0, r[1] * c[1], ny * nx) if r[2] * c[2] <= max_pixels else (1, r[2] * c[2], ny * nx),
            ny,
            nx,
        )
        for ny, r in rows.items()
        for nx, c in cols.items()
    )
    _, ny, nx = best
    return tuple(
        Tile(
            y0,
            y1,
            max(0, y0 - halo),
            min(height, y1 + halo),
            x0,
            x1,
            max(0, x0 - halo),
            min(width, x1 + halo),
        )
        for y0, y1 in rows[ny][0]
        for x0, x1 in cols[nx][0]
    )


def _context(inner: slice, halo: int, full: int) -> slice:
    """``inner`` widened by ``halo`` on both sides, within ``[0, full)``."""
    return slice(max(0, inner.start - halo), min(full, inner.stop + halo))


def _to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``images`` on ``device``; from the CPU to CUDA through pinned memory (one asynchronous copy)."""
    if images.device == device:
        return images
    if device.type == "cuda" and images.device.type == "cpu":
        return images.pin_memory().to(device, non_blocking=True)
    return images.to(device)


def predict_images(
    model: nn.Module,
    images: torch.Tensor,
    *,
    device: torch.device,
    max_pixels: int | None = None,
    precision: str | None = None,
) -> torch.Tensor:
    """Run ``model`` on normalised images ``(n, height, width)``; returns ``(n, height, width)`` on the CPU.

    Images are batched so that one forward pass holds at most ``max_pixels`` pixels (default
    :func:`default_pass_pixels`); larger images are cut into near-equal tiles that overlap by the
    network's receptive-field radius and are stitched (:func:`_tile_plan`). On a GPU the whole block of images goes to the
    device in one pinned copy and the results come back in one copy. The passes run in ``precision``
    (:func:`sr4zct.system.devices.autocast`; None: the device's default); the result is float32.
    """
    if max_pixels is None:
        max_pixels = default_pass_pixels(device)
    n, h, w = images.shape
    multiple = int(getattr(model, "multiple_px", 1))
    halo = int(getattr(model, "halo_px", 16))
    src = _to_device(images, device)
    out = torch.empty_like(src) if src.device.type != "cpu" else torch.empty_like(images)
    tiles = _tile_plan(h, w, max_pixels=max_pixels, halo=halo, multiple=multiple)
    with autocast(device, precision):
        if tiles is None:
            per_batch = max(1, max_pixels // (h * w))
            for i in range(0, n, per_batch):
                out[i : i + per_batch] = model(src[i : i + per_batch, None])[:, 0]
        else:
            for i in range(n):
                for t in tiles:
                    y = model(src[i : i + 1, None, t.ya : t.yb, t.xa : t.xb])[0, 0]
                    out[i, t.y0 : t.y1, t.x0 : t.x1] = y[t.y0 - t.ya : t.y1 - t.ya, t.x0 - t.xa : t.x1 - t.xa]
    return out.cpu() if out.device.type != "cpu" else out


def inference_workload(
    model: nn.Module,
    shape: tuple[int, int, int],
    n_out: int,
    box: tuple[slice, slice],
    *,
    max_pixels: int,
) -> tuple[int, tuple[int, int, int]]:
    """The pixels :func:`enhance_array` will pass through ``model``, and the shape of one typical pass.

    Parameters
    ----------
    model : the network (its ``halo_px`` and ``multiple_px`` decide the tiles).
    shape : input volume shape ``(slices, rows, columns)``.
    n_out : slices of the internal (in-plane pitch) grid, i.e. the height of every coronal/sagittal image.
    box : body box rows and columns (:func:`body_box`).
    max_pixels : pixels per forward pass (as given to :func:`predict_images`).

    Returns
    -------
    ``(pixels, (batch, height, width))``: tile halos included; the pass shape is a coronal one.
    """
    multiple = int(getattr(model, "multiple_px", 1))
    halo = int(getattr(model, "halo_px", 16))
    _, n_rows, n_cols = shape
    rows, cols = box
    total = 0
    typical: tuple[int, int, int] | None = None
    for count, inner, full in (
        (rows.stop - rows.start, cols, n_cols),
        (cols.stop - cols.start, rows, n_rows),
    ):
        ctx = _context(inner, halo, full)
        width = ctx.stop - ctx.start
        tiles = _tile_plan(n_out, width, max_pixels=max_pixels, halo=halo, multiple=multiple)
        if tiles is None:
            per_image = n_out * width
            pass_shape = (max(1, min(count, max_pixels // per_image)), n_out, width)
        else:
            per_image = sum(t.pixels for t in tiles)
            largest = max(tiles, key=lambda t: t.pixels)
            pass_shape = (1, largest.yb - largest.ya, largest.xb - largest.xa)
        total += count * per_image
        typical = typical or pass_shape
    assert typical is not None
    return total, typical


def _add(timings: dict[str, float], name: str, seconds: float) -> None:
    timings[name] = timings.get(name, 0.0) + seconds


def _run_orientation(
    model: nn.Module,
    volume: np.ndarray,
    dest: np.ndarray,
    *,
    coronal: bool,
    box: tuple[slice, slice],
    norm: Normalisation,
    device: torch.device,
    max_pixels: int,
    reporter: ProgressReporter | None,
    done: int,
    total: int,
    messages: list[str],
    timings: dict[str, float],
    precision: str | None = None,
) -> int:
    """Enhance the coronal (``coronal=True``) or sagittal images of ``volume`` inside ``box`` into ``dest``.

    ``dest`` may be ``volume`` itself: each batch reads its images before writing the same images back.
    """
    rows, cols = box
    halo = int(getattr(model, "halo_px", 16))
    n_rows, n_cols = volume.shape[1:]
    fixed, inner, ctx = (
        (rows, cols, _context(cols, halo, n_cols)) if coronal else (cols, rows, _context(rows, halo, n_rows))
    )
    keep = slice(inner.start - ctx.start, inner.stop - ctx.start)
    height, width = volume.shape[0], ctx.stop - ctx.start
    # images gathered (and transposed) per block: independent of the pass size, which is small on the CPU
    chunk = max(1, min(64, max(4 * max_pixels, 8_000_000) // max(1, height * width)))
    idx = fixed.start
    while idx < fixed.stop:
        stop = min(fixed.stop, idx + chunk)
        t0 = time.perf_counter()
        if coronal:
            block = volume[:, idx:stop, ctx]  # (z, k, width)
            images = torch.from_numpy(np.ascontiguousarray(block.transpose(1, 0, 2)))
        else:
            block = volume[:, ctx, idx:stop]  # (z, width, k)
            images = torch.from_numpy(np.ascontiguousarray(block.transpose(2, 0, 1)))
        images = norm.forward(images)
        t1 = time.perf_counter()
        _add(timings, "gather", t1 - t0)
        try:
            with torch.inference_mode():
                pred = predict_images(
                    model, images, device=device, max_pixels=max_pixels, precision=precision
                )
        except RuntimeError as exc:
            if not is_out_of_memory(exc) or max_pixels <= 4096:
                raise
            max_pixels //= 4
            chunk = max(1, chunk // 4)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            messages.append(f"Out of memory on {device}; inference tiles reduced to {max_pixels} pixels.")
            continue
        t2 = time.perf_counter()
        _add(timings, "network", t2 - t1)
        pred = norm.inverse(pred).numpy()[:, :, keep]
        if coronal:
            dest[:, idx:stop, cols] = pred.transpose(1, 0, 2)
        else:
            dest[:, rows, idx:stop] = pred.transpose(1, 2, 0)
        _add(timings, "scatter", time.perf_counter() - t2)
        done += stop - idx
        if reporter is not None:
            reporter.report("infer", done, total)
        idx = stop
    return done


def enhance_array(
    model: nn.Module | None,
    array_hu: np.ndarray,
    *,
    slice_positions_mm: np.ndarray,
    pixel_spacing_mm: tuple[float, float],
    target_spacing_mm: float | None = None,
    normalisation: Normalisation | None = None,
    device: torch.device | str = "cpu",
    uncertainty: bool = False,
    crop_body: bool = True,
    max_pixels: int | None = None,
    test_time_flips: bool = False,
    reporter: ProgressReporter | None = None,
    precision: str | None = None,
) -> InferenceResult:
    """Enhance the through-plane resolution of ``array_hu`` (``(slice, row, column)``, HU).

    Parameters
    ----------
    model : trained residual network (input and output normalised); ``None`` gives plain linear
        interpolation on the same output grid (what a network that never beat the identity would give).
    array_hu : thick-slice volume, axis 0 through-plane.
    slice_positions_mm : centre of every input slice along axis 0 (strictly increasing, may be irregular).
    pixel_spacing_mm : (row spacing, column spacing).
    target_spacing_mm : output slice spacing; default the row spacing (isotropic output).
    normalisation : the intensity map the model was trained with.
    device : where the network runs.
    uncertainty : also return ``|coronal - sagittal|`` (HU).
    crop_body : process only the body bounding box (HU > -500); outside it the output is linear.
    max_pixels : pixels per forward pass (memory bound); default :func:`default_pass_pixels`.
    test_time_flips : average the network over the four flips of every image (:class:`FlipAverage`).
    reporter : receives ``infer`` progress and is polled for cancellation.
    precision : the forward passes' autocast type, ``"fp32"``, ``"bf16"`` or ``"fp16"``; None: the device's
        default (:func:`sr4zct.system.devices.amp_dtype`).

    Returns
    -------
    InferenceResult: output array ``(n_out, rows, columns)`` float32 HU on positions starting at the first
    input slice centre with pitch ``target_spacing_mm``.
    """
    norm = normalisation or Normalisation()
    device = torch.device(device)
    configure_device(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # training's cached blocks: the free memory decides the pass size
    if max_pixels is None:
        max_pixels = default_pass_pixels(device)
    positions = np.asarray(slice_positions_mm, dtype=np.float64)
    row_mm, col_mm = (float(v) for v in pixel_spacing_mm)
    target = row_mm if target_spacing_mm is None else float(target_spacing_mm)
    out_positions = acquisition.output_positions_mm(positions, target)
    src = np.asarray(array_hu, dtype=np.float32)
    box = body_box(src) if crop_body else (slice(0, src.shape[1]), slice(0, src.shape[2]))
    messages: list[str] = []
    if model is not None:
        model.eval().to(memory_format=torch.channels_last)  # about twice as fast on the CPU
        if test_time_flips:
            model = FlipAverage(model).eval()

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    grid_c = acquisition.output_positions_mm(positions, row_mm)
    same_grid = abs(row_mm - col_mm) <= 1e-6 * row_mm
    grid_s = grid_c if same_grid else acquisition.output_positions_mm(positions, col_mm)
    up_c = acquisition.resample_slices(src, positions, grid_c, axis=0)
    total = (box[0].stop - box[0].start) + (box[1].stop - box[1].start)
    if reporter is not None:
        reporter.report("infer", 0, total)
    coronal = up_c.copy()
    _add(timings, "resample", time.perf_counter() - t0)
    common = {"box": box, "norm": norm, "device": device, "max_pixels": max_pixels, "reporter": reporter,
              "precision": precision}  # fmt: skip
    done = 0
    if model is not None:
        done = _run_orientation(
            model, up_c, coronal, coronal=True, done=0, total=total, messages=messages, timings=timings,
            **common,
        )  # fmt: skip
    t0 = time.perf_counter()
    if same_grid:
        sagittal = up_c  # enhanced in place: nothing else needs the linear volume any more
    else:
        del up_c
        sagittal = acquisition.resample_slices(src, positions, grid_s, axis=0)
    _add(timings, "resample", time.perf_counter() - t0)
    if model is not None:
        _run_orientation(
            model, sagittal, sagittal, coronal=False, done=done, total=total, messages=messages,
            timings=timings, **common,
        )  # fmt: skip
    elif reporter is not None:
        reporter.report("infer", total, total)

    def to_output(vol: np.ndarray, grid: np.ndarray) -> np.ndarray:
        if grid.shape == out_positions.shape and np.allclose(grid, out_positions, atol=1e-6):
            return vol
        return acquisition.resample_slices(vol, grid, out_positions, axis=0, extrapolate=False)

    t0 = time.perf_counter()
    coronal = to_output(coronal, grid_c)
    sagittal = to_output(sagittal, grid_s)
    t1 = time.perf_counter()
    _add(timings, "resample", t1 - t0)
    fused, disagreement = fuse_estimates(
        coronal, sagittal, value_range=(float(src.min()), float(src.max())), disagreement=uncertainty
    )
    _add(timings, "fuse", time.perf_counter() - t1)
    return InferenceResult(
        array=fused,
        positions_mm=out_positions,
        uncertainty=disagreement,
        messages=messages,
        timings_s=timings,
    )
