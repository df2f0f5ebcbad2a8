"""Where a background run started from a GUI runs: its environment variables, the devices it may use."""

from __future__ import annotations

from sr4zct.system.threads import cores_for_a_gui, worker_environment

__all__ = ["device_lines", "gui_run_environment"]


def gui_run_environment(device: str) -> dict[str, str]:
    """Variables of a background run beside a GUI: idle OpenMP threads wait passively, a core is left to the
    GUI on machines with 4 cores or more (unless ``SR4ZCT_LEAVE_CORES`` is set), and no GPU is visible when
    the run was asked for the CPU."""
    env = worker_environment(leave_free=cores_for_a_gui())
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    return env


def device_lines() -> list[str]:
    """One line per device PyTorch can use here (``"cuda:0: NVIDIA RTX A5000 (24 GB)"``), and a note when
    there is no GPU. Imports torch."""
    from sr4zct.system.devices import describe_devices

    lines = []
    for device in describe_devices():
        memory = f" ({device['memory_gb']:g} GB)" if device.get("memory_gb") else ""
        lines.append(f"{device['id']}: {device['name']}{memory}")
    if not any(line.startswith(("cuda", "mps")) for line in lines):
        lines.append("No GPU found: training runs on the CPU (slower; use the fast preset).")
    return lines
