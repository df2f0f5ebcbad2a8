"""The command line's progress bar: stage, step, loss and the time left, on stderr.

tqdm draws it when it is installed; otherwise (3D Slicer's Python has no tqdm) a plain line does.
"""

from __future__ import annotations

import sys
import time

from sr4zct.system.progress import format_duration

__all__ = ["ProgressBar", "describe"]


def describe(p) -> tuple[str, str]:
    """``(stage text, details)`` of a progress record: ``("train 120/3000", "loss 0.0123, ETA 2 min 31 s")``."""
    stage = f"{p.stage} {p.step}/{p.total}" if p.total > 1 else p.stage
    details = []
    if p.loss is not None:
        details.append(f"loss {p.loss:.4f}")
    if format_duration(p.eta_s):
        details.append(f"ETA {format_duration(p.eta_s)}")
    return stage, ", ".join(details)


class ProgressBar:
    """Progress callback drawing a bar over the whole run (0-100 %); created at the first record."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._tqdm = None
        self._tried_tqdm = False
        self._last_line = -1.0
        self._drawn = False

    def __call__(self, p) -> None:
        if not self.enabled:
            return
        stage, details = describe(p)
        if not self._tried_tqdm:
            self._tried_tqdm = True
            self._tqdm = self._make_tqdm()
        if self._tqdm is not None:
            self._tqdm.n = round(100 * p.fraction, 1)
            self._tqdm.set_description(stage, refresh=False)
            self._tqdm.set_postfix_str(details, refresh=False)
            self._tqdm.refresh()
            return
        now = time.monotonic()
        if self._last_line >= 0 and now - self._last_line < 1.0 and p.step < p.total:
            return
        self._last_line = now
        end = "\r" if self.stream.isatty() else "\n"
        self.stream.write(f"{100 * p.fraction:5.1f}% {stage} {details}".rstrip() + end)
        self.stream.flush()
        self._drawn = True

    def _make_tqdm(self):
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=100, unit="%", file=self.stream, bar_format="{l_bar}{bar}| {postfix}")

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self._drawn and self.stream.isatty():
            self.stream.write("\n")
