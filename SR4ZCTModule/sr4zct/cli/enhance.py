"""``sr4zct enhance INPUT -o OUTPUT``: train on the input's own axial images and enhance its z resolution."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "enhance",
        help="enhance the through-plane (z) resolution of a CT series",
        description=(
            "Train a network on the series' own sharp axial images degraded with its real slice thickness "
            "and spacing, apply it to the coronal and sagittal images and write a volume with finer z "
            "spacing (same in-plane grid, orientation and origin)."
        ),
    )
    parser.add_argument("input", metavar="INPUT", help="DICOM folder (or file) or NRRD/NIfTI/MHA volume")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT",
        help="output .nrrd/.nii.gz/.mha file or DICOM folder",
    )
    parser.add_argument(
        "--thickness", type=float, metavar="MM", help="slice thickness T (default: from the file)"
    )
    parser.add_argument(
        "--spacing",
        type=float,
        metavar="MM",
        help="slice spacing d (default: measured from the slice positions)",
    )
    parser.add_argument(
        "--target-spacing",
        type=float,
        metavar="MM",
        help="output z spacing (default: the in-plane pixel size)",
    )
    parser.add_argument(
        "--profile", choices=("box", "gaussian"), default="box", help="slice sensitivity profile"
    )
    parser.add_argument(
        "--preset", choices=("fast", "balanced", "best"), default="balanced", help="speed/quality trade-off"
    )
    parser.add_argument(
        "--network", choices=("default", "msd"), default="default", help="network architecture"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--max-minutes", type=float, metavar="MIN", help="wall-time cap (default: the preset's)"
    )
    parser.add_argument("--save-model", metavar="PATH", help="save the trained model to PATH")
    parser.add_argument("--model", metavar="PATH", help="apply a saved model instead of training")
    parser.add_argument("--uncertainty", metavar="PATH", help="also write |coronal - sagittal| (HU) to PATH")
    parser.add_argument(
        "--series", metavar="UID", help="SeriesInstanceUID when the folder holds several series"
    )
    parser.add_argument(
        "--slice-axis",
        type=int,
        choices=(0, 1, 2),
        help="image files: the through-plane NumPy axis (z, y, x order as read; default: the one the file "
        "records, else the coarsest)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--allow-non-ct", action="store_true", help="enhance a series whose DICOM modality is not CT (warns)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(func=run)
    return parser


class _Bar:
    """tqdm bar over the whole job (0-100 %) showing stage, loss and the estimated time left."""

    def __init__(self, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=100, unit="%", file=sys.stderr, bar_format="{l_bar}{bar}| {postfix}")

    def __call__(self, p) -> None:
        if self.bar is None:
            return
        self.bar.n = round(100 * p.fraction, 1)
        self.bar.set_description(f"{p.stage} {p.step}/{p.total}" if p.total > 1 else p.stage, refresh=False)
        info = []
        if p.loss is not None:
            info.append(f"loss {p.loss:.4f}")
        if p.eta_s is not None:
            minutes, seconds = divmod(int(p.eta_s), 60)
            info.append(f"ETA {minutes}:{seconds:02d}")
        self.bar.set_postfix_str(", ".join(info), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    from sr4zct.run.pipeline import enhance_file

    bar = _Bar(not args.quiet)
    try:
        result = enhance_file(
            args.input,
            args.output,
            overwrite=args.overwrite,
            series_uid=args.series,
            slice_axis=args.slice_axis,
            uncertainty_path=args.uncertainty,
            thickness_mm=args.thickness,
            spacing_mm=args.spacing,
            target_spacing_mm=args.target_spacing,
            profile=args.profile,
            preset=args.preset,
            network=args.network,
            device=args.device,
            seed=args.seed,
            max_minutes=args.max_minutes,
            model_path=args.model,
            save_model_path=args.save_model,
            allow_non_ct=args.allow_non_ct,
            progress=bar,
        )
    finally:
        bar.close()
    if not args.quiet:
        vol = result.volume
        t = result.timings_s
        print(
            f"wrote {args.output}: {vol.array.shape[0]} slices every {vol.geometry.slice_spacing_mm:g} mm "
            f"({result.parameters.get('steps', '0')} training steps on {result.device}; "
            f"train {t.get('train', 0):.0f} s, infer {t.get('infer', 0):.0f} s, total {t.get('total', 0):.0f} s)"
        )
        for message in result.warnings:
            print(f"warning: {message}", file=sys.stderr)
    return 0
