"""``sr4zct batch INPUT... -o OUTDIR``: enhance every series under the inputs, resumably (docs/batch.md).

Exit codes: 0 every job is done (now or in an earlier run), 8 some job failed or was cancelled (see
OUTDIR/summary.csv), 2 bad command line or nothing to enhance, 4 an invalid option, 5 the output folder
cannot be used, 128 + N stopped by signal N (finished jobs are kept; run the command again to go on).

The exit status is the jobs' own: a closed pipe on stdout or stderr (``sr4zct batch ... | head``, ``| true``)
only stops the printing (:func:`_emit`), never the batch, and never turns a failure into 0. Text from the
files (descriptions, names, messages) is printed through :func:`sr4zct.cli.messages.printable`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator

from sr4zct.cli.messages import printable
from sr4zct.run.options import EnhanceOptions
from sr4zct.system.progress import format_duration

__all__ = ["add_parser", "run"]

_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")


def add_parser(subparsers) -> argparse.ArgumentParser:
    from sr4zct.batch.jobs import FORMATS
    from sr4zct.batch.runner import REUSE_MODES

    parser = subparsers.add_parser(
        "batch",
        help="enhance every series under folders (or in a CSV manifest), resumably, one model per protocol",
        description=(
            "Enhance each DICOM series (one per SeriesInstanceUID, searched recursively) and each NRRD/NIfTI/MHA "
            "file under the inputs. Progress is recorded in OUTDIR/batch.jsonl: a re-run skips finished jobs "
            "and redoes interrupted ones. Exit codes: 0 all done, 8 some failed (OUTDIR/summary.csv), "
            "2 usage, 128+N stopped by signal N."
        ),
    )
    parser.add_argument(
        "inputs", nargs="*", metavar="INPUT", help="DICOM folders, image files, folders of them"
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder of the batch")
    jobs = parser.add_argument_group("batch options")
    jobs.add_argument(
        "--manifest", metavar="CSV", help="jobs from a CSV: path, series_uid, thickness_mm, output_name"
    )
    jobs.add_argument("--format", choices=tuple(FORMATS), default="nrrd", help="output format (default nrrd)")
    jobs.add_argument(
        "--reuse-model", choices=REUSE_MODES, default="protocol",
        help="protocol: series with the same thickness, spacing, pixel size and profile share one trained model "
        "(default); none: each series trains its own",
    )  # fmt: skip
    jobs.add_argument("--retry-failed", action="store_true", help="run again the jobs that failed before")
    jobs.add_argument(
        "--shard", metavar="K/N", help="run only the K-th of N disjoint slices of the jobs (0-based)"
    )
    jobs.add_argument(
        "--dry-run", action="store_true", help="list what would run and what is done; run nothing"
    )
    engine = parser.add_argument_group("engine options")
    engine.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="where jobs run (default local)"
    )
    engine.add_argument(
        "--jobs", type=int, default=1, metavar="N",
        help="local: jobs at once, one per GPU (clamped to 1 without GPUs); default 1",
    )  # fmt: skip
    engine.add_argument(
        "--ray-address", metavar="ADDRESS", help="ray: a running cluster (default: a local Ray)"
    )
    engine.add_argument(
        "--ray-cpus", type=float, default=1.0, metavar="N", help="ray: CPUs per job (default 1)"
    )
    engine.add_argument(
        "--ray-gpus",
        type=float,
        default=None,
        metavar="N",
        help="ray: GPUs per job (default 1 when the cluster has GPUs)",
    )
    EnhanceOptions.add_arguments(parser)
    shown = parser.add_argument_group("progress options")
    shown.add_argument("--quiet", action="store_true", help="no progress lines or table")
    parser.set_defaults(func=run)
    return parser


def _jobs(args: argparse.Namespace, options: EnhanceOptions):
    """The jobs of this command line (manifest, then what the inputs hold), its options and its shard tag."""
    from sr4zct.batch import discover_jobs, parse_shard, read_manifest, select_shard
    from sr4zct.errors import InputError

    if not args.inputs and args.manifest is None:
        raise InputError("Give input folders or files, or --manifest CSV.")
    jobs = read_manifest(args.manifest) if args.manifest is not None else []
    if args.inputs:
        known = {job.job_id for job in jobs}
        found = discover_jobs(args.inputs, exclude=[args.output], warn=_warn(args.quiet))
        jobs += [job for job in found if job.job_id not in known]
    if options.series_uid is not None:
        jobs = [job for job in jobs if job.series_uid == options.series_uid]
        options = options.replace(series_uid=None)
        if not jobs:
            raise InputError("No series with that --series UID was found.")
    shard = ""
    if args.shard:
        index, count = parse_shard(args.shard)
        jobs = select_shard(jobs, index, count)
        shard = f"shard{index}of{count}" if count > 1 else ""
    return jobs, options, shard


def run(args: argparse.Namespace) -> int:
    from sr4zct.io import as_path

    as_path(args.output, "--output")  # an empty OUTDIR is refused, never the current folder
    jobs, options, shard = _jobs(args, EnhanceOptions.from_args(args))
    if args.dry_run:
        return _dry_run(args, jobs, options, shard)
    from sr4zct.batch import Batch

    batch = Batch(
        args.output, jobs, options, output_format=args.format, reuse_model=args.reuse_model,
        retry_failed=args.retry_failed, engine=None, shard=shard,
    )  # fmt: skip
    planned = batch.plan()  # takes the output folder's run lock: a second run refuses here
    try:
        todo = _announce(args, batch, planned)
        if todo:  # (Ray is started only when there is work)
            batch.engine = _engine(args, options)
            if batch.engine.note and not args.quiet:
                _emit(f"sr4zct batch: {batch.engine.note}", "stderr")
    except BaseException:
        batch.close()
        raise
    stopped: list[str] = []
    progress = _Progress(todo, enabled=not args.quiet)
    with _stop_on_signals(stopped):
        result = batch.run(on_event=progress, should_stop=lambda: bool(stopped))
    progress.close()
    return _report(args, batch, result, stopped)


def _announce(args: argparse.Namespace, batch, planned) -> int:
    """Print what the run will do (and the ledger's notes); returns how many jobs run."""
    todo = sum(p.action == "run" for p in planned)
    for note in batch.ledger.notes:
        _emit(f"sr4zct batch: warning: {printable(note)}", "stderr")
    if not args.quiet:
        done = sum(p.action == "done" for p in planned)
        failed = sum(p.action == "failed" for p in planned)
        _emit(
            f"sr4zct batch: {len(planned)} job(s): {todo} to run, {done} done before"
            + (f", {failed} failed before (--retry-failed runs them again)" if failed else ""),
            "stderr",
        )
    return todo


def _report(args: argparse.Namespace, batch, result, stopped: list[str]) -> int:
    """Print the table and the summary's place; the exit status is the jobs', whatever the printing."""
    from sr4zct.batch.ledger import format_table

    if not args.quiet:
        rows = [{key: printable(value) for key, value in row.items()} for row in result.rows]
        _emit(format_table(rows))
        _emit(printable(f"summary: {batch.outdir / 'summary.csv'}; ledger: {batch.ledger.path}"))
    if stopped:
        from sr4zct.run.control import exit_code_for_signal

        _emit(
            f"sr4zct batch: stopped by {stopped[0]}; finished jobs are kept, run the same command again to go on.",
            "stderr",
        )
        return exit_code_for_signal(stopped[0])
    return result.exit_code


def _emit(text: str, stream_name: str = "stdout") -> None:
    """Write a line to stdout or stderr. A closed pipe (``| head``, ``| true``) stops the printing only:
    the stream is pointed at the null device, so neither this nor Python's flush at exit fails again, and
    the batch and its exit status go on unchanged."""
    stream = getattr(sys, stream_name)
    if stream is None:
        return
    try:
        stream.write(text + "\n")
        stream.flush()
    except (BrokenPipeError, ConnectionResetError, ValueError, OSError):
        _silence(stream_name)


def _silence(stream_name: str) -> None:
    stream = getattr(sys, stream_name)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): drop it
        setattr(sys, stream_name, None)


def _engine(args: argparse.Namespace, options: EnhanceOptions):
    if args.engine == "ray":
        from sr4zct.batch.ray_engine import RayEngine

        return RayEngine(args.ray_address, num_cpus=args.ray_cpus, num_gpus=args.ray_gpus)
    from sr4zct.batch.local_engine import LocalEngine

    return LocalEngine(args.jobs, device=options.device)


def _dry_run(args, jobs, options, shard: str) -> int:
    from sr4zct.batch import Batch

    batch = Batch(args.output, jobs, options, output_format=args.format, reuse_model=args.reuse_model,
                  retry_failed=args.retry_failed, shard=shard)  # fmt: skip
    for planned in batch.plan(lock=False):  # a dry run writes nothing, and may look while a run goes on
        fields = (planned.action, planned.job.job_id, planned.output)
        _emit("\t".join(printable(field).replace("\t", "\\x09") for field in fields))
    for note in batch.ledger.notes:
        _emit(f"sr4zct batch: warning: {printable(note)}", "stderr")
    return 0


def _warn(quiet: bool):
    def warn(text: str) -> None:
        if not quiet:
            _emit(f"sr4zct batch: warning: {printable(text)}", "stderr")

    return warn


@contextlib.contextmanager
def _stop_on_signals(stopped: list[str]) -> Iterator[None]:
    """SIGINT/SIGTERM/SIGHUP only note the signal: the batch then cancels its running jobs (which remove
    their half-written outputs), records them and ends; the ledger stays consistent."""
    previous = {}

    def on_signal(signum, frame):
        if not stopped:
            stopped.append(signal.Signals(signum).name)

    for name in _STOP_SIGNALS:
        if hasattr(signal, name):
            previous[name] = signal.signal(getattr(signal, name), on_signal)
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


class _Progress:
    """One line across the jobs (``[3/10] series: 41% train 120/3000, ETA 1 min 23 s``), on stderr."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total = total
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.ended = 0
        self.failed = 0
        self.current: dict[str, str] = {}
        self._last = 0.0
        self._open_line = False

    def __call__(self, event: dict) -> None:
        if not self.enabled:
            return
        kind = event.get("event")
        if kind == "job_started":
            self.current[event["job_id"]] = printable(event.get("description") or event["job_id"])
            self._line(
                f"{self._count()} {self.current[event['job_id']]}: started ({event['model_role']} model)",
                True,
            )
        elif kind == "job_progress":
            now = time.monotonic()
            if now - self._last < (0.5 if self.tty else 30.0):
                return
            self._last = now
            stage = event.get("stage", "")
            step, total = event.get("step", 0), event.get("total", 0)
            eta = event.get("eta_s")
            text = f"{stage} {step}/{total}" if total and total > 1 else stage
            if format_duration(eta):
                text += f", ETA {format_duration(eta)}"
            name = self.current.get(event["job_id"], event["job_id"])
            self._line(
                f"{self._count()} {name}: {100 * float(event.get('fraction') or 0):.0f}% {text}", False
            )
        elif kind == "job_ended":
            self.ended += 1
            record = event["record"]
            name = self.current.pop(event["job_id"], printable(event["job_id"]))
            if event["status"] == "done":
                text = f"done in {record.get('elapsed_s', 0):.0f} s"
            else:
                self.failed += event["status"] == "failed"
                text = f"{event['status']}: {printable(record.get('error_message') or '')}"
            self._line(f"{self._count()} {name}: {text}", True)

    def _count(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"[{self.ended}/{self.total}{failed}]"

    def _line(self, text: str, keep: bool) -> None:
        if self.tty:
            self._write("\r\x1b[K" + text + ("\n" if keep else ""))
            self._open_line = not keep
        else:
            self._write(text + "\n")

    def _write(self, text: str) -> None:
        """A closed stream (a pipe whose reader ended) stops the progress, never the batch."""
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError, OSError):
            self.enabled = False
            if self.stream is sys.stderr:
                _silence("stderr")

    def close(self) -> None:
        if self.enabled and self.tty and self._open_line:
            self._write("\n")
