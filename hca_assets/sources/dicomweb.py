"""DICOMweb pull: find studies on a PACS (QIDO-RS, or Orthanc's ``/changes`` feed), retrieve them (WADO-RS) into
the incoming area, and release each whole into the landing zone once complete.

A study is complete when the instances held for it (retrieved now or released before) number at least QIDO's
NumberOfStudyRelatedInstances (00201208). Each poll writes the study's ``study_arrivals`` row, complete or not,
and looks again at every study still incomplete. What was released is remembered per study (instance digests,
in ``incoming/.state/dicomweb/``, restricted), so a late instance of a released study is retrieved alone and
released as a new folder; ingest quarantines a true duplicate. The cursor is JSON the caller keeps (the sensor's
state): ``{"qido": "YYYYMMDD"}`` — the poll's own date minus ``dicomweb_lookback_days``, never a study's date —
or ``{"changes": <last Orthanc change seq>}``. QIDO by StudyDate misses a study dated before the lookback window
that reaches the PACS late (a prior); Orthanc's feed sees every study that became stable, whatever its date.
Errors are one PHI-free line (:class:`DicomwebError`): no URL (it holds UIDs), no credentials.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pydicom
import requests
from dicomweb_client import DICOMwebClient

from hca_assets._infra.files import atomic_write
from hca_assets.config import Settings
from hca_assets.lake import registry as tables
from hca_assets.lake.schemas import STUDY_ARRIVALS
from hca_assets.sources.base import Incoming, study_key

__all__ = ["CURSOR_MODES", "Credentials", "DicomwebError", "DicomwebPoller", "PollStats"]

CURSOR_MODES = ("qido", "orthanc-changes")
SOURCE = "dicomweb"
_RETRIABLE = frozenset({429, 500, 502, 503, 504})
_COUNT, _STUDY_UID, _SERIES_UID, _SOP_UID = "00201208", "0020000D", "0020000E", "00080018"
_ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_CHANGES_PAGE = 1000
T = TypeVar("T")

logging.getLogger("dicomweb_client").setLevel(logging.WARNING)  # its debug lines print request URLs (UIDs)


class DicomwebError(RuntimeError):
    """A DICOMweb failure, in one line without PHI (no URL, no UID, no credential)."""


@dataclass(frozen=True)
class Credentials:
    """Basic (``user``/``password``) or bearer (``token``, preferred when both are set) auth; never printed."""

    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)

    def session(self) -> requests.Session:
        """A session sending these credentials on every request."""
        session = requests.Session()
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        elif self.user:
            session.auth = (self.user, self.password)
        return session


@dataclass
class PollStats:
    """What one poll did, in counts (what the sensor logs)."""

    studies_seen: int = 0
    instances_retrieved: int = 0
    released: int = 0
    incomplete: int = 0


@dataclass
class _Study:
    """What is remembered of one study between polls (restricted: it holds the UID)."""

    uid: str
    released: list[str] = field(default_factory=list)  # instance file names (digests) already released
    releases: int = 0
    complete: bool = False
    first_arrival: float = field(default_factory=time.time)


class DicomwebPoller:
    """The DICOMweb :class:`~hca_assets.sources.base.DicomSource`: ``poll`` releases complete studies into landing."""

    name = SOURCE

    def __init__(self, settings: Settings, url: str, credentials: Credentials, key: bytes, *,
                 cursor: str | None = None, mode: str | None = None) -> None:
        self.settings, self.url, self.key = settings, url.rstrip("/"), key
        self.mode = mode or settings.dicomweb_cursor
        if self.mode not in CURSOR_MODES:
            raise ValueError(f"`dicomweb_cursor` must be one of {', '.join(CURSOR_MODES)}, got {self.mode!r}")
        self.session = credentials.session()
        self.client = DICOMwebClient(self.url, session=self.session, timeout=settings.dicomweb_timeout_seconds)
        self.client.set_http_retry_params(retry=False)  # retries are ours (_call), with connection errors too
        self.incoming = Incoming(Path(settings.incoming), Path(settings.landing), SOURCE, key)
        self.state_dir = Path(settings.incoming) / ".state" / SOURCE
        self.cursor = self._own_cursor(cursor)
        self.stats = PollStats()

    def _own_cursor(self, cursor: str | None) -> str | None:
        """The cursor if it is this mode's (a cursor of the other mode starts over)."""
        if not cursor:
            return None
        parsed = json.loads(cursor)
        return cursor if ("qido" if self.mode == "qido" else "changes") in parsed else None

    # the poll ---------------------------------------------------------------------------------------------------
    def poll(self) -> int:
        """Retrieve new and incomplete studies, release the complete ones; returns how many were released.
        ``self.cursor`` advances as work is done (also when a failure stops the poll half-way)."""
        self.stats = PollStats()
        pending = {s.uid for s in self._pending()}  # studies an earlier poll left incomplete: looked at again
        if self.mode == "qido":
            since = (datetime.now(UTC) - timedelta(days=self.settings.dicomweb_lookback_days)).strftime("%Y%m%d")
            counts = self._qido_counts(json.loads(self.cursor)["qido"] if self.cursor else None)
            self._collect_all(counts | {uid: self._expected(uid) for uid in sorted(pending - counts.keys())})
            self.cursor = json.dumps({"qido": since})
        else:
            self._collect_all({uid: self._expected(uid) for uid in sorted(pending)})
            seq = json.loads(self.cursor)["changes"] if self.cursor else 0
            while True:
                page = self._call("reading the change feed", lambda since=seq: self._changes(since))
                ids = sorted({c["ID"] for c in page["Changes"] if c["ChangeType"] == "StableStudy"})
                self._collect_all({uid: self._expected(uid) for i in ids if (uid := self._orthanc_uid(i))})
                seq = int(page["Last"])
                self.cursor = json.dumps({"changes": seq})
                if page["Done"]:
                    break
        return self.stats.released

    def _collect_all(self, counts: dict[str, int | None]) -> None:
        """Collect every study of ``counts`` (UID → expected count; None: the server has no count for it)."""
        for uid, expected in counts.items():
            if expected is not None:
                self._collect(uid, expected)

    def _collect(self, uid: str, expected: int) -> None:
        """Retrieve what is missing of one study, release it when complete, and write its ``study_arrivals`` row."""
        key = study_key(self.key, uid)
        state = self._load(key) or _Study(uid)
        done, held = set(state.released), self._held(key)
        known = done | held
        if len(known) >= expected and not held:
            return  # nothing new since it was released
        self.stats.studies_seen += 1
        if len(known) < expected:
            if not known:
                self._retrieve(key, f"{self.url}/studies/{uid}")
            else:
                for series, sop in self._instances(uid):
                    if self.incoming.name(sop) not in known:
                        self._retrieve(key, f"{self.url}/studies/{uid}/series/{series}/instances/{sop}")
        held = self._held(key)
        state.complete = len(done | held) >= expected
        if state.complete and self.incoming.release(key) is not None:
            state.released, state.releases = sorted(done | held), state.releases + 1
            self.stats.released += 1
        self.stats.incomplete += not state.complete
        self._save(key, state)
        self._write_row(key, state, expected, len(done | held))

    # DICOMweb and Orthanc calls -------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn`` with retries and exponential backoff on 429/5xx and connection errors; a one-line error else."""
        attempts = self.settings.dicomweb_retries + 1
        for attempt in range(attempts):
            try:
                return fn()
            except requests.HTTPError as err:
                status = err.response.status_code if err.response is not None else 0
                if status in (401, 403):
                    raise DicomwebError(f"DICOMweb server refused the credentials (HTTP {status}) while {what}: check "
                                        "HCA_DICOMWEB_USER / HCA_DICOMWEB_PASSWORD or HCA_DICOMWEB_TOKEN") from None
                if status not in _RETRIABLE:
                    raise DicomwebError(f"DICOMweb server answered HTTP {status} while {what}") from None
                reason = f"HTTP {status}"
                wait = _retry_after(err.response)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
                reason, wait = type(err).__name__, None
            if attempt + 1 < attempts:
                backoff = self.settings.dicomweb_backoff_seconds * 2 ** attempt  # Retry-After honoured up to a timeout
                time.sleep(max(min(wait or 0.0, self.settings.dicomweb_timeout_seconds), backoff))
        raise DicomwebError(f"DICOMweb server failed {attempts} times while {what} (last: {reason}); "
                            "the poll resumes from its cursor next time") from None

    def _qido_counts(self, since: str | None) -> dict[str, int | None]:
        """UID → NumberOfStudyRelatedInstances of the studies dated ``since`` (YYYYMMDD) or later (all: None)."""
        found = self._call("searching for studies", lambda: self.client.search_for_studies(
            search_filters={"StudyDate": f"{since}-"} if since else None, fields=[_COUNT], get_remaining=True))
        return {s[_STUDY_UID]["Value"][0]: _count(s) for s in found}

    def _expected(self, uid: str) -> int | None:
        """QIDO's NumberOfStudyRelatedInstances of one study; None when the server no longer has it."""
        found = self._call("searching for a study", lambda: self.client.search_for_studies(
            search_filters={"StudyInstanceUID": uid}, fields=[_COUNT]))
        return _count(found[0]) if found else None

    def _instances(self, uid: str) -> list[tuple[str, str]]:
        """(series UID, SOP instance UID) of every instance of a study."""
        found = self._call("listing a study's instances", lambda: self.client.search_for_instances(
            study_instance_uid=uid, fields=[_SERIES_UID, _SOP_UID], get_remaining=True))
        return [(i[_SERIES_UID]["Value"][0], i[_SOP_UID]["Value"][0]) for i in found]

    def _retrieve(self, key: str, url: str) -> None:
        """WADO-RS GET of a study or instance, streamed part by part into the incoming area (retried whole: adding
        an instance twice keeps one file)."""
        def fetch() -> int:
            n = 0
            for part in self._parts(url):
                self.incoming.add(key, _sop_uid(part), part)
                n += 1
            return n

        self.stats.instances_retrieved += self._call("retrieving a study", fetch)

    def _parts(self, url: str) -> Iterator[bytes]:
        response = self.session.get(url, headers={"Accept": _ACCEPT_DICOM}, stream=True,
                                    timeout=self.settings.dicomweb_timeout_seconds)
        response.raise_for_status()
        return self.client._decode_multipart_message(response, stream=True)  # its streaming decoder (private)

    def _changes(self, since: int) -> dict[str, Any]:
        root = self.url.rsplit("/", 1)[0]  # Orthanc's REST root: its DICOMweb root is <root>/dicom-web
        response = self.session.get(f"{root}/changes", params={"since": since, "limit": _CHANGES_PAGE},
                                    timeout=self.settings.dicomweb_timeout_seconds)
        response.raise_for_status()
        return dict(response.json())

    def _orthanc_uid(self, orthanc_id: str) -> str | None:
        """The StudyInstanceUID of an Orthanc study id; None when it was deleted since."""
        def get() -> str | None:
            response = self.session.get(f"{self.url.rsplit('/', 1)[0]}/studies/{orthanc_id}",
                                        timeout=self.settings.dicomweb_timeout_seconds)
            if response.status_code == 404:
                return None
            response.raise_for_status()
            return str(response.json()["MainDicomTags"]["StudyInstanceUID"])

        return self._call("reading the change feed", get)

    # state ------------------------------------------------------------------------------------------------------
    def _held(self, key: str) -> set[str]:
        folder = self.incoming.root / key
        return {f.name for f in folder.glob("*.dcm")} if folder.is_dir() else set()

    def _load(self, key: str) -> _Study | None:
        path = self.state_dir / f"{key}.json"
        return _Study(**json.loads(path.read_text())) if path.is_file() else None

    def _save(self, key: str, state: _Study) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(state.__dict__)
        atomic_write(self.state_dir / f"{key}.json", lambda tmp: tmp.write_text(text))
        marker = self.state_dir / f"{key}.pending"
        if state.complete:
            marker.unlink(missing_ok=True)
        else:
            marker.touch()

    def _pending(self) -> list[_Study]:
        """Studies an earlier poll left incomplete (each marked ``<key>.pending``: a poll reads only theirs)."""
        return [s for p in sorted(self.state_dir.glob("*.pending")) if (s := self._load(p.stem))]

    def _write_row(self, key: str, state: _Study, expected: int, received: int) -> None:
        row = {"source": SOURCE, "study_key": key, "expected_instances": expected, "received_instances": received,
               "complete": state.complete, "completed_by": "count_matches" if state.complete else None,
               "released": state.releases, "first_arrival": datetime.fromtimestamp(state.first_arrival, UTC),
               "last_arrival": datetime.now(UTC)}
        tables.STUDY_ARRIVALS.write(self.settings, pa.Table.from_pylist([row], schema=STUDY_ARRIVALS),
                                    match={"source": SOURCE, "study_key": key})


def _count(study: dict[str, Any]) -> int | None:
    value = study.get(_COUNT, {}).get("Value")
    return int(value[0]) if value else None


def _sop_uid(part: bytes) -> str:
    """The part's SOPInstanceUID; for a part that is not DICOM, its content digest (it lands, ingest quarantines it)."""
    try:
        uid = pydicom.dcmread(BytesIO(part), stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID
        return str(uid)
    except Exception:  # noqa: BLE001 - any unreadable part is still an instance the server sent
        return "sha256:" + hashlib.sha256(part).hexdigest()


def _retry_after(response: requests.Response | None) -> float | None:
    value = response.headers.get("Retry-After", "") if response is not None else ""
    return float(value) if value.replace(".", "", 1).isdigit() else None
