"""Run-status sensors that write the ``runs`` table: per finished run (success or failure) and stage, its outcome,
the rows the stage reported (``dagster/row_count``) and its seconds. The audit log is :mod:`hca_assets.run_sensors`'."""

from collections import Counter

import dagster as dg
from dagster._core.execution.stats import StepEventStatus
from dagster._core.storage.tags import PARTITION_NAME_TAG

from hca_assets.lake import registry as tables
from hca_assets.resources import HcaStorage
from hca_assets.run_stats import StageRun, runs_table

__all__ = ["RUNS_SENSORS", "record_run", "runs_on_failure", "runs_on_success"]

OUTCOMES = {StepEventStatus.SUCCESS: "success", StepEventStatus.FAILURE: "failure", StepEventStatus.SKIPPED: "skipped"}


def record_run(instance: dg.DagsterInstance, run: dg.DagsterRun, storage: HcaStorage) -> int:
    """Write the finished ``run``'s stages into ``runs`` (idempotent per run); returns the rows written."""
    rows: Counter[str] = Counter()
    for r in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
        event = r.event_log_entry.dagster_event
        m = r.event_log_entry.asset_materialization
        count = m.metadata.get("dagster/row_count") if m is not None else None
        if event is not None and event.step_key and count is not None and isinstance(count.value, int):
            rows[event.step_key] += count.value
    stages = [StageRun(s.step_key, OUTCOMES.get(s.status, "incomplete") if s.status else "incomplete",
                       rows.get(s.step_key), s.start_time, s.end_time)
              for s in instance.get_run_step_stats(run.run_id)]
    table = runs_table(run.run_id, run.job_name, run.tags.get(PARTITION_NAME_TAG), stages)
    return tables.RUNS.write(storage.settings(), table, match={"run_id": run.run_id}).row_count


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitor_all_code_locations=True,
                      default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
                      description="Writes each successful run's stages (rows, seconds, outcome) into the runs table.")
def runs_on_success(context: dg.RunStatusSensorContext, storage: HcaStorage) -> None:
    record_run(context.instance, context.dagster_run, storage)


@dg.run_failure_sensor(name="runs_on_failure", monitor_all_code_locations=True,
                       default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
                       description="Writes each failed run's stages (rows, seconds, outcome) into the runs table.")
def runs_on_failure(context: dg.RunFailureSensorContext, storage: HcaStorage) -> None:
    record_run(context.instance, context.dagster_run, storage)


RUNS_SENSORS = [runs_on_success, runs_on_failure]
