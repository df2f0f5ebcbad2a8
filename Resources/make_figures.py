"""Render the extension's icon and screenshot-like figure.

Usage (from the repository root)::

    python Resources/make_figures.py                        # icons + screenshot, "after" = linear interpolation
    python Resources/make_figures.py --write-crop crop.nrrd # the figure's region of L291, to enhance:
    python -m sr4zct enhance crop.nrrd --thickness 3 -o crop_sr4zct.nrrd --preset fast
    python Resources/make_figures.py --enhanced crop_sr4zct.nrrd   # "after" = the SR4ZCT result

Outputs:
* ``Resources/SR4ZCT.png`` (128x128 extension icon, Extensions Index) and the module icon
  ``SR4ZCTModule/Resources/Icons/SR4ZCT.png`` (same picture);
* ``Resources/Screenshot1.png``: a coronal view of the real L291 series (3 mm slices every 2 mm) as
  acquired and resampled to isotropic voxels. Without ``--enhanced`` the right panel is plain linear
  interpolation along z and is labelled so; with it, the panel shows the given SR4ZCT output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
L291_DIR = (ROOT / ".." / "shared" / "data" / "L291_3mm_overlap1mm").resolve()
ICON_PATHS = (ROOT / "Resources" / "SR4ZCT.png", ROOT / "SR4ZCTModule" / "Resources" / "Icons" / "SR4ZCT.png")
SCREENSHOT_PATH = ROOT / "Resources" / "Screenshot1.png"
WINDOW_HU = (-160.0, 240.0)  # soft-tissue window: level 40, width 400


def render_icon(path: Path, size_px: int = 128) -> None:
    """A blurred stack of thick slices turning into a sharp stack of thin ones."""
    fig = plt.figure(figsize=(1, 1), dpi=size_px)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.add_patch(plt.Rectangle((0.02, 0.02), 0.96, 0.96, color="#1d2b3a", ec="none"))
    for k in range(4):  # thick, overlapping, soft-edged slices
        y = 0.16 + k * 0.18
        ax.add_patch(plt.Rectangle((0.08, y), 0.34, 0.22, color="#7fa7c9", alpha=0.45, ec="none"))
    for k in range(11):  # thin, crisp slices
        y = 0.14 + k * 0.066
        ax.add_patch(plt.Rectangle((0.58, y), 0.34, 0.045, color="#f2f5f8", ec="none"))
    ax.annotate(
        "",
        xy=(0.56, 0.5),
        xytext=(0.44, 0.5),
        arrowprops={"arrowstyle": "-|>", "color": "#ffb347", "lw": 2.5},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=size_px)
    plt.close(fig)


# The figure's region of the L291 series (NumPy indices of the position-sorted stack): 240 mm of the
# abdomen, the central 256 rows, most of the width. Small enough to enhance on a laptop CPU.
CROP = {"slices": (80, 200), "rows": (128, 384), "columns": (40, 472)}
CORONAL_ROW = 148  # row inside the crop (through the kidneys and the spine)


def read_crop(folder: Path):
    """The figure's crop of the L291 series as a SimpleITK image (HU, physical geometry kept)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))  # sorted along the slice normal
    image = reader.Execute()
    (z0, z1), (y0, y1), (x0, x1) = CROP["slices"], CROP["rows"], CROP["columns"]
    return sitk.Cast(image[x0:x1, y0:y1, z0:z1], sitk.sitkInt16)


def _coronal(image) -> tuple[np.ndarray, float, float]:
    """Coronal image (superior up), its width and height in mm, from an image with axial slices along z."""
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(image).astype(np.float32)  # (z, y, x)
    if image.GetDirection()[8] < 0:  # slices stored from superior to inferior
        array = array[::-1]
    spacing = image.GetSpacing()
    return array[::-1, CORONAL_ROW, :], array.shape[2] * spacing[0], (array.shape[0] - 1) * spacing[2]


def render_screenshot(path: Path, enhanced: Path | None = None) -> None:
    import SimpleITK as sitk

    crop = read_crop(L291_DIR)
    before, width_mm, height_mm = _coronal(crop)
    spacing_mm = crop.GetSpacing()[2]
    if enhanced is None:
        # Linear interpolation along z (until an SR4ZCT result is passed with --enhanced).
        resampler = sitk.ResampleImageFilter()
        size = list(crop.GetSize())
        out_spacing = [crop.GetSpacing()[0], crop.GetSpacing()[1], crop.GetSpacing()[0]]
        size[2] = int((size[2] - 1) * spacing_mm / out_spacing[2]) + 1
        resampler.SetReferenceImage(crop)
        resampler.SetSize(size)
        resampler.SetOutputSpacing(out_spacing)
        resampler.SetInterpolator(sitk.sitkLinear)
        after, _, _ = _coronal(resampler.Execute(sitk.Cast(crop, sitk.sitkFloat32)))
        after_label = f"linear interpolation to {out_spacing[2]:.2f} mm"
    else:
        image = sitk.ReadImage(str(enhanced))
        after, _, _ = _coronal(image)
        meta = {k: image.GetMetaData(k) for k in ("preset", "steps") if image.HasMetaDataKey(k)}
        run = f" ({meta['preset']} preset, {meta['steps']} training steps)" if len(meta) == 2 else ""
        after_label = f"SR4ZCT{run}, {image.GetSpacing()[2]:.2f} mm"
    thickness_mm = 3.0  # SliceThickness of the series (checked by the tests on the real headers)
    extent_mm = (0, width_mm, 0, height_mm)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), dpi=100, facecolor="black")
    for ax, img, title in (
        (axes[0], before, f"Acquired: {thickness_mm:g} mm slices every {spacing_mm:g} mm"),
        (axes[1], after, f"Enhanced: {after_label}"),
    ):
        ax.imshow(img, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], extent=extent_mm,
                  interpolation="nearest", aspect="equal")  # fmt: skip
        ax.set_title(title, color="white", fontsize=10)
        ax.axis("off")
    fig.suptitle(
        "SR4ZCT in 3D Slicer: coronal view of a real abdominal CT (AAPM LDCT L291)",
        color="white",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, facecolor="black")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the SR4ZCT extension icon and screenshot.")
    parser.add_argument("--enhanced", type=Path, help="SR4ZCT output of the L291 series for the right panel")
    parser.add_argument("--icons-only", action="store_true")
    parser.add_argument("--write-crop", type=Path, help="write the figure's crop of L291 (NRRD) and stop")
    args = parser.parse_args(argv)
    if args.write_crop:
        import SimpleITK as sitk

        sitk.WriteImage(read_crop(L291_DIR), str(args.write_crop), useCompression=True)
        return 0
    for p in ICON_PATHS:
        render_icon(p)
    if not args.icons_only:
        if not L291_DIR.is_dir():
            raise SystemExit(f"{L291_DIR} not found: the screenshot needs the real L291 series")
        render_screenshot(SCREENSHOT_PATH, args.enhanced)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
