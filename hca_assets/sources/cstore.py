"""The C-STORE listener: a pynetdicom storage SCP that collects each study in the incoming area and releases it
into the landing zone once complete (every association that sent to it has ended and nothing arrived for
``stable_seconds``).

Each instance is written atomically by :meth:`Incoming.add` before its success status is sent, so an instance
the peer saw accepted survives any abort. A write that fails (disk full, I/O error) is answered ``0xA700``
(out of resources), a data set that cannot be decoded or lacks its SOP Instance or Study Instance UID ``0xC000``
(cannot understand); the listener keeps serving either way. Logs name the calling AE title, the peer's address
and counts, never a UID or a patient attribute.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from hca_assets.config import Settings
from hca_assets.lake import registry as tables
from hca_assets.sources.base import Incoming, study_key

__all__ = ["CANNOT_UNDERSTAND", "OUT_OF_RESOURCES", "SOURCE", "TRANSFER_SYNTAXES", "CStoreListener", "ListenerStats"]

SOURCE = "cstore"
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
SUCCESS = 0x0000
# what the listener accepts for every storage SOP class: uncompressed, deflated and the common compressed syntaxes
TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                     ExplicitVRBigEndian, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1,
                     JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless]
MAX_PDU_BYTES = 1 << 20  # large PDUs (fewer round trips) while no peer makes the listener hold gigabytes at once
_REJECT_LOCAL_LIMIT = (0x02, 0x03, 0x02)  # transient, DUL presentation: local limit exceeded

log = logging.getLogger(__name__)


@dataclass
class ListenerStats:
    """Counts since the listener started (PHI-free): what ``hca listen`` prints."""

    associations: int = 0
    rejected: int = 0
    stored: int = 0
    failed: int = 0
    released: int = 0


@dataclass
class _Study:
    """A study being collected: its instance files, when they came and which associations are still open."""

    key: str
    first: float  # wall clock (study_arrivals)
    last: float
    last_mono: float  # monotonic (stability)
    names: set[str] = field(default_factory=set)
    open: set[int] = field(default_factory=set)
    aborted: bool = False
    released: bool = False
    dirty: bool = True
    prior: tuple[int, int, datetime | None] | None = None  # received, released, first arrival of earlier releases
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Association:
    calling: str
    peer: str
    start: float
    studies: set[str] = field(default_factory=set)
    stored: int = 0
    failed: int = 0
    released: bool = False  # by an A-RELEASE; an association that ends otherwise was aborted or broken


class CStoreListener:
    """A storage SCP on ``host:port`` as ``ae_title``; ``poll`` releases complete studies (a :class:`DicomSource`)."""

    name = SOURCE

    def __init__(self, settings: Settings, key: bytes, *, ae_title: str = "HCA", port: int = 11112,
                 host: str = "0.0.0.0", allow: tuple[str, ...] = (), clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.settings, self.key, self.ae_title, self.port, self.host = settings, key, ae_title, port, host
        self.allow = tuple(a.strip() for a in allow)
        self.stable_seconds = settings.cstore_stable_seconds
        self.incoming = Incoming(Path(settings.incoming), Path(settings.landing), SOURCE, key)
        self.stats = ListenerStats()
        self._clock = clock
        self._lock = threading.Lock()
        self._studies: dict[str, _Study] = {}
        self._assocs: dict[int, _Association] = {}
        self._server: ThreadedAssociationServer | None = None
        self._unwritten: list[tuple[_Study, tuple[int, float, float, bool, bool]]] = []  # rows for study_arrivals
        self._adopt_held()

    # the server -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start serving in background threads; ``OSError`` when the port cannot be bound (e.g. in use)."""
        ae = AE(ae_title=self.ae_title)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.maximum_associations = self.settings.cstore_max_associations
        ae.maximum_pdu_size = MAX_PDU_BYTES
        ae.require_calling_aet = list(self.allow)
        ae.acse_timeout = 10  # a connection that never asks for an association is dropped
        ae.network_timeout = 60  # and an association that goes idle
        ae.dimse_timeout = 60
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REQUESTED, self._on_requested),
                    (evt.EVT_ESTABLISHED, self._on_established), (evt.EVT_REJECTED, self._on_rejected),
                    (evt.EVT_RELEASED, self._on_released), (evt.EVT_CONN_CLOSE, self._on_closed)]
        self._ae = ae
        self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        log.info("listening on %s:%d as %s (%s; at most %d associations)", self.host, self.port, self.ae_title,
                 f"{len(self.allow)} calling AE titles allowed" if self.allow else "any calling AE title",
                 ae.maximum_associations)

    def active(self) -> int:
        """Associations open now."""
        with self._lock:
            return len(self._assocs)

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop accepting, give open associations ``grace_seconds`` to finish, abort the rest, write every study's
        row (held studies stay in the incoming area: the next start releases them)."""
        if self._server is not None:
            self._server.shutdown()  # no new association; the open ones go on
            deadline = time.monotonic() + grace_seconds
            while self.active() and time.monotonic() < deadline:
                time.sleep(0.05)
            self._ae.shutdown()
            self._server = None
        self.poll()

    # completeness ---------------------------------------------------------------------------------------------
    def _adopt_held(self) -> None:
        """Studies a previous run left in the incoming area: no open association, released once stable."""
        now = self._clock()
        for held in self.incoming.studies():
            folder = self.incoming.root / held.study_key
            names = {f.name for f in folder.iterdir() if f.suffix == ".dcm"}
            age = max(0.0, time.time() - held.last_arrival)
            self._studies[held.study_key] = _Study(held.study_key, held.last_arrival, held.last_arrival, now - age, names)

    def poll(self) -> int:
        """Release every study whose associations have all ended and that got nothing for the stable age; write
        the ``study_arrivals`` row of every study that changed. Returns how many studies were released."""
        now = self._clock()
        with self._lock:
            studies = list(self._studies.values())
        released = 0
        for study in studies:
            with study.lock:
                done = not study.open and now - study.last_mono >= self.stable_seconds
                if study.released or not (study.dirty or done):
                    continue
                moved = done and self.incoming.release(study.key) is not None
                study.released = done  # done with nothing held (every write failed): it just leaves
                if study.dirty or moved:
                    self._unwritten.append((study, (len(study.names), study.first, study.last, study.aborted, moved)))
                study.dirty = False
            released += moved
            if done:
                with self._lock:
                    if self._studies.get(study.key) is study:
                        del self._studies[study.key]
        self._write_rows()
        if released:
            with self._lock:
                self.stats.released += released
        return released

    def _write_rows(self) -> None:
        """Write the rows waiting, in order; one the lake refuses now (full disk?) waits for the next poll."""
        waiting, self._unwritten = self._unwritten, []
        for i, (study, snapshot) in enumerate(waiting):
            if not snapshot[0]:
                continue  # no instance kept: nothing to report
            try:
                self._write_row(study, *snapshot)
            except Exception as exc:  # noqa: BLE001 - the listener keeps receiving; the row is written later
                log.error("study_arrivals not written (%s); trying again at the next poll", type(exc).__name__)
                self._unwritten = waiting[i:] + self._unwritten
                return

    def _write_row(self, study: _Study, received: int, first: float, last: float, aborted: bool,
                   released: bool) -> None:
        """The study's ``study_arrivals`` row: counts over every release of the study so far."""
        if study.prior is None:
            rows = tables.STUDY_ARRIVALS.read(self.settings, where={"source": SOURCE, "study_key": study.key}).to_pylist()
            study.prior = ((rows[0]["received_instances"], rows[0]["released"], rows[0]["first_arrival"]) if rows
                           else (0, 0, None))
        prior_received, prior_released, prior_first = study.prior
        total, count = prior_received + received, prior_released + int(released)
        first_at = prior_first or datetime.fromtimestamp(first, UTC)
        row = {"source": SOURCE, "study_key": study.key, "expected_instances": None, "received_instances": total,
               "complete": released, "completed_by": ("stable_after_abort" if aborted else "stable_after_release")
               if released else None, "released": count, "first_arrival": first_at,
               "last_arrival": datetime.fromtimestamp(last, UTC)}
        tables.STUDY_ARRIVALS.write(self.settings, pa.Table.from_pylist([row], tables.STUDY_ARRIVALS.schema),
                                    match={"source": SOURCE, "study_key": study.key})
        if released:
            study.prior = (total, count, first_at)

    # event handlers (association threads) -------------------------------------------------------------------
    def _on_requested(self, event: evt.Event) -> None:
        """Refuse a caller that already holds its share of the associations, so one flooding peer cannot take
        every slot from the others."""
        calling = event.assoc.requestor.primitive.calling_ae_title.strip()
        with self._lock:
            held = sum(1 for a in self._assocs.values() if a.calling == calling)
        if held >= self.settings.cstore_max_per_caller:
            event.assoc.acse.send_reject(*_REJECT_LOCAL_LIMIT)
            event.assoc.is_rejected = True
            event.assoc.kill()
            self._on_rejected(event)

    def _on_established(self, event: evt.Event) -> None:
        requestor = event.assoc.requestor
        with self._lock:
            self._assocs[id(event.assoc)] = _Association(requestor.ae_title.strip(), f"{requestor.address}:{requestor.port}",
                                                         time.monotonic())
            self.stats.associations += 1

    def _on_rejected(self, event: evt.Event) -> None:
        requestor = event.assoc.requestor
        with self._lock:
            self.stats.rejected += 1
        log.warning("association refused: calling AE %r from %s", requestor.primitive.calling_ae_title.strip(),
                    requestor.address)

    def _on_released(self, event: evt.Event) -> None:
        with self._lock:
            assoc = self._assocs.get(id(event.assoc))
            if assoc is not None:
                assoc.released = True

    def _on_closed(self, event: evt.Event) -> None:
        """The association ended (released or aborted): its studies may now become stable; one log line."""
        with self._lock:
            assoc = self._assocs.pop(id(event.assoc), None)
            studies = [self._studies[k] for k in assoc.studies if k in self._studies] if assoc else []
        if assoc is None:
            return
        for study in studies:
            with study.lock:
                study.open.discard(id(event.assoc))
                study.aborted |= not assoc.released
                study.dirty = True
        log.info("association from %s at %s %s after %.1f s: %d stored, %d failed, %d studies", assoc.calling,
                 assoc.peer, "released" if assoc.released else "aborted", time.monotonic() - assoc.start,
                 assoc.stored, assoc.failed, len(assoc.studies))

    def _on_store(self, event: evt.Event) -> int:
        """Keep one instance; the status says whether it is kept (never raises: pynetdicom would answer 0xC211)."""
        with self._lock:
            assoc = self._assocs.get(id(event.assoc))
        try:
            ds = event.dataset
            sop_uid, study_uid = str(ds.get("SOPInstanceUID", "") or ""), str(ds.get("StudyInstanceUID", "") or "")
            data = event.encoded_dataset()
        except Exception:  # noqa: BLE001 - any decoding failure of the peer's bytes is "cannot understand"
            sop_uid = study_uid = ""
        if not sop_uid or not study_uid:
            return self._count(assoc, CANNOT_UNDERSTAND)
        key = study_key(self.key, study_uid)
        try:
            self._keep(key, sop_uid, data, id(event.assoc), assoc)
        except OSError as exc:
            log.error("instance from %s refused: cannot write it (%s)", assoc.calling if assoc else "?",
                      exc.strerror or type(exc).__name__)
            return self._count(assoc, OUT_OF_RESOURCES)
        return self._count(assoc, SUCCESS)

    def _keep(self, key: str, sop_uid: str, data: bytes, assoc_id: int, assoc: _Association | None) -> None:
        """Write the instance into its study's folder under the study's lock (a release never takes a folder
        in the middle of a write); a study released meanwhile starts again."""
        while True:
            with self._lock:
                study = self._studies.get(key)
                if study is None:
                    now = time.time()
                    study = self._studies[key] = _Study(key, now, now, self._clock())
                if assoc is not None:
                    assoc.studies.add(key)
            with study.lock:
                if study.released:
                    continue
                study.open.add(assoc_id)
                path = self.incoming.add(key, sop_uid, data)
                study.names.add(path.name)
                study.last, study.last_mono = time.time(), self._clock()
                return

    def _count(self, assoc: _Association | None, status: int) -> int:
        with self._lock:
            ok = status == SUCCESS
            self.stats.stored += ok
            self.stats.failed += not ok
            if assoc is not None:
                assoc.stored += ok
                assoc.failed += not ok
        return status
