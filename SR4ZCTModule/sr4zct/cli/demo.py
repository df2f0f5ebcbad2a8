"""``sr4zct demo``: enhance a simulated thick-slice phantom and score it against its ground truth.

Builds the procedural phantom (thin slices), simulates a thick-slice acquisition with the exact model,
runs SR4ZCT on it, and prints body-box PSNR/SSIM of linear and B-spline interpolation along z and of
SR4ZCT (docs/method.md, section 5). Writes the volumes as NRRD, the scores as JSON and a coronal
comparison figure (when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sr4zct.run.options import PROFILES, EnhanceOptions

__all__ = ["DEMO_DEFAULTS", "DEMO_OPTIONS", "SIZES", "add_parser", "run", "run_demo"]

#: the enhancement options the demo takes: the same flags, types and checks as ``sr4zct enhance``
DEMO_OPTIONS = ("thickness_mm", "spacing_mm", "profile", "preset", "device", "seed", "max_minutes")
#: the demo's own defaults: a 3 mm / 2 mm box-profile acquisition, enhanced with the fast preset
DEMO_DEFAULTS = {"thickness_mm": 3.0, "spacing_mm": 2.0, "profile": "box", "preset": "fast"}

# phantom (shape, voxel_mm) per --size
SIZES: dict[str, tuple[tuple[int, int, int], float]] = {
    "tiny": ((40, 64, 64), 1.0),
    "small": ((96, 128, 128), 0.75),
    "medium": ((160, 192, 192), 0.75),
}

OUTPUT_FILES = (
    "ground_truth.nrrd",
    "thick_input.nrrd",
    "linear.nrrd",
    "sr4zct.nrrd",
    "scores.json",
    "coronal_comparison.png",
)

# display window of the figure (lung window: vessels, airways, bone and soft tissue all visible)
WINDOW_HU = (-1050.0, 450.0)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="enhance a simulated phantom and compare with interpolation (no data needed)",
        description=(
            "Build a CT-like phantom with thin slices, simulate thick overlapping slices from it, enhance "
            "them with SR4ZCT and print PSNR/SSIM against the ground truth for linear and B-spline "
            "interpolation and SR4ZCT. Writes NRRD volumes, scores.json and coronal_comparison.png."
        ),
    )
    parser.add_argument(
        "-o", "--output", default="sr4zct-demo", metavar="DIR", help="output folder (default sr4zct-demo)"
    )
    EnhanceOptions.add_arguments(
        parser, only=DEMO_OPTIONS, defaults=DEMO_DEFAULTS,
        changes={
            "thickness_mm": {"help": "slice thickness T the demo simulates (and enhances)"},
            "spacing_mm": {"help": "slice spacing d the demo simulates (and enhances)"},
            "profile": {"choices": PROFILES, "help": "slice sensitivity profile the demo simulates (and enhances)"},
        },
    )  # fmt: skip
    parser.add_argument(
        "--size",
        choices=tuple(SIZES),
        default="small",
        help="phantom size: tiny 40x64x64 at 1 mm (seconds), small 96x128x128 at 0.75 mm (default), "
        "medium 160x192x192 at 0.75 mm",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def _check_outputs(folder: Path, overwrite: bool) -> None:
    """Refuse, before any work, a folder that holds demo outputs (without ``overwrite``) or, with it, any
    output file SR4ZCT did not write; create the folder."""
    from sr4zct.errors import OutputError
    from sr4zct.io.atomic import check_replaceable

    if folder.exists() and not folder.is_dir():
        raise OutputError(f"The demo output {folder} exists and is not a folder.")
    existing = [name for name in OUTPUT_FILES if (folder / name).exists()]
    if existing and not overwrite:
        raise OutputError(
            f"{folder} already holds demo outputs ({', '.join(existing)}); use --overwrite or choose "
            "another folder with -o."
        )
    for name in existing:
        check_replaceable(folder / name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the output folder {folder}: {exc.strerror or exc}.") from None


def _check_arguments(size: str, options: dict[str, Any]) -> None:
    """The demo's options, checked before any work as ``sr4zct enhance`` checks them."""
    from sr4zct.errors import ParameterError

    if size not in SIZES:
        raise ParameterError(f"Unknown demo size {size!r}; choose one of {', '.join(SIZES)}.")
    EnhanceOptions(**options)
    profile = options["profile"]
    if profile not in PROFILES:
        raise ParameterError(f"The demo simulates a profile: profile must be one of {', '.join(PROFILES)}.")


def run_demo(
    output_dir: str | Path = "sr4zct-demo",
    *,
    size: str = "small",
    thickness_mm: float = DEMO_DEFAULTS["thickness_mm"],
    spacing_mm: float = DEMO_DEFAULTS["spacing_mm"],
    profile: str = DEMO_DEFAULTS["profile"],
    preset: str = DEMO_DEFAULTS["preset"],
    device: str = "auto",
    seed: int = 0,
    max_minutes: float | None = None,
    overwrite: bool = False,
    progress=None,
    log=print,
) -> dict[str, Any]:
    """Run the demo and write its outputs; returns the scores and run information (also in scores.json)."""
    from sr4zct._version import __version__
    from sr4zct.demo.evaluation import interpolate_baseline, score
    from sr4zct.demo.phantom import make_demo_case
    from sr4zct.io.atomic import write_text_atomic
    from sr4zct.run.pipeline import enhance

    _check_arguments(
        size, dict(thickness_mm=thickness_mm, spacing_mm=spacing_mm, profile=profile, preset=preset, device=device,
                   seed=seed, max_minutes=max_minutes),
    )  # fmt: skip
    folder = Path(output_dir).expanduser()
    _check_outputs(folder, overwrite)

    shape, voxel_mm = SIZES[size]
    log(
        f"phantom {shape[0]}x{shape[1]}x{shape[2]} at {voxel_mm:g} mm; simulating {thickness_mm:g} mm slices "
        f"every {spacing_mm:g} mm ({profile} profile)"
    )
    ground_truth, thick = make_demo_case(
        thickness_mm, spacing_mm, profile, seed, shape=shape, voxel_mm=voxel_mm
    )
    result = enhance(
        thick,
        thickness_mm=thickness_mm,
        spacing_mm=spacing_mm,
        profile=profile,
        preset=preset,
        device=device,
        seed=seed,
        max_minutes=max_minutes,
        progress=progress,
    )
    target_mm = float(result.volume.geometry.slice_spacing_mm)
    outputs = {
        "linear": interpolate_baseline(thick, "linear", target_mm),
        "B-spline": interpolate_baseline(thick, "bspline", target_mm),
        "SR4ZCT": result.volume,
    }
    scores = {name: score(volume, ground_truth, thickness_mm) for name, volume in outputs.items()}

    demo_parameters = {
        "sr4zct_demo_size": size,
        "sr4zct_demo_seed": str(seed),
        "simulated_thickness_mm": f"{thickness_mm:g}",
        "simulated_spacing_mm": f"{spacing_mm:g}",
        "simulated_profile": profile,
        "simulated_phase_mm": thick.metadata["simulated_phase_mm"],
    }
    _write_volumes(folder, ground_truth, thick, outputs, result, scores, demo_parameters, overwrite)
    figure = _coronal_figure(
        folder / "coronal_comparison.png", ground_truth, thick, outputs, scores, overwrite=overwrite
    )
    if figure is None:
        log("matplotlib is not installed: coronal_comparison.png was not written (pip install matplotlib)")

    report = {
        "sr4zct_version": __version__,  # marks the report as SR4ZCT's: --overwrite may replace it
        "parameters": {**demo_parameters, "preset": preset, "device": result.device},
        "scores": scores,
        "gain_db": scores["SR4ZCT"]["psnr_db"] - scores["linear"]["psnr_db"],
        "timings_s": result.timings_s,
        "enhance_parameters": result.parameters,
        "warnings": list(result.warnings),
    }
    text = json.dumps(report, indent=2, default=float) + "\n"
    write_text_atomic(folder / "scores.json", text, overwrite=overwrite)
    return report


def _write_volumes(folder, ground_truth, thick, outputs, result, scores, demo_parameters, overwrite) -> None:
    """The ground truth, the thick input, linear interpolation and SR4ZCT's result as NRRD files."""
    from sr4zct.io import write_volume

    write_volume(ground_truth, folder / "ground_truth.nrrd", metadata=demo_parameters, overwrite=overwrite)
    write_volume(thick, folder / "thick_input.nrrd", metadata=demo_parameters, overwrite=overwrite)
    linear_meta = {
        **demo_parameters,
        "interpolation": "linear",
        "psnr_db": f"{scores['linear']['psnr_db']:.2f}",
    }
    write_volume(outputs["linear"], folder / "linear.nrrd", metadata=linear_meta, overwrite=overwrite)
    sr_meta = {**result.parameters, **demo_parameters, "psnr_db": f"{scores['SR4ZCT']['psnr_db']:.2f}"}
    write_volume(result.volume, folder / "sr4zct.nrrd", metadata=sr_meta, overwrite=overwrite)


def format_table(scores: dict[str, dict[str, Any]], reference: str = "linear") -> str:
    """Plain-text table of body-box PSNR, gain over ``reference`` and coronal/sagittal PSNR and SSIM."""
    header = f"{'method':<10} {'PSNR dB':>8} {'gain dB':>8} {'coronal PSNR / SSIM':>20} {'sagittal PSNR / SSIM':>21}"
    lines = [header, "-" * len(header)]
    base = scores[reference]["psnr_db"]
    for name, s in scores.items():
        lines.append(
            f"{name:<10} {s['psnr_db']:8.2f} {s['psnr_db'] - base:+8.2f} "
            f"{s['coronal_psnr_db']:12.2f} / {s['coronal_ssim']:.3f} "
            f"{s['sagittal_psnr_db']:13.2f} / {s['sagittal_ssim']:.3f}"
        )
    return "\n".join(lines)


def _coronal_figure(
    path: Path, ground_truth, thick, outputs, scores, *, overwrite: bool = False
) -> Path | None:
    """Thick input / linear / SR4ZCT / ground truth, coronal, full view and a zoom; same window."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from sr4zct.io.atomic import atomic_output
    from sr4zct.run.preview import PNG_MARKER

    gt = ground_truth.geometry
    row = _figure_row(ground_truth, thick)
    panels = [
        (
            "thick input",
            thick,
            f"{thick.geometry.slice_thickness_mm:g} mm every {thick.geometry.slice_spacing_mm:g} mm",
        ),
        ("linear", outputs["linear"], f"{scores['linear']['psnr_db']:.2f} dB"),
        ("SR4ZCT", outputs["SR4ZCT"], f"{scores['SR4ZCT']['psnr_db']:.2f} dB"),
        ("ground truth", ground_truth, f"{gt.slice_spacing_mm:g} mm slices"),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(16, 8.6), constrained_layout=True)
    zoom_x, zoom_z = _zoom_window(ground_truth, row)
    for k, (name, volume, note) in enumerate(panels):
        _draw_panel(axes[:, k], volume, ground_truth, row, zoom_x, zoom_z)
        axes[0, k].set_title(f"{name}\n{note}", fontsize=12)
        axes[0, k].add_patch(
            plt.Rectangle(
                (zoom_x[0], zoom_z[0]),
                zoom_x[1] - zoom_x[0],
                zoom_z[1] - zoom_z[0],
                fill=False,
                edgecolor="yellow",
                linewidth=1,
            )
        )
    fig.suptitle(
        f"SR4ZCT demo: coronal image (row {row}), window W{WINDOW_HU[1] - WINDOW_HU[0]:g}/L"
        f"{(WINDOW_HU[0] + WINDOW_HU[1]) / 2:g}; body-box PSNR vs ground truth; bottom: zoom",
        fontsize=12,
    )
    # the text chunk marks the figure as SR4ZCT's, so that --overwrite may replace it
    with atomic_output(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=80, metadata={PNG_MARKER: "demo coronal comparison"})
    plt.close(fig)
    return path


def _figure_row(ground_truth, thick) -> int:
    """The coronal image (row) with the most fine z structure (vessels, airways; bone is clipped away)."""
    import numpy as np

    from sr4zct.demo.evaluation import body_box

    gt = ground_truth.geometry
    _, ys, _ = body_box(ground_truth.array, thick.geometry.slice_thickness_mm, gt.slice_spacing_mm)
    clipped = np.clip(ground_truth.array[:, ys, :], -1000.0, 100.0)
    return ys.start + int(np.argmax((np.diff(clipped, n=2, axis=0) ** 2).sum(axis=(0, 2))))


def _x_range_mm(ground_truth) -> tuple[float, float]:
    """The column extent of the coronal images, from the first to the last pixel edge (mm)."""
    gt = ground_truth.geometry
    col_mm = gt.pixel_spacing_mm[1]
    return -0.5 * col_mm, (gt.shape[2] - 0.5) * col_mm


def _zoom_window(ground_truth, row: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(x range, z range)`` in mm of the square of the coronal image with the most fine z structure
    (lung vessels, airways)."""
    import numpy as np

    gt = ground_truth.geometry
    col_mm = gt.pixel_spacing_mm[1]
    x0, _ = _x_range_mm(ground_truth)
    side = max(8, min(gt.shape[0], gt.shape[2]) // 2)
    image = np.clip(ground_truth.array[:, row, :].astype(np.float64), -1000.0, 100.0)
    energy = np.zeros_like(image)
    energy[1:-1] = np.diff(image, n=2, axis=0) ** 2
    summed = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    windows = summed[side:, side:] - summed[:-side, side:] - summed[side:, :-side] + summed[:-side, :-side]
    k, m = np.unravel_index(int(np.argmax(windows)), windows.shape)
    zoom_x = (x0 + m * col_mm, x0 + m * col_mm + side * col_mm)
    z_edge = -0.5 * gt.slice_spacing_mm
    zoom_z = (z_edge + k * gt.slice_spacing_mm, z_edge + k * gt.slice_spacing_mm + side * gt.slice_spacing_mm)
    return zoom_x, zoom_z


def _draw_panel(column_axes, volume, ground_truth, row: int, zoom_x, zoom_z) -> None:
    """One volume's coronal image in a column of the figure: the full view on top, the zoom below."""
    import numpy as np

    gt = ground_truth.geometry
    x0, x1 = _x_range_mm(ground_truth)
    g = volume.geometry
    z = g.origin_lps[2] - gt.origin_lps[2] + np.asarray(g.slice_positions_mm)
    half = 0.5 * (z[1] - z[0]) if len(z) > 1 else 0.5
    image, extent = volume.array[:, row, :], (x0, x1, z[0] - half, z[-1] + half)
    z_len = gt.shape[0] * gt.slice_spacing_mm
    for r, ax in enumerate(column_axes):
        ax.imshow(image, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], extent=extent,
                  origin="lower", interpolation="nearest", aspect="equal")  # fmt: skip
        ax.set_facecolor("black")
        ax.set_xticks([])
        ax.set_yticks([])
        if r == 1:
            ax.set_xlim(*zoom_x)
            ax.set_ylim(*zoom_z)
        else:
            ax.set_xlim(x0, x1)
            ax.set_ylim(-0.5 * gt.slice_spacing_mm, z_len - 0.5 * gt.slice_spacing_mm)


def run(args: argparse.Namespace) -> int:
    from sr4zct.cli.progress_bar import ProgressBar

    bar = ProgressBar(enabled=not args.quiet)
    try:
        report = run_demo(
            args.output,
            size=args.size,
            thickness_mm=args.thickness_mm,
            spacing_mm=args.spacing_mm,
            profile=args.profile,
            preset=args.preset,
            device=args.device,
            seed=args.seed,
            max_minutes=args.max_minutes,
            overwrite=args.overwrite,
            progress=bar,
            log=(lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr)),
        )
    finally:
        bar.close()
    folder = Path(args.output)
    timings = report["timings_s"]
    print(format_table(report["scores"]))
    print(
        f"\nSR4ZCT gain over linear interpolation: {report['gain_db']:+.2f} dB "
        f"({report['enhance_parameters'].get('steps', '?')} training steps, {timings.get('total', 0):.0f} s). "
        f"It ran on {report['parameters']['device']}."
    )
    written = [name for name in OUTPUT_FILES if (folder / name).is_file()]
    from sr4zct.cli.messages import echo, printable

    echo(printable(f"wrote {', '.join(written)} to {folder}"))
    if not args.quiet:
        for message in report["warnings"]:
            print(f"warning: {message}", file=sys.stderr)
    return 0
