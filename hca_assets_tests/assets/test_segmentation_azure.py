"""segmentations with HCA_SEGMENTER=azure through Dagster against the MedImageParse stub: the configured backend
segments every series, one series whose reply breaks the contract becomes 'failed' rows while the batch goes on,
and the endpoint key appears in no log."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import nibabel as nib

from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.images import images
from hca_assets.assets.ingest import raw_dicom
from hca_assets.assets.segmentation import segmentations_asset
from hca_assets.config import Settings
from hca_assets.definitions import versioned
from hca_assets.lake import read_table
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import PseudonymKey, SegmentationEndpoint, SettingsResource
from hca_assets.segmentation.backends import segmenter_code_version
from hca_assets.sources.claims import claim
from hca_assets.synthetic import GeneratorOptions, generate
from hca_assets_tests.stubs import MipStub

STUDY = GeneratorOptions(patients=1, seed=11, ct_slices=8, ct_size=64, cxr_size=96, mr_slices=8, mr_size=48,
                         lesion_rate=0.0)


def test_segmentations_asset_with_the_azure_backend(settings: Settings) -> None:
    azure = dataclasses.replace(settings, segmenter="azure", mip_model_version="mip-test", mip_concurrency=2)
    generate(Path(settings.landing), Path(settings.truth_file).parent, STUDY)
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    with MipStub() as stub, dg.instance_for_test() as instance:
        stub.faults = ["wrong_dim"]  # the first request (the first volume's first slice) gets 512² masks
        resources = {"storage": SettingsResource.from_settings(azure), "pseudonym_key": PseudonymKey(),
                     "segmentation_endpoint": SegmentationEndpoint(url=stub.url, key=stub.key)}
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        result = dg.materialize(versioned([raw_dicom, deid_staged, deid_dicom, images, segmentations_asset(azure)], azure),
                                instance=instance, partition_key=batch.key, resources=resources)
        logs = " ".join(str(e.user_message) for e in instance.all_logs(result.run_id))
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    rows = read_table(settings.table_uri("segmentations")).to_pylist()
    volumes = {v["series_instance_uid"]: v for v in read_table(settings.table_uri("volumes")).to_pylist()}
    status = {r["series_instance_uid"]: {x["status"] for x in rows if x["series_instance_uid"] == r["series_instance_uid"]}
              for r in rows}
    (failed,) = [s for s, found in status.items() if found == {"failed"}]  # one series, every prompt of it
    assert failed in volumes and f"series {failed}: BackendFailure (MedImageParse slice" in logs and "expected uint8 masks" in logs
    segmented = [r for r in rows if r["status"] == "segmented"]
    assert {r["modality"] for r in segmented} >= {"CR", "DX"} & {r["modality"] for r in rows} and len(status) >= 3
    assert {(r["backend"], r["code_version"], r["confidence"]) for r in segmented} == {
        ("azure-mip", segmenter_code_version(azure), None)}
    assert segmenter_code_version(azure) == "azure-mip@mip-test+prompts-1+pre-2"
    assert {r["structure"] for r in segmented if r["modality"] in ("CR", "DX")} == {"lung", "heart"}
    volume_row = next(r for r in segmented if r["series_instance_uid"] in volumes)
    mask = nib.load(Path(settings.segmentations) / volume_row["mask_path"])
    assert mask.shape == tuple(volumes[volume_row["series_instance_uid"]]["shape"]) and mask.get_fdata().any()
    assert "lung & heart" in stub.texts and stub.key not in logs


def test_the_configured_backend_sets_code_versions_and_pool_at_load() -> None:
    code = ("from hca_assets.definitions import defs\n"
            "seg, ev = defs.resolve_assets_def('segmentations'), defs.resolve_assets_def('segmentation_eval')\n"
            "print(seg.op.pool, *seg.code_versions_by_key.values(), *ev.code_versions_by_key.values())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HCA_")}
    found = [subprocess.run([sys.executable, "-c", code], env=env | extra, capture_output=True, text=True, check=True,
                            timeout=120).stdout.split() for extra in ({"HCA_SEGMENTER": "azure", "HCA_MIP_MODEL_VERSION": "v7"}, {})]
    assert found[0] == ["segmentation_endpoint", "azure-mip@v7+prompts-1+pre-2", "seg-eval-1+azure-mip@v7+prompts-1+pre-2"]
    assert found[1][0] == "None" and found[1][1].startswith("local@")
