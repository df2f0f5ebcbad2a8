"""Where CPU inference time goes on a real series: ``python -m benchmarks.run --settings none --infer-profile fast``.

The series (default: the full L291 series, 512 x 512 x 343, 3 mm every 2 mm) is read once; the preset's
network is applied with :func:`sr4zct.method.inference.enhance_array` ``--infer-repeats`` times in this
process, exactly as the pipeline applies it (body box, both orientations, the preset's test-time flips),
and the parts it reports are recorded: resample (to the internal and output grids), gather (images out of
the volume, normalised), network (forward passes and tiling), scatter (back into the volume), fuse. The
network is the preset's architecture with a fixed random correction (He-initialised body, small random
head; seed 0) or a saved model (``--infer-model``): inference cost does not depend on the weights.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

PARTS = ("resample", "gather", "network", "scatter", "fuse")


def profile_network(preset_name: str, model_path: Path | None = None):
    """The network to time: a saved model, or the preset's architecture with a fixed random correction."""
    import torch
    from sr4zct.method.networks import build_network
    from sr4zct.run.presets import get_preset

    if model_path is not None:
        from sr4zct.run.model_file import load_model

        model, _ = load_model(model_path, device=torch.device("cpu"))
        return model
    torch.manual_seed(0)
    model = build_network("default", dict(get_preset(preset_name).network_config))
    torch.nn.init.normal_(model.head.weight, std=0.01)
    return model.eval()


def profile_rows(
    series: Path,
    preset_name: str,
    *,
    repeats: int = 3,
    model_path: Path | None = None,
    threads: int | None = None,
    log=print,
    name: str = "L291",
) -> list[dict]:
    """One row: the per-part seconds of ``repeats`` inference runs on ``series`` (median, min, max)."""
    import numpy as np
    import torch
    from sr4zct.io import read_volume
    from sr4zct.method.inference import enhance_array
    from sr4zct.run.presets import get_preset
    from sr4zct.system.devices import set_cpu_threads

    n_threads = set_cpu_threads(threads or None)
    preset = get_preset(preset_name)
    volume = read_volume(series)
    array = np.asarray(volume.array, dtype=np.float32)
    geom = volume.geometry
    model = profile_network(preset_name, model_path)
    runs: list[dict[str, float]] = []
    loads: list[float] = []
    shape = None
    for rep in range(repeats):
        t0 = time.perf_counter()
        with torch.inference_mode():
            result = enhance_array(
                model,
                array,
                slice_positions_mm=np.asarray(geom.slice_positions_mm, dtype=np.float64),
                pixel_spacing_mm=tuple(float(v) for v in geom.pixel_spacing_mm),
                test_time_flips=preset.test_time_flips,
            )
        timings = {k: float(v) for k, v in result.timings_s.items()}
        timings["total"] = time.perf_counter() - t0
        shape = list(result.array.shape)
        runs.append(timings)
        del result
        load = _load()
        if load is not None:
            loads.append(load)
        log(
            f"infer profile {name} {preset_name} run {rep + 1}: {timings['total']:.1f} s ("
            + ", ".join(f"{k} {timings.get(k, 0.0):.1f}" for k in PARTS)
            + f"; load {load})"
        )
    stats = {}
    for part in (*PARTS, "total"):
        values = [r.get(part, 0.0) for r in runs]
        stats[part] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return [
        {
            "kind": "inference_profile",
            "key": f"inference_profile|{name}|{preset_name}|cpu|{n_threads}",
            "series": name,
            "preset": preset_name,
            "device": f"CPU ({n_threads} threads)",
            "threads": n_threads,
            "input_shape": list(array.shape),
            "output_shape": shape,
            "repeats": repeats,
            "model": str(model_path) if model_path else "preset architecture, fixed random correction",
            "parts_s": stats,
            "runs": runs,
            "load_avg_1min": loads,
            "status": "ok",
        }
    ]


def _load() -> float | None:
    import os

    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
