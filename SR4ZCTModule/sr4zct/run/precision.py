"""The numeric precision of a run (``--precision auto|fp32|bf16``): bf16 on a CPU that runs it natively.

The network's forward passes run under ``torch.autocast`` (:func:`sr4zct.system.devices.autocast`); weights,
optimiser state and the loss stay fp32. On CUDA ``auto`` keeps the GPU's mixed precision (bf16, or fp16
where the GPU has no bf16). On the CPU ``auto`` uses bf16 only where the processor has it natively
(:func:`cpu_bf16_support`: AVX512-BF16 or AMX on x86, the BF16 extension on Arm) *and* a probe of about a
second finds bf16 faster for SR4ZCT's default network on this machine (:func:`bf16_speedup`, measured once
per process); everywhere else it is fp32. ``auto`` keeps fp32 without probing where the probe would not pay:
runs too short for it (:func:`is_small_run`) and the MS-D network (its hundred differently shaped layers make
the first pass of each precision take seconds: a probe of it would cost far more than it could tell).

Apple silicon: macOS tells a process nothing like ``/proc/cpuinfo`` and torch has no bf16 check for Arm, so
on an Apple CPU the probe alone decides (an M1 has no bf16 and loses it, later chips may win it). With
``--device auto`` such a Mac runs on its MPS GPU in fp32 anyway; ``--precision bf16`` on MPS is refused.

Where bf16 is asked for explicitly on a CPU without native support, the run uses it (torch emulates it,
correctly but usually slower) and says so in a warning.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sr4zct.errors import ParameterError, ResourceError

__all__ = [
    "MIN_SPEEDUP",
    "PrecisionChoice",
    "bf16_speedup",
    "choose_precision",
    "clear_probe_cache",
    "cpu_bf16_support",
    "is_small_run",
]

#: bf16 must run at least this many times as fast as fp32 in the probe for ``auto`` to choose it
MIN_SPEEDUP = 1.2
#: seconds of timed pairs of steps in the probe (after two warm-up steps of each precision: about a second)
PROBE_SECONDS = 0.6
PROBE_BATCH = 4  #: patches of 64 x 64 per probe step
MIN_PAIRS, MAX_PAIRS = 5, 40  #: pairs of timed steps (fp32, bf16) in the probe
#: the network the probe times: the ``fast`` preset's (the presets differ in depth and width only)
PROBE_NETWORK = {"layers": 8, "channels": 32, "unshuffle": 2}
#: runs with a shorter time limit, or less work (forward-pass pixels: about 120 ``fast`` training steps, or
#: a 100-slice 512 x 512 series enhanced with a saved model; a few seconds in fp32), keep fp32 unprobed
SMALL_RUN_S = 60.0
SMALL_RUN_PX = 24e6

# x86 flags in /proc/cpuinfo (and the Arm "Features" word) that mean native bf16 arithmetic
_CPU_FLAGS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"))
_ARM_FLAG = ("bf16", "Arm BF16")

_probe_cache: dict[str, float] = {}


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run computes in and why.

    Attributes
    ----------
    name : ``"fp32"``, ``"bf16"`` or ``"fp16"`` (training and inference alike).
    requested : the option: ``"auto"``, ``"fp32"`` or ``"bf16"``.
    reason : a sentence saying why (recorded in the output's parameters).
    warning : a sentence for the user when the choice is likely slow, else None.
    """

    name: str
    requested: str
    reason: str
    warning: str | None = None


def cpu_bf16_support(
    cpuinfo: str | None = None,
    *,
    torch_checks: dict[str, bool] | None = None,
    capability: str | None = None,
    system: str | None = None,
    machine: str | None = None,
) -> tuple[str, str]:
    """Whether this processor runs bf16 natively: ``("native" | "probe" | "none", evidence)``.

    ``"native"``: a CPU flag or torch's check says so. ``"probe"``: nothing says so, but nothing rules it out
    (Apple silicon; an AVX512 CPU when this torch has no bf16 check): the speed probe decides. Every input
    defaults to this machine's (``/proc/cpuinfo`` where it exists, ``torch.cpu``'s checks,
    ``torch.backends.cpu.get_cpu_capability()``, :mod:`platform`); tests inject them.
    """
    machine = (machine or platform.machine()).lower()
    flagged = _flagged(_read_cpuinfo() if cpuinfo is None else cpuinfo, machine)
    if flagged is not None:
        return "native", flagged
    checks = _torch_checks() if torch_checks is None else torch_checks
    for name, label in (("amx", "AMX"), ("avx512_bf16", "AVX512-BF16")):
        if checks.get(name):
            return "native", label
    if (system or platform.system()) == "Darwin" and machine == "arm64":
        return "probe", "Apple silicon"
    capability = _capability() if capability is None else capability
    if not checks and capability.upper().startswith("AVX512"):
        return "probe", f"{capability} (this torch cannot check for bf16)"
    return "none", f"no native bf16 ({capability or 'unknown'} CPU)"


def _flagged(cpuinfo: str, machine: str) -> str | None:
    """The native bf16 feature ``/proc/cpuinfo`` names (x86 flags, the Arm ``Features`` word), or None."""
    flags = _cpu_flags(cpuinfo)
    for flag, label in _CPU_FLAGS:
        if flag in flags:
            return label
    if machine in ("aarch64", "arm64") and _ARM_FLAG[0] in flags:
        return _ARM_FLAG[1]
    return None


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # Windows, macOS
        return ""


def _cpu_flags(cpuinfo: str) -> set[str]:
    """The words of the first ``flags`` (x86) or ``Features`` (Arm) line."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def _torch_checks() -> dict[str, bool]:
    """torch's own CPU checks (private ``torch.cpu`` functions, absent from older releases: empty then)."""
    checks = {}
    for name, function in (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported")):
        check = getattr(torch.cpu, function, None)
        if check is not None:
            try:
                checks[name] = bool(check())
            except RuntimeError:
                continue
    return checks


def _capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return ""


def bf16_speedup() -> float:
    """How many times as fast bf16 runs as fp32 on this CPU for SR4ZCT's default network (cached per process).

    The first call times training steps (forward and backward) of the ``fast`` preset's network
    (:data:`PROBE_NETWORK`) on :data:`PROBE_BATCH` patches of 64 x 64, an fp32 step and a bf16 step in turn
    on one thread, for about :data:`PROBE_SECONDS` after two warm-up steps of each, and keeps the median
    ratio of the pairs (:func:`_measure_speedup`); later calls return it at once.
    """
    if "speedup" not in _probe_cache:
        from sr4zct.method.networks import build_network

        with torch.random.fork_rng(devices=[]):  # the run's own random draws stay as they were
            torch.manual_seed(0)
            model = build_network("default", PROBE_NETWORK)
            _probe_cache["speedup"] = _measure_speedup(model, PROBE_SECONDS)
    return _probe_cache["speedup"]


def clear_probe_cache() -> None:
    """Forget the probe's result (the next :func:`bf16_speedup` measures again)."""
    _probe_cache.clear()


def _measure_speedup(model: torch.nn.Module, seconds: float) -> float:
    """fp32 step time over bf16 step time: the median ratio of back-to-back pairs of steps, on one thread.

    One thread, because the ratio is a property of the core's instructions, and one thread's step time hardly
    moves when other programs share the machine, while two threads wait on each other whenever one is
    descheduled (probes on two threads of a busy 2-core machine gave anything from 0.1 to 5). A pair's two steps
    see the same load; the median drops the pairs a pause hit.
    """
    from sr4zct.system.devices import single_thread

    model = model.to(memory_format=torch.channels_last).train()
    x = torch.rand((PROBE_BATCH, 1, 64, 64)).contiguous(memory_format=torch.channels_last)
    ratios: list[float] = []
    with single_thread():
        for name in ("fp32", "bf16", "fp32", "bf16"):  # warm-up: oneDNN builds its kernels on first use
            _timed_step(model, x, name)
        t_end = time.perf_counter() + seconds
        while len(ratios) < MIN_PAIRS or (len(ratios) < MAX_PAIRS and time.perf_counter() < t_end):
            fp32 = _timed_step(model, x, "fp32")
            ratios.append(fp32 / max(_timed_step(model, x, "bf16"), 1e-9))
    return statistics.median(ratios)


def _timed_step(model: torch.nn.Module, x: torch.Tensor, precision: str) -> float:
    from sr4zct.system.devices import autocast

    t0 = time.perf_counter()
    with autocast(x.device, precision):
        y = model(x)
    (y.float() - x).abs().mean().backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def choose_precision(
    requested: str, device: torch.device | str, *, network: str = "default", small_run: bool = False
) -> PrecisionChoice:
    """The precision a run on ``device`` uses for the option ``requested`` (``auto``, ``fp32``, ``bf16``).

    Parameters
    ----------
    requested : the ``precision`` option.
    device : where the run computes.
    network : the run's network; ``auto`` considers bf16 on the CPU for the default network only.
    small_run : the run is too short for bf16 to repay the probe's second (:func:`is_small_run`): ``auto``
        then keeps fp32 on the CPU without probing.

    Raises
    ------
    ParameterError : an unknown ``requested``.
    ResourceError : bf16 asked for on a GPU that cannot run it (Apple MPS, a CUDA GPU without bf16).
    """
    device = torch.device(device)
    if requested not in ("auto", "fp32", "bf16"):
        raise ParameterError(f"precision must be auto, fp32 or bf16, got {requested!r}.")
    if requested == "fp32":
        return PrecisionChoice("fp32", requested, "fp32 was asked for.")
    if device.type == "cuda":
        return _cuda_precision(requested)
    if device.type != "cpu":
        if requested == "bf16":
            raise ResourceError(
                f"bf16 is not supported on {device.type.upper()} by SR4ZCT; use precision auto or fp32."
            )
        return PrecisionChoice("fp32", requested, f"fp32 on {device.type.upper()}.")
    if requested == "bf16":
        return _cpu_bf16()
    return _cpu_auto(network, small_run)


def is_small_run(limit_s: float, training_px: float, inference_px: float) -> bool:
    """True for a run too short for bf16 to repay its probe: a time limit under :data:`SMALL_RUN_S`, or
    less work than :data:`SMALL_RUN_PX` forward-pass pixels (a training pixel, forward and backward, counts
    as 3).

    Parameters
    ----------
    limit_s : the run's time limit.
    training_px : steps x batch x patch side² (0 with a saved model).
    inference_px : pixels of the coronal and sagittal images the network enhances.
    """
    return limit_s < SMALL_RUN_S or 3 * training_px + inference_px < SMALL_RUN_PX


def _cuda_precision(requested: str) -> PrecisionChoice:
    bf16 = torch.cuda.is_bf16_supported()
    if requested == "bf16" and not bf16:
        raise ResourceError("This CUDA GPU has no bf16; use precision auto (fp16) or fp32.")
    if bf16:
        return PrecisionChoice("bf16", requested, "Mixed precision on the GPU: bf16.")
    return PrecisionChoice("fp16", requested, "Mixed precision on the GPU: fp16 (this GPU has no bf16).")


def _cpu_bf16() -> PrecisionChoice:
    """bf16 asked for on the CPU: granted, with a warning where the processor has no native bf16."""
    support, evidence = cpu_bf16_support()
    if support == "none":
        return PrecisionChoice(
            "bf16", "bf16", f"bf16 was asked for; this processor has {evidence}.",
            warning=f"This processor has {evidence}: bf16 is emulated and probably slower than fp32 "
            "(precision auto would use fp32).",
        )  # fmt: skip
    return PrecisionChoice("bf16", "bf16", f"bf16 was asked for ({evidence}).")


def _cpu_auto(network: str, small_run: bool) -> PrecisionChoice:
    """``auto`` on the CPU: bf16 where the processor has it and the probe finds it faster, else fp32."""
    if network != "default":
        return PrecisionChoice(
            "fp32", "auto", "fp32: bf16 is chosen automatically for the default network only."
        )
    support, evidence = cpu_bf16_support()
    if support == "none":
        return PrecisionChoice("fp32", "auto", f"fp32: this processor has {evidence}.")
    if small_run:
        return PrecisionChoice("fp32", "auto", f"fp32: {evidence}, but the run is too short to probe bf16.")
    speedup = bf16_speedup()
    if speedup >= MIN_SPEEDUP:
        return PrecisionChoice(
            "bf16", "auto", f"bf16: {evidence}, {speedup:.1f}x as fast as fp32 in a probe."
        )
    return PrecisionChoice(
        "fp32", "auto", f"fp32: {evidence}, but bf16 was only {speedup:.2f}x as fast in a probe."
    )
