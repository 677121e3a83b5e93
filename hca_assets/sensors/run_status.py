"""Run-status sensors: every run's outcome (success and failure) in the PHI-free ``audit_log`` — job, run, assets
materialized, partition, counts — and its stages (rows, seconds, outcome) in ``runs``; on failure, the alert hook
(log, or a webhook from ``HCA_ALERT_WEBHOOK``). One pair of sensors reads each run's events once for both tables.

They watch every run of the instance (``monitor_all_code_locations``), also those ``hca ingest`` runs in process.
"""

from collections import Counter
from collections.abc import Sequence

import dagster as dg
from dagster._core.execution.stats import StepEventStatus
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._utils.error import SerializableErrorInfo

from hca_assets.assets._metadata import ROW_COUNT
from hca_assets.lake import registry as tables
from hca_assets.lake.audit import RUN, AuditEvent, record
from hca_assets.lake.run_stats import StageRun, runs_table
from hca_assets.orchestration.resources import AlertWebhook, SettingsResource
from hca_assets.sensors.alerts import notify

__all__ = ["RUN_SENSORS", "record_run", "run_event", "run_failure_audit", "run_success_audit"]

OUTCOMES = {StepEventStatus.SUCCESS: "success", StepEventStatus.FAILURE: "failure", StepEventStatus.SKIPPED: "skipped"}


def _materializations(instance: dg.DagsterInstance, run_id: str) -> Sequence[dg.EventLogRecord]:
    return instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records


def record_run(instance: dg.DagsterInstance, run: dg.DagsterRun, storage: SettingsResource,
               materialized: Sequence[dg.EventLogRecord] | None = None) -> int:
    """Write the finished ``run``'s stages into ``runs`` (idempotent per run); returns the rows written.
    ``materialized``: the run's materialization records, if the caller has read them already."""
    rows: Counter[str] = Counter()
    for r in _materializations(instance, run.run_id) if materialized is None else materialized:
        event = r.event_log_entry.dagster_event
        m = r.event_log_entry.asset_materialization
        count = m.metadata.get(ROW_COUNT) if m is not None else None
        if event is not None and event.step_key and count is not None and isinstance(count.value, int):
            rows[event.step_key] += count.value
    stages = [StageRun(s.step_key, OUTCOMES.get(s.status, "incomplete") if s.status else "incomplete",
                       rows.get(s.step_key), s.start_time, s.end_time)
              for s in instance.get_run_step_stats(run.run_id)]
    table = runs_table(run.run_id, run.job_name, run.tags.get(PARTITION_NAME_TAG), stages)
    return tables.RUNS.write(storage.settings(), table, match={"run_id": run.run_id}).row_count


def run_event(instance: dg.DagsterInstance, run: dg.DagsterRun, outcome: str, *,
              materialized: Sequence[dg.EventLogRecord] | None = None, failed_steps: int | None = None) -> AuditEvent:
    """The audit row of a finished run: what it materialized and how many rows each asset reported (never data).
    ``materialized`` / ``failed_steps``: what the caller has read already (else read here)."""
    materialized = _materializations(instance, run.run_id) if materialized is None else materialized
    assets: set[str] = set()
    counts: Counter[str] = Counter()
    for r in materialized:
        m = r.event_log_entry.asset_materialization
        if m is None:
            continue
        name = m.asset_key.to_user_string()
        assets.add(name)
        rows = m.metadata.get(ROW_COUNT)
        if rows is not None and isinstance(rows.value, int):
            counts[f"{name}_rows"] += rows.value
    counts["materializations"] = len(materialized)
    checks = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [c.event_log_entry.dagster_event.asset_check_evaluation_data for c in checks
                   if c.event_log_entry.dagster_event is not None]
    counts["checks_failed"] = sum(1 for e in evaluations if not e.passed)
    if outcome == "failure":
        counts["failed_steps"] = failed_steps if failed_steps is not None else len(
            instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records)
    return AuditEvent(RUN, "run", outcome, job_name=run.job_name, run_id=run.run_id, assets=sorted(assets),
                      partition=run.tags.get(PARTITION_NAME_TAG), counts=counts)


def _root_class(error: SerializableErrorInfo) -> str:
    """The class name of the error that started the chain (Dagster wraps user errors in its own)."""
    while error.cause is not None:
        error = error.cause
    return error.cls_name or "unknown"


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitor_all_code_locations=True,
                      default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
                      description="Records every successful run in audit_log (job, assets, partition, counts) and "
                                  "its stages (rows, seconds, outcome) in runs.")
def run_success_audit(context: dg.RunStatusSensorContext, storage: SettingsResource) -> None:
    materialized = _materializations(context.instance, context.dagster_run.run_id)
    record(storage.settings(), run_event(context.instance, context.dagster_run, "success", materialized=materialized))
    record_run(context.instance, context.dagster_run, storage, materialized)


@dg.run_failure_sensor(monitor_all_code_locations=True, default_status=dg.DefaultSensorStatus.RUNNING,
                       minimum_interval_seconds=30,
                       description="Records every failed run in audit_log and its stages in runs, and calls the "
                                   "alert hook (log, or the HCA_ALERT_WEBHOOK webhook).")
def run_failure_audit(context: dg.RunFailureSensorContext, storage: SettingsResource, alert_webhook: AlertWebhook) -> None:
    materialized = _materializations(context.instance, context.dagster_run.run_id)
    failures = context.get_step_failure_events()  # a query each call: once
    event = run_event(context.instance, context.dagster_run, "failure", materialized=materialized,
                      failed_steps=len(failures))
    record(storage.settings(), event)
    record_run(context.instance, context.dagster_run, storage, materialized)
    steps = sorted({e.step_key for e in failures if e.step_key})
    errors = sorted({_root_class(e.step_failure_data.error) for e in failures
                     if e.step_failure_data and e.step_failure_data.error})
    notify({"event": "run_failed", "job": event.job_name, "run_id": event.run_id, "partition": event.partition,
            "failed_steps": steps, "errors": errors, "counts": dict(event.counts)},  # class names only: no messages
           alert_webhook.url, context.log.warning)


RUN_SENSORS = [run_success_audit, run_failure_audit]
