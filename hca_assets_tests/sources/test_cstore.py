"""The C-STORE listener (hca_assets/sources/cstore.py, `hca listen`): pynetdicom and DCMTK storescu as peers,
study completeness, and bad peers (unknown AE, malformed data, aborts, floods, a full disk)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, StoragePresentationContexts

from hca_assets.config import Settings
from hca_assets.lake import registry as tables
from hca_assets.sources import cstore
from hca_assets.sources.base import Incoming
from hca_assets.sources.claims import claim, load_batch
from hca_assets.sources.cstore import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, CStoreListener
from hca_assets.stages.ingest import IngestOutcome, ingest_batch
from hca_assets_tests.services import free_port, wait_for_port

KEY = b"cstore-test-key-0123456789abcdef"
REAL = ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "MR_small_jp2klossless.dcm", "JPEG-lossy.dcm",
        "image_dfl.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm", "MR_small_bigendian.dcm", "rtplan.dcm",
        "rtdose.dcm")  # explicit/implicit/big-endian, deflated, JPEG baseline/extended, JPEG 2000, RLE


@pytest.fixture(scope="module")
def real_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """pydicom's test files in each common transfer syntax; those sharing a SOP Instance UID get a new one."""
    root, out, seen = Path(pydicom.__file__).parent / "data" / "test_files", tmp_path_factory.mktemp("real"), set()
    files = []
    for name in REAL:
        ds = pydicom.dcmread(root / name)
        if ds.SOPInstanceUID in seen:
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        seen.add(ds.SOPInstanceUID)
        ds.save_as(out / name, enforce_file_format=True)
        files.append(out / name)
    return files


def _synthetic(small_study: tuple[Path, Path]) -> list[Path]:
    return sorted(p for p in small_study[0].rglob("*") if p.is_file())


def _settings(tmp_path: Path, **changes: object) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), **{"cstore_stable_seconds": 0.3, **changes})  # type: ignore[arg-type]


@pytest.fixture
def make_listener(tmp_path: Path) -> Iterator[Callable[..., CStoreListener]]:
    """Started in-process listeners on free loopback ports (``allow``: calling AE titles; settings changes)."""
    started: list[CStoreListener] = []

    def make(allow: tuple[str, ...] = (), **changes: object) -> CStoreListener:
        node = CStoreListener(_settings(tmp_path, **changes), KEY, port=free_port(), host="127.0.0.1", allow=allow)
        node.start()
        started.append(node)
        return node

    yield make
    for node in started:
        node.stop(grace_seconds=1)


@pytest.fixture
def listener(make_listener: Callable[..., CStoreListener]) -> CStoreListener:
    return make_listener()


def _associate(node: CStoreListener, files: list[Path] | None = None, aet: str = "SCU"):  # type: ignore[no-untyped-def]
    """An association with ``node``, proposing each file's own SOP class and transfer syntax (else the defaults)."""
    ae = AE(ae_title=aet)
    if files:
        for sop, ts in sorted({(pydicom.dcmread(f, stop_before_pixels=True).SOPClassUID,
                                pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in files}):
            ae.add_requested_context(sop, ts)
    else:
        ae.requested_contexts = StoragePresentationContexts
    return ae.associate("127.0.0.1", node.port, ae_title=node.ae_title)


def _released(node: CStoreListener, n: int, timeout: float = 15.0) -> None:
    """Poll ``node`` until ``n`` studies in all have been released."""
    deadline = time.monotonic() + timeout
    while node.stats.released < n:
        assert time.monotonic() < deadline, f"{node.stats.released} of {n} studies released"
        node.poll()
        time.sleep(0.05)


def _until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait for ``condition`` (the listener's own state), not for a fixed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.01)


def _ended(node: CStoreListener) -> None:
    """Every association has ended, its handler has run and pynetdicom no longer counts it."""
    _until(lambda: not node.active() and not node._server.active_associations, "the associations to end")  # type: ignore[union-attr]


def _landed(landing: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f) for f in sorted(landing.rglob("*.dcm"))]


def _claimed_uids(settings: Settings) -> list[str]:
    """Claim the landing zone as ingest does and list the SOP Instance UIDs of the batch's files."""
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    loaded = load_batch(Path(settings.raw_batches), batch.key)
    assert not loaded.unreadable and not loaded.hidden
    return [str(pydicom.dcmread(loaded.files_dir / f, stop_before_pixels=True).SOPInstanceUID) for f in loaded.files]


def _ingest(settings: Settings, known: dict[str, str]) -> IngestOutcome:
    """Claim the landing zone and ingest the batch (``known``: instances earlier batches ingested)."""
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    return ingest_batch(batch, key=KEY, quarantine_root=Path(settings.quarantine), known=known)


def test_pynetdicom_peer_sends_synthetic_and_real_files_each_kept_once(
        listener: CStoreListener, small_study: tuple[Path, Path], real_files: list[Path]) -> None:
    files = _synthetic(small_study) + real_files
    assoc = _associate(listener, files)
    assert assoc.is_established
    for f in files:
        assert assoc.send_c_store(pydicom.dcmread(f)).Status == 0x0000
    assoc.send_c_store(pydicom.dcmread(files[0]))  # the same instance twice keeps one file
    assoc.release()
    originals = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, files)}
    studies = {str(ds.StudyInstanceUID) for ds in originals.values()}
    _released(listener, len(studies))

    landing = Path(listener.settings.landing)
    landed = _landed(landing)
    assert sorted(str(ds.SOPInstanceUID) for ds in landed) == sorted(originals)
    for ds in landed:  # each instance as sent: its transfer syntax and pixel data unchanged
        sent = originals[str(ds.SOPInstanceUID)]
        assert ds.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert ds.get("PixelData") == sent.get("PixelData")
    def modes(paths: object) -> set[int]:
        return {stat.S_IMODE(p.stat().st_mode) for p in paths}  # type: ignore[attr-defined]

    assert modes([landing, *(p for p in landing.rglob("*") if p.is_dir())]) == {0o700}  # PHI: private as restricted/
    assert modes(p for p in landing.rglob("*") if p.is_file()) == {0o600}
    unkeyed = {hashlib.sha256(uid.encode()).hexdigest()[:32] for uid in originals}
    assert not unkeyed & {p.stem for p in landing.rglob("*.dcm")}  # names are keyed, like the folders
    ingested = _ingest(listener.settings, {})
    assert list(landing.iterdir()) == []  # the claim removed the study folders it emptied
    assert ingested.received == len(originals)
    kept = ingested.instances.column("sop_instance_uid").to_pylist()
    assert len(kept) == len(set(kept)) and set(kept) <= set(originals)
    assert {str(pydicom.dcmread(f).SOPInstanceUID) for f in _synthetic(small_study)} <= set(kept)

    rows = tables.STUDY_ARRIVALS.read(listener.settings).to_pylist()
    assert len(rows) == len(studies) and sum(r["received_instances"] for r in rows) == len(originals)
    assert {(r["complete"], r["completed_by"], r["released"]) for r in rows} == {(True, "stable_after_release", 1)}
    assert not any(uid in r["study_key"] for r in rows for uid in studies)


def test_completeness_waits_for_release_and_stable_age_and_late_instances_land_again(
        tmp_path: Path, small_study: tuple[Path, Path]) -> None:
    now = [1000.0]
    node = CStoreListener(_settings(tmp_path, cstore_stable_seconds=10), KEY, port=free_port(), host="127.0.0.1",
                          clock=lambda: now[0])
    node.start()
    try:
        ct = [f for f in _synthetic(small_study) if pydicom.dcmread(f, stop_before_pixels=True).Modality == "CT"]
        assoc = _associate(node)
        for f in ct[:-1]:
            assert assoc.send_c_store(pydicom.dcmread(f)).Status == 0
        now[0] += 60
        assert node.poll() == 0  # the association is still open: not complete, however long ago the last one came
        [row] = tables.STUDY_ARRIVALS.read(node.settings).to_pylist()
        assert (row["complete"], row["completed_by"], row["released"]) == (False, None, 0)  # visible while incomplete
        assert assoc.send_c_store(pydicom.dcmread(ct[-1])).Status == 0
        assoc.release()
        _ended(node)
        now[0] += 5
        assert node.poll() == 0  # released, but the last instance came 5 s ago (stable age 10 s)
        [row] = tables.STUDY_ARRIVALS.read(node.settings).to_pylist()
        assert (row["received_instances"], row["complete"]) == (len(ct), False)
        now[0] += 5
        assert node.poll() == 1
        [row] = tables.STUDY_ARRIVALS.read(node.settings).to_pylist()
        assert (row["received_instances"], row["complete"], row["completed_by"], row["released"]) == (
            len(ct), True, "stable_after_release", 1)
        first = _ingest(node.settings, {})
        assert (first.instances.num_rows, first.quarantine.num_rows) == (len(ct), 0)

        assoc = _associate(node)  # an instance sent again after the study was released
        assert assoc.send_c_store(pydicom.dcmread(ct[0])).Status == 0
        assoc.release()
        _ended(node)
        now[0] += 10
        assert node.poll() == 1
        [row] = tables.STUDY_ARRIVALS.read(node.settings).to_pylist()
        assert (row["received_instances"], row["complete"], row["released"]) == (len(ct) + 1, True, 2)
        known = dict(zip(first.instances.column("sop_instance_uid").to_pylist(),
                         first.instances.column("sha256").to_pylist(), strict=True))
        late = _ingest(node.settings, known)  # lands as a new batch, and ingest keeps nothing twice
        assert (late.received, late.instances.num_rows, late.reasons) == (1, 0, {"duplicate_instance": 1})
    finally:
        node.stop(grace_seconds=1)


def test_held_studies_of_a_previous_run_are_released_after_restart(tmp_path: Path,
                                                                   small_study: tuple[Path, Path]) -> None:
    settings = _settings(tmp_path)
    incoming = Incoming(Path(settings.incoming), Path(settings.landing), cstore.SOURCE, KEY)
    f = _synthetic(small_study)[0]
    incoming.add("0" * 32, "1.2.3", f.read_bytes())
    node = CStoreListener(settings, KEY, port=free_port(), host="127.0.0.1")
    _released(node, 1)  # once its stable age has passed since the last arrival
    assert len(list(Path(settings.landing).rglob("*.dcm"))) == 1


def test_malformed_data_set_is_refused_and_the_listener_goes_on(
        listener: CStoreListener, small_study: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    good = pydicom.dcmread(_synthetic(small_study)[0])
    assoc = _associate(listener)
    no_study = pydicom.dcmread(_synthetic(small_study)[0])
    del no_study.StudyInstanceUID
    assert assoc.send_c_store(no_study).Status == CANNOT_UNDERSTAND
    import pynetdicom.association

    real_encode = pynetdicom.association.encode
    monkeypatch.setattr(pynetdicom.association, "encode", lambda *a, **k: b"\xff" * 57)
    assert assoc.send_c_store(good).Status == CANNOT_UNDERSTAND  # bytes that are no data set
    monkeypatch.setattr(pynetdicom.association, "encode", real_encode)
    assert assoc.send_c_store(good).Status == 0x0000  # the same association goes on
    assoc.release()
    with socket.create_connection(("127.0.0.1", listener.port)) as raw:  # a peer speaking no DICOM at all
        raw.sendall(b"\x01\x00\x00\x00\xff\xffGET / HTTP/1.1\r\n\r\n")
    assoc = _associate(listener)
    assert assoc.is_established and assoc.send_c_store(good).Status == 0x0000
    assoc.release()
    _released(listener, 1)
    assert [str(ds.SOPInstanceUID) for ds in _landed(Path(listener.settings.landing))] == [good.SOPInstanceUID]


def test_aborted_association_keeps_every_accepted_instance(listener: CStoreListener,
                                                           small_study: tuple[Path, Path]) -> None:
    files = _synthetic(small_study)[:5]
    assoc = _associate(listener)
    for f in files:
        assert assoc.send_c_store(pydicom.dcmread(f)).Status == 0x0000
    assoc.abort()
    studies = {pydicom.dcmread(f).StudyInstanceUID for f in files}
    _released(listener, len(studies))
    assert sorted(str(ds.SOPInstanceUID) for ds in _landed(Path(listener.settings.landing))) == sorted(
        str(pydicom.dcmread(f).SOPInstanceUID) for f in files)
    rows = tables.STUDY_ARRIVALS.read(listener.settings).to_pylist()
    assert {r["completed_by"] for r in rows} == {"stable_after_abort"}  # said so: the peer may not have sent all


def test_full_disk_is_answered_out_of_resources(listener: CStoreListener, small_study: tuple[Path, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_: object) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    ds = pydicom.dcmread(_synthetic(small_study)[0])
    assoc = _associate(listener)
    with monkeypatch.context() as m:
        m.setattr(Incoming, "add", full)
        assert assoc.send_c_store(ds).Status == OUT_OF_RESOURCES
    assert assoc.send_c_store(ds).Status == 0x0000  # space again: the peer's retry is kept
    assoc.release()
    assert (listener.stats.stored, listener.stats.failed) == (1, 1)
    with monkeypatch.context() as m:  # the lake refuses the study_arrivals row: the study is released anyway
        m.setattr(CStoreListener, "_write_row", full)
        _released(listener, 1)
    assert tables.STUDY_ARRIVALS.read(listener.settings).num_rows == 0
    listener.poll()  # and the row is written at the next poll
    [row] = tables.STUDY_ARRIVALS.read(listener.settings).to_pylist()
    assert (row["received_instances"], row["complete"], row["released"]) == (1, True, 1)


def test_a_flood_is_refused_beyond_the_bounds_and_others_get_through(
        make_listener: Callable[..., CStoreListener], small_study: tuple[Path, Path]) -> None:
    listener = make_listener(("SCU", "LEGIT", "FLOOD", "OTHER"), cstore_max_associations=3, cstore_max_per_caller=2)
    flood = [_associate(listener, aet="FLOOD") for _ in range(5)]
    assert [a.is_established for a in flood].count(True) == 2  # one caller holds at most its share
    assert all(a.is_rejected for a in flood if not a.is_established)
    _until(lambda: len(listener._server.active_associations) == 2,  # type: ignore[union-attr]
           "pynetdicom to drop the refused associations (the two established stay)")
    legit = _associate(listener, aet="LEGIT")
    assert legit.is_established
    assert legit.send_c_store(pydicom.dcmread(_synthetic(small_study)[0])).Status == 0x0000
    other = _associate(listener, aet="OTHER")
    assert other.is_rejected  # the total bound: three associations are open
    intruder = _associate(listener, aet="INTRUDER")
    assert intruder.is_rejected  # not on the allow list
    for a in [*flood, legit]:
        if a.is_established:
            a.release()
    _ended(listener)
    other = _associate(listener, aet="OTHER")
    assert other.is_established
    other.release()
    assert listener.stats.rejected == 5


def test_hca_listen_receives_storescu_and_refuses_unknown_callers(
        tmp_path: Path, small_study: tuple[Path, Path], real_files: list[Path], phi_strings: list[str]) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(small_study[0], corpus / "synthetic")
    for f in real_files:  # storescu proposes the uncompressed syntaxes: compressed files go by pynetdicom above
        if not pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID.is_compressed:
            shutil.copy(f, corpus / f.name)
    files = sorted(p for p in corpus.rglob("*") if p.is_file())
    port = free_port()
    env = {**os.environ, "HCA_DATA_DIR": str(tmp_path / "data"), "HCA_CSTORE_STABLE_SECONDS": "0.5",
           "HCA_DEID_KEY": KEY.decode()}
    hca = [sys.executable, "-c", "from hca_assets.cli import main; main()"]
    proc = subprocess.Popen([*hca, "listen", "--port", str(port), "--host", "127.0.0.1", "--allow", "MODALITY"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for_port(port)
        busy = subprocess.run([*hca, "listen", "--port", str(port), "--host", "127.0.0.1"], env=env,
                              check=False, capture_output=True, text=True, timeout=60)
        assert busy.returncode == 2 and busy.stderr.count("\n") == 1 and "in use" in busy.stderr
        refused = subprocess.run(["storescu", "-aet", "INTRUDER", "-aec", "HCA", "127.0.0.1", str(port),
                                  str(files[0])], check=False, capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0
        sent = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "HCA", "+sd", "+r", "127.0.0.1", str(port),
                               str(corpus)], check=False, capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr[-500:]
        originals = sorted(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files)
        landing = tmp_path / "data" / "landing"
        deadline = time.monotonic() + 20
        while len(list(landing.rglob("*.dcm"))) < len(originals) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-500:]
    assert sorted(str(ds.SOPInstanceUID) for ds in _landed(landing)) == originals
    settings = Settings(data_dir=str(tmp_path / "data"))
    assert sorted(_claimed_uids(settings)) == originals
    assert f"{len(originals)} instances stored" in out.decode() and "0 held in incoming" in out.decode()
    log = (out + err).decode()
    assert "INTRUDER" in log and "MODALITY" in log  # associations are logged by AE title ...
    leaks = [s for s in [*originals, *phi_strings] if s in log]
    assert not leaks, f"{len(leaks)} UIDs or PHI strings in the listener's output"  # ... and without PHI
