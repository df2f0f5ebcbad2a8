"""End-to-end SR4ZCT: ``enhance(volume) -> EnhanceResult`` and ``enhance_file(input, output)``.

``enhance`` validates the acquisition parameters, trains the self-supervised network on the volume's own
axial images (or loads a saved model), applies it to the coronal and sagittal images and returns a new
:class:`~sr4zct.volume.Volume` on a finer z grid with the same in-plane grid, axes and origin (the first
output slice centre is the first input slice centre). Progress goes to a callback, cancellation is polled.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sr4zct._version import __version__
from sr4zct.errors import Cancelled, OutputError, ParameterError
from sr4zct.io.model_file import check_model_geometry, load_model, save_model
from sr4zct.run.presets import Preset, get_preset
from sr4zct.run.progress import Progress, ProgressReporter
from sr4zct.run.validation import positive_number
from sr4zct.volume import SeriesGeometry, Volume

__all__ = ["EnhanceResult", "enhance", "enhance_file"]


@dataclass
class EnhanceResult:
    volume: Volume
    uncertainty: Volume | None
    parameters: dict[str, str]
    timings_s: dict[str, float] = field(default_factory=dict)
    device: str = ""
    warnings: list[str] = field(default_factory=list)


def _stage_weights(prepare_s: float, train_s: float, infer_s: float) -> dict[str, float]:
    """Progress weights of the stages from the planned seconds (so that the ETA follows the plan)."""
    raw = {"prepare": max(prepare_s, 1.0), "train": max(train_s, 1.0), "infer": max(infer_s, 1.0)}
    raw["write"] = 0.03 * sum(raw.values())
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}


def _time_budget_s(preset: Preset, max_minutes: float | None) -> float:
    if max_minutes is None:
        return preset.max_minutes * 60.0
    minutes = positive_number("The time limit", max_minutes, "--max-minutes", unit="minutes")
    return minutes * 60.0


def enhance(
    volume: Volume | np.ndarray,
    *,
    geometry: SeriesGeometry | None = None,
    thickness_mm: float | None = None,
    spacing_mm: float | None = None,
    target_spacing_mm: float | None = None,
    profile: str = "box",
    preset: str | Preset = "balanced",
    network: str = "default",
    device: str = "auto",
    seed: int = 0,
    max_minutes: float | None = None,
    model_path: str | os.PathLike | None = None,
    save_model_path: str | os.PathLike | None = None,
    uncertainty: bool = False,
    allow_non_ct: bool = False,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EnhanceResult:
    """Enhance the through-plane resolution of a thick-slice CT volume.

    Parameters
    ----------
    volume : :class:`Volume` (HU, ``(slice, row, column)``) or a plain array with ``geometry=``.
    thickness_mm : slice thickness T; default the geometry's (required when it has none).
    spacing_mm : slice spacing d; default measured from the slice positions (then irregular positions are
        honoured); when given, the slices are taken as regularly spaced by d.
    target_spacing_mm : output z spacing; default the row pixel spacing (isotropic). Must be < d.
    profile : slice sensitivity profile, ``"box"`` or ``"gaussian"`` (FWHM = T).
    preset : ``"fast"``, ``"balanced"``, ``"best"`` or a :class:`~sr4zct.presets.Preset`.
    network : ``"default"`` (fast residual CNN) or ``"msd"`` (the paper's MS-D network).
    device : ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    seed : seeds every random draw; same seed, same device and threads -> same output (when the time
        limit does not cut training short).
    max_minutes : wall-time cap for the whole run (default the preset's); training stops early so that
        inference still fits.
    model_path : apply this saved model instead of training.
    save_model_path : save the trained model there.
    uncertainty : also return ``|coronal - sagittal|`` as a volume.
    allow_non_ct : enhance a DICOM series whose modality is not CT (with a warning) instead of refusing it.
    progress : callback receiving :class:`~sr4zct.progress.Progress` records.
    should_stop : polled between steps; returning True raises :class:`~sr4zct.errors.Cancelled`.

    Returns
    -------
    EnhanceResult
    """
    reporter = ProgressReporter(progress, should_stop)
    return _enhance(
        volume, reporter, geometry=geometry, thickness_mm=thickness_mm, spacing_mm=spacing_mm,
        target_spacing_mm=target_spacing_mm, profile=profile, preset=preset, network=network, device=device,
        seed=seed, max_minutes=max_minutes, model_path=model_path, save_model_path=save_model_path,
        uncertainty=uncertainty, allow_non_ct=allow_non_ct,
    )  # fmt: skip


def _enhance(
    volume: Volume | np.ndarray,
    reporter: ProgressReporter,
    *,
    geometry: SeriesGeometry | None,
    thickness_mm: float | None,
    spacing_mm: float | None,
    target_spacing_mm: float | None,
    profile: str,
    preset: str | Preset,
    network: str,
    device: str,
    seed: int,
    max_minutes: float | None,
    model_path: str | os.PathLike | None,
    save_model_path: str | os.PathLike | None,
    uncertainty: bool,
    allow_non_ct: bool = False,
) -> EnhanceResult:
    t_start = time.monotonic()
    reporter.report("prepare", 0, 1, message="checking parameters")
    if isinstance(volume, Volume):
        vol = volume
    else:
        if geometry is None:
            raise ParameterError("A plain array needs geometry= (a SeriesGeometry); or pass a Volume.")
        try:
            vol = Volume(np.asarray(volume), geometry)
        except ValueError as exc:  # not 3-D, or a shape that does not match the geometry
            raise ParameterError(f"The array does not fit the geometry: {exc}.") from None
    geom = vol.geometry
    from sr4zct.method.acquisition import PROFILES

    if profile not in PROFILES:
        raise ParameterError(f"Unknown slice profile {profile!r}; choose one of {', '.join(PROFILES)}.")
    from sr4zct.method.networks import NETWORKS

    if network not in NETWORKS:
        raise ParameterError(f"Unknown network {network!r}; choose one of {', '.join(sorted(NETWORKS))}.")
    preset_obj = preset if isinstance(preset, Preset) else get_preset(preset)
    from sr4zct.run.validation import validate_for_enhancement

    checked = validate_for_enhancement(
        vol, thickness_mm=thickness_mm, spacing_mm=spacing_mm, target_spacing_mm=target_spacing_mm,
        uncertainty=uncertainty, allow_non_ct=allow_non_ct,
    )  # fmt: skip
    thickness, spacing, positions, target = (
        checked.thickness_mm, checked.spacing_mm, checked.positions_mm, checked.target_spacing_mm,
    )  # fmt: skip
    budget_s = _time_budget_s(preset_obj, max_minutes)
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise ParameterError(f"The seed must be an integer, got {seed!r}.") from None

    import torch

    from sr4zct.method import training
    from sr4zct.method.acquisition import output_positions_mm
    from sr4zct.method.inference import (
        FlipAverage,
        body_box,
        default_pass_pixels,
        enhance_array,
        inference_workload,
    )
    from sr4zct.run.budget import InferenceTimer
    from sr4zct.run.devices import resolve_device, set_cpu_threads

    if str(device).strip().lower() in ("auto", "cpu"):
        set_cpu_threads()
    torch_device, device_text = resolve_device(device)
    array = np.asarray(vol.array, dtype=np.float32)
    pixel = (float(geom.pixel_spacing_mm[0]), float(geom.pixel_spacing_mm[1]))
    norm = training.Normalisation()
    messages: list[str] = list(geom.warnings) + [w for w in checked.warnings if w not in geom.warnings]
    timings: dict[str, float] = {"prepare": time.monotonic() - t_start}
    reporter.report("prepare", 1, 1)

    train_info: dict[str, Any] = {}
    steps_done = 0
    timer = None
    if model_path is not None:
        model, info = load_model(model_path, device=torch_device)
        check_model_geometry(
            info, thickness=thickness, spacing=spacing, pixel=pixel, profile=profile, path=model_path
        )
        if "normalisation" in info:
            norm = training.Normalisation(**info["normalisation"])
        network = str(info.get("network", network))
        timings["train"] = 0.0
        reporter.report("train", 1, 1, message=f"using saved model {model_path}")
    else:
        config = training.TrainingConfig(
            steps=preset_obj.steps,
            patch_px=preset_obj.patch_px,
            batch=preset_obj.batch,
            lr=preset_obj.lr,
            loss=preset_obj.loss,
            network=network,
            network_config=dict(preset_obj.network_config) if network == "default" else {},
            validate_every=preset_obj.validate_every,
            seed=seed,
        )
        from sr4zct.method.networks import build_network

        probe = build_network(config.network, config.network_config).to(torch_device)
        n_out = len(output_positions_mm(positions, pixel[0]))
        pixels, pass_shape = inference_workload(
            probe, array.shape, n_out, body_box(array), max_pixels=default_pass_pixels(torch_device)
        )
        passes = len(FlipAverage.FLIPS) if preset_obj.test_time_flips else 1
        timer = InferenceTimer(pixels, pass_shape, torch_device, passes=passes)
        timer.measure(probe.to(memory_format=torch.channels_last))
        del probe
        elapsed = time.monotonic() - t_start
        # keep back writing the output and the process start-up before this call (a 45-min best run
        # ended 8 s late with a fixed 5 s)
        config.max_seconds = budget_s - elapsed - max(5.0, 0.01 * budget_s)
        # an untrained network is only linear interpolation: training keeps a useful share in any case
        config.min_seconds = 0.25 * budget_s
        planned_train_s = max(config.min_seconds, config.max_seconds - timer.seconds)
        reporter.weights = _stage_weights(elapsed, planned_train_s, timer.seconds)
        t_train = time.monotonic()
        result = training.train_model(
            array,
            pixel_spacing_mm=pixel,
            thickness_mm=thickness,
            spacing_mm=spacing,
            profile=profile,
            config=config,
            normalisation=norm,
            device=torch_device,
            reporter=reporter,
            inference_timer=timer,
        )
        timings["train"] = time.monotonic() - t_train
        if config.max_seconds - timer.seconds < config.min_seconds:
            messages.append(
                f"Applying the network needs about {timer.seconds / 60:.1f} min on this device; the run will "
                f"take longer than the {budget_s / 60:g} min limit."
            )
        model = result.model
        steps_done = result.steps
        messages.extend(result.warnings)
        train_info = {
            "training_steps": result.steps,
            "best_step": result.best_step,
            "validation_loss": result.validation_loss,
            "identity_validation_loss": result.identity_loss,
            "validation_gain_db": result.validation_gain_db,
            "used_identity": result.used_identity,
        }
        if save_model_path is not None:
            save_model(
                save_model_path,
                model,
                network=network,
                info={
                    "normalisation": norm.to_dict(),
                    "thickness_mm": thickness,
                    "spacing_mm": spacing,
                    "profile": profile,
                    "pixel_spacing_mm": pixel,
                    "seed": seed,
                    "preset": preset_obj.name,
                    "training": train_info,
                },
            )

    reporter.check_cancel()
    t_infer = time.monotonic()
    inferred = enhance_array(
        None if train_info.get("used_identity") else model,  # the identity network is linear interpolation
        array,
        slice_positions_mm=positions,
        pixel_spacing_mm=pixel,
        target_spacing_mm=target,
        normalisation=norm,
        device=torch_device,
        uncertainty=uncertainty,
        test_time_flips=preset_obj.test_time_flips,
        reporter=reporter,
    )
    timings["infer"] = time.monotonic() - t_infer
    if timer is not None:
        timings["infer_estimate"] = timer.seconds  # what training left for it (calibrates the margin)
    messages.extend(inferred.messages)

    parameters = {
        "thickness_mm": f"{thickness:g}",
        "spacing_mm": f"{spacing:g}",
        "target_spacing_mm": f"{target:g}",
        "profile": profile,
        "preset": preset_obj.name,
        "network": network,
        "device": device_text,
        "seed": str(seed),
        "steps": str(steps_done),
        "test_time_flips": "true" if preset_obj.test_time_flips else "false",
        "model": str(model_path) if model_path is not None else "trained",
        "sr4zct_version": __version__,
        "torch_version": str(torch.__version__),
    }
    if train_info:
        parameters["validation_gain_db"] = f"{train_info['validation_gain_db']:.2f}"
        parameters["used_identity"] = str(train_info["used_identity"]).lower()
    out_geom = _output_geometry(geom, inferred.positions_mm, target)
    out = Volume(inferred.array, out_geom, metadata=dict(parameters))
    unc = None
    if inferred.uncertainty is not None:
        unc = Volume(
            inferred.uncertainty, out_geom, metadata={"sr4zct_content": "uncertainty |coronal - sagittal| HU"}
        )
    timings["total"] = time.monotonic() - t_start
    return EnhanceResult(
        volume=out,
        uncertainty=unc,
        parameters=parameters,
        timings_s=timings,
        device=device_text,
        warnings=messages,
    )


_ENHANCE_DEFAULTS: dict[str, Any] = {
    "geometry": None,
    "thickness_mm": None,
    "spacing_mm": None,
    "target_spacing_mm": None,
    "profile": "box",
    "preset": "balanced",
    "network": "default",
    "device": "auto",
    "seed": 0,
    "max_minutes": None,
    "model_path": None,
    "save_model_path": None,
    "uncertainty": False,
    "allow_non_ct": False,
}
_ENHANCE_OPTIONS = frozenset(_ENHANCE_DEFAULTS) - {"uncertainty", "geometry"}


def _output_geometry(geom: SeriesGeometry, positions_mm: np.ndarray, target_mm: float) -> SeriesGeometry:
    """Input geometry on the new z grid: same axes, in-plane grid and origin (first slice centre)."""
    shift = float(positions_mm[0] - geom.slice_positions_mm[0])
    axis0 = np.asarray(geom.axes_lps[0], dtype=np.float64)
    origin = tuple(float(o) for o in np.asarray(geom.origin_lps) + shift * axis0)
    rel = positions_mm - positions_mm[0]
    return dataclasses.replace(
        geom,
        slice_thickness_mm=float(target_mm),
        slice_spacing_mm=float(target_mm),
        slice_positions_mm=tuple(float(p) for p in rel),
        shape=(len(positions_mm), geom.shape[1], geom.shape[2]),
        origin_lps=origin,
        thickness_source="sr4zct",
        irregular_positions=(),
        thickness_values_mm=(float(target_mm),),
        warnings=(),
        description=(geom.description + " (SR4ZCT)").strip(),
        extra=dict(geom.extra),
    )


def enhance_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    overwrite: bool = False,
    series_uid: str | None = None,
    slice_axis: int | None = None,
    uncertainty_path: str | os.PathLike | None = None,
    **enhance_kwargs: Any,
) -> EnhanceResult:
    """Read a volume, enhance it and write the result (and optionally the uncertainty) atomically.

    ``slice_axis`` (image files only) names the file array's through-plane axis, as for
    :func:`sr4zct.io.read_volume`; by default the one recorded in the file, else the coarsest.
    ``enhance_kwargs`` go to :func:`enhance`. Every output (and ``save_model_path``) is checked before the
    (long) computation with the writers' rules, and ``model_path`` is checked before the input is read. The
    saved model is moved into place together with the outputs: on failure or cancellation no output file
    and no model file is left behind (see docs/errors.md).
    """
    from sr4zct.io import check_output, image_suffix, read_volume, write_volume
    from sr4zct.io.atomic import check_output_path, remove_stale_temporaries, temporary_name
    from sr4zct.run.validation import check_output_geometry, validate_model_file

    inp, out = Path(input_path), Path(output_path)
    targets = [out] + ([Path(uncertainty_path)] if uncertainty_path is not None else [])
    # Same rules as the writers, before any work: not the input, not inside the input DICOM folder, not
    # existing without overwrite, writable.
    resolved = [check_output(target, overwrite=overwrite, input_path=inp) for target in targets]
    save_model_path = enhance_kwargs.get("save_model_path")
    if save_model_path is not None:
        inputs = [inp] + ([inp.parent] if inp.is_file() and image_suffix(inp) is None else [])
        resolved.append(check_output_path(save_model_path, overwrite=overwrite, inputs=inputs))
    if len(set(resolved)) < len(resolved):
        raise OutputError("The output, the uncertainty output and the saved model must be different paths.")
    if enhance_kwargs.get("model_path") is not None:
        validate_model_file(enhance_kwargs["model_path"])
    reporter = ProgressReporter(enhance_kwargs.pop("progress", None), enhance_kwargs.pop("should_stop", None))
    reporter.report("prepare", 0, 1, message=f"reading {inp}")
    volume = read_volume(
        inp, series_uid=series_uid, thickness_mm=enhance_kwargs.get("thickness_mm"), slice_axis=slice_axis
    )
    for target in targets:
        check_output_geometry(volume.geometry, target)
    kwargs = {name: enhance_kwargs.pop(name) for name in list(enhance_kwargs) if name in _ENHANCE_OPTIONS}
    if enhance_kwargs:
        raise TypeError(f"enhance_file() got unexpected keyword arguments: {', '.join(enhance_kwargs)}")
    # The model goes to a temporary name and is moved into place with the outputs: a failed or cancelled
    # run leaves nothing behind.
    if save_model_path is not None:
        remove_stale_temporaries(resolved[-1])  # left by a killed run
    model_tmp = temporary_name(resolved[-1]) if save_model_path is not None else None
    if model_tmp is not None:
        kwargs["save_model_path"] = model_tmp
    try:
        result = _enhance(
            volume, reporter, **{**_ENHANCE_DEFAULTS, **kwargs, "uncertainty": uncertainty_path is not None}
        )
        reporter.check_cancel()
        reporter.report("write", 0, len(targets), message=f"writing {out}")
        t0 = time.monotonic()
        written: list[Path] = []
        try:
            written.append(
                Path(write_volume(result.volume, out, metadata=result.parameters, overwrite=overwrite))
            )
            if uncertainty_path is not None and result.uncertainty is not None:
                meta = {**result.parameters, "content": "uncertainty |coronal - sagittal| HU"}
                written.append(
                    Path(
                        write_volume(result.uncertainty, uncertainty_path, metadata=meta, overwrite=overwrite)
                    )
                )
            if model_tmp is not None and model_tmp.exists():
                try:
                    os.replace(model_tmp, resolved[-1])
                except OSError as exc:
                    raise OutputError(
                        f"Cannot save the model to {resolved[-1]}: {exc.strerror or exc}."
                    ) from exc
        except BaseException:
            for path in written:
                _remove(path)
            raise
    finally:
        if model_tmp is not None:
            _remove(model_tmp)
    result.timings_s["write"] = time.monotonic() - t0
    try:
        reporter.report("write", len(targets), len(targets))
    except Cancelled:
        pass  # everything is written: a cancel arriving now does not undo a finished run
    return result


def _remove(path: Path) -> None:
    import shutil

    try:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass
