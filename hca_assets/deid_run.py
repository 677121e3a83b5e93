"""De-identify many files with worker processes; each output is written to a temporary name, verified
and renamed, so no output folder ever holds a half-written or unverified file. Shared by the asset and
``hca deid``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hca_assets._parallel import Progress, ordered_map
from hca_assets.dicom.burned_in import RapidOcrDetector
from hca_assets.dicom.deid import DeidEngine, DeidFailure
from hca_assets.dicom.profile import DeidProfile
from hca_assets.dicom.pseudonyms import Pseudonymizer

__all__ = ["DeidRecord", "DeidRejected", "DeidSpec", "deidentify_files"]


@dataclass(frozen=True)
class DeidSpec:
    """Everything a worker needs to build the engine (picklable)."""

    profile: DeidProfile
    key: bytes
    uid_map: Mapping[str, str] = field(default_factory=dict)
    patient_map: Mapping[str, str] = field(default_factory=dict)
    ocr_mode: str = "candidates"

    def engine(self) -> DeidEngine:
        detector = RapidOcrDetector() if self.ocr_mode != "off" else None
        return DeidEngine(self.profile, Pseudonymizer(self.key, self.uid_map, self.patient_map), detector, self.ocr_mode)


@dataclass(frozen=True)
class DeidRecord:
    """One published-to-be instance: pseudonymous facts, the crosswalk (restricted) and audit counts."""

    source: str
    output: str  # relative to the output root; made of pseudonymous UIDs only
    sha256: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_pseudonym: str
    modality: str
    sop_class_uid: str
    transfer_syntax: str
    burned_in: str
    counts: dict[str, int]
    original_patient_id: str
    original_study_uid: str
    original_series_uid: str
    original_sop_uid: str
    date_offset_days: int


@dataclass(frozen=True)
class DeidRejected:
    source: str
    sha256: str
    reason: str
    message: str


_engine: DeidEngine | None = None


def _init(spec: DeidSpec) -> None:
    global _engine  # noqa: PLW0603 - one engine per worker process, built once
    _engine = spec.engine()


def _one(args: tuple[str, str]) -> DeidRecord | DeidRejected:
    source, out_root = args
    assert _engine is not None
    data = Path(source).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        out, outcome = _engine.deidentify_bytes(data)
    except DeidFailure as exc:
        return DeidRejected(source, digest, exc.reason, exc.message)
    except Exception as exc:  # noqa: BLE001 - one bad instance must not stop the others
        return DeidRejected(source, digest, "deid_failed", f"unexpected {type(exc).__name__}")
    rel = _engine.output_name(outcome)
    target = Path(out_root) / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(out)
    os.replace(tmp, target)
    ds = outcome.dataset
    return DeidRecord(
        source=source, output=rel, sha256=hashlib.sha256(out).hexdigest(),
        sop_instance_uid=str(ds.SOPInstanceUID), series_instance_uid=str(ds.SeriesInstanceUID),
        study_instance_uid=str(ds.StudyInstanceUID), patient_pseudonym=str(ds.get("PatientID", "")),
        modality=str(ds.get("Modality", "")), sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID), burned_in=str(outcome.burned_in),
        counts=dict(outcome.counts), original_patient_id=outcome.original_patient_id,
        original_study_uid=outcome.original_study_uid, original_series_uid=outcome.original_series_uid,
        original_sop_uid=outcome.original_sop_uid, date_offset_days=outcome.date_offset_days,
    )


def deidentify_files(
    sources: list[Path], out_root: Path, spec: DeidSpec, *, workers: int = 1, progress: Progress | None = None
) -> Iterator[DeidRecord | DeidRejected]:
    """De-identify ``sources`` into ``out_root`` (in input order); rejected inputs produce no file."""
    args = [(str(p), str(out_root)) for p in sources]
    return ordered_map(_one, args, workers=workers, progress=progress, initializer=_init, initargs=(spec,))
