"""export against a real Orthanc: STOW-RS (its DICOMweb) and C-STORE (its DICOM port) deliver exactly the batch's
de-identified instances and SEG results, nothing received carries PHI, the FHIR ImagingStudy files validate and name
no original UID, and a refusing destination fails its studies with a clear row while the others are exported."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
import requests

from hca_assets.assets.catalog import series, studies
from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.export import export_asset
from hca_assets.assets.images import images
from hca_assets.assets.ingest import raw_dicom
from hca_assets.assets.segmentation import segmentations_asset
from hca_assets.config import Settings
from hca_assets.export.destinations import Credentials, Destination, parse_destination
from hca_assets.export.fhir import validate
from hca_assets.lake import registry as tables
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import (
    ExportCredentials,
    PseudonymKey,
    SegmentationEndpoint,
    SettingsResource,
)
from hca_assets.sources.claims import claim
from hca_assets.stages.export import export_batch, plan_batch
from hca_assets_tests.conftest import TEST_KEY, manifest_strings
from hca_assets_tests.services import FaultProxy, free_port

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclasses.dataclass(frozen=True)
class Batch:
    settings: Settings
    key: str
    phi: list[bytes]  # the synthetic PHI strings, lower-cased
    originals: set[str]  # original study / series / instance UIDs (the restricted crosswalk)


def _resources(settings: Settings, credentials: ExportCredentials | None = None) -> dict[str, object]:
    return {"storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey(secret=TEST_KEY),
            "segmentation_endpoint": SegmentationEndpoint(), "export_credentials": credentials or ExportCredentials()}


def _materialize(batch: Batch, assets: list[dg.AssetsDefinition], settings: Settings,
                 credentials: ExportCredentials | None = None) -> tuple[dg.ExecuteInProcessResult, str]:
    """The run's result and its log messages, one a line."""
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        result = dg.materialize(assets, instance=instance, partition_key=batch.key,
                                resources=_resources(settings, credentials))
        logs = "\n".join(e.user_message for e in instance.all_logs(result.run_id))
    assert result.success
    return result, logs


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, small_study: tuple[Path, Path]) -> Batch:
    """One small synthetic patient ingested, de-identified, catalogued, rendered and segmented (no export yet)."""
    settings = Settings(data_dir=str(tmp_path_factory.mktemp("export") / "data"), settle_seconds=0.0, workers=1)
    shutil.copytree(small_study[0], Path(settings.landing) / "study")
    claimed = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert claimed is not None
    phi = [s.lower().encode() for s in manifest_strings(small_study[1])]
    batch = Batch(settings, claimed.key, phi, set())
    _materialize(batch, [raw_dicom, deid_staged, deid_dicom, series, studies, images, segmentations_asset(Settings())], settings)
    originals = {r["original"] for r in tables.DEID_CROSSWALK.read(settings).to_pylist() if r["kind"] != "patient"}
    assert originals
    return dataclasses.replace(batch, originals=originals)


def _expected(batch: Batch, studies_: set[str] | None = None) -> set[str]:
    """SOP Instance UIDs of the batch's published instances and its SEG results (of ``studies_`` only, if given)."""
    plans = plan_batch(batch.settings, batch.key)
    uids = {r["sop_instance_uid"] for uid, p in plans.items() if studies_ is None or uid in studies_ for r in p.rows}
    assert uids
    return uids


def _received(pacs: dict[str, object]) -> dict[str, bytes]:
    """SOP Instance UID → the file Orthanc stored, read back through its REST API."""
    auth = (str(pacs["user"]), str(pacs["password"]))
    found = requests.get(f"{pacs['url']}/instances", params={"expand": "1"}, auth=auth, timeout=30).json()
    return {i["MainDicomTags"]["SOPInstanceUID"]: requests.get(f"{pacs['url']}/instances/{i['ID']}/file", auth=auth,
                                                                timeout=30).content for i in found}


def _assert_clean(batch: Batch, received: dict[str, bytes]) -> None:
    for uid, data in received.items():
        lowered = data.lower()
        assert not [s for s in batch.phi if s in lowered], uid
        assert not [o for o in batch.originals if o.encode() in data], uid


def _export_rows(batch: Batch) -> list[dict[str, object]]:
    return tables.EXPORTS.read(batch.settings, where={"batch": batch.key}).to_pylist()


def test_not_configured_is_skipped(batch: Batch) -> None:
    before = _export_rows(batch)
    result, logs = _materialize(batch, [export_asset(Settings())], batch.settings)
    assert not result.asset_materializations_for_node("export")
    assert "export skipped: no destination configured" in logs
    assert _export_rows(batch) == before


def test_stow_rs_delivers_exactly_the_batch_and_valid_fhir(batch: Batch, pacs: dict[str, object]) -> None:
    settings = dataclasses.replace(batch.settings, export_destination=str(pacs["dicomweb"]))
    result, logs = _materialize(batch, [export_asset(Settings())], settings,
                                ExportCredentials(user=str(pacs["user"]), password=str(pacs["password"])))
    (meta,) = [m.metadata for m in result.asset_materializations_for_node("export")]
    assert "object(s) exported" in logs and str(pacs["password"]) not in logs  # per-study lines, no secret, no PHI
    assert not [o for o in batch.originals if o in logs] and not [s for s in batch.phi if s in logs.lower().encode()]
    received = _received(pacs)
    expected = _expected(batch)
    assert set(received) == expected
    segs = [u for u, d in received.items() if SEG_CLASS.encode() in d[:2000]]
    assert segs and meta["seg_objects"].value == len(segs) and meta["studies_failed"].value == 0
    _assert_clean(batch, received)
    rows = _export_rows(batch)
    assert rows and all(r["status"] == "exported" and r["message"] is None and r["destination_kind"] == "stow"
                        for r in rows)
    assert sum(r["accepted"] for r in rows) == len(expected) == sum(r["instances"] + r["seg_objects"] for r in rows)
    for r in rows:  # one valid ImagingStudy per study, listing what was sent, pseudonymous subject only
        text = (Path(settings.exports) / str(r["fhir_path"])).read_text()
        resource = json.loads(text)
        validate(resource)
        assert resource["id"] == r["study_instance_uid"] and resource["subject"] == {
            "reference": f"Patient/{r['patient_pseudonym']}"}
        assert resource["numberOfInstances"] == r["instances"] + r["seg_objects"]
        listed = {i["uid"] for s in resource["series"] for i in s["instance"]}
        assert listed <= expected and len(listed) == resource["numberOfInstances"]
        assert not [o for o in batch.originals if o in text] and not [s for s in batch.phi if s in text.lower().encode()]
    assert any(s.get("bodySite") for r in rows
               for s in json.loads((Path(settings.exports) / str(r["fhir_path"])).read_text())["series"])


def test_cstore_delivers_exactly_the_batch(batch: Batch, pacs: dict[str, object]) -> None:
    settings = dataclasses.replace(batch.settings, export_destination=f"dicom://{pacs['aet']}@127.0.0.1:{pacs['dicom_port']}")
    _materialize(batch, [export_asset(Settings())], settings)
    received = _received(pacs)
    assert set(received) == _expected(batch)
    _assert_clean(batch, received)
    assert {r["destination_kind"] for r in _export_rows(batch)} == {"cstore"}
    assert all(r["status"] == "exported" and r["attempts"] == 1 for r in _export_rows(batch))


def test_refusing_destinations_fail_their_studies_only(batch: Batch, pacs: dict[str, object]) -> None:
    plans = plan_batch(batch.settings, batch.key)
    assert len(plans) >= 2
    # a wrong password: every study failed at once (no retry can help), nothing stored
    settings = dataclasses.replace(batch.settings, export_destination=str(pacs["dicomweb"]), export_retries=2)
    out = export_batch(settings, batch.key, parse_destination(str(pacs["dicomweb"])),
                       Credentials(user=str(pacs["user"]), password="wrong"), plans)
    assert {(r["status"], r["attempts"]) for r in out.rows.to_pylist()} == {("failed", 1)}
    assert all("refused the credentials (HTTP 401)" in r["message"] for r in out.rows.to_pylist())
    assert not _received(pacs)
    # a closed DICOM port: each study retried, then failed with the reason
    closed = dataclasses.replace(settings, export_destination=f"dicom://{pacs['aet']}@127.0.0.1:{free_port()}")
    out = export_batch(closed, batch.key, parse_destination(closed.export_destination), Credentials(), plans)
    assert {(r["status"], r["attempts"]) for r in out.rows.to_pylist()} == {("failed", 2)}
    assert all(r["message"].startswith("connection to ORTHANC@127.0.0.1:") for r in out.rows.to_pylist())
    # a PACS that answers 503 twice: the first study fails after its two attempts, the next ones are exported
    proxy = FaultProxy(int(str(pacs["url"]).rsplit(":", 1)[1]))
    try:
        proxy.fail_next = 2
        url = str(pacs["dicomweb"]).replace(str(pacs["url"]), f"http://127.0.0.1:{proxy.port}")
        _, logs = _materialize(batch, [export_asset(Settings())], dataclasses.replace(settings, export_destination=url),
                               ExportCredentials(user=str(pacs["user"]), password=str(pacs["password"])))
    finally:
        proxy.close()
    rows = _export_rows(batch)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["accepted"] == 0 and "HTTP 503" in failed[0]["message"]
    assert f"study {failed[0]['study_instance_uid']}: export failed: STOW-RS to " in logs
    exported = {r["study_instance_uid"] for r in rows if r["status"] == "exported"}
    assert len(exported) == len(rows) - 1
    received = _received(pacs)
    assert set(received) == _expected(batch, exported)
    _assert_clean(batch, received)


def test_destination_setting_is_parsed_and_checked() -> None:
    assert parse_destination("") is None
    assert parse_destination("dicom://PACS@10.0.0.5:4242", "ME") == Destination(
        "cstore", host="10.0.0.5", port=4242, called_ae="PACS", calling_ae="ME")
    assert parse_destination("https://pacs.example/dicom-web/").describe() == "https://pacs.example/dicom-web"
    for bad in ("https://user:s3cret@pacs/dicom-web", "dicom://pacs:104", "dicom://AE@pacs:99999", "ftp://pacs",
                "dicom://A_TITLE_LONGER_THAN_16@pacs"):
        with pytest.raises(ValueError) as error:
            Settings(export_destination=bad)
        assert "s3cret" not in str(error.value) and "export_destination" in str(error.value)
