"""Schedules: nightly evaluation refresh, weekly full backfill of every ingest batch, weekly Delta maintenance.

Batches are dynamic partitions, which ``build_schedule_from_partitioned_job`` refuses: the weekly schedule asks
for one run per registered batch itself (run keys carry the week, so a tick never requests a batch twice).
"""

import dagster as dg

from hca_assets.lake.maintenance import maintain_lake
from hca_assets.orchestration.jobs import ingest_job
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import SettingsResource

__all__ = ["SCHEDULES", "SCHEDULE_JOBS", "evaluation_job", "maintenance_job"]

BACKFILL_TAG = "hca/backfill"

evaluation_job = dg.define_asset_job(
    "evaluation_job", selection=dg.AssetSelection.assets("retrieval_eval", "segmentation_eval"),
    description="Re-evaluate retrieval and segmentation over all batches (new evaluations rows; the index stays).")

nightly_evaluation = dg.ScheduleDefinition(
    name="nightly_evaluation", job=evaluation_job, cron_schedule="0 2 * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night at 02:00: retrieval and segmentation evaluations refreshed.")


@dg.schedule(job=ingest_job, cron_schedule="0 4 * * 6", default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Saturdays 04:00 (off until switched on): every registered batch through the whole per-batch "
                         "graph again, one run each; the index and evaluations follow by automation.")
def weekly_full_backfill(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
    batches = context.instance.get_dynamic_partitions(INGEST_BATCHES)
    if not batches:
        return dg.SkipReason("no ingest batch registered yet")
    week = context.scheduled_execution_time.strftime("%G-W%V") if context.scheduled_execution_time else "now"
    return [dg.RunRequest(partition_key=b, run_key=f"weekly-{week}-{b}", tags={BACKFILL_TAG: f"weekly-{week}"})
            for b in sorted(batches)]


@dg.op(description="Compact every Delta table and vacuum files only versions older than HCA_VACUUM_RETENTION_HOURS "
                   "(≥ 7 days) need; readers of recent versions keep their files.")
def delta_maintenance(context: dg.OpExecutionContext, storage: SettingsResource) -> dg.Output:
    done = maintain_lake(storage.settings())
    for m in done:
        context.log.info(f"{m.table}: version {m.version}, {m.files_compacted} files compacted into {m.files_added}, "
                         f"{m.files_vacuumed} vacuumed{f' ({m.skipped})' if m.skipped else ''}")
    lines = ["| table | version | compacted | added | vacuumed | note |", "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {m.table} | {m.version} | {m.files_compacted} | {m.files_added} | {m.files_vacuumed} | {m.skipped} |"
              for m in done]
    return dg.Output(None, metadata={"tables": len(done), "files_vacuumed": sum(m.files_vacuumed for m in done),
                                     "maintenance": dg.MetadataValue.md("\n".join(lines))})


@dg.job(description="Delta maintenance of every table: optimize (compact) then vacuum with a safe retention.")
def maintenance_job() -> None:
    delta_maintenance()


weekly_maintenance = dg.ScheduleDefinition(
    name="weekly_delta_maintenance", job=maintenance_job, cron_schedule="0 3 * * 0",
    default_status=dg.DefaultScheduleStatus.RUNNING, description="Sundays 03:00: Delta optimize + vacuum.")

SCHEDULES = [nightly_evaluation, weekly_full_backfill, weekly_maintenance]
SCHEDULE_JOBS = [evaluation_job, maintenance_job]
