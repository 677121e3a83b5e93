"""Checks of the ``images`` asset: constant images (a warning), PNG shapes and counts, NIfTI affines."""

from pathlib import Path

import dagster as dg
from PIL import Image

from hca_assets.config import Settings
from hca_assets.dicom.pixels import IMAGE_SIZE
from hca_assets.lake import registry as tables
from hca_assets.stages.images import check_volume_affine

IMAGE_CHECKS = [
    dg.AssetCheckSpec("few_constant_images", asset="images", blocking=False,
                      description="constant images (their stored values are: an automatic window shows any that vary) "
                                  "are at most HCA_MAX_CONSTANT_FRACTION of the batch; a warning — they are kept out of "
                                  "the embeddings and index, and the rest of the batch goes on"),
    dg.AssetCheckSpec("image_shapes", asset="images", blocking=True,
                      description=f"every PNG is {IMAGE_SIZE}×{IMAGE_SIZE}; published = rendered + quarantined instances"),
    dg.AssetCheckSpec("nifti_affine_matches_dicom", asset="images", blocking=True,
                      description="each NIfTI affine places every slice within 0.01 mm of its DICOM position"),
]


def image_checks(settings: Settings, batch: str, *, failed: int) -> list[dg.AssetCheckResult]:
    rows = tables.IMAGES.read(settings, where={"batch": batch}).to_pylist()
    instances = tables.DEID_INSTANCES.read(settings, where={"batch": batch}).to_pylist()
    constant = sum(r["constant"] for r in rows)
    sizes = [Image.open(Path(settings.images) / r["path"]).size for r in rows]
    wrong = sum(size != (IMAGE_SIZE, IMAGE_SIZE) for size in sizes)
    rendered = len({r["sop_instance_uid"] for r in rows})
    errors = []
    for v in tables.VOLUMES.read(settings, where={"batch": batch}).to_pylist():
        members = [Path(settings.deid) / i["path"] for i in instances if i["series_instance_uid"] == v["series_instance_uid"]]
        errors.append(check_volume_affine(Path(settings.images) / v["path"], members))
    worst = max(errors, default=0.0)
    return [
        dg.AssetCheckResult(check_name="few_constant_images", severity=dg.AssetCheckSeverity.WARN,
                            passed=constant <= settings.max_constant_fraction * max(1, len(rows)),
                            metadata={"constant": constant, "images": len(rows)}),
        dg.AssetCheckResult(check_name="image_shapes", passed=wrong == 0 and rendered + failed == len(instances),
                            metadata={"wrong_size": wrong, "rendered_instances": rendered, "failed": failed,
                                      "published": len(instances)}),
        dg.AssetCheckResult(check_name="nifti_affine_matches_dicom", passed=worst <= 0.01,
                            metadata={"volumes": len(errors), "max_error_mm": round(worst, 6)}),
    ]


