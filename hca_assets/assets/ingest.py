"""``raw_dicom``: validate one claimed batch into the restricted ``raw_instances`` table + ``quarantine``."""

import time
from collections import Counter
from pathlib import Path

import dagster as dg

from hca_assets._infra.storage import pull, push
from hca_assets.assets import _metadata as md
from hca_assets.checks.ingest import INGEST_CHECKS, run_ingest_checks
from hca_assets.lake import registry as tables
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import PseudonymKey, SettingsResource
from hca_assets.sources.claims import load_batch
from hca_assets.stages.ingest import STAGE, ingest_batch

INGEST_VERSION = "ingest-1"


@dg.asset(
    partitions_def=ingest_batches,
    group_name="ingest",
    kinds={"python", "dicom", "deltalake"},
    code_version=INGEST_VERSION,
    check_specs=INGEST_CHECKS,
    description="Bronze index of one ingest batch: header facts, sha256, decodability; bad files quarantined.",
)
def raw_dicom(context: dg.AssetExecutionContext, storage: SettingsResource, pseudonym_key: PseudonymKey) -> dg.MaterializeResult:
    settings = storage.settings()
    key = pseudonym_key.key(settings)  # a key the lake is not pinned to is refused here, before anything is written
    pull(settings, Path(settings.raw_batches) / context.partition_key)  # object-store root, another machine claimed it
    batch = load_batch(Path(settings.raw_batches), context.partition_key)
    others = tables.RAW_INSTANCES.read(settings, columns=["batch", "sop_instance_uid", "sha256"]).to_pylist()
    known = {r["sop_instance_uid"]: r["sha256"] for r in others if r["batch"] != batch.key}
    context.log.info(f"batch {batch.key}: {batch.received} items received, {len(known)} instances already known")
    start = time.perf_counter()
    outcome = ingest_batch(
        batch,
        key=key,
        quarantine_root=Path(settings.quarantine),
        known=known,
        workers=settings.workers,
        progress=md.progress_logger(context, "inspected"),
        limits=settings.limits,
    )
    seconds = time.perf_counter() - start
    push(settings, batch.path, Path(settings.quarantine) / batch.key)  # files reach the store before the rows naming them
    written = tables.RAW_INSTANCES.write(settings, outcome.instances, match={"batch": batch.key})
    quarantined = tables.QUARANTINE.write(settings, outcome.quarantine, match={"batch": batch.key, "stage": STAGE})
    context.log.info(
        f"batch {batch.key}: {outcome.instances.num_rows} ingested, {outcome.quarantine.num_rows} quarantined "
        f"in {seconds:.1f} s"
    )
    return dg.MaterializeResult(
        metadata={
            md.ROW_COUNT: outcome.instances.num_rows,
            md.NUM_RECEIVED: outcome.received,
            md.NUM_INGESTED: outcome.instances.num_rows,
            md.NUM_QUARANTINED: outcome.quarantine.num_rows,
            **md.written(written),
            "quarantine_delta_version": quarantined.delta_version,
            md.SECONDS: round(seconds, 3),
            "files_per_second": round(outcome.received / seconds, 1) if seconds else 0.0,
            "modalities": md.md_counts(Counter(outcome.instances.column("modality").to_pylist()), ("modality", "instances")),
            "transfer_syntaxes": md.md_counts(
                Counter(outcome.instances.column("transfer_syntax").to_pylist()), ("transfer syntax", "instances")
            ),
            "quarantine_reasons": md.md_counts(outcome.reasons, ("reason", "items")),
        },
        check_results=run_ingest_checks(settings, batch),
    )
