"""End-to-end SR4ZCT: ``enhance(volume) -> EnhanceResult`` and ``enhance_file(input, output)``.

``enhance`` validates the acquisition parameters, trains the self-supervised network on the volume's own
axial images (or loads a saved model), applies it to the coronal and sagittal images and returns a new
:class:`~sr4zct.volume.Volume` on a finer z grid with the same in-plane grid, axes and origin (the first
output slice centre is the first input slice centre). Its options are :class:`~sr4zct.run.options.EnhanceOptions`;
progress goes to a callback, cancellation is polled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sr4zct._version import __version__
from sr4zct.errors import Cancelled, OutputError, ParameterError, ResourceError
from sr4zct.run.options import EnhanceOptions, resolved_scan_mode
from sr4zct.run.presets import Preset, get_preset
from sr4zct.run.validation import AcquisitionParameters
from sr4zct.system.progress import Progress, ProgressReporter
from sr4zct.volume import SeriesGeometry, Volume

__all__ = ["EnhanceResult", "enhance", "enhance_file", "torch_cache_left_as_found"]

log = logging.getLogger(__name__)

GPU_OOM_ADVICE = (
    "The GPU ran out of memory even with smaller batches and tiles. Close other programs that use the GPU, "
    "choose the 'fast' preset, or run on the CPU (device cpu, or allow_cpu_fallback)."
)


@dataclass
class EnhanceResult:
    """What :func:`enhance` returns.

    Attributes
    ----------
    volume : Volume
        The enhanced volume (HU; int16 or float32, see ``output_dtype``).
    uncertainty : Volume or None
        ``|coronal - sagittal|`` in HU, when asked for.
    parameters : dict of str
        How it was made (thickness, spacing, profile, preset, network, device, seed, steps, version ...);
        the writers store it in the output's metadata.
    timings_s : dict of float
        Seconds per stage (``prepare``, ``train``, ``infer``, ``write``, ``total``).
    device : str
        The device description.
    warnings : list of str
        Findings the user should know about (irregular spacing, time limit, identity kept ...).
    """

    volume: Volume
    uncertainty: Volume | None
    parameters: dict[str, str]
    timings_s: dict[str, float] = field(default_factory=dict)
    device: str = ""
    warnings: list[str] = field(default_factory=list)


#: the variable torch sets to the folder of its compiler cache (``$TMPDIR/torchinductor_<user>`` by default)
TORCH_CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"


@contextlib.contextmanager
def torch_cache_left_as_found() -> Iterator[None]:
    """Leave no empty torch compiler cache folder behind, and the environment as it was.

    The first torch call that goes through ``torch._compile`` (creating the Adam optimiser, initialising a
    network's weights to check a saved model) imports ``torch._dynamo``, which creates
    ``$TMPDIR/torchinductor_<user>`` and sets :data:`TORCH_CACHE_VARIABLE` to it, though nothing is compiled.
    When the variable was not set before the run, it is removed again, and the folder it names is removed when
    it lies in the temporary folder, did not exist before the run and is still empty (a folder something wrote
    into stays). :func:`enhance` and :func:`enhance_file` run inside it; so can other entry points.
    """
    if TORCH_CACHE_VARIABLE in os.environ:
        yield
        return
    before = {folder: _torch_cache_folders(folder) for folder in _temporary_folders()}
    try:
        yield
    finally:
        made = os.environ.pop(TORCH_CACHE_VARIABLE, None)
        parent = None if made is None else _folder_key(os.path.dirname(made))
        if parent in before and os.path.basename(made) not in before[parent]:
            with contextlib.suppress(OSError):  # not empty, or already gone
                os.rmdir(made)


def _temporary_folders() -> list[str]:
    """The folders :func:`tempfile.gettempdir` may choose, without calling it: its first call writes and
    removes a probe file, which a signal arriving then (the run's first moments) would leave behind."""
    if tempfile.tempdir is not None:
        return [_folder_key(tempfile.tempdir)]
    candidates = getattr(tempfile, "_candidate_tempdir_list", None)
    return [_folder_key(folder) for folder in (candidates() if candidates else [tempfile.gettempdir()])]


def _folder_key(folder: str) -> str:
    return os.path.normcase(os.path.abspath(folder))


def _torch_cache_folders(folder: str) -> set[str]:
    try:
        return {entry.name for entry in os.scandir(folder) if entry.name.startswith("torchinductor_")}
    except OSError:
        return set()


@torch_cache_left_as_found()
def enhance(
    volume: Volume | np.ndarray,
    options: EnhanceOptions | None = None,
    *,
    geometry: SeriesGeometry | None = None,
    uncertainty: bool = False,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    should_finish: Callable[[], bool] | None = None,
    on_preview: Callable[[dict], None] | None = None,
    **changes: Any,
) -> EnhanceResult:
    """Enhance the through-plane resolution of a thick-slice CT volume.

    Parameters
    ----------
    volume : Volume or np.ndarray
        HU, ``(slice, row, column)``; a plain array needs ``geometry``.
    options : EnhanceOptions, optional
        Every option (:class:`~sr4zct.run.options.EnhanceOptions`); ``changes`` override single ones, e.g.
        ``enhance(volume, thickness_mm=3.0, preset="fast")``. Reading and writing options
        (``series_uid``, ``slice_axis``, ``uncertainty_path``, ``overwrite``) only matter to
        :func:`enhance_file`.
    geometry : SeriesGeometry, optional
        The geometry of a plain array.
    uncertainty : bool
        Also return ``|coronal - sagittal|`` as a volume.
    progress : callable, optional
        Receives :class:`~sr4zct.system.progress.Progress` records.
    should_stop : callable, optional
        Polled between steps; returning True raises :class:`~sr4zct.errors.Cancelled`.
    should_finish : callable, optional
        Polled every training step; returning True ends training with the best checkpoint so far and goes on
        to inference ("finish now"; the parameters record it).
    on_preview : callable, optional
        Receives the fields of a ``preview`` event (docs/events.md) whenever the live preview is updated; the
        preview is made when this is given or ``preview_path`` is set.

    Returns
    -------
    EnhanceResult
    """
    options = _merge_options(options, changes)
    reporter = ProgressReporter(progress, should_stop)
    vol = _as_volume(volume, geometry)
    hooks = _Hooks(should_finish, on_preview, np.issubdtype(np.asarray(vol.array).dtype, np.integer))
    return _enhance_with_fallback(vol, options, reporter, hooks, uncertainty=uncertainty)


def _merge_options(options: EnhanceOptions | None, changes: dict[str, Any]) -> EnhanceOptions:
    if options is None:
        return EnhanceOptions.from_dict(changes)
    if not isinstance(options, EnhanceOptions):
        raise ParameterError(f"options must be an EnhanceOptions, got {type(options).__name__}.")
    return options.replace(**changes) if changes else options


def _as_volume(volume: Any, geometry: Any) -> Volume:
    if isinstance(volume, Volume):
        return volume
    if geometry is None:
        raise ParameterError("A plain array needs geometry= (a SeriesGeometry); or pass a Volume.")
    if not isinstance(geometry, SeriesGeometry):
        raise ParameterError(f"geometry must be a SeriesGeometry, got {type(geometry).__name__}.")
    try:
        return Volume(np.asarray(volume), geometry)
    except ValueError as exc:  # not 3-D, or a shape that does not match the geometry
        raise ParameterError(f"The array does not fit the geometry: {exc}.") from None


@dataclass
class _Hooks:
    """What a caller plugs into a run besides progress and cancel, and what it knows about the input."""

    should_finish: Callable[[], bool] | None = None
    on_preview: Callable[[dict], None] | None = None
    integer_input: bool = False


def _enhance_with_fallback(
    vol: Volume, options: EnhanceOptions, reporter: ProgressReporter, hooks: _Hooks, *, uncertainty: bool
) -> EnhanceResult:
    """:func:`_enhance`; a GPU out of memory (after its own retries) reruns on the CPU when allowed."""
    try:
        return _enhance(vol, options, reporter, hooks, uncertainty=uncertainty)
    except Exception as exc:
        from sr4zct.system.devices import is_out_of_memory

        if isinstance(exc, Cancelled) or options.device == "cpu" or not is_out_of_memory(exc):
            raise
        if not options.allow_cpu_fallback:
            raise ResourceError(GPU_OOM_ADVICE, detail=str(exc)) from exc
        log.warning("Out of GPU memory (%s); running again on the CPU.", exc)
        _free_gpu_memory()
        result = _enhance(vol, options.replace(device="cpu"), reporter, hooks, uncertainty=uncertainty)
        result.warnings.insert(0, "The GPU ran out of memory; the enhancement ran on the CPU instead.")
        return result


def _free_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _enhance(
    vol: Volume, options: EnhanceOptions, reporter: ProgressReporter, hooks: _Hooks, *, uncertainty: bool
) -> EnhanceResult:
    t_start = time.monotonic()
    reporter.report("prepare", 0, 1, message="checking parameters")
    from sr4zct.run.validation import validate_for_enhancement

    preset = options.preset if isinstance(options.preset, Preset) else get_preset(options.preset)
    acquisition = validate_for_enhancement(
        vol, thickness_mm=options.thickness_mm, spacing_mm=options.spacing_mm,
        target_spacing_mm=options.target_spacing_mm, uncertainty=uncertainty, allow_non_ct=options.allow_non_ct,
    )  # fmt: skip
    from sr4zct.system.devices import choose_device, set_cpu_threads

    if options.device in ("auto", "cpu"):
        set_cpu_threads()
    choice = choose_device(options.device)
    device, precision = choice.device, _precision(options, preset, acquisition, vol, choice.device)
    device_text = choice.description(precision.name)
    array = np.asarray(vol.array, dtype=np.float32)
    warnings = list(vol.geometry.warnings) + [
        w for w in acquisition.warnings if w not in vol.geometry.warnings
    ]
    slice_model = _slice_model(array, options, acquisition, _pixel_mm(vol), vol.geometry, reporter)
    warnings += slice_model.warnings
    warnings += [precision.warning] if precision.warning else []
    timings = {"prepare": time.monotonic() - t_start}
    reporter.report("prepare", 1, 1)

    if options.model_path is not None:
        trained = _load_trained(options, acquisition, _pixel_mm(vol), device, reporter)
    else:
        trained = _train(
            vol, array, options, preset, acquisition, device, reporter, t_start, hooks, slice_model,
            precision.name,
        )  # fmt: skip
    timings["train"] = trained.seconds
    warnings += trained.warnings

    reporter.check_cancel()
    from sr4zct.method.inference import enhance_array

    t_infer = time.monotonic()
    inferred = enhance_array(
        None if trained.info.get("used_identity") else trained.model,  # the identity is linear interpolation
        array,
        slice_positions_mm=acquisition.positions_mm,
        pixel_spacing_mm=_pixel_mm(vol),
        target_spacing_mm=acquisition.target_spacing_mm,
        normalisation=trained.normalisation,
        device=device,
        uncertainty=uncertainty or options.uncertainty_path is not None,
        test_time_flips=preset.test_time_flips,
        reporter=reporter,
        precision=precision.name,
    )
    timings["infer"] = time.monotonic() - t_infer
    if trained.planned_inference_s is not None:
        timings["infer_estimate"] = trained.planned_inference_s  # what training left for it
    if trained.preview_s:
        timings["preview"] = trained.preview_s  # spent inside training on the live preview
    warnings += inferred.messages

    parameters = _parameters(options, preset, acquisition, trained, device_text)
    parameters.update(slice_model.parameters(options, trained))
    parameters.update(precision=precision.name, precision_reason=precision.reason)
    out_geometry = _output_geometry(vol.geometry, inferred.positions_mm, acquisition.target_spacing_mm)
    out_array = _cast_output(inferred.array, options.output_dtype, hooks.integer_input)
    out = Volume(out_array, out_geometry, metadata=dict(parameters))
    unc = None
    if inferred.uncertainty is not None:
        unc = Volume(
            inferred.uncertainty,
            out_geometry,
            metadata={"sr4zct_content": "uncertainty |coronal - sagittal| HU"},
        )
    timings["total"] = time.monotonic() - t_start
    return EnhanceResult(out, unc, parameters, timings, device=device_text, warnings=warnings)


@dataclass
class _SliceModel:
    """The slice profile and noise a run trains for: the user's profile, or the one estimated from the scan
    (``profile="auto"``), and the measured slice noise (``noise="auto"``)."""

    profile: str
    estimate: Any = None  # sr4zct.method.profile.ProfileEstimate
    noise: Any = None  # sr4zct.method.noise.NoiseEstimate
    warnings: list[str] = field(default_factory=list)
    scan_mode: tuple[str | None, str] = (None, "")  # the scan mode that fixed the family, and its source

    def parameters(self, options: EnhanceOptions, trained: _Trained) -> dict[str, str]:
        """What the output records: the profile used and asked for, the scan mode, the estimate, the noise."""
        out = {"profile": str(trained.info.get("profile", self.profile)), "profile_option": options.profile}
        mode, source = self.scan_mode
        if mode is not None:
            out.update(scan_mode=mode, scan_mode_source=source)
        if self.estimate is not None:
            out.update(self.estimate.to_parameters())
        if self.noise is not None:
            out.update(self.noise.to_parameters())
        out["training_noise"] = "on" if trained.info.get("noise_sigma_hu", 0.0) > 0 else "off"
        return out


def _slice_model(array: np.ndarray, options: EnhanceOptions, acq, pixel, geometry, reporter) -> _SliceModel:
    """Estimate what ``auto`` leaves open (a saved model brings its own profile; nothing is estimated)."""
    from sr4zct.errors import SR4ZCTError
    from sr4zct.volume.scan_mode import SCAN_MODES

    if options.model_path is not None or options.profile != "auto":
        model = _SliceModel(options.profile if options.profile != "auto" else "box")
    else:
        from sr4zct.method.profile import estimate_profile

        mode, source = resolved_scan_mode(options, geometry)
        reporter.report("prepare", 0, 1, message="estimating the slice profile from the scan")
        try:
            estimate = estimate_profile(
                array, pixel_spacing_mm=pixel, spacing_mm=acq.spacing_mm, nominal_mm=acq.thickness_mm,
                scan_mode=mode,
            )  # fmt: skip
        except SR4ZCTError as exc:
            if mode is not None:  # the scan mode gives the family; the run uses the width T anyway
                log.info("Slice profile not estimated (%s); the %s scan's is used.", exc.message, mode)
                model = _SliceModel(SCAN_MODES[mode], scan_mode=(mode, source))
            else:
                model = _SliceModel("box", warnings=[
                    f"The slice profile could not be estimated from the scan ({exc.message}); the box profile is "
                    "used. Choose the profile (box or gaussian) to silence this."])  # fmt: skip
        else:
            model = _SliceModel(
                estimate.family, estimate, warnings=_estimate_warnings(estimate), scan_mode=(mode, source)
            )
            log.info("Slice profile estimated from the scan: %s.", estimate.describe())
    if options.noise == "auto" and options.model_path is None:
        from sr4zct.method.noise import estimate_noise

        model.noise = estimate_noise(array)
    return model


def _estimate_warnings(estimate) -> list[str]:
    """A warning when the estimate disagrees with the slice thickness, and one when the family is unclear."""
    out = []
    if estimate.disagrees_with_nominal:
        out.append(
            f"The slice profile estimated from the scan ({estimate.describe()}) disagrees with the slice "
            f"thickness of {estimate.nominal_mm:g} mm; the model uses {estimate.nominal_mm:g} mm. Check the "
            "thickness (give the right one with the thickness option)."
        )
    if not estimate.family_certain:
        out.append(
            f"The scan does not tell a box from a Gaussian slice profile clearly; the one that fits better "
            f"({estimate.family}) is used. Give the scan mode (helical or sequential) or the profile if you "
            "know the scanner's."
        )
    return out


def _precision(options: EnhanceOptions, preset: Preset, acq: AcquisitionParameters, vol: Volume, device):
    """The run's :class:`~sr4zct.run.precision.PrecisionChoice` (``auto`` probes bf16 unless the run is small)."""
    from sr4zct.method.acquisition import output_positions_mm
    from sr4zct.run.precision import choose_precision, is_small_run

    training_px = 0 if options.model_path is not None else preset.steps * preset.batch * preset.patch_px**2
    _, rows, cols = vol.array.shape
    inference_px = len(output_positions_mm(acq.positions_mm, _pixel_mm(vol)[0])) * 2 * rows * cols
    small = is_small_run(_limit_s(options, preset), training_px, inference_px)
    return choose_precision(options.precision, device, network=options.network, small_run=small)


def _pixel_mm(vol: Volume) -> tuple[float, float]:
    return float(vol.geometry.pixel_spacing_mm[0]), float(vol.geometry.pixel_spacing_mm[1])


@dataclass
class _Trained:
    """The network to apply and how it came about."""

    model: Any
    normalisation: Any
    network: str
    seconds: float
    steps: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    planned_inference_s: float | None = None
    preview_s: float = 0.0


def _load_trained(
    options: EnhanceOptions, acq: AcquisitionParameters, pixel: tuple[float, float], device, reporter
) -> _Trained:
    from sr4zct.method.training import Normalisation
    from sr4zct.run.model_file import check_model_geometry, load_model

    model, info = load_model(options.model_path, device=device)
    profile = info.get("profile") if options.profile == "auto" else options.profile  # auto: the model's
    check_model_geometry(
        info, thickness=acq.thickness_mm, spacing=acq.spacing_mm, pixel=pixel, profile=profile,
        path=options.model_path,
    )  # fmt: skip
    norm = Normalisation(**info["normalisation"]) if "normalisation" in info else Normalisation()
    reporter.report("train", 1, 1, message=f"using saved model {options.model_path}")
    return _Trained(
        model, norm, str(info.get("network", options.network)), seconds=0.0, info={"profile": str(profile)}
    )


def _train(
    vol: Volume,
    array: np.ndarray,
    options: EnhanceOptions,
    preset: Preset,
    acq: AcquisitionParameters,
    device,
    reporter: ProgressReporter,
    t_start: float,
    hooks: _Hooks,
    slice_model: _SliceModel,
    precision: str,
) -> _Trained:
    from sr4zct.method import training

    pixel = _pixel_mm(vol)
    noise = slice_model.noise
    config = training.TrainingConfig(
        steps=preset.steps, patch_px=preset.patch_px, batch=preset.batch, lr=preset.lr, loss=preset.loss,
        network=options.network,
        network_config=dict(preset.network_config) if options.network == "default" else {},
        validate_every=preset.validate_every, seed=options.seed,
        noise_sigma_hu=0.0 if noise is None else noise.sigma_hu,
        noise_correlation=0.0 if noise is None else noise.correlation,
    )  # fmt: skip
    budget = _time_budget(array, options, preset, acq, pixel, config, (device, precision), reporter, t_start)
    norm = training.Normalisation()
    preview = _preview_publisher(vol, array, options, acq, config, norm, device, hooks)
    t_train = time.monotonic()
    result = training.train_model(
        array, pixel_spacing_mm=pixel, thickness_mm=acq.thickness_mm, spacing_mm=acq.spacing_mm,
        profile=slice_model.profile, config=config, normalisation=norm, device=device, reporter=reporter,
        budget=budget, on_validation=preview, should_finish=hooks.should_finish, precision=precision,
    )  # fmt: skip
    warnings = list(result.warnings)
    if budget.over_limit():
        warnings.append(
            f"Applying the network needs about {budget.inference_s / 60:.1f} min on this device; the run will "
            f"take longer than the {budget.limit_s / 60:g} min limit."
        )
    info = {
        "training_steps": result.steps,
        "best_step": result.best_step,
        "validation_loss": result.validation_loss,
        "identity_validation_loss": result.identity_loss,
        "validation_gain_db": result.validation_gain_db,
        "used_identity": result.used_identity,
        "finished_early": result.finished_early,
        "profile": slice_model.profile,
        "noise_sigma_hu": config.noise_sigma_hu,
    }
    if options.save_model_path is not None:
        from sr4zct.run.model_file import save_model

        save_model(
            options.save_model_path, result.model, network=options.network,
            info={"normalisation": norm.to_dict(), "thickness_mm": acq.thickness_mm, "spacing_mm": acq.spacing_mm,
                  "profile": slice_model.profile, "pixel_spacing_mm": pixel, "seed": options.seed,
                  "preset": preset.name, "training": info},
        )  # fmt: skip
    return _Trained(
        result.model, norm, options.network, seconds=time.monotonic() - t_train, steps=result.steps, info=info,
        warnings=warnings, planned_inference_s=budget.inference_s,
        preview_s=0.0 if preview is None else preview.seconds,
    )  # fmt: skip


def _preview_publisher(
    vol: Volume, array: np.ndarray, options: EnhanceOptions, acq, config, norm, device, hooks
):
    """The live preview of this run, when a caller wants one (``preview_path`` or ``on_preview``)."""
    if options.preview_path is None and hooks.on_preview is None:
        return None
    from sr4zct.method.networks import build_network
    from sr4zct.run.preview import CoronalPreview, PreviewPublisher

    maker = CoronalPreview(
        array, vol.geometry, slice_positions_mm=acq.positions_mm, normalisation=norm, device=device,
        row=options.preview_row,
    )  # fmt: skip
    return PreviewPublisher(
        maker, lambda: build_network(config.network, config.network_config), path=options.preview_path,
        emit=hooks.on_preview,
    )  # fmt: skip


def _limit_s(options: EnhanceOptions, preset: Preset) -> float:
    return 60.0 * (preset.max_minutes if options.max_minutes is None else options.max_minutes)


def _time_budget(array, options, preset, acq, pixel, config, compute, reporter, t_start):
    """The run's :class:`~sr4zct.method.budget.TimeBudget`: its limit, the timed cost of inference (a timer that
    training keeps re-timing, on ``compute = (device, precision)``) and what is kept back for writing.
    Training stops at its deadline; the progress model's ETA and fraction follow it (``reporter.plan``)."""
    import torch

    from sr4zct.method.acquisition import output_positions_mm
    from sr4zct.method.body import body_box
    from sr4zct.method.budget import InferenceTimer, TimeBudget
    from sr4zct.method.inference import FlipAverage, default_pass_pixels, inference_workload
    from sr4zct.method.networks import build_network

    limit_s = _limit_s(options, preset)
    device, precision = compute
    probe = build_network(config.network, config.network_config).to(device)
    n_out = len(output_positions_mm(acq.positions_mm, pixel[0]))
    pixels, pass_shape = inference_workload(
        probe, array.shape, n_out, body_box(array), max_pixels=default_pass_pixels(device)
    )
    passes = len(FlipAverage.FLIPS) if preset.test_time_flips else 1
    timer = InferenceTimer(pixels, pass_shape, device, passes=passes, precision=precision)
    timer.measure(probe.to(memory_format=torch.channels_last))
    budget = TimeBudget(
        limit_s, start=t_start, timer=timer, output_voxels=n_out * array.shape[1] * array.shape[2],
        clock=time.monotonic,
    )  # fmt: skip
    reporter.plan = budget
    return budget


def _parameters(
    options: EnhanceOptions, preset: Preset, acq: AcquisitionParameters, trained: _Trained, device_text: str
) -> dict[str, str]:
    """What the output records about how it was made (its metadata and the Slicer node's attributes)."""
    import torch

    parameters = {
        "thickness_mm": f"{acq.thickness_mm:g}",
        "spacing_mm": f"{acq.spacing_mm:g}",
        "target_spacing_mm": f"{acq.target_spacing_mm:g}",
        "preset": preset.name,
        "network": trained.network,
        "device": device_text,
        "seed": str(options.seed),
        "steps": str(trained.steps),
        "test_time_flips": "true" if preset.test_time_flips else "false",
        "model": str(options.model_path) if options.model_path is not None else "trained",
        "sr4zct_version": __version__,
        "torch_version": str(torch.__version__),
    }
    if "validation_gain_db" in trained.info:
        parameters["validation_gain_db"] = f"{trained.info['validation_gain_db']:.2f}"
        parameters["used_identity"] = str(trained.info["used_identity"]).lower()
        parameters["finished_early"] = str(trained.info["finished_early"]).lower()
        parameters["best_step"] = str(trained.info["best_step"])
    return parameters


def _cast_output(array: np.ndarray, output_dtype: str, integer_input: bool) -> np.ndarray:
    """The result in the data type asked for: int16 HU (rounded, clipped to the int16 range) or float32."""
    if output_dtype == "float32" or (output_dtype == "auto" and not integer_input):
        return array
    import torch

    # torch rounds half to even like np.rint, on all threads; blocks avoid a float copy of the whole volume
    src, out = torch.from_numpy(np.ascontiguousarray(array)), torch.empty(array.shape, dtype=torch.int16)
    for i in range(0, src.shape[0], 32):
        out[i : i + 32] = src[i : i + 32].round().clamp_(-32768, 32767)
    return out.numpy()


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


@torch_cache_left_as_found()
def enhance_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    options: EnhanceOptions | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    should_finish: Callable[[], bool] | None = None,
    on_preview: Callable[[dict], None] | None = None,
    **changes: Any,
) -> EnhanceResult:
    """Read a volume, enhance it and write the result (and optionally the uncertainty and the model).

    Parameters
    ----------
    input_path : path-like
        DICOM folder or file, or an NRRD/NIfTI/MHA volume.
    output_path : path-like
        ``.nrrd``/``.nii.gz``/``.nii``/``.mha`` file, or a folder for a DICOM series.
    options : EnhanceOptions, optional
        Every option; ``changes`` override single ones (as for :func:`enhance`).
    progress, should_stop, should_finish, on_preview : callable, optional
        As for :func:`enhance`.

    Returns
    -------
    EnhanceResult

    Notes
    -----
    Every output (and ``save_model_path``) is checked with the writers' rules before the (long) computation,
    and ``model_path`` before the input is read. Outputs are written under temporary names and moved into
    place at the end, the saved model with them: a failed or cancelled run leaves none of them behind.
    """
    from sr4zct.io import as_path

    options = _merge_options(options, changes)
    inp, out = as_path(input_path, "input_path"), as_path(output_path, "output_path")  # "" is refused
    targets = _check_targets(inp, out, options)
    reporter = ProgressReporter(progress, should_stop)
    reporter.report("prepare", 0, 1, message=f"reading {inp}")
    from sr4zct.io import read_volume
    from sr4zct.run.validation import check_output_geometry

    volume = read_volume(
        inp, series_uid=options.series_uid, thickness_mm=options.thickness_mm, slice_axis=options.slice_axis,
        allow_detached_data=options.allow_detached_data,
    )  # fmt: skip
    for target in targets["volumes"]:
        check_output_geometry(volume.geometry, target)
    hooks = _Hooks(should_finish, on_preview, _whole_numbers(volume.array))
    return _enhance_and_write(volume, out, options, targets, reporter, hooks)


def _check_targets(inp: Path, out: Path, options: EnhanceOptions) -> dict[str, Any]:
    """Every output checked with the writers' rules; the resolved model path (or None)."""
    from sr4zct.io import check_output, image_suffix
    from sr4zct.io.atomic import check_output_path
    from sr4zct.run.validation import validate_model_file

    volumes = [out] + ([Path(options.uncertainty_path)] if options.uncertainty_path is not None else [])
    resolved = [
        check_output(target, overwrite=options.overwrite, input_path=inp, content=content)
        for target, content in zip(volumes, ("volume", "uncertainty"), strict=False)
    ]
    model = None
    if options.save_model_path is not None:
        inputs = [inp] + ([inp.parent] if inp.is_file() and image_suffix(inp) is None else [])
        model = check_output_path(
            options.save_model_path, overwrite=options.overwrite, inputs=inputs, content="model"
        )
        resolved.append(model)
    if options.preview_path is not None:
        resolved.append(_check_preview_path(options.preview_path, inp))
    _check_distinct(resolved)
    if options.model_path is not None:
        validate_model_file(options.model_path)
    return {"volumes": volumes, "model": model}


def _check_distinct(resolved: list[Path]) -> None:
    """The outputs, and the NIfTI sidecars they bring (``ct.nii.gz`` -> ``ct.json``), are different files."""
    from sr4zct.io import image_suffix
    from sr4zct.io.image import sidecar_path

    files = [str(p).lower() if os.name == "nt" else str(p) for p in resolved]
    files += [
        str(sidecar_path(p)).lower() if os.name == "nt" else str(sidecar_path(p))
        for p in resolved
        if image_suffix(p) in (".nii", ".nii.gz")
    ]
    if len(set(files)) < len(files):
        raise OutputError(
            "The output, the uncertainty output, the saved model and the preview (and the .json sidecar of a "
            "NIfTI output) must be different paths."
        )


def _check_preview_path(path: str, inp: Path) -> Path:
    """The live preview goes to a PNG (side by side) or an NRRD (the coronal image, for Slicer), which each
    update replaces: only a file SR4ZCT wrote may be there already."""
    from sr4zct.io import check_output
    from sr4zct.io.atomic import unfollowed_path
    from sr4zct.run.preview import check_preview_path

    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        unfollowed_path(path)  # a link there is refused, never followed
        return check_preview_path(path)
    if suffix == ".nrrd":
        resolved = check_output(path, overwrite=True, input_path=inp)
        if resolved.exists() and not _is_nrrd_preview(resolved):  # e.g. an earlier result: never replaced
            raise OutputError(
                f"The preview {resolved} exists and is not an SR4ZCT preview; choose another file."
            )
        return resolved
    raise ParameterError(f"preview_path must be a .png or .nrrd file, got {path!r}.")


def _is_nrrd_preview(path: Path) -> bool:
    """True for an NRRD the live preview wrote (its ``sr4zct_content`` header key)."""
    from sr4zct.errors import SR4ZCTError
    from sr4zct.io.image_headers import inspect_image_file

    try:
        return inspect_image_file(path).keys.get("sr4zct_content", "").startswith("preview")
    except SR4ZCTError:
        return False


def _whole_numbers(array: np.ndarray) -> bool:
    """True when every voxel is a whole number of HU within the int16 range (integer-coded CT)."""
    a = np.asarray(array)
    if np.issubdtype(a.dtype, np.integer):
        return True
    return (
        bool(a.size)
        and float(a.min()) >= -32768
        and float(a.max()) <= 32767
        and bool(np.all(a == np.rint(a)))
    )


def _enhance_and_write(
    volume: Volume,
    out: Path,
    options: EnhanceOptions,
    targets: dict[str, Any],
    reporter: ProgressReporter,
    hooks: _Hooks,
) -> EnhanceResult:
    from sr4zct.io.atomic import remove_stale_temporaries, temporary_name

    model_target = targets["model"]
    model_tmp = None
    run_options = options
    if model_target is not None:
        remove_stale_temporaries(model_target)  # left by a killed run
        model_tmp = temporary_name(model_target)
        run_options = options.replace(save_model_path=str(model_tmp))
    try:
        result = _enhance_with_fallback(
            volume, run_options, reporter, hooks, uncertainty=options.uncertainty_path is not None
        )
        reporter.check_cancel()
        count = len(targets["volumes"])
        reporter.report("write", 0, count, message=f"writing {out}")
        t0 = time.monotonic()
        _write_outputs(result, out, options, model_tmp, model_target)
    finally:
        if model_tmp is not None:
            _remove(model_tmp)
    result.timings_s["write"] = time.monotonic() - t0
    try:
        reporter.report("write", count, count)
    except Cancelled:
        pass  # everything is written: a cancel arriving now does not undo a finished run
    return result


def _write_outputs(
    result: EnhanceResult,
    out: Path,
    options: EnhanceOptions,
    model_tmp: Path | None,
    model_target: Path | None,
) -> None:
    """Every output (volume, its sidecar, uncertainty map, saved model) is written under a temporary name
    first and all are moved into place together (:func:`sr4zct.io.atomic.staged_outputs`): with
    ``overwrite``, an earlier result is replaced only once every new file is complete, and a failure at any
    write leaves it exactly as it was."""
    from sr4zct.io import write_volume
    from sr4zct.io.atomic import staged_outputs

    with staged_outputs() as staged:
        write_volume(result.volume, out, metadata=result.parameters, overwrite=options.overwrite)
        if options.uncertainty_path is not None and result.uncertainty is not None:
            meta = {**result.parameters, "content": "uncertainty |coronal - sagittal| HU"}
            write_volume(
                result.uncertainty, options.uncertainty_path, metadata=meta, overwrite=options.overwrite
            )
        if model_tmp is not None and model_tmp.exists():
            staged.add(model_tmp, model_target)


def _remove(path: Path) -> None:
    import shutil

    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass
