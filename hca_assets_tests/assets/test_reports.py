"""reports (CXRReportGen, optional Azure backend) through Dagster against a stub endpoint that keeps the documented
contract: every CR/DX chest study gets its grounded findings, boxes mapped to pixels, a study whose call fails gets
a `failed` row while the others are reported, and without an endpoint the asset is skipped, never faked."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.images import images
from hca_assets.assets.ingest import raw_dicom
from hca_assets.assets.reports import reports
from hca_assets.config import Settings
from hca_assets.definitions import versioned
from hca_assets.lake import read_table
from hca_assets.models.cxrreportgen import crop_box_to_pixels, decode_findings
from hca_assets.models.endpoint import ContractError
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import PseudonymKey, ReportEndpoint, SettingsResource
from hca_assets.sources.claims import claim
from hca_assets_tests.stubs import CXR_FINDINGS, CxrStub

STUDY = dict(patients=2, seed=5, ct_slices=8, ct_size=64, cxr_size=96, mr_slices=8, mr_size=48, lesion_rate=0.0)


def _run(settings: Settings, endpoint: ReportEndpoint) -> tuple[dg.ExecuteInProcessResult, str, dg.DagsterInstance]:
    from hca_assets.synthetic import GeneratorOptions, generate

    generate(Path(settings.landing), Path(settings.truth_file).parent, GeneratorOptions(**STUDY))
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
    result = dg.materialize(versioned([raw_dicom, deid_staged, deid_dicom, images, reports], settings), instance=instance,
                            partition_key=batch.key, resources={"storage": SettingsResource.from_settings(settings),
                                                                "pseudonym_key": PseudonymKey(), "report_endpoint": endpoint})
    logs = " ".join(str(e.user_message) for e in instance.all_logs(result.run_id))
    return result, logs, instance


def test_reports_asset_against_the_stub_with_a_failing_study(settings: Settings) -> None:
    with CxrStub() as stub:
        stub.faults = ["424"]  # the first study's call: the model container failed (reported, not retried)
        result, logs, _ = _run(settings, ReportEndpoint(url=stub.url, key=stub.key))
    assert result.success
    rows = read_table(settings.table_uri("reports")).to_pylist()
    chest = {r["study_instance_uid"] for r in read_table(settings.table_uri("images")).to_pylist()
             if r["modality"] in ("CR", "DX") and r["body_part"] == "CHEST"}
    assert {r["study_instance_uid"] for r in rows} == chest and len(chest) >= 2
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and "424" in failed[0]["reason"] and failed[0]["sentence"] is None
    reported = [r for r in rows if r["status"] == "reported"]
    assert len(reported) == len(CXR_FINDINGS) * (len(chest) - 1)
    assert [r["sentence"] for r in reported[:2]] == [f[0] for f in CXR_FINDINGS]
    boxed = next(r for r in reported if r["boxes"])
    assert boxed["boxes"] == CXR_FINDINGS[1][1] and len(boxed["boxes_px"][0]) == 4
    assert all(c[0] == "frontal_image" and c[-3:] == ["indication", "technique", "comparison"] for c in stub.columns)
    assert stub.key not in logs and "a study was not reported" in logs


def test_without_an_endpoint_the_asset_is_skipped_not_faked(settings: Settings) -> None:
    result, logs, instance = _run(settings, ReportEndpoint())
    assert result.success and "reports skipped: no CXRReportGen endpoint configured" in logs
    assert not Path(settings.table_uri("reports")).exists()
    assert not instance.get_latest_materialization_event(dg.AssetKey("reports"))


def test_reply_shapes_and_box_mapping() -> None:
    live = [{"output": json.dumps(CXR_FINDINGS)}]
    docs = {"output": CXR_FINDINGS}
    assert decode_findings(live) == decode_findings(docs)
    assert decode_findings(live)[1].boxes == ((0.6, 0.55, 0.85, 0.8),)
    for broken in ([{"output": "not json"}], [{"output": [["x", [[0.5, 0.5, 0.2, 0.9]]]]}], [{}], [live[0], live[0]]):
        with pytest.raises(ContractError):
            decode_findings(broken)
    # portrait 200×100 (rows × columns): the centre square is rows 50..150
    assert crop_box_to_pixels((0.0, 0.0, 1.0, 1.0), 200, 100) == (0.0, 50.0, 100.0, 150.0)
    assert crop_box_to_pixels((0.5, 0.5, 1.0, 1.0), 100, 300) == (150.0, 50.0, 200.0, 100.0)
