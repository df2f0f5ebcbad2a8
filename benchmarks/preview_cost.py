"""What the live preview costs: ``python -m benchmarks.preview_cost``.

Runs ``fast`` enhancements with ``--preview`` on real data (a crop of the L291 series, and vhm-head with a
simulated 5 mm / 2.5 mm acquisition) and reports the seconds spent rendering and writing previews against
the training time (target: at most 5 %), the number of previews and how far apart they came. The figures go
to stdout and into BENCHMARKS.md between ``<!-- preview:begin -->`` and ``<!-- preview:end -->``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.sections import write_section

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data"
L291_DIR = DATA / "L291_3mm_overlap1mm"
VHM_HEAD = DATA / "vhm-head" / "vhm_head_1mm.nii.gz"
TARGET_SHARE = 0.05


def _l291_crop(folder: Path) -> Path:
    import sr4zct

    volume = sr4zct.read_volume(L291_DIR)
    g = volume.geometry
    k, r, c = slice(120, 220), slice(110, 430), slice(96, 416)
    axes = np.asarray(g.axes_lps)
    origin = np.asarray(g.origin_lps) + (k.start * g.slice_spacing_mm * axes[0] + r.start * g.pixel_spacing_mm[0] * axes[1]
                                         + c.start * g.pixel_spacing_mm[1] * axes[2])  # fmt: skip
    array = np.ascontiguousarray(volume.array[k, r, c])
    geometry = sr4zct.make_geometry(array.shape, slice_spacing_mm=g.slice_spacing_mm, pixel_spacing_mm=g.pixel_spacing_mm,
                                    slice_thickness_mm=3.0, origin_lps=tuple(origin), axes_lps=g.axes_lps)  # fmt: skip
    path = folder / "l291_crop.nrrd"
    sr4zct.write_volume(sr4zct.Volume(array, geometry), path)
    return path


def _vhm_case(folder: Path) -> Path:
    import sr4zct
    from sr4zct.demo.evaluation import aligned_phase_mm, simulate_acquisition

    truth = sr4zct.read_volume(VHM_HEAD, thickness_mm=1.0)
    thick = simulate_acquisition(truth, 5.0, 2.5, phase_mm=aligned_phase_mm(5.0, 2.5, 1.0))
    path = folder / "vhm_5_2.5.nrrd"
    sr4zct.write_volume(thick, path)
    return path


def measure(path: Path, folder: Path, max_minutes: float) -> dict:
    """One ``fast`` run with a PNG preview: its timings and the preview events."""
    import sr4zct

    events: list[dict] = []
    t0 = time.monotonic()
    result = sr4zct.enhance_file(
        path, folder / f"{path.stem}_out.nrrd", preset="fast", device="cpu", max_minutes=max_minutes,
        preview_path=folder / f"{path.stem}_preview.png", on_preview=lambda e: events.append({**e, "t": time.monotonic() - t0}),
    )  # fmt: skip
    times = [e["t"] for e in events]
    gaps = np.diff(times) if len(times) > 1 else np.array([0.0])
    return {
        "case": path.stem,
        "train_s": result.timings_s["train"],
        "preview_s": result.timings_s.get("preview", 0.0),
        "previews": len(events),
        "max_gap_s": float(gaps.max()),
        "steps": int(result.parameters["steps"]),
        "gain_db": float(result.parameters["validation_gain_db"]),
    }


def section(rows: list[dict], command: str) -> str:
    lines = [
        "## Live preview cost",
        "",
        f"`{command}` ({time.strftime('%Y-%m-%d')}; `fast`, CPU, `--preview` PNG). Target: previews take at most "
        f"{100 * TARGET_SHARE:g} % of training time.",
        "",
        "| case | training s | preview s | share | previews | longest gap s | steps | validation gain dB | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        share = r["preview_s"] / max(r["train_s"], 1e-9)
        lines.append(
            f"| {r['case']} | {r['train_s']:.0f} | {r['preview_s']:.1f} | {100 * share:.1f} % | {r['previews']} | "
            f"{r['max_gap_s']:.0f} | {r['steps']} | {r['gain_db']:+.2f} | {'yes' if share <= TARGET_SHARE else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.preview_cost", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--max-minutes", type=float, default=3.0, help="time cap of each run (default 3)")
    parser.add_argument("--no-report", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    if not L291_DIR.is_dir() or not VHM_HEAD.is_file():
        print(f"needs the real data in {DATA}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sr4zct-preview-bench-") as tmp:
        folder = Path(tmp)
        rows = [measure(case(folder), folder, args.max_minutes) for case in (_l291_crop, _vhm_case)]
    text = section(
        rows,
        "python -m benchmarks.preview_cost"
        + (f" --max-minutes {args.max_minutes:g}" if args.max_minutes != 3.0 else ""),
    )
    print(text)
    if not args.no_report:
        write_section("preview", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
