"""Send de-identified instances and DICOM SEG results to a PACS: STOW-RS (dicomweb-client) or C-STORE (pynetdicom SCU).

A destination is one setting string: a DICOMweb root (``http(s)://host/dicom-web``) for STOW-RS, or
``dicom://CALLED_AE@host:port`` for C-STORE. Each study is sent on its own, with retries and exponential backoff;
a study that still fails gets a failed outcome with a PHI-free message and the others go on. What a destination
accepted is tracked per SOP Instance UID, so a retry sends only what is still missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hca_assets.config.destinations import Destination, parse_destination

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = ["BACKOFF_SECONDS", "Credentials", "Destination", "Refused", "StudyOutcome", "export_studies",
           "parse_destination"]

BACKOFF_SECONDS = 1.0  # first wait between attempts, doubled after each failed one
CHUNK = 16  # instances per STOW-RS request / read into memory at once
ACCEPTED_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}  # success and the C-STORE warnings (instance stored)


@dataclass(frozen=True)
class Credentials:
    """HTTP basic (``user``/``password``) or bearer (``token``) auth for STOW-RS; kept out of ``repr``."""

    user: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)


class Refused(RuntimeError):
    """The destination refused for good (credentials, rejected association): retrying cannot help."""


class _Sender(Protocol):
    def send(self, datasets: Sequence[Dataset]) -> tuple[set[str], int]:
        """Send; return the SOP Instance UIDs the destination accepted and how many it refused."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class StudyOutcome:
    """One study's export: ``status`` exported | failed; ``accepted`` SOP Instance UIDs; ``message`` PHI-free."""

    study_instance_uid: str
    status: str
    files: int
    accepted: frozenset[str]
    refused: int
    attempts: int
    message: str


def export_studies(destination: Destination, credentials: Credentials, studies: Mapping[str, Sequence[Path]], *,
                   retries: int = 3, backoff: float = BACKOFF_SECONDS,
                   on_done: Callable[[StudyOutcome], None] | None = None) -> list[StudyOutcome]:
    """Send each study's files (de-identified instances and SEGs); a study failing after ``retries`` attempts
    is reported failed and the next one is sent. ``on_done`` sees each outcome as it is decided."""
    outcomes = []
    for study, files in studies.items():
        outcome = _export_study(destination, credentials, study, files, retries=retries, backoff=backoff)
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)
    return outcomes


def _export_study(destination: Destination, credentials: Credentials, study: str, files: Sequence[Path], *,
                  retries: int, backoff: float) -> StudyOutcome:
    import pydicom

    headers = {p: pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPInstanceUID", "SOPClassUID"])
               for p in files}
    wanted = {p: str(ds.SOPInstanceUID) for p, ds in headers.items()}
    contexts: dict[str, set[str]] = {}
    for ds in headers.values():
        contexts.setdefault(str(ds.SOPClassUID), set()).add(str(ds.file_meta.TransferSyntaxUID))
    accepted: set[str] = set()
    refused, attempts, message = 0, 0, ""
    while attempts < max(1, retries):
        attempts += 1
        todo = [p for p, uid in wanted.items() if uid not in accepted]
        try:
            refused = _send_all(destination, credentials, contexts, todo, accepted)
            message = f"the destination refused {refused} instance(s)" if refused else ""
            if not refused:
                break
        except Refused as exc:
            message = str(exc)
            break
        except Exception as exc:  # noqa: BLE001 - any transport failure is retried, then reported for this study only
            message = _transient(destination, exc)
        if attempts < retries:
            time.sleep(backoff * 2 ** (attempts - 1))
    done = set(wanted.values()) <= accepted
    return StudyOutcome(study, "exported" if done else "failed", len(files), frozenset(accepted & set(wanted.values())),
                        refused, attempts, "" if done else f"{message} (after {attempts} attempt(s))")


def _send_all(destination: Destination, credentials: Credentials, contexts: Mapping[str, set[str]],
              files: Sequence[Path], accepted: set[str]) -> int:
    """Send ``files`` in chunks, adding what the destination accepted to ``accepted``; how many it refused."""
    import pydicom

    sender: _Sender = _Stow(destination, credentials) if destination.kind == "stow" else _CStore(destination, contexts)
    refused = 0
    try:
        for start in range(0, len(files), CHUNK):
            ok, bad = sender.send([pydicom.dcmread(p) for p in files[start:start + CHUNK]])
            accepted |= ok
            refused += bad
    finally:
        sender.close()
    return refused


def _transient(destination: Destination, exc: Exception) -> str:
    """A PHI-free line for a transport failure (exception texts may quote URLs with queries, or data)."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"STOW-RS to {destination.describe()} answered HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return f"cannot reach {destination.describe()} ({type(exc).__name__})"
    if isinstance(exc, ConnectionError | OSError):
        return f"connection to {destination.describe()} failed ({type(exc).__name__})"
    return f"sending to {destination.describe()} failed ({type(exc).__name__})"


class _Stow:
    """STOW-RS through dicomweb-client (its own retries off: :func:`_export_study` retries whole chunks)."""

    def __init__(self, destination: Destination, credentials: Credentials) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        self.destination = destination
        session = requests.Session()
        if credentials.token:
            session.headers["Authorization"] = f"Bearer {credentials.token}"
        elif credentials.user:
            session.auth = (credentials.user, credentials.password)
        self.session = session
        self.client = DICOMwebClient(url=destination.url, session=session)
        self.client.set_http_retry_params(retry=False)

    def send(self, datasets: Sequence[Dataset]) -> tuple[set[str], int]:
        import requests

        try:
            answer = self.client.store_instances(list(datasets))
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (401, 403):
                raise Refused(f"STOW-RS to {self.destination.describe()} refused the credentials (HTTP {status})") from None
            raise
        ok = {str(item.ReferencedSOPInstanceUID) for item in answer.get("ReferencedSOPSequence", [])}
        return ok, len(answer.get("FailedSOPSequence", []))

    def close(self) -> None:
        self.session.close()


class _CStore:
    """One association per attempt and study, with a presentation context per SOP class."""

    def __init__(self, destination: Destination, contexts: Mapping[str, set[str]]) -> None:
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
        from pynetdicom import AE

        self.destination = destination
        if len(contexts) > 128:
            raise Refused(f"a study with {len(contexts)} SOP classes exceeds the 128 presentation contexts of one association")
        ae = AE(ae_title=destination.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        for sop_class, syntaxes in contexts.items():  # the files' own syntax, and the two every SCP accepts
            ae.add_requested_context(sop_class, sorted(syntaxes | {ExplicitVRLittleEndian, ImplicitVRLittleEndian}))
        self.assoc = ae.associate(destination.host, destination.port, ae_title=destination.called_ae)
        if self.assoc.is_rejected:
            raise Refused(f"C-STORE association rejected by {destination.describe()}")
        if not self.assoc.is_established:
            raise ConnectionError(f"no association with {destination.describe()}")

    def send(self, datasets: Sequence[Dataset]) -> tuple[set[str], int]:
        ok, refused = set(), 0
        for ds in datasets:
            if not self.assoc.is_established:
                raise ConnectionError(f"association with {self.destination.describe()} ended")
            status = self.assoc.send_c_store(ds)
            if "Status" not in status:  # no answer: timeout or abort, retried
                raise ConnectionError(f"no C-STORE response from {self.destination.describe()}")
            if int(status.Status) in ACCEPTED_STATUSES:
                ok.add(str(ds.SOPInstanceUID))
            else:
                refused += 1
        return ok, refused

    def close(self) -> None:
        if self.assoc.is_established:
            self.assoc.release()
