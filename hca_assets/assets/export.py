"""Export per batch: de-identified studies and their DICOM SEG results to the PACS ``HCA_EXPORT_DESTINATION`` names
(STOW-RS or C-STORE), a FHIR R4 ImagingStudy JSON per study, and the Delta table ``exports``."""

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from hca_assets._infra.storage import pull
from hca_assets.assets import _metadata as md
from hca_assets.config import Settings
from hca_assets.export.destinations import Credentials, StudyOutcome, parse_destination
from hca_assets.lake import registry as tables
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import ExportCredentials, SettingsResource
from hca_assets.stages.export import export_batch, plan_batch

CONFIGURED = Settings.from_env()  # automation only where a destination is configured


@dg.asset(deps=["segmentations", "studies"], partitions_def=ingest_batches, group_name="export",
          kinds={"python", "dicom", "deltalake"}, output_required=False,
          automation_condition=(dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed())
          if CONFIGURED.export_destination else None,
          description="Sends the batch's de-identified studies and DICOM SEG results to the configured PACS (STOW-RS or "
                      "C-STORE), writes a FHIR R4 ImagingStudy per study under exports/<batch>/ and a row per study "
                      "(outcome, counts) to Delta exports. Skipped when HCA_EXPORT_DESTINATION is not set.")
def export(context: dg.AssetExecutionContext, storage: SettingsResource,
           export_credentials: ExportCredentials) -> Iterator[dg.MaterializeResult]:
    settings = storage.settings()
    destination = parse_destination(settings.export_destination, settings.export_calling_ae)
    if destination is None:
        context.log.info("export skipped: no destination configured (set HCA_EXPORT_DESTINATION to a DICOMweb root "
                         "or dicom://CALLED_AE@host:port); nothing was sent or written")
        return
    key = context.partition_key
    start = time.perf_counter()
    pull(settings, Path(settings.deid) / key, Path(settings.segmentations) / key)
    plans = plan_batch(settings, key)
    context.log.info(f"batch {key}: exporting {len(plans)} study(ies) to {destination.kind} {destination.describe()}")

    def report(outcome: StudyOutcome) -> None:
        if outcome.status == "exported":
            context.log.info(f"study {outcome.study_instance_uid}: {len(outcome.accepted)} object(s) exported")
        else:
            context.log.warning(f"study {outcome.study_instance_uid}: export failed: {outcome.message}")

    credentials = Credentials(export_credentials.user, export_credentials.password, export_credentials.token)
    out = export_batch(settings, key, destination, credentials, plans, on_done=report)
    written = tables.EXPORTS.write(settings, out.rows, match={"batch": key})
    failed = sum(1 for o in out.outcomes if o.status != "exported")
    yield dg.MaterializeResult(metadata={
        **md.written(written), md.SECONDS: round(time.perf_counter() - start, 3),
        "destination_kind": destination.kind, "destination": destination.describe(),
        "studies_exported": len(out.outcomes) - failed, "studies_failed": failed,
        "objects_accepted": sum(len(o.accepted) for o in out.outcomes),
        "seg_objects": sum(len(p.segs) for p in plans.values()),
    })
