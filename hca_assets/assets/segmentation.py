"""Segmentation masks per batch: the configured backend (``HCA_SEGMENTER``: local, azure, onnx) on every 3D series
and planar radiograph."""

import time
from collections import defaultdict
from pathlib import Path

import dagster as dg

from hca_assets._infra.storage import pull, push
from hca_assets.assets import _metadata as md
from hca_assets.checks.segmentation import SEGMENTATION_CHECKS, segmentation_checks
from hca_assets.config import Settings
from hca_assets.lake import registry as tables
from hca_assets.models.endpoint import MIP_POOL
from hca_assets.orchestration.automation import REPROCESS
from hca_assets.orchestration.code_versions import DEFAULTS
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import SegmentationEndpoint, SettingsResource
from hca_assets.segmentation.backends import segmenter_for
from hca_assets.segmentation.overlay import overlay_sheet
from hca_assets.stages.segmentation import segment_batch

CONFIGURED = Settings.from_env()  # the backend this code location was loaded with: its pool


@dg.asset(deps=["images"], partitions_def=ingest_batches, group_name="segmentation", kinds={"python", "nifti", "dicom"},
          code_version=DEFAULTS["segmentations"], automation_condition=REPROCESS, check_specs=SEGMENTATION_CHECKS,
          pool=MIP_POOL if CONFIGURED.segmenter == "azure" else None,
          description="Organ and lesion masks (prompt strategies per modality/body part): NIfTI per structure, "
                      "DICOM SEG per series, volumes in mL and areas in mm².")
def segmentations(context: dg.AssetExecutionContext, storage: SettingsResource,
                  segmentation_endpoint: SegmentationEndpoint) -> dg.MaterializeResult:
    settings = storage.settings()
    version = storage.code_version(context)  # the version the loaded definition declares, or a one-line failure
    segmenter = segmenter_for(settings.segmenter, settings, url=segmentation_endpoint.url, key=segmentation_endpoint.key)
    key = context.partition_key
    volumes = tables.VOLUMES.read(settings, where={"batch": key}).to_pylist()
    instances = tables.DEID_INSTANCES.read(settings, where={"batch": key}).to_pylist()
    body_parts = {r["series_instance_uid"]: r["body_part"] for r in
                  tables.IMAGES.read(settings, where={"batch": key}, columns=["series_instance_uid", "body_part"])
                  .to_pylist()}
    context.log.info(f"batch {key}: segmenting {len(volumes)} volume(s) and the planar radiographs with backend "
                     f"`{settings.segmenter}`")
    start = time.perf_counter()
    pull(settings, Path(settings.deid) / key, Path(settings.images) / key)
    out = segment_batch(key, volumes, instances, body_parts, Path(settings.deid), Path(settings.images),
                        Path(settings.segmentations), segmenter)
    push(settings, Path(settings.segmentations) / key)  # other code versions' files stay: nothing is pruned
    written = tables.SEGMENTATIONS.write(settings, out.rows, match={"batch": key, "code_version": version})  # other versions stay
    for series, reason in out.failed:
        context.log.warning(f"series {series}: {reason}")
    rows = out.rows.to_pylist()
    volume_ml: dict[str, float] = defaultdict(float)
    for r in rows:
        volume_ml[r["structure"]] += r["volume_ml"] or 0.0
    masks: dict[str, list[Path]] = defaultdict(list)
    for r in rows:
        if r["mask_path"]:
            masks[r["series_instance_uid"]].append(Path(settings.segmentations) / r["mask_path"])
    paths = {v["series_instance_uid"]: Path(settings.images) / v["path"] for v in volumes}
    return dg.MaterializeResult(
        metadata={
            **md.written(written),
            md.SECONDS: round(time.perf_counter() - start, 3), "failed_series": len(out.failed),
            "code_version": version,
            "structures": md.md_counts({s: sum(1 for r in rows if r["structure"] == s and r["status"] == "segmented")
                                        for s in {r["structure"] for r in rows}}, ("structure", "segmented")),
            "unsupported": sum(1 for r in rows if r["status"] == "unsupported"),
            "total_volume_ml": md.md_counts({s: round(v, 1) for s, v in volume_ml.items() if v},  # type: ignore[misc]
                                            ("structure", "mL over the batch")),
            "overlays": md.md_png(overlay_sheet((paths[s], m) for s, m in masks.items() if s in paths),
                                  "largest segmented slice per series, one colour per structure"),
        },
        check_results=segmentation_checks(settings, key, version),
    )
