"""CPU thread rule: training steps/s of the ``fast`` network on 1 and N threads, alone and beside spinners.

``python -m benchmarks.run --settings none --threads-rule`` runs, for every number of competing processes
(``--thread-competitors``, default 0 and 1 CPU-bound ``while True: pass`` processes) and every thread count
(1 .. the usable cores), ``--thread-repeats`` child processes (interleaved, so that a change in the shared
machine's load hits every variant alike). Each child runs the real training loop
(:func:`sr4zct.method.training.train_model`, ``fast`` preset: 8 x 32 network, batch 16 of 64 x 64 patches,
validation every 100 steps) on axial images of the ground truth and reports the steps/s between its 20th
step and the end of a fixed time window (start-up and the first steps excluded).

The child is ``python -m benchmarks.threads CHILD IMAGES.npy THREADS SECONDS``; it prints one JSON line.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WARMUP_STEPS = 20
SPINNER = "while True: pass"


def load_images(ground_truth: Path, n_images: int = 48) -> np.ndarray:
    """``n_images`` central axial slices of the ground truth (HU float32), as the training input."""
    from sr4zct.io import read_volume

    array = np.asarray(read_volume(ground_truth, slice_axis=0).array, dtype=np.float32)
    z0 = max(0, (array.shape[0] - n_images) // 2)
    return np.ascontiguousarray(array[z0 : z0 + n_images])


def child_rate(images: np.ndarray, threads: int, seconds: float, *, pixel_mm: float = 1.0) -> dict:
    """Run the ``fast`` training loop on ``threads`` torch threads for about ``seconds``; its step rate."""
    import torch
    from sr4zct.errors import Cancelled
    from sr4zct.method.training import TrainingConfig, train_model
    from sr4zct.run.presets import get_preset
    from sr4zct.system.progress import ProgressReporter

    torch.set_num_threads(int(threads))
    preset = get_preset("fast")
    marks: list[tuple[int, float]] = []

    def on_progress(p) -> None:
        if p.stage == "train" and p.step >= WARMUP_STEPS:
            marks.append((p.step, time.perf_counter()))

    def should_stop() -> bool:  # polled once per step; a window ends on a progress report (every 5 steps)
        return len(marks) >= 2 and marks[-1][1] - marks[0][1] >= seconds

    reporter = ProgressReporter(on_progress, should_stop=should_stop)
    config = TrainingConfig(
        steps=10**6,
        patch_px=preset.patch_px,
        batch=preset.batch,
        network="default",
        network_config=dict(preset.network_config),
        validate_every=preset.validate_every,
    )
    try:
        train_model(
            images,
            pixel_spacing_mm=(pixel_mm, pixel_mm),
            thickness_mm=5.0,
            spacing_mm=2.5,
            config=config,
            reporter=reporter,
        )
    except Cancelled:
        pass
    if len(marks) < 2:
        return {"threads": threads, "steps_per_s": None}
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    return {"threads": int(threads), "steps_per_s": (s1 - s0) / max(t1 - t0, 1e-9), "steps": s1 - s0}


def _spawn_spinners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", SPINNER]) for _ in range(count)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()


def measure_rate(
    images_path: Path,
    threads: int,
    seconds: float,
    *,
    wait_policy: str | None = None,
    env: dict | None = None,
) -> float | None:
    """Steps/s of one child process (``None`` when it failed); ``wait_policy`` sets ``OMP_WAIT_POLICY``."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.threads",
        "CHILD",
        str(images_path),
        str(threads),
        f"{seconds:g}",
    ]
    env = dict(os.environ if env is None else env)
    env.pop("OMP_WAIT_POLICY", None)
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1], check=False
    )
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line).get("steps_per_s")
    return None


def summarise(rates: list[float]) -> dict:
    """Median, min and max of repeated rates, and the spread ``(max - min) / median``."""
    if not rates:
        return {"rates": [], "median": None, "min": None, "max": None, "spread": None}
    med = statistics.median(rates)
    return {
        "rates": [round(r, 3) for r in rates],
        "median": med,
        "min": min(rates),
        "max": max(rates),
        "spread": (max(rates) - min(rates)) / med if med > 0 else None,
    }


def parse_variant(text: str) -> tuple[int, str | None]:
    """``"2"`` -> ``(2, None)``; ``"2:passive"`` -> ``(2, "PASSIVE")`` (threads, ``OMP_WAIT_POLICY``)."""
    threads, _, policy = text.strip().partition(":")
    if not threads.isdigit() or int(threads) < 1 or policy.lower() not in ("", "active", "passive"):
        raise ValueError(f"thread variant {text!r} is not THREADS or THREADS:passive / THREADS:active")
    return int(threads), (policy.upper() or None)


def variant_name(threads: int, policy: str | None) -> str:
    return f"{threads}" + (f":{policy.lower()}" if policy else "")


def thread_rows(
    ground_truth: Path,
    *,
    competitors: list[int],
    variants: list[tuple[int, str | None]],
    repeats: int = 3,
    seconds: float = 12.0,
    log=print,
    env: dict | None = None,
) -> list[dict]:
    """One row per (competing processes, variant) with the repeated steps/s (see the module docstring)."""
    images = load_images(ground_truth)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sr4zct-threads-") as tmp:
        path = Path(tmp) / "images.npy"
        np.save(path, images)
        for n_comp in competitors:
            rates: dict[tuple, list[float]] = {v: [] for v in variants}
            loads: list[float] = []
            spinners = _spawn_spinners(n_comp)
            try:
                time.sleep(0.5 if n_comp else 0.0)
                for rep in range(repeats):
                    for threads, policy in variants if rep % 2 == 0 else variants[::-1]:
                        rate = measure_rate(path, threads, seconds, wait_policy=policy, env=env)
                        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
                        if load is not None:
                            loads.append(load)
                        log(
                            f"threads: {n_comp} competing, {variant_name(threads, policy)}, repeat {rep + 1}: "
                            f"{rate if rate is None else round(rate, 2)} steps/s (load {load})"
                        )
                        if rate is not None:
                            rates[(threads, policy)].append(rate)
            finally:
                _stop(spinners)
            for threads, policy in variants:
                stats = summarise(rates[(threads, policy)])
                name = variant_name(threads, policy)
                rows.append(
                    {
                        "kind": "threads",
                        "key": f"threads|fast|cpu|{n_comp}|{name}",
                        "preset": "fast",
                        "competitors": n_comp,
                        "threads": threads,
                        "wait_policy": policy,
                        "variant": name,
                        "window_s": seconds,
                        "repeats": repeats,
                        "load_avg_1min": [round(v, 2) for v in loads],
                        "status": "ok" if stats["median"] else "failed: no rate measured",
                        "steps_per_s_all": stats["rates"],
                        "steps_per_s_median": stats["median"],
                        "steps_per_s_min": stats["min"],
                        "steps_per_s_max": stats["max"],
                        "steps_per_s_spread": stats["spread"],
                    }
                )
    return rows


def best_rule(rows: list[dict]) -> dict[int, str]:
    """For each number of competing processes, the variant with the highest median rate."""
    best: dict[int, tuple[float, str]] = {}
    for r in rows:
        med = r.get("steps_per_s_median")
        if r.get("kind") != "threads" or med is None:
            continue
        comp = int(r["competitors"])
        if comp not in best or float(med) > best[comp][0]:
            best[comp] = (float(med), str(r.get("variant", r["threads"])))
    return {comp: variant for comp, (_, variant) in sorted(best.items())}


def _child(argv: list[str]) -> int:
    images = np.load(argv[0])
    print(json.dumps(child_rate(images, int(argv[1]), float(argv[2]))), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "CHILD":
        sys.exit(_child(sys.argv[2:]))
    sys.exit("usage: python -m benchmarks.run --settings none --threads-rule")
