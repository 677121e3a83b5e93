"""Run the graph in-process against a persistent Dagster instance (what the CLI and the demo do).

Does synchronously what the landing sensor and the daemon do, so the runs and materializations are
visible afterwards in the UI started with the same ``DAGSTER_HOME``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from hca_assets.config import Settings
from hca_assets.definitions import build_defs
from hca_assets.partitions import INGEST_BATCHES
from hca_assets.sensors import claim_pending

__all__ = ["BatchRun", "ingest_pending", "open_instance"]

_INFO_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass(frozen=True)
class BatchRun:
    batch: str
    run_id: str
    success: bool


def open_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance under ``<data>/dagster_home`` (or ``$DAGSTER_HOME`` if set)."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def ingest_pending(settings: Settings, instance: dg.DagsterInstance) -> list[BatchRun]:
    """Claim the landing zone, register new batches, materialize each one's assets, then the index and
    evaluation over all batches (what the automation sensor does under the daemon)."""
    registered = set(instance.get_dynamic_partitions(INGEST_BATCHES))
    pending = claim_pending(settings, registered)
    if pending:
        instance.add_dynamic_partitions(INGEST_BATCHES, pending)
    defs = build_defs(settings)
    job = defs.resolve_job_def("ingest_job")
    runs = []
    for key in pending:
        result = job.execute_in_process(
            instance=instance, partition_key=key, raise_on_error=False, run_config=_INFO_LOGS
        )
        runs.append(BatchRun(key, result.run_id, result.success))
    if pending:
        result = defs.resolve_job_def("index_job").execute_in_process(
            instance=instance, raise_on_error=False, run_config=_INFO_LOGS
        )
        runs.append(BatchRun("(all batches: index + evaluation)", result.run_id, result.success))
    return runs
