"""What the machine has and how a run uses it; the bottom layer, with no knowledge of the method.

This module: memory (available, installed, :func:`check_memory`) and processes, from the standard library.
The submodules: :mod:`~sr4zct.system.threads` (CPU threads, OpenMP), :mod:`~sr4zct.system.devices`
(compute devices, mixed precision) and :mod:`~sr4zct.system.progress` (progress records, cancellation).

3D Slicer's Python does not ship psutil, so these work without it on Linux, macOS and Windows; psutil is
used when it is installed (it knows more platforms and containers).
"""

from __future__ import annotations

import ctypes
import os
import sys

from sr4zct.errors import ResourceError

__all__ = ["available_memory_bytes", "check_memory", "format_bytes", "pid_exists", "total_memory_bytes"]


def _psutil():
    try:
        import psutil
    except ImportError:
        return None
    return psutil


def _windows_memory_status():
    class MemoryStatus(ctypes.Structure):
        _fields_ = [
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        raise OSError("GlobalMemoryStatusEx failed")
    return status


def _meminfo_kib(key: str) -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name == key:
                    return int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_memory_bytes() -> int | None:
    """RAM that a new allocation can use now without swapping, in bytes; ``None`` when unknown."""
    psutil = _psutil()
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    if sys.platform == "win32":
        try:
            return int(_windows_memory_status().ullAvailPhys)
        except (OSError, AttributeError):
            return None
    kib = _meminfo_kib("MemAvailable")  # Linux: counts reclaimable page cache, unlike free pages
    if kib is not None:
        return kib * 1024
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def total_memory_bytes() -> int | None:
    """Installed RAM in bytes; ``None`` when unknown."""
    psutil = _psutil()
    if psutil is not None:
        return int(psutil.virtual_memory().total)
    if sys.platform == "win32":
        try:
            return int(_windows_memory_status().ullTotalPhys)
        except (OSError, AttributeError):
            return None
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def pid_exists(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine (also when it belongs to another user).

    When it cannot be told (an unusual platform), True: callers use it to decide whether a file a process
    left behind may be removed, and keeping it is the safe answer.
    """
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    psutil = _psutil()
    if psutil is not None:
        try:
            return bool(psutil.pid_exists(pid))
        except (OSError, ValueError, psutil.Error):
            return True
    if sys.platform == "win32":
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x00100000, False, pid)  # SYNCHRONIZE
        if handle:
            kernel32.CloseHandle(handle)
            return True
        return ctypes.get_last_error() != 87  # ERROR_INVALID_PARAMETER: no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def format_bytes(n_bytes: float) -> str:
    """``"1.5 GiB"`` style size."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


def check_memory(
    required_bytes: int,
    *,
    available_bytes: int | None = None,
    hint: str = "use a coarser target_spacing_mm, crop the volume or close other programs",
) -> None:
    """Raise :class:`ResourceError` when ``required_bytes`` exceeds the available memory.

    The message gives both numbers so that the user can judge (``hint`` says what to change).
    """
    if available_bytes is None:
        available_bytes = available_memory_bytes()
    if available_bytes is not None and required_bytes > available_bytes:
        raise ResourceError(
            f"Not enough memory: enhancing needs about {format_bytes(required_bytes)} but only "
            f"{format_bytes(available_bytes)} is available; {hint}."
        )
