"""``raw_dicom``: validate one claimed batch into the restricted ``raw_instances`` table + ``quarantine``."""

from collections import Counter

import dagster as dg

from hca_assets.assets import _metadata as md
from hca_assets.checks.ingest import INGEST_CHECKS, run_ingest_checks
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import PseudonymKey, SettingsResource
from hca_assets.stages.ingest import IngestRun, run_ingest

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
    run = run_ingest(settings, context.partition_key, key, md.progress_logger(context, "inspected"))
    out = run.outcome
    context.log.info(f"batch {context.partition_key}: {out.received} items received ({run.known} instances already "
                     f"known), {out.instances.num_rows} ingested, {out.quarantine.num_rows} quarantined in "
                     f"{run.seconds:.1f} s")
    return dg.MaterializeResult(metadata=_metadata(run), check_results=run_ingest_checks(settings, run.batch))


def _metadata(run: IngestRun) -> dict[str, object]:
    out = run.outcome
    return {
        md.ROW_COUNT: out.instances.num_rows, md.NUM_RECEIVED: out.received, md.NUM_INGESTED: out.instances.num_rows,
        md.NUM_QUARANTINED: out.quarantine.num_rows, **md.written(run.written),
        "quarantine_delta_version": run.quarantined.delta_version, md.SECONDS: round(run.seconds, 3),
        "files_per_second": round(out.received / run.seconds, 1) if run.seconds else 0.0,
        "modalities": md.md_counts(Counter(out.instances.column("modality").to_pylist()), ("modality", "instances")),
        "transfer_syntaxes": md.md_counts(Counter(out.instances.column("transfer_syntax").to_pylist()),
                                          ("transfer syntax", "instances")),
        "quarantine_reasons": md.md_counts(out.reasons, ("reason", "items")),
    }
