"""How many CPU threads a run uses, and how idle OpenMP threads wait; standard library only.

This module does not import torch, so that a process can prepare the OpenMP environment before torch
loads (torch's OpenMP runtime reads ``OMP_WAIT_POLICY`` once, when it is loaded):

* :func:`cpu_thread_count`: the physical cores this process may use, minus the cores it is told to leave
  free (:data:`LEAVE_CORES_ENV`; the Slicer module leaves the GUI a core from 4 cores up,
  :func:`cores_for_a_gui`). Never a load
  reading: a snapshot at start decides a whole run, and one briefly busy moment (e.g. the GUI opening the
  job) left runs on 1 of 2 cores for their whole length.
* :func:`prepare_openmp` / :func:`worker_environment`: ``OMP_WAIT_POLICY=PASSIVE`` unless the user set a
  policy. With the default (spinning) policy, 2 threads on a 2-core CPU that another process also uses
  ran 3-4x slower than 1 thread, because every parallel region waits for the thread whose core is taken;
  passive waiting made 2 threads at least as fast as 1 there (``python -m benchmarks.run --settings none
  --threads-rule``, BENCHMARKS.md).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

__all__ = [
    "LEAVE_CORES_ENV",
    "WAIT_POLICY",
    "cores_for_a_gui",
    "cpu_thread_count",
    "leave_cores",
    "physical_cores",
    "prepare_openmp",
    "usable_cpus",
    "worker_environment",
]

# Cores a run leaves to other work on this machine (a whole number >= 0; unset = 0). The Slicer module
# sets it for its background run (cores_for_a_gui); a user may set it on a machine shared with another job.
LEAVE_CORES_ENV = "SR4ZCT_LEAVE_CORES"
# How idle OpenMP threads wait unless the user chose (OMP_WAIT_POLICY is the OpenMP standard's variable).
WAIT_POLICY = "PASSIVE"


def usable_cpus() -> set[int]:
    """Logical CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def _cpuinfo_text() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _psutil_physical() -> int | None:
    try:
        import psutil  # optional: not in 3D Slicer
    except ImportError:
        return None
    try:
        return psutil.cpu_count(logical=False)
    except Exception:  # noqa: BLE001 - an optional source of a figure
        return None


def physical_cores(cpuinfo_text: str | None = None, cpus: set[int] | None = None) -> int:
    """Physical cores among ``cpus`` (default :func:`usable_cpus`): the hyper-threads of a core count once.

    Parameters
    ----------
    cpuinfo_text : text of ``/proc/cpuinfo`` (read when ``None``; Linux): logical CPUs are mapped to their
        ``(physical id, core id)``. Without that map (other systems, containers that hide it), psutil's
        physical count when it is installed and all CPUs are usable, else every usable logical CPU counts.
    cpus : logical CPU numbers to count.
    """
    cpus = usable_cpus() if cpus is None else set(cpus)
    text = _cpuinfo_text() if cpuinfo_text is None else cpuinfo_text
    cores: dict[int, tuple[str, str]] = {}
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        if fields.get("processor", "").isdigit() and "core id" in fields:
            cores[int(fields["processor"])] = (fields.get("physical id", "0"), fields["core id"])
    if cpus and cpus <= set(cores):
        return max(1, len({cores[c] for c in cpus}))
    if cpuinfo_text is None and len(cpus) == (os.cpu_count() or 0):
        physical = _psutil_physical()
        if physical:
            return max(1, min(physical, len(cpus)))
    return max(1, len(cpus))


def leave_cores(environ: Mapping[str, str] | None = None) -> int:
    """Cores to leave free, from :data:`LEAVE_CORES_ENV` (0 when unset); a bad value raises ParameterError."""
    text = (os.environ if environ is None else environ).get(LEAVE_CORES_ENV, "").strip()
    if not text:
        return 0
    if not text.isdigit():
        from sr4zct.errors import ParameterError

        raise ParameterError(f"{LEAVE_CORES_ENV} must be a whole number of cores >= 0, got {text!r}.")
    return int(text)


def cpu_thread_count(
    *,
    leave_free: int | None = None,
    environ: Mapping[str, str] | None = None,
    cores: int | None = None,
) -> int:
    """CPU threads for a run: the usable physical cores minus those left free, at least 1.

    Parameters
    ----------
    leave_free : cores to leave to other work (e.g. 1 under a GUI); default :func:`leave_cores`.
    environ : environment to read (default ``os.environ``).
    cores : usable physical cores (default :func:`physical_cores`).
    """
    leave = leave_cores(environ) if leave_free is None else max(0, int(leave_free))
    total = physical_cores() if cores is None else int(cores)
    return max(1, total - leave)


def cores_for_a_gui(cores: int | None = None) -> int:
    """Cores a background run leaves to a GUI on the same machine: 1 from 4 usable physical cores up, else 0.

    On fewer cores one core less would halve the run for a GUI that is idle most of the time, and with
    passive waiting (:func:`prepare_openmp`) a run's threads yield a core the GUI needs.
    """
    return 1 if (physical_cores() if cores is None else int(cores)) >= 4 else 0


def worker_environment(*, leave_free: int | None = None) -> dict[str, str]:
    """Variables for a process that will run SR4ZCT (e.g. the Slicer module's background worker).

    ``OMP_WAIT_POLICY`` (unless this process has one set), and :data:`LEAVE_CORES_ENV` when ``leave_free``
    is given and this process's environment does not set it (the user's choice wins).
    """
    env: dict[str, str] = {}
    if not os.environ.get("OMP_WAIT_POLICY", "").strip():
        env["OMP_WAIT_POLICY"] = WAIT_POLICY
    if leave_free is not None and not os.environ.get(LEAVE_CORES_ENV, "").strip():
        env[LEAVE_CORES_ENV] = str(max(0, int(leave_free)))
    return env


def prepare_openmp(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``OMP_WAIT_POLICY`` to :data:`WAIT_POLICY` unless it is set; returns whether it takes effect.

    Call before torch is imported (the CLI's and the worker's start): torch's OpenMP runtime reads the
    variable once when it loads, so afterwards this changes only the environment of child processes and
    returns False.
    """
    env = os.environ if environ is None else environ
    if env.get("OMP_WAIT_POLICY", "").strip():
        return False
    env["OMP_WAIT_POLICY"] = WAIT_POLICY
    return "torch" not in sys.modules
