"""Speed of the exact acquisition model (matrices + torch) against the naive per-column oracle.

``python -m benchmarks.bench_acquisition [--quick] [--device cpu|cuda|auto] [--profile box|gaussian]``

The fast path degrades every axial image of a ``(slices, 512, 512)`` float32 stack vertically
(``F_up(F_down(.))`` with clipping, L291 geometry: 0.7421875 mm pixels, 3 mm every 2 mm). The oracle
(:mod:`sr4zct.demo.reference`) is far too slow for the whole stack, so a sample of columns is timed and the
per-column time is extrapolated to all ``slices x columns`` columns; the result says so. The same sample
also gives the largest relative difference between the two implementations.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sr4zct.demo import reference as ref
from sr4zct.method import acquisition as acq

FULL_SHAPE = (343, 512, 512)
QUICK_SHAPE = (24, 128, 96)
L291 = {"pixel_mm": 0.7421875, "thickness_mm": 3.0, "spacing_mm": 2.0, "phase_mm": 0.0}


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stack(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """CT-like test stack in HU: smooth anatomy-sized blobs plus noise (timing does not depend on content)."""
    rng = np.random.default_rng(seed)
    _, rows, cols = shape
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    body = np.where(x**2 + (1.3 * y) ** 2 < 0.8, 40.0, -1000.0) + 300.0 * np.exp(
        -((x - 0.2) ** 2 + y**2) / 0.02
    )
    slices = body[None] * np.linspace(0.9, 1.1, shape[0])[:, None, None]
    return (slices + 20.0 * rng.standard_normal(shape)).astype(np.float32)


def run(
    *,
    quick: bool = False,
    shape: tuple[int, int, int] | None = None,
    profiles: tuple[str, ...] = ("box", "gaussian"),
    oracle_columns: int | None = None,
    device: str = "auto",
    repeats: int = 3,
    seed: int = 0,
    verbose: bool = True,
) -> dict:
    """Time the fast path and the oracle; return the figures.

    Parameters
    ----------
    quick : use a small stack and a small oracle sample (smoke test); ``shape`` overrides it.
    profiles : slice profiles to time; the first one gives the headline figures.
    oracle_columns : number of columns the oracle is timed on (default 64, quick 8).
    device : torch device for the fast path (``auto`` = CUDA when available).
    repeats : timed repetitions of the fast path after one warm-up (the best is reported).

    Returns
    -------
    dict with the headline ``fast_s`` (best warm wall time for the whole stack), ``naive_s``
    (extrapolated oracle time), ``speedup``, ``shape``, ``note``, and per-profile details under
    ``profiles``.
    """
    shape = tuple(shape or (QUICK_SHAPE if quick else FULL_SHAPE))
    n_oracle = oracle_columns or (8 if quick else 64)
    dev = _device(device)
    stack_np = _stack(shape, seed)
    stack = torch.from_numpy(stack_np).to(dev)
    n_columns_total = shape[0] * shape[2]
    rng = np.random.default_rng(seed + 1)
    sample = [(int(rng.integers(shape[0])), int(rng.integers(shape[2]))) for _ in range(n_oracle)]

    per_profile: dict[str, dict] = {}
    for profile in profiles:
        kw = dict(L291, profile=profile)
        acq._degrade_matrix_cached.cache_clear()
        acq._operator_cached.cache_clear()
        _sync(dev)
        t0 = time.perf_counter()
        out = acq.degrade(stack, **kw)
        _sync(dev)
        cold_s = time.perf_counter() - t0  # includes building the matrices
        times = []
        for _ in range(max(1, repeats)):
            _sync(dev)
            t0 = time.perf_counter()
            out = acq.degrade(stack, **kw)
            _sync(dev)
            times.append(time.perf_counter() - t0)
        fast_s = min(times)
        out_np = out.cpu().numpy()
        del out

        t0 = time.perf_counter()
        worst = 0.0
        for s, c in sample:
            image = stack_np[s]
            expected = ref.reference_degrade_image(image, axis=0, columns=[c], **kw)[:, c]
            worst = max(worst, float(np.max(np.abs(out_np[s, :, c] - expected)) / np.max(np.abs(expected))))
        oracle_per_column_s = (time.perf_counter() - t0) / len(sample)
        naive_s = oracle_per_column_s * n_columns_total
        per_profile[profile] = {
            "fast_s": fast_s,
            "fast_cold_s": cold_s,
            "fast_times_s": times,
            "oracle_columns_timed": len(sample),
            "oracle_per_column_s": oracle_per_column_s,
            "naive_s": naive_s,
            "speedup": naive_s / fast_s,
            "max_rel_difference": worst,
        }
        if verbose:
            print(
                f"{profile:8s} fast {fast_s:8.3f} s (cold {cold_s:.3f} s)   oracle {oracle_per_column_s * 1e3:7.2f} ms/column"
                f" x {n_columns_total} columns = {naive_s:9.1f} s (extrapolated from {len(sample)} columns)"
                f"   speed-up {naive_s / fast_s:8.0f}x   max rel. difference {worst:.1e}"
            )

    head = per_profile[profiles[0]]
    note = (
        f"{profiles[0]} profile, T {L291['thickness_mm']:g} mm every {L291['spacing_mm']:g} mm, "
        f"pixel {L291['pixel_mm']:g} mm, float32 on {dev.type} ({torch.get_num_threads()} CPU threads); "
        f"oracle time extrapolated from {head['oracle_columns_timed']} columns"
    )
    result = {
        "shape": list(shape),
        "device": dev.type,
        "torch_threads": torch.get_num_threads(),
        "fast_s": head["fast_s"],
        "naive_s": head["naive_s"],
        "speedup": head["speedup"],
        "max_rel_difference": max(p["max_rel_difference"] for p in per_profile.values()),
        "note": note,
        "profiles": per_profile,
    }
    if verbose:
        print(f"headline ({note}): speed-up {result['speedup']:.0f}x")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"small stack {QUICK_SHAPE} and 8 oracle columns"
    )
    parser.add_argument("--device", default="auto", help="torch device for the fast path (auto, cpu, cuda)")
    parser.add_argument(
        "--profile", choices=acq.PROFILES, action="append", help="profile(s) to time (default both)"
    )
    parser.add_argument("--oracle-columns", type=int, default=None)
    args = parser.parse_args(argv)
    return run(
        quick=args.quick,
        device=args.device,
        profiles=tuple(args.profile) if args.profile else ("box", "gaussian"),
        oracle_columns=args.oracle_columns,
    )


if __name__ == "__main__":
    main()
