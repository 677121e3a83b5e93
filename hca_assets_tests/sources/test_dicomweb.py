"""The DICOMweb poller and its sensor against a real Orthanc (Debian orthanc + orthanc-dicomweb) the tests start:
every instance lands once, complete studies are released whole, a second poll fetches nothing, late instances land
as a new folder, incomplete studies stay visible, auth and outages fail in one line, retries ride out 503/429."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import dagster as dg
import pydicom
import pytest
import requests
from pydicom.uid import generate_uid

from hca_assets.config import Settings
from hca_assets.lake import registry as tables
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import DicomwebServer, PseudonymKey, SettingsResource
from hca_assets.sensors.dicomweb import dicomweb_sensor
from hca_assets.sensors.landing import landing_sensor
from hca_assets.sources import dicomweb as dw
from hca_assets.sources.dicomweb import Credentials, DicomwebError, DicomwebPoller
from hca_assets_tests.services import FaultProxy, free_port

KEY = b"dicomweb-test-key-0123456789abcdef"
CT_SMALL = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"


@pytest.fixture
def corpus(small_study: tuple[Path, Path]) -> list[bytes]:
    """The synthetic patient's files and a real pydicom file."""
    return [p.read_bytes() for p in sorted(small_study[0].rglob("*")) if p.is_file()] + [CT_SMALL.read_bytes()]


def upload(pacs: dict[str, object], files: list[bytes]) -> None:
    with requests.Session() as s:
        s.auth = (str(pacs["user"]), str(pacs["password"]))
        for data in files:
            s.post(f"{pacs['url']}/instances", data=data, timeout=30).raise_for_status()


def poller(settings: Settings, pacs: dict[str, object], *, cursor: str | None = None, mode: str = "qido",
           url: str | None = None, password: str | None = None) -> DicomwebPoller:
    creds = Credentials(str(pacs["user"]), password or str(pacs["password"]))
    return DicomwebPoller(settings, url or str(pacs["dicomweb"]), creds, KEY, cursor=cursor, mode=mode)


def uid(data: bytes, tag: str = "SOPInstanceUID") -> str:
    return str(getattr(pydicom.dcmread(BytesIO(data), stop_before_pixels=True), tag))


def landed(settings: Settings) -> dict[str, list[str]]:
    """Landing folder name → SOP instance UIDs of its files."""
    return {f.name: [uid(p.read_bytes()) for p in sorted(f.iterdir())] for f in sorted(Path(settings.landing).iterdir())}


def today_study(n: int, study: str | None = None, date: str | None = None) -> list[bytes]:
    """``n`` instances of one study dated today or ``date`` (a real CT file with new UIDs)."""
    study = study or generate_uid()
    out = []
    for _ in range(n):
        ds = pydicom.dcmread(CT_SMALL)
        ds.StudyInstanceUID, ds.SOPInstanceUID = study, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate = date or datetime.now(UTC).strftime("%Y%m%d")
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def arrivals(settings: Settings) -> list[dict[str, object]]:
    return sorted(tables.STUDY_ARRIVALS.read(settings).to_pylist(), key=lambda r: str(r["study_key"]))


def wait_stable(pacs: dict[str, object], studies: int) -> None:
    """Until Orthanc reported ``studies`` StableStudy changes (StableAge 1 s)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        changes = requests.get(f"{pacs['url']}/changes", params={"limit": 10000}, timeout=10,
                               auth=(str(pacs["user"]), str(pacs["password"]))).json()["Changes"]
        if sum(c["ChangeType"] == "StableStudy" for c in changes) >= studies:
            return
        time.sleep(0.3)
    raise TimeoutError("Orthanc did not report the studies stable")


def test_every_instance_lands_once_complete_and_a_second_poll_fetches_nothing(
        settings: Settings, pacs: dict[str, object], corpus: list[bytes]) -> None:
    upload(pacs, corpus)
    studies = {uid(d, "StudyInstanceUID") for d in corpus}
    first = poller(settings, pacs)
    assert first.poll() == len(studies)
    got = landed(settings)
    assert sorted(u for us in got.values() for u in us) == sorted(uid(d) for d in corpus)  # each exactly once
    assert len(got) == len(studies)  # one folder per study
    assert not any(u in name for name in got for u in studies)  # no UID in paths
    rows = arrivals(settings)
    assert len(rows) == len(studies)
    assert all(r["complete"] and r["completed_by"] == "count_matches" and r["released"] == 1
               and r["received_instances"] == r["expected_instances"] for r in rows)
    assert sum(int(r["received_instances"]) for r in rows) == len(corpus)

    second = poller(settings, pacs, cursor=first.cursor)
    assert second.poll() == 0
    assert second.stats.instances_retrieved == 0 and second.stats.studies_seen == 0
    assert landed(settings) == got


def test_late_instances_land_as_a_new_folder_and_the_landing_claim_makes_batches(
        settings: Settings, pacs: dict[str, object]) -> None:
    early = today_study(3)
    study = uid(early[0], "StudyInstanceUID")
    upload(pacs, early)
    first = poller(settings, pacs)
    assert first.poll() == 1
    late = today_study(2, study)
    upload(pacs, late)
    second = poller(settings, pacs, cursor=first.cursor)
    assert second.poll() == 1
    assert second.stats.instances_retrieved == 2  # only the late ones were retrieved
    folders = landed(settings)
    assert sorted(map(sorted, folders.values())) == sorted([sorted(map(uid, early)), sorted(map(uid, late))])
    (row,) = arrivals(settings)
    assert (row["received_instances"], row["expected_instances"], row["released"], row["complete"]) == (5, 5, 2, True)


def test_an_incomplete_study_stays_visible_then_completes(settings: Settings, pacs: dict[str, object],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    files = today_study(4, date="20000101")  # outside the cursor's window: only its pending mark brings it back
    upload(pacs, files)
    real = dw._count
    monkeypatch.setattr(dw, "_count", lambda study: real(study) + 1)  # QIDO promises one more than it serves
    first = poller(settings, pacs)
    assert first.poll() == 0 and first.stats.incomplete == 1
    assert not Path(settings.landing).exists() or not any(Path(settings.landing).iterdir())
    (row,) = arrivals(settings)
    assert (row["complete"], row["completed_by"], row["received_instances"], row["expected_instances"],
            row["released"]) == (False, None, 4, 5, 0)
    monkeypatch.setattr(dw, "_count", real)
    again = poller(settings, pacs, cursor=first.cursor)
    assert again.poll() == 1 and again.stats.instances_retrieved == 0  # nothing missing: released as held
    assert sorted(next(iter(landed(settings).values()))) == sorted(map(uid, files))
    (row,) = arrivals(settings)
    assert (row["complete"], row["received_instances"], row["expected_instances"]) == (True, 4, 4)


def test_orthanc_changes_cursor(settings: Settings, pacs: dict[str, object], corpus: list[bytes]) -> None:
    upload(pacs, corpus)
    studies = {uid(d, "StudyInstanceUID") for d in corpus}
    wait_stable(pacs, len(studies))
    first = poller(settings, pacs, mode="orthanc-changes")
    assert first.poll() == len(studies)
    assert sorted(u for us in landed(settings).values() for u in us) == sorted(uid(d) for d in corpus)
    assert poller(settings, pacs, cursor=first.cursor, mode="orthanc-changes").poll() == 0
    # a late instance of an old-dated study (QIDO by date would not look again): the feed sees it
    ds = pydicom.dcmread(BytesIO(corpus[0]))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    upload(pacs, [buf.getvalue()])
    wait_stable(pacs, len(studies) + 1)
    late = poller(settings, pacs, cursor=first.cursor, mode="orthanc-changes")
    assert late.poll() == 1 and late.stats.instances_retrieved == 1
    assert [ds.SOPInstanceUID] in landed(settings).values()


def test_wrong_password_is_one_line(settings: Settings, pacs: dict[str, object]) -> None:
    upload(pacs, today_study(1))
    with pytest.raises(DicomwebError) as err:
        poller(settings, pacs, password="wrong-password-xyz").poll()
    message = str(err.value)
    assert "refused the credentials (HTTP 401)" in message and "\n" not in message
    assert "wrong-password-xyz" not in message and "dicom-web" not in message and err.value.__cause__ is None


def test_server_down_retries_then_fails_clearly(settings: Settings) -> None:
    fast = Settings(data_dir=settings.data_dir, dicomweb_retries=2, dicomweb_backoff_seconds=0.1)
    down = DicomwebPoller(fast, f"http://127.0.0.1:{free_port()}/dicom-web", Credentials("u", "p"), KEY)
    start = time.monotonic()
    with pytest.raises(DicomwebError, match=r"failed 3 times while searching for studies \(last: ConnectionError\)"):
        down.poll()
    assert time.monotonic() - start >= 0.1 + 0.2  # backed off 0.1 s, then 0.2 s
    assert down.cursor is None  # the next poll starts over


@pytest.mark.parametrize("status", [503, 429])
def test_transient_errors_are_retried(settings: Settings, pacs: dict[str, object], status: int) -> None:
    files = today_study(2)
    upload(pacs, files)
    proxy = FaultProxy(int(str(pacs["url"]).rsplit(":", 1)[1]))
    try:
        proxy.status, proxy.fail_next = status, 3
        fast = Settings(data_dir=settings.data_dir, dicomweb_backoff_seconds=0.05)
        assert poller(fast, pacs, url=f"http://127.0.0.1:{proxy.port}/dicom-web").poll() == 1
        assert proxy.failed == 3
    finally:
        proxy.close()
    assert sorted(next(iter(landed(settings).values()))) == sorted(map(uid, files))


def test_sensor_keeps_its_cursor_and_hands_studies_to_the_landing_sensor(
        settings: Settings, pacs: dict[str, object]) -> None:
    upload(pacs, today_study(3))
    resources = {"storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey(secret="sensor-test-secret-0123456789"),
                 "dicomweb": DicomwebServer(url=str(pacs["dicomweb"]), user=str(pacs["user"]),
                                            password=str(pacs["password"]))}
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, cursor=None, resources=resources)
        result = dicomweb_sensor(ctx)
        assert isinstance(result, dg.SkipReason) and "3 instances retrieved, 1 studies released" in str(result.skip_message)
        cursor = ctx.cursor
        assert cursor and "qido" in cursor
        again = dicomweb_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))
        assert "0 instances retrieved, 0 studies released" in str(again.skip_message)
        claimed = landing_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(claimed, dg.SensorResult) and len(claimed.run_requests or []) == 1
        (added,) = claimed.dynamic_partitions_requests or []
        assert added.partitions_def_name == INGEST_BATCHES and len(added.partition_keys) == 1
        bad = {**resources, "dicomweb": DicomwebServer(url=str(pacs["dicomweb"]), user="hca", password="nope")}
        refused = dicomweb_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=bad))
        assert "refused the credentials" in str(refused.skip_message)


def test_bearer_token_is_preferred_and_no_secret_is_printed(settings: Settings, pacs: dict[str, object]) -> None:
    creds = Credentials("hca", "pw-secret-1", "tok-secret-2")
    session = creds.session()
    assert session.headers["Authorization"] == "Bearer tok-secret-2" and session.auth is None
    assert "secret" not in repr(creds)
    with pytest.raises(DicomwebError, match="refused the credentials") as err:  # Orthanc knows no bearer tokens
        DicomwebPoller(settings, str(pacs["dicomweb"]), creds, KEY).poll()
    assert "secret" not in str(err.value)
