"""segmentations through Dagster: masks on the source grid, a valid DICOM SEG per series referencing the
published instances, measurements, idempotent re-runs, no PHI in what it writes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg
import highdicom
import nibabel as nib
import numpy as np

from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.images import images
from hca_assets.assets.ingest import raw_dicom
from hca_assets.assets.segmentation import segmentations_asset
from hca_assets.config import Settings
from hca_assets.lake import read_table
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import PseudonymKey, SegmentationEndpoint, SettingsResource
from hca_assets.sources.claims import claim
from hca_assets.synthetic import generate
from hca_assets_tests.conftest import SMALL, manifest_strings

STUDY = dataclasses.replace(SMALL, ct_size=128, ct_slices=16, mr_size=96)


def test_segmentations_asset(settings: Settings) -> None:
    generate(Path(settings.landing), Path(settings.truth_file).parent, STUDY)
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    resources = {"storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey(),
                 "segmentation_endpoint": SegmentationEndpoint()}
    counts = []
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        for _ in range(2):
            result = dg.materialize([raw_dicom, deid_staged, deid_dicom, images, segmentations_asset(Settings())], instance=instance,
                                    partition_key=batch.key, resources=resources)
            assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
            counts.append(read_table(settings.table_uri("segmentations")).num_rows)
        (meta,) = [m.metadata for m in result.asset_materializations_for_node("segmentations")]
    assert counts[0] == counts[1] > 0  # re-running replaces the batch's rows
    rows = read_table(settings.table_uri("segmentations")).to_pylist()
    by_modality = {m: {r["structure"] for r in rows if r["modality"] == m and r["status"] == "segmented"}
                   for m in {r["modality"] for r in rows}}
    assert {"lung", "liver"} <= by_modality["CT"] and {"lung", "heart"} <= by_modality.get("CR", by_modality.get("DX", set()))
    assert "US" not in by_modality  # no prompts for ultrasound by default
    ct_lung = next(r for r in rows if r["modality"] == "CT" and r["structure"] == "lung")
    assert ct_lung["volume_ml"] > 0 and ct_lung["voxels"] > 0 and ct_lung["code_version"].startswith("local@")
    volumes = {v["series_instance_uid"]: v for v in read_table(settings.table_uri("volumes")).to_pylist()}
    mask = nib.load(Path(settings.segmentations) / ct_lung["mask_path"])
    assert mask.shape == tuple(volumes[ct_lung["series_instance_uid"]]["shape"])
    cxr = [r for r in rows if r["sop_instance_uid"] and r["status"] == "segmented"]
    assert cxr and all(r["area_mm2"] > 0 and r["volume_ml"] is None for r in cxr)
    rendered = {r["sop_instance_uid"]: r for r in read_table(settings.table_uri("images")).to_pylist()}
    for r in cxr:  # a radiograph's mask is a file too: (columns, rows, 1) of its image, its SEG one per image
        planar_mask = nib.load(Path(settings.segmentations) / r["mask_path"])
        image = rendered[r["sop_instance_uid"]]
        assert planar_mask.shape == (image["columns"], image["rows"], 1)
        assert int(np.asarray(planar_mask.dataobj).sum()) == r["voxels"]
        assert r["sop_instance_uid"] in r["seg_path"]
    published = {r["sop_instance_uid"] for r in read_table(settings.table_uri("deid_instances")).to_pylist()}
    seg = highdicom.seg.segread(Path(settings.segmentations) / ct_lung["seg_path"])
    referenced = {str(i.ReferencedSOPInstanceUID) for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert referenced and referenced <= published
    assert {d.segment_label for d in seg.SegmentSequence} >= {"lung", "liver"}
    phi = [s.lower().encode() for s in manifest_strings(Path(settings.truth_file).parent)]
    segs = sorted(Path(settings.segmentations).rglob("*.dcm"))
    assert phi and segs
    for path in segs:
        data = path.read_bytes().lower()
        assert not [s for s in phi if s in data], path.name
    assert str(meta["overlays"].value).startswith("![")
