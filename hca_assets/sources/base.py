"""The one interface every DICOM source implements, and the incoming area they share.

A network source never writes into the landing folder instance by instance: it collects each study in
``incoming/<source>/<study_key>/`` (atomic writes, one file per SOP instance) and, once the study is complete by
the source's own rule (DICOMweb: the retrieved count equals QIDO's NumberOfStudyRelatedInstances; C-STORE: its
association was released and nothing arrived for a stable age), moves the folder into the landing zone with one
rename. The landing claim (``hca_assets/sources/claims.py``) then makes it an ingest batch as for any dropped folder, so
ingest, quarantine and the ledger do not change. A late instance of a study already released is collected again
and released as a new, smaller folder; ingest quarantines true duplicates (``duplicate_instance``) and keeps new
instances. Keys are keyed digests of the UIDs (:func:`hca_assets._infra.keys.keyed_digest`), folder and file names
alike: no UID reaches a path, a log line or a PHI-free table. What a source writes is owner-only (folders 0700,
files 0600), in ``incoming/`` and in the landing zone it releases into: both hold PHI.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from hca_assets._infra.files import atomic_write, write_private
from hca_assets._infra.keys import keyed_digest

__all__ = ["DicomSource", "Incoming", "StudyState", "instance_name", "study_key"]


def study_key(key: bytes, study_uid: str) -> str:
    """The PHI-free name of a study in paths, logs and ``study_arrivals``."""
    return keyed_digest(key, "study", study_uid)[:32]


def instance_name(key: bytes, sop_uid: str) -> str:
    """The file name of an instance in its study folder (a keyed digest of the SOP Instance UID, like the study
    folder's: an unkeyed digest of a UID can be matched by whoever knows the UID)."""
    return keyed_digest(key, "instance", sop_uid)[:32] + ".dcm"


@dataclass(frozen=True)
class StudyState:
    """One study being collected: files held, expected count (None: unknown), when the last one arrived."""

    source: str
    study_key: str
    received: int
    expected: int | None
    last_arrival: float


class DicomSource(Protocol):
    """A source of DICOM studies: ``poll`` moves what is complete into the landing zone and returns how many
    studies it released (the landing folder itself releases nothing: files are already there)."""

    name: str

    def poll(self) -> int: ...


class Incoming:
    """``incoming/<source>/`` of one source: studies being collected, released whole into ``landing``."""

    def __init__(self, root: Path, landing: Path, source: str, key: bytes) -> None:
        self.root, self.landing, self.source, self.key = Path(root) / source, Path(landing), source, key

    def name(self, sop_uid: str) -> str:
        """The file name an instance gets in its study folder."""
        return instance_name(self.key, sop_uid)

    def add(self, study: str, sop_uid: str, data: bytes) -> Path:
        """Keep one instance of ``study`` (atomic; the same SOP instance twice keeps one file)."""
        folder = self.root / study
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = folder / self.name(sop_uid)
        atomic_write(target, lambda tmp: write_private(tmp, data))  # durable: the peer then deletes its copy
        return target

    def studies(self) -> list[StudyState]:
        """The studies held now, with their file counts and last arrival times (expected count unknown here)."""
        out = []
        for folder in sorted(p for p in self.root.glob("*") if p.is_dir()):
            files = [f for f in folder.iterdir() if f.suffix == ".dcm"]
            if files:
                out.append(StudyState(self.source, folder.name, len(files), None, max(f.stat().st_mtime for f in files)))
        return out

    def release(self, study: str) -> Path | None:
        """Move the study's folder into the landing zone in one rename; None when it holds nothing."""
        folder = self.root / study
        if not folder.is_dir() or not any(folder.iterdir()):
            return None
        self.landing.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
        target = self.landing / f"{self.source}-{study}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        for tmp in folder.glob(".*.tmp"):  # a writer that died mid-file: its part is not an instance
            tmp.unlink(missing_ok=True)
        os.rename(folder, target)
        return target

    def stable(self, study: StudyState, stable_seconds: float, now: float | None = None) -> bool:
        """True when nothing arrived for ``stable_seconds``."""
        return (now if now is not None else time.time()) - study.last_arrival >= stable_seconds
