"""Segmentation masks per batch: the configured backend (``HCA_SEGMENTER``: local, azure, onnx) on every 3D series
and planar radiograph."""

from collections import defaultdict

import dagster as dg

from hca_assets.assets import _metadata as md
from hca_assets.checks.segmentation import SEGMENTATION_CHECKS, segmentation_checks
from hca_assets.config import Settings
from hca_assets.models.endpoint import MIP_POOL
from hca_assets.orchestration.automation import REPROCESS
from hca_assets.orchestration.code_versions import DEFAULTS
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import SegmentationEndpoint, SettingsResource
from hca_assets.segmentation.backends import segmenter_for
from hca_assets.segmentation.overlay import overlay_sheet
from hca_assets.stages.segmentation import SegmentationRun, run_segmentation


def segmentations_asset(settings: Settings) -> dg.AssetsDefinition:
    """The ``segmentations`` asset, in the MedImageParse endpoint's pool when ``settings`` choose that backend."""

    @dg.asset(deps=["images"], partitions_def=ingest_batches, group_name="segmentation",
              kinds={"python", "nifti", "dicom"}, code_version=DEFAULTS["segmentations"], automation_condition=REPROCESS,
              check_specs=SEGMENTATION_CHECKS, pool=MIP_POOL if settings.segmenter == "azure" else None,
              description="Organ and lesion masks (prompt strategies per modality/body part): NIfTI per structure, "
                          "DICOM SEG per series, volumes in mL and areas in mm².")
    def segmentations(context: dg.AssetExecutionContext, storage: SettingsResource,
                      segmentation_endpoint: SegmentationEndpoint) -> dg.MaterializeResult:
        settings = storage.settings()
        version = storage.code_version(context)  # the version the loaded definition declares, or a one-line failure
        segmenter = segmenter_for(settings.segmenter, settings, url=segmentation_endpoint.url,
                                  key=segmentation_endpoint.key)
        run = run_segmentation(settings, context.partition_key, segmenter, version)
        context.log.info(f"batch {context.partition_key}: {len(run.volumes)} volume(s) and the planar radiographs "
                         f"segmented with backend `{settings.segmenter}`")
        for series, reason in run.outcome.failed:
            context.log.warning(f"series {series}: {reason}")
        return dg.MaterializeResult(metadata=_metadata(run, version),
                                    check_results=segmentation_checks(settings, context.partition_key, version))

    return segmentations


def _metadata(run: SegmentationRun, version: str) -> dict[str, object]:
    """Structures segmented, volumes per structure and an overlay sheet of the largest slice per series."""
    rows = run.outcome.rows.to_pylist()
    volume_ml: dict[str, float] = defaultdict(float)
    for r in rows:
        volume_ml[r["structure"]] += r["volume_ml"] or 0.0
    return {
        **md.written(run.written), md.SECONDS: round(run.seconds, 3), "failed_series": len(run.outcome.failed),
        "code_version": version,
        "structures": md.md_counts({s: sum(1 for r in rows if r["structure"] == s and r["status"] == "segmented")
                                    for s in {r["structure"] for r in rows}}, ("structure", "segmented")),
        "unsupported": sum(1 for r in rows if r["status"] == "unsupported"),
        "total_volume_ml": md.md_counts({s: round(v, 1) for s, v in volume_ml.items() if v},  # type: ignore[misc]
                                        ("structure", "mL over the batch")),
        "overlays": md.md_png(overlay_sheet((run.volumes[s], m) for s, m in run.masks.items() if s in run.volumes),
                              "largest segmented slice per series, one colour per structure"),
    }
