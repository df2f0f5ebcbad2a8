"""The benchmark suite: ``python -m benchmarks.run [options]`` measures and writes BENCHMARKS.md.

Examples
--------
    python -m benchmarks.run --settings 5/2.5 --profiles box --presets fast          # headline case
    python -m benchmarks.run --peers --presets none                                  # peers on the crop
    python -m benchmarks.run --smoke                                                 # CI smoke (< 1 min)

Every run appends its rows to ``benchmarks/results.json`` (a newer row of the same case replaces the
older one) and regenerates the report from all recorded rows.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from . import report
from .machine import machine_info
from .quality import (
    BASELINES,
    CASES,
    DATA_DIR,
    REPO_ROOT,
    VHM_HEAD,
    BenchmarkError,
    add_gains,
    baseline_scores,
    crop_volume,
    derived_speed,
    load_ground_truth,
    region_volume,
    run_enhance,
    score,
    write_dicom_input,
)

DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results.json"
DEFAULT_OUTPUT = REPO_ROOT / "BENCHMARKS.md"
L291_DIR = DATA_DIR / "L291_3mm_overlap1mm"
# ECLARE has no time option: its training patches come from the budget at this rate (patches/s, measured
# on the 2-core CPU: 12,800 patches in about 600 s of training; docs/method.md section 6).
ECLARE_PATCHES_PER_S = 21.0
SMOKE = {
    "crop": 96,
    "slices": 60,
    "settings": "5/2.5",
    "profiles": "box",
    "presets": "fast",
    "max_minutes": 0.35,
}


def parse_settings(text: str) -> list[tuple[float, float]]:
    """``"5/2.5,3/-1"`` -> ``[(5.0, 2.5), (3.0, -1.0)]`` (thickness/overlap in mm); ``"all"`` -> every setting."""
    if text.strip().lower() == "all":
        return list(report.SETTINGS_MM)
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            t, o = (float(v) for v in item.split("/"))
        except ValueError:
            raise BenchmarkError(
                f"--settings item {item!r} is not THICKNESS/OVERLAP in mm (e.g. 5/2.5)."
            ) from None
        if t <= 0 or t - o <= 0:
            raise BenchmarkError(
                f"--settings item {item!r}: thickness and spacing (thickness - overlap) must be > 0."
            )
        out.append((t, o))
    if not out:
        raise BenchmarkError("--settings is empty.")
    return out


def _list(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    if text.strip().lower() in ("", "none"):
        return []
    items = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise BenchmarkError(f"{option}: unknown {', '.join(bad)}; choose from {', '.join(allowed)}.")
    return items


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--settings",
        default="all",
        help="THICKNESS/OVERLAP mm list, e.g. 5/2.5,3/-1; 'all' (default) or 'none'",
    )
    p.add_argument(
        "--cases",
        default="full",
        help=f"ground-truth cases ({', '.join(CASES)}; default full): body levels and crops of vhm-head",
    )
    p.add_argument("--profiles", default="box,gaussian", help="slice profiles (default box,gaussian)")
    p.add_argument(
        "--presets", default="fast,balanced,best", help="presets to run, or 'none' (baselines only)"
    )
    p.add_argument(
        "--crop", type=int, default=None, help="central in-plane crop in pixels (default: whole image)"
    )
    p.add_argument("--slices", type=int, default=None, help="keep the central N ground-truth slices")
    p.add_argument("--max-minutes", type=float, default=None, help="override every preset's time budget")
    p.add_argument("--device", default="auto", help="device for sr4zct enhance (auto, cpu, cuda, mps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=_available_cores(),
        help="CPU threads for sr4zct enhance (default: all cores this process may use; 0 = the pipeline's choice)",
    )
    p.add_argument("--peers", action="store_true", help="peers on the central 192x192 crop of 5/2.5 box")
    p.add_argument("--peer-minutes", type=float, default=4.0, help="wall-clock budget per peer (default 4)")
    p.add_argument("--peer-preset", default="fast", help="sr4zct preset used for the peer runs")
    p.add_argument(
        "--peer-slices", type=int, default=None, help="keep the central N ground-truth slices for peers"
    )
    p.add_argument("--peer-crop", type=int, default=192, help="central in-plane crop for peers (default 192)")
    p.add_argument(
        "--peer-methods",
        default="default,msd,eclare",
        help="which peer rows to run: default, msd, eclare (comma list; others keep their recorded rows)",
    )
    p.add_argument("--eclare-patches", type=int, default=None, help="override ECLARE's training patches")
    p.add_argument(
        "--eclare-timeout-minutes",
        type=float,
        default=None,
        help="kill ECLARE after this long (default: --peer-timeout-factor x the budget); a longer run that "
        "still loses shows the default network wins at equal time a fortiori",
    )
    p.add_argument("--no-eclare", action="store_true", help="skip ECLARE (no virtual environment is created)")
    p.add_argument(
        "--peer-timeout-factor",
        type=float,
        default=2.0,
        help="kill a peer run after factor x the budget (default 2: it has lost at equal time by then)",
    )
    p.add_argument("--speed", action="store_true", help="acquisition-model and network micro-benchmarks")
    p.add_argument(
        "--threads-rule",
        action="store_true",
        help="training steps/s of fast on each thread variant, alone and beside CPU-bound processes",
    )
    p.add_argument(
        "--thread-variants",
        default="1,2,2:passive",
        help="thread variants THREADS[:passive|active] (OMP_WAIT_POLICY), default 1,2,2:passive",
    )
    p.add_argument("--thread-competitors", default="0,1", help="competing CPU-bound processes, default 0,1")
    p.add_argument("--thread-repeats", type=int, default=3, help="repeats per variant (interleaved)")
    p.add_argument("--thread-seconds", type=float, default=12.0, help="timed window per run (after warm-up)")
    p.add_argument(
        "--levers",
        default=None,
        metavar="VARIANTS",
        help="quality levers at fixed steps (benchmarks/levers.py), e.g. baseline,intensity,wide-48",
    )
    p.add_argument("--lever-cases", default="neck,skull,neck-soft,skull-bone", help="cases for --levers")
    p.add_argument("--lever-steps", type=int, default=1000, help="training steps per lever run")
    p.add_argument("--lever-seeds", default="0", help="seeds per lever run, e.g. 0,1")
    p.add_argument(
        "--infer-profile",
        default=None,
        metavar="PRESET",
        help="time the parts of PRESET's inference on the full L291 series (in this process)",
    )
    p.add_argument("--infer-repeats", type=int, default=3, help="inference runs for --infer-profile")
    p.add_argument("--infer-model", type=Path, default=None, help="saved model for --infer-profile")
    p.add_argument(
        "--l291", default=None, metavar="PRESET", help="also run PRESET on the full L291 series (memory)"
    )
    p.add_argument(
        "--smoke", action="store_true", help="tiny CI run: 96x96x60 crop, 5/2.5 box, fast, seconds"
    )
    p.add_argument(
        "--merge",
        type=Path,
        action="append",
        default=[],
        metavar="RESULTS_JSON",
        help="merge the runs and rows of another results file (e.g. from a GPU machine) and regenerate "
        "the report; a newer row replaces an older row of the same case",
    )
    p.add_argument("--ground-truth", type=Path, default=VHM_HEAD, help="thin-slice ground truth (vhm-head)")
    p.add_argument(
        "--output", type=Path, default=None, help="report path (default BENCHMARKS.md; smoke: temp)"
    )
    p.add_argument(
        "--results", type=Path, default=None, help="results JSON (default benchmarks/results.json)"
    )
    p.add_argument(
        "--output-format",
        choices=("nrrd", "dicom"),
        default="nrrd",
        help="what sr4zct enhance writes (dicom needs no SimpleITK: the GPU machine)",
    )
    p.add_argument("--timeout-factor", type=float, default=3.0, help="kill a run after factor x its budget")
    p.add_argument("--workdir", type=Path, default=None, help="keep intermediate files here (default: temp)")
    p.add_argument("--quiet", action="store_true")
    return p


class _Log:
    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:7.1f} s] {msg}", flush=True)


def _suffix(args) -> str:
    """Output name suffix: a NRRD file, or (``--output-format dicom``) a DICOM folder (no SimpleITK)."""
    return "" if getattr(args, "output_format", "nrrd") == "dicom" else ".nrrd"


def _remove_output(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _preset_minutes(preset: str, override: float | None) -> float:
    if override is not None:
        return override
    from sr4zct.run.presets import get_preset

    return float(get_preset(preset).max_minutes)


def _capped(preset: str, override: float | None) -> bool:
    """True when ``--max-minutes`` shortens the preset's own time budget: such a run measures the ETA and the
    time-bound path, not the preset's quality, and is kept apart from the preset's own rows."""
    return override is not None and override < _preset_minutes(preset, None)


def _cap_suffix(preset: str, override: float | None) -> str:
    return f"|cap{override:g}min" if _capped(preset, override) else ""


def _device_kind(device_text: str | None, requested: str) -> str:
    """ "cuda", "mps" or "cpu" from the pipeline's device description (e.g. "CUDA not available, using CPU")."""
    text = (device_text or requested or "").lower()
    if "not available" in text or "cpu" in text:
        return "cpu"
    if "cuda" in text or "gpu" in text:
        return "cuda"
    if "mps" in text:
        return "mps"
    return "cpu"


def _phase_mm(gt, thickness_mm: float, spacing_mm: float) -> float:
    """Acquisition phase that puts the thick slice centres (and so the output grid) on ground-truth
    slices, so scoring does not resample (which would blur every method alike)."""
    try:
        from sr4zct.demo.evaluation import aligned_phase_mm
    except ImportError:
        return 0.0
    return aligned_phase_mm(thickness_mm, spacing_mm, float(gt.geometry.slice_spacing_mm))


def _strip_bar(line: str) -> str:
    """A tqdm line without its bar: "infer 64/128:  86%|####  | , ETA 0:16" -> "infer 64/128: 86%, ETA 0:16"."""
    return " ".join(re.sub(r"\|[^|]*\|\s*,?", ",", line).split())[:100]


def _case_key(
    prefix: str, *, gt_name: str, crop, slices, t, o, profile, method, preset="", network="", device=""
):
    return "|".join(
        str(v)
        for v in (
            prefix,
            gt_name,
            crop or "full",
            slices or "all",
            f"{t:g}",
            f"{o:g}",
            profile,
            method,
            preset,
            network,
            device,
        )
    )


def _measurement_fields(record: dict) -> dict:
    keys = (
        "wall_s",
        "timed_out",
        "peak_rss_bytes",
        "peak_gpu_bytes",
        "maxrss_children_bytes",
        "timings_s",
        "steps",
        "device",
        "cli",
        "eta_error_max",
        "eta_error_median",
        "eta_error_at",
        "eta_samples",
    )
    out = {k: record.get(k) for k in keys if record.get(k) is not None}
    if record.get("peak_gpu_allocated_bytes"):
        out["peak_gpu_bytes"] = max(out.get("peak_gpu_bytes") or 0, record["peak_gpu_allocated_bytes"])
    if record.get("parameters"):
        out["parameters"] = record["parameters"]
    if record.get("child_warnings"):
        out["warnings"] = record["child_warnings"][:5]
    return out


def run_quality(args, log, workdir: Path, cores: int | None, save) -> list[dict]:
    """Baselines and presets per setting and profile; ``save(rows)`` records rows as they finish."""
    settings = parse_settings(args.settings)
    profiles = _list(args.profiles, ("box", "gaussian"), "--profiles")
    presets = _list(args.presets, ("fast", "balanced", "best"), "--presets")

    cases = _list(args.cases, tuple(CASES), "--cases")
    if (args.crop or args.slices) and cases != ["full"]:
        raise BenchmarkError("--crop and --slices apply to the full case only; use --cases full with them.")
    log(f"reading ground truth {args.ground_truth}")
    whole = load_ground_truth(args.ground_truth)
    rows: list[dict] = []
    for case in cases:
        region = CASES[case]["region"]
        if region is None:
            gt = crop_volume(whole, crop_px=args.crop, n_slices=args.slices)
        else:
            gt = region_volume(whole, region)
        rows += _quality_case(args, log, workdir / case, cores, save, gt, case, settings, profiles, presets)
    return rows


def _quality_case(args, log, workdir, cores, save, gt, case, settings, profiles, presets) -> list[dict]:
    """Baselines and presets on one ground-truth case (:data:`benchmarks.quality.CASES`)."""
    from sr4zct.demo.evaluation import simulate_acquisition
    from sr4zct.io import read_volume

    gt_name = Path(args.ground_truth).name.split(".")[0] + ("" if case == "full" else f":{case}")
    rows: list[dict] = []
    for t, o in settings:
        d = t - o
        for profile in profiles:
            label = f"{t:g}/{o:g} mm {profile}"
            case_dir = workdir / f"T{t:g}_o{o:g}_{profile}"
            case_dir.mkdir(parents=True, exist_ok=True)
            common = {
                "kind": "quality",
                "dataset": gt_name,
                "case": case,
                "case_label": CASES[case]["label"],
                "crop": args.crop,
                "n_slices_gt": args.slices,
                "gt_slices_total": None if args.slices else gt.array.shape[0],
                "gt_shape": list(gt.array.shape),
                "thickness_mm": t,
                "overlap_mm": o,
                "spacing_mm": d,
                "profile": profile,
                "cpu_cores": cores,
                "threads": args.threads or None,
            }
            log(f"{label}: simulating thick slices and writing DICOM")
            phase = _phase_mm(gt, t, d)
            common["phase_mm"] = phase
            thick_mem = simulate_acquisition(gt, t, d, profile=profile, phase_mm=phase)
            dicom_dir = case_dir / "input_dicom"
            write_dicom_input(thick_mem, dicom_dir)
            thick = read_volume(dicom_dir)
            common["input_shape"] = list(thick.array.shape)
            log(f"{label}: input {thick.array.shape} from DICOM; baselines")
            base = baseline_scores(thick, gt, t)
            for method in BASELINES:
                row = {**common, "method": method, "status": "ok", **base[method]}
                add_gains(row, base)
                row["key"] = _case_key(
                    "quality",
                    gt_name=gt_name,
                    crop=args.crop,
                    slices=args.slices,
                    t=t,
                    o=o,
                    profile=profile,
                    method=method,
                )
                rows.append(row)
                save([row])
                log(f"{label}: {method:8s} body-box PSNR {row['psnr_box']:.2f}")
            for preset in presets:
                minutes = _preset_minutes(preset, args.max_minutes)
                out_path = case_dir / f"sr4zct_{preset}{_suffix(args)}"
                log(f"{label}: sr4zct enhance --preset {preset} (budget {minutes:g} min)")
                record, result = run_enhance(
                    dicom_dir,
                    out_path,
                    preset=preset,
                    profile=profile,
                    network="default",
                    device=args.device,
                    seed=args.seed,
                    max_minutes=args.max_minutes,
                    timeout_s=max(60.0, minutes * 60 * args.timeout_factor),
                    log_path=case_dir / f"sr4zct_{preset}.log",
                    threads=args.threads,
                )
                row = {
                    **common,
                    "method": "sr4zct",
                    "preset": preset,
                    "network": "default",
                    "max_minutes": minutes,
                    "capped": _capped(preset, args.max_minutes),
                }
                row.update(_measurement_fields(record))
                row["device_kind"] = _device_kind(record.get("device"), args.device)
                row["status"] = record["status"]
                if result is not None:
                    row.update(score(result, gt, t))
                    row["output_shape"] = list(result.array.shape)
                    row.update(derived_speed(record, result.array.shape))
                    add_gains(row, base)
                    log(
                        f"{label}: sr4zct {preset}: body-box PSNR {row['psnr_box']:.2f} "
                        f"(gain {row['gain_db']:+.2f} dB) in {record['wall_s'] / 60:.1f} min, "
                        f"peak RSS {record['peak_rss_bytes'] / 1e9:.2f} GB"
                    )
                else:
                    log(f"{label}: sr4zct {preset} FAILED: {record['status']}")
                row["key"] = _case_key(
                    "quality", gt_name=gt_name, crop=args.crop, slices=args.slices, t=t, o=o, profile=profile,
                    method="sr4zct", preset=preset, network="default", device=row["device_kind"],
                )  # fmt: skip
                row["key"] += _cap_suffix(preset, args.max_minutes)
                rows.append(row)
                save([row])
                if not args.workdir:
                    _remove_output(out_path)
            if not args.workdir:
                shutil.rmtree(dicom_dir, ignore_errors=True)
    return rows


def _write_nifti(volume, path: Path) -> Path:
    """NIfTI for ECLARE (it reads NIfTI only): the DICOM-read thick volume, z spacing = slice spacing."""
    import numpy as np
    import SimpleITK as sitk

    g = volume.geometry
    image = sitk.GetImageFromArray(np.asarray(volume.array, dtype=np.float32))
    image.SetSpacing((g.pixel_spacing_mm[1], g.pixel_spacing_mm[0], g.slice_spacing_mm))
    image.SetOrigin(tuple(g.origin_lps))
    axes = np.asarray(g.axes_lps, dtype=float)  # rows = array axes (z, y, x); SimpleITK wants columns x, y, z
    image.SetDirection(tuple(np.stack([axes[2], axes[1], axes[0]], axis=1).ravel()))
    sitk.WriteImage(image, str(path))
    return path


def _read_nifti_volume(path: Path, like):
    """Read ECLARE's output (a NIfTI with z as the through-plane axis) as a Volume."""
    from sr4zct.io import read_volume

    return read_volume(path, slice_axis=0)


def run_peers(args, log, workdir: Path, cores: int | None, save) -> list[dict]:
    from sr4zct.demo.evaluation import simulate_acquisition
    from sr4zct.io import read_volume

    t, o, profile, crop = 5.0, 2.5, "box", args.peer_crop
    d = t - o
    budget_min = args.peer_minutes
    gt = load_ground_truth(args.ground_truth, crop_px=crop, n_slices=args.peer_slices)
    case_dir = workdir / "peers"
    case_dir.mkdir(parents=True, exist_ok=True)
    thick_mem = simulate_acquisition(gt, t, d, profile=profile, phase_mm=_phase_mm(gt, t, d))
    dicom_dir = case_dir / "input_dicom"
    write_dicom_input(thick_mem, dicom_dir)
    thick = read_volume(dicom_dir)
    log(f"peers: crop {crop}x{crop}, input {thick.array.shape}, budget {budget_min:g} min each")
    base = baseline_scores(thick, gt, t)
    common = {
        "kind": "peer",
        "crop": crop,
        "n_slices_gt": args.peer_slices,
        "thickness_mm": t,
        "overlap_mm": o,
        "profile": profile,
        "input_shape": list(thick.array.shape),
        "budget_min": budget_min,
        "cpu_cores": cores,
    }
    key_base = f"peer|{crop}|{args.peer_slices or 'all'}|{t:g}/{o:g}|{profile}"
    rows = []
    for order, method in enumerate(BASELINES):
        label = {"linear": "linear interpolation", "bspline": "B-spline", "lanczos": "Lanczos-3"}[method]
        row = {**common, "method": method, "label": label, "order": order, "status": "ok", **base[method]}
        row["wall_s"] = base[method]["wall_s"]
        add_gains(row, base)
        row["key"] = f"{key_base}|{method}"
        rows.append(row)
    save(rows)

    methods = {m.strip() for m in args.peer_methods.split(",") if m.strip()}
    unknown = methods - {"default", "msd", "eclare"}
    if unknown:
        raise SystemExit(f"--peer-methods: unknown {', '.join(sorted(unknown))} (use default, msd, eclare)")
    train_s_default = None
    for order, network in ((3, "default"), (4, "msd")):
        if network not in methods:
            continue
        out_path = case_dir / f"sr4zct_{network}{_suffix(args)}"
        log(f"peers: sr4zct --network {network} --preset {args.peer_preset} --max-minutes {budget_min:g}")
        record, result = run_enhance(
            dicom_dir,
            out_path,
            preset=args.peer_preset,
            profile=profile,
            network=network,
            device=args.device,
            seed=args.seed,
            max_minutes=budget_min,
            timeout_s=max(60.0, budget_min * 60 * args.peer_timeout_factor),
            log_path=case_dir / f"sr4zct_{network}.log",
            threads=args.threads,
        )
        label = "SR4ZCT default network" if network == "default" else "SR4ZCT with the paper's MS-D network"
        row = {**common, "method": f"sr4zct-{network}", "label": label, "order": order}
        row.update(_measurement_fields(record))
        row["status"] = record["status"]
        if record.get("timed_out"):
            lines = [ln.strip() for ln in record["output_tail"].splitlines() if ln.strip()]
            row["status"] = (
                f"no result within {record['wall_s'] / 60:.1f} min ({args.peer_timeout_factor:g}x the budget), "
                f"killed; last progress: {_strip_bar(lines[-1]) if lines else '-'}"
            )
        if result is not None:
            row.update(score(result, gt, t))
            add_gains(row, base)
            steps = record.get("steps")
            row["note"] = f"`--preset {args.peer_preset} --max-minutes {budget_min:g}`" + (
                f", {steps} steps" if steps else ""
            )
            log(
                f"peers: {network}: {row['psnr_box']:.2f} dB ({row['gain_db']:+.2f}) in {record['wall_s'] / 60:.1f} min"
            )
            if network == "default":
                train_s_default = (record.get("timings_s") or {}).get("train")
        else:
            log(f"peers: {network} FAILED: {record['status']}")
        row["key"] = f"{key_base}|sr4zct-{network}"
        rows.append(row)
        save([row])

    if "eclare" in methods:
        rows.append(_run_eclare_peer(args, log, case_dir, thick, gt, base, common, key_base, train_s_default))
        save(rows[-1:])
    if not args.workdir:
        shutil.rmtree(case_dir, ignore_errors=True)
    return rows


def _run_eclare_peer(args, log, case_dir, thick, gt, base, common, key_base, train_s_default) -> dict:
    from .peers import PeerUnavailable, eclare_progress, ensure_eclare, run_eclare

    row = {
        **common,
        "method": "eclare",
        "label": "ECLARE 1.0.1 (separate venv)",
        "order": 5,
        "key": f"{key_base}|eclare",
    }
    if args.no_eclare:
        row["status"] = "skipped (--no-eclare)"
        return row
    budget_s = args.peer_minutes * 60
    try:
        log("peers: preparing ECLARE's virtual environment (benchmarks/.venv-eclare)")
        exe = ensure_eclare()
    except PeerUnavailable as exc:
        row["status"] = f"cannot run: {exc}"
        log(f"peers: ECLARE unavailable: {exc}")
        return row
    pixel = float(thick.geometry.pixel_spacing_mm[0])
    rel_thickness = float(thick.geometry.slice_thickness_mm) / pixel
    train_s = train_s_default or 0.8 * budget_s
    n_patches = args.eclare_patches or max(256, int(round(train_s * ECLARE_PATCHES_PER_S / 32)) * 32)
    nifti = _write_nifti(thick, case_dir / "thick.nii.gz")
    timeout = max(60.0, budget_s * args.peer_timeout_factor)
    if args.eclare_timeout_minutes is not None:
        timeout = args.eclare_timeout_minutes * 60.0
    log(
        f"peers: run-eclare --relative-slice-thickness {rel_thickness:g} --n-patches {n_patches} "
        f"(killed after {timeout / 60:.1f} min)"
    )
    record, out = run_eclare(
        exe,
        nifti,
        case_dir / "eclare_out",
        relative_thickness_px=rel_thickness,
        n_patches=n_patches,
        timeout_s=timeout,
        log_path=case_dir / "eclare.log",
    )
    row.update(_measurement_fields(record))
    row["n_patches"] = n_patches
    why = (
        "set by --eclare-patches"
        if args.eclare_patches
        else f"the default network's training time x {ECLARE_PATCHES_PER_S:g} patches/s"
    )
    row["note"] = (
        f"{n_patches} training patches ({why}; "
        f"ECLARE has no time option), `--relative-slice-thickness {rel_thickness:g} --relative-slice-profile-type rect "
        "--batch-size 32`"
    )
    if out is None:
        where = eclare_progress(record.get("output", ""), n_patches)
        if record["timed_out"]:
            row["status"] = (
                f"no result within {timeout / 60:.1f} min ({timeout / budget_s:.3g}x the budget), killed"
                + (f"; it was at {where}" if where else "")
            )
        else:
            last = [ln for ln in record["output_tail"].splitlines() if ln.strip()][-1:] or [""]
            row["status"] = f"failed (exit {record['returncode']}): {last[0][:200]}"
        log(f"peers: ECLARE: {row['status']}")
        return row
    result = _read_nifti_volume(out, thick)
    row.update(score(result, gt, common["thickness_mm"]))
    add_gains(row, base)
    row["status"] = "ok"
    log(f"peers: ECLARE {row['psnr_box']:.2f} dB ({row['gain_db']:+.2f}) in {record['wall_s'] / 60:.1f} min")
    return row


def run_l291(args, log, workdir: Path) -> list[dict]:
    preset = args.l291
    if not L291_DIR.is_dir():
        return [
            {
                "kind": "l291",
                "key": f"l291|{preset}|{args.device}",
                "preset": preset,
                "status": f"{L291_DIR} not found",
            }
        ]
    out_path = workdir / f"l291_{preset}{_suffix(args)}"
    minutes = _preset_minutes(preset, args.max_minutes)
    log(f"L291: sr4zct enhance --preset {preset} (budget {minutes:g} min)")
    record, result = run_enhance(
        L291_DIR,
        out_path,
        preset=preset,
        device=args.device,
        seed=args.seed,
        max_minutes=args.max_minutes,
        timeout_s=max(120.0, minutes * 60 * args.timeout_factor),
        log_path=workdir / f"l291_{preset}.log",
        threads=args.threads,
    )
    row = {"kind": "l291", "preset": preset, "status": record["status"], **_measurement_fields(record)}
    row.update(max_minutes=minutes, capped=_capped(preset, args.max_minutes))
    from .gpu_data import series_note

    note = series_note(L291_DIR)
    if note:
        row["note"] = note
    row["device_kind"] = _device_kind(record.get("device"), args.device)
    if result is not None:
        row["output_shape"] = list(result.array.shape)
    row["key"] = f"l291|{preset}|{row['device_kind']}" + _cap_suffix(preset, args.max_minutes)
    log(
        f"L291: {record['status']}, {record['wall_s'] / 60:.1f} min, peak RSS {record['peak_rss_bytes'] / 1e9:.2f} GB"
    )
    _remove_output(out_path)
    return [row]


def run_speed(args, log) -> list[dict]:
    from .speed import acquisition_row, network_rows

    log("speed: acquisition model vs naive oracle")
    rows = [acquisition_row(quick=args.smoke)]
    log(f"speed: acquisition {rows[0].get('status')} speed-up {rows[0].get('speedup')}")
    log("speed: network micro-benchmarks")
    nets = network_rows(
        seconds=2.0 if args.smoke else 10.0, infer_shape=(48, 96) if args.smoke else (240, 512)
    )
    for r in nets:
        log(f"speed: {r['network']} on {r['device']}: {r.get('train_steps_per_s')} steps/s")
    return rows + nets


def run_threads(args, log) -> list[dict]:
    from .threads import parse_variant, thread_rows

    try:
        variants = [parse_variant(v) for v in args.thread_variants.split(",") if v.strip()]
        competitors = [int(v) for v in args.thread_competitors.split(",") if v.strip()]
    except ValueError as exc:
        raise BenchmarkError(f"--thread-variants / --thread-competitors: {exc}") from None
    if not variants or not competitors or min(competitors) < 0 or args.thread_repeats < 1:
        raise BenchmarkError(
            "--thread-variants, --thread-competitors (>= 0) and --thread-repeats (>= 1) are needed."
        )
    if not Path(args.ground_truth).exists():
        raise BenchmarkError(f"Ground truth {args.ground_truth} not found (pass --ground-truth PATH).")
    return thread_rows(
        args.ground_truth,
        competitors=competitors,
        variants=variants,
        repeats=args.thread_repeats,
        seconds=args.thread_seconds,
        log=log,
    )


def run_levers(args, log, save) -> list[dict]:
    from .levers import VARIANTS, lever_rows

    variants = _list(args.levers, tuple(VARIANTS), "--levers")
    cases = _list(args.lever_cases, tuple(CASES), "--lever-cases")
    try:
        seeds = [int(v) for v in args.lever_seeds.split(",") if v.strip()]
    except ValueError:
        raise BenchmarkError(f"--lever-seeds {args.lever_seeds!r} is not a list of integers.") from None
    if not variants or not cases or not seeds or args.lever_steps < 1:
        raise BenchmarkError("--levers, --lever-cases, --lever-seeds and --lever-steps >= 1 are needed.")
    return lever_rows(
        args.ground_truth,
        cases=cases,
        variants=variants,
        steps=args.lever_steps,
        seeds=seeds,
        log=log,
        save=save,
    )


def run_infer_profile(args, log) -> list[dict]:
    from .inference_profile import profile_rows

    if args.infer_profile not in ("fast", "balanced", "best"):
        raise BenchmarkError(
            f"--infer-profile: unknown preset {args.infer_profile!r} (fast, balanced, best)."
        )
    if not L291_DIR.is_dir():
        return [
            {
                "kind": "inference_profile",
                "key": "inference_profile|L291|missing",
                "status": f"{L291_DIR} not found",
            }
        ]
    if args.infer_repeats < 1:
        raise BenchmarkError("--infer-repeats must be >= 1.")
    return profile_rows(
        L291_DIR,
        args.infer_profile,
        repeats=args.infer_repeats,
        model_path=args.infer_model,
        threads=args.threads or None,
        log=log,
    )


def apply_smoke(args) -> None:
    args.crop = args.crop or SMOKE["crop"]
    args.slices = args.slices or SMOKE["slices"]
    if args.settings == "all":
        args.settings = SMOKE["settings"]
    if args.profiles == "box,gaussian":
        args.profiles = SMOKE["profiles"]
    if args.presets == "fast,balanced,best":
        args.presets = SMOKE["presets"]
    if args.max_minutes is None:
        args.max_minutes = SMOKE["max_minutes"]
    args.peers = False


class _Recorder:
    """Merge rows into the results file and regenerate the report as soon as they are measured, so an
    interrupted run keeps what it finished."""

    def __init__(self, args, run: dict):
        self.args = args
        self.run = run
        self.rows: list[dict] = []

    def __call__(self, rows: list[dict]) -> None:
        rows = list(rows)
        self.rows += rows
        results = report.merge_results(report.load_results(self.args.results), self.run, rows)
        report.save_results(results, self.args.results)
        report.write_report(self.args.output, results, latest_run=self.run)


def merge_files(args, log) -> int:
    """``--merge``: add other results files' runs and rows to ``args.results`` and regenerate the report."""
    results = report.load_results(args.results)
    for path in args.merge:
        try:
            if not Path(path).is_file():
                raise OSError("no such file")
            other = report.load_results(path)
        except (OSError, ValueError) as exc:
            print(f"benchmarks: error: cannot merge {path}: {exc}", file=sys.stderr)
            return 2
        results = report.merge_other(results, other)
        log(f"merged {path}: {len(other['runs'])} runs, {len(other['rows'])} rows")
    report.save_results(results, args.results)
    report.write_report(args.output, results)
    log(f"wrote {args.output} and {args.results}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    log = _Log(args.quiet)
    tmp_root = None
    if args.smoke:
        apply_smoke(args)
    if args.output is None or args.results is None:
        if args.smoke and args.output is None:
            tmp_root = Path(tempfile.mkdtemp(prefix="sr4zct-bench-smoke-"))
        args.output = args.output or (tmp_root / "BENCHMARKS.md" if args.smoke else DEFAULT_OUTPUT)
        args.results = args.results or (
            (args.output.parent / "results.json") if args.smoke else DEFAULT_RESULTS
        )
    command = "python -m benchmarks.run" + ("" if not argv else " " + shlex.join(argv))
    if args.merge:
        return merge_files(args, log)
    try:
        info = machine_info()
        cores = info.get("cores_logical")
        run = {
            "id": uuid.uuid4().hex[:12],
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command,
            "machine": info,
        }
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sr4zct-bench-"))
        workdir.mkdir(parents=True, exist_ok=True)
        record = _Recorder(args, run)
        try:
            if args.settings.strip().lower() != "none":
                run_quality(args, log, workdir, cores, save=record)
            if args.peers:
                run_peers(args, log, workdir, cores, save=record)
            if args.l291:
                record(run_l291(args, log, workdir))
            if args.speed:
                record(run_speed(args, log))
            if args.threads_rule:
                record(run_threads(args, log))
            if args.infer_profile:
                record(run_infer_profile(args, log))
            if args.levers:
                run_levers(args, log, save=record)
        finally:
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
        rows = record.rows
        if not rows:
            record([])
    except BenchmarkError as exc:
        print(f"benchmarks: error: {exc}", file=sys.stderr)
        return 2
    log(f"wrote {args.output} and {args.results}")
    failed = [r for r in rows if r.get("status") != "ok"]
    for r in failed:
        log(f"not ok: {r.get('key')}: {r.get('status')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
