"""Run-status sensors: every run's outcome (success and failure) in the PHI-free ``audit_log`` — job, run, assets
materialized, partition, counts — and, on failure, the alert hook (log, or a webhook from ``HCA_ALERT_WEBHOOK``).

They watch every run of the instance (``monitor_all_code_locations``), also those ``hca ingest`` runs in process.
"""

from collections import Counter

import dagster as dg
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._utils.error import SerializableErrorInfo

from hca_assets.alerts import notify
from hca_assets.lake.audit import RUN, AuditEvent, record
from hca_assets.resources import AlertWebhook, HcaStorage

__all__ = ["RUN_SENSORS", "run_event", "run_failure_audit", "run_success_audit"]

ROW_COUNT = "dagster/row_count"


def run_event(instance: dg.DagsterInstance, run: dg.DagsterRun, outcome: str) -> AuditEvent:
    """The audit row of a finished run: what it materialized and how many rows each asset reported (never data)."""
    materialized = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
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
        counts["failed_steps"] = len(instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records)
    return AuditEvent(RUN, "run", outcome, job_name=run.job_name, run_id=run.run_id, assets=sorted(assets),
                      partition=run.tags.get(PARTITION_NAME_TAG), counts=counts)


def _root_class(error: SerializableErrorInfo) -> str:
    """The class name of the error that started the chain (Dagster wraps user errors in its own)."""
    while error.cause is not None:
        error = error.cause
    return error.cls_name or "unknown"


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitor_all_code_locations=True,
                      default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
                      description="Records every successful run in audit_log (job, assets, partition, counts).")
def run_success_audit(context: dg.RunStatusSensorContext, storage: HcaStorage) -> None:
    record(storage.settings(), run_event(context.instance, context.dagster_run, "success"))


@dg.run_failure_sensor(monitor_all_code_locations=True, default_status=dg.DefaultSensorStatus.RUNNING,
                       minimum_interval_seconds=30,
                       description="Records every failed run in audit_log and calls the alert hook (log, or the "
                                   "HCA_ALERT_WEBHOOK webhook).")
def run_failure_audit(context: dg.RunFailureSensorContext, storage: HcaStorage, alert_webhook: AlertWebhook) -> None:
    event = run_event(context.instance, context.dagster_run, "failure")
    record(storage.settings(), event)
    steps = sorted({e.step_key for e in context.get_step_failure_events() if e.step_key})
    errors = sorted({_root_class(e.step_failure_data.error) for e in context.get_step_failure_events()
                     if e.step_failure_data and e.step_failure_data.error})
    notify({"event": "run_failed", "job": event.job_name, "run_id": event.run_id, "partition": event.partition,
            "failed_steps": steps, "errors": errors, "counts": dict(event.counts)},  # class names only: no messages
           alert_webhook.url, context.log.warning)


RUN_SENSORS = [run_success_audit, run_failure_audit]
