"""``sr4zct enhance INPUT -o OUTPUT``: train on the input's own axial images and enhance its z resolution.

With ``--events`` the command is the background process of :class:`~sr4zct.run.background.BackgroundJob`
and of the Slicer module: it writes the JSON-lines events of docs/events.md on stdout instead of a progress
bar, with the same exit codes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sr4zct.run.control import CONTROL_COMMANDS, STDIN
from sr4zct.run.options import EnhanceOptions

__all__ = ["add_parser", "run", "summary_line"]


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
    EnhanceOptions.add_arguments(parser)
    shown = parser.add_argument_group("progress options")
    shown.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    shown.add_argument(
        "--events", action="store_true", help="write JSON-lines progress events on stdout (docs/events.md)"
    )
    shown.add_argument(
        "--control-file",
        metavar="PATH",
        help=f"where a calling program sends {' or '.join(CONTROL_COMMANDS)}, one a line: a file it writes into, "
        f"or {STDIN} for standard input (whose end cancels the run)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sr4zct.run.pipeline import enhance_file

    options = EnhanceOptions.from_args(args)
    if args.events:
        from sr4zct.cli.event_mode import run_with_events

        return run_with_events(args.input, args.output, options, control_file=args.control_file)
    from sr4zct.cli.progress_bar import ProgressBar
    from sr4zct.run.control import RunControl

    control = RunControl(args.control_file)
    bar = ProgressBar(enabled=not args.quiet)
    try:
        with control.signals():
            result = enhance_file(
                args.input, args.output, options, progress=bar, should_stop=control.should_stop,
                should_finish=control.should_finish,
            )  # fmt: skip
    finally:
        bar.close()
    if not args.quiet:
        from sr4zct.cli.messages import echo, printable, to_cli_words

        echo(printable(summary_line(args.output, result)))
        for message in result.warnings:
            print(f"warning: {to_cli_words(message)}", file=sys.stderr)
    return 0


def summary_line(output_path, result) -> str:
    """The line the command ends with: what it wrote, how long it took, and where it ran, as sentences.

    Example: ``wrote out.nrrd: 686 slices every 0.7 mm in 235 s (train 140 s, infer 89 s). 3000 training
    steps ran on CPU (2 threads, bf16), as no CUDA GPU is available.``
    """
    vol, t, parameters = result.volume, result.timings_s, result.parameters
    where = (
        f"{parameters.get('steps', '0')} training steps ran on {result.device}."
        if parameters.get("model", "trained") == "trained"
        else f"The saved model ran on {result.device}."
    )
    return (
        f"wrote {Path(output_path)}: {vol.array.shape[0]} slices every {vol.geometry.slice_spacing_mm:g} mm in "
        f"{t.get('total', 0):.0f} s (train {t.get('train', 0):.0f} s, infer {t.get('infer', 0):.0f} s). {where}"
    )
