"""Run the graph in-process against a persistent Dagster instance (what the CLI and the demo do).

Does synchronously what the landing sensor and the daemon do, so the runs and materializations are
visible afterwards in the UI started with the same ``DAGSTER_HOME``. Any number of ``hca ingest`` processes
and the sensor may run at once: they claim in turn under the claim lock, each batch is run by the one
process holding its run lock, and a batch whose run died is run again by the next of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import PARTITION_NAME_TAG
from sqlalchemy.exc import IntegrityError

from hca_assets._infra.locks import FileLock
from hca_assets.config import Settings
from hca_assets.definitions import build_defs
from hca_assets.orchestration.dagster_home import dagster_home
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.sensors.landing import (
    IN_PROGRESS,
    LOCK_TAG,
    BatchState,
    BatchStatus,
    batch_statuses,
    by_priority,
    priority_tags,
    run_died,
    sweep,
)
from hca_assets.sensors.run_status import record_run
from hca_assets.sources.claims import claim_lock, run_lock

__all__ = ["BatchRun", "ingest_pending", "open_instance", "outstanding"]

_INFO_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
_INDEX_LOCK = ".index.lock"


@dataclass(frozen=True)
class BatchRun:
    batch: str
    run_id: str
    success: bool
    note: str = ""  # why it ran again (its earlier run died or failed), for people


def open_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance under :func:`dagster_home`; processes that open a new one at the same time take
    turns, so that only one creates its storage."""
    home = dagster_home(settings)
    with FileLock(home / ".hca-open.lock"):
        os.environ["DAGSTER_HOME"] = str(home)
        return dg.DagsterInstance.get()


def _settled(instance: dg.DagsterInstance, batch: str) -> bool:
    """Whether the batch's latest run succeeded or is under way (read again once its run lock is ours)."""
    latest = instance.get_runs(dg.RunsFilter(tags={PARTITION_NAME_TAG: batch}), limit=1)
    return bool(latest) and latest[0].status in (dg.DagsterRunStatus.SUCCESS, *IN_PROGRESS)


def ingest_pending(settings: Settings, instance: dg.DagsterInstance, *, retry_failed: bool = False) -> list[BatchRun]:
    """Claim the landing zone, register new batches and materialize every batch that needs a run (new, or
    its run died; also those whose run failed if ``retry_failed``), highest priority first, then the index and
    evaluation over all batches (what the automation sensor does under the daemon)."""
    raw = Path(settings.raw_batches)
    wanted = {BatchState.NEEDS_RUN, BatchState.FAILED} if retry_failed else {BatchState.NEEDS_RUN}
    taken: list[tuple[BatchStatus, FileLock]] = []
    settings.ensure_restricted()  # before the lock and the claim create anything under it
    with claim_lock(raw) as lock:
        statuses = sweep(settings, instance, lock)
        _register(instance, [s.key for s in statuses if not s.registered])
        for status in statuses:
            if status.state in wanted and (held := run_lock(raw, status.key)).acquire(blocking=False):
                if _settled(instance, status.key):  # another process finished or started it since the sweep
                    held.release()
                    continue
                taken.append((status, held))
    index_due = bool(taken) or _index_run_died(instance)
    defs = build_defs(settings)
    job = defs.resolve_job_def("ingest_job")
    runs = []
    by_key = {status.key: (status, held) for status, held in taken}
    storage = SettingsResource.from_settings(settings)
    try:
        for key, tags in by_priority([(key, priority_tags(settings, key)) for key in by_key]):
            status, held = by_key[key]
            result = job.execute_in_process(instance=instance, partition_key=status.key, raise_on_error=False,
                                            run_config=_INFO_LOGS, tags={LOCK_TAG: str(held.path), **tags})
            held.release()
            run = instance.get_run_by_id(result.run_id)
            if run_died(run):  # type: ignore[arg-type]  # Ctrl-C: we stop here too
                raise KeyboardInterrupt
            # what the daemon's run-status sensors do: the batch's stages into `runs` (the ledger's and marts' input)
            record_run(instance, run, storage)  # type: ignore[arg-type]
            again = {BatchState.FAILED: "retried after", BatchState.NEEDS_RUN: "resumed after"}[status.state]
            runs.append(BatchRun(status.key, result.run_id, result.success,
                                 f"{again} {status.note}" if status.run_id else ""))
    finally:
        for _, held in taken:
            held.release()
    if index_due:
        with FileLock(raw / _INDEX_LOCK) as held:
            result = defs.resolve_job_def("index_job").execute_in_process(
                instance=instance, raise_on_error=False, run_config=_INFO_LOGS, tags={LOCK_TAG: str(held.path)}
            )
        runs.append(BatchRun("(all batches: index + evaluation)", result.run_id, result.success))
    return runs


def outstanding(settings: Settings, instance: dg.DagsterInstance) -> list[BatchStatus]:
    """Batches not done: failed, in progress elsewhere, handed to the daemon, or waiting for a run."""
    statuses = batch_statuses(instance, Path(settings.raw_batches), handoff_seconds=settings.handoff_seconds,
                              max_resumes=settings.max_resumes)
    return [s for s in statuses if s.state is not BatchState.DONE]


def _register(instance: dg.DagsterInstance, keys: list[str]) -> None:
    """Register partitions; the landing sensor's daemon may be registering the same ones right now."""
    try:
        instance.add_dynamic_partitions(INGEST_BATCHES, keys)
    except IntegrityError:
        instance.add_dynamic_partitions(INGEST_BATCHES, keys)  # the second call skips those already there


def _index_run_died(instance: dg.DagsterInstance) -> bool:
    latest = instance.get_runs(dg.RunsFilter(job_name="index_job"), limit=1)
    return bool(latest) and run_died(latest[0])
