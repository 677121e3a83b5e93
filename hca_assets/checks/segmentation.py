"""Blocking checks for segmentations: masks on their source's grid, every SEG valid, expected organs present."""

from pathlib import Path

import dagster as dg
import highdicom
import nibabel as nib
import numpy as np

from hca_assets.config import Settings
from hca_assets.lake import registry as tables

GRID = "masks_on_source_grid"
SEG = "seg_files_valid"
PRESENT = "expected_structures_present"
EXPECTED = {"CT": {"lung", "liver"}}  # never empty on a chest/abdomen CT the strategy segments

SEGMENTATION_CHECKS = [
    dg.AssetCheckSpec(GRID, asset="segmentations", blocking=True,
                      description="every NIfTI mask has its volume's shape and affine (a radiograph's: its image's size)"),
    dg.AssetCheckSpec(SEG, asset="segmentations", blocking=True,
                      description="every DICOM SEG reads back (highdicom) and references only instances of its series"),
    dg.AssetCheckSpec(PRESENT, asset="segmentations", blocking=True,
                      description="on CT, lungs and liver are never empty when the strategy asks for them"),
]


def segmentation_checks(settings: Settings, batch: str, version: str) -> list[dg.AssetCheckResult]:
    rows = tables.SEGMENTATIONS.read(settings, where={"batch": batch, "code_version": version}).to_pylist()
    volumes = {r["series_instance_uid"]: r for r in tables.VOLUMES.read(settings, where={"batch": batch}).to_pylist()}
    planar = {r["sop_instance_uid"]: (r["columns"], r["rows"], 1) for r in
              tables.IMAGES.read(settings, where={"batch": batch}).to_pylist()}
    root = Path(settings.segmentations)
    off_grid = 0
    for r in (r for r in rows if r["mask_path"]):
        mask = nib.load(root / r["mask_path"])
        if r["sop_instance_uid"]:  # a radiograph's mask: (columns, rows, 1) of its image
            off_grid += mask.shape != planar.get(r["sop_instance_uid"])
            continue
        volume = volumes.get(r["series_instance_uid"])
        off_grid += volume is None or mask.shape != tuple(volume["shape"]) or not np.allclose(
            mask.affine.ravel(), volume["affine"], atol=1e-4)
    members: dict[str, set[str]] = {}
    for i in tables.DEID_INSTANCES.read(settings, where={"batch": batch}).to_pylist():
        members.setdefault(i["series_instance_uid"], set()).add(i["sop_instance_uid"])
    segs = {(r["series_instance_uid"], r["seg_path"]) for r in rows if r["seg_path"]}
    invalid = 0
    for series, path in segs:
        try:
            seg = highdicom.seg.segread(root / path)
            referenced = {str(item.ReferencedSOPInstanceUID) for ref in seg.ReferencedSeriesSequence
                          for item in ref.ReferencedInstanceSequence}
            invalid += not referenced or not referenced <= members.get(series, set())
        except Exception:  # noqa: BLE001 - any failure to read it back makes the SEG invalid
            invalid += 1
    empty = sum(1 for r in rows if r["structure"] in EXPECTED.get(r["modality"], set()) and r["status"] == "segmented"
                and not r["voxels"])
    return [
        dg.AssetCheckResult(check_name=GRID, passed=off_grid == 0, metadata={"masks": sum(1 for r in rows if r["mask_path"]),
                                                                              "off_grid": off_grid}),
        dg.AssetCheckResult(check_name=SEG, passed=invalid == 0, metadata={"seg_files": len(segs), "invalid": invalid}),
        dg.AssetCheckResult(check_name=PRESENT, passed=empty == 0, metadata={"empty_expected": empty}),
    ]
