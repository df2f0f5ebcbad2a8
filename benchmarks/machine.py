"""Describe the machine and the software versions a benchmark ran with."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """CPU model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_description() -> list[dict]:
    """One record per CUDA/MPS device torch can use (empty list when none)."""
    try:
        import torch
    except ImportError:
        return []
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append(
                {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1), "kind": "cuda"}
            )
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        gpus.append({"name": "Apple MPS", "memory_gb": None, "kind": "mps"})
    return gpus


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict:
    """Machine (CPU, cores, RAM, GPU) and versions (python, torch, numpy, sr4zct, git commit)."""
    import numpy

    versions = {"python": platform.python_version(), "numpy": numpy.__version__}
    try:
        import torch

        versions["torch"] = torch.__version__
        threads = torch.get_num_threads()
    except ImportError:
        threads = None
    try:
        import sr4zct

        versions["sr4zct"] = sr4zct.__version__
    except ImportError:
        versions["sr4zct"] = None
    versions["git_commit"] = git_commit()
    return {
        "cpu": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpu_description(),
        "torch_threads": threads,
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "executable": sys.executable,
    }


def machine_line(info: dict) -> str:
    gpus = ", ".join(f"{g['name']} ({g['memory_gb']} GB)" for g in info.get("gpus") or []) or "none"
    return (
        f"{info.get('cpu')}, {info.get('cores_logical')} logical cores, {info.get('ram_gb')} GB RAM, "
        f"GPU: {gpus}; {info.get('os')}"
    )


def versions_line(info: dict) -> str:
    v = info.get("versions", {})
    return ", ".join(f"{k} {v[k]}" for k in ("python", "torch", "numpy", "sr4zct", "git_commit") if v.get(k))
