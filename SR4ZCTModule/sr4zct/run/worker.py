"""Background worker: ``python -m sr4zct.worker JOB.json`` runs one job and reports JSON events.

Protocol (``docs/events.md``): one JSON object per line on stdout, flushed, in the order ``started``,
``progress``/``log`` ..., then exactly one terminal event ``finished``, ``cancelled`` or ``failed``. The
real stdout carries events only: file descriptor 1 is redirected to stderr inside the worker, so
whatever libraries print ends up on stderr, and Python ``logging`` and warnings become ``log`` events.

Cancellation is cooperative: SIGTERM/SIGINT, a file named ``cancel`` in the job's temp folder, the
client closing the event pipe or the parent process going away set a flag that the pipeline polls
through ``should_stop``; it raises :class:`~sr4zct.errors.Cancelled`, outputs this job created are
removed, ``cancelled`` is emitted and the exit code is 130.

Exit codes: 0 finished, 130 cancelled, ``SR4ZCTError.exit_code`` (2-7) for a failed job, 1 for an
internal error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import json
import logging
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from sr4zct import __version__
from sr4zct.errors import Cancelled, InputError, OutputError, ParameterError, ResourceError, SR4ZCTError
from sr4zct.run.events import (
    CODE_INTERNAL,
    EXIT_CANCELLED,
    EXIT_INTERNAL,
    EXIT_OK,
    encode_event,
    log_event,
    make_event,
    progress_event,
)
from sr4zct.run.jobs import CANCEL_FILE, TEMP_PREFIX, JobSpec, lock_path_for, remove_job_temp
from sr4zct.run.progress import Progress, ProgressReporter

Emit = Callable[[dict], None]

# Progress events are rate-limited (stage changes and stage ends always pass): a GUI timer drains them.
MIN_PROGRESS_INTERVAL_S = 0.2


# ---------------------------------------------------------------------------------------------------
# Event output and cancellation
# ---------------------------------------------------------------------------------------------------


class EventStream:
    """Writes events, one JSON line each, flushed; thread-safe; never raises.

    If the reader has gone away (broken pipe), further events are dropped and :attr:`broken` is set,
    which :class:`StopFlag` treats as a cancel request.
    """

    def __init__(self, file: TextIO):
        self._file = file
        self._lock = threading.Lock()
        self.broken = False

    @classmethod
    def take_stdout(cls) -> EventStream:
        """Keep the real stdout for events and point file descriptor 1 (and ``sys.stdout``) at stderr."""
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        events_fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        return cls(os.fdopen(events_fd, "w", encoding="utf-8", buffering=1, newline="\n"))

    def emit(self, event: dict) -> None:
        self.write_raw(encode_event(event) + "\n")

    def write_raw(self, text: str) -> None:
        with self._lock:
            if self.broken:
                return
            try:
                self._file.write(text)
                self._file.flush()
            except (OSError, ValueError):  # BrokenPipeError, closed file
                self.broken = True


class StopFlag:
    """``should_stop`` for the pipeline: True once a cancel was requested by any route.

    Parameters
    ----------
    cancel_file : a file whose appearance means "cancel" (works on every OS).
    stream : the event stream; a broken pipe means the client is gone.
    parent_pid : the parent's pid at start (POSIX): if the parent dies we are re-parented and stop.
    """

    def __init__(
        self,
        cancel_file: Path | None = None,
        stream: EventStream | None = None,
        parent_pid: int | None = None,
    ):
        self.cancel_file = cancel_file
        self.stream = stream
        self.parent_pid = parent_pid
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def __call__(self) -> bool:
        if self.reason is None:
            if self.cancel_file is not None and self.cancel_file.exists():
                self.set("cancel file")
            elif self.stream is not None and self.stream.broken:
                self.set("client gone")
            elif self.parent_pid is not None and os.getppid() != self.parent_pid:
                self.set("parent process exited")
        return self.reason is not None


class _LogHandler(logging.Handler):
    """Turns ``logging`` records (and captured warnings) into ``log`` events."""

    def __init__(self, emit: Emit):
        super().__init__(logging.INFO)
        self._emit = emit

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.levelno >= logging.ERROR:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            self._emit(log_event(message, record.levelname, logger=record.name))
        except Exception:  # a logging failure must never kill the job
            self.handleError(record)


# ---------------------------------------------------------------------------------------------------
# Job context and tasks
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class JobContext:
    """What a task gets besides its :class:`~sr4zct.jobs.JobSpec`."""

    emit: Emit
    should_stop: Callable[[], bool]
    device: str
    temp_dir: Path
    stream: EventStream | None = None
    _last_fraction: float = 0.0
    _last_emit: float = 0.0
    _last_stage: str | None = None

    def progress(self, record: Progress) -> None:
        """Progress callback for the pipeline: monotone fraction, rate-limited events."""
        fraction = max(self._last_fraction, min(1.0, float(record.fraction)))
        self._last_fraction = fraction
        now = time.monotonic()
        stage_end = record.total > 0 and record.step >= record.total
        if (
            record.stage == self._last_stage
            and not stage_end
            and now - self._last_emit < MIN_PROGRESS_INTERVAL_S
        ):
            return
        self._last_stage = record.stage
        self._last_emit = now
        self.emit(progress_event(dataclasses.replace(record, fraction=fraction)))

    def log(self, message: str, level: str = "info") -> None:
        self.emit(log_event(message, level))


Task = Callable[[JobSpec, JobContext], dict]


def _task_enhance(spec: JobSpec, ctx: JobContext) -> dict:
    from sr4zct.run.pipeline import enhance_file

    kwargs: dict[str, Any] = {
        "overwrite": spec.overwrite,
        "uncertainty_path": spec.uncertainty_path,
        "thickness_mm": spec.thickness_mm,
        "spacing_mm": spec.spacing_mm,
        "target_spacing_mm": spec.target_spacing_mm,
        "profile": spec.profile,
        "preset": spec.preset,
        "network": spec.network,
        "device": ctx.device,
        "seed": spec.seed,
        "max_minutes": spec.max_minutes,
        "model_path": spec.model_path,
        "save_model_path": spec.save_model_path,
        "allow_non_ct": spec.allow_non_ct,
        "progress": ctx.progress,
        "should_stop": ctx.should_stop,
    }
    if spec.series_uid is not None:
        kwargs["series_uid"] = spec.series_uid
    kwargs.update(spec.task_options)  # extra pipeline knobs (e.g. a test step budget)
    if spec.slice_axis is not None:
        kwargs["slice_axis"] = spec.slice_axis
    result = enhance_file(spec.input_path, spec.output_path, **kwargs)
    out: dict[str, Any] = {
        "output_path": str(Path(spec.output_path).resolve()),
        "uncertainty_path": spec.uncertainty_path and str(Path(spec.uncertainty_path).resolve()),
        "saved_model_path": spec.save_model_path and str(Path(spec.save_model_path).resolve()),
        "device": ctx.device,
        "device_description": getattr(result, "device", None),
        "warnings": list(getattr(result, "warnings", []) or []),
        "parameters": dict(getattr(result, "parameters", {}) or {}),
        "timings_s": dict(getattr(result, "timings_s", {}) or {}),
    }
    volume = getattr(result, "volume", None)
    if volume is not None:
        out["output_shape"] = list(volume.array.shape)
        out["output_spacing_mm"] = list(volume.geometry.spacing_mm)
    return out


def _task_selftest(spec: JobSpec, ctx: JobContext) -> dict:
    """A tiny job that exercises the protocol without the pipeline (diagnostics and tests).

    ``task_options``: ``steps`` (10), ``step_s`` (0.02), ``value`` (written into the output),
    ``garbage`` (print text on stdout, fd 1 and the event stream itself), ``fail`` (an error code, or
    "internal", raised at step ``fail_at``), ``crash`` ("sigkill" or "segfault" at step ``fail_at``),
    ``ignore_cancel`` (keep going when cancelled), ``child_sleep_s`` (start a child process that sleeps),
    ``echo_env`` (report this environment variable in ``parameters["env"]``).
    """
    import subprocess

    opts = spec.task_options
    steps = int(opts.get("steps", 10))
    step_s = float(opts.get("step_s", 0.02))
    fail_at = int(opts.get("fail_at", steps // 2))
    ignore_cancel = bool(opts.get("ignore_cancel", False))
    output = Path(spec.output_path)
    if output.exists() and not spec.overwrite:
        raise OutputError(f"Output {output} already exists; allow overwriting or choose another file.")

    child = None
    if opts.get("child_sleep_s"):
        child = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({float(opts['child_sleep_s'])})"]
        )
        ctx.log(f"started child process {child.pid}")

    if opts.get("garbage"):
        print("garbage from print()")
        os.write(1, b"garbage written to file descriptor 1\n")
        if ctx.stream is not None:  # as if a library had kept the original stdout
            ctx.stream.write_raw("garbage on the event stream {not json\n")
        logging.getLogger("sr4zct.selftest").warning("a logged warning")
        warnings.warn("a Python warning", UserWarning, stacklevel=1)

    reporter = ProgressReporter(ctx.progress, None if ignore_cancel else ctx.should_stop)
    try:
        reporter.report("prepare", 1, 1)
        for step in range(1, steps + 1):
            time.sleep(step_s)
            if step == fail_at and opts.get("crash") == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            if step == fail_at and opts.get("crash") == "segfault":
                faulthandler._sigsegv()
            if step == fail_at and opts.get("fail"):
                code = opts["fail"]
                if code == "internal":
                    raise ZeroDivisionError("selftest internal error")
                classes = {c.code: c for c in (InputError, OutputError, ParameterError, ResourceError)}
                raise classes.get(code, SR4ZCTError)(f"selftest failure with code {code}")
            reporter.report("train", step, steps, loss=1.0 / step)
        reporter.report("infer", 1, 1)
        tmp = output.with_name(output.name + ".partial")
        tmp.write_text(
            json.dumps({"value": opts.get("value"), "steps": steps, "seed": spec.seed, "device": ctx.device}),
            encoding="utf-8",
        )
        os.replace(tmp, output)
        reporter.report("write", 1, 1)
    finally:
        if child is not None:
            child.kill()
            child.wait()
    parameters: dict[str, Any] = {"steps": steps, "seed": spec.seed}
    if opts.get("echo_env"):
        parameters["env"] = os.environ.get(str(opts["echo_env"]))
    return {
        "output_path": str(output.resolve()),
        "device": ctx.device,
        "parameters": parameters,
        "timings_s": {"total": reporter.elapsed()},
    }


TASKS: dict[str, Task] = {"enhance": _task_enhance, "selftest": _task_selftest}


# ---------------------------------------------------------------------------------------------------
# Running a job
# ---------------------------------------------------------------------------------------------------


def _torch_version() -> str | None:
    if "torch" in sys.modules:
        return sys.modules["torch"].__version__
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def resolve_device(requested: str) -> tuple[str, str]:
    """``(device, description)`` for the job's device choice; "cpu" does not import torch."""
    if requested == "cpu":
        return "cpu", "CPU"
    from sr4zct.run.devices import resolve_device as _resolve

    device, description = _resolve(requested)
    return str(device), description


def input_info(spec: JobSpec) -> dict[str, Any]:
    """Shape and spacing of the job's input image (headers only); ``InputError`` if it is unusable."""
    if spec.input_path is None:
        return {}
    path = Path(spec.input_path)
    if not path.exists():
        raise InputError(f"Input image {path} does not exist.")
    try:
        from sr4zct.io import read_geometry

        geometry = read_geometry(
            path, series_uid=spec.series_uid, thickness_mm=spec.thickness_mm, slice_axis=spec.slice_axis
        )
        return {
            "input_shape": list(geometry.shape),
            "input_spacing_mm": list(geometry.spacing_mm),
            "thickness_mm": geometry.slice_thickness_mm,
        }
    except ImportError:  # reader not available in this build: SimpleITK header only
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise InputError(
                f"Cannot read the input image {path}: {str(exc).strip().splitlines()[-1]}"
            ) from None
        return {
            "input_shape": list(reversed(reader.GetSize())),
            "input_spacing_mm": list(reversed(reader.GetSpacing())),
        }


def check_outputs(spec: JobSpec) -> None:
    """Fail before any long computation if the writers would refuse an output (``OutputError``)."""
    from sr4zct.io import check_output

    for path in (spec.output_path, spec.uncertainty_path):
        if path is not None:
            check_output(path, overwrite=spec.overwrite, input_path=spec.input_path)


def planned_steps(spec: JobSpec) -> int | None:
    """Upper bound of training steps (time may stop training earlier); None when not training."""
    if spec.task == "selftest":
        return int(spec.task_options.get("steps", 10))
    if spec.model_path is not None:
        return 0
    try:
        from sr4zct.run.presets import get_preset

        return int(get_preset(spec.preset).steps)
    except (ImportError, SR4ZCTError):
        return None


def is_gpu_out_of_memory(exc: BaseException) -> bool:
    """True if ``exc`` (or what caused it) is a GPU allocation failure."""
    seen = 0
    while exc is not None and seen < 10:
        if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError / torch.cuda.OutOfMemoryError
            return True
        text = str(exc).lower()
        if "out of memory" in text and any(word in text for word in ("cuda", "gpu", "mps")):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


GPU_OOM_ADVICE = (
    "The GPU ran out of memory even with smaller batches and tiles. Close other programs that use the "
    "GPU, choose the 'fast' preset, or run on the CPU (device 'cpu', or allow the CPU fallback)."
)


def _snapshot(paths: list[str | None]) -> dict[Path, float | None]:
    """mtime of each path that exists now (None for absent ones): to tell what this job created."""
    state: dict[Path, float | None] = {}
    for p in paths:
        if p:
            path = Path(p)
            state[path] = path.stat().st_mtime_ns if path.exists() else None
    return state


def _remove_created(before: dict[Path, float | None]) -> list[str]:
    """Remove outputs that did not exist before the job or were replaced by it."""
    removed = []
    for path, mtime in before.items():
        if not path.exists() or (mtime is not None and path.stat().st_mtime_ns == mtime):
            continue
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(str(path))
        except OSError:
            pass
    return removed


class OutputLock:
    """A lock file next to the output: two jobs never write the same output at once.

    A lock left by a process that no longer exists (killed worker) is taken over.
    """

    def __init__(self, output_path: str | os.PathLike):
        self.output_path = Path(output_path)
        self.path = lock_path_for(output_path)
        self._held = False

    def _is_stale(self) -> bool:
        import psutil

        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return True
        except (OSError, ValueError):
            # Being written right now, or garbage left by a crash: stale only once it is old.
            with contextlib.suppress(OSError):
                return time.time() - self.path.stat().st_mtime > 10
            return True
        if info.get("host") != socket.gethostname():
            return False  # cannot check a process on another machine (shared folder)
        try:
            proc = psutil.Process(int(info["pid"]))
            return abs(proc.create_time() - float(info.get("create_time", 0))) > 1.0
        except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
            return True
        except psutil.Error:
            return False

    def acquire(self) -> OutputLock:
        import psutil

        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "create_time": psutil.Process().create_time(),
            "output_path": str(self.output_path),
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._is_stale():
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                raise OutputError(
                    f"Another job is already writing {self.output_path} (lock file {self.path}); "
                    "wait for it to finish or choose another output."
                ) from None
            except FileNotFoundError:
                raise OutputError(f"The output folder {self.output_path.parent} does not exist.") from None
            except OSError as exc:
                raise OutputError(
                    f"Cannot write next to the output {self.output_path}: {exc.strerror}."
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(info, f)
            self._held = True
            return self
        raise OutputError(f"Cannot lock the output {self.output_path} (lock file {self.path}).")

    def release(self) -> None:
        if self._held:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self._held = False


def _failed_event(exc: BaseException) -> tuple[dict, int]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    if isinstance(exc, SR4ZCTError):
        message = " ".join(exc.message.split())  # one line
        return (
            make_event("failed", message=message, code=exc.code, detail=exc.detail, traceback=tb,
                       exit_code=exc.exit_code),
            exc.exit_code,
        )  # fmt: skip
    if isinstance(exc, MemoryError):
        message = "Not enough memory (RAM) for this volume; close other programs or choose the 'fast' preset."
        return make_event("failed", message=message, code=ResourceError.code, detail=tb, traceback=tb,
                          exit_code=ResourceError.exit_code), ResourceError.exit_code  # fmt: skip
    first = " ".join(str(exc).split()) or type(exc).__name__
    message = f"Internal error ({type(exc).__name__}: {first}). Please report it with the log."
    return (
        make_event(
            "failed", message=message, code=CODE_INTERNAL, detail=tb, traceback=tb, exit_code=EXIT_INTERNAL
        ),
        EXIT_INTERNAL,
    )


def run_job(
    spec: JobSpec,
    emit: Emit,
    should_stop: Callable[[], bool],
    *,
    stream: EventStream | None = None,
    task: Task | None = None,
    device: tuple[str, str] | None = None,
) -> int:
    """Run ``spec`` and emit its events; returns the worker exit code. Never raises (except SystemExit).

    Parameters
    ----------
    spec : a validated job.
    emit : receives every event (the worker writes them to stdout; tests collect them).
    should_stop : cancel check, polled by the task.
    stream : the event stream (for the selftest's garbage option).
    task : run this instead of ``TASKS[spec.task]``.
    device : ``(device, description)`` to use instead of resolving ``spec.device``.
    """
    t0 = time.monotonic()
    temp_dir: Path | None = None
    created_temp = False
    lock: OutputLock | None = None
    before: dict[Path, float | None] = {}
    try:
        try:
            if spec.temp_dir is None:
                temp_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
                created_temp = True
            else:
                temp_dir = Path(spec.temp_dir)
                created_temp = not temp_dir.exists()
                temp_dir.mkdir(parents=True, exist_ok=True)
            info = input_info(spec)
            if spec.task == "enhance":
                check_outputs(spec)
            lock = OutputLock(spec.output_path).acquire()
            # Only outputs this job creates are removed on cancel/failure (never another job's).
            before = _snapshot([spec.output_path, spec.uncertainty_path, spec.save_model_path])
            dev, description = device or resolve_device(spec.device)
            ctx = JobContext(emit=emit, should_stop=should_stop, device=dev, temp_dir=temp_dir, stream=stream)
            emit(
                make_event(
                    "started",
                    task=spec.task,
                    device=dev,
                    device_description=description,
                    torch_version=_torch_version(),
                    python_version=platform.python_version(),
                    sr4zct_version=__version__,
                    pid=os.getpid(),
                    input_path=spec.input_path,
                    output_path=spec.output_path,
                    planned_steps=planned_steps(spec),
                    temp_dir=str(temp_dir),
                    **info,
                )
            )
            if dev == "cpu" and spec.device == "auto":
                ctx.log(description, "info")
            if should_stop():  # cancelled while starting up (e.g. importing torch)
                raise Cancelled("Cancelled by the user; nothing was written.")
            run = task or TASKS[spec.task]
            try:
                result = run(spec, ctx)
            except Exception as exc:
                if isinstance(exc, Cancelled) or dev == "cpu" or not is_gpu_out_of_memory(exc):
                    raise
                if not spec.allow_cpu_fallback:
                    raise ResourceError(GPU_OOM_ADVICE, detail=str(exc)) from exc
                ctx.log(f"Out of GPU memory on {dev} ({exc}); running the job again on the CPU.", "warning")
                _free_gpu_memory()
                ctx.device = "cpu"
                result = run(spec, ctx)
        except KeyboardInterrupt:
            raise Cancelled("Cancelled by the user; nothing was written.") from None
    except Cancelled as exc:
        removed = _remove_created(before)
        emit(
            make_event(
                "cancelled",
                message=exc.message,
                removed=removed,
                elapsed_s=time.monotonic() - t0,
                exit_code=EXIT_CANCELLED,
            )
        )
        return EXIT_CANCELLED
    except Exception as exc:
        _remove_created(before)
        event, code = _failed_event(exc)
        emit(event)
        return code
    finally:
        if lock is not None:
            lock.release()
        if temp_dir is not None:
            if spec.keep_temp:
                emit(log_event(f"Temp folder kept: {temp_dir}", "info"))
            else:
                remove_job_temp(temp_dir, created=created_temp)
    fields = {k: v for k, v in result.items() if k not in ("event", "version", "time")}
    fields.setdefault("elapsed_s", time.monotonic() - t0)
    emit(make_event("finished", exit_code=EXIT_OK, **fields))
    return EXIT_OK


def _free_gpu_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------
# Process entry point
# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m sr4zct.worker JOB.json``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    stream = EventStream.take_stdout()
    emit = stream.emit
    # A hard crash (segfault in a native library) leaves its Python traceback on stderr, which the
    # client keeps as the last log lines of the failed job.
    faulthandler.enable(file=sys.stderr)

    handler = _LogHandler(emit)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def show_warning(message, category, filename, lineno, file=None, line=None):
        text = f"{category.__name__}: {message} ({Path(filename).name}:{lineno})"
        emit(log_event(text, "warning", logger="py.warnings"))

    warnings.showwarning = show_warning

    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        event, code = _failed_event(ParameterError("Usage: python -m sr4zct.worker JOB.json"))
        emit(event)
        return code
    try:
        spec = JobSpec.load(argv[0])
    except SR4ZCTError as exc:
        event, code = _failed_event(exc)
        emit(event)
        return code

    temp_dir = spec.temp_dir and Path(spec.temp_dir)
    stop = StopFlag(
        cancel_file=temp_dir / CANCEL_FILE if temp_dir else None,
        stream=stream,
        parent_pid=os.getppid() if os.name != "nt" else None,
    )
    if temp_dir is None:
        # Create the temp folder here so that the cancel file has a home the caller can find (started).
        temp_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        spec = dataclasses.replace(spec, temp_dir=str(temp_dir))
        stop.cancel_file = temp_dir / CANCEL_FILE
    # Libraries' temp files go to the job's folder too (removed with it).
    tempfile.tempdir = str(temp_dir)
    os.environ["TMPDIR"] = str(temp_dir)

    def on_signal(signum: int, frame: Any) -> None:
        stop.set(f"signal {signal.Signals(signum).name}")

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), on_signal)

    return run_job(spec, emit, stop, stream=stream)


if __name__ == "__main__":
    sys.exit(main())
