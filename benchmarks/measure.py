"""Run a command in a child process and measure its wall time and peak memory.

Peak RSS is the largest *sum* over the child's process tree seen by a sampling thread (psutil), which also
counts DataLoader workers and subprocesses; ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (largest single
process) is recorded beside it as a cross-check that cannot miss a short spike. GPU memory is sampled
with ``nvidia-smi`` when it exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

try:  # Unix only; Windows has no RUSAGE_CHILDREN
    import resource
except ImportError:  # pragma: no cover
    resource = None


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _gpu_used_bytes(pids: set[int]) -> int | None:
    """Memory used on NVIDIA GPUs by the given processes (``None`` when nvidia-smi is absent)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    used = 0
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) in pids:
            try:
                used += int(float(parts[1]) * 1024 * 1024)
            except ValueError:
                pass
    return used


def _children_maxrss_bytes() -> int | None:
    if resource is None:
        return None
    value = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(value if sys.platform == "darwin" else value * 1024)


def run_measured(
    cmd: list[str],
    *,
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    log_path: Path | None = None,
    interval_s: float = 0.2,
) -> dict:
    """Run ``cmd`` and return ``returncode``, ``wall_s``, ``peak_rss_bytes``, ``peak_gpu_bytes``,
    ``maxrss_children_bytes``, ``timed_out`` and the last lines of its output (``output_tail``).

    The combined stdout/stderr goes to ``log_path`` when given (else a pipe that is drained).
    """
    log = open(log_path, "w", encoding="utf-8") if log_path is not None else None  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=log if log is not None else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
    )
    ps = psutil.Process(proc.pid)
    peak = {"rss": 0, "gpu": None}
    done = threading.Event()
    gpu_every = max(1, int(2.0 / interval_s))

    def sample() -> None:
        i = 0
        while not done.is_set():
            peak["rss"] = max(peak["rss"], _tree_rss(ps))
            if i % gpu_every == 0:
                try:
                    pids = {proc.pid, *(c.pid for c in ps.children(recursive=True))}
                except psutil.Error:
                    pids = {proc.pid}
                gpu = _gpu_used_bytes(pids)
                if gpu is not None:
                    peak["gpu"] = max(peak["gpu"] or 0, gpu)
            i += 1
            done.wait(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timed_out = False
    output = ""
    try:
        if log is None:
            output, _ = proc.communicate(timeout=timeout_s)
        else:
            proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        for child in ps.children(recursive=True):
            try:
                child.kill()
            except psutil.Error:
                pass
        proc.kill()
        if log is None:
            output, _ = proc.communicate()
        else:
            proc.wait()
    finally:
        done.set()
        sampler.join()
        wall = time.perf_counter() - t0
        if log is not None:
            log.close()
    if log_path is not None:
        output = Path(log_path).read_text(encoding="utf-8", errors="replace")
    tail = "\n".join((output or "").replace("\r", "\n").splitlines()[-30:])
    return {
        "returncode": proc.returncode if not timed_out else None,
        "timed_out": timed_out,
        "wall_s": wall,
        "peak_rss_bytes": int(peak["rss"]),
        "peak_gpu_bytes": peak["gpu"],
        "maxrss_children_bytes": _children_maxrss_bytes(),
        "output": output or "",
        "output_tail": tail,
    }
