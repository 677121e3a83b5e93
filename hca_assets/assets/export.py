"""Export per batch: de-identified studies and their DICOM SEG results to the PACS ``HCA_EXPORT_DESTINATION`` names
(STOW-RS or C-STORE), a FHIR R4 ImagingStudy JSON per study, and the Delta table ``exports``."""

from collections.abc import Callable, Iterator

import dagster as dg

from hca_assets.assets import _metadata as md
from hca_assets.config import Settings
from hca_assets.export.destinations import Credentials, StudyOutcome, parse_destination
from hca_assets.orchestration.automation import EAGER_AFTER_CHECKS
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import ExportCredentials, SettingsResource
from hca_assets.stages.export import run_export


def export_asset(settings: Settings) -> dg.AssetsDefinition:
    """The ``export`` asset; automated only where ``settings`` configure a destination."""

    @dg.asset(deps=["segmentations", "studies"], partitions_def=ingest_batches, group_name="export",
              kinds={"python", "dicom", "deltalake"}, output_required=False,
              automation_condition=EAGER_AFTER_CHECKS if settings.export_destination else None,
              description="Sends the batch's de-identified studies and DICOM SEG results to the configured PACS "
                          "(STOW-RS or C-STORE), writes a FHIR R4 ImagingStudy per study under exports/<batch>/ and a "
                          "row per study (outcome, counts) to Delta exports. Skipped when HCA_EXPORT_DESTINATION is not set.")
    def export(context: dg.AssetExecutionContext, storage: SettingsResource,
               export_credentials: ExportCredentials) -> Iterator[dg.MaterializeResult]:
        settings = storage.settings()
        destination = parse_destination(settings.export_destination, settings.export_calling_ae)
        if destination is None:
            context.log.info("export skipped: no destination configured (set HCA_EXPORT_DESTINATION to a DICOMweb root "
                             "or dicom://CALLED_AE@host:port); nothing was sent or written")
            return
        credentials = Credentials(export_credentials.user, export_credentials.password, export_credentials.token)
        run = run_export(settings, context.partition_key, destination, credentials, on_done=_reporter(context),
                         on_plan=lambda n: context.log.info(f"batch {context.partition_key}: exporting {n} study(ies) "
                                                            f"to {destination.kind} {destination.describe()}"))
        outcomes = run.export.outcomes
        failed = sum(1 for o in outcomes if o.status != "exported")
        yield dg.MaterializeResult(metadata={
            **md.written(run.written), md.SECONDS: round(run.seconds, 3),
            "destination_kind": destination.kind, "destination": destination.describe(),
            "studies_exported": len(outcomes) - failed, "studies_failed": failed,
            "objects_accepted": sum(len(o.accepted) for o in outcomes),
            "seg_objects": sum(len(p.segs) for p in run.plans.values()),
        })

    return export


def _reporter(context: dg.AssetExecutionContext) -> Callable[[StudyOutcome], None]:
    """Each study's outcome as a log line when it ends."""

    def report(outcome: StudyOutcome) -> None:
        if outcome.status == "exported":
            context.log.info(f"study {outcome.study_instance_uid}: {len(outcome.accepted)} object(s) exported")
        else:
            context.log.warning(f"study {outcome.study_instance_uid}: export failed: {outcome.message}")
    return report
