"""Cohort scale: many series enhanced with one ledger, one model per protocol, on one machine or Ray.

The command line is ``sr4zct batch`` (docs/batch.md); the same from Python::

    from sr4zct.batch import Batch, discover_jobs
    from sr4zct.run.options import EnhanceOptions

    jobs = discover_jobs(["cohort/"], exclude=["out"])
    result = Batch("out", jobs, EnhanceOptions(preset="fast")).run()
    print(result.exit_code, [row["status"] for row in result.rows])

Modules (one job each): ``jobs`` (a job, its output name, shards), ``discovery`` (DICOM series and image
files under folders), ``manifest`` (jobs from a CSV), ``ledger`` (batch.jsonl, summary.csv), ``plan``
(run or skip, from the ledger), ``protocol`` (which jobs share a model), ``runner`` (:class:`Batch`),
``local_engine`` and ``ray_engine`` (where the jobs run).
"""

from sr4zct.batch.discovery import discover_jobs
from sr4zct.batch.jobs import FORMATS, BatchJob, parse_shard, select_shard
from sr4zct.batch.ledger import Ledger
from sr4zct.batch.local_engine import LocalEngine
from sr4zct.batch.manifest import read_manifest
from sr4zct.batch.protocol import Protocol
from sr4zct.batch.runner import EXIT_ALL_DONE, EXIT_SOME_FAILED, Batch, BatchResult

__all__ = [
    "EXIT_ALL_DONE",
    "EXIT_SOME_FAILED",
    "FORMATS",
    "Batch",
    "BatchJob",
    "BatchResult",
    "Ledger",
    "LocalEngine",
    "Protocol",
    "discover_jobs",
    "parse_shard",
    "read_manifest",
    "select_shard",
]
