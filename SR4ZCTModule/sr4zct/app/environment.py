"""The environment of a background run started from a GUI (the Slicer module's single runs and queue)."""

from __future__ import annotations

from sr4zct.run.threads import cores_for_a_gui, worker_environment

__all__ = ["gui_run_environment"]


def gui_run_environment(device: str) -> dict[str, str]:
    """Variables of a background run beside a GUI: idle OpenMP threads wait passively, a core is left to the
    GUI on machines with 4 cores or more (unless ``SR4ZCT_LEAVE_CORES`` is set), and no GPU is visible when
    the run was asked for the CPU."""
    env = worker_environment(leave_free=cores_for_a_gui())
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    return env
