"""Quality benchmark on a thin-slice ground truth: simulate, write DICOM, run ``sr4zct enhance``, score.

The thick-slice input goes through the same path a user's data does: it is written as a DICOM series
(SliceThickness and ImagePositionPatient set), the real CLI reads it in a subprocess, and the enhanced
file it writes is read back and resampled onto the ground truth's grid for scoring.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np

from .measure import run_measured

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout, or SR4ZCT_DATA (e.g. on a lent GPU machine: benchmarks/gpu_data.py)
DATA_DIR = Path(os.environ.get("SR4ZCT_DATA") or (REPO_ROOT / ".." / "shared" / "data")).resolve()
VHM_HEAD = DATA_DIR / "vhm-head" / "vhm_head_1mm.nii.gz"
BASELINES = ("linear", "bspline", "lanczos")
METRIC_KEYS = ("psnr_box", "psnr_coronal", "psnr_sagittal", "ssim_coronal", "ssim_sagittal")


class BenchmarkError(RuntimeError):
    """The benchmark cannot run (missing ground truth, bad option); the message says what to do."""


# --------------------------------------------------------------------------------------------------
# Ground truth and simulated input
# --------------------------------------------------------------------------------------------------
def load_ground_truth(path: Path = VHM_HEAD, *, crop_px: int | None = None, n_slices: int | None = None):
    """Read the thin-slice ground truth (axis 0 = z) and optionally crop it centrally.

    Parameters
    ----------
    crop_px : side of the central in-plane crop in pixels (``None``: the whole image).
    n_slices : number of central slices to keep (``None``: all).
    """
    from sr4zct.io import read_volume

    path = Path(path)
    if not path.exists():  # a file, or a DICOM folder (benchmarks/gpu_data.py)
        raise BenchmarkError(
            f"Ground truth {path} not found. The benchmark needs ../shared/data/vhm-head/vhm_head_1mm.nii.gz "
            "beside the repository (see ../shared/data/README.md), or pass --ground-truth PATH."
        )
    gt = read_volume(path, slice_axis=0)
    return crop_volume(gt, crop_px=crop_px, n_slices=n_slices)


def crop_volume(volume, *, crop_px: int | None = None, n_slices: int | None = None):
    """Central crop of a :class:`sr4zct.Volume` (in-plane square ``crop_px``, ``n_slices`` along z),
    keeping physical positions (the origin moves to the first kept voxel)."""
    nz, ny, nx = volume.array.shape
    z0, z1 = 0, nz
    y0, y1, x0, x1 = 0, ny, 0, nx
    if n_slices is not None and n_slices < nz:
        z0 = (nz - n_slices) // 2
        z1 = z0 + n_slices
    if crop_px is not None:
        if crop_px > min(ny, nx):
            raise BenchmarkError(f"--crop {crop_px} is larger than the image ({ny} x {nx}).")
        y0, x0 = (ny - crop_px) // 2, (nx - crop_px) // 2
        y1, x1 = y0 + crop_px, x0 + crop_px
    return region_volume(volume, (z0, z1, y0, y1, x0, x1))


def region_volume(volume, region: tuple[int, int, int, int, int, int]):
    """The sub-volume ``[z0:z1, y0:y1, x0:x1]`` of a :class:`sr4zct.Volume`, keeping physical positions."""
    from sr4zct.volume import Volume

    nz, ny, nx = volume.array.shape
    z0, z1, y0, y1, x0, x1 = (int(v) for v in region)
    if not (0 <= z0 < z1 <= nz and 0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx):
        raise BenchmarkError(f"Region {region} is outside the ground truth ({nz} x {ny} x {nx}).")
    if (z0, z1, y0, y1, x0, x1) == (0, nz, 0, ny, 0, nx):
        return volume
    g = volume.geometry
    axes = np.asarray(g.axes_lps, dtype=float)
    spacing = np.asarray(g.spacing_mm, dtype=float)
    positions = np.asarray(g.slice_positions_mm, dtype=float)
    shift = axes[0] * (positions[z0] - positions[0]) + axes[1] * y0 * spacing[1] + axes[2] * x0 * spacing[2]
    array = np.ascontiguousarray(volume.array[z0:z1, y0:y1, x0:x1])
    geometry = dataclasses.replace(
        g,
        shape=array.shape,
        origin_lps=tuple(float(v) for v in np.asarray(g.origin_lps) + shift),
        slice_positions_mm=tuple(float(p - positions[z0]) for p in positions[z0:z1]),
        extra=dict(g.extra),
    )
    return Volume(array, geometry, dict(volume.metadata))


# Ground-truth cases of different anatomy in vhm-head (z = 0 is the lowest slice, the neck; 245 the top of the
# skull), for the quality spread: two body levels in full and a soft-tissue and a bone-rich crop of them.
# The crops are the 160 x 160 windows (16-pixel grid, >= 60 % body) of least and most bone (> 300 HU).
CASES: dict[str, dict] = {
    "full": {"label": "whole head and neck (245 slices, 512 x 512)", "region": None},
    "neck": {"label": "neck and jaw (slices 0-119, 512 x 512)", "region": (0, 120, 0, 512, 0, 512)},
    "skull": {"label": "skull and brain (slices 125-244, 512 x 512)", "region": (125, 245, 0, 512, 0, 512)},
    "neck-soft": {
        "label": "neck soft tissue (slices 0-119, 160 x 160 at row 208, column 176; 6 % bone)",
        "region": (0, 120, 208, 368, 176, 336),
    },
    "skull-bone": {
        "label": "skull, bone-rich (slices 125-244, 160 x 160 at row 176, column 160; 17 % bone)",
        "region": (125, 245, 176, 336, 160, 320),
    },
}


def write_dicom_input(thick, folder: Path) -> Path:
    """Write the simulated thick-slice volume as a DICOM series (the input the CLI will read)."""
    from sr4zct.io import write_volume

    return write_volume(
        thick, folder, metadata={"SeriesDescription": "SR4ZCT benchmark input"}, overwrite=True
    )


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------
def normalise_scores(raw: dict) -> dict:
    """Map the keys of :func:`sr4zct.demo.evaluation.score` onto :data:`METRIC_KEYS`."""
    flat: dict[str, float] = {}

    def walk(prefix: str, obj) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}_{k}" if prefix else str(k), v)
        else:
            try:
                flat[prefix.lower()] = float(obj)
            except (TypeError, ValueError):
                pass

    walk("", raw)
    out: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        metric, plane = key.split("_")
        if key in flat:
            out[key] = flat[key]
            continue
        if plane == "box":
            names = [k for k in flat if "psnr" in k and "coronal" not in k and "sagittal" not in k]
            names.sort(key=lambda k: ("box" not in k, len(k)))
        else:
            names = [k for k in flat if metric in k and plane in k]
        out[key] = flat[names[0]] if names else None
    return out


def score(result, ground_truth, thickness_mm: float) -> dict:
    from sr4zct.demo.evaluation import score as _score

    raw = _score(result, ground_truth, thickness_mm)
    out = normalise_scores(raw)
    if isinstance(raw.get("box"), dict):
        out["box"] = raw["box"]
    return out


def baseline_scores(thick, ground_truth, thickness_mm: float, methods=BASELINES) -> dict[str, dict]:
    """Score the interpolation baselines along z, each on the output grid of the enhancement."""
    import time

    from sr4zct.demo.evaluation import interpolate_baseline

    out = {}
    for method in methods:
        t0 = time.perf_counter()
        volume = interpolate_baseline(thick, method=method)
        elapsed = time.perf_counter() - t0
        scores = score(volume, ground_truth, thickness_mm)
        scores["wall_s"] = elapsed
        out[method] = scores
    return out


def add_gains(row: dict, baselines: dict[str, dict]) -> dict:
    """Store every baseline's scores in ``row`` and the gains over linear interpolation."""
    for method, scores in baselines.items():
        for key in METRIC_KEYS:
            row[f"{method}_{key}"] = scores.get(key)
    lin = baselines.get("linear", {})

    def diff(a, b):
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            return None
        return a - b

    row["gain_db"] = diff(row.get("psnr_box"), lin.get("psnr_box"))
    row["gain_coronal_db"] = diff(row.get("psnr_coronal"), lin.get("psnr_coronal"))
    row["gain_sagittal_db"] = diff(row.get("psnr_sagittal"), lin.get("psnr_sagittal"))
    return row


# --------------------------------------------------------------------------------------------------
# The enhance CLI in a subprocess
# --------------------------------------------------------------------------------------------------
def enhance_command(
    input_path: Path,
    output_path: Path,
    *,
    preset: str,
    profile: str = "box",
    network: str = "default",
    device: str = "auto",
    seed: int = 0,
    max_minutes: float | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.enhance_child",
        "enhance",
        str(input_path),
        "-o",
        str(output_path),
        "--preset",
        preset,
        "--profile",
        profile,
        "--network",
        network,
        "--device",
        device,
        "--seed",
        str(seed),
        "--overwrite",
    ]
    if max_minutes is not None:
        cmd += ["--max-minutes", f"{max_minutes:g}"]
    return cmd + list(extra)


def _json_maybe(value):
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def extract_run_info(metadata: dict, output_text: str = "") -> dict:
    """Stage timings, training steps and device from the output file's metadata (written by the
    pipeline) or, failing that, from a JSON summary line the CLI printed."""
    info: dict = {"timings_s": {}}
    sources: list[dict] = [dict(metadata or {})]
    for line in reversed(output_text.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            parsed = _json_maybe(line)
            if parsed:
                sources.append(parsed)
                break
    for src in sources:
        for key, value in src.items():
            lk = str(key).lower()
            if "timing" in lk:
                parsed = _json_maybe(value)
                if parsed:
                    for k, v in parsed.items():
                        try:
                            info["timings_s"].setdefault(str(k).replace("_s", ""), float(v))
                        except (TypeError, ValueError):
                            pass
                else:
                    m = re.match(r".*timings?[_:.]*(\w+?)(?:_s)?$", lk)
                    if m:
                        try:
                            info["timings_s"].setdefault(m.group(1), float(value))
                        except (TypeError, ValueError):
                            pass
            elif lk.endswith("steps") or lk in ("train_steps", "training_steps"):
                try:
                    info.setdefault("steps", int(float(value)))
                except (TypeError, ValueError):
                    pass
            elif lk.endswith("device") and isinstance(value, str):
                info.setdefault("device", value)
    return info


def run_enhance(
    input_path: Path,
    output_path: Path,
    *,
    preset: str,
    profile: str = "box",
    network: str = "default",
    device: str = "auto",
    seed: int = 0,
    max_minutes: float | None = None,
    timeout_s: float | None = None,
    log_path: Path | None = None,
    threads: int | None = None,
    extra: tuple[str, ...] = (),
) -> tuple[dict, object | None]:
    """Run ``sr4zct enhance`` in a subprocess; returns the measurement record and the result Volume
    (``None`` when the CLI failed). ``threads`` pins the pipeline's default CPU thread count; ``extra`` are
    further CLI arguments (e.g. ``("--precision", "bf16")``).

    The child is :mod:`benchmarks.enhance_child`, i.e. the real CLI plus a JSON record of the pipeline's
    own stage timings (``timings_s``: read, prepare, train, infer, write, total).
    """
    import os
    import tempfile

    from sr4zct.io import read_volume

    cmd = enhance_command(
        input_path,
        output_path,
        preset=preset,
        profile=profile,
        network=network,
        device=device,
        seed=seed,
        max_minutes=max_minutes,
        extra=extra,
    )
    fd, record_path = tempfile.mkstemp(prefix="sr4zct-bench-", suffix=".json")
    os.close(fd)
    env = dict(os.environ, SR4ZCT_BENCH_RECORD=record_path, PYTHONPATH=_pythonpath())
    if threads:
        env["SR4ZCT_BENCH_THREADS"] = str(int(threads))
    try:
        record = run_measured(cmd, timeout_s=timeout_s, env=env, cwd=REPO_ROOT, log_path=log_path)
        child = _json_maybe(Path(record_path).read_text(encoding="utf-8") or "{}") or {}
    finally:
        Path(record_path).unlink(missing_ok=True)
    record["cli"] = " ".join(["sr4zct", *cmd[3:]])
    if record["returncode"] != 0 or not output_path.exists():
        why = "timed out" if record["timed_out"] else f"exit {record['returncode']}"
        last = [ln for ln in record["output_tail"].splitlines() if ln.strip()][-1:] or [""]
        record["status"] = f"{why}: {last[0][:200]}"
        return record, None
    result = read_volume(output_path)
    if child:
        record["timings_s"] = child.get("timings_s", {})
        params = child.get("parameters", {})
        record["parameters"] = params
        record["device"] = child.get("device") or params.get("device")
        try:
            record["steps"] = int(params["steps"])
        except (KeyError, TypeError, ValueError):
            pass
        record["child_warnings"] = child.get("warnings", [])
        record.update(eta_accuracy(child.get("progress_trace") or [], child.get("enhance_file_s")))
        if child.get("peak_gpu_allocated_bytes"):
            record["peak_gpu_allocated_bytes"] = child["peak_gpu_allocated_bytes"]
    else:
        record.update(extract_run_info(result.metadata, record.get("output", "")))
    record["status"] = "ok"
    return record, result


def _pythonpath() -> str:
    import os

    parts = [str(REPO_ROOT)]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


def eta_accuracy(trace: list, total_s: float | None, *, skip: float = 0.1) -> dict:
    """How far the ETA the user saw was from the true remaining time.

    ``trace`` holds ``[seconds since the start, stage, fraction, ETA]`` records and ``total_s`` is the
    run's length. Relative errors ``|ETA - remaining| / remaining`` of the records between ``skip`` and
    ``1 - skip`` of the run (before, the plan is still being made; in the last seconds any absolute
    slip is a large relative one): their maximum, median and the error at 10 %, 25 % and 50 % of the run.
    """
    if not trace or not total_s or total_s <= 0:
        return {}
    samples = []
    for t, _stage, _fraction, eta in trace:
        remaining = total_s - float(t)
        if eta is None or not (skip * total_s <= float(t) <= (1 - skip) * total_s) or remaining <= 0:
            continue
        samples.append((float(t) / total_s, abs(float(eta) - remaining) / remaining))
    if not samples:
        return {}
    errors = sorted(e for _, e in samples)

    def at(share: float) -> float:
        return min(samples, key=lambda s: abs(s[0] - share))[1]

    return {
        "eta_error_max": errors[-1],
        "eta_error_median": errors[len(errors) // 2],
        "eta_error_at": {"10": at(0.1), "25": at(0.25), "50": at(0.5)},
        "eta_samples": len(samples),
    }


def derived_speed(record: dict, output_shape) -> dict:
    """Training steps/s and inference (output) voxels/s from the pipeline's own timings."""
    timings = record.get("timings_s") or {}
    out = {}
    train = timings.get("train")
    infer = timings.get("infer") or timings.get("inference")
    if record.get("steps") and train:
        out["train_steps_per_s"] = record["steps"] / train
    if infer and output_shape is not None:
        out["infer_voxels_per_s"] = float(np.prod(output_shape)) / infer
    return out
