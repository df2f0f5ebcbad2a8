"""Quality beyond the method's own model: ``python -m benchmarks.acquisitions``.

Ground-truth cases of vhm-head (the regions of :data:`benchmarks.quality.CASES`, and the skull region
re-stacked along its rows or columns: other anatomy along the slice axis) are acquired with box and Gaussian
slice profiles, without and with noise (8 HU, independent per thick slice or integrated by the profile so
that overlapping slices share it, as in a real reconstruction). Two parts:

* ``estimate``: the slice profile :func:`sr4zct.method.profile.estimate_profile` finds, against the truth,
  and the noise :func:`sr4zct.method.noise.estimate_noise` measures; also the real L291 series (no truth:
  its estimate is reported). Seconds per case.
* ``quality``: linear interpolation and :func:`sr4zct.enhance` at a fixed number of training steps (the
  ``fast`` network; step-bound, so the figures do not depend on the machine's load) with the options of
  before (``profile box, noise off``), the defaults (``auto``) and the right profile; body-box PSNR gain
  over linear interpolation and the mean coronal/sagittal SSIM (``sr4zct.demo.evaluation.score``).
* ``time``: what the estimates cost: ``sr4zct enhance`` of the real L291 series with ``--preset fast``, the
  defaults against the options of before, alternated run by run (``--repeats`` times); wall, training and
  inference seconds and training steps (target: the defaults within 10 % of before's wall time).

Rows go to ``benchmarks/acquisitions.json`` (a newer row of the same case replaces the older one) and the
report to BENCHMARKS.md between ``<!-- acquisitions:begin -->`` and ``<!-- acquisitions:end -->``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.quality import CASES, DATA_DIR, REPO_ROOT, VHM_HEAD, load_ground_truth, region_volume
from benchmarks.sections import write_section

RESULTS = REPO_ROOT / "benchmarks" / "acquisitions.json"
L291_DIR = DATA_DIR / "L291_3mm_overlap1mm"
SECTION = "acquisitions"
#: the skull region stacked along another axis: anatomy whose slice axis is the head's front-back or
#: left-right direction (``axis`` is the ground truth's array axis that becomes the slice axis)
RESTACKED = {"skull-rows": ("skull", 1), "skull-columns": ("skull", 2)}
ESTIMATE_CASES = "neck,skull,neck-soft,skull-bone,skull-rows,skull-columns"
SETTINGS = "2/1,3/1,5/2.5,5/0,6/3"
NOISES = {"clean": (0.0, "independent"), "8HU": (8.0, "independent"), "8HU-integrated": (8.0, "integrated")}
#: quality variants: the options of :func:`sr4zct.enhance` (``right`` takes the true profile, noise off)
VARIANTS = {
    "before": {"profile": "box", "noise": "off"},
    "default": {},
    "right": {"noise": "off"},
    "scan-mode": {},  # the defaults on a series whose header states its scan mode (the truth's: see SCAN_MODE_OF)
}
#: the scan mode a simulated acquisition of each profile stands for (sr4zct.volume.scan_mode.SCAN_MODES)
SCAN_MODE_OF = {"box": "sequential", "gaussian": "helical"}
TOLERANCE = 0.15
#: the time part's variants: extra ``sr4zct enhance`` options (profile first)
TIME_VARIANTS = {"before": ("box", ("--noise", "off")), "default": ("auto", ())}
TIME_TARGET = 1.10


def ground_truth(whole, case: str):
    """The ground-truth volume of ``case`` (a region of :data:`CASES` or of :data:`RESTACKED`)."""
    from sr4zct.volume import Volume, make_geometry

    if case in CASES:
        region = CASES[case]["region"]
        return whole if region is None else region_volume(whole, region)
    base, axis = RESTACKED[case]
    array = np.ascontiguousarray(np.moveaxis(ground_truth(whole, base).array, axis, 0))
    geometry = make_geometry(
        array.shape, slice_spacing_mm=1.0, pixel_spacing_mm=(1.0, 1.0), slice_thickness_mm=1.0
    )
    return Volume(array, geometry)


def acquire(gt, thickness: float, overlap: float, profile: str, noise: str, seed: int = 0):
    """The thick-slice acquisition of ``gt`` (phase aligned with the ground truth's slices)."""
    from sr4zct.demo.evaluation import aligned_phase_mm, simulate_acquisition

    spacing = thickness - overlap
    sigma, model = NOISES[noise]
    phase = aligned_phase_mm(thickness, spacing, float(gt.geometry.slice_spacing_mm))
    return simulate_acquisition(
        gt, thickness, spacing, profile, phase, noise_sigma_hu=sigma, noise_model=model, seed=seed
    )


def detail_ratio(gt) -> float:
    """How much detail the ground truth has along z against in-plane, at the scales thick slices blur
    (about 0.15-0.3 cycles/mm): the energy of lag-2 second differences of the [1, 2, 1]-smoothed volume
    along z over that along the rows and columns, inside the body. About 1 for a ground truth as sharp along
    z as in-plane; below 1 where it is itself blurred along z (or its anatomy is smooth along z), which an
    estimate then reads as a wider or more Gaussian profile."""
    a = np.asarray(gt.array, dtype=np.float32)
    for axis in range(3):  # [1, 2, 1] / 4 along every axis (edges repeated)
        pad = np.concatenate([np.take(a, [0], axis), a, np.take(a, [-1], axis)], axis=axis)
        n = a.shape[axis]
        a = 0.25 * (
            np.take(pad, range(n), axis)
            + 2 * np.take(pad, range(1, n + 1), axis)
            + np.take(pad, range(2, n + 2), axis)
        )
    energies = []
    for axis in range(3):
        lo, mid, hi = (np.take(a, range(k, a.shape[axis] - 4 + k), axis=axis) for k in (0, 2, 4))
        body = (lo > -500) & (mid > -500) & (hi > -500)
        energies.append(float(np.mean(((lo - 2 * mid + hi)[body]) ** 2)) if body.any() else float("nan"))
    return energies[0] / (0.5 * (energies[1] + energies[2]))


def parse_settings(text: str) -> list[tuple[float, float]]:
    """``"5/2.5,3/1"`` -> ``[(5.0, 2.5), (3.0, 1.0)]`` (thickness / overlap in mm)."""
    out = []
    for item in text.split(","):
        if item.strip():
            t, o = (float(v) for v in item.split("/"))
            out.append((t, o))
    return out


# --------------------------------------------------------------------------------------------------
# estimate


def estimate_row(
    gt, case: str, thickness: float, overlap: float, profile: str, noise: str, detail=None
) -> dict:
    """Estimate the profile and noise of one simulated acquisition; the row says how close it came."""
    from sr4zct.method.noise import estimate_noise
    from sr4zct.method.profile import estimate_volume_profile

    thick = acquire(gt, thickness, overlap, profile, noise)
    t0 = time.perf_counter()
    found = estimate_volume_profile(thick)
    seconds = time.perf_counter() - t0
    noise_found = estimate_noise(thick.array)
    error = found.fwhm_mm / thickness - 1.0
    row = {
        "kind": "estimate", "case": case, "thickness_mm": thickness, "overlap_mm": overlap, "profile": profile,
        "noise": noise, "family": found.family, "fwhm_mm": found.fwhm_mm, "range_mm": list(found.fwhm_range_mm),
        "family_margin": min(found.family_margin, 1e6), "error": error, "seconds": seconds,
        "ok": bool(found.family == profile and abs(error) <= TOLERANCE),
        "noise_sigma_hu": noise_found.sigma_hu, "noise_correlation": noise_found.correlation,
        "detail_ratio": detail,
    }  # fmt: skip
    row["key"] = f"estimate|{case}|{thickness:g}/{overlap:g}|{profile}|{noise}"
    return row


def l291_row() -> dict:
    """The estimate on the real L291 series (nominal 3 mm every 2 mm, Siemens helical; no ground truth)."""
    from sr4zct.io import read_volume
    from sr4zct.method.acquisition import PROFILES, neighbour_noise_correlation
    from sr4zct.method.noise import estimate_noise
    from sr4zct.method.profile import estimate_volume_profile

    row = {"kind": "estimate-real", "key": "estimate-real|L291", "case": "L291"}
    if not L291_DIR.is_dir():
        return {**row, "status": f"{L291_DIR} not found"}
    volume = read_volume(L291_DIR)
    t0 = time.perf_counter()
    found = estimate_volume_profile(volume)
    row["seconds"] = time.perf_counter() - t0
    noise = estimate_noise(volume.array)
    g = volume.geometry
    return {
        **row, "status": "ok", "nominal_mm": found.nominal_mm, "spacing_mm": g.slice_spacing_mm,
        "family": found.family, "fwhm_mm": found.fwhm_mm, "range_mm": list(found.fwhm_range_mm),
        "family_margin": min(found.family_margin, 1e6), "misfit": found.misfit,
        "family_source": found.family_source, "scan_mode": g.scan_mode, "scan_mode_source": g.scan_mode_source,
        "noise_sigma_hu": noise.sigma_hu, "noise_correlation": noise.correlation,
        "predicted_correlation": {
            family: neighbour_noise_correlation(family, found.nominal_mm, g.slice_spacing_mm) for family in PROFILES
        },
    }  # fmt: skip


def run_estimates(whole, args, save) -> None:
    for case in _names(args.cases):
        gt = ground_truth(whole, case)
        detail = detail_ratio(gt)
        for thickness, overlap in parse_settings(args.settings):
            for profile in ("box", "gaussian"):
                for noise in _names(args.noises):
                    row = estimate_row(gt, case, thickness, overlap, profile, noise, detail)
                    save([row])
                    print(
                        f"estimate {case} {thickness:g}/{overlap:g} {profile} {noise}: {row['family']} "
                        f"{row['fwhm_mm']:.2f} mm ({'ok' if row['ok'] else 'off'}) in {row['seconds']:.1f} s",
                        flush=True,
                    )
    if args.l291:
        save([l291_row()])


# --------------------------------------------------------------------------------------------------
# quality


def _preset(steps: int):
    from sr4zct.run.presets import get_preset

    fast = get_preset("fast")
    return fast.replace(name=f"fast-{steps}-steps", steps=steps, max_minutes=600.0)


def _scores(result_volume, gt, thickness: float) -> dict:
    from sr4zct.demo.evaluation import score

    s = score(result_volume, gt, thickness)
    return {"psnr_db": s["psnr_db"], "ssim": 0.5 * (s["coronal_ssim"] + s["sagittal_ssim"])}


def quality_rows(
    gt, case, thickness, overlap, profile, noise, steps, seed=0, variants=tuple(VARIANTS)
) -> list[dict]:
    """Linear interpolation and the ``variants`` on one acquisition (``right`` only where it differs)."""
    from sr4zct.demo.evaluation import interpolate_baseline
    from sr4zct.run.pipeline import enhance

    thick = acquire(gt, thickness, overlap, profile, noise, seed=seed)
    common = {"kind": "acq-quality", "case": case, "thickness_mm": thickness, "overlap_mm": overlap,
              "profile": profile, "noise": noise, "steps": steps, "seed": seed}  # fmt: skip
    base = f"acq-quality|{case}|{thickness:g}/{overlap:g}|{profile}|{noise}|{steps}|{seed}"
    linear = _scores(interpolate_baseline(thick), gt, thickness)
    rows = [{**common, "variant": "linear", **linear, "key": f"{base}|linear"}]
    for name, options in VARIANTS.items():
        if name not in variants or (name == "right" and profile == "box"):
            continue  # the right profile is box: the same run as before's
        options = {"profile": profile, **options} if name == "right" else options
        options = {"scan_mode": SCAN_MODE_OF[profile]} if name == "scan-mode" else options
        t0 = time.perf_counter()
        result = enhance(thick, preset=_preset(steps), seed=seed, output_dtype="float32", **options)
        row = {**common, "variant": name, **_scores(result.volume, gt, thickness), "key": f"{base}|{name}"}
        row.update(
            gain_db=row["psnr_db"] - linear["psnr_db"], linear_psnr_db=linear["psnr_db"], linear_ssim=linear["ssim"],
            seconds=time.perf_counter() - t0, parameters=dict(result.parameters),
        )  # fmt: skip
        rows.append(row)
    return rows


def run_quality(whole, args, save) -> None:
    for case in _names(args.quality_cases):
        gt = ground_truth(whole, case)
        for thickness, overlap in parse_settings(args.quality_settings):
            for profile in ("box", "gaussian"):
                for noise in _names(args.quality_noises):
                    rows = quality_rows(
                        gt,
                        case,
                        thickness,
                        overlap,
                        profile,
                        noise,
                        args.steps,
                        variants=_names(args.quality_variants),
                    )
                    save(rows)
                    gains = ", ".join(f"{r['variant']} {r.get('gain_db', 0):+.2f} dB" for r in rows[1:])
                    print(f"quality {case} {thickness:g}/{overlap:g} {profile} {noise}: {gains}", flush=True)


# --------------------------------------------------------------------------------------------------
# results and report


def run_time(args, save) -> None:
    """``sr4zct enhance`` of L291 with ``fast``: the defaults and before's options, alternated."""
    import tempfile

    from benchmarks.quality import run_enhance

    with tempfile.TemporaryDirectory(prefix="sr4zct-acq-time-") as tmp:
        for repeat in range(args.repeats):
            for variant, (profile, extra) in TIME_VARIANTS.items():
                out = Path(tmp) / f"{variant}.nrrd"
                record, _ = run_enhance(
                    L291_DIR, out, preset="fast", profile=profile, device="cpu", extra=extra, timeout_s=1800
                )
                t = record.get("timings_s") or {}
                row = {
                    "kind": "acq-time", "key": f"acq-time|{repeat}|{variant}", "repeat": repeat,
                    "variant": variant, "status": record.get("status"), "wall_s": record.get("wall_s"),
                    "prepare_s": t.get("prepare"), "train_s": t.get("train"), "infer_s": t.get("infer"),
                    "steps": record.get("steps"),
                    "profile_used": (record.get("parameters") or {}).get("profile"),
                }  # fmt: skip
                print(f"time: repeat {repeat} {variant}: {row}", flush=True)
                save([row])
                out.unlink(missing_ok=True)


def _median_of(rows: list[dict], variant: str, field: str) -> float | None:
    values = [r[field] for r in rows if r["variant"] == variant and r.get(field) is not None]
    return float(np.median(values)) if values else None


def time_table(rows: list[dict]) -> list[str]:
    """Median seconds and steps of each variant, and the defaults' wall time against before's."""
    fields = (("wall_s", "wall s"), ("prepare_s", "prepare s"), ("train_s", "training s"),
              ("infer_s", "inference s"), ("steps", "training steps"))  # fmt: skip
    out = ["| measure (median) | before (box, no noise model) | default (auto) |", "|---|---|---|"]
    for field, name in fields:
        cells = [_median_of(rows, v, field) for v in ("before", "default")]
        out.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.1f}" for c in cells) + " |")
    before, default = _median_of(rows, "before", "wall_s"), _median_of(rows, "default", "wall_s")
    if before and default:
        ratio = default / before
        met = "met" if ratio <= TIME_TARGET else "**not met**"
        out += ["", f"Defaults' wall time / before's: {ratio:.3f} (target at most {TIME_TARGET:.2f}: {met}); "
                f"{len(rows)} runs, alternated."]  # fmt: skip
    return out


def load_rows(path: Path = RESULTS) -> dict:
    if not path.exists():
        return {"runs": [], "rows": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def save_rows(results: dict, path: Path = RESULTS) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip() and v.strip().lower() != "none"]


def _mark(row: dict) -> str:
    family = "B" if row["family"] == "box" else "G"
    return f"{family} {row['fwhm_mm']:.2f}" + ("" if row["ok"] else " ✗")


def estimate_table(rows: list[dict]) -> list[str]:
    """One line per case and setting; per truth and noise the estimate (B box, G Gaussian; ✗: off)."""
    noises = [n for n in NOISES if any(r["noise"] == n for r in rows)]
    head = [f"{p} truth, {n}" for p in ("box", "Gaussian") for n in noises]
    lines = [
        "| case (z detail) | T / overlap (mm) | " + " | ".join(head) + " |",
        "|---|---|" + "---|" * len(head),
    ]
    index = {(r["case"], r["thickness_mm"], r["overlap_mm"], r["profile"], r["noise"]): r for r in rows}
    for case, t, o in sorted({(r["case"], r["thickness_mm"], r["overlap_mm"]) for r in rows}):
        cells = [index.get((case, t, o, p, n)) for p in ("box", "gaussian") for n in noises]
        detail = next((c.get("detail_ratio") for c in cells if c and c.get("detail_ratio") is not None), None)
        name = case if detail is None else f"{case} ({detail:.2f})"
        lines.append(f"| {name} | {t:g} / {o:g} | " + " | ".join(_mark(c) if c else "" for c in cells) + " |")
    return lines


def estimate_summary(rows: list[dict]) -> list[str]:
    lines = [
        "| cases | family right | FWHM within 15 % | both | median abs. FWHM error | worst |",
        "|---|---|---|---|---|---|",
    ]
    groups = {"all": rows, **{f"T/o {t:g}/{o:g}": [r for r in rows if (r["thickness_mm"], r["overlap_mm"]) == (t, o)]
                              for t, o in sorted({(r["thickness_mm"], r["overlap_mm"]) for r in rows})}}  # fmt: skip
    for name, group in groups.items():
        n = len(group)
        family = sum(r["family"] == r["profile"] for r in group)
        width = sum(abs(r["error"]) <= TOLERANCE for r in group)
        errors = np.abs([r["error"] for r in group])
        lines.append(
            f"| {name} ({n}) | {family} | {width} | {sum(r['ok'] for r in group)} | {100 * np.median(errors):.1f} % "
            f"| {100 * errors.max():.0f} % |"
        )
    return lines


def real_lines(row: dict | None) -> list[str]:
    if row is None:
        return []
    if row.get("status") != "ok":
        return [f"L291: {row.get('status')}"]
    lo, hi = row["range_mm"]
    margin = row["family_margin"]
    if row.get("family_source", "images") != "images":
        agree = "agree" if margin >= 1 else "disagree"
        family = (
            f"the scan mode fixes the family: {row['scan_mode']} (DICOM {row['scan_mode_source']}); the images "
            f"alone {agree} (the other family fits {max(margin, 1 / margin):.1f} x "
            f"{'worse' if margin >= 1 else 'better'})"
        )
    else:
        family = f"from the images; the other family fits {margin:.1f} x worse"
    predicted = row.get("predicted_correlation") or {}
    check = (
        f" (noise white along z before slicing would give {predicted['gaussian']:.2f} with a Gaussian of FWHM "
        f"{row['nominal_mm']:g} mm, {predicted['box']:.2f} with a box: an independent sign of the family)"
        if predicted else ""
    )  # fmt: skip
    return [
        f"**L291** (real, Siemens helical, nominal {row['nominal_mm']:g} mm every {row['spacing_mm']:g} mm): "
        f"**{row['family']}, FWHM {row['fwhm_mm']:.2f} mm** (range {lo:.2f}-{hi:.2f} mm over blocks of slices; "
        f"{family}), estimated in {row['seconds']:.1f} s; slice noise {row['noise_sigma_hu']:.1f} HU, "
        f"neighbouring slices correlated {row['noise_correlation']:.2f}{check}."
    ]


def _cell(row: dict | None, *, profile: bool = False) -> str:
    """``gain, SSIM`` (and, for the default, the profile ``auto`` chose: B box, G Gaussian)."""
    if row is None:
        return ""
    chosen = (row.get("parameters") or {}).get("profile", "")
    tag = f" ({chosen[:1].upper()})" if profile and chosen else ""
    return f"{row['gain_db']:+.2f} dB, {row['ssim']:.3f}{tag}"


def quality_table(rows: list[dict]) -> list[str]:
    lines = [
        "| case | acquisition | noise | linear PSNR, SSIM | before (box, no noise model) | default (auto) | right profile "
        "| default, scan mode in the header |",
        "|---|---|---|---|---|---|---|---|",
    ]
    index = {
        (r["case"], r["thickness_mm"], r["overlap_mm"], r["profile"], r["noise"], r["variant"]): r
        for r in rows
    }
    for key in sorted({k[:5] for k in index}):
        linear = index[(*key, "linear")]
        before, default = index.get((*key, "before")), index.get((*key, "default"))
        right = before if key[3] == "box" else index.get((*key, "right"))
        known = index.get((*key, "scan-mode"))
        lines.append(
            f"| {key[0]} | {key[1]:g} / {key[2]:g} mm {key[3]} | {key[4]} | {linear['psnr_db']:.2f} dB, "
            f"{linear['ssim']:.3f} | {_cell(before)} | {_cell(default, profile=True)} | {_cell(right)} "
            f"| {_cell(known, profile=True)} |"
        )
    return lines


#: the issue's targets, as :func:`_targets` returns them
TARGETS = ("gaussian: within 1 dB of the right profile", "box: >= before - 0.2 dB", "noisy: SSIM > linear's",
           "noisy: gain >= before's")  # fmt: skip
#: the variants the targets are counted for, and how the table names them
CHECKED = {"default": "default", "scan-mode": "scan mode in the header"}


def quality_checks(rows: list[dict]) -> list[str]:
    """The issue's targets per acquisition for the defaults (and with the scan mode in the header), and their
    minimum and median gain."""
    index = {
        (r["case"], r["thickness_mm"], r["overlap_mm"], r["profile"], r["noise"], r["variant"]): r
        for r in rows
    }
    met: dict[tuple[str, str], list[bool]] = {(v, t): [] for v in CHECKED for t in TARGETS}
    for key in sorted({k[:5] for k in index}):
        before, right = index.get((*key, "before")), index.get((*key, "right"))
        for variant in CHECKED:
            row = index.get((*key, variant))
            if row is None or before is None:
                continue
            for target, ok in zip(TARGETS, _targets(key, row, before, right), strict=True):
                if ok is not None:
                    met[(variant, target)].append(ok)
    lines = ["| target | met |", "|---|---|"]
    lines += [f"| {CHECKED[v]}: {t} | {sum(ok)} of {len(ok)} |" for (v, t), ok in met.items() if ok]
    for variant, name in CHECKED.items():
        gains = [r["gain_db"] for r in rows if r["variant"] == variant]
        if gains:
            lines.append(f"| {name}: gain over linear, minimum and median | {min(gains):+.2f} dB, "
                         f"{np.median(gains):+.2f} dB |")  # fmt: skip
    return lines


def _targets(key: tuple, row: dict, before: dict, right: dict | None) -> tuple[bool | None, ...]:
    """The four targets of one variant's ``row`` (None where one does not apply to the acquisition)."""
    profile, noise = key[3], key[4]
    return (
        row["gain_db"] >= right["gain_db"] - 1.0 if profile == "gaussian" and right is not None else None,
        row["gain_db"] >= before["gain_db"] - 0.2 if profile == "box" else None,
        row["ssim"] > row["linear_ssim"] if noise != "clean" else None,
        row["gain_db"] >= before["gain_db"] if noise != "clean" else None,
    )


def report(results: dict) -> str:
    rows = list(results["rows"].values())
    estimates = [r for r in rows if r["kind"] == "estimate"]
    quality = [r for r in rows if r["kind"] == "acq-quality"]
    real = next((r for r in rows if r["kind"] == "estimate-real"), None)
    runs = "; ".join(f"`{r['command']}` ({r['date']})" for r in results["runs"][-4:])
    parts = [
        "## Real acquisitions: the slice profile estimated from the scan, noise",
        "",
        f"Runs: {runs}.",
        "",
    ]
    if estimates or real:
        parts += ["### The slice profile estimated from the scan, against the truth", ""]
        parts += real_lines(real) + [""]
        if estimates:
            parts += estimate_summary(estimates) + [""]
            parts += [
                "Estimates (B box, G Gaussian, FWHM in mm; ✗: family wrong or FWHM off by more than 15 %). The "
                "number after the case is the ground truth's own detail along z against in-plane at 0.15-0.3 "
                "cycles/mm (1 = as much along z as in-plane, `detail_ratio`): the estimate measures the blur of the "
                "thick slices relative to the in-plane images, so a ground truth that is itself smoother along z "
                "(the neck of vhm-head) reads as a wider or more Gaussian profile.",
                "",
            ]
            parts += estimate_table(estimates) + [""]
    if quality:
        steps = sorted({r["steps"] for r in quality})
        parts += [
            f"### Quality with default options ({', '.join(map(str, steps))} training steps of `fast`'s network)",
            "",
        ]
        parts += [
            "Gain in body-box PSNR over linear interpolation, and the mean coronal/sagittal SSIM; after the "
            "default's figures, the profile `auto` chose (B box, G Gaussian). 'before' is `--profile box --noise "
            "off` (the defaults until now), 'right profile' the simulated one with `--noise off`, 'scan mode in the "
            "header' the defaults on a series that states its scan mode (box: sequential, Gaussian: helical; "
            "`--scan-mode`), as DICOM series usually do; 8HU: Gaussian noise of 8 HU in every thick-slice voxel.",
            "",
        ]
        parts += quality_table(quality) + [""] + quality_checks(quality) + [""]
    timed = [r for r in rows if r["kind"] == "acq-time"]
    if timed:
        parts += ["### What the estimates cost: L291, `sr4zct enhance --preset fast` on the CPU", ""]
        parts += time_table(timed) + [""]
    return "\n".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.acquisitions", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--parts", default="estimate,quality", help="estimate, quality, time (comma list)")
    p.add_argument("--repeats", type=int, default=2, help="alternated repeats of the time part (default 2)")
    p.add_argument("--cases", default=ESTIMATE_CASES, help=f"estimate cases (default {ESTIMATE_CASES})")
    p.add_argument("--settings", default=SETTINGS, help=f"estimate T/overlap list (default {SETTINGS})")
    p.add_argument("--noises", default=",".join(NOISES), help=f"estimate noise cases ({', '.join(NOISES)})")
    p.add_argument("--no-l291", dest="l291", action="store_false", help="skip the real L291 estimate")
    p.add_argument("--quality-cases", default="skull-bone,neck-soft", help="quality cases")
    p.add_argument("--quality-settings", default="5/2.5,3/1", help="quality T/overlap list")
    p.add_argument("--quality-noises", default="clean,8HU", help="quality noise cases")
    p.add_argument("--quality-variants", default=",".join(VARIANTS), help="quality variants (default: all)")
    p.add_argument("--steps", type=int, default=1000, help="training steps per quality run (default 1000)")
    p.add_argument("--ground-truth", type=Path, default=VHM_HEAD)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--output", type=Path, default=REPO_ROOT / "BENCHMARKS.md")
    p.add_argument("--report-only", action="store_true", help="rewrite the section from the results file")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    results = load_rows(args.results)
    if not args.report_only:
        results["runs"].append({
            "command": "python -m benchmarks.acquisitions" + ("" if not argv else " " + shlex.join(argv)),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        })  # fmt: skip

    def save(rows: list[dict]) -> None:
        results["rows"].update({r["key"]: r for r in rows})
        save_rows(results, args.results)
        write_section(SECTION, report(results), args.output)

    if not args.report_only:
        whole = load_ground_truth(args.ground_truth)
        parts = _names(args.parts)
        if "estimate" in parts:
            run_estimates(whole, args, save)
        if "quality" in parts:
            run_quality(whole, args, save)
        if "time" in parts:
            run_time(args, save)
    save([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
