"""Run the real ``sr4zct`` CLI in this (child) process and record what the pipeline measured.

``python -m benchmarks.enhance_child enhance INPUT -o OUT ...`` is exactly ``sr4zct enhance INPUT -o OUT ...``
(same argument parsing, reading, progress, writing) except that the :class:`sr4zct.run.pipeline.EnhanceResult`
timings, parameters and device, the peak GPU memory and the progress the user saw (``progress_trace``:
seconds since the call, stage, fraction, ETA) are written as JSON to the file named by the
environment variable ``SR4ZCT_BENCH_RECORD``, and ``SR4ZCT_BENCH_THREADS`` (when set) fixes the number of
CPU threads the pipeline picks by default. Before torch loads, ``OMP_WAIT_POLICY`` is set to ``PASSIVE``
unless set (:func:`sr4zct.system.threads.prepare_openmp`, the rule the CLI and the worker should apply).
"""

from __future__ import annotations

import json
import os
import sys
import time


def thin_trace(trace: list[list], keep: int = 600) -> list[list]:
    """At most ``keep`` progress records, evenly spread, the first and the last always kept."""
    if len(trace) <= keep:
        return trace
    step = (len(trace) - 1) / (keep - 1)
    return [trace[round(i * step)] for i in range(keep)]


def _install_recorder(record_path: str) -> None:
    import sr4zct.run.pipeline as pipeline

    original = pipeline.enhance_file

    def enhance_file(*args, **kwargs):
        t0 = time.monotonic()
        trace: list[list] = []
        shown = kwargs.get("progress")

        def progress(p):  # what the user is shown: (seconds since the call, stage, fraction, ETA)
            trace.append([time.monotonic() - t0, p.stage, p.fraction, p.eta_s])
            if shown is not None:
                shown(p)

        kwargs["progress"] = progress
        result = original(*args, **kwargs)
        wall = time.monotonic() - t0
        timings = {k: float(v) for k, v in result.timings_s.items()}
        staged = sum(v for k, v in timings.items() if k in ("prepare", "train", "infer", "write"))
        if "total" in timings:
            staged = timings["total"] + timings.get("write", 0.0)
        record = {
            "timings_s": {"read": max(wall - staged, 0.0), **timings},
            "enhance_file_s": wall,
            "parameters": dict(result.parameters),
            "device": result.device,
            "warnings": [str(w) for w in getattr(result, "warnings", []) or []],
            "output_shape": list(result.volume.array.shape),
            "progress_trace": thin_trace(trace),
        }
        try:
            import torch

            if torch.cuda.is_available():
                record["peak_gpu_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        except ImportError:
            pass
        with open(record_path, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        return result

    pipeline.enhance_file = enhance_file


def _pin_threads(n_threads: int) -> None:
    """Make the pipeline's default CPU thread choice ``n_threads``.

    ``sr4zct.system.devices.set_cpu_threads()`` leaves out the cores other processes use at start-up; pinning
    keeps the timings comparable between runs whatever else the machine did at that moment.
    """
    import sr4zct.system.devices as devices

    original = devices.set_cpu_threads

    def set_cpu_threads(n: int | None = None) -> int:
        return original(n_threads if n is None else n)

    devices.set_cpu_threads = set_cpu_threads


def main(argv: list[str] | None = None) -> int:
    from sr4zct.system.threads import prepare_openmp

    prepare_openmp()  # before torch loads: idle OpenMP threads wait passively (see sr4zct.system.threads)
    record_path = os.environ.get("SR4ZCT_BENCH_RECORD")
    if record_path:
        _install_recorder(record_path)
    threads = os.environ.get("SR4ZCT_BENCH_THREADS")
    if threads:
        _pin_threads(int(threads))
    from sr4zct.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
