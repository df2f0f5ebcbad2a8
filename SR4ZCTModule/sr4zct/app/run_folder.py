"""The folder of one run's temporary files (the input written for the background process, its output, the
live preview), and the sweep of those a Slicer left behind when it ended without cleaning up (a crash, a kill).

A run folder is named as the core names every temporary (:func:`sr4zct.io.atomic.temporary_name`):
``.SR4ZCT-run.sr4zct-tmp-<host>-<pid>-<random>``. The name says which process made it, so
:func:`make_run_folder` first removes the run folders of processes that no longer exist on this host
(:func:`sr4zct.io.atomic.remove_stale_temporaries`) and never touches anything else.
"""

from __future__ import annotations

import os
from pathlib import Path

from sr4zct.io.atomic import remove_stale_temporaries, temporary_name

__all__ = ["RUN_FOLDER", "make_run_folder"]

#: the name run folders are temporaries of
RUN_FOLDER = "SR4ZCT-run"


def make_run_folder(parent: str | os.PathLike) -> Path:
    """A new, empty run folder in ``parent`` (Slicer's temporary folder), after removing stale ones."""
    target = Path(parent) / RUN_FOLDER
    remove_stale_temporaries(target)
    folder = temporary_name(target)
    folder.mkdir()
    return folder
