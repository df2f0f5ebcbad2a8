"""Numeric precision (``--precision auto|fp32|bf16``): the choice, the probe and its cache, bf16 on the CPU
(outputs close to fp32, weights kept fp32), the parameters and the device description, the final line."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sr4zct.cli.enhance import summary_line
from sr4zct.errors import ParameterError, ResourceError
from sr4zct.method.inference import enhance_array
from sr4zct.method.networks import ResidualCNN
from sr4zct.method.training import TrainingConfig, train_model
from sr4zct.run import precision
from sr4zct.run.pipeline import EnhanceResult, enhance
from sr4zct.run.precision import choose_precision, cpu_bf16_support, is_small_run
from sr4zct.system.devices import DeviceChoice, amp_dtype, autocast, grad_scaler
from sr4zct.volume import Volume, make_geometry
from test_pipeline import TINY, thick_volume

CPU = torch.device("cpu")
X86_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n\nprocessor\t: 1\nflags\t\t: fpu\n"


# --- what the processor has --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "label"), [("avx512_bf16", "AVX512-BF16"), ("amx_tile amx_bf16 avx512_bf16", "AMX-BF16")]
)
def test_x86_flags_mean_native_bf16(extra, label):
    text = X86_FLAGS.format(extra=extra)
    assert cpu_bf16_support(text, torch_checks={}, capability="AVX512", machine="x86_64") == ("native", label)


def test_arm_bf16_feature_means_native_bf16():
    text = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
    assert cpu_bf16_support(text, torch_checks={}, capability="SVE256", machine="aarch64") == (
        "native",
        "Arm BF16",
    )


def test_without_cpuinfo_torch_checks_decide():
    # Windows: no /proc/cpuinfo, torch's own checks
    assert cpu_bf16_support("", torch_checks={"avx512_bf16": True}, system="Windows", machine="AMD64")[0] == (
        "native"
    )
    assert cpu_bf16_support("", torch_checks={"amx": True}, system="Windows", machine="AMD64")[0] == "native"
    support, evidence = cpu_bf16_support(
        "",
        torch_checks={"amx": False, "avx512_bf16": False},
        capability="AVX2",
        system="Windows",
        machine="AMD64",
    )
    assert support == "none" and "AVX2" in evidence


def test_apple_silicon_and_an_unchecked_avx512_cpu_leave_it_to_the_probe():
    assert cpu_bf16_support("", torch_checks={}, capability="DEFAULT", system="Darwin", machine="arm64")[
        0
    ] == ("probe")
    # a torch without bf16 checks on an AVX512 CPU: the capability string alone cannot tell
    assert cpu_bf16_support("", torch_checks={}, capability="AVX512", system="Windows", machine="AMD64")[
        0
    ] == ("probe")
    assert cpu_bf16_support(X86_FLAGS.format(extra=""), torch_checks={}, capability="AVX2", machine="x86_64")[
        0
    ] == ("none")


def test_this_machine_is_read_without_injection():
    support, evidence = cpu_bf16_support()
    assert support in ("native", "probe", "none") and evidence
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "avx512_bf16" in cpuinfo.read_text():
        assert (support, evidence) == ("native", "AVX512-BF16")


# --- the choice ----------------------------------------------------------------------------------------
@pytest.fixture
def machine(monkeypatch):
    """Set what the processor has and what the probe measures; record how often the probe runs."""
    state = {"support": ("native", "AVX512-BF16"), "speedup": 2.0, "probes": 0}

    def probe() -> float:
        state["probes"] += 1
        return state["speedup"]

    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: state["support"])
    monkeypatch.setattr(precision, "bf16_speedup", probe)
    return state


def test_auto_uses_bf16_where_native_and_faster(machine):
    choice = choose_precision("auto", CPU)
    assert (choice.name, choice.requested, choice.warning) == ("bf16", "auto", None)
    assert "AVX512-BF16" in choice.reason and "2.0x" in choice.reason


def test_auto_keeps_fp32_where_the_probe_finds_no_gain(machine):
    machine["speedup"] = 1.05
    choice = choose_precision("auto", CPU)
    assert choice.name == "fp32" and "1.05x" in choice.reason


def test_auto_keeps_fp32_without_native_bf16_and_does_not_probe(machine):
    machine["support"] = ("none", "no native bf16 (AVX2 CPU)")
    assert choose_precision("auto", CPU).name == "fp32"
    assert machine["probes"] == 0


def test_small_runs_and_msd_keep_fp32_unprobed(machine):
    assert choose_precision("auto", CPU, small_run=True).name == "fp32"
    assert choose_precision("auto", CPU, network="msd").name == "fp32"
    assert machine["probes"] == 0


def test_explicit_choices(machine):
    assert choose_precision("fp32", CPU).name == "fp32"
    assert choose_precision("bf16", CPU).name == "bf16"
    assert machine["probes"] == 0  # an explicit choice is never second-guessed
    machine["support"] = ("none", "no native bf16 (AVX2 CPU)")
    emulated = choose_precision("bf16", CPU)
    assert (
        emulated.name == "bf16"
        and "emulated" in emulated.warning
        and "auto would use fp32" in emulated.warning
    )


def test_bf16_where_it_cannot_run_is_refused_and_unknown_names_too():
    with pytest.raises(ResourceError, match="bf16 is not supported on MPS"):
        choose_precision("bf16", torch.device("mps"))
    assert choose_precision("auto", torch.device("mps")).name == "fp32"
    with pytest.raises(ParameterError, match="auto, fp32 or bf16"):
        choose_precision("fp8", CPU)


def test_small_run_rule():
    assert is_small_run(30.0, 1e9, 1e9)  # a 30 s limit
    assert is_small_run(300.0, 8 * 4 * 24**2, 1e5)  # the tests' tiny preset
    assert not is_small_run(300.0, 3000 * 16 * 64**2, 1e6)  # fast
    assert not is_small_run(300.0, 0, 2 * 686 * 512 * 512)  # a saved model on L291
    assert is_small_run(300.0, 0, 2 * 90 * 48 * 48)  # a saved model on a tiny volume


# --- the probe -----------------------------------------------------------------------------------------
def test_the_probe_runs_once_per_process(monkeypatch):
    calls = []

    def measure(model, seconds):
        calls.append(seconds)
        return 1.7

    monkeypatch.setattr(precision, "_measure_speedup", measure)
    precision.clear_probe_cache()
    try:
        assert precision.bf16_speedup() == 1.7 and precision.bf16_speedup() == 1.7
        assert calls == [precision.PROBE_SECONDS]
        precision.clear_probe_cache()
        precision.bf16_speedup()
        assert len(calls) == 2
    finally:
        precision.clear_probe_cache()


def test_the_real_probe_is_short_and_leaves_the_random_state_alone():
    precision.clear_probe_cache()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    t0 = time.perf_counter()
    try:
        speedup = precision.bf16_speedup()
    finally:
        precision.clear_probe_cache()
    elapsed = time.perf_counter() - t0
    assert math.isfinite(speedup) and speedup > 0
    assert elapsed < 15.0  # about a second on a quiet machine; generous for a shared one
    assert torch.equal(torch.rand(3), expected)


def test_the_probe_times_pairs_of_steps_on_one_thread_and_gives_their_median(monkeypatch):
    seen, times = [], iter([3.0, 1.0, 2.0, 1.0, 9.0, 1.0, 2.0, 1.0, 2.0, 0.5, 2.0, 1.0, 2.0, 2.0])

    def timed(model, x, name):
        seen.append((name, torch.get_num_threads()))
        return 1.0 if len(seen) <= 4 else next(times)  # four warm-up steps, then the pairs

    monkeypatch.setattr(precision, "_timed_step", timed)
    torch.set_num_threads(2)
    try:
        ratio = precision._measure_speedup(torch.nn.Conv2d(1, 1, 3), 0.0)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(max(1, torch.get_num_threads()))
    assert {threads for _, threads in seen} == {1}
    assert [name for name, _ in seen[4:]] == ["fp32", "bf16"] * precision.MIN_PAIRS
    assert ratio == 3.0  # pairs 3, 2, 9, 2, 4: one slow step cannot move the median


@pytest.mark.skipif(cpu_bf16_support()[0] == "none", reason="auto never probes without native bf16")
def test_the_probe_gives_the_same_answer_beside_busy_processes():
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    values = []
    try:
        for _ in range(3):
            precision.clear_probe_cache()
            values.append(precision.bf16_speedup())
    finally:
        for process in busy:
            process.kill()
            process.wait()
        precision.clear_probe_cache()
    assert max(values) / min(values) < 1.3, values  # two threads' probes ranged from 0.1 to 5 here
    assert min(values) >= precision.MIN_SPEEDUP, values


# --- bf16 on the CPU -----------------------------------------------------------------------------------
def test_autocast_follows_the_precision():
    assert amp_dtype(CPU, "bf16") is torch.bfloat16 and amp_dtype(CPU, "fp32") is None
    assert amp_dtype(CPU) is None  # the CPU's default stays fp32
    with autocast(CPU, "bf16"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") is torch.bfloat16
    with autocast(CPU, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    assert grad_scaler(CPU, "bf16") is None
    with pytest.raises(ParameterError, match="Unknown precision"):
        amp_dtype(CPU, "int8")


def _trained_like_network() -> ResidualCNN:
    torch.manual_seed(0)
    model = ResidualCNN(layers=4, channels=16, unshuffle=2)
    torch.nn.init.normal_(model.head.weight, std=0.05)  # a correction of a few tens of HU
    return model.eval()


def test_bf16_inference_stays_close_to_fp32():
    rng = np.random.default_rng(0)
    vol = np.full((12, 48, 40), -1000.0, dtype=np.float32)
    vol[:, 6:42, 6:34] = rng.normal(40, 300, size=(12, 36, 28))
    kwargs = {"slice_positions_mm": 2.0 * np.arange(12), "pixel_spacing_mm": (0.8, 0.8)}
    model = _trained_like_network()
    fp32 = enhance_array(model, vol, precision="fp32", **kwargs).array
    bf16 = enhance_array(model, vol, precision="bf16", **kwargs).array
    linear = enhance_array(None, vol, **kwargs).array
    correction = np.abs(fp32 - linear)
    error = np.abs(bf16 - fp32)
    assert bf16.dtype == np.float32
    assert correction.max() > 20.0  # the network does change the image
    assert 0 < error.max() <= 0.02 * correction.max() + 2.0  # bf16 did run; within its 8-bit mantissa
    assert error.mean() <= 0.02 * correction.mean()


def test_bf16_training_keeps_fp32_weights_and_runs_the_convolutions_in_bf16():
    from test_training import synthetic_ct

    images = synthetic_ct((6, 64, 64), 0)
    seen = {}

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d) and torch.is_grad_enabled():  # training steps, not validation
            seen.setdefault(module.in_channels, set()).add(output.dtype)

    config = TrainingConfig(
        steps=4, patch_px=32, batch=4, validate_every=2, network_config={"layers": 3, "channels": 8}
    )
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        result = train_model(
            images,
            pixel_spacing_mm=(1.0, 1.0),
            thickness_mm=3.0,
            spacing_mm=2.0,
            config=config,
            precision="bf16",
        )
    finally:
        handle.remove()
    # the first convolution (4 input channels after the unshuffle) in float32, the others in bf16
    assert seen == {4: {torch.float32}, 8: {torch.bfloat16}}
    assert result.steps == 4 and math.isfinite(result.validation_loss)
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


def test_in_bf16_the_first_convolution_sees_the_input_unrounded():
    from sr4zct.method.networks import ResidualCNN

    torch.manual_seed(0)
    model = ResidualCNN(layers=3, channels=8, unshuffle=2)
    torch.nn.init.normal_(model.head.weight, std=0.1)
    water = torch.ones(1, 1, 16, 16)
    near = water + 0.003  # 3 HU more: the same number in bf16, whose steps are 1/128 there
    assert torch.equal(water.bfloat16(), near.bfloat16())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        correction, correction_near = model(water) - water, model(near) - near
    assert not torch.equal(correction, correction_near)


# --- what the run records and says ---------------------------------------------------------------------
@pytest.mark.parametrize("choice", ["fp32", "bf16"])
def test_the_parameters_and_the_device_record_the_precision(choice):
    _, vol = thick_volume()
    result = enhance(vol, preset=TINY, device="cpu", precision=choice)
    assert result.parameters["precision"] == choice
    assert result.parameters["precision_reason"].startswith(f"{choice} was asked for")
    assert (
        result.parameters["device"] == result.device == f"CPU ({torch.get_num_threads()} threads, {choice})"
    )
    assert result.volume.metadata["precision"] == choice


def test_auto_on_a_tiny_run_is_fp32_without_a_probe(monkeypatch):
    monkeypatch.setattr(precision, "bf16_speedup", lambda: pytest.fail("a tiny run must not probe"))
    _, vol = thick_volume()
    result = enhance(vol, preset=TINY, device="cpu")
    assert result.parameters["precision"] == "fp32"


def test_the_final_line_says_where_it_ran_in_a_sentence():
    geometry = make_geometry((5, 4, 4), slice_spacing_mm=0.75, pixel_spacing_mm=(0.75, 0.75))
    device = DeviceChoice(CPU, "CPU", 2, "as no CUDA GPU is available").description("bf16")
    result = EnhanceResult(
        Volume(np.zeros((5, 4, 4), np.float32), geometry), None, {"steps": "3000", "model": "trained"},
        {"train": 140.2, "infer": 89.0, "total": 235.4}, device=device,
    )  # fmt: skip
    line = summary_line("out.nrrd", result)
    assert line == (
        "wrote out.nrrd: 5 slices every 0.75 mm in 235 s (train 140 s, infer 89 s). "
        "3000 training steps ran on CPU (2 threads, bf16), as no CUDA GPU is available."
    )
    result.parameters = {"steps": "0", "model": "m.pt"}
    assert summary_line("out.nrrd", result).endswith(
        "The saved model ran on CPU (2 threads, bf16), as no CUDA GPU is available."
    )
