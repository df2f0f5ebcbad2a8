"""The Ray engine: each job is a Ray task that runs ``sr4zct enhance ... --events`` in a process of its own
on whichever node Ray picks, with ``num_cpus`` / ``num_gpus`` resources; the driver (the ``sr4zct batch``
process) collects the results as they come and writes them into the one ledger.

A task whose worker or node dies is retried by Ray (``max_retries``); a job that fails on its own (bad
input, a crash of its process) is a result, not retried. The output folder must be one that every node
sees at the same path (a shared file system), and every node needs ``sr4zct`` installed (or its
``PYTHONPATH``). Ray is an optional dependency: ``pip install "sr4zct[ray]"``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from sr4zct.errors import ParameterError, ResourceError

__all__ = ["RayEngine", "run_job_process"]


def run_job_process(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one job as ``sr4zct enhance --events`` and return ``{"started": event, "terminal": event}``
    (the Ray task's body; also callable directly).

    ``spec``: ``input_path``, ``output_path``, ``options`` (:meth:`EnhanceOptions.to_dict`).
    """
    from sr4zct.run.background import BackgroundJob
    from sr4zct.run.options import EnhanceOptions

    options = EnhanceOptions.from_dict(spec["options"])
    job = BackgroundJob(spec["input_path"], spec["output_path"], options, python_executable=sys.executable)
    job.start()
    try:
        terminal = job.wait()
    except BaseException:  # cancelled by the driver (ray.cancel raises KeyboardInterrupt here)
        job.cancel(grace_s=5.0)
        job.wait(timeout=30.0)
        raise
    return {
        "started": job.started,
        "terminal": terminal,
        "node": os.uname().nodename if hasattr(os, "uname") else "",
    }


class RayEngine:
    """Jobs as Ray tasks.

    Parameters
    ----------
    address : str, optional
        Address of a running Ray cluster (``ray://host:10001`` or ``host:6379``, or ``auto``); default: start
        a local Ray for this run (and stop it at the end).
    num_cpus, num_gpus : float
        Resources each job asks for (default 1 CPU and, when the cluster has GPUs, 1 GPU).
    max_retries : int
        How often Ray reruns a task whose worker or node died.
    init_kwargs : dict, optional
        More arguments for ``ray.init`` (e.g. ``num_cpus`` of a local Ray).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float = 1.0,
        num_gpus: float | None = None,
        max_retries: int = 3,
        init_kwargs: dict[str, Any] | None = None,
    ):
        try:
            import ray
        except ImportError:
            raise ResourceError(
                'The Ray engine needs Ray: pip install "sr4zct[ray]" (or pip install ray).'
            ) from None
        if num_cpus < 0 or (num_gpus is not None and num_gpus < 0):
            raise ParameterError("num_cpus and num_gpus must not be negative.")
        self._ray = ray
        self._started_here = False
        if not ray.is_initialized():
            kwargs = dict(init_kwargs or {})
            if address is None:  # a local Ray: its workers import this very sr4zct
                kwargs.setdefault("include_dashboard", False)
                runtime_env = dict(kwargs.get("runtime_env") or {})
                env_vars = dict(runtime_env.get("env_vars") or {})
                package_parent = str(Path(__file__).resolve().parents[2])
                paths = [package_parent, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
                env_vars.setdefault("PYTHONPATH", os.pathsep.join(dict.fromkeys(paths)))
                kwargs["runtime_env"] = {**runtime_env, "env_vars": env_vars}
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False, **kwargs)
            except Exception as exc:  # ConnectionError, RuntimeError, ValueError from ray
                raise ResourceError(f"Cannot start or reach Ray ({address or 'local'}): {exc}") from None
            self._started_here = True
        if num_gpus is None:
            num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        self.num_cpus, self.num_gpus = float(num_cpus), float(num_gpus)
        self.note = f"Ray cluster: {self._describe()}; each job asks for {self.num_cpus:g} CPU, {self.num_gpus:g} GPU."
        self._task = ray.remote(run_job_process).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=max_retries, retry_exceptions=False
        )
        self.slots = 10**6  # Ray queues the tasks; the driver hands over every job that is ready
        self._refs: dict[Any, Any] = {}  # ObjectRef -> run

    def _describe(self) -> str:
        res = self._ray.cluster_resources()
        nodes = len([n for n in self._ray.nodes() if n.get("Alive")])
        return f"{nodes} node(s), {res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU"

    @property
    def busy(self) -> int:
        return len(self._refs)

    def submit(self, run) -> None:
        spec = {
            "input_path": run.job.input_path,
            "output_path": str(run.output),
            "options": run.options.to_dict(),
        }
        self._refs[self._task.remote(spec)] = run

    def poll(self) -> list[tuple[Any, dict]]:
        """``(run, event)``: ``started`` and the terminal event of every task that ended."""
        if not self._refs:
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        out = []
        for ref in ready:
            run = self._refs.pop(ref)
            try:
                result = self._ray.get(ref)
            except Exception as exc:
                out.append((run, _task_error(self._ray, exc)))
                continue
            if result.get("started"):
                out.append((run, {**result["started"], "node": result.get("node")}))
            out.append((run, result["terminal"]))
        return out

    def cancel(self, grace_s: float = 5.0) -> None:
        for ref in list(self._refs):
            try:
                self._ray.cancel(ref, force=False)
            except Exception:  # already finished
                pass

    def close(self) -> None:
        deadline = time.monotonic() + 30.0
        while self._refs and time.monotonic() < deadline:
            time.sleep(0.2)
            self.poll()
        if self._started_here:
            self._ray.shutdown()


def _task_error(ray, exc: Exception) -> dict[str, Any]:
    from sr4zct.run.events import make_event

    if isinstance(exc, ray.exceptions.TaskCancelledError):
        return make_event("cancelled", message="Cancelled; the Ray task was stopped.", exit_code=130)
    message = " ".join(str(exc).split())[:300]
    return make_event(
        "failed", message=f"The Ray task failed ({type(exc).__name__}): {message}", code="crashed",
        detail=str(exc)[-2000:], exit_code=-1,
    )  # fmt: skip
