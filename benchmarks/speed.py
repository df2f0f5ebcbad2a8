"""Speed benchmarks: the acquisition model vs the naive oracle, and network training/inference rates."""

from __future__ import annotations

import inspect
import time

import numpy as np


def _first(d: dict, *names, kind=float):
    lowered = {str(k).lower(): v for k, v in d.items()}
    for name in names:
        for key, value in lowered.items():
            if key == name or (name.startswith("*") and key.endswith(name[1:])):
                try:
                    return kind(value)
                except (TypeError, ValueError):
                    continue
    return None


def acquisition_row(quick: bool = False) -> dict:
    """Run engineer B's ``benchmarks.bench_acquisition.run`` and normalise its figures.

    ``quick`` asks for its reduced stack (used by ``--smoke``); the full run times the fast path on a
    512 x 512 x 343 stack.
    """
    row: dict = {"kind": "acquisition", "key": f"acquisition|{'quick' if quick else 'full'}"}
    try:
        from .bench_acquisition import run
    except ImportError as exc:
        row["status"] = f"benchmarks.bench_acquisition not available: {exc}"
        return row
    params = inspect.signature(run).parameters
    kwargs = {"quick": quick} if "quick" in params else {}
    if "verbose" in params:
        kwargs["verbose"] = False
    try:
        figures = run(**kwargs)
    except Exception as exc:  # noqa: BLE001 - recorded in the table instead of aborting the suite
        row["status"] = f"failed: {type(exc).__name__}: {exc}"
        return row
    row["raw"] = figures
    row["speedup"] = _first(figures, "speedup", "speed_up", "*speedup")
    row["fast_s"] = _first(figures, "fast_s", "fast_seconds", "fast_time_s", "*fast_s")
    row["naive_s"] = _first(
        figures, "naive_s", "naive_seconds", "naive_time_s", "naive_estimated_s", "*naive_s"
    )
    shape = figures.get("shape") or figures.get("stack_shape")
    row["shape"] = list(shape) if shape is not None else None
    note = figures.get("note") or figures.get("method")
    if note:
        row["note"] = str(note)
    if row["speedup"] is None and row["fast_s"] and row["naive_s"]:
        row["speedup"] = row["naive_s"] / row["fast_s"]
    row["status"] = "ok" if row["speedup"] is not None else "no speed-up figure in bench_acquisition's result"
    return row


def _devices() -> list[str]:
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def network_speed(
    network: str,
    *,
    preset: str = "fast",
    device: str = "cpu",
    seconds: float = 10.0,
    infer_shape: tuple[int, int] = (240, 512),
    infer_batch: int = 4,
    train_batch: int | None = None,
) -> dict:
    """Training steps/s (Adam, L1, the preset's patch and batch size unless ``train_batch`` is given) and
    inference voxels/s (forward passes on whole coronal-sized images under ``inference_mode``)."""
    import torch
    from sr4zct.method.networks import build_network
    from sr4zct.run.presets import get_preset

    p = get_preset(preset)
    batch = int(train_batch or p.batch)
    config = dict(p.network_config) if network == "default" else None
    row = {
        "kind": "network_speed",
        "key": f"network_speed|{network}|{preset}|{device}|{infer_shape[0]}x{infer_shape[1]}",
        "network": network,
        "preset": preset,
        "device": device,
    }
    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_network(network, config).to(dev)
    n_params = sum(q.numel() for q in model.parameters())
    row["config"] = (
        f"{config or 'registry default'}, {n_params / 1e3:.0f}k params; train batch {batch} x {p.patch_px}^2; "
        f"infer batch {infer_batch} x {infer_shape[0]}x{infer_shape[1]}"
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, p.patch_px, p.patch_px, device=dev)
    y = torch.randn_like(x)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.l1_loss(model(x), y)
        loss.backward()
        opt.step()

    budget = seconds / 2
    step()
    _sync(dev)
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < budget or n < 1:
        step()
        n += 1
    _sync(dev)
    row["train_steps_per_s"] = n / (time.perf_counter() - t0)

    model.eval()
    images = torch.randn(infer_batch, 1, *infer_shape, device=dev)
    with torch.inference_mode():
        model(images)
        _sync(dev)
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < budget or n < 1:
            model(images)
            n += 1
        _sync(dev)
    row["infer_voxels_per_s"] = n * float(np.prod(images.shape)) / (time.perf_counter() - t0)
    row["status"] = "ok"
    return row


def network_rows(
    networks=("default", "msd"),
    presets=("fast", "balanced", "best"),
    *,
    seconds: float = 10.0,
    infer_shape=(240, 512),
) -> list[dict]:
    """Micro-benchmarks per available device. The MS-D network is timed on smaller inputs on the CPU
    (batch 2 for training, one 64 x 128 image for inference): at full size one step takes minutes."""
    rows = []
    for device in _devices():
        for network in networks:
            sizes = {"infer_shape": infer_shape}
            if network == "msd" and device == "cpu":
                sizes = {"infer_shape": (64, 128), "infer_batch": 1, "train_batch": 2}
            for preset in presets if network == "default" else presets[:1]:
                try:
                    rows.append(
                        network_speed(network, preset=preset, device=device, seconds=seconds, **sizes)
                    )
                except Exception as exc:  # noqa: BLE001 - recorded instead of aborting the suite
                    shape = sizes["infer_shape"]
                    rows.append(
                        {
                            "kind": "network_speed",
                            "key": f"network_speed|{network}|{preset}|{device}|{shape[0]}x{shape[1]}",
                            "network": network,
                            "preset": preset,
                            "device": device,
                            "status": f"failed: {type(exc).__name__}: {exc}",
                        }
                    )
    return rows
