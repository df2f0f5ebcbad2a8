"""Background jobs: the job file (:class:`JobSpec`) and the client (:class:`BackgroundJob`).

A job runs in a separate Python process (``python -m sr4zct.worker JOB.json``) so that a long
enhancement never blocks the caller (the Slicer GUI, a notebook, a batch script) and can always be
stopped. The worker reports JSON events on its stdout (``docs/events.md``); :class:`BackgroundJob`
reads them on background threads and hands them over through a non-blocking :meth:`BackgroundJob.poll`.

Importing this module is cheap (no torch): Slicer imports it in the GUI process.

Examples
--------
>>> job = BackgroundJob(JobSpec(input_path="in.nrrd", output_path="out.nrrd", preset="fast"))
>>> job.start()                                  # doctest: +SKIP
>>> for event in job.iter_events():              # doctest: +SKIP
...     print(event["event"], event.get("fraction"))
>>> job.result["output_path"]                    # doctest: +SKIP
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sr4zct import errors
from sr4zct.errors import Cancelled, ParameterError, SR4ZCTError
from sr4zct.run.events import CODE_CRASHED, TERMINAL_EVENTS, make_event, parse_line

JOB_FORMAT = 1
TEMP_PREFIX = "sr4zct-job-"
CANCEL_FILE = "cancel"
JOB_FILE = "job.json"
LOCK_SUFFIX = ".sr4zct-lock"

PROFILES = ("box", "gaussian")
KNOWN_PRESETS = ("fast", "balanced", "best")
TASKS = ("enhance", "selftest")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

_PATH_FIELDS = (
    "input_path",
    "output_path",
    "model_path",
    "save_model_path",
    "uncertainty_path",
    "temp_dir",
)
_MM_FIELDS = ("thickness_mm", "spacing_mm", "target_spacing_mm")
_BOOL_FIELDS = ("keep_temp", "overwrite", "allow_cpu_fallback", "allow_non_ct")


def _known_presets() -> tuple[str, ...]:
    try:
        from sr4zct.run import presets
    except ImportError:
        return KNOWN_PRESETS
    names = getattr(presets, "PRESETS", None)
    if isinstance(names, dict) and names:
        return tuple(names)
    return KNOWN_PRESETS


@dataclass
class JobSpec:
    """Everything a worker needs to run one job; stored as a versioned JSON file.

    Attributes
    ----------
    input_path : image to enhance (normally an NRRD written by the caller; any format ``read_volume`` reads).
    output_path : where the enhanced volume is written (atomically, by the pipeline).
    thickness_mm, spacing_mm, target_spacing_mm : geometry overrides (``None`` = from the input / isotropic).
    profile : slice sensitivity profile, "box" or "gaussian".
    preset, network, device, seed, max_minutes : passed to :func:`sr4zct.run.pipeline.enhance`.
    model_path : apply this saved model instead of training.
    save_model_path : also save the trained model there.
    uncertainty_path : also write the coronal/sagittal disagreement map there.
    series_uid : which series to read when ``input_path`` is a DICOM folder with several.
    slice_axis : for an image-file input (NRRD/NIfTI/MHA), the NumPy axis of the file array (``(z, y, x)``
        as SimpleITK reads it; for a NRRD written by Slicer, ``2 - `` the IJK axis) that is through-plane;
        ``None``: the axis recorded in the file (``sr4zct_slice_axis``) or the axis with the largest spacing,
        which is wrong when the slices are spaced more finely than the pixels. Ignored for DICOM, whose
        stacking direction is known. Job files without this key (older clients) mean ``None``.
    overwrite : replace existing output files.
    allow_cpu_fallback : when the GPU runs out of memory even after the pipeline's retries, rerun on the CPU.
    allow_non_ct : enhance a DICOM series whose modality is not CT (with a warning) instead of refusing it.
    keep_temp : keep the per-job temp folder (for debugging).
    temp_dir : the per-job temp folder. ``None``: a fresh ``tempfile.mkdtemp(prefix="sr4zct-job-")``,
        deleted at the end unless ``keep_temp``. A folder given here that already exists is kept (only
        the job's own ``job.json`` and ``cancel`` files are removed).
    task : "enhance", or "selftest" (a tiny built-in task that checks the worker round trip; its
        ``task_options`` drive the protocol tests).
    task_options : extra options for the task.
    """

    input_path: str | None = None
    output_path: str | None = None
    thickness_mm: float | None = None
    spacing_mm: float | None = None
    target_spacing_mm: float | None = None
    profile: str = "box"
    preset: str = "balanced"
    network: str = "default"
    device: str = "auto"
    seed: int = 0
    max_minutes: float | None = None
    model_path: str | None = None
    save_model_path: str | None = None
    uncertainty_path: str | None = None
    series_uid: str | None = None
    slice_axis: int | None = None
    overwrite: bool = False
    allow_cpu_fallback: bool = False
    allow_non_ct: bool = False
    keep_temp: bool = False
    temp_dir: str | None = None
    task: str = "enhance"
    task_options: dict[str, Any] = field(default_factory=dict)
    format: int = JOB_FORMAT

    def __post_init__(self) -> None:
        for name in _PATH_FIELDS:
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                setattr(self, name, os.fspath(value))

    # -- validation ---------------------------------------------------------------------------------
    def validate(self) -> JobSpec:
        """Check every field; raise :class:`~sr4zct.errors.ParameterError` naming the first bad one.

        Returns ``self`` so that ``JobSpec(...).validate()`` chains. Files are not touched here: the
        worker reports a missing input as an ``input`` error.
        """
        if self.format != JOB_FORMAT:
            raise ParameterError(
                f"Unsupported job file format {self.format!r}; this version of sr4zct reads format {JOB_FORMAT}."
            )
        if self.task not in TASKS:
            raise ParameterError(f"Unknown task {self.task!r}; expected one of {', '.join(TASKS)}.")
        for name in _PATH_FIELDS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ParameterError(f"{name} must be a non-empty path, got {value!r}.")
        if self.output_path is None:
            raise ParameterError("output_path is required: where should the enhanced volume be written?")
        if self.task == "enhance" and self.input_path is None:
            raise ParameterError("input_path is required: which image should be enhanced?")
        for name in _MM_FIELDS:
            value = getattr(self, name)
            if value is not None and (not _is_number(value) or not math.isfinite(value) or value <= 0):
                raise ParameterError(f"{name} must be a number of millimetres greater than 0, got {value!r}.")
        if self.max_minutes is not None and (
            not _is_number(self.max_minutes) or not math.isfinite(self.max_minutes) or self.max_minutes <= 0
        ):
            raise ParameterError(
                f"max_minutes must be a number of minutes greater than 0, got {self.max_minutes!r}."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ParameterError(f"seed must be an integer between 0 and 2**32 - 1, got {self.seed!r}.")
        if self.profile not in PROFILES:
            raise ParameterError(f"profile must be one of {', '.join(PROFILES)}, got {self.profile!r}.")
        presets = _known_presets()
        if self.preset not in presets:
            raise ParameterError(f"preset must be one of {', '.join(presets)}, got {self.preset!r}.")
        if not isinstance(self.network, str) or not self.network.strip():
            raise ParameterError(f"network must be a non-empty name, got {self.network!r}.")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise ParameterError(
                f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}."
            )
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"{name} must be true or false, got {getattr(self, name)!r}.")
        if self.series_uid is not None and not isinstance(self.series_uid, str):
            raise ParameterError(f"series_uid must be a string, got {self.series_uid!r}.")
        if self.slice_axis is not None and (
            isinstance(self.slice_axis, bool)
            or not isinstance(self.slice_axis, int)
            or self.slice_axis not in (0, 1, 2)
        ):
            raise ParameterError(
                "slice_axis must be 0, 1 or 2 (NumPy axis of the image file, order z, y, x), "
                f"got {self.slice_axis!r}."
            )
        if not isinstance(self.task_options, dict):
            raise ParameterError(f"task_options must be a JSON object, got {self.task_options!r}.")
        outputs = {
            "output_path": self.output_path,
            "uncertainty_path": self.uncertainty_path,
            "save_model_path": self.save_model_path,
        }
        seen: dict[str, str] = {}
        for name, value in outputs.items():
            if value is None:
                continue
            key = _path_key(value)
            if self.input_path is not None and key == _path_key(self.input_path):
                raise ParameterError(f"{name} is the input image itself ({value}); choose another file.")
            if key in seen:
                raise ParameterError(f"{name} and {seen[key]} are the same file ({value}).")
            seen[key] = name
        return self

    def absolute(self) -> JobSpec:
        """A copy with every path made absolute (relative to the current directory)."""
        changes = {
            name: os.path.abspath(os.path.expanduser(getattr(self, name)))
            for name in _PATH_FIELDS
            if isinstance(getattr(self, name), str)
        }
        return dataclasses.replace(self, **changes)

    # -- JSON ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, ``format`` first."""
        data = dataclasses.asdict(self)
        return {"format": data.pop("format"), **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the job file (validated first) and return its path."""
        self.validate()
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def from_dict(cls, data: Any) -> JobSpec:
        """Build and validate a spec from a decoded job file; unknown keys are an error."""
        if not isinstance(data, dict):
            raise ParameterError("A job file must hold one JSON object.")
        if "format" not in data:
            raise ParameterError(f'The job file has no "format" field; expected "format": {JOB_FORMAT}.')
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ParameterError(f"Unknown job file field(s): {', '.join(unknown)}.")
        return cls(**data).validate()

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ParameterError(f"The job file is not valid JSON: {exc}.") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> JobSpec:
        """Read and validate a job file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise errors.InputError(f"Cannot read the job file {path}: {exc.strerror or exc}.") from None
        return cls.from_json(text)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _path_key(path: str) -> str:
    return os.path.normcase(os.path.abspath(os.path.expanduser(path)))


def lock_path_for(output_path: str | os.PathLike) -> Path:
    """The lock file that marks ``output_path`` as being written by a running job."""
    path = Path(os.path.abspath(output_path))
    return path.with_name(path.name + LOCK_SUFFIX)


def remove_job_temp(temp_dir: str | os.PathLike, *, created: bool) -> None:
    """Remove a job's temp folder: entirely when it was made for the job (``created`` or an
    ``sr4zct-job-*`` folder), else only the files the job protocol put there (a folder the user chose)."""
    temp_dir = Path(temp_dir)
    if created or temp_dir.name.startswith(TEMP_PREFIX):
        shutil.rmtree(temp_dir, ignore_errors=True)
        return
    for name in (JOB_FILE, CANCEL_FILE):
        with contextlib.suppress(OSError):
            (temp_dir / name).unlink()


def error_from_event(event: dict) -> SR4ZCTError:
    """The :class:`~sr4zct.errors.SR4ZCTError` (subclass chosen by ``code``) for a ``failed`` event."""
    code = event.get("code") or CODE_CRASHED
    message = event.get("message") or "The background job failed."
    detail = event.get("detail")
    for cls in _error_classes():
        if cls.code == code:
            return cls(message, detail=detail)
    exc = SR4ZCTError(message, detail=detail)
    exc.code = code  # e.g. "internal" or "crashed": no dedicated class
    return exc


def _error_classes() -> list[type[SR4ZCTError]]:
    found: list[type[SR4ZCTError]] = []
    todo = [SR4ZCTError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


# ---------------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------------

STATES = ("created", "starting", "running", "cancelling", "finished", "cancelled", "failed")


def default_python_executable() -> str:
    """The Python interpreter for worker processes: ``sys.executable``, or ``PythonSlicer`` inside Slicer."""
    if "slicer" not in sys.modules:
        return sys.executable
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    found = shutil.which("PythonSlicer") or shutil.which(name, path=os.path.dirname(sys.executable))
    if found is None:
        raise errors.ResourceError(
            "Cannot find PythonSlicer to run the background worker; pass python_executable explicitly."
        )
    return found


class BackgroundJob:
    """Runs one :class:`JobSpec` in a worker process and collects its events.

    Parameters
    ----------
    spec : the job; validated here (``ParameterError`` right away for bad options).
    python_executable : the Python that runs the worker; default :func:`default_python_executable`
        (``sys.executable``, or ``PythonSlicer`` inside 3D Slicer, whose ``sys.executable`` is the application).
    env : variables added to (or, with value ``None``, removed from) the worker's environment, e.g.
        ``{"CUDA_VISIBLE_DEVICES": "-1"}`` to keep it off the GPU.
    max_log_lines : how many recent log lines :attr:`last_log_lines` keeps.

    Notes
    -----
    States: ``created`` -> ``starting`` (worker launched, loading) -> ``running`` (``started`` received)
    -> ``cancelling`` (after :meth:`cancel`) -> ``finished`` / ``cancelled`` / ``failed`` once the worker
    has exited (:attr:`done`).

    Thread safety: events are read on background threads and queued; :meth:`poll` (for a GUI timer) and
    :meth:`iter_events` (for scripts) drain the same queue, so use one of them. :attr:`state`,
    :attr:`progress`, :attr:`result` and :attr:`error` are always current without polling.
    """

    def __init__(
        self,
        spec: JobSpec,
        python_executable: str | os.PathLike | None = None,
        env: dict[str, str | None] | None = None,
        *,
        max_log_lines: int = 50,
    ):
        self.spec = spec.validate()
        self.python_executable = os.fspath(python_executable or default_python_executable())
        self.env = dict(env or {})
        self.state = "created"
        self.returncode: int | None = None
        self.progress: dict | None = None
        self.started: dict | None = None
        self.terminal: dict | None = None
        self.temp_dir: Path | None = None
        self._process: subprocess.Popen | None = None
        self._queue: queue.Queue[dict] = queue.Queue()
        self._log = collections.deque(maxlen=max_log_lines)
        self._lock = threading.RLock()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cancel_requested = False
        self._created_temp = False

    # -- public state -------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def result(self) -> dict | None:
        """The ``finished`` event (``output_path``, ``timings_s``, ``parameters`` ...), else None."""
        t = self.terminal
        return t if t is not None and t["event"] == "finished" else None

    @property
    def error(self) -> dict | None:
        """The ``failed`` event (``message``, ``code``, ``detail``, ``exit_code``), else None."""
        t = self.terminal
        return t if t is not None and t["event"] == "failed" else None

    @property
    def output_path(self) -> str | None:
        r = self.result
        return None if r is None else r.get("output_path")

    @property
    def last_log_lines(self) -> list[str]:
        with self._lock:
            return list(self._log)

    @property
    def done(self) -> bool:
        """True once the worker has exited and the terminal event is known."""
        return self._done.is_set()

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> BackgroundJob:
        """Write the job file into the per-job temp folder and start the worker; returns ``self``."""
        with self._lock:
            if self.state != "created":
                raise RuntimeError("A BackgroundJob can only be started once; create a new one.")
            self.state = "starting"
        # The worker runs in the temp folder: relative paths must mean what they mean here.
        spec = self.spec = self.spec.absolute()
        if spec.temp_dir is None:
            self.temp_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
            self._created_temp = True
            spec = dataclasses.replace(spec, temp_dir=str(self.temp_dir))
            self.spec = spec
        else:
            self.temp_dir = Path(spec.temp_dir)
            self._created_temp = not self.temp_dir.exists()
            self.temp_dir.mkdir(parents=True, exist_ok=True)
        job_file = spec.save(self.temp_dir / JOB_FILE)

        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(
                subprocess, "CREATE_NO_WINDOW", 0
            )
        else:
            kwargs["start_new_session"] = True
        try:
            self._process = subprocess.Popen(
                [self.python_executable, "-u", "-m", "sr4zct.run.worker", str(job_file)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                env=self._worker_env(),
                cwd=str(self.temp_dir),
                **kwargs,
            )
        except OSError as exc:
            self._cleanup_temp()
            with self._lock:
                self.state = "failed"
            raise errors.ResourceError(
                f"Cannot start the background worker with {self.python_executable}: {exc.strerror or exc}."
            ) from None
        out = threading.Thread(
            target=self._read_stream, args=("stdout",), name="sr4zct-job-stdout", daemon=True
        )
        err = threading.Thread(
            target=self._read_stream, args=("stderr",), name="sr4zct-job-stderr", daemon=True
        )
        self._threads = [out, err]
        for thread in self._threads:
            thread.start()
        threading.Thread(target=self._watch, name="sr4zct-job-watch", daemon=True).start()
        return self

    def poll(self) -> list[dict]:
        """Events that arrived since the last call (never blocks). Call from a GUI timer."""
        events = []
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                return events

    def iter_events(self, timeout: float | None = None) -> Iterator[dict]:
        """Yield events as they arrive until the terminal one (inclusive).

        Raises ``TimeoutError`` if nothing arrives for ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._done.is_set() and self._queue.empty():
                return
            try:
                event = self._queue.get(timeout=0.1)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError("No event from the background job in time.") from None
                continue
            if deadline is not None:
                deadline = time.monotonic() + timeout
            yield event
            if event["event"] in TERMINAL_EVENTS:
                return

    def wait(self, timeout: float | None = None) -> dict:
        """Block until the worker has exited; return the terminal event.

        Raises ``TimeoutError`` if it is still running after ``timeout`` seconds. Does not raise for a
        failed or cancelled job: look at ``["event"]``, or use :func:`run_blocking`.
        """
        if self._process is None:
            raise RuntimeError("The job was not started.")
        if not self._done.wait(timeout):
            raise TimeoutError(f"The background job is still running after {timeout} s.")
        assert self.terminal is not None
        return self.terminal

    def cancel(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to stop; kill its whole process tree if it has not exited after ``timeout_s``.

        Returns at once; use :meth:`wait` to block until it is gone. The worker removes partial output
        and reports ``cancelled``.
        """
        with self._lock:
            if self._process is None or self._done.is_set() or self._cancel_requested:
                return
            self._cancel_requested = True
            self.state = "cancelling"
        if self.temp_dir is not None:
            with contextlib.suppress(OSError):
                (self.temp_dir / CANCEL_FILE).write_text("cancel\n", encoding="utf-8")
        if os.name != "nt":
            with contextlib.suppress(OSError):
                self._process.send_signal(signal.SIGTERM)
        timer = threading.Thread(
            target=self._escalate, args=(timeout_s,), name="sr4zct-job-kill", daemon=True
        )
        timer.start()

    def kill(self) -> None:
        """Kill the worker and all its descendants now (no clean-up by the worker)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        _kill_tree(process)

    def __enter__(self) -> BackgroundJob:
        if self.state == "created":
            self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if not self.done and self._process is not None:
            self.cancel()
            with contextlib.suppress(TimeoutError):
                self.wait(30)

    # -- internals ----------------------------------------------------------------------------------
    def _worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The worker must import this very sr4zct even when it is not installed (Slicer module folder).
        package_parent = str(Path(__file__).resolve().parent.parent)
        parts = [package_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        for key, value in self.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        return env

    def _read_stream(self, stream: str) -> None:
        assert self._process is not None
        pipe = self._process.stdout if stream == "stdout" else self._process.stderr
        assert pipe is not None
        for line in pipe:
            event = parse_line(line, stream=stream)
            if event is not None:
                self._handle(event)
        pipe.close()

    def _handle(self, event: dict) -> None:
        kind = event.get("event")
        with self._lock:
            if self.terminal is not None:
                # After the terminal event only log text (e.g. interpreter shutdown noise) is kept.
                if kind == "log":
                    self._log.append(event.get("message", ""))
                return
            if kind == "log":
                self._log.append(event.get("message", ""))
            elif kind == "started":
                self.started = event
                if self.state == "starting":
                    self.state = "running"
            elif kind == "progress":
                self.progress = event
            elif kind in TERMINAL_EVENTS:
                self.terminal = event
        self._queue.put(event)

    def _watch(self) -> None:
        assert self._process is not None
        returncode = self._process.wait()
        # Descendants that outlive the worker (after a crash) keep its pipes open; they belong to the
        # job, so give them a moment, then end them: waiting for them could take forever.
        if not self._join_readers(2.0):
            with self._lock:
                self._log.append("Ending processes the worker left behind.")
            if os.name != "nt":
                with contextlib.suppress(OSError):
                    os.killpg(self._process.pid, signal.SIGKILL)
            self._join_readers(3.0)
        with self._lock:
            self.returncode = returncode
            if self.terminal is None:
                self._handle(self._synthetic_terminal(returncode))
            else:
                self.terminal.setdefault("exit_code", returncode)
            self.state = self.terminal["event"]  # finished / cancelled / failed
        self._cleanup_after_exit()
        self._done.set()

    def _join_readers(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _synthetic_terminal(self, returncode: int) -> dict:
        """The terminal event for a worker that exited without one (killed, crashed)."""
        if self._cancel_requested:
            return make_event(
                "cancelled",
                message="Cancelled by the user; the worker was stopped.",
                exit_code=returncode,
                forced=True,
            )
        how = f"exit code {returncode}"
        if returncode < 0:
            with contextlib.suppress(ValueError):
                how = f"killed by {signal.Signals(-returncode).name}"
        message = f"The background worker stopped unexpectedly ({how}) without reporting a result."
        if returncode in (-9, 137):
            message += (
                " This is often the system running out of memory: try a faster preset or a smaller volume."
            )
        tail = self.last_log_lines[-20:]
        return make_event(
            "failed",
            message=message,
            code=CODE_CRASHED,
            detail="\n".join(tail) if tail else None,
            exit_code=returncode,
            last_log_lines=tail,
        )

    def _escalate(self, timeout_s: float) -> None:
        process = self._process
        assert process is not None
        try:
            process.wait(timeout=max(0.0, timeout_s))
        except subprocess.TimeoutExpired:
            with self._lock:
                self._log.append(f"Worker did not stop within {timeout_s:g} s; killing it.")
            _kill_tree(process)

    def _cleanup_after_exit(self) -> None:
        # A worker that was killed cannot clean up after itself: remove its lock and temp folder.
        assert self._process is not None
        lock = lock_path_for(self.spec.output_path) if self.spec.output_path else None
        if lock is not None and lock.exists():
            with contextlib.suppress(OSError, ValueError):
                if int(json.loads(lock.read_text(encoding="utf-8")).get("pid", -1)) == self._process.pid:
                    lock.unlink()
        if not self.spec.keep_temp:
            self._cleanup_temp()

    def _cleanup_temp(self) -> None:
        if self.temp_dir is not None:
            remove_job_temp(self.temp_dir, created=self._created_temp)


def _kill_tree(process: subprocess.Popen) -> None:
    """Kill ``process`` and every descendant (collected first: orphans are re-parented)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        psutil = None
    victims = []
    if psutil is not None:
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(process.pid)
            victims = parent.children(recursive=True)
    if os.name != "nt":
        # The worker leads its own session/process group: this also reaches re-parented grandchildren.
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        process.kill()
    if psutil is not None:
        for child in victims:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(victims, timeout=3)


# ---------------------------------------------------------------------------------------------------
# Conveniences
# ---------------------------------------------------------------------------------------------------


def run_blocking(
    spec: JobSpec,
    progress_callback: Callable[[dict], None] | None = None,
    python_executable: str | os.PathLike | None = None,
    *,
    env: dict[str, str | None] | None = None,
    log_callback: Callable[[dict], None] | None = None,
    cancel_timeout_s: float = 5.0,
) -> dict:
    """Run a job in a worker process and wait for it, like a function call.

    Parameters
    ----------
    spec : the job.
    progress_callback : called with every ``progress`` event.
    python_executable, env : see :class:`BackgroundJob`.
    log_callback : called with every ``log`` event.
    cancel_timeout_s : grace period before the worker is killed on Ctrl+C.

    Returns
    -------
    dict
        The ``finished`` event.

    Raises
    ------
    SR4ZCTError
        The subclass matching the ``failed`` event's ``code`` (``code`` "internal" / "crashed" give the
        base class); :class:`~sr4zct.errors.Cancelled` if the job was cancelled (Ctrl+C cancels it too).
    """
    job = BackgroundJob(spec, python_executable=python_executable, env=env).start()
    try:
        for event in job.iter_events():
            kind = event["event"]
            if kind == "progress" and progress_callback is not None:
                progress_callback(event)
            elif kind == "log" and log_callback is not None:
                log_callback(event)
    except BaseException:
        job.cancel(cancel_timeout_s)
        job.wait()
        raise
    terminal = job.wait()
    if terminal["event"] == "finished":
        return terminal
    if terminal["event"] == "cancelled":
        raise Cancelled(terminal.get("message") or "Cancelled by the user; nothing was written.")
    raise error_from_event(terminal)


def enhance_in_background(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    python_executable: str | os.PathLike | None = None,
    env: dict[str, str | None] | None = None,
    **options: Any,
) -> BackgroundJob:
    """Start enhancing ``input_path`` into ``output_path`` in a worker process.

    ``options`` are :class:`JobSpec` fields (``preset``, ``device``, ``thickness_mm`` ...). Returns the
    started :class:`BackgroundJob`; drain it with :meth:`~BackgroundJob.poll` or wait for it.
    """
    spec = JobSpec(input_path=os.fspath(input_path), output_path=os.fspath(output_path), **options)
    return BackgroundJob(spec, python_executable=python_executable, env=env).start()


def log_line(event: dict) -> str:
    """A one-line human rendering of an event (for consoles and the Slicer log)."""
    kind = event.get("event")
    if kind == "progress":
        pct = 100.0 * float(event.get("fraction") or 0.0)
        text = f"{event.get('stage')}: {event.get('step')}/{event.get('total')} ({pct:.0f} %)"
        if event.get("loss") is not None:
            text += f" loss {event['loss']:.4g}"
        return text
    if kind == "log":
        return f"[{event.get('level', 'info')}] {event.get('message', '')}"
    if kind == "failed":
        return f"failed ({event.get('code')}): {event.get('message')}"
    if kind == "finished":
        return f"finished: {event.get('output_path')}"
    return f"{kind}: {event.get('message', '')}".rstrip(": ")


__all__ = [
    "JOB_FORMAT",
    "BackgroundJob",
    "JobSpec",
    "enhance_in_background",
    "default_python_executable",
    "error_from_event",
    "lock_path_for",
    "log_line",
    "run_blocking",
]
