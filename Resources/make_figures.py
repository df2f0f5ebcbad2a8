"""Render the extension's icon and screenshot-like figure.

Usage (from the repository root)::

    python Resources/make_figures.py                      # icons + screenshot (linear interpolation as "after")
    python Resources/make_figures.py --enhanced OUT.nrrd  # "after" = an SR4ZCT result of the same series

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


def read_series(folder: Path):
    """HU array ``(z, y, x)`` sorted by position, slice positions along z and pixel spacing (headers read once)."""
    import pydicom

    slices = []
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        z = float(ds.ImagePositionPatient[2])
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slices.append((z, hu))
        pixel_mm = float(ds.PixelSpacing[0])
        thickness_mm = float(ds.SliceThickness)
    slices.sort(key=lambda s: s[0])
    positions = np.array([s[0] for s in slices])
    return np.stack([s[1] for s in slices]), positions, pixel_mm, thickness_mm


def linear_along_z(volume: np.ndarray, positions_mm: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Linear interpolation along axis 0 onto a regular grid starting at the first slice."""
    out_z = np.arange(positions_mm[0], positions_mm[-1] + 1e-6, spacing_mm)
    idx = np.clip(np.searchsorted(positions_mm, out_z, side="right") - 1, 0, len(positions_mm) - 2)
    w = ((out_z - positions_mm[idx]) / (positions_mm[idx + 1] - positions_mm[idx]))[:, None, None]
    return (1 - w) * volume[idx] + w * volume[idx + 1]


def render_screenshot(path: Path, enhanced: Path | None = None) -> None:
    volume, positions, pixel_mm, thickness_mm = read_series(L291_DIR)
    spacing_mm = float(np.median(np.diff(positions)))
    row = volume.shape[1] // 2 + 20  # coronal plane through the abdomen, anterior-posterior middle
    x0, x1 = 40, volume.shape[2] - 40
    z0, z1 = 80, 200  # a 240 mm stretch of slices (at 2 mm spacing)
    before = volume[z0:z1, row, x0:x1]
    if enhanced is None:
        after_vol = linear_along_z(volume[z0:z1, row : row + 1, x0:x1], positions[z0:z1], pixel_mm)
        after = after_vol[:, 0]
        after_label = "resampled to 0.74 mm (linear interpolation)"
    else:
        import SimpleITK as sitk

        image = sitk.ReadImage(str(enhanced))
        arr = sitk.GetArrayFromImage(image).astype(np.float32)
        z_out = (
            image.GetOrigin()[2] + np.arange(arr.shape[0]) * image.GetSpacing()[2] * image.GetDirection()[8]
        )
        order = np.argsort(z_out)
        arr, z_out = arr[order], z_out[order]
        keep = (z_out >= positions[z0]) & (z_out <= positions[z1 - 1])
        after = arr[keep, row, x0:x1]
        after_label = f"SR4ZCT, {image.GetSpacing()[2]:.2f} mm"
    extent_mm = (0, (x1 - x0) * pixel_mm, 0, (z1 - z0 - 1) * spacing_mm)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), dpi=100, facecolor="black")
    for ax, img, title in (
        (axes[0], before[::-1], f"Acquired: {thickness_mm:g} mm slices every {spacing_mm:g} mm"),
        (axes[1], after[::-1], f"Enhanced: {after_label}"),
    ):
        ax.imshow(
            img,
            cmap="gray",
            vmin=WINDOW_HU[0],
            vmax=WINDOW_HU[1],
            extent=extent_mm,
            interpolation="nearest",
            aspect="equal",
        )
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
    args = parser.parse_args(argv)
    for p in ICON_PATHS:
        render_icon(p)
    if not args.icons_only:
        if not L291_DIR.is_dir():
            raise SystemExit(f"{L291_DIR} not found: the screenshot needs the real L291 series")
        render_screenshot(SCREENSHOT_PATH, args.enhanced)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
