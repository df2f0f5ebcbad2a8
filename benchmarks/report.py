"""Accumulated results (``benchmarks/results.json``) and the BENCHMARKS.md report generated from them.

Every benchmark run appends a *run* record (date, exact command, machine, versions) and a list of *rows*.
A row has a ``key``; a newer row with the same key replaces the older one, every other row is kept, so
runs of different subsets accumulate. The report is always regenerated from all recorded rows.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .machine import machine_line, versions_line

SCHEMA = 1

# method.md section 5: SR4ZCT's gain over linear interpolation in the paper (coronal, sagittal), dB.
PAPER_GAINS_DB = {
    (2.5, 1.25): (8.8, 8.6),
    (3.75, 1.875): (8.7, 8.3),
    (5.0, 2.5): (7.0, 6.7),
    (6.25, 3.125): (6.0, 5.6),
}
# The settings of issue 6 (thickness, overlap) in mm.
SETTINGS_MM = [
    (2.5, 1.25),
    (3.75, 1.875),
    (5.0, 2.5),
    (6.25, 3.125),
    (5.0, 2.0),
    (5.0, 3.0),
    (5.0, 0.0),
    (3.0, -1.0),
]
PRESET_GAIN_TARGET_DB = {"fast": 4.0, "balanced": 6.0, "best": 7.0}
PRESET_TIME_TARGET_MIN = {"fast": 5.0, "balanced": 15.0, "best": 45.0}
PEER_MARGIN_DB = 1.0
PEER_CROP = 192
L291_GPU_BEST_TARGET_MIN = 2.0
L291_RSS_TARGET_GB = 4.0
ACQUISITION_SPEEDUP_TARGET = 50.0
HEADLINE = (5.0, 2.5)
ETA_TARGET = 0.20

MET, NOT_MET = "met", "**NOT met**"


# --------------------------------------------------------------------------------------------------
# results.json
# --------------------------------------------------------------------------------------------------
def empty_results() -> dict:
    return {"schema": SCHEMA, "runs": [], "rows": []}


def load_results(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        return empty_results()
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path} has results schema {data.get('schema')}, expected {SCHEMA}")
    return data


def merge_results(results: dict, run: dict, rows: Iterable[dict]) -> dict:
    """Add ``run`` and its ``rows``; a row replaces an older row with the same ``key``.

    Merging the same run again (rows recorded as they finish) keeps one run record.
    """
    rows = list(rows)
    for row in rows:
        row["run_id"] = run["id"]
        row.setdefault("date", run["date"])
        row.setdefault("command", run["command"])
    new_keys = {row["key"] for row in rows}
    kept = [row for row in results["rows"] if row["key"] not in new_keys]
    runs = [r for r in results["runs"] if r["id"] != run["id"]]
    merged = {"schema": SCHEMA, "runs": [*runs, run], "rows": kept + rows}
    used = {row["run_id"] for row in merged["rows"]}
    merged["runs"] = [r for r in merged["runs"] if r["id"] in used or r["id"] == run["id"]]
    return merged


def merge_other(results: dict, other: dict) -> dict:
    """``results`` with every run of ``other`` merged in, oldest first (rows by key, as :func:`merge_results`);
    a run already in ``results`` with a row that ``other`` still has is kept once."""
    merged = results
    by_run: dict[str, list[dict]] = {}
    for row in other["rows"]:
        by_run.setdefault(row.get("run_id", ""), []).append(dict(row))
    for run in sorted(other["runs"], key=lambda r: r.get("date", "")):
        rows = by_run.get(run["id"], [])
        if rows:
            merged = merge_results(merged, run, rows)
    return merged


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj):
    """NaN/inf are not JSON: store them as strings that :func:`num` reads back."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(path: Path, results: dict, *, latest_run: dict | None = None) -> None:
    """Regenerate the report at ``path`` from ``results``, keeping the sections other commands own
    (:mod:`benchmarks.sections`) at its end."""
    from benchmarks.sections import owned_sections

    old = Path(path).read_text(encoding="utf-8") if Path(path).exists() else ""
    kept = owned_sections(old)
    text = render_markdown(results, latest_run=latest_run).rstrip("\n")
    atomic_write_text(path, "\n\n".join([text, *kept]) + "\n")


def save_results(results: dict, path: Path) -> None:
    text = json.dumps(_clean(results), indent=1, sort_keys=False, default=_json_default)
    atomic_write_text(path, text + "\n")


def num(value) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------------
def _same(a: float | None, b: float) -> bool:
    return a is not None and abs(float(a) - b) < 1e-6


def is_full_case(row: dict) -> bool:
    return (
        row.get("case") in (None, "full")
        and row.get("crop") is None
        and row.get("n_slices_gt") in (None, row.get("gt_slices_total"))
    )


def quality_rows(results: dict, *, ok_only: bool = True) -> list[dict]:
    rows = [r for r in results["rows"] if r.get("kind") == "quality"]
    if ok_only:
        rows = [r for r in rows if r.get("status") == "ok"]
    return rows


def _sr_rows(results: dict) -> list[dict]:
    return [r for r in quality_rows(results) if r.get("method") == "sr4zct"]


def _pick(rows: list[dict], **conds) -> list[dict]:
    out = []
    for r in rows:
        if all((_same(r.get(k), v) if isinstance(v, float) else r.get(k) == v) for k, v in conds.items()):
            out.append(r)
    return out


def _fmt_db(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return str(x)
    return f"{x:+.2f} dB" if signed else f"{x:.2f} dB"


def _headline_row(results: dict, preset: str, *, device_kind: str = "cpu") -> dict | None:
    rows = _pick(
        _sr_rows(results),
        thickness_mm=HEADLINE[0],
        overlap_mm=HEADLINE[1],
        profile="box",
        preset=preset,
        network="default",
    )
    rows = [r for r in rows if is_full_case(r) and (r.get("device_kind") or "cpu") == device_kind]
    rows = [r for r in rows if not r.get("capped")]  # a shortened budget measures the ETA, not the preset
    return rows[-1] if rows else None


def compute_targets(results: dict) -> list[dict]:
    """One record per target of issue 6: ``target``, ``measured`` (text), ``status``."""
    targets: list[dict] = []
    setting = f"{HEADLINE[0]:g} mm every {HEADLINE[0] - HEADLINE[1]:g} mm, box"

    for preset, goal in PRESET_GAIN_TARGET_DB.items():
        row = _headline_row(results, preset)
        name = f"`{preset}`: body-box PSNR gain over linear >= +{goal:g} dB (vhm-head, {setting})"
        if row is None:
            targets.append({"target": name, "measured": "-", "status": "not measured (not run)"})
            continue
        gain = num(row.get("gain_db"))
        targets.append(
            {
                "target": name,
                "measured": f"{_fmt_db(gain)} ({num(row['psnr_box']):.2f} vs linear {num(row['linear_psnr_box']):.2f})",
                "status": MET if gain is not None and gain >= goal else NOT_MET,
            }
        )

    for (t, o), (g_cor, g_sag) in PAPER_GAINS_DB.items():
        name = f"`best` >= paper gain at {t:g}/{o:g} mm (coronal +{g_cor} / sagittal +{g_sag} dB)"
        rows = _pick(_sr_rows(results), thickness_mm=t, overlap_mm=o, profile="box", preset="best")
        rows = [r for r in rows if is_full_case(r) and not r.get("capped")]
        if not rows:
            targets.append({"target": name, "measured": "-", "status": "not measured (not run)"})
            continue
        r = rows[-1]
        gc, gs = num(r.get("gain_coronal_db")), num(r.get("gain_sagittal_db"))
        ok = gc is not None and gs is not None and gc >= g_cor and gs >= g_sag
        targets.append(
            {
                "target": name,
                "measured": f"coronal {_fmt_db(gc)}, sagittal {_fmt_db(gs)}",
                "status": MET if ok else NOT_MET,
            }
        )

    sr = [r for r in _sr_rows(results) if r.get("network", "default") == "default"]
    for baseline in ("bspline", "lanczos"):
        name = f"every preset beats {'B-spline' if baseline == 'bspline' else 'Lanczos-3'} (body-box PSNR, every setting run)"
        if not sr:
            targets.append({"target": name, "measured": "-", "status": "not measured (not run)"})
            continue
        margins = [
            num(r["psnr_box"]) - num(r[f"{baseline}_psnr_box"])
            for r in sr
            if num(r.get(f"{baseline}_psnr_box")) is not None
        ]
        losers = [
            _case_label(r)
            for r in sr
            if num(r["psnr_box"]) <= num(r.get(f"{baseline}_psnr_box") or -math.inf)
        ]
        targets.append(
            {
                "target": name,
                "measured": f"{len(sr) - len(losers)}/{len(sr)} runs; smallest margin {_fmt_db(min(margins) if margins else None)}"
                + (f"; loses: {', '.join(losers)}" if losers else ""),
                "status": MET if not losers else NOT_MET,
            }
        )
    name = "no preset loses to linear interpolation anywhere (body-box, coronal and sagittal PSNR)"
    if not sr:
        targets.append({"target": name, "measured": "-", "status": "not measured (not run)"})
    else:
        losers = []
        worst = math.inf
        for r in sr:
            for k in ("gain_db", "gain_coronal_db", "gain_sagittal_db"):
                g = num(r.get(k))
                if g is not None:
                    worst = min(worst, g)
                    if g < 0:
                        losers.append(f"{_case_label(r)} ({k.replace('_db', '')} {g:+.2f})")
        targets.append(
            {
                "target": name,
                "measured": f"{len(sr)} runs; smallest gain {_fmt_db(worst if math.isfinite(worst) else None)}"
                + (f"; loses: {', '.join(losers)}" if losers else ""),
                "status": MET if not losers else NOT_MET,
            }
        )

    peers = [
        r
        for r in results["rows"]
        if r.get("kind") == "peer" and r.get("crop") == PEER_CROP and not r.get("n_slices_gt")
    ]
    default = next(
        (r for r in peers if r.get("method") == "sr4zct-default" and r.get("status") == "ok"), None
    )
    for peer, label in (("sr4zct-msd", "the MS-D option"), ("eclare", "ECLARE")):
        name = f"equal wall time on the 192x192 crop (5/2.5 box): default network beats {label} by >= {PEER_MARGIN_DB:g} dB"
        other = next((r for r in peers if r.get("method") == peer), None)
        if default is None or other is None:
            targets.append({"target": name, "measured": "-", "status": "not measured (not run)"})
        elif other.get("status") != "ok" and other.get("timed_out"):
            targets.append(
                {
                    "target": name,
                    "measured": f"default {num(default['psnr_box']):.2f} dB in {num(default['wall_s']) / 60:.1f} min; "
                    f"{label}: {other.get('status')}",
                    "status": "not measured (the peer gave no result to compare)",
                }
            )
        elif other.get("status") != "ok":
            targets.append(
                {
                    "target": name,
                    "measured": f"default {num(default['psnr_box']):.2f} dB; {label}: {other.get('status')}",
                    "status": "not measured (peer did not run)",
                }
            )
        else:
            margin = num(default["psnr_box"]) - num(other["psnr_box"])
            t_default, t_other = num(default["wall_s"]), num(other["wall_s"])
            longer = t_other > 1.1 * t_default
            measured = (
                f"{_fmt_db(margin)} ({num(default['psnr_box']):.2f} in {t_default / 60:.1f} min "
                f"vs {num(other['psnr_box']):.2f} in {t_other / 60:.1f} min)"
            )
            if margin >= PEER_MARGIN_DB:
                status = MET + (" (the peer had more time and still lost)" if longer else "")
            else:
                status = NOT_MET + (" (the peer had more time)" if longer else "")
            targets.append({"target": name, "measured": measured, "status": status})

    for preset, goal in PRESET_TIME_TARGET_MIN.items():
        name = f"`{preset}` end to end <= {goal:g} min on the 2-core CPU (vhm-head {setting}, DICOM in)"
        row = _headline_row(results, preset)
        if row is None:
            targets.append({"target": name, "measured": "-", "status": "not measured (not run)"})
            continue
        minutes = num(row["wall_s"]) / 60.0
        cores = row.get("cpu_cores")
        note = f"{minutes:.1f} min" + (f" on {cores} cores" if cores else "")
        targets.append({"target": name, "measured": note, "status": MET if minutes <= goal else NOT_MET})

    l291 = [r for r in results["rows"] if r.get("kind") == "l291" and r.get("status") == "ok"]
    name = f"GPU: `best` <= {L291_GPU_BEST_TARGET_MIN:g} min for the full L291 series"
    gpu_rows = [r for r in l291 if r.get("device_kind") == "cuda" and r.get("preset") == "best"]
    if gpu_rows:
        minutes = num(gpu_rows[-1]["wall_s"]) / 60
        copy = " (the series' geometry, content at 1/4 resolution)" if gpu_rows[-1].get("note") else ""
        targets.append(
            {
                "target": name,
                "measured": f"{minutes:.1f} min on {gpu_rows[-1].get('device')}{copy}",
                "status": MET if minutes <= L291_GPU_BEST_TARGET_MIN else NOT_MET,
            }
        )
    else:
        targets.append({"target": name, "measured": "-", "status": "not measured (no GPU run recorded)"})
    name = f"peak RSS <= {L291_RSS_TARGET_GB:g} GB for the full L291 series on CPU"
    cpu_rows = [r for r in l291 if r.get("device_kind") == "cpu"]
    if cpu_rows:
        peak = max(num(r["peak_rss_bytes"]) for r in cpu_rows) / 1e9
        presets = ", ".join(sorted({r.get("preset") for r in cpu_rows}))
        targets.append(
            {
                "target": name,
                "measured": f"{peak:.2f} GB ({presets})",
                "status": MET if peak <= L291_RSS_TARGET_GB else NOT_MET,
            }
        )
    else:
        targets.append({"target": name, "measured": "-", "status": "not measured (not run)"})

    for preset in PRESET_TIME_TARGET_MIN:
        name = (
            f"`{preset}`: ETA within {ETA_TARGET:.0%} of the remaining time after the first 10 % of a run "
            "(L291 and 5/2.5 box, issue 16)"
        )
        rows = [r for r in _eta_rows(results) if r.get("preset") == preset]
        if not rows:
            targets.append({"target": name, "measured": "-", "status": "not measured (not run)"})
            continue
        worst = max(rows, key=lambda r: num(r["eta_error_max"]))
        cases = {"l291" if r.get("kind") == "l291" else "5/2.5" for r in rows}
        missing = {"l291", "5/2.5"} - cases
        measured = f"largest error {num(worst['eta_error_max']):.0%} ({_eta_case(worst)})"
        status = MET if num(worst["eta_error_max"]) <= ETA_TARGET else NOT_MET
        if missing:
            status += f" (not run: {', '.join(sorted(missing))})"
        targets.append({"target": name, "measured": measured, "status": status})

    name = f"acquisition model >= {ACQUISITION_SPEEDUP_TARGET:g}x faster than the naive oracle (512x512x343)"
    acq = [r for r in results["rows"] if r.get("kind") == "acquisition" and r.get("status") == "ok"]
    if acq:
        speedup = num(acq[-1].get("speedup"))
        shape = acq[-1].get("shape")
        full = shape is None or list(shape) == [343, 512, 512] or list(shape) == [512, 512, 343]
        status = (MET if speedup >= ACQUISITION_SPEEDUP_TARGET else NOT_MET) if speedup is not None else "-"
        if not full:
            status += f" (measured on {shape}, not the full stack)"
        targets.append({"target": name, "measured": f"{speedup:.0f}x" if speedup else "-", "status": status})
    else:
        targets.append({"target": name, "measured": "-", "status": "not measured (not run)"})
    return targets


def _eta_rows(results: dict) -> list[dict]:
    """Runs with an ETA record: the L291 runs and the headline-setting quality runs (full volume)."""
    out = []
    for r in results["rows"]:
        if r.get("status") != "ok" or num(r.get("eta_error_max")) is None:
            continue
        if r.get("kind") == "l291":
            out.append(r)
        elif r.get("kind") == "quality" and is_full_case(r) and r.get("profile") == "box":
            if _same(num(r.get("thickness_mm")), HEADLINE[0]) and _same(
                num(r.get("overlap_mm")), HEADLINE[1]
            ):
                out.append(r)
    return out


def _eta_case(row: dict) -> str:
    where = "L291" if row.get("kind") == "l291" else "vhm-head 5/2.5 box"
    cap = f", budget cut to {num(row.get('max_minutes')):g} min" if row.get("capped") else ""
    return f"{where}, {row.get('device_kind') or 'cpu'}{cap}"


def _eta_section(results: dict, run_index: dict) -> list[str]:
    rows = _eta_rows(results)
    if not rows:
        return []
    out = [
        "### ETA accuracy",
        "",
        "The ETA the CLI showed, against the true remaining time of the run (`enhance_file` call): relative "
        "error |ETA - remaining| / remaining of every progress record between 10 % and 90 % of the run, "
        "and at 10 %, 25 % and 50 % of it.",
        "",
    ]
    body = []
    for r in sorted(rows, key=lambda r: (r.get("kind") != "l291", r.get("preset") or "")):
        at = r.get("eta_error_at") or {}
        body.append(
            [
                f"`{r.get('preset')}`",
                _eta_case(r),
                _minutes(r.get("wall_s")),
                f"{num(r['eta_error_max']):.0%}",
                f"{num(r.get('eta_error_median')):.0%}"
                if num(r.get("eta_error_median")) is not None
                else "-",
                " / ".join(
                    f"{num(at.get(k)):.0%}" if num(at.get(k)) is not None else "-" for k in ("10", "25", "50")
                ),
                str(r.get("eta_samples", "-")),
                _run_ref(r, run_index),
            ]
        )
    out += _table(
        ["preset", "case", "wall time", "max error", "median error", "at 10 / 25 / 50 %", "records", "run"],
        body,
    )
    out.append("")
    return out


def _case_label(row: dict) -> str:
    t, o = num(row.get("thickness_mm")), num(row.get("overlap_mm"))
    label = f"{t:g}/{o:g} {row.get('profile')} {row.get('preset')}"
    if row.get("crop"):
        label += f" crop{row['crop']}"
    if row.get("case") not in (None, "full"):
        label += f" {row['case']}"
    return label


SPREAD_PRESETS = ("fast", "balanced", "best")


def spread_table(results: dict) -> dict:
    """Per preset, the body-box gains of every ground-truth case at the headline setting (5/2.5 box, CPU)
    and the validation gains, plus the L291 validation gain: ``{preset: {"cases": {case: row}, ...}}``."""
    out: dict[str, dict] = {}
    rows = _pick(
        _sr_rows(results), thickness_mm=HEADLINE[0], overlap_mm=HEADLINE[1], profile="box", network="default"
    )
    for r in rows:
        if (
            (r.get("device_kind") or "cpu") != "cpu"
            or r.get("crop")
            or r.get("n_slices_gt")
            or r.get("capped")
        ):
            continue  # a cut budget measures the ETA, not the preset
        entry = out.setdefault(r.get("preset"), {"cases": {}, "l291": None})
        entry["cases"][r.get("case") or "full"] = r
    for r in results["rows"]:
        if (
            r.get("kind") == "l291"
            and r.get("status") == "ok"
            and not r.get("capped")
            and (r.get("device_kind") or "cpu") == "cpu"
        ):
            out.setdefault(r.get("preset"), {"cases": {}, "l291": None})["l291"] = r
    for entry in out.values():
        gains = sorted(
            num(r.get("gain_db")) for r in entry["cases"].values() if num(r.get("gain_db")) is not None
        )
        entry["min"] = gains[0] if gains else None
        entry["median"] = float(statistics.median(gains)) if gains else None
        entry["n"] = len(gains)
    return out


def _validation_gain(row: dict | None) -> float | None:
    return None if row is None else num((row.get("parameters") or {}).get("validation_gain_db"))


def _lever_section(results: dict, run_index: dict) -> list[str]:
    rows = [r for r in results["rows"] if r.get("kind") == "lever" and r.get("status") == "ok"]
    if not rows:
        return []
    from .quality import CASES

    out = [
        "### Levers for the minimum (fixed steps)",
        "",
        "`python -m benchmarks.run --settings none --levers ...` (benchmarks/levers.py): the `fast` training "
        "with one change, stopped after exactly the given steps (so that the shared CPU's speed does not "
        "change the result), applied as the pipeline applies it; body-box PSNR gain over linear interpolation "
        "at 5/2.5 box per case (mean over seeds when several; their range in brackets), its minimum and median "
        "over the cases, and the median training time (the shared CPU's, for the cost of a change).",
        "",
    ]
    cases = [c for c in CASES if any(r.get("case") == c for r in rows)]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r.get("variant"), int(r.get("steps") or 0)), []).append(r)
    body = []
    for (variant, steps), group in sorted(
        groups.items(), key=lambda kv: (kv[0][1], kv[0][0] != "baseline", kv[0][0])
    ):
        cells = [f"`{variant}`", str(steps), json.dumps(group[0].get("changes") or {})]
        means = []
        for case in cases:
            gains = [num(r["gain_db"]) for r in group if r.get("case") == case]
            if gains:
                mean = sum(gains) / len(gains)
                means.append(mean)
                spread = f" ({min(gains):+.2f}..{max(gains):+.2f})" if len(gains) > 1 else ""
                cells.append(f"{mean:+.2f}{spread}")
            else:
                cells.append("-")
        full = len(means) == len(cases)
        cells.append(f"{min(means):+.2f}" if full else "-")
        cells.append(f"{statistics.median(means):+.2f}" if full else "-")
        train = [num(r.get("train_s")) for r in group if num(r.get("train_s")) is not None]
        cells.append(f"{statistics.median(train):.0f} s" if train else "-")
        cells.append(" ".join(sorted({_run_ref(r, run_index) for r in group})))
        body.append(cells)
    out += _table(
        ["variant", "steps", "change", *[f"`{c}`" for c in cases], "min", "median", "train time", "run"], body
    )
    out.append("")
    return out


def _spread_section(results: dict, run_index: dict) -> list[str]:
    table = spread_table(results)
    presets = [p for p in SPREAD_PRESETS if p in table]
    if not presets:
        return []
    out = [
        "## Quality spread over ground-truth cases (5 mm every 2.5 mm, box, CPU)",
        "",
        "Body-box PSNR gain over linear interpolation per case, and in brackets the in-plane held-out validation "
        "gain the pipeline reports (the only quality figure a series without ground truth has, as L291's). "
        "'time-bound' marks a run the time limit stopped before the preset's step budget. Min and median over the "
        "vhm-head cases measured for that preset.",
        "",
    ]
    cases = []
    for p in presets:
        cases += [c for c in table[p]["cases"] if c not in cases]
    from .quality import CASES

    order = {c: i for i, c in enumerate(CASES)}
    cases.sort(key=lambda c: order.get(c, 99))
    body = []
    for case in cases:
        cells = [f"`{case}`: {CASES.get(case, {}).get('label', case)}"]
        for p in presets:
            r = table[p]["cases"].get(case)
            if r is None:
                cells.append("-")
                continue
            cut = any("stopped by the time limit" in str(w) for w in r.get("warnings") or [])
            val = _validation_gain(r)
            cells.append(
                _fmt_db(num(r.get("gain_db")))
                + (f" ({val:+.2f})" if val is not None else "")
                + (" (time-bound)" if cut else "")
                + f" {_run_ref(r, run_index)}"
            )
        body.append(cells)
    cells = ["L291 (real series, no ground truth): validation gain only"]
    for p in presets:
        r = table[p]["l291"]
        val = _validation_gain(r)
        cells.append("-" if val is None else f"({val:+.2f}) {_run_ref(r, run_index)}")
    body.append(cells)
    body.append(["**minimum** (vhm-head cases)"] + [
        f"**{_fmt_db(table[p]['min'])}** of {table[p]['n']}" if table[p]["min"] is not None else "-" for p in presets
    ])  # fmt: skip
    body.append(["median (vhm-head cases)"] + [_fmt_db(table[p]["median"]) for p in presets])
    out += _table(["case", *[f"`{p}`" for p in presets]], body)
    out.append("")
    return out


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------
def _cell(value) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _f(x, fmt: str = ".2f", none: str = "-") -> str:
    x = num(x)
    if x is None:
        return none
    if not math.isfinite(x):
        return str(x)
    return format(x, fmt)


def _minutes(seconds) -> str:
    s = num(seconds)
    return "-" if s is None else f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"


def _gb(nbytes) -> str:
    b = num(nbytes)
    return "-" if b is None else f"{b / 1e9:.2f} GB"


def _gains(row: dict) -> str:
    box, cor, sag = (num(row.get(k)) for k in ("gain_db", "gain_coronal_db", "gain_sagittal_db"))
    if box is None:
        return "-"
    return f"{box:+.2f} ({_f(cor, '+.2f')} / {_f(sag, '+.2f')})"


def _notes(row: dict) -> str:
    """What the pipeline said about the run: validation gain, warnings (time limit, identity fallback)."""
    parts = []
    params = row.get("parameters") or {}
    if params.get("validation_gain_db") not in (None, ""):
        parts.append(f"validation gain {params['validation_gain_db']} dB")
    parts += [str(w)[:160] for w in row.get("warnings") or []]
    return "; ".join(parts)


def _stages(row: dict) -> str:
    timings = row.get("timings_s") or {}
    skip = ("total", "infer_estimate")
    parts = [f"{k} {_minutes(v)}" for k, v in timings.items() if num(v) is not None and k not in skip]
    if num(timings.get("infer_estimate")) is not None:
        parts.append(f"(infer planned {_minutes(timings['infer_estimate'])})")
    return ", ".join(parts) if parts else "-"


def _run_ref(row: dict, run_index: dict) -> str:
    return f"[{run_index.get(row.get('run_id'), '?')}]"


def _thread_section(rows: list[dict], run_index: dict) -> list[str]:
    """Training steps/s per thread variant and number of competing CPU-bound processes (benchmarks.threads)."""
    out = [
        "### CPU threads (training steps/s of `fast`)",
        "",
        "The real training loop (`fast`: 8 x 32 network, batch 16 x 64^2, validation every 100 steps) on 48 "
        "axial vhm-head images in a fresh process per run, timed after its 20th step; competing processes "
        "are `while True: pass` spinners started by the benchmark. Variants: torch threads, and `:passive` "
        "for `OMP_WAIT_POLICY=PASSIVE` (idle OpenMP threads sleep instead of spinning). Runs of a group are "
        "interleaved; the spread is (max - min) / median over the repeats, the load is the 1-minute load "
        "average after each run (other users of the machine included).",
        "",
    ]
    by_comp: dict[int, list[dict]] = {}
    for r in rows:
        by_comp.setdefault(int(r.get("competitors") or 0), []).append(r)
    body = []
    for comp in sorted(by_comp):
        group = sorted(by_comp[comp], key=lambda r: (r.get("threads") or 0, r.get("wait_policy") or ""))
        best = max((num(r.get("steps_per_s_median")) or 0.0 for r in group), default=0.0)
        for r in group:
            med = num(r.get("steps_per_s_median"))
            loads = [num(v) for v in r.get("load_avg_1min") or [] if num(v) is not None]
            body.append(
                [
                    str(comp),
                    f"`{r.get('variant', r.get('threads'))}`",
                    _f(med, ".2f") + (" (best)" if med is not None and med == best and best > 0 else ""),
                    f"{_f(r.get('steps_per_s_min'), '.2f')} - {_f(r.get('steps_per_s_max'), '.2f')}",
                    _f(
                        num(r.get("steps_per_s_spread")) * 100 if num(r.get("steps_per_s_spread")) else None,
                        ".0f",
                    )
                    + " %",
                    str(len(r.get("steps_per_s_all") or [])),
                    f"{min(loads):.1f} - {max(loads):.1f}" if loads else "-",
                    _run_ref(r, run_index),
                ]
            )
    out += _table(
        [
            "competing processes",
            "variant",
            "median steps/s",
            "min - max",
            "spread",
            "runs",
            "load average",
            "run",
        ],
        body,
    )
    out += ["", *_thread_rule_summary(by_comp), ""]
    return out


def _thread_rule_summary(by_comp: dict[int, list[dict]]) -> list[str]:
    """How the rule in use (every core, passive waiting: ``sr4zct.system.threads``) fares against each group's
    best variant and against the default spinning wait."""
    parts = []
    for comp in sorted(by_comp):
        rates = {r.get("variant"): num(r.get("steps_per_s_median")) for r in by_comp[comp]}
        passive = [v for v in rates if str(v).endswith(":passive")]
        if not passive or not rates.get(passive[-1]):
            continue
        rule = passive[-1]
        spinning = rates.get(rule.split(":")[0])
        best = max(v for v in rates.values() if v)
        text = f"{comp} competing: {rates[rule] / best:.0%} of the best variant"
        if spinning:
            text += f", {rates[rule] / spinning:.2f}x the spinning wait on as many threads"
        parts.append(text)
    if not parts:
        return []
    return [f"The rule in use (every usable core, `OMP_WAIT_POLICY=PASSIVE`) reaches: {'; '.join(parts)}."]


INFERENCE_PARTS = ("resample", "gather", "network", "scatter", "fuse")


def _load_range(values) -> str:
    loads = [num(v) for v in values or [] if num(v) is not None]
    return f"{min(loads):.1f} - {max(loads):.1f}" if loads else "-"


def _median_range(stats: dict | None) -> str:
    stats = stats or {}
    return f"{_f(stats.get('median'), '.1f')} ({_f(stats.get('min'), '.1f')} - {_f(stats.get('max'), '.1f')})"


def _inference_profile_section(rows: list[dict], run_index: dict) -> list[str]:
    """Seconds per part of CPU inference on a real series (benchmarks.inference_profile)."""
    out = [
        "### Inference on the full L291 series: where the time goes",
        "",
        "`enhance_array` as the pipeline calls it (body box, both orientations, the preset's test-time flips), "
        "repeated in one process after reading the series once; the network is the preset's architecture "
        "with a fixed random correction (the cost does not depend on the weights). Parts: resample (to the "
        "internal and the output grid), gather (images out of the volume, normalised), network (forward "
        "passes and tiling), scatter (back into the volume), fuse (mean and clip). Median (min - max) over the "
        "repeats; the load average (other users of the machine included) after each run.",
        "",
    ]
    body = []
    for r in rows:
        if r.get("status") != "ok":
            body.append([r.get("preset", "-"), "-", r.get("status")] + ["-"] * (len(INFERENCE_PARTS) + 2))
            continue
        parts = r.get("parts_s") or {}
        body.append(
            [
                f"`{r.get('preset')}`",
                r.get("device", "-"),
                _median_range(parts.get("total")),
                *[_median_range(parts.get(name)) for name in INFERENCE_PARTS],
                f"{r.get('repeats')}",
                _load_range(r.get("load_avg_1min")),
                _run_ref(r, run_index),
            ]
        )
    out += _table(
        ["preset", "device", "total s", *[f"{p} s" for p in INFERENCE_PARTS], "runs", "load average", "run"],
        body,
    )
    out.append("")
    return out


def render_markdown(results: dict, *, latest_run: dict | None = None) -> str:
    runs = results["runs"]
    run_index = {r["id"]: i + 1 for i, r in enumerate(runs)}
    latest = latest_run or (runs[-1] if runs else None)
    out: list[str] = ["# SR4ZCT benchmarks", ""]
    out.append(
        "Generated by `python -m benchmarks.run` from `benchmarks/results.json` (every recorded run; a newer "
        "row replaces an older row of the same case). Do not edit by hand."
    )
    out.append("")
    if latest is not None:
        out += [
            f"- Latest run: {latest['date']}",
            f"- Command: `{latest['command']}`",
            f"- Machine: {machine_line(latest['machine'])}",
            f"- Versions: {versions_line(latest['machine'])}",
            "",
        ]
    out += [
        "Ground truth: vhm-head (Visible Human Male head, 1 mm isotropic, 512 x 512 x 245). Thick slices are simulated "
        "with the exact acquisition model (phase chosen so that the first thick slice centre, and with it the 1 mm "
        "output grid, falls on a ground-truth slice), written as a DICOM series, enhanced by the real `sr4zct enhance` CLI in a "
        "subprocess and read back. Scores follow docs/method.md section 5: body-box PSNR (box of voxels above -500 HU in "
        "y/x, slices within one thickness of either end dropped, data range = ground-truth max - min) and the mean "
        "per-slice coronal/sagittal PSNR and SSIM inside the same box. Gains are over linear interpolation along z "
        "computed in the same run. Wall time is the whole CLI process (start-up, read DICOM, train, infer, write); "
        "stage times are the pipeline's own; peak RSS is the child process tree's (sampled every 0.2 s). The CLI's "
        "torch CPU threads are pinned to the machine's cores (`--threads`) so that timings do not depend on the "
        "load average left by the previous stage.",
        "",
        "## Targets (issue 6)",
        "",
    ]
    targets = compute_targets(results)
    out += _table(
        ["target", "measured", "status"], [[t["target"], t["measured"], t["status"]] for t in targets]
    )
    out.append("")

    q_all = [r for r in results["rows"] if r.get("kind") == "quality"]
    if q_all:
        out += ["## Quality and time per setting", ""]
        groups: dict[tuple, list[dict]] = {}
        for r in q_all:
            gk = (
                r.get("case") or "full",
                r.get("crop") or 0,
                r.get("n_slices_gt") or 0,
                num(r["thickness_mm"]),
                num(r["overlap_mm"]),
                r["profile"],
            )
            groups.setdefault(gk, []).append(r)
        order = {m: i for i, m in enumerate(("linear", "bspline", "lanczos", "sr4zct"))}
        preset_order = {p: i for i, p in enumerate(("fast", "balanced", "best"))}
        case_order = {c: i for i, c in enumerate(("full", "neck", "skull", "neck-soft", "skull-bone"))}
        for gk in sorted(
            groups, key=lambda k: (case_order.get(k[0], 9), k[0], k[1] != 0, k[1], k[5], -k[3], -k[4])
        ):
            rows = sorted(
                groups[gk],
                key=lambda r: (
                    order.get(r["method"], 9),
                    preset_order.get(r.get("preset"), 9),
                    r.get("network", ""),
                ),
            )
            case, crop, nz, t, o, profile = gk
            first = rows[0]
            shape_in = first.get("input_shape")
            title = f"### {t:g} mm every {t - o:g} mm (overlap {o:g} mm), {profile} profile"
            if case != "full":
                title += f", case `{case}`: {first.get('case_label', case)}"
            else:
                title += f", {'full volume' if not crop else f'central {crop}x{crop} crop'}"
            if shape_in:
                title += f" - input {shape_in[2]}x{shape_in[1]}x{shape_in[0]}"
            out += [title, ""]
            body = []
            for r in rows:
                name = {"linear": "linear", "bspline": "B-spline", "lanczos": "Lanczos-3"}.get(
                    r["method"], "SR4ZCT"
                )
                if r["method"] == "sr4zct":
                    name += f" `{r.get('preset')}`" + (
                        f" ({r['network']})" if r.get("network") not in (None, "default") else ""
                    )
                    if r.get("capped"):
                        name += f", budget cut to {num(r.get('max_minutes')):g} min"
                if r.get("status") != "ok":
                    body.append([name, f"failed: {r.get('status')}"] + ["-"] * 9 + [_run_ref(r, run_index)])
                    continue
                body.append(
                    [
                        name,
                        _f(r.get("psnr_box")),
                        _gains(r) if r["method"] != "linear" else "",
                        f"{_f(r.get('psnr_coronal'))} / {_f(r.get('ssim_coronal'), '.4f')}",
                        f"{_f(r.get('psnr_sagittal'))} / {_f(r.get('ssim_sagittal'), '.4f')}",
                        _minutes(r.get("wall_s")),
                        _stages(r),
                        str(r.get("steps") or "-"),
                        _gb(r.get("peak_rss_bytes")),
                        _gb(r.get("peak_gpu_bytes")) if r.get("peak_gpu_bytes") else "-",
                        _notes(r),
                        _run_ref(r, run_index),
                    ]
                )
            out += _table(
                [
                    "method",
                    "body-box PSNR",
                    "gain: box (coronal / sagittal)",
                    "coronal PSNR / SSIM",
                    "sagittal PSNR / SSIM",
                    "wall time",
                    "stages",
                    "train steps",
                    "peak RSS",
                    "peak GPU",
                    "notes",
                    "run",
                ],
                body,
            )
            out.append("")

    out += _spread_section(results, run_index)
    out += _lever_section(results, run_index)

    peers = [r for r in results["rows"] if r.get("kind") == "peer"]
    if peers:
        out += [
            "## Peers at equal wall-clock budget (5 mm every 2.5 mm, box)",
            "",
            "Each method gets the same budget; `sr4zct` caps its whole run with `--max-minutes`. ECLARE has no "
            "time option: it gets as many training patches as it can process in the default network's training "
            "time, runs in its own virtual environment (`benchmarks/.venv-eclare`) and is killed at twice the "
            "budget. For reference, docs/method.md section 6 records ECLARE at 35.87 dB after 43.5 min "
            "(12,800 patches) on the 192 x 192 crop on this CPU, linear 33.99.",
            "",
        ]
        peer_groups: dict[tuple, list[dict]] = {}
        for r in peers:
            peer_groups.setdefault((r.get("crop") or 0, r.get("n_slices_gt") or 0), []).append(r)
        for (crop, nz), group in sorted(peer_groups.items(), key=lambda kv: (kv[0][0] != PEER_CROP, kv[0])):
            shape = group[0].get("input_shape")
            title = f"### Central {crop} x {crop} crop" + (
                f", {nz} central ground-truth slices" if nz else ""
            )
            if shape:
                title += f" - input {shape[2]}x{shape[1]}x{shape[0]}"
            budgets = sorted(
                {num(r.get("budget_min")) for r in group if num(r.get("budget_min")) is not None}
            )
            if budgets:
                title += f", budget {', '.join(f'{b:g}' for b in budgets)} min"
            out += [title, ""]
            body = []
            for r in sorted(group, key=lambda r: r.get("order", 9)):
                if r.get("status") != "ok":
                    body.append(
                        [
                            r["label"],
                            "-",
                            "-",
                            "-",
                            "-",
                            _minutes(r.get("wall_s")),
                            r.get("status"),
                            _run_ref(r, run_index),
                        ]
                    )
                    continue
                body.append(
                    [
                        r["label"],
                        _f(r.get("psnr_box")),
                        _gains(r) if r.get("method") != "linear" else "",
                        f"{_f(r.get('psnr_coronal'))} / {_f(r.get('ssim_coronal'), '.4f')}",
                        f"{_f(r.get('psnr_sagittal'))} / {_f(r.get('ssim_sagittal'), '.4f')}",
                        _minutes(r.get("wall_s")),
                        r.get("note", ""),
                        _run_ref(r, run_index),
                    ]
                )
            out += _table(
                [
                    "method",
                    "body-box PSNR",
                    "gain: box (coronal / sagittal)",
                    "coronal PSNR / SSIM",
                    "sagittal PSNR / SSIM",
                    "wall time",
                    "note",
                    "run",
                ],
                body,
            )
            out.append("")

    acq = [r for r in results["rows"] if r.get("kind") == "acquisition"]
    nets = [r for r in results["rows"] if r.get("kind") == "network_speed"]
    pipe = [
        r
        for r in results["rows"]
        if r.get("kind") == "quality" and r.get("method") == "sr4zct" and r.get("status") == "ok"
    ]
    if acq or nets or pipe:
        out += ["## Speed", ""]
    if acq:
        out += ["### Acquisition model vs the naive per-column oracle", ""]
        body = []
        for r in acq:
            if r.get("status") != "ok":
                body.append(["-", "-", "-", "-", r.get("status"), _run_ref(r, run_index)])
                continue
            body.append(
                [
                    "x".join(str(s) for s in r.get("shape") or []) or "-",
                    _f(r.get("fast_s"), ".3f") + " s",
                    _f(r.get("naive_s"), ".1f") + " s",
                    _f(r.get("speedup"), ".0f") + "x",
                    r.get("note", ""),
                    _run_ref(r, run_index),
                ]
            )
        out += _table(
            ["stack (slices x rows x cols)", "fast path", "naive oracle", "speed-up", "note", "run"], body
        )
        out.append("")
    if nets:
        out += [
            "### Networks (micro-benchmark)",
            "",
            "Adam steps on random patches and forward passes on random images, in the benchmark process "
            "(threads as torch sets them).",
            "",
        ]
        body = [
            [
                r.get("device", "-"),
                r.get("network", "-"),
                r.get("preset", "-") if r.get("network") == "default" else "-",
                r.get("config", "-"),
                _f(r.get("train_steps_per_s"), ".2f"),
                _f(
                    num(r.get("infer_voxels_per_s")) / 1e6 if num(r.get("infer_voxels_per_s")) else None,
                    ".2f",
                ),
                r.get("status", ""),
                _run_ref(r, run_index),
            ]
            for r in nets
        ]
        out += _table(
            ["device", "network", "preset", "setup", "train steps/s", "inference Mvoxel/s", "status", "run"],
            body,
        )
        out.append("")
    threads = [r for r in results["rows"] if r.get("kind") == "threads"]
    if threads:
        out += _thread_section(threads, run_index)
    if pipe:
        out += ["### Pipeline (from the timings each enhance run records)", ""]
        body = []
        for r in pipe:
            body.append(
                [
                    _case_label(r),
                    r.get("device") or "-",
                    _f(r.get("train_steps_per_s"), ".2f"),
                    _f(
                        num(r.get("infer_voxels_per_s")) / 1e6 if num(r.get("infer_voxels_per_s")) else None,
                        ".2f",
                    ),
                    _run_ref(r, run_index),
                ]
            )
        out += _table(["case", "device", "train steps/s", "inference Mvoxel/s (output)", "run"], body)
        out.append("")

    out += _eta_section(results, run_index)
    profiles = [r for r in results["rows"] if r.get("kind") == "inference_profile"]
    if profiles:
        out += _inference_profile_section(profiles, run_index)
    l291 = [r for r in results["rows"] if r.get("kind") == "l291"]
    if l291:
        out += ["## Full L291 series (512 x 512 x 343, 3 mm every 2 mm)", ""]
        body = [
            [
                r.get("preset")
                + (f" (budget cut to {num(r.get('max_minutes')):g} min)" if r.get("capped") else ""),
                r.get("device") or "-",
                _minutes(r.get("wall_s")),
                _stages(r),
                _gb(r.get("peak_rss_bytes")),
                _gb(r.get("peak_gpu_bytes")) if r.get("peak_gpu_bytes") else "-",
                "x".join(str(s) for s in r.get("output_shape") or []) or "-",
                str(r.get("status")) + (f"; {r['note']}" if r.get("note") else ""),
                _run_ref(r, run_index),
            ]
            for r in l291
        ]
        out += _table(
            ["preset", "device", "wall time", "stages", "peak RSS", "peak GPU", "output", "status", "run"],
            body,
        )
        out.append("")

    if runs:
        out += ["## Runs", ""]
        body = [
            [
                f"[{i + 1}]",
                r["date"],
                f"`{r['command']}`",
                machine_line(r["machine"]),
                versions_line(r["machine"]),
            ]
            for i, r in enumerate(runs)
        ]
        out += _table(["run", "date", "command", "machine", "versions"], body)
        out.append("")
    return "\n".join(out)
