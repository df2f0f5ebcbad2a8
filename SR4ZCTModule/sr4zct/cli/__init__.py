"""Command-line entry point: ``sr4zct info | enhance | batch | demo``.

Each subcommand lives in ``sr4zct.cli.<name>`` and provides ``add_parser(subparsers)`` which
registers its arguments and sets ``func``. Errors of the :class:`~sr4zct.errors.SR4ZCTError` family
are printed as one line (``--debug`` shows the traceback) and exit with the error's ``exit_code``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from sr4zct import __version__
from sr4zct.errors import SR4ZCTError

COMMANDS = ("info", "enhance", "batch", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sr4zct",
        description="Self-supervised through-plane resolution enhancement for CT (SR4ZCT).",
    )
    parser.add_argument("--version", action="version", version=f"sr4zct {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"sr4zct.cli.{name}").add_parser(sub)
    return parser


def _quiet_dicom_warnings() -> None:
    """pydicom warns about every non-conforming value it reads (common in clinical data); the readers turn
    what matters into their own messages, so the CLI shows pydicom's only with --debug."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    logging.getLogger("pydicom").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    from sr4zct.system.threads import prepare_openmp

    prepare_openmp()  # before torch loads: idle OpenMP threads then yield their core to other work
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        _quiet_dicom_warnings()
    try:
        return int(args.func(args) or 0)
    except SR4ZCTError as exc:
        if args.debug:
            traceback.print_exc()
        from sr4zct.cli.messages import to_cli_words

        print(f"sr4zct: error: {to_cli_words(exc.message)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        from sr4zct.run.control import exit_code_for_signal

        name = getattr(exc, "signal_name", "SIGINT")
        print(f"sr4zct: cancelled by {name}; nothing was written.", file=sys.stderr)
        return exit_code_for_signal(name)
    except BrokenPipeError:
        # Output piped into e.g. `head`, which closed early: not an error of ours.
        sys.stdout = None
        return 0


if __name__ == "__main__":
    sys.exit(main())
