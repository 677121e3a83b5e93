"""The landing-zone sensor, and what it shares with ``hca ingest``: which batches need a run.

A batch needs a run when it was claimed but never run, or when its run died (killed, OOM, machine restart,
Ctrl-C): a run still in progress whose worker is gone is marked failed (tag ``hca/abandoned``, failure reason
``UNEXPECTED_TERMINATION``, as Dagster marks an interrupted run) and the batch runs again — at most
``max_resumes`` times, so that a batch that kills its worker every time does not loop. A batch whose run
failed for a reason of its own (a blocking check) is left for a person to look at.
Liveness: a run launched by ``hca ingest`` names, in tag ``hca/lock``, the lock file its process holds until
the run ends; a run launched by the daemon is alive while the process that started it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import dagster as dg
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._core.storage.tags import PARTITION_NAME_TAG, PRIORITY_TAG, RUN_FAILURE_REASON_TAG

from hca_assets._infra.locks import FileLock, is_held, process_alive
from hca_assets.config import Settings
from hca_assets.orchestration.jobs import ingest_job
from hca_assets.orchestration.partitions import INGEST_BATCHES, ingest_batches
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.sources.claims import (
    claim_lock,
    committed_batches,
    load_batch,
    mark_requested,
    recover,
    requested_at,
    run_lock,
)
from hca_assets.sources.landing_folder import LandingFolder
from hca_assets.sources.routing import batch_priority

__all__ = ["ABANDONED_TAG", "LEVEL_TAG", "LOCK_TAG", "BatchState", "BatchStatus", "batch_statuses", "by_priority",
           "priority_tags", "reap_dead_runs", "run_died", "sweep"]

ABANDONED_TAG = "hca/abandoned"
LOCK_TAG = "hca/lock"
LEVEL_TAG = "hca/priority"  # the routing level (STAT, Urgent, Routine, Research); PRIORITY_TAG holds its number
_DIED = (RunFailureReason.UNEXPECTED_TERMINATION.value, RunFailureReason.RUN_WORKER_RESTART.value)
IN_PROGRESS = (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


class BatchState(StrEnum):
    DONE = "done"
    RUNNING = "running"  # a live run, or a live ``hca ingest`` about to start one
    REQUESTED = "requested"  # handed to the daemon by the sensor, its run not created yet
    NEEDS_RUN = "needs_run"  # never run, or its last run died
    FAILED = "failed"  # its last run failed on its own: not retried automatically


@dataclass(frozen=True)
class BatchStatus:
    key: str
    state: BatchState
    registered: bool
    run_id: str | None = None  # the batch's latest run
    note: str = ""  # PHI-free, for people

    @property
    def run_key(self) -> str:
        """Sensor run key: the batch for its first run, the batch and the dead run for a resumption."""
        return f"{self.key}:after-{self.run_id}" if self.run_id else self.key


def run_died(run: dg.DagsterRun) -> bool:
    """Whether ``run`` ended because its process died or was interrupted (not because of its own failure)."""
    return run.tags.get(RUN_FAILURE_REASON_TAG) in _DIED


def run_alive(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether the process running ``run`` is alive. Runs not started by a known local process count as
    alive: queued or starting runs, and runs of a launcher with remote workers (k8s, …: Dagster's own run
    monitoring watches those). A daemon run's pid is judged on this machine: the local-first deployment."""
    if lock := run.tags.get(LOCK_TAG):
        return is_held(Path(lock))
    if run.status != dg.DagsterRunStatus.STARTED or not isinstance(instance.run_launcher, dg.DefaultRunLauncher):
        return True
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    event = records[0].event_log_entry if records else None
    if event is None or event.dagster_event is None or event.dagster_event.pid is None:
        return True
    return process_alive(event.dagster_event.pid, started_by=event.timestamp)


def reap_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every run left in progress by a dead process; returns their ids."""
    dead = [r for r in instance.get_runs(dg.RunsFilter(statuses=list(IN_PROGRESS))) if not run_alive(instance, r)]
    for run in dead:
        instance.add_run_tags(run.run_id, {ABANDONED_TAG: "its process died"})
        instance.report_run_failed(run, message="Marked failed by hca: the process running it died; the batch runs again.",
                                   job_failure_data=JobFailureData(None, RunFailureReason.UNEXPECTED_TERMINATION))
    return [r.run_id for r in dead]


def batch_statuses(instance: dg.DagsterInstance, raw: Path, *, handoff_seconds: float, max_resumes: int,
                   now: float | None = None) -> list[BatchStatus]:
    """The state of every committed batch (call :func:`reap_dead_runs` first, so that dead runs count as dead)."""
    now = time.time() if now is None else now
    registered = set(instance.get_dynamic_partitions(INGEST_BATCHES))
    latest = {p.partition: p for p in instance.get_run_partition_data(dg.RunsFilter())}
    out = []
    for key in committed_batches(raw):
        run = latest.get(key)
        state, note = BatchState.NEEDS_RUN, "never run"
        if run is not None and run.status == dg.DagsterRunStatus.SUCCESS:
            state, note = BatchState.DONE, ""
        elif is_held(run_lock(raw, key).path):
            state, note = BatchState.RUNNING, "an `hca ingest` process is running it"
        elif run is not None and run.status in IN_PROGRESS:
            state, note = BatchState.RUNNING, f"run {run.run_id} is {run.status.value}"
        elif run is not None:
            state, note = BatchState.FAILED, f"run {run.run_id} {run.status.value}"
            failed = instance.get_run_by_id(run.run_id)
            if failed is not None and run_died(failed):
                died = sum(instance.get_runs_count(dg.RunsFilter(tags={PARTITION_NAME_TAG: key, RUN_FAILURE_REASON_TAG: r}))
                           for r in _DIED)
                state, note = ((BatchState.NEEDS_RUN, f"run {run.run_id} died") if died <= max_resumes else
                               (BatchState.FAILED, f"its runs died {died} times (out of memory?): not resumed again"))
        if state is BatchState.NEEDS_RUN and (asked := requested_at(raw, key)) is not None and now - asked < handoff_seconds:
            created = instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp() if run else 0.0
            if asked > created:
                state, note = BatchState.REQUESTED, f"handed to the Dagster daemon {now - asked:.0f} s ago"
        out.append(BatchStatus(key, state, key in registered, run.run_id if run else None, note))
    return out


def priority_tags(settings: Settings, key: str) -> dict[str, str]:
    """Run tags routing batch ``key`` by priority (the queued run coordinator dequeues higher ``dagster/priority``
    first); none when no priority rule is configured."""
    if not settings.priority_rules:
        return {}
    level, number = batch_priority(load_batch(Path(settings.raw_batches), key), settings)
    return {PRIORITY_TAG: str(number), LEVEL_TAG: level}


def by_priority(keys_tags: list[tuple[str, dict[str, str]]]) -> list[tuple[str, dict[str, str]]]:
    """Batches highest priority first, then by key (oldest first): the order runs are requested and run in."""
    return sorted(keys_tags, key=lambda kt: (-int(kt[1].get(PRIORITY_TAG, "0")), kt[0]))


def sweep(settings: Settings, instance: dg.DagsterInstance, lock: FileLock) -> list[BatchStatus]:
    """Under the claim lock (``lock``, held): mark dead runs failed, commit interrupted claims, claim the
    landing zone, and return the state of every batch."""
    raw = Path(settings.raw_batches)
    reap_dead_runs(instance)
    recover(raw, lock=lock)
    LandingFolder(settings).claim(lock=lock)
    return batch_statuses(instance, raw, handoff_seconds=settings.handoff_seconds, max_resumes=settings.max_resumes)


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Claims new files in the landing zone into a new ingest batch and requests its run; "
                "re-runs batches whose run died.",
)
def landing_sensor(context: dg.SensorEvaluationContext, storage: SettingsResource) -> dg.SensorResult | dg.SkipReason:
    settings = storage.settings()
    raw = Path(settings.raw_batches)
    settings.ensure_restricted()  # before the lock and the claim create anything under it
    with claim_lock(raw) as lock:
        todo = [s for s in sweep(settings, context.instance, lock) if s.state is BatchState.NEEDS_RUN]
        for status in todo:
            mark_requested(raw, status.key)
    if not todo:
        return dg.SkipReason("no new files in the landing zone and no batch to resume")
    for status in todo:
        context.log.info(f"batch {status.key}: requesting a run ({status.note})")
    statuses = {s.key: s for s in todo}
    ordered = by_priority([(s.key, priority_tags(settings, s.key)) for s in todo])
    return dg.SensorResult(
        dynamic_partitions_requests=[ingest_batches.build_add_request([s.key for s in todo if not s.registered])],
        run_requests=[dg.RunRequest(partition_key=key, run_key=statuses[key].run_key, tags=tags) for key, tags in ordered],
    )


automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all() - dg.AssetSelection.groups("analytics"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-materializes every batch of an asset whose code_version changed (embedder, preprocessing, prompt "
                "set, de-identification profile) and what depends on it; keeps the index and the evaluation up to "
                "date once new embeddings or masks pass their checks.",
)
