"""segmentation_eval through Dagster: the local backend's masks scored against the synthetic ground truth into
``evaluations``, the Dice floor check passing at the default floor and failing above 1."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg

from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.evaluation import segmentation_eval
from hca_assets.assets.images import images
from hca_assets.assets.ingest import raw_dicom
from hca_assets.assets.segmentation import segmentations_asset
from hca_assets.config import Settings
from hca_assets.lake import read_table
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import PseudonymKey, SegmentationEndpoint, SettingsResource
from hca_assets.sources.claims import claim
from hca_assets.synthetic import generate
from hca_assets_tests.conftest import SMALL

STUDY = dataclasses.replace(SMALL, ct_size=128, ct_slices=16, mr_size=96)


def test_segmentation_eval_asset_and_dice_floor(settings: Settings) -> None:
    generate(Path(settings.landing), Path(settings.truth_file).parent, STUDY)
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        resources = {"storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey(),
                     "segmentation_endpoint": SegmentationEndpoint()}
        result = dg.materialize([raw_dicom, deid_staged, deid_dicom, images, segmentations_asset(Settings())], instance=instance,
                                partition_key=batch.key, resources=resources)
        assert result.success
        evaluated = dg.materialize([segmentation_eval], instance=instance, resources=resources)
        (check,) = evaluated.get_asset_check_evaluations()
        (meta,) = [m.metadata for m in evaluated.asset_materializations_for_node("segmentation_eval")]
        strict = {**resources, "storage": SettingsResource.from_settings(dataclasses.replace(settings, seg_min_dice=1.01))}
        failed = dg.materialize([segmentation_eval], instance=instance, resources=strict, raise_on_error=False)
        (strict_check,) = failed.get_asset_check_evaluations()
    rows = read_table(settings.table_uri("evaluations")).to_pylist()
    run = [r for r in rows if r["run_id"] == evaluated.run_id]
    assert run and {(r["target"], r["level"], r["aggregation"]) for r in run} == {
        ("segmentation", "series", "synthetic_truth"), ("segmentation", "image", "synthetic_truth")}
    dices = {(r["level"], r["label"]): r["value"] for r in run if r["metric"] == "dice"}
    assert {("series", s) for s in ("lung", "liver", "spleen", "kidney_left", "kidney_right")} <= set(dices)
    assert {("image", "lung"), ("image", "heart")} <= set(dices)  # the chest X-ray's masks are files, scored too
    assert dices[("image", "lung")] >= 0.85 and dices[("image", "heart")] >= 0.85  # a 128² radiograph (≥ 0.95 at 512²)
    segmented = {("image" if r["sop_instance_uid"] else "series", r["structure"])
                 for r in read_table(settings.table_uri("segmentations")).to_pylist()
                 if r["mask_path"] and r["batch"] == batch.key}
    assert set(dices) == segmented  # every stored mask was scored
    assert check.check_name == "dice_above_floor" and check.passed
    assert check.metadata["mean_dice"].value >= 0.8 and check.metadata["floor"].value == 0.8
    assert "| series | liver | synthetic_truth |" in str(meta["per_structure"].value)
    assert "| image | heart | synthetic_truth |" in str(meta["per_structure"].value)
    assert not strict_check.passed and not failed.success  # blocking: the run fails with the check
