"""The landing-zone sensor: claim settled files into a new batch, register its partition, request its run."""

from pathlib import Path

import dagster as dg

from hca_assets.config import Settings
from hca_assets.jobs import ingest_job
from hca_assets.landing import claim, committed_batches, recover
from hca_assets.partitions import INGEST_BATCHES, ingest_batches
from hca_assets.resources import HcaStorage


def claim_pending(settings: Settings, registered: set[str]) -> list[str]:
    """Commit interrupted claims, claim the landing zone, and return committed batches not yet registered.

    Safe to repeat: batches are only ever created from files that were moved out of the landing zone.
    """
    raw = Path(settings.raw_batches)
    recover(raw)
    claim(Path(settings.landing), raw, settle_seconds=settings.settle_seconds)
    return [k for k in committed_batches(raw) if k not in registered]


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Claims new files in the landing zone into a new ingest batch and requests its run.",
)
def landing_sensor(context: dg.SensorEvaluationContext, storage: HcaStorage) -> dg.SensorResult | dg.SkipReason:
    registered = set(context.instance.get_dynamic_partitions(INGEST_BATCHES))
    pending = claim_pending(storage.settings(), registered)
    if not pending:
        return dg.SkipReason("no new files in the landing zone")
    context.log.info(f"claimed {len(pending)} new batch(es): {', '.join(pending)}")
    return dg.SensorResult(
        dynamic_partitions_requests=[ingest_batches.build_add_request(pending)],
        run_requests=[dg.RunRequest(partition_key=k, run_key=k) for k in pending],
    )


automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.groups("search"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps the index and the evaluation up to date once new embeddings pass their checks.",
)
