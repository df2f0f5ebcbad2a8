"""GPU path: pass sizes from free memory (pure, runs everywhere) and the CUDA checks (skipped without CUDA).

``benchmarks/gpu_check.sh`` runs this file first on a machine with a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sr4zct.method.inference import (
    CPU_PASS_PIXELS,
    GPU_PASS_PIXELS,
    default_pass_pixels,
    enhance_array,
    predict_images,
)
from sr4zct.method.networks import ResidualCNN
from sr4zct.method.training import PatchSampler, TrainingConfig, train_model
from sr4zct.system.devices import (
    GPU_BYTES_PER_PIXEL,
    amp_dtype,
    autocast,
    configure_device,
    free_memory_bytes,
    gpu_pass_pixels,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
GiB = 2**30


def test_pass_pixels_follow_the_free_memory():
    # 10 GiB free: 40 % of it at 512 B per pixel
    assert gpu_pass_pixels(10 * GiB) == int(0.4 * 10 * GiB) // GPU_BYTES_PER_PIXEL
    assert gpu_pass_pixels(10 * GiB, bytes_per_px=1024) == int(0.4 * 10 * GiB) // 1024
    assert gpu_pass_pixels(2 * GiB) < gpu_pass_pixels(4 * GiB) < gpu_pass_pixels(8 * GiB)


def test_pass_pixels_are_bounded():
    assert gpu_pass_pixels(100 * 2**20) == 1 << 20  # a nearly full GPU: the minimum, OOM retries shrink it
    assert gpu_pass_pixels(0) == 1 << 20
    assert gpu_pass_pixels(-5) == 1 << 20
    assert gpu_pass_pixels(140 * GiB) == 1 << 26  # an H200: capped
    assert gpu_pass_pixels(140 * GiB, max_pixels=1000, min_pixels=10) == 1000


def test_cpu_needs_no_gpu_settings():
    before = torch.backends.cudnn.benchmark
    configure_device("cpu")
    assert torch.backends.cudnn.benchmark == before
    assert free_memory_bytes("cpu") is None
    assert default_pass_pixels("cpu") == CPU_PASS_PIXELS
    assert amp_dtype(torch.device("cpu")) is None
    with autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled()


# ---------------------------------------------------------------------------------------------------
# CUDA only
# ---------------------------------------------------------------------------------------------------
def _net(seed: int = 0, **kwargs) -> ResidualCNN:
    torch.manual_seed(seed)
    model = ResidualCNN(**{"layers": 4, "channels": 16, "unshuffle": 2, **kwargs})
    torch.nn.init.normal_(model.head.weight, std=0.05)
    return model.eval()


@cuda
def test_cuda_settings_and_pass_size():
    dev = torch.device("cuda")
    configure_device(dev)
    assert torch.backends.cudnn.benchmark
    free = free_memory_bytes(dev)
    assert free is not None and free > 0
    assert default_pass_pixels(dev) == gpu_pass_pixels(free) >= min(GPU_PASS_PIXELS, 1 << 20)
    assert amp_dtype(dev) in (torch.bfloat16, torch.float16)


@cuda
@pytest.mark.parametrize("max_pixels", [10**7, 30 * 60])
def test_cuda_prediction_matches_the_cpu_within_mixed_precision(max_pixels):
    model = _net()
    images = torch.rand(3, 30, 101) * 2
    with torch.inference_mode():
        on_cpu = predict_images(model, images, device=torch.device("cpu"), max_pixels=max_pixels)
        on_gpu = predict_images(model.to("cuda"), images, device=torch.device("cuda"), max_pixels=max_pixels)
    assert on_gpu.device.type == "cpu" and on_gpu.dtype == torch.float32
    # the residual correction is computed in bf16/fp16: ~1e-2 of its size
    correction = (on_cpu - images).abs().max()
    assert float((on_gpu - on_cpu).abs().max()) <= 0.02 * float(correction) + 1e-3


@cuda
def test_cuda_enhancement_matches_the_cpu():
    rng = np.random.default_rng(0)
    vol = np.full((9, 40, 36), -1000.0, dtype=np.float32)
    vol[:, 8:30, 10:28] = rng.normal(40, 200, size=(9, 22, 18))
    kwargs = {"slice_positions_mm": 2.0 * np.arange(9), "pixel_spacing_mm": (0.75, 0.75)}
    model = _net()
    on_cpu = enhance_array(model, vol, device="cpu", **kwargs).array
    on_gpu = enhance_array(model.to("cuda"), vol, device="cuda", **kwargs).array
    assert np.abs(on_gpu - on_cpu).max() < 5.0  # HU; bf16 correction


@cuda
def test_cuda_sampler_cuts_the_same_pairs_as_the_cpu():
    images = torch.rand(4, 48, 40)
    kwargs = {"pixel_spacing_mm": (0.8, 0.7), "thickness_mm": 3.0, "spacing_mm": 2.0, "patch_px": 16}
    cpu = PatchSampler(images, **kwargs)
    gpu = PatchSampler(images.to("cuda"), **kwargs)
    a = cpu.sample(8, np.random.default_rng(1))
    b = gpu.sample(8, np.random.default_rng(1))
    for x, y in zip(a, b, strict=True):
        assert y.device.type == "cuda"
        torch.testing.assert_close(y.cpu(), x, atol=1e-5, rtol=1e-5)


@cuda
def test_cuda_training_learns_in_mixed_precision():
    from test_training import synthetic_ct

    vol = synthetic_ct()
    config = TrainingConfig(
        steps=120, patch_px=32, batch=8, network_config={"layers": 4, "channels": 16}, validate_every=40
    )
    torch.cuda.reset_peak_memory_stats()
    result = train_model(
        vol, pixel_spacing_mm=(1.0, 1.0), thickness_mm=4.0, spacing_mm=2.0, config=config, device="cuda"
    )
    assert next(result.model.parameters()).device.type == "cuda"
    assert result.validation_loss < result.identity_loss
    assert torch.cuda.max_memory_allocated() > 0


@cuda
def test_cuda_precision_choices():
    from sr4zct.run.precision import choose_precision

    dev = torch.device("cuda")
    assert choose_precision("auto", dev).name == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert choose_precision("fp32", dev).name == "fp32"
    assert amp_dtype(dev, "fp32") is None  # --precision fp32 turns the GPU's autocast off
    if torch.cuda.is_bf16_supported():
        assert choose_precision("bf16", dev).name == "bf16"


@cuda
def test_cuda_fp32_prediction_matches_the_cpu_closely():
    model = _net()
    images = torch.rand(3, 30, 101) * 2
    with torch.inference_mode():
        on_cpu = predict_images(model, images, device=torch.device("cpu"), precision="fp32")
        on_gpu = predict_images(model.to("cuda"), images, device=torch.device("cuda"), precision="fp32")
    correction = (on_cpu - images).abs().max()
    # TF32 convolutions (10-bit mantissa) instead of bf16's 8 bits: several times closer than autocast
    assert float((on_gpu - on_cpu).abs().max()) <= 0.005 * float(correction) + 1e-4
