"""``images`` (per batch): a 1024² 8-bit PNG per frame and a NIfTI per 3D series, from the published DICOM."""

from collections import Counter

import dagster as dg

from hca_assets.assets import _metadata as md
from hca_assets.checks.images import IMAGE_CHECKS, image_checks
from hca_assets.orchestration.automation import REPROCESS
from hca_assets.orchestration.code_versions import DEFAULTS
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.stages.images import run_images


@dg.asset(deps=["deid_dicom"], partitions_def=ingest_batches, group_name="images", kinds={"python", "png", "nifti"},
          code_version=DEFAULTS["images"], automation_condition=REPROCESS, check_specs=IMAGE_CHECKS,
          description="1024² 8-bit PNG per frame (windowed, letterboxed) and NIfTI per 3D series, from de-identified DICOM.")
def images(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    storage.code_version(context)  # the loaded definition's version is this preprocessing's
    run = run_images(settings, context.partition_key, md.progress_logger(context, "rendered"))
    out = run.outcome
    for sop, reason in out.failed:
        context.log.warning(f"instance {sop}: {reason} (quarantined)")
    return dg.MaterializeResult(
        metadata={
            **md.written(run.written), "volumes": out.volumes.num_rows, "failed": len(out.failed),
            md.SECONDS: round(run.seconds, 3),
            "windows": md.md_counts(Counter(str(w) for w in out.images.column("window").to_pylist()), ("window", "images")),
        },
        check_results=image_checks(settings, context.partition_key, failed=len(out.failed)),
    )
