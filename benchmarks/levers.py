"""Quality levers at a fixed number of steps: ``python -m benchmarks.run --settings none --levers ...``.

For each ground-truth case (:data:`benchmarks.quality.CASES`) the 5/2.5 box acquisition is simulated once;
each variant of the ``fast`` training (:data:`VARIANTS`: patch sampling, intensity augmentation, the
validation set, network width) is trained for exactly ``--lever-steps`` steps per seed (step-bound: the
shared CPU's speed does not change the result) and applied as the pipeline applies it; the body-box PSNR
gain over linear interpolation (``sr4zct.demo.evaluation``'s box and data range, no SSIM) is recorded.
The report shows each variant's gain per case and its minimum and median over the cases.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

# TrainingConfig changes per variant (on top of the fast preset with --lever-steps steps)
VARIANTS: dict[str, dict] = {
    "baseline": {},
    "structure-only": {"sample_flat": 0.0},
    "flatter": {"sample_flat": 1.0},
    "intensity": {"intensity_scale": 0.2},
    "val-256": {"validation_patches": 256},
    "wide-48": {"network_config": {"layers": 8, "channels": 48, "unshuffle": 2}},
}
THICKNESS_MM, OVERLAP_MM = 5.0, 2.5


def _box_psnr(result, ground_truth, thickness_mm: float) -> float:
    from sr4zct.demo.evaluation import _regular_spacing_mm, body_box, psnr, resample_to_reference

    gt = np.asarray(ground_truth.array, np.float32)
    resampled = resample_to_reference(result, ground_truth)
    zs, ys, xs = body_box(gt, thickness_mm, _regular_spacing_mm(ground_truth, "ground truth"), -500.0)
    covered = np.flatnonzero(np.isfinite(resampled[:, 0, 0]))
    zs = slice(max(zs.start, int(covered.min())), min(zs.stop, int(covered.max()) + 1))
    return psnr(resampled[zs, ys, xs], gt[zs, ys, xs], float(gt.max() - gt.min()))


def _train_and_apply(thick, linear, variant: dict, steps: int, seed: int):
    import dataclasses

    from sr4zct.method.inference import enhance_array
    from sr4zct.method.training import Normalisation, TrainingConfig, train_model
    from sr4zct.run.presets import get_preset
    from sr4zct.volume import Volume

    preset = get_preset("fast")
    config = TrainingConfig(
        steps=steps, patch_px=preset.patch_px, batch=preset.batch, lr=preset.lr, loss=preset.loss,
        network_config=dict(preset.network_config), validate_every=preset.validate_every, seed=seed,
    )  # fmt: skip
    config = dataclasses.replace(config, **variant)
    g = thick.geometry
    pixel = (float(g.pixel_spacing_mm[0]), float(g.pixel_spacing_mm[1]))
    array = np.asarray(thick.array, dtype=np.float32)
    t0 = time.perf_counter()
    trained = train_model(
        array, pixel_spacing_mm=pixel, thickness_mm=THICKNESS_MM, spacing_mm=THICKNESS_MM - OVERLAP_MM,
        config=config, normalisation=Normalisation(),
    )  # fmt: skip
    train_s = time.perf_counter() - t0
    inferred = enhance_array(
        None if trained.used_identity else trained.model, array,
        slice_positions_mm=np.asarray(g.slice_positions_mm, dtype=np.float64), pixel_spacing_mm=pixel,
    )  # fmt: skip
    if inferred.array.shape != linear.array.shape:
        raise RuntimeError(f"output {inferred.array.shape} differs from the baseline's {linear.array.shape}")
    return Volume(inferred.array, linear.geometry), trained, train_s


def lever_rows(
    ground_truth,
    *,
    cases: list[str],
    variants: list[str],
    steps: int,
    seeds: list[int],
    log=print,
    save=None,
) -> list[dict]:
    """One row per (case, variant, seed): the body-box gain after exactly ``steps`` steps.

    ``ground_truth`` is a path (as ``--ground-truth``) or a :class:`sr4zct.Volume`."""
    from sr4zct.demo.evaluation import aligned_phase_mm, interpolate_baseline, simulate_acquisition

    from .quality import CASES, load_ground_truth, region_volume

    if isinstance(ground_truth, str | Path):
        whole = load_ground_truth(ground_truth)
        gt_name = Path(ground_truth).name.split(".")[0]
    else:  # a Volume (tests)
        whole, gt_name = ground_truth, "volume"
    rows = []
    for case in cases:
        region = CASES[case]["region"]
        gt = whole if region is None else region_volume(whole, region)
        spacing = THICKNESS_MM - OVERLAP_MM
        phase = aligned_phase_mm(THICKNESS_MM, spacing, float(gt.geometry.slice_spacing_mm))
        thick = simulate_acquisition(gt, THICKNESS_MM, spacing, profile="box", phase_mm=phase)
        linear = interpolate_baseline(thick, method="linear")
        linear_psnr = _box_psnr(linear, gt, THICKNESS_MM)
        for name in variants:
            for seed in seeds:
                result, trained, train_s = _train_and_apply(thick, linear, VARIANTS[name], steps, seed)
                value = _box_psnr(result, gt, THICKNESS_MM)
                row = {
                    "kind": "lever",
                    "key": f"lever|{gt_name}|{case}|{name}|{steps}|{seed}",
                    "case": case,
                    "variant": name,
                    "changes": VARIANTS[name],
                    "steps": steps,
                    "seed": seed,
                    "psnr_box": value,
                    "linear_psnr_box": linear_psnr,
                    "gain_db": value - linear_psnr,
                    "validation_gain_db": trained.validation_gain_db,
                    "train_s": train_s,
                    "status": "ok",
                }
                log(
                    f"levers: {case} {name} seed {seed}: gain {row['gain_db']:+.2f} dB "
                    f"(validation {trained.validation_gain_db:+.2f}) in {train_s:.0f} s"
                )
                rows.append(row)
                if save is not None:
                    save([row])
    return rows
