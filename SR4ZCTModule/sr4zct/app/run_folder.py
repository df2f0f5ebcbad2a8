"""The folder of one run's temporary files (the input written for the background process, its output, the
live preview, the disagreement map) with the options that name them, and the sweep of the folders a Slicer
left behind when it ended without cleaning up (a crash, a kill).

A run folder is named as the core names every temporary (:func:`sr4zct.io.atomic.temporary_name`):
``.SR4ZCT-run.sr4zct-tmp-<host>-<pid>-<random>``. The name says which process made it, so
:func:`make_run_folder` first removes the run folders of processes that no longer exist on this host
(:func:`sr4zct.io.atomic.remove_stale_temporaries`) and never touches anything else.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sr4zct.errors import ParameterError
from sr4zct.io.atomic import remove_stale_temporaries, temporary_name
from sr4zct.run.options import EnhanceOptions

if TYPE_CHECKING:
    from sr4zct.run.background import BackgroundJob

__all__ = ["RUN_FOLDER", "make_run_folder", "run_options", "start_run"]

#: the name run folders are temporaries of
RUN_FOLDER = "SR4ZCT-run"


def make_run_folder(parent: str | os.PathLike) -> Path:
    """A new, empty run folder in ``parent`` (Slicer's temporary folder), after removing stale ones."""
    target = Path(parent) / RUN_FOLDER
    remove_stale_temporaries(target)
    folder = temporary_name(target)
    folder.mkdir()
    return folder


def run_options(
    options: EnhanceOptions,
    geometry,
    name: str,
    folder: str | os.PathLike,
    *,
    preview: bool,
    uncertainty: bool,
) -> EnhanceOptions:
    """The options of a run on a volume node written to ``folder/input.nrrd``.

    The thickness defaults to the node's (``geometry``, a :class:`~sr4zct.app.node_geometry.NodeGeometry`);
    unknown, it is an error naming the volume ``name``. The file keeps the node's IJK axes, so the slice axis
    (which may come from the DICOM stacking direction) is NumPy axis ``2 - geometry.axis``. The scan mode
    (``auto``) becomes the one the node's DICOM series states, if any. With ``preview``
    and ``uncertainty``, the live preview and the disagreement map go into ``folder`` unless the options
    name other paths.
    """
    if options.thickness_mm is None and geometry.thickness_mm is None:
        raise ParameterError(f"The slice thickness of '{name}' is unknown (it was not loaded from DICOM): pass "
                             "thicknessMm, the real slice thickness in millimetres.")  # fmt: skip
    changes = {
        "thickness_mm": options.thickness_mm or float(geometry.thickness_mm),
        "slice_axis": 2 - geometry.axis,
    }
    series = getattr(geometry, "series", None)
    if options.scan_mode == "auto" and series is not None and series.scan_mode is not None:
        changes["scan_mode"] = series.scan_mode  # read from the DICOM database; the run's file has no header
    if preview and options.preview_path is None:
        changes["preview_path"] = os.path.join(folder, "preview.nrrd")
    if uncertainty and options.uncertainty_path is None:
        changes["uncertainty_path"] = os.path.join(folder, "uncertainty.nrrd")
    return options.replace(**changes)


def start_run(
    options: EnhanceOptions,
    geometry,
    name: str,
    folder: str | os.PathLike,
    write_input: Callable[[str], None],
    *,
    preview: bool,
    uncertainty: bool,
) -> BackgroundJob:
    """Start the background run of a GUI on a volume node in its run ``folder`` (:func:`make_run_folder`).

    The run's options are :func:`run_options`; the process is the core's command line under the interpreter
    for background processes (``PythonSlicer`` in Slicer) with a GUI run's environment
    (:func:`sr4zct.app.environment.gui_run_environment`). ``write_input(path)`` writes the node to the input
    file. When anything fails before the process runs, ``folder`` is removed and the error raised.
    """
    from sr4zct.app.environment import gui_run_environment
    from sr4zct.run.background import BackgroundJob, python_for_background

    try:
        options = run_options(options, geometry, name, folder, preview=preview, uncertainty=uncertainty)
        job = BackgroundJob(os.path.join(folder, "input.nrrd"), os.path.join(folder, "output.nrrd"), options,
                            python_executable=python_for_background(), env=gui_run_environment(options.device))  # fmt: skip
        write_input(job.input_path)
        return job.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
