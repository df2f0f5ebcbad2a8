"""fp32 against bf16 on the CPU, side by side on one machine: ``python -m benchmarks.precision``.

Parts (``--parts``, default all; the timing parts alternate fp32 and bf16 run by run, ``--repeats`` times):

* ``quality``: at equal steps (step-bound: the machine's load does not change the result). For each
  ground-truth case (5 mm every 2.5 mm, box, as :mod:`benchmarks.levers` simulates it) and each preset, the
  preset's training runs for exactly ``--quality-steps`` steps in fp32 and in bf16 and is applied in the
  same precision; the fp32 network is also applied in bf16 (bf16 inference only). Body-box PSNR gain over
  linear interpolation.
* ``speed``: training steps per second of the ``fast`` preset on vhm-head 5/2.5 (``--speed-steps`` steps).
* ``l291``: ``sr4zct enhance`` on the full L291 series with ``--preset fast``: wall time of the process,
  training and inference time, steps (target: bf16 at most 0.6 of fp32's wall time).
* ``balanced``: ``sr4zct enhance`` of vhm-head 5/2.5 with ``--preset balanced --max-minutes M`` (training
  ends by time in both): steps and body-box PSNR gain at equal wall time.

Rows go to ``benchmarks/precision.json``: a quality row replaces the older row of the same case, preset,
steps, seed and variant; a timing part replaces all earlier rows of that part (its runs belong together). The
section between ``<!-- precision:begin -->`` and ``<!-- precision:end -->`` of BENCHMARKS.md is rewritten
from all rows (``--parts none`` only does that). ``--smoke`` runs every part at toy sizes into a temporary
folder (a few minutes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.sections import REPORT, write_section

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().with_name("precision.json")
PRECISIONS = ("fp32", "bf16")
TIMING_PARTS = ("speed", "l291", "balanced")
PARTS = ("quality", *TIMING_PARTS)
THICKNESS_MM, SPACING_MM = 5.0, 2.5
WALL_TARGET = 0.6
QUALITY_TOLERANCE_DB = 0.1


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------
def simulated_case(ground_truth, case: str):
    """The case's ground truth, its simulated 5/2.5 box acquisition and linear interpolation of it."""
    from sr4zct.demo.evaluation import aligned_phase_mm, interpolate_baseline, simulate_acquisition

    from .quality import CASES, region_volume

    region = CASES[case]["region"]
    gt = ground_truth if region is None else region_volume(ground_truth, region)
    phase = aligned_phase_mm(THICKNESS_MM, SPACING_MM, float(gt.geometry.slice_spacing_mm))
    thick = simulate_acquisition(gt, THICKNESS_MM, SPACING_MM, profile="box", phase_mm=phase)
    return gt, thick, interpolate_baseline(thick, method="linear")


def _config(preset_name: str, steps: int, seed: int):
    from sr4zct.method.training import TrainingConfig
    from sr4zct.run.presets import get_preset

    p = get_preset(preset_name)
    return TrainingConfig(
        steps=steps, patch_px=p.patch_px, batch=p.batch, lr=p.lr, loss=p.loss,
        network_config=dict(p.network_config), validate_every=p.validate_every, seed=seed,
    )  # fmt: skip


def _pixel(volume) -> tuple[float, float]:
    g = volume.geometry
    return float(g.pixel_spacing_mm[0]), float(g.pixel_spacing_mm[1])


def _train(thick, config, precision: str, progress=None):
    """``train_model`` on the thick volume's axial images in ``precision``; (result, seconds)."""
    from sr4zct.method.training import train_model
    from sr4zct.system.progress import ProgressReporter

    t0 = time.perf_counter()
    result = train_model(
        np.asarray(thick.array, np.float32), pixel_spacing_mm=_pixel(thick), thickness_mm=THICKNESS_MM,
        spacing_mm=SPACING_MM, config=config, precision=precision,
        reporter=None if progress is None else ProgressReporter(progress),
    )  # fmt: skip
    return result, time.perf_counter() - t0


def _apply(trained, thick, linear, precision: str):
    """The trained network applied to ``thick`` in ``precision`` (as the pipeline does); (volume, seconds)."""
    from sr4zct.method.inference import enhance_array
    from sr4zct.volume import Volume

    t0 = time.perf_counter()
    inferred = enhance_array(
        None if trained.used_identity else trained.model, np.asarray(thick.array, np.float32),
        slice_positions_mm=np.asarray(thick.geometry.slice_positions_mm, np.float64),
        pixel_spacing_mm=_pixel(thick), precision=precision,
    )  # fmt: skip
    return Volume(inferred.array, linear.geometry), time.perf_counter() - t0


# --------------------------------------------------------------------------------------------------
# Quality at equal steps
# --------------------------------------------------------------------------------------------------
def quality_rows(ground_truth, *, cases, presets, steps: int, seeds, log=print, save=None) -> list[dict]:
    """Rows of body-box gain after exactly ``steps`` steps: fp32, bf16, and fp32 training + bf16 inference."""
    from .levers import _box_psnr

    rows = []
    for case in cases:
        gt, thick, linear = simulated_case(ground_truth, case)
        linear_psnr = _box_psnr(linear, gt, THICKNESS_MM)
        for preset in presets:
            for seed in seeds:
                base = {"kind": "quality", "case": case, "preset": preset, "steps": steps, "seed": seed,
                        "linear_psnr_box": linear_psnr}  # fmt: skip
                for precision in PRECISIONS:
                    trained, train_s = _train(thick, _config(preset, steps, seed), precision)
                    variants = [(precision, precision)] + (
                        [("bf16-infer", "bf16")] if precision == "fp32" else []
                    )
                    for variant, infer_precision in variants:
                        result, infer_s = _apply(trained, thick, linear, infer_precision)
                        psnr = _box_psnr(result, gt, THICKNESS_MM)
                        row = {**base, "variant": variant, "psnr_box": psnr, "gain_db": psnr - linear_psnr,
                               "train_s": train_s, "infer_s": infer_s, "trained_steps": trained.steps,
                               "key": f"quality|{case}|{preset}|{steps}|{seed}|{variant}"}  # fmt: skip
                        log(f"quality: {case} {preset} seed {seed} {variant}: gain {row['gain_db']:+.3f} dB "
                            f"(train {train_s:.0f} s, infer {infer_s:.0f} s)")  # fmt: skip
                        rows.append(row)
                        if save is not None:
                            save([row])
    return rows


# --------------------------------------------------------------------------------------------------
# Timing, alternated
# --------------------------------------------------------------------------------------------------
def steps_per_s(thick, steps: int, precision: str) -> float:
    """Training steps per second of the ``fast`` preset in ``precision``, from step 20 on (after warm-up)."""
    seen: list[tuple[float, int]] = []

    def progress(p) -> None:
        if p.stage == "train" and p.step >= 20:
            seen.append((time.perf_counter(), p.step))

    _train(thick, _config("fast", steps, 0), precision, progress)
    (t0, s0), (t1, s1) = seen[0], seen[-1]
    return (s1 - s0) / max(t1 - t0, 1e-9)


def speed_rows(thick, *, steps: int, repeats: int, log=print) -> list[dict]:
    rows = []
    for repeat in range(repeats):
        for precision in PRECISIONS:
            rate = steps_per_s(thick, steps, precision)
            log(f"speed: repeat {repeat} {precision}: {rate:.2f} training steps/s")
            rows.append({"kind": "speed", "key": f"speed|{repeat}|{precision}", "repeat": repeat,
                         "precision": precision, "steps": steps, "steps_per_s": rate})  # fmt: skip
    return rows


def _cli_row(part: str, repeat: int, precision: str, record: dict) -> dict:
    t = record.get("timings_s") or {}
    params = record.get("parameters") or {}
    return {
        "kind": part, "key": f"{part}|{repeat}|{precision}", "repeat": repeat, "precision": precision,
        "status": record.get("status"), "wall_s": record.get("wall_s"), "train_s": t.get("train"),
        "infer_s": t.get("infer"), "steps": record.get("steps"), "device": record.get("device"),
        "recorded_precision": params.get("precision"), "peak_rss_bytes": record.get("peak_rss_bytes"),
    }  # fmt: skip


def cli_rows(part: str, series: Path, workdir: Path, *, preset: str, repeats: int, max_minutes=None,
             score=None, log=print) -> list[dict]:  # fmt: skip
    """``sr4zct enhance series --preset preset`` per repeat and precision, alternated; ``score(volume)`` adds a
    body-box gain to each row."""
    from .quality import run_enhance

    rows = []
    for repeat in range(repeats):
        for precision in PRECISIONS:
            out = workdir / f"{part}-{precision}.nrrd"
            record, result = run_enhance(
                series, out, preset=preset, device="cpu", max_minutes=max_minutes, threads=_threads(),
                extra=("--precision", precision), timeout_s=3 * 60 * (max_minutes or 10) + 120,
            )  # fmt: skip
            row = _cli_row(part, repeat, precision, record)
            if result is not None and score is not None:
                row["gain_db"] = score(result)
            log(f"{part}: repeat {repeat} {precision}: {row['status']}, wall {row['wall_s']:.0f} s, "
                f"train {row['train_s']} s, infer {row['infer_s']} s, {row['steps']} steps, gain {row.get('gain_db')}")  # fmt: skip
            rows.append(row)
            out.unlink(missing_ok=True)
    return rows


def _threads() -> int:
    from sr4zct.system.threads import cpu_thread_count

    return cpu_thread_count(leave_free=0)


# --------------------------------------------------------------------------------------------------
# Results and the report section
# --------------------------------------------------------------------------------------------------
def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with ``new`` merged in: same key replaced; a timing part in ``new`` replaces all its old rows."""
    parts = {r["kind"] for r in new if r["kind"] in TIMING_PARTS}
    keys = {r["key"] for r in new}
    kept = [r for r in old if r["kind"] not in parts and r["key"] not in keys]
    return kept + new


def load(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"rows": []}


def save(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))} - {fmt.format(max(values))})"


def _median(rows: list[dict], field: str, precision: str) -> float | None:
    values = [r.get(field) for r in rows if r.get("precision") == precision and r.get(field) is not None]
    return statistics.median(values) if values else None


def _ratio(rows: list[dict], field: str) -> str:
    a, b = _median(rows, field, "fp32"), _median(rows, field, "bf16")
    return "-" if not a or b is None else f"{b / a:.2f}"


def speed_table(rows: list[dict]) -> list[str]:
    speed = [r for r in rows if r["kind"] == "speed"]
    l291 = [r for r in rows if r["kind"] == "l291" and r.get("status") == "ok"]
    lines = ["| measure | fp32 | bf16 | bf16 / fp32 |", "| --- | --- | --- | --- |"]

    def add(label: str, part: list[dict], field: str, fmt: str) -> None:
        values = {p: _spread([r.get(field) for r in part if r["precision"] == p], fmt) for p in PRECISIONS}
        lines.append(f"| {label} | {values['fp32']} | {values['bf16']} | {_ratio(part, field)} |")

    if speed:
        add(
            f"training steps/s (`fast`, vhm-head 5/2.5, {speed[0]['steps']} steps)",
            speed,
            "steps_per_s",
            "{:.2f}",
        )
    for field, label in (("wall_s", "wall time s"), ("train_s", "training s"), ("infer_s", "inference s"),
                         ("steps", "training steps")):  # fmt: skip
        if l291:
            add(f"L291 `fast`: {label}", l291, field, "{:.0f}")
    return lines


def _quality_groups(rows: list[dict]) -> dict[tuple, dict[str, dict[int, float]]]:
    """(case, preset, steps) -> variant -> seed -> gain (seeds that have both fp32 and bf16 only)."""
    groups: dict[tuple, dict[str, dict[int, float]]] = {}
    for r in rows:
        if r["kind"] == "quality":
            key = (r["case"], r["preset"], r["steps"])
            groups.setdefault(key, {}).setdefault(r["variant"], {})[r["seed"]] = r["gain_db"]
    for variants in groups.values():
        paired = set(variants.get("fp32", {})) & set(variants.get("bf16", {}))
        for name in variants:
            variants[name] = {seed: g for seed, g in variants[name].items() if seed in paired}
    return {key: v for key, v in groups.items() if v.get("fp32")}


def quality_table(rows: list[dict]) -> list[str]:
    """Per case, preset and steps: the mean gains over the seeds run in both precisions and their difference
    (judged against the tolerance), fp32's own spread over the seeds, and bf16 inference of the fp32 network."""
    lines = [
        "| case | preset | steps | seeds | fp32 gain dB | bf16 gain dB | bf16 - fp32 | fp32 spread over seeds | "
        "fp32 training, bf16 inference - fp32 | within 0.1 dB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (case, preset, steps), v in sorted(_quality_groups(rows).items()):
        fp32, bf16 = statistics.mean(v["fp32"].values()), statistics.mean(v["bf16"].values())
        infer = v.get("bf16-infer") or {}
        infer_delta = statistics.mean(infer[s] - v["fp32"][s] for s in infer) if infer else None
        spread = max(v["fp32"].values()) - min(v["fp32"].values()) if len(v["fp32"]) > 1 else None
        ok = abs(bf16 - fp32) <= QUALITY_TOLERANCE_DB
        lines.append(
            f"| {case} | `{preset}` | {steps} | {','.join(map(str, sorted(v['fp32'])))} | {fp32:+.3f} | {bf16:+.3f} | "
            f"{bf16 - fp32:+.3f} | {'-' if spread is None else f'{spread:.3f}'} | "
            f"{'-' if infer_delta is None else f'{infer_delta:+.3f}'} | {'yes' if ok else '**no**'} |"
        )
    return lines


def balanced_table(rows: list[dict]) -> list[str]:
    runs = [r for r in rows if r["kind"] == "balanced"]
    lines = ["| precision | repeat | wall time s | training s | steps | body-box gain dB | status |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in sorted(runs, key=lambda r: (r["repeat"], PRECISIONS.index(r["precision"]))):
        gain = "-" if r.get("gain_db") is None else f"{r['gain_db']:+.2f}"
        lines.append(f"| {r['precision']} | {r['repeat']} | {_num(r.get('wall_s'))} | {_num(r.get('train_s'))} | "
                     f"{r.get('steps') or '-'} | {gain} | {r.get('status')} |")  # fmt: skip
    return lines


def _num(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def _run_lines(rows: list[dict], last_runs: dict | None = None) -> list[str]:
    """Per part, the commands (with date and machine) its rows came from; rows written before rows carried
    their command take the part's last run from ``last_runs``."""
    lines = []
    for part in PARTS:
        stamps = {(r["date"], r["command"], r["machine"]) for r in rows if r["kind"] == part and "date" in r}
        last = (last_runs or {}).get(part)
        if last and any(r["kind"] == part and "date" not in r for r in rows):
            stamps.add((last["date"], last["command"], last.get("machine", "")))
        stamps = sorted(stamps)
        runs = "; ".join(f"`{command}` ({date})" for date, command, _ in stamps) or "not run"
        machines = sorted({machine for _, _, machine in stamps})
        lines.append(f"- `{part}`: {runs}" + (f"; {', '.join(machines)}" if machines else ""))
    return lines


def section(data: dict) -> str:
    rows = data.get("rows", [])
    lines = [
        "## fp32 and bf16 on the CPU (issue 23)",
        "",
        "Generated by `python -m benchmarks.precision` from `benchmarks/precision.json`. The timing parts alternate "
        "fp32 and bf16 run by run on the same machine; quality is compared at equal steps (step-bound runs, "
        f"valid on a busy machine). Targets: L291 `fast` wall time with bf16 at most {WALL_TARGET:g} of fp32's; "
        f"bf16 body-box gain within {QUALITY_TOLERANCE_DB:g} dB of fp32's at equal steps.",
        "",
        *_run_lines(rows, data.get("runs")),
        "",
        "### Speed (median, min - max over the repeats)",
        "",
        *speed_table(rows),
        "",
        "### Quality at equal steps (vhm-head cases, 5 mm every 2.5 mm, box)",
        "",
        *quality_table(rows),
        "",
        "### `balanced` at equal wall time (vhm-head 5/2.5, budget cut so that time ends training)",
        "",
        *balanced_table(rows),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.precision", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma list of {', '.join(PARTS)} (default all); none: only rewrite the section",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="alternated repeats of each timing part (default 3)"
    )
    parser.add_argument(
        "--cases", default="full,neck-soft,skull-bone", help="quality cases (benchmarks.quality)"
    )
    parser.add_argument("--presets", default="fast,balanced", help="quality presets (default fast,balanced)")
    parser.add_argument("--quality-steps", type=int, default=3000, help="training steps of each quality run")
    parser.add_argument("--seeds", default="0", help="quality seeds, e.g. 0,1")
    parser.add_argument("--speed-steps", type=int, default=200, help="training steps per speed run")
    parser.add_argument("--balanced-minutes", type=float, default=6.0, help="time limit of the balanced runs")
    parser.add_argument(
        "--l291-minutes", type=float, default=None, help="time limit of the L291 runs (default fast's)"
    )
    parser.add_argument("--series", type=Path, default=None, help="the L291 series (default ../shared/data)")
    parser.add_argument("--ground-truth", type=Path, default=None, help="vhm-head (default ../shared/data)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--output", type=Path, default=REPORT, help="report to update (default BENCHMARKS.md)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="every part at toy sizes, into a temporary folder"
    )
    return parser


def _smoke(args: argparse.Namespace, folder: Path) -> None:
    args.repeats, args.quality_steps, args.speed_steps, args.balanced_minutes, args.l291_minutes = (
        1,
        30,
        40,
        0.3,
        0.3,
    )
    args.cases, args.presets = "full", "fast"
    args.results, args.output = folder / "precision.json", folder / "BENCHMARKS.md"


def run(args: argparse.Namespace, folder: Path) -> dict:
    from sr4zct.system.devices import set_cpu_threads

    from .machine import machine_info, machine_line
    from .quality import DATA_DIR, VHM_HEAD, crop_volume, load_ground_truth

    set_cpu_threads(_threads())
    parts = [p for p in args.parts.split(",") if p and p != "none"]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown part(s): {', '.join(sorted(unknown))}")
    data = load(args.results)
    if not parts:
        return data
    gt = load_ground_truth(args.ground_truth or VHM_HEAD)
    if args.smoke:
        gt = crop_volume(gt, crop_px=96, n_slices=60)
    command = "python -m benchmarks.precision " + " ".join(sys.argv[1:])
    stamp = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command.strip(),
             "machine": machine_line(machine_info())}  # fmt: skip

    def keep(rows: list[dict]) -> None:
        data["rows"] = merge_rows(data["rows"], [{**row, **stamp} for row in rows])
        save(args.results, data)

    for part in parts:
        keep(_run_part(part, args, gt, folder, DATA_DIR, keep))
    return data


def _run_part(part: str, args, gt, folder: Path, data_dir: Path, keep) -> list[dict]:
    from sr4zct.io import write_volume

    from .levers import _box_psnr

    if part == "quality":
        return quality_rows(gt, cases=args.cases.split(","), presets=args.presets.split(","),
                            steps=args.quality_steps, seeds=[int(s) for s in args.seeds.split(",")], save=keep)  # fmt: skip
    truth, thick, linear = simulated_case(gt, "full")
    if part == "speed":
        return speed_rows(thick, steps=args.speed_steps, repeats=args.repeats)
    series = folder / "vhm_5_2.5.nrrd"
    if not series.exists():
        write_volume(thick, series)
    if part == "l291":
        l291 = series if args.smoke else (args.series or data_dir / "L291_3mm_overlap1mm")
        return cli_rows(
            "l291", l291, folder, preset="fast", repeats=args.repeats, max_minutes=args.l291_minutes
        )
    linear_psnr = _box_psnr(linear, truth, THICKNESS_MM)
    return cli_rows("balanced", series, folder, preset="balanced", repeats=args.repeats,
                    max_minutes=args.balanced_minutes,
                    score=lambda result: _box_psnr(result, truth, THICKNESS_MM) - linear_psnr)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sr4zct-precision-") as tmp:
        folder = Path(tmp)
        if args.smoke:
            _smoke(args, folder)
        data = run(args, folder)
        text = section(data)
        write_section("precision", text, args.output)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
