"""An enhancement in a background process: :class:`BackgroundJob`.

The process is the command line, ``python -m sr4zct enhance IN -o OUT [options] --events --control-file -``,
in a process group of its own. Its stdout carries the events of docs/events.md, its stderr its log, its stdin
the client's commands (``finish``, ``cancel``). A launcher such as 3D Slicer's ``PythonSlicer`` (which starts
the interpreter as a child and forwards no signal) hands the three pipes to the interpreter, on every OS; the
interpreter reads its stdin from its start and cancels itself when stdin closes (the client ended, even
killed), so it never outlives its client.

One reader thread per pipe; the stdout reader ends the job once the process has exited. Cancelling is one
path on every OS: ``cancel`` on stdin, then, if the process is still there after the grace period, its whole
tree is killed (:func:`kill_tree`). No signal is sent otherwise. A process that dies without a terminal event
is reported as ``failed`` with code ``crashed``. Importing this module is cheap (no torch).

Examples
--------
>>> job = BackgroundJob("ct.nrrd", "out.nrrd", thickness_mm=3.0, preset="fast")
>>> job.start()                                   # doctest: +SKIP
>>> for event in job.iter_events():               # doctest: +SKIP
...     print(event["event"], event.get("fraction"))
>>> job.outcome()["output_path"]                  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sr4zct import errors
from sr4zct.io import as_path
from sr4zct.run.events import CODE_CRASHED, TERMINAL_EVENTS, make_event, parse_line
from sr4zct.run.options import EnhanceOptions
from sr4zct.system import pid_exists

__all__ = ["BackgroundJob", "error_from_event", "kill_tree", "python_for_background"]

WINDOWS = os.name == "nt"
# Windows process creation flags (the subprocess module defines them on Windows only).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
#: How long the launcher may linger after the pipes closed, or the pipes stay open after the launcher exited
#: (held by children of a crashed process, not by its interpreter), before the tree is killed (s).
STRAGGLER_S = 2.0


def python_for_background() -> str:
    """The interpreter for background processes: ``sys.executable``, or ``PythonSlicer`` inside 3D Slicer
    (whose ``sys.executable`` is the application)."""
    if "slicer" not in sys.modules:
        return sys.executable
    name = "PythonSlicer.exe" if WINDOWS else "PythonSlicer"
    found = shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))
    if found is None:
        raise errors.ResourceError("Cannot find PythonSlicer to run the background process.")
    return found


def error_from_event(event: dict) -> errors.SR4ZCTError:
    """The :class:`~sr4zct.errors.SR4ZCTError` (subclass chosen by ``code``) for a ``failed`` event."""
    code = event.get("code") or CODE_CRASHED
    classes, todo = [], [errors.SR4ZCTError]
    while todo:
        classes.append(todo.pop())
        todo.extend(classes[-1].__subclasses__())
    cls = next((c for c in classes if c.code == code), errors.SR4ZCTError)
    exc = cls(event.get("message") or "The background job failed.", detail=event.get("detail"))
    exc.code = code  # "internal" and "crashed" have no class of their own
    return exc


def start_options() -> dict[str, Any]:
    """``Popen`` keywords that give the process a group of its own (so that :func:`kill_tree` finds it)."""
    if WINDOWS:
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    return {"start_new_session": True}


def kill_tree(leader: int, interpreter: int | None = None) -> None:
    """Kill a job's process tree at once (no clean-up by the processes).

    Parameters
    ----------
    leader : int
        The process the client started (the launcher, or the interpreter itself), leader of its group.
    interpreter : int, optional
        The interpreter's own pid (its ``started`` event) while it may still run: on Windows it is reached
        even when the launcher has already exited (then ``/T`` from the launcher finds nothing).

    Notes
    -----
    POSIX: ``SIGKILL`` to the process group. Windows: ``taskkill /T /F /PID`` for the leader and the
    interpreter (the OS's own tree kill; Slicer bundles no psutil).
    """
    if not WINDOWS:
        with contextlib.suppress(OSError):
            os.killpg(leader, signal.SIGKILL)
        return
    for pid in dict.fromkeys(p for p in (leader, interpreter) if p):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(pid)], stdin=subprocess.DEVNULL,
                           capture_output=True, creationflags=CREATE_NO_WINDOW, timeout=30, check=False)  # fmt: skip


class BackgroundJob:
    """One enhancement in a background process.

    Parameters
    ----------
    input_path, output_path : path-like
        As for :func:`sr4zct.enhance_file`.
    options : EnhanceOptions or dict, optional
        The options (a dict of option names is read with :meth:`EnhanceOptions.from_dict`); ``changes``
        override single ones (``BackgroundJob(a, b, thickness_mm=3.0)``).
    python_executable : str, optional
        The interpreter (or a launcher of it); default :func:`python_for_background`.
    env : dict, optional
        Variables added to (or, with value None, removed from) the process's environment.

    Notes
    -----
    States: ``created`` -> ``running`` -> (``cancelling``) -> ``finished`` / ``cancelled`` / ``failed``
    once the process has exited (:attr:`done`). :attr:`progress`, :attr:`started`, :attr:`terminal`,
    :attr:`result` and :attr:`error` are always current. Callbacks of :meth:`add_done_callback` run in the
    thread that calls :meth:`poll`, :meth:`iter_events` or :meth:`wait` (a GUI's main thread); one that
    raises turns the job into ``failed``. Those calls also end a tree that outlives its launcher.
    """

    def __init__(
        self,
        input_path: str | os.PathLike,
        output_path: str | os.PathLike,
        options: EnhanceOptions | None = None,
        *,
        python_executable: str | os.PathLike | None = None,
        env: dict[str, str | None] | None = None,
        **changes: Any,
    ):
        options = _as_options(options)
        self.options = options.replace(**changes) if changes else options
        # An empty path would become the current folder: refused before it is made absolute.
        self.input_path = os.path.abspath(as_path(input_path, "input_path"))
        self.output_path = os.path.abspath(as_path(output_path, "output_path"))
        python = os.fspath(python_executable or python_for_background())
        self._command = [python, "-u", "-m", "sr4zct", "enhance", self.input_path, "-o", self.output_path,
                         *_absolute_paths(self.options).to_args(), "--events"]  # fmt: skip
        self._env = dict(env or {})
        self.state = "created"
        self.progress: dict | None = None
        self.started: dict | None = None
        self.terminal: dict | None = None
        self.returncode: int | None = None
        self._process: subprocess.Popen | None = None
        self._queue: queue.Queue[dict] = queue.Queue()
        self._log: collections.deque[str] = collections.deque(maxlen=50)
        self._lock = threading.RLock()
        self._exited = threading.Event()
        self._readers: list[threading.Thread] = []
        self._callbacks: list[Callable[[BackgroundJob], Any]] = []
        self._settled = False
        self._orphaned_since: float | None = None

    @classmethod
    def from_command(
        cls, command: Sequence[str], *, env: dict[str, str | None] | None = None
    ) -> BackgroundJob:
        """A job running any ``command`` that speaks the event protocol (and takes ``--control-file -``)."""
        job = cls(os.devnull, os.devnull, env=env, python_executable=sys.executable)
        job._command = list(command)
        return job

    # -- state ------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The process the client started (with ``PythonSlicer``, the launcher)."""
        return None if self._process is None else self._process.pid

    @property
    def interpreter_pid(self) -> int | None:
        """The interpreter's own pid, from its ``started`` event (None before)."""
        pid = (self.started or {}).get("pid")
        return pid if isinstance(pid, int) and pid > 0 else None

    @property
    def done(self) -> bool:
        """True once the process has exited and the terminal event is known."""
        return self._exited.is_set()

    @property
    def result(self) -> dict | None:
        """The ``finished`` event, else None."""
        return self.terminal if self.terminal is not None and self.terminal["event"] == "finished" else None

    @property
    def error(self) -> dict | None:
        """The ``failed`` event, else None."""
        return self.terminal if self.terminal is not None and self.terminal["event"] == "failed" else None

    @property
    def last_log_lines(self) -> list[str]:
        with self._lock:
            return list(self._log)

    def add_done_callback(self, callback: Callable[[BackgroundJob], Any]) -> None:
        """Call ``callback(job)`` once the job has ended (see the class notes for the thread)."""
        self._callbacks.append(callback)

    def outcome(self) -> dict:
        """The ``finished`` event of an ended job; for a cancelled or failed one, raises
        :class:`~sr4zct.errors.Cancelled` or its error (:func:`error_from_event`)."""
        if not self._settled:
            raise RuntimeError("The background job has not ended yet.")
        if self.terminal["event"] == "cancelled":
            raise errors.Cancelled(self.terminal.get("message") or "Cancelled; nothing was written.")
        if self.terminal["event"] == "failed":
            raise error_from_event(self.terminal)
        return self.terminal

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> BackgroundJob:
        """Start the process; returns ``self``."""
        with self._lock:
            if self.state != "created":
                raise RuntimeError("A BackgroundJob can only be started once; create a new one.")
            self.state = "running"
        command = self._command + ["--control-file", "-"]
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                encoding="utf-8", errors="replace", bufsize=1, env=self._process_env(), **start_options(),
            )  # fmt: skip
        except OSError as exc:
            self.state = "failed"
            raise errors.ResourceError(f"Cannot start {command[0]}: {exc.strerror or exc}.") from None
        self._readers = [threading.Thread(target=self._read, args=(stream,), name=f"sr4zct-{stream}", daemon=True)
                         for stream in ("stdout", "stderr")]  # fmt: skip
        for reader in reversed(self._readers):  # stderr's first: stdout's may join it at once (a process
            reader.start()  # that dies at start), and joining a thread not yet started raises
        return self

    def poll(self) -> list[dict]:
        """Events that arrived since the last call; never blocks."""
        self._check()
        events = []
        with contextlib.suppress(queue.Empty):
            while True:
                events.append(self._queue.get_nowait())
        return self._settle(events)

    def iter_events(self, timeout: float | None = None) -> Iterator[dict]:
        """Yield events as they arrive, up to the terminal one; ``TimeoutError`` after ``timeout`` s of silence."""
        last = time.monotonic()
        while not self._settled:
            events = self.poll()
            yield from events
            if events:
                last = time.monotonic()
            elif timeout is not None and time.monotonic() - last > timeout:
                raise TimeoutError("No event from the background job in time.")
            else:
                time.sleep(0.05)

    def wait(
        self,
        timeout: float | None = None,
        while_waiting: Callable[[], Any] | None = None,
        on_event: Callable[[dict], Any] | None = None,
    ) -> dict:
        """Block until the job has ended; return its terminal event (also for failed and cancelled jobs).

        ``while_waiting`` is called about every 50 ms (e.g. ``slicer.app.processEvents``), ``on_event`` with
        every event; ``TimeoutError`` after ``timeout`` s.
        """
        if self._process is None:
            raise RuntimeError("The job was not started.")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._settled:
            for event in self.poll():
                if on_event is not None:
                    on_event(event)
            if self._settled:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"The background job is still running after {timeout} s.")
            if while_waiting is not None:
                while_waiting()
            time.sleep(0.05)
        return self.terminal

    def cancel(self, grace_s: float = 5.0) -> None:
        """Ask the process to stop (``cancel`` on its stdin, which is then closed); after ``grace_s`` seconds
        kill its whole tree. Returns at once; the process removes its outputs (nothing half-written)."""
        with self._lock:
            if self._process is None or self.done or self.state == "cancelling":
                return
            self.state = "cancelling"
        self._send("cancel", close=True)
        timer = threading.Timer(max(0.0, grace_s), self._kill_after_grace)
        timer.daemon = True
        timer.start()

    def finish(self) -> None:
        """Ask training to stop now and go on to inference with the best model so far."""
        self._send("finish")

    def kill(self) -> None:
        """Kill the process tree now (no clean-up by the process)."""
        process = self._process
        if process is None or self.done:
            return
        reading = any(reader.is_alive() for reader in self._readers)
        interpreter = self.interpreter_pid
        kill_tree(process.pid, interpreter if reading and interpreter != process.pid else None)

    # -- internals --------------------------------------------------------------------------------------
    def _send(self, command: str, close: bool = False) -> None:
        """Write a command line on the process's stdin (nothing happens once it has gone)."""
        with self._lock:
            stdin = None if self._process is None else self._process.stdin
            if stdin is None or stdin.closed or self.done:
                return
            with contextlib.suppress(OSError, ValueError):  # BrokenPipeError: the process has ended
                stdin.write(command + "\n")
                stdin.flush()
            if close:
                with contextlib.suppress(OSError, ValueError):
                    stdin.close()

    def _process_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The process must import this very sr4zct, also where it is not installed (Slicer's module folder).
        parts = [str(Path(__file__).resolve().parents[2]), *env.get("PYTHONPATH", "").split(os.pathsep)]
        env.update(PYTHONPATH=os.pathsep.join(dict.fromkeys(p for p in parts if p)), PYTHONUNBUFFERED="1",
                   PYTHONIOENCODING="utf-8")  # fmt: skip
        for key, value in self._env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        return env

    def _read(self, stream: str) -> None:
        pipe = getattr(self._process, stream)
        for line in pipe:
            event = parse_line(line, stream=stream)
            if event is not None:
                self._handle(event)
        pipe.close()
        if stream == "stdout":
            self._end()

    def _handle(self, event: dict) -> None:
        kind = event.get("event")
        with self._lock:
            if kind == "log":  # kept even after the terminal event: stderr is read on its own thread
                self._log.append(str(event.get("message", "")))
            elif self.terminal is not None:
                return  # a second terminal event or progress after the end: ignored
            elif kind == "started":
                self.started = event
            elif kind == "progress":
                self.progress = event
            elif kind in TERMINAL_EVENTS:
                self.terminal = event
                return  # queued by _end once the process has exited
        self._queue.put(event)

    def _end(self) -> None:
        """The process closed its stdout: wait for it (a launcher that lingers is killed) and for its last
        log lines, then queue the terminal event."""
        process = self._process
        try:
            process.wait(STRAGGLER_S)
        except subprocess.TimeoutExpired:
            self.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5.0)
        self._readers[1].join(STRAGGLER_S)  # stderr: the last words of a crash
        returncode = process.returncode if process.returncode is not None else -int(signal.SIGKILL)
        with self._lock:
            self.returncode = returncode
            self.terminal = self.terminal or self._missing_terminal(returncode)
            self.terminal.setdefault("exit_code", returncode)
            with contextlib.suppress(OSError, ValueError):
                process.stdin.close()
        self._exited.set()
        self._queue.put(self.terminal)

    def _check(self) -> None:
        """End a tree that outlives its launcher: pipes still open after it exited, and not because its
        interpreter runs on (its events still come, a cancel still reaches it)."""
        process = self._process
        if process is None or self.done or process.poll() is None or self._interpreter_running():
            self._orphaned_since = None
            return
        now = time.monotonic()
        self._orphaned_since = self._orphaned_since or now
        if now - self._orphaned_since > STRAGGLER_S:
            self.kill()

    def _interpreter_running(self) -> bool:
        pid = self.interpreter_pid
        return pid is not None and pid != self._process.pid and pid_exists(pid)

    def _kill_after_grace(self) -> None:
        if not self.done:
            with self._lock:
                self._log.append("The process did not stop within the grace period; killing it.")
            self.kill()

    def _missing_terminal(self, returncode: int) -> dict:
        """The terminal event of a process that ended without one (killed, crashed)."""
        if self.state == "cancelling":
            return make_event("cancelled", message="Cancelled; the process was stopped.", exit_code=returncode,
                              forced=True)  # fmt: skip
        how = f"exit code {returncode}"
        if returncode < 0:
            with contextlib.suppress(ValueError):
                how = f"killed by {signal.Signals(-returncode).name}"
        message = f"The background process stopped unexpectedly ({how}) without reporting a result."
        if returncode in (-9, 137):
            message += (
                " This is often the system running out of memory: try the fast preset or a smaller volume."
            )
        return make_event("failed", message=message, code=CODE_CRASHED,
                          detail="\n".join(self.last_log_lines[-20:]) or None, exit_code=returncode)  # fmt: skip

    def _settle(self, events: list[dict]) -> list[dict]:
        """When ``events`` hold the terminal event (queued only once the process has exited): the final state
        and the done callbacks; a callback that fails replaces the terminal event with a ``failed`` one."""
        end = next((i for i, e in enumerate(events) if e.get("event") in TERMINAL_EVENTS), None)
        if end is None or self._settled:
            return events
        self._settled = True
        self.state = self.terminal["event"]
        for callback in self._callbacks:
            try:
                callback(self)
            except Exception as exc:  # e.g. the result cannot be loaded: the user must see a failure
                self.terminal = events[end] = make_event("failed", message=f"The result could not be used: {exc}",
                                                        code="internal", detail=repr(exc), exit_code=self.returncode)  # fmt: skip
                self.state = "failed"
                break
        return events


def _as_options(options: Any) -> EnhanceOptions:
    """``options`` as :class:`EnhanceOptions`: None gives the defaults, a dict is read by option names."""
    if options is None:
        return EnhanceOptions()
    if isinstance(options, dict):
        return EnhanceOptions.from_dict(options)
    if not isinstance(options, EnhanceOptions):
        raise TypeError(
            f"options must be an EnhanceOptions or a dict of option names, got {type(options).__name__}."
        )
    return options


def _absolute_paths(options: EnhanceOptions) -> EnhanceOptions:
    """Path options made absolute: the process may run elsewhere."""
    changes = {
        name: os.path.abspath(value)
        for name in ("model_path", "save_model_path", "uncertainty_path")
        if (value := getattr(options, name)) is not None
    }
    return options.replace(**changes) if changes else options
