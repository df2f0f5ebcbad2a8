"""A look at the result while training runs: one coronal image, linear interpolation beside the network's.

:class:`CoronalPreview` z-interpolates one coronal image of the thick-slice volume once (the image through
the point the user looks at; by default the middle of the body) and applies the best network so far to it
whenever training asks. The image is what the network sees at inference: the coronal estimate before it is
averaged with the sagittal one. It is written two ways: as a side-by-side PNG (linear | current, for the
command line's ``--preview``) and as a one-image volume with the exact geometry of that coronal plane of the
result (for Slicer, which shows it in a slice view beside the original).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from sr4zct.errors import OutputError
from sr4zct.io.ownership import PNG_MARKER
from sr4zct.volume import SeriesGeometry, Volume

__all__ = ["PNG_MARKER", "CoronalPreview", "PreviewPublisher", "check_preview_path", "write_preview_png"]

#: display window of the PNG, HU (soft tissue to bone edges: level 100, width 1000)
WINDOW_HU = (-400.0, 600.0)


class CoronalPreview:
    """One coronal image of a volume, before and after the network.

    Parameters
    ----------
    array_hu : np.ndarray
        The thick-slice volume, ``(slice, row, column)``.
    geometry : SeriesGeometry
        Its geometry.
    slice_positions_mm : np.ndarray
        The slice centres the enhancement uses (as validated).
    normalisation : Normalisation
        The intensity map of the network.
    device : torch.device
        Where the network runs.
    row : int, optional
        Which coronal image (row index); default the middle row of the body box.
    """

    def __init__(
        self,
        array_hu: np.ndarray,
        geometry: SeriesGeometry,
        *,
        slice_positions_mm: np.ndarray,
        normalisation: Any,
        device: Any,
        row: int | None = None,
    ):
        from sr4zct.method import acquisition
        from sr4zct.method.body import body_box

        rows = body_box(array_hu)[0]
        self.row = int(
            np.clip((rows.start + rows.stop) // 2 if row is None else row, 0, array_hu.shape[1] - 1)
        )
        self.geometry = geometry
        self.normalisation = normalisation
        self.device = device
        self.range_hu = (float(np.min(array_hu)), float(np.max(array_hu)))
        pitch = float(geometry.pixel_spacing_mm[0])
        self.positions_mm = acquisition.output_positions_mm(slice_positions_mm, pitch)
        image = np.asarray(array_hu[:, self.row : self.row + 1, :], dtype=np.float32)
        self.linear = acquisition.resample_slices(image, slice_positions_mm, self.positions_mm, axis=0)[
            :, 0, :
        ]
        self.seconds = 0.0  # time of the last rendering

    def render(self, model: Any) -> np.ndarray:
        """The coronal image through ``model`` (HU, ``(z, columns)``); ``None`` gives linear interpolation."""
        import torch

        from sr4zct.method.inference import predict_images

        if model is None:
            return self.linear.copy()
        t0 = time.monotonic()
        x = self.normalisation.forward(torch.from_numpy(np.ascontiguousarray(self.linear[None])))
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                y = predict_images(model, x, device=torch.device(self.device))
        finally:
            model.train(was_training)
        out = np.clip(self.normalisation.inverse(y)[0].numpy(), *self.range_hu).astype(np.float32)
        self.seconds = time.monotonic() - t0
        return out

    def volume(self, image: np.ndarray) -> Volume:
        """``image`` as a one-row volume placed where this coronal plane lies in the enhanced result."""
        g = self.geometry
        shift = float(self.positions_mm[0] - g.slice_positions_mm[0])
        origin = (
            np.asarray(g.origin_lps)
            + shift * np.asarray(g.axes_lps[0])
            + self.row * g.pixel_spacing_mm[0] * np.asarray(g.axes_lps[1])
        )
        pitch = float(self.positions_mm[1] - self.positions_mm[0]) if len(self.positions_mm) > 1 else 1.0
        rel = self.positions_mm - self.positions_mm[0]
        geometry = dataclasses.replace(
            g, shape=(len(rel), 1, g.shape[2]), origin_lps=tuple(float(v) for v in origin),
            slice_positions_mm=tuple(float(p) for p in rel), slice_spacing_mm=pitch, slice_thickness_mm=pitch,
            thickness_source="sr4zct", irregular_positions=(), thickness_values_mm=(pitch,), warnings=(),
        )  # fmt: skip
        return Volume(np.ascontiguousarray(image[:, None, :], dtype=np.float32), geometry,
                      metadata={"sr4zct_content": "preview: one coronal image of the result being trained"})  # fmt: skip


def check_preview_path(path: str | os.PathLike) -> Path:
    """The preview PNG may be written at ``path``: it is new, or an earlier SR4ZCT preview; else OutputError."""
    path = Path(path).expanduser().resolve()
    if path.suffix.lower() != ".png":
        raise OutputError(f"The preview {path.name} must be a .png file.")
    if path.is_dir():
        raise OutputError(f"The preview {path} is a folder; give a .png file name.")
    if path.exists() and not _is_preview(path):
        raise OutputError(f"The preview {path} exists and is not an SR4ZCT preview; choose another file.")
    if not path.parent.is_dir():
        raise OutputError(f"The folder of the preview {path} does not exist.")
    return path


def _is_preview(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return PNG_MARKER in getattr(image, "text", {})
    except (OSError, ValueError):
        return False


def _grey(image: np.ndarray) -> np.ndarray:
    lo, hi = WINDOW_HU
    return (np.clip((image - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_preview_png(
    path: str | os.PathLike, linear: np.ndarray, enhanced: np.ndarray, caption: str
) -> Path:
    """Write ``linear | enhanced`` side by side (superior at the top) to ``path``, replacing it atomically.

    ``caption`` (e.g. ``"step 1200, +2.1 dB on held-out axial images"``) is drawn under the images and kept in
    the PNG's text; the file carries :data:`PNG_MARKER`, so only an SR4ZCT preview is ever replaced.
    """
    from PIL import Image, ImageDraw, PngImagePlugin

    path = check_preview_path(path)
    gap, line = 4, 14
    left, right = _grey(linear[::-1]), _grey(enhanced[::-1])  # z grows upwards in the picture
    height, width = left.shape
    canvas = np.zeros((height + 2 * line + 4, 2 * width + gap), dtype=np.uint8)
    canvas[:height, :width], canvas[:height, width + gap :] = left, right
    picture = Image.fromarray(canvas, mode="L")
    draw = ImageDraw.Draw(picture)
    draw.text((4, height + 2), "linear", fill=255)
    draw.text((width + gap + 4, height + 2), "SR4ZCT", fill=255)
    draw.text((4, height + line + 2), caption, fill=255)
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_MARKER, caption)
    from sr4zct.io.atomic import temporary_name

    tmp = temporary_name(path)  # unique: a file of that name that was there before is never replaced
    try:
        picture.save(tmp, format="PNG", pnginfo=info)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"Cannot write the preview {path}: {exc.strerror or exc}.") from exc
    return path


class PreviewPublisher:
    """Training's ``on_validation``: renders the preview when it is due, writes it and reports it.

    A preview is due at the first validation, then whenever the best checkpoint has changed and the time since
    the last one is at least ``min_interval_s`` and 1 / ``max_share`` times what the last one cost, so that the
    preview never takes more than ``max_share`` of training time.

    Parameters
    ----------
    maker : CoronalPreview
        The image to show.
    build_network : callable
        Makes a network of the architecture being trained (the checkpoint's weights are loaded into it).
    path : str, optional
        ``.png`` (side by side) or ``.nrrd`` (the coronal image placed in 3-D), replaced at each update.
    emit : callable, optional
        Receives the fields of each ``preview`` event; without ``path`` they include the images
        (``linear_hu``, ``image_hu``).
    """

    def __init__(
        self,
        maker: CoronalPreview,
        build_network: Any,
        *,
        path: str | os.PathLike | None = None,
        emit: Any = None,
        min_interval_s: float = 5.0,
        max_share: float = 0.05,
        clock: Any = time.monotonic,
    ):
        self.maker, self.path, self.emit = maker, None if path is None else Path(path), emit
        self.min_interval_s, self.max_share, self.clock = float(min_interval_s), float(max_share), clock
        self._build, self._model = build_network, None
        self._last: float | None = None
        self._shown_step: int | None = None
        self._cost = 0.0
        self.seconds = 0.0  # all previews together
        self.count = 0

    def due(self, checkpoint: Any) -> bool:
        if self._last is None:
            return True
        if checkpoint.best_step == self._shown_step:
            return False  # the same image again
        return self.clock() - self._last >= max(self.min_interval_s, self._cost / self.max_share)

    def __call__(self, checkpoint: Any) -> None:
        if not self.due(checkpoint):
            return
        t0 = self.clock()
        if self._model is None:
            self._model = self._build().to(self.maker.device)
        self._model.load_state_dict(checkpoint.best_state)
        image = self.maker.render(self._model if checkpoint.best_step > 0 else None)
        caption = f"step {checkpoint.best_step}, {checkpoint.gain_db:+.2f} dB on held-out axial images"
        fields: dict[str, Any] = {
            "step": checkpoint.step, "best_step": checkpoint.best_step, "validation_gain_db": checkpoint.gain_db,
            "elapsed_s": checkpoint.elapsed_s, "row": self.maker.row, "caption": caption,
        }  # fmt: skip
        if self.path is not None:
            fields["path"] = str(self._write(image, caption, checkpoint))
        else:
            fields.update(linear_hu=self.maker.linear, image_hu=image)
        self._shown_step = checkpoint.best_step
        self._cost = self.clock() - t0
        self.seconds += self._cost
        self.count += 1
        self._last = self.clock()
        if self.emit is not None:
            self.emit(fields)

    def _write(self, image: np.ndarray, caption: str, checkpoint: Any) -> Path:
        if self.path.suffix.lower() == ".png":
            return write_preview_png(self.path, self.maker.linear, image, caption)
        from sr4zct.io import write_volume

        meta = {
            "sr4zct_preview_step": str(checkpoint.best_step),
            "validation_gain_db": f"{checkpoint.gain_db:.2f}",
        }
        return Path(write_volume(self.maker.volume(image), self.path, metadata=meta, overwrite=True))
