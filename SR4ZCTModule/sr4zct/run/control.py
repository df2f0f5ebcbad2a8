"""How a running enhancement is told to stop: signals, a control file, a reader that went away.

SIGINT, SIGTERM and SIGHUP (what Ctrl+C, ``kill``, a batch scheduler and closing a terminal send) all cancel
a run the same way: :class:`Interrupted` is raised where the program is, every output still under its
temporary name is removed on the way out, and the process exits with ``128 + signal number``. The
first signal interrupts; later ones are ignored until the clean-up is done.

A client that starts the command-line process (:class:`~sr4zct.run.background.BackgroundJob`) can also
write a command into a *control file* it names with ``--control-file``: ``cancel`` (works on every OS,
also through a launcher that forwards no signals) or ``finish`` (stop training now and keep the best
model so far).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["CONTROL_COMMANDS", "Interrupted", "RunControl", "exit_code_for_signal"]

CONTROL_COMMANDS = ("cancel", "finish")
_CANCEL_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``signal_name`` says which (``"SIGTERM"``)."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


def exit_code_for_signal(signal_name: str) -> int:
    """``128 + signal number`` (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP)."""
    number = getattr(signal, signal_name, signal.SIGINT)
    return 128 + int(number)


class RunControl:
    """Cancel and finish requests for one run.

    Parameters
    ----------
    control_file : path-like, optional
        A file a client may create holding ``cancel`` or ``finish``.
    broken_pipe : callable, optional
        True once the reader of the event stream has gone away (then the run is cancelled).
    """

    def __init__(
        self, control_file: str | os.PathLike | None = None, broken_pipe: Callable[[], bool] | None = None
    ):
        self.control_file = None if control_file is None else Path(control_file)
        self._broken_pipe = broken_pipe
        self.cancel_reason: str | None = None
        self.finish_requested = False
        self._signal_seen: str | None = None

    def _read_command(self) -> None:
        if self.control_file is None:
            return
        try:
            command = self.control_file.read_text(encoding="utf-8", errors="replace").strip().lower()
        except OSError:
            return
        if command == "cancel":
            self.cancel_reason = self.cancel_reason or "cancel requested"
        elif command == "finish":
            self.finish_requested = True

    def should_stop(self) -> bool:
        """True once cancelling was asked for (polled by the pipeline between steps)."""
        if self.cancel_reason is None:
            self._read_command()
            if self.cancel_reason is None and self._broken_pipe is not None and self._broken_pipe():
                self.cancel_reason = "the reader of the events went away"
        return self.cancel_reason is not None

    def should_finish(self) -> bool:
        """True once "finish now" was asked for (training stops and keeps its best model)."""
        if not self.finish_requested:
            self._read_command()
        return self.finish_requested

    @contextlib.contextmanager
    def signals(self) -> Iterator[RunControl]:
        """Within this block, SIGINT/SIGTERM/SIGHUP raise :class:`Interrupted` (once); SIGUSR1 asks to finish."""
        previous = {}

        def on_cancel(signum, frame):
            if self._signal_seen is not None:
                return  # cleaning up after the first one
            self._signal_seen = signal.Signals(signum).name
            self.cancel_reason = self._signal_seen
            raise Interrupted(self._signal_seen)

        def on_finish(signum, frame):
            self.finish_requested = True

        handlers = {name: on_cancel for name in _CANCEL_SIGNALS} | {"SIGUSR1": on_finish}
        for name, handler in handlers.items():
            if hasattr(signal, name):
                previous[name] = signal.signal(getattr(signal, name), handler)
        try:
            yield self
        finally:
            for name, handler in previous.items():
                signal.signal(getattr(signal, name), handler)
