"""How a running enhancement is told to stop: signals, a control channel, a client that went away.

SIGINT, SIGTERM and SIGHUP (Ctrl+C, ``kill``, a batch scheduler, a closed terminal) cancel a run: the first one
raises :class:`Interrupted` where the program is (later ones are ignored until the clean-up is done), every
output still under its temporary name is removed on the way out, and the process exits with ``128 + signal
number``. SIGUSR1 (POSIX) finishes now.

A client names a *control channel* with ``--control-file``: ``-`` is the process's standard input (what
:class:`~sr4zct.run.background.BackgroundJob` uses: a launcher such as 3D Slicer's ``PythonSlicer`` hands it
to the interpreter, on every OS, and when the client ends, even killed, the end of the file cancels the run);
a path is a file the client writes into (read every :data:`POLL_S` s). Commands, one a line: ``cancel`` (the
run is interrupted where it is, as by SIGINT) and ``finish`` (training stops now and keeps its best model).
One thread reads the channel from the moment the run starts, before torch is imported.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["CONTROL_COMMANDS", "STDIN", "Interrupted", "RunControl", "exit_code_for_signal"]

CONTROL_COMMANDS = ("cancel", "finish")
#: ``--control-file -``: the commands come on standard input.
STDIN = "-"
#: How often a control *file* is read (s).
POLL_S = 0.25
#: A run whose client went away and that has not ended this many seconds later exits at once (its clean-up
#: is stuck): no process outlives its client for long.
CLIENT_GONE_EXIT_S = 30.0
CLIENT_GONE = "the client went away"
_CANCEL_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")


class Interrupted(KeyboardInterrupt):
    """A stop signal or a cancel command arrived; ``signal_name`` says which signal (``"SIGTERM"``; a
    command is delivered as ``"SIGINT"``), ``reason`` is the command's reason (None for a real signal)."""

    def __init__(self, signal_name: str, reason: str | None = None):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.reason = reason


def exit_code_for_signal(signal_name: str) -> int:
    """``128 + signal number`` (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP)."""
    return 128 + int(getattr(signal, signal_name, signal.SIGINT))


class RunControl:
    """Cancel and finish requests for one run.

    Parameters
    ----------
    control_file : path-like or ``"-"``, optional
        The control channel: ``"-"`` for standard input, else a file a client may write a command into.
    broken_pipe : callable, optional
        True once the reader of the event stream has gone away (then the run is cancelled).
    stdin_fd : int
        The file descriptor ``"-"`` reads (default 0, standard input).
    """

    def __init__(
        self,
        control_file: str | os.PathLike | None = None,
        broken_pipe: Callable[[], bool] | None = None,
        *,
        stdin_fd: int = 0,
    ):
        self.control_file = None if control_file is None else str(control_file)
        self._broken_pipe = broken_pipe
        self._stdin_fd = stdin_fd
        self.cancel_reason: str | None = None
        self.finish_requested = False
        self._signal_seen: str | None = None
        self._lock = threading.RLock()  # re-entrant: a handler may run inside command() on the main thread
        self._armed = False  # inside signals(): a cancel command interrupts the main thread
        self._ended = threading.Event()

    def should_stop(self) -> bool:
        """True once cancelling was asked for (polled by the pipeline between steps)."""
        if self.cancel_reason is None and self._broken_pipe is not None and self._broken_pipe():
            self.cancel_reason = "the reader of the events went away"
        return self.cancel_reason is not None

    def should_finish(self) -> bool:
        """True once "finish now" was asked for (training stops and keeps its best model)."""
        return self.finish_requested

    def command(self, text: str, reason: str = "cancel requested") -> None:
        """Act on one command line (``cancel``, ``finish``; anything else is ignored)."""
        word = text.strip().lower()
        if word == "finish":
            self.finish_requested = True
        elif word == "cancel":
            with self._lock:
                if self.cancel_reason is not None:
                    return
                self.cancel_reason = reason
                if self._armed and self._signal_seen is None:  # signals()'s SIGINT handler raises Interrupted
                    _thread.interrupt_main(signal.SIGINT)

    @contextlib.contextmanager
    def signals(self) -> Iterator[RunControl]:
        """Within this block, SIGINT/SIGTERM/SIGHUP and a ``cancel`` command raise :class:`Interrupted` (once)
        where the run is; SIGUSR1 and ``finish`` ask to finish. The control channel is read from the start."""
        names = [n for n in (*_CANCEL_SIGNALS, "SIGUSR1") if hasattr(signal, n)]
        previous = {name: signal.signal(getattr(signal, name), self._on_signal) for name in names}
        with self._lock:
            self._armed = True
        if self.control_file is not None:
            threading.Thread(target=self._read_channel, name="sr4zct-control", daemon=True).start()
        try:
            yield self
        finally:
            with self._lock:  # a command arriving now no longer interrupts: the run has ended
                self._armed = False
            self._ended.set()
            for name, handler in previous.items():
                signal.signal(getattr(signal, name), handler)

    # -- internals --------------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if name == "SIGUSR1":
            self.finish_requested = True
            return
        with self._lock:
            if self._signal_seen is not None or not self._armed:
                return  # cleaning up after the first one, or the run has ended
            self._signal_seen = name
            reason = self.cancel_reason
            self.cancel_reason = reason or name
        raise Interrupted(name, reason)

    def _read_channel(self) -> None:
        for line in self._stdin_lines() if self.control_file == STDIN else self._file_lines():
            self.command(line)
        if self.control_file != STDIN or self._ended.is_set():
            return
        self.command("cancel", reason=CLIENT_GONE)  # the end of stdin: the client has gone
        if not self._ended.wait(CLIENT_GONE_EXIT_S):
            os._exit(exit_code_for_signal("SIGINT"))  # the clean-up is stuck: never outlive the client

    def _stdin_lines(self) -> Iterator[str]:
        # The descriptor itself, not sys.stdin: a daemon thread blocked in a buffered read would make the
        # interpreter's shutdown abort ("could not acquire lock for <stdin>").
        pending = b""
        while True:
            try:
                chunk = os.read(self._stdin_fd, 1024)
            except OSError:
                chunk = b""  # a closed or broken standard input: the client is gone as well
            if not chunk:
                return
            *lines, pending = (pending + chunk).split(b"\n")
            yield from (line.decode("utf-8", "replace") for line in lines)

    def _file_lines(self) -> Iterator[str]:
        path = Path(self.control_file)
        while not self._ended.wait(POLL_S):
            with contextlib.suppress(OSError):
                yield from path.read_text(encoding="utf-8", errors="replace").splitlines()
