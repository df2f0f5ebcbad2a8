"""Compute device selection (``--device auto|cuda|cuda:N|mps|cpu``) and mixed-precision helpers."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch

from sr4zct.errors import ParameterError, ResourceError
from sr4zct.system import total_memory_bytes
from sr4zct.system.threads import cpu_thread_count

__all__ = [
    "AMP_DTYPES",
    "DeviceChoice",
    "amp_dtype",
    "autocast",
    "choose_device",
    "configure_device",
    "free_memory_bytes",
    "gpu_pass_pixels",
    "describe_devices",
    "grad_scaler",
    "is_out_of_memory",
    "resolve_device",
    "set_cpu_threads",
    "single_thread",
]


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


@dataclass(frozen=True)
class DeviceChoice:
    """Where a run computes and, when ``auto`` chose it for want of a GPU, why.

    Attributes
    ----------
    device : torch.device
    name : what it is, e.g. ``"CPU"``, ``"CUDA GPU NVIDIA H100"``.
    threads : CPU threads (None for a GPU).
    reason : a clause that completes "ran on <name>", e.g. ``"as no CUDA GPU is available"``; empty when the
        device was asked for or is the first choice.
    """

    device: torch.device
    name: str
    threads: int | None = None
    reason: str = ""

    def description(self, precision: str | None = None) -> str:
        """One phrase for the output's parameters, the events and the final line, e.g.
        ``"CPU (2 threads, bf16), as no CUDA GPU is available"``."""
        details = [f"{self.threads} threads"] if self.threads is not None else []
        details += [precision] if precision else []
        text = f"{self.name} ({', '.join(details)})" if details else self.name
        return f"{text}, {self.reason}" if self.reason else text


def _no_gpu_reason() -> str:
    if sys.platform == "darwin":
        return "as neither a CUDA GPU nor Apple MPS is available"
    return "as no CUDA GPU is available"


def choose_device(spec: str = "auto") -> DeviceChoice:
    """Turn a user's device choice into a :class:`DeviceChoice`.

    ``"auto"`` picks CUDA, then Apple MPS, then the CPU and says why. An explicit device that is not
    available raises :class:`~sr4zct.errors.ResourceError`; an unknown name raises
    :class:`~sr4zct.errors.ParameterError`.
    """
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            dev = torch.device("cuda", torch.cuda.current_device())
            return DeviceChoice(dev, f"CUDA GPU {torch.cuda.get_device_name(dev)}")
        if _mps_available():
            return DeviceChoice(torch.device("mps"), "Apple MPS GPU")
        return DeviceChoice(torch.device("cpu"), "CPU", _cpu_threads(), _no_gpu_reason())
    if spec == "cpu":
        return DeviceChoice(torch.device("cpu"), "CPU", _cpu_threads())
    if spec == "mps":
        if not _mps_available():
            raise ResourceError(
                "Device 'mps' was requested but Apple MPS is not available; use --device cpu."
            )
        return DeviceChoice(torch.device("mps"), "Apple MPS GPU")
    if spec == "cuda" or spec.startswith("cuda:"):
        dev = _cuda_device(spec)
        return DeviceChoice(dev, f"CUDA GPU {dev.index}: {torch.cuda.get_device_name(dev)}")
    raise ParameterError(f"Unknown device {spec!r}; choose auto, cpu, cuda, cuda:N or mps.")


def _cuda_device(spec: str) -> torch.device:
    """The CUDA device ``cuda`` or ``cuda:N`` names; ResourceError when it does not exist here."""
    if not torch.cuda.is_available():
        raise ResourceError(
            f"Device {spec!r} was requested but CUDA is not available in this PyTorch "
            f"({torch.__version__}); use --device cpu or install a CUDA build of PyTorch."
        )
    index = 0
    if ":" in spec:
        try:
            index = int(spec.split(":", 1)[1])
        except ValueError:
            raise ParameterError(f"Invalid device {spec!r}; use cuda or cuda:N.") from None
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise ResourceError(f"Device {spec!r} does not exist: this machine has {count} CUDA device(s).")
    return torch.device("cuda", index)


def resolve_device(spec: str = "auto") -> tuple[torch.device, str]:
    """The device of :func:`choose_device` and its description (without the precision)."""
    choice = choose_device(spec)
    return choice.device, choice.description()


def _cpu_threads() -> int:
    return torch.get_num_threads()


def set_cpu_threads(n_threads: int | None = None, *, leave_free: int | None = None) -> int:
    """Set torch's intra-op threads and return the count.

    Default: ``OMP_NUM_THREADS`` when set (left as torch read it), otherwise
    :func:`sr4zct.system.threads.cpu_thread_count` (the usable physical cores minus ``leave_free``, default
    from ``SR4ZCT_LEAVE_CORES``). Results are bit-identical only for the same thread count; the count is
    part of the device description recorded with every result.
    """
    if n_threads is None:
        if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
            return torch.get_num_threads()
        n_threads = cpu_thread_count(leave_free=leave_free)
    n_threads = max(1, int(n_threads))
    if torch.get_num_threads() != n_threads:
        torch.set_num_threads(n_threads)
    return n_threads


@contextlib.contextmanager
def single_thread():
    """Run small tensor operations on one thread (thread-pool hand-offs cost more than they save)."""
    previous = torch.get_num_threads()
    if previous != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if previous != 1:
            torch.set_num_threads(previous)


def describe_devices() -> list[dict[str, Any]]:
    """Devices usable here, for a device chooser: dicts with ``id``, ``name`` and ``memory_gb`` (or None)."""
    devices: list[dict[str, Any]] = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(
                {"id": f"cuda:{i}", "name": props.name, "memory_gb": round(props.total_memory / 2**30, 1)}
            )
    if _mps_available():
        devices.append({"id": "mps", "name": "Apple MPS GPU", "memory_gb": None})
    total = total_memory_bytes()
    ram = None if total is None else round(total / 2**30, 1)
    devices.append({"id": "cpu", "name": f"CPU ({os.cpu_count() or 1} cores)", "memory_gb": ram})
    return devices


#: autocast type of each precision name (fp32: no autocast)
AMP_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(device: torch.device, precision: str | None = None) -> torch.dtype | None:
    """The autocast type of the forward passes on ``device``; None runs them in fp32.

    Parameters
    ----------
    device : where the passes run.
    precision : ``"fp32"``, ``"bf16"`` or ``"fp16"`` (:func:`sr4zct.run.precision.choose_precision`); None:
        the device's default, mixed precision on CUDA GPUs (bf16 where supported, else fp16), fp32 elsewhere.
    """
    if precision is not None:
        if precision not in AMP_DTYPES:
            raise ParameterError(f"Unknown precision {precision!r}; use one of {', '.join(AMP_DTYPES)}.")
        return AMP_DTYPES[precision]
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, precision: str | None = None):
    """Context manager running the forward pass in ``precision`` (see :func:`amp_dtype`): weights, and
    whatever the caller computes outside it (the loss), stay fp32."""
    dtype = amp_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str | None = None) -> torch.amp.GradScaler | None:
    """A GradScaler when training in fp16 (bf16 and fp32 need none)."""
    if amp_dtype(device, precision) == torch.float16:
        return torch.amp.GradScaler(device.type)
    return None


def configure_device(device: torch.device | str) -> None:
    """Settings that make ``device`` fast for SR4ZCT's fixed-shape convolutions (idempotent).

    On CUDA: cuDNN autotuning (training patches and inference tiles repeat a few shapes, so the search is
    paid once per shape) and TF32 matrix products where autocast leaves float32. Nothing elsewhere.
    """
    if torch.device(device).type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


# Bytes of GPU memory one pixel of a forward pass may need: the largest registered network's activations
# under autocast with the cuDNN workspace (MS-D keeps 101 full-resolution maps: ~450 B; the default
# 8 x 48 network ~80 B), rounded up.
GPU_BYTES_PER_PIXEL = 512


def gpu_pass_pixels(
    free_bytes: int,
    *,
    bytes_per_px: int = GPU_BYTES_PER_PIXEL,
    share: float = 0.4,
    min_pixels: int = 1 << 20,
    max_pixels: int = 1 << 26,
) -> int:
    """Pixels per inference pass that fit in ``share`` of ``free_bytes`` of GPU memory.

    Parameters
    ----------
    free_bytes : free device memory (``torch.cuda.mem_get_info``).
    bytes_per_px : memory one pixel of a pass needs (:data:`GPU_BYTES_PER_PIXEL`).
    share : part of the free memory a pass may use (the rest: the model, the CUDA context, other work).
    min_pixels, max_pixels : bounds (1 M: smaller passes waste the GPU, out-of-memory retries shrink them
        further; 64 M: a whole orientation of a 512 x 512 series in a few passes, beyond which nothing
        is gained).
    """
    if free_bytes <= 0 or bytes_per_px <= 0:
        return min_pixels
    pixels = int(share * free_bytes // bytes_per_px)
    return max(min_pixels, min(max_pixels, pixels))


def free_memory_bytes(device: torch.device | str) -> int | None:
    """Free memory of a CUDA device (``None`` for other devices or when it cannot be read)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except RuntimeError:
        return None
    return int(free)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocation failures that a smaller batch or tile could avoid."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
