"""Cohort benchmark: ``sr4zct batch`` with one model per protocol against training each series.

``python -m benchmarks.cohort`` builds a small cohort from the real data in ``../shared/data``:

* crops of the L291 DICOM series (3 mm every 2 mm, 0.74 mm pixels; no ground truth), written as NRRD with
  the thickness recorded;
* crops of vhm-head (1 mm ground truth) with a 5 mm / 2.5 mm acquisition simulated by
  :func:`sr4zct.demo.evaluation.simulate_acquisition` (one protocol), scored with
  :func:`sr4zct.demo.evaluation.score` against their ground truth,

then runs the real command line twice on it, ``sr4zct batch --reuse-model none`` (every series trains its
own model) and ``sr4zct batch`` (``--reuse-model protocol``: one model per protocol), and reports the wall
time of each batch, the body-box PSNR of every vhm-head crop under both (and linear interpolation's), and
how far the L291 results of the two runs are apart. The figures go to stdout and into BENCHMARKS.md between
``<!-- cohort:begin -->`` and ``<!-- cohort:end -->`` (the section is appended when absent).

About 15 minutes on a 2-core CPU with the defaults (7 crops per protocol, ``fast`` preset capped at 0.8
min per job); ``--crops 2 --max-minutes 0.2 --no-report`` is a quick check.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
L291_DIR = DATA / "L291_3mm_overlap1mm"
VHM_HEAD = DATA / "vhm-head" / "vhm_head_1mm.nii.gz"
REPORT = REPO_ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- cohort:begin -->", "<!-- cohort:end -->"  # benchmarks.sections.markers("cohort")

VHM_THICKNESS_MM, VHM_SPACING_MM = 5.0, 2.5


def crop(volume, z0: int, nz: int, y0: int, x0: int, size: int):
    """A sub-volume (``nz`` slices from ``z0``, ``size`` x ``size`` pixels from ``(y0, x0)``) that keeps its
    physical position; slices regularly spaced as in the source."""
    from sr4zct.volume import Volume

    g = volume.geometry
    axes = np.asarray(g.axes_lps, dtype=float)
    spacing = np.asarray(g.spacing_mm, dtype=float)
    positions = np.asarray(g.slice_positions_mm, dtype=float)
    shift = axes[0] * (positions[z0] - positions[0]) + axes[1] * y0 * spacing[1] + axes[2] * x0 * spacing[2]
    array = np.ascontiguousarray(volume.array[z0 : z0 + nz, y0 : y0 + size, x0 : x0 + size])
    geometry = dataclasses.replace(
        g,
        shape=array.shape,
        origin_lps=tuple(float(v) for v in np.asarray(g.origin_lps) + shift),
        slice_positions_mm=tuple(float(p - positions[z0]) for p in positions[z0 : z0 + nz]),
        irregular_positions=(),
        extra={},
    )
    return Volume(array, geometry, {})


def regions(
    n: int, shape: tuple[int, int, int], nz: int, size: int, spread_px: int
) -> list[tuple[int, int, int]]:
    """``n`` crop corners ``(z0, y0, x0)`` spread over z and around the image centre."""
    nzs, ny, nx = shape
    out = []
    for k in range(n):
        z0 = round(k * (nzs - nz) / max(1, n - 1))
        angle = 2 * np.pi * k / max(1, n)
        y0 = int(np.clip((ny - size) // 2 + spread_px * np.sin(angle), 0, ny - size))
        x0 = int(np.clip((nx - size) // 2 + spread_px * np.cos(angle), 0, nx - size))
        out.append((z0, y0, x0))
    return out


def build_cohort(folder: Path, crops: int, size: int) -> dict:
    """Write the cohort's NRRD files into ``folder``; returns the vhm-head ground truths and thick inputs."""
    from sr4zct.demo.evaluation import aligned_phase_mm, simulate_acquisition
    from sr4zct.io import read_volume, write_volume

    l291 = read_volume(L291_DIR)
    for k, (z0, y0, x0) in enumerate(regions(crops, l291.array.shape, 40, size, 60)):
        part = crop(l291, z0, 40, y0, x0, size)
        part = dataclasses.replace(part, array=part.array.astype(np.int16))
        write_volume(part, folder / "l291" / f"crop{k}.nrrd")  # the geometry holds the 3 mm thickness
    del l291
    head = read_volume(VHM_HEAD, slice_axis=0)
    truth = {}
    phase = aligned_phase_mm(VHM_THICKNESS_MM, VHM_SPACING_MM, float(head.geometry.slice_spacing_mm))
    for k, (z0, y0, x0) in enumerate(regions(crops, head.array.shape, 100, size, 40)):
        gt = crop(head, z0, 100, y0, x0, size)
        gt = dataclasses.replace(gt, array=gt.array.astype(np.float32))
        thick = simulate_acquisition(gt, VHM_THICKNESS_MM, VHM_SPACING_MM, "box", phase)
        thick = dataclasses.replace(thick, array=np.rint(thick.array).astype(np.int16), metadata={})
        path = write_volume(thick, folder / "vhm" / f"crop{k}.nrrd")
        truth[str(Path(path).resolve())] = (gt, thick)
    return truth


def run_batch(cohort: Path, outdir: Path, reuse: str, max_minutes: float) -> tuple[float, int, str]:
    """``sr4zct batch`` as a subprocess; returns (wall seconds, exit code, stderr tail)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "SR4ZCTModule"), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable, "-m", "sr4zct", "batch", str(cohort), "-o", str(outdir), "--reuse-model", reuse,
        "--preset", "fast", "--max-minutes", f"{max_minutes:g}", "--device", "cpu", "--seed", "0",
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    return time.monotonic() - t0, proc.returncode, proc.stderr[-2000:]


def ledger(outdir: Path) -> dict[str, dict]:
    from sr4zct.batch import Ledger

    return {r["input"]: r for r in Ledger(outdir).latest().values()}


def scores(truth: dict, each: dict, shared: dict) -> list[dict]:
    from sr4zct.demo.evaluation import interpolate_baseline, score
    from sr4zct.io import read_volume

    rows = []
    for path, (gt, thick) in sorted(truth.items()):
        row = {"crop": Path(path).stem}
        row["linear"] = score(interpolate_baseline(thick, "linear"), gt, VHM_THICKNESS_MM)["psnr_db"]
        for name, records in (("each", each), ("shared", shared)):
            record = records.get(path, {})
            if record.get("status") == "done":
                row[name] = score(read_volume(record["output"]), gt, VHM_THICKNESS_MM)["psnr_db"]
                row[f"{name}_role"] = record["model_role"]
                row[f"{name}_steps"] = record.get("training_steps")
        rows.append(row)
    return rows


def l291_agreement(each: dict, shared: dict) -> list[dict]:
    """Per L291 crop: mean |shared - each| in HU over the body (HU > -500), and the PSNR between them."""
    from sr4zct.io import read_volume

    rows = []
    for path, record in sorted(each.items()):
        if (
            "/l291/" not in path
            or record.get("status") != "done"
            or shared.get(path, {}).get("status") != "done"
        ):
            continue
        a = read_volume(record["output"]).array.astype(np.float32)
        b = read_volume(shared[path]["output"]).array.astype(np.float32)
        body = a > -500
        rows.append(
            {"crop": Path(path).stem, "mean_abs_hu": float(np.abs(a - b)[body].mean()), "role": shared[path]["model_role"],
             "each_gain_db": record.get("validation_gain_db")}
        )  # fmt: skip
    return rows


def section(figures: dict) -> str:
    """The BENCHMARKS.md section (Markdown, between the markers)."""
    f = figures
    lines = [
        BEGIN,
        "## Cohort: one model per protocol (`sr4zct batch`)",
        "",
        f"Generated by `{f['command']}` on {f['date']} ({f['machine']}; {f['versions']}). Timings on a shared "
        "CPU are noisy (other work ran on the machine).",
        "",
        f"Cohort: {f['crops']} crops of L291 (DICOM, 3 mm every 2 mm, 0.74 mm pixels, {f['size']} x {f['size']} "
        f"x 40 slices, written as NRRD with the thickness) and {f['crops']} crops of vhm-head ({f['size']} x "
        f"{f['size']} x 100 slices of 1 mm ground truth, 5 mm every 2.5 mm simulated, box profile): 2 protocols, "
        f"{2 * f['crops']} series. Each job: `--preset fast --max-minutes {f['max_minutes']:g} --device cpu`, "
        "one job at a time (local engine, a process per job).",
        "",
        "| run | wall time | trainings | vhm-head PSNR (mean of crops) | gain over linear |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, label in (
        ("each", "`--reuse-model none` (train each)"),
        ("shared", "`--reuse-model protocol`"),
    ):
        lines.append(
            f"| {label} | {f[name + '_s'] / 60:.1f} min | {f[name + '_trainings']} | {f[name + '_psnr']:.2f} dB | "
            f"{f[name + '_psnr'] - f['linear_psnr']:+.2f} dB |"
        )
    lines += [
        f"| linear interpolation | - | - | {f['linear_psnr']:.2f} dB | - |",
        "",
        f"**Protocol reuse: {f['speedup']:.2f}x faster** (target >= 3x: {'met' if f['speedup'] >= 3 else '**NOT met**'}); "
        f"quality difference (shared - each) on vhm-head: mean {f['psnr_delta_mean']:+.2f} dB, range "
        f"{f['psnr_delta_min']:+.2f} to {f['psnr_delta_max']:+.2f} dB over the crops ({f['psnr_delta_applied_mean']:+.2f} dB "
        "on average over the crops that apply the shared model); on L291 (no ground truth) "
        f"the two runs' results differ by {f['l291_mean_abs_hu']:.1f} HU on average inside the body.",
        "",
        "| vhm-head crop | linear | train each (steps) | shared model (role, steps) | shared - each |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in f["vhm_rows"]:
        lines.append(
            f"| {row['crop']} | {row['linear']:.2f} | {row.get('each', float('nan')):.2f} ({row.get('each_steps')}) | "
            f"{row.get('shared', float('nan')):.2f} ({row.get('shared_role', '-')}, {row.get('shared_steps')}) | "
            f"{row.get('shared', float('nan')) - row.get('each', float('nan')):+.2f} |"
        )
    trained = [r for r in f["vhm_rows"] if r.get("shared_role") == "train"]
    lines += ["", "Body-box PSNR in dB (`sr4zct.demo.evaluation.score`)."]
    for row in trained:
        lines.append(
            f"{row['crop']} trains its own model in both runs (same series, same seed): its difference "
            f"({row['shared'] - row['each']:+.2f} dB, {row.get('each_steps')} vs {row.get('shared_steps')} training "
            "steps) is the run-to-run spread of time-capped training on this CPU, not model sharing. Each job "
            f"trains only for its {f['max_minutes']:g} min cap here, so all gains are far below a full `fast` run's."
        )
    lines.append(END)
    return "\n".join(lines)


def write_section(text: str, path: Path = REPORT) -> None:
    """Put ``text`` (which starts with BEGIN and ends with END) in place of the old section, or append it."""
    from benchmarks.sections import write_section as write_marked

    body = text.strip()
    body = body[len(BEGIN) :] if body.startswith(BEGIN) else body
    body = body[: -len(END)] if body.endswith(END) else body
    write_marked("cohort", body, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cohort", description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=int, default=7, help="crops per protocol (default 7)")
    parser.add_argument("--size", type=int, default=128, help="in-plane crop size in pixels (default 128)")
    parser.add_argument("--max-minutes", type=float, default=0.8, help="time cap of each job (default 0.8)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    parser.add_argument("--no-report", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    if not L291_DIR.is_dir() or not VHM_HEAD.is_file():
        print(
            f"benchmarks.cohort: the real data is not available ({DATA}); see ../shared/data/README.md",
            file=sys.stderr,
        )
        return 2
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sr4zct-cohort-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    truth = build_cohort(work / "cohort", args.crops, args.size)
    print(f"cohort of {2 * args.crops} series built in {time.monotonic() - t0:.0f} s in {work}", flush=True)
    figures: dict = {"crops": args.crops, "size": args.size, "max_minutes": args.max_minutes}
    for name, reuse in (("each", "none"), ("shared", "protocol")):
        seconds, code, err = run_batch(work / "cohort", work / name, reuse, args.max_minutes)
        print(f"{name}: sr4zct batch --reuse-model {reuse}: {seconds / 60:.1f} min, exit {code}", flush=True)
        if code != 0:
            print(err, file=sys.stderr)
            return 1
        figures[name + "_s"] = seconds
    each, shared = ledger(work / "each"), ledger(work / "shared")
    figures["each_trainings"] = sum(r["model_role"] in ("own", "train") for r in each.values())
    figures["shared_trainings"] = sum(r["model_role"] == "train" for r in shared.values())
    vhm_rows = scores(truth, each, shared)
    figures["vhm_rows"] = vhm_rows
    deltas = [r["shared"] - r["each"] for r in vhm_rows]
    applied = [r["shared"] - r["each"] for r in vhm_rows if r.get("shared_role") == "apply"]
    figures["psnr_delta_applied_mean"] = float(np.mean(applied)) if applied else float("nan")
    figures.update(
        speedup=figures["each_s"] / figures["shared_s"],
        linear_psnr=float(np.mean([r["linear"] for r in vhm_rows])),
        each_psnr=float(np.mean([r["each"] for r in vhm_rows])),
        shared_psnr=float(np.mean([r["shared"] for r in vhm_rows])),
        psnr_delta_mean=float(np.mean(deltas)), psnr_delta_min=float(min(deltas)), psnr_delta_max=float(max(deltas)),
    )  # fmt: skip
    agreement = l291_agreement(each, shared)
    figures["l291_mean_abs_hu"] = float(np.mean([r["mean_abs_hu"] for r in agreement]))
    figures["l291_rows"] = agreement
    from benchmarks.machine import machine_info, machine_line, versions_line

    info = machine_info()
    figures.update(
        command="python -m benchmarks.cohort" + ("" if argv is None else " " + " ".join(argv)),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine=machine_line(info),
        versions=versions_line(info),
    )  # fmt: skip
    if argv is None and len(sys.argv) > 1:
        figures["command"] = "python -m benchmarks.cohort " + " ".join(sys.argv[1:])
    (work / "figures.json").write_text(json.dumps(figures, indent=1), encoding="utf-8")
    text = section(figures)
    print(text)
    print(json.dumps({k: v for k, v in figures.items() if not k.endswith("rows")}, indent=1))
    if not args.no_report:
        write_section(text)
        print(f"wrote the cohort section of {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
