"""De-identify many files with worker processes; each output is written to a temporary name, verified
and renamed, so no output folder ever holds a half-written or unverified file. Shared by ``hca deid`` and the
stage runners of the ``deid_staged`` and ``deid_dicom`` assets (:func:`run_stage`, :func:`run_publish`)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pydicom
import pydicom.config

from hca_assets._infra.files import atomic_write
from hca_assets._infra.keys import key_fingerprint
from hca_assets._infra.parallel import ItemFailed, Progress, ordered_map
from hca_assets._infra.storage import prune, pull, push
from hca_assets.config import DEFAULT_LIMITS, Limits, Settings
from hca_assets.dicom.burned_in import (
    NET_EVERY,
    NET_MAX_SIDE,
    Box,
    BurnedInStatus,
    RapidOcrReader,
    TextReader,
    net_sample,
    screen_changes,
)
from hca_assets.dicom.deid import DeidEngine, DeidFailure
from hca_assets.dicom.enum import QuarantineReason
from hca_assets.dicom.io import InvalidInstance, check_size, read_dataset, read_header
from hca_assets.dicom.pixel_phi import phi_tokens, read_frames, readable_phi
from hca_assets.dicom.profile import DeidOption, DeidProfile
from hca_assets.dicom.pseudonyms import Pseudonymizer, load_mapping
from hca_assets.dicom.verify import collect_facts, verify_output
from hca_assets.lake import registry as tables
from hca_assets.lake.delta import WriteResult
from hca_assets.lake.registry import DEID_STAGE
from hca_assets.lake.schemas import DEID_AUDIT, DEID_CROSSWALK, DEID_INSTANCES
from hca_assets.stages.ingest import keep_file, lost_reason, quarantine_row, quarantine_table, safe_sha256

__all__ = ["DeidRecord", "DeidRejected", "DeidSpec", "PublishRun", "StagedRun", "deidentify_files", "run_publish",
           "run_stage"]


@dataclass(frozen=True)
class DeidSpec:
    """Everything a worker needs to build the engine (picklable)."""

    profile: DeidProfile
    key: bytes
    uid_map: Mapping[str, str] = field(default_factory=dict)
    patient_map: Mapping[str, str] = field(default_factory=dict)
    ocr_mode: str = "all"
    date_offsets: Mapping[str, int] = field(default_factory=dict)
    net: bool = True  # the learned text detector reads what the screen does not flag
    net_every: int = NET_EVERY
    limits: Limits = DEFAULT_LIMITS

    def pseudonymizer(self) -> Pseudonymizer:
        """Keyed pseudonyms with the external mappings; raises ValueError on an invalid key or mapping."""
        return Pseudonymizer(self.key, self.uid_map, self.patient_map, self.date_offsets)

    def engine(self) -> DeidEngine:
        reader = RapidOcrReader() if self.ocr_mode != "off" else None
        net = RapidOcrReader(max_side=NET_MAX_SIDE, threads=1) if reader and self.net else None
        return DeidEngine(self.profile, self.pseudonymizer(), reader, self.ocr_mode, net=net, net_every=self.net_every,
                          limits=self.limits)


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
    blanked_fraction: float = 0.0  # share of pixels blacked out over burned-in text
    redactions: tuple[tuple[int, int, int, int, int], ...] = ()  # (frame, x0, y0, x1, y1) blacked out
    frames_screened: int = 0
    frames_flagged: int = 0  # by the classical screen
    net_frames: tuple[int, ...] = ()  # frames the learned detector read whatever the screen said
    net_hits: int = 0  # frames where it found readable text the screen had not flagged
    text_frames: int = 0  # frames where the first reading found readable text

    @property
    def frames_redacted(self) -> int:
        return len({region[0] for region in self.redactions})


@dataclass(frozen=True)
class DeidRejected:
    source: str
    sha256: str | None  # None: the input could not be read
    reason: str
    message: str


_engine: DeidEngine | None = None


def _init(spec: DeidSpec) -> None:
    global _engine  # noqa: PLW0603 - one engine per worker process, built once
    _engine = spec.engine()


Job = tuple[str, str, bool, tuple[Box, ...] | None]  # source, output root, read by the net, hints of a second pass


def _one(args: Job) -> DeidRecord | DeidRejected:
    """One input: ``net`` asks the net to read it; ``hints`` (a second pass: its series asked for the net after
    all) are regions other slices showed text in, and the output replaces the first pass's."""
    source, out_root, net, hints = args
    assert _engine is not None
    try:
        check_size(Path(source).stat().st_size, _engine.limits)  # before the file is read into memory
        data = Path(source).read_bytes()
    except InvalidInstance as exc:
        return DeidRejected(source, None, exc.reason, exc.message)
    except OSError as exc:
        return DeidRejected(source, None, QuarantineReason.UNREADABLE, f"file cannot be read ({type(exc).__name__})")
    try:
        out, outcome = _engine.deidentify_bytes(data, net=net, hints=hints or ())
    except DeidFailure as exc:
        return DeidRejected(source, hashlib.sha256(data).hexdigest(), exc.reason, exc.message)
    except Exception as exc:  # noqa: BLE001 - one bad instance must not stop the others
        return DeidRejected(source, hashlib.sha256(data).hexdigest(), QuarantineReason.DEID_FAILED,
                            f"unexpected {type(exc).__name__}")
    rel = _engine.output_name(outcome)
    sha = hashlib.sha256(out).hexdigest()
    existing = _write_new(Path(out_root) / rel, out, replace=hints is not None)
    if existing is not None:  # another input with the same SOP Instance UID got there first: never overwritten
        same = existing == sha
        return DeidRejected(source, hashlib.sha256(data).hexdigest(),
                            QuarantineReason.DUPLICATE_INSTANCE if same else QuarantineReason.SOP_UID_CONFLICT,
                            "identical to an instance already written" if same
                            else "SOP Instance UID already written with different content")
    ds, text = outcome.dataset, outcome.text
    return DeidRecord(
        source=source, output=rel, sha256=sha,
        sop_instance_uid=str(ds.SOPInstanceUID), series_instance_uid=str(ds.SeriesInstanceUID),
        study_instance_uid=str(ds.StudyInstanceUID), patient_pseudonym=str(ds.get("PatientID", "")),
        modality=str(ds.get("Modality", "")), sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID), burned_in=str(outcome.burned_in),
        counts=dict(outcome.counts), original_patient_id=outcome.original_patient_id,
        original_study_uid=outcome.original_study_uid, original_series_uid=outcome.original_series_uid,
        original_sop_uid=outcome.original_sop_uid, date_offset_days=outcome.date_offset_days,
        blanked_fraction=text.blanked_fraction if text else 0.0,
        redactions=tuple((i, *box) for i, box in text.regions) if text else (),
        frames_screened=text.screened_frames if text else 0, frames_flagged=text.flagged_frames if text else 0,
        net_frames=text.net_frames if text else (), net_hits=text.net_hits if text else 0,
        text_frames=text.text_frames if text else 0,
    )


def _write_new(target: Path, data: bytes, *, replace: bool = False) -> str | None:
    """Write ``data`` to ``target`` atomically unless it exists (then return the existing file's sha256):
    a hard link from a private temporary name either creates the file whole or fails. ``replace``: the
    file is this run's own first-pass output, renamed over."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if atomic_write(target, lambda tmp: tmp.write_bytes(data), replace=replace):
        return None
    return hashlib.sha256(target.read_bytes()).hexdigest()


def deidentify_files(
    sources: list[Path], out_root: Path, spec: DeidSpec, *, workers: int = 1, progress: Progress | None = None,
    timeout: float | None = None,
) -> Iterator[DeidRecord | DeidRejected]:
    """De-identify ``sources`` into ``out_root`` (in input order); rejected inputs produce no file, and no
    existing file is ever replaced. An input past ``timeout`` seconds (or that kills its worker) is rejected.

    The net reads every single-frame image except the slices of a multi-slice series, of which it reads a
    sample (:func:`series_plan`); a second pass reads with it the slices whose screen result differs from a
    neighbour's, or the whole series once the net found text there that the screen missed."""
    series = series_plan(sources, spec.net_every) if spec.net and spec.ocr_mode != "off" else []
    sampled = {i for members, picked in series for i in picked}
    in_series = {i for members, _ in series for i in members}
    first = list(_run([(str(p), str(out_root), i not in in_series or i in sampled, None)
                       for i, p in enumerate(sources)], spec, workers, progress, timeout))
    again = _second_pass(series, first)
    if again:
        order = sorted(again)
        redone = _run([(str(sources[i]), str(out_root), True, again[i]) for i in order], spec, workers, None, timeout)
        for i, result in zip(order, redone, strict=True):
            first[i] = result
    yield from first


def _run(args: list[Job], spec: DeidSpec, workers: int, progress: Progress | None,
         timeout: float | None) -> Iterator[DeidRecord | DeidRejected]:
    results = ordered_map(_one, args, workers=workers, progress=progress, initializer=_init, initargs=(spec,),
                          timeout=timeout)
    for (source, *_), result in zip(args, results, strict=True):
        if isinstance(result, ItemFailed):
            yield DeidRejected(source, safe_sha256(Path(source)), lost_reason(result), result.message)
        else:
            yield result


_SERIES_TAGS = ("SeriesInstanceUID", "InstanceNumber", "ImagePositionPatient", "NumberOfFrames", "Rows", "Columns")
MIN_SERIES = 3  # single-frame slices of one series and size from which the net reads a sample, not each


def series_plan(sources: list[Path], every: int) -> list[tuple[list[int], set[int]]]:
    """Multi-slice series among ``sources`` (indexes in slice order) with the slices the net reads in the first
    pass: first, middle, last and every ``every``-th. Headers only (their first MiB, never inflated); an unreadable
    one stands alone."""
    groups: dict[tuple[str, int, int], list[tuple[float, float, int]]] = {}
    for i, path in enumerate(sources):
        try:
            ds = read_header(path, list(_SERIES_TAGS))
            if ds is None or int(ds.get("NumberOfFrames", 1) or 1) != 1 or not str(ds.get("SeriesInstanceUID", "")):
                continue
            position = ds.get("ImagePositionPatient") or (0, 0, 0)
            key = (str(ds.SeriesInstanceUID), int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))
            groups.setdefault(key, []).append((float(ds.get("InstanceNumber", 0) or 0), float(position[2]), i))
        except Exception:  # noqa: BLE001 - the engine reports what is wrong with it; here it is read alone
            continue
    plan = []
    for slices in groups.values():
        if len(slices) >= MIN_SERIES:
            members = [i for *_, i in sorted(slices)]
            plan.append((members, {members[k] for k in net_sample([False] * len(members), every)}))
    return plan


def _second_pass(series: list[tuple[list[int], set[int]]], results: list[DeidRecord | DeidRejected]
                 ) -> dict[int, tuple[Box, ...]]:
    """Slices to do again with the net, with the regions other slices of their series showed text in: all the
    net has not read of a series where it found text the screen missed, else each whose screen result differs
    from a neighbour's; and, of a series with readable text on two slices or more, each slice that came out without any
    (annotation stays put: what it missed over bright anatomy is blacked out where the others showed it)."""
    out: dict[int, tuple[Box, ...]] = {}
    for members, _ in series:
        records = {i: r for i in members if isinstance(r := results[i], DeidRecord)}
        found = tuple(sorted({tuple(box) for r in records.values() for _, *box in r.redactions}))
        unread = {i for i, r in records.items() if not r.net_frames}
        if any(r.net_hits for r in records.values()):
            chosen = set(unread)
        else:
            flags = [bool(i in records and records[i].frames_flagged) for i in members]
            chosen = {members[k] for k in screen_changes(flags)} & unread
        if sum(bool(r.text_frames) for r in records.values()) >= 2:
            chosen |= {i for i, r in records.items() if not r.redactions}
        out |= {i: found for i in chosen}
    return out


# --- batch level: stage → check → publish ---------------------------------------------------------

STAGE = DEID_STAGE  # quarantine.stage of what this stage sets aside
STAGED_MANIFEST = "_staged.jsonl"


@dataclass(frozen=True)
class StageOutcome:
    staged: list[DeidRecord]
    rejected: list[DeidRejected]
    crosswalk: pa.Table
    quarantine: pa.Table


def stage_batch(
    batch: str,
    sources: list[Path],
    staging_root: Path,
    quarantine_root: Path,
    spec: DeidSpec,
    *,
    workers: int = 1,
    progress: Progress | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> StageOutcome:
    """De-identify one batch into ``staging_root/<batch>`` (replacing any earlier staging of it)."""
    target = staging_root / batch
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    results = list(deidentify_files(sources, target, spec, workers=workers, progress=progress,
                                    timeout=limits.timeout))
    staged = [r for r in results if isinstance(r, DeidRecord)]
    rejected = [r for r in results if isinstance(r, DeidRejected)]
    with (target / STAGED_MANIFEST).open("w") as fh:
        for r in staged:
            fh.write(json.dumps(asdict(r)) + "\n")
    now = datetime.now(UTC)
    quarantine = [quarantine_row(batch, STAGE, r.sha256, r.reason, r.message,
                                 keep_file(Path(r.source), quarantine_root, batch, r.sha256, i,
                                           max_copy_bytes=limits.max_file_bytes), now) for i, r in enumerate(rejected)]
    return StageOutcome(staged, rejected, crosswalk_table(batch, staged), quarantine_table(quarantine))


def load_staged(staging_root: Path, batch: str) -> list[DeidRecord]:
    path = staging_root / batch / STAGED_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"batch {batch!r} has not been staged under {staging_root}")
    return [DeidRecord(**json.loads(line)) for line in path.read_text().splitlines() if line]


def pixel_sample(records: list[DeidRecord], size: int) -> set[str]:
    """Outputs whose pixels the check reads: one of every series (the engine's own verdict does not choose),
    then those that carried text (redacted), then others, in a fixed pseudo-random order (by the pseudonymous
    output name); ``size`` in all, or one per series when there are more series."""
    order = sorted(records, key=lambda r: hashlib.blake2b(r.output.encode(), digest_size=8).digest())
    first = {r.series_instance_uid: r.output for r in reversed(order)}
    ranked = [*first.values(), *(r.output for r in order if r.burned_in == BurnedInStatus.REDACTED),
              *(r.output for r in order)]
    return set(list(dict.fromkeys(ranked))[:max(size, len(first))])


def recheck_staged(staging_root: Path, batch: str, spec: DeidSpec, *, reader: TextReader | None = None,
                   pixel_sample_size: int = 8) -> dict[str, int]:
    """Re-verify every staged file against its original, independently of how it was produced:
    counts of files with PHI residue, wrong or inconsistent pseudonymous UIDs, and missing files; with a
    ``reader``, also of sampled files whose pixels show a name part, ID or birth date of their original."""
    pseudo = spec.pseudonymizer()
    failures = {"phi_residue": 0, "uid_mismatch": 0, "missing": 0, "pixel_phi": 0, "pixels_read": 0}
    records = load_staged(staging_root, batch)
    sample = pixel_sample(records, pixel_sample_size) if reader is not None else set()
    for r in records:
        path = staging_root / batch / r.output
        if not path.is_file():
            failures["missing"] += 1
            continue
        with warnings.catch_warnings(), pydicom.config.disable_value_validation():
            warnings.simplefilter("ignore")
            original = read_dataset(Path(r.source).read_bytes())
            output = path.read_bytes()
            output_ds = pydicom.dcmread(io.BytesIO(output))
            problems = verify_output(collect_facts(original, spec.profile), output_ds, output,
                                     spec.profile, BurnedInStatus(r.burned_in), lambda original=original: original)
            if reader is not None and r.output in sample and "PixelData" in output_ds:
                failures["pixels_read"] += 1
                try:
                    shown = readable_phi(read_frames(output_ds, reader), phi_tokens(original))
                except Exception:  # noqa: BLE001 - pixels the check cannot read cannot be shown PHI-free
                    shown = 1
                failures["pixel_phi"] += shown > 0
        if problems:
            failures["phi_residue"] += 1
        originals = (r.original_study_uid, r.original_series_uid, r.original_sop_uid)
        expected = originals if spec.profile.retains_uids else tuple(pseudo.uid(u) for u in originals)
        if (r.study_instance_uid, r.series_instance_uid, r.sop_instance_uid) != expected:
            failures["uid_mismatch"] += 1
    return failures


def publish_batch(staging_root: Path, published_root: Path, batch: str) -> list[DeidRecord]:
    """Move a checked staging folder into the PHI-free zone, replacing an earlier publication: the old one is
    renamed aside first and deleted only after the new one is in place, so a kill never loses both."""
    records = load_staged(staging_root, batch)
    source, target = staging_root / batch, published_root / batch
    (source / STAGED_MANIFEST).unlink()  # it names original UIDs: it stays restricted
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = published_root / f".{batch}.replaced"
    if aside.exists():  # left by a publication that was killed after setting the old one aside
        shutil.rmtree(aside)
    if target.exists():
        os.rename(target, aside)
    os.rename(source, target)
    shutil.rmtree(aside, ignore_errors=True)
    return records


def crosswalk_table(batch: str, records: list[DeidRecord]) -> pa.Table:
    """Original ↔ pseudonym for patients, studies, series and instances (restricted)."""
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for r in records:
        for kind, original, pseudonym, offset in (
            ("patient", r.original_patient_id, r.patient_pseudonym, r.date_offset_days),
            ("study", r.original_study_uid, r.study_instance_uid, None),
            ("series", r.original_series_uid, r.series_instance_uid, None),
            ("instance", r.original_sop_uid, r.sop_instance_uid, None),
        ):
            rows[(kind, original)] = {"batch": batch, "kind": kind, "original": original, "pseudonym": pseudonym,
                                      "date_offset_days": offset}
    return pa.Table.from_pylist(list(rows.values()), schema=DEID_CROSSWALK)


def published_tables(batch: str, records: list[DeidRecord], profile: DeidProfile, fingerprint: str) -> tuple[pa.Table, pa.Table]:
    """PHI-free ``deid_instances`` and ``deid_audit`` rows for a published batch."""
    now = datetime.now(UTC)
    instances = [
        {"batch": batch, "sop_instance_uid": r.sop_instance_uid, "series_instance_uid": r.series_instance_uid,
         "study_instance_uid": r.study_instance_uid, "patient_pseudonym": r.patient_pseudonym, "modality": r.modality,
         "sop_class_uid": r.sop_class_uid, "transfer_syntax": r.transfer_syntax, "path": f"{batch}/{r.output}",
         "sha256": r.sha256, "burned_in": r.burned_in, "published_at": now}
        for r in records
    ]
    audit = [
        {"batch": batch, "sop_instance_uid": r.sop_instance_uid, "profile": profile.name, "key_fingerprint": fingerprint,
         "removed": r.counts.get("X", 0), "emptied": r.counts.get("Z", 0), "dummied": r.counts.get("D", 0),
         "uids_replaced": r.counts.get("U", 0), "cleaned": r.counts.get("C", 0), "kept": r.counts.get("K", 0),
         "private_removed": r.counts.get("X_private", 0), "burned_in": r.burned_in,
         "frames_screened": r.frames_screened, "frames_flagged": r.frames_flagged, "frames_net_read": len(r.net_frames),
         "net_hits": r.net_hits, "frames_redacted": r.frames_redacted,
         "dates_shifted": profile.shifts_dates, "audited_at": now}
        for r in records
    ]
    return pa.Table.from_pylist(instances, schema=DEID_INSTANCES), pa.Table.from_pylist(audit, schema=DEID_AUDIT)


def spec_from_settings(settings: Settings, key: bytes) -> DeidSpec:
    """The de-identification spec the settings describe (profile options, OCR mode, external mappings);
    after a key rotation, what the crosswalk already holds keeps its pseudonyms and date offsets."""
    from hca_assets.lake.keypin import kept_pseudonyms  # reads Delta: the parent only, never the workers

    kept = kept_pseudonyms(settings)
    spec = DeidSpec(
        profile=profile_from_settings(settings),
        key=key,
        uid_map={**kept.uids, **(load_mapping(Path(settings.uid_map)) if settings.uid_map else {})},
        patient_map={**kept.patients, **(load_mapping(Path(settings.patient_map)) if settings.patient_map else {})},
        ocr_mode=settings.ocr_mode,
        date_offsets=kept.date_offsets,
        net=settings.deid_net,
        net_every=settings.deid_net_every,
        limits=settings.limits,
    )
    spec.pseudonymizer()  # an invalid mapping is refused here, not in every worker
    return spec


def profile_from_settings(settings: Settings) -> DeidProfile:
    """The PS3.15 profile with the options the settings choose."""
    return DeidProfile(options=frozenset(DeidOption(o) for o in settings.deid_options))


@dataclass(frozen=True)
class StagedRun:
    """One batch de-identified into staging: the spec used, the outcome, the raw rows it read and the write."""

    spec: DeidSpec
    outcome: StageOutcome
    expected: int  # raw instances of the batch
    seconds: float
    crosswalk: WriteResult


def run_stage(settings: Settings, batch: str, key: bytes, progress: Progress | None = None) -> StagedRun:
    """De-identify the raw instances of ``batch`` into restricted staging; the crosswalk and quarantine rows written
    after the staged and quarantined files reached the store (what the ``deid_staged`` asset calls)."""
    spec = spec_from_settings(settings, key)
    rows = tables.RAW_INSTANCES.read(settings, where={"batch": batch}, columns=["path"])
    pull(settings, Path(settings.raw_batches) / batch)
    sources = [Path(settings.raw_batches) / batch / "files" / p for p in rows.column("path").to_pylist()]
    start = time.perf_counter()
    out = stage_batch(batch, sources, Path(settings.deid_staging), Path(settings.quarantine), spec,
                      workers=settings.workers, progress=progress, limits=settings.limits)
    seconds = time.perf_counter() - start
    push(settings, Path(settings.deid_staging) / batch, Path(settings.quarantine) / batch)
    crosswalk = tables.DEID_CROSSWALK.write(settings, out.crosswalk, match={"batch": batch})
    tables.QUARANTINE.write(settings, out.quarantine, match={"batch": batch, "stage": STAGE})
    return StagedRun(spec, out, rows.num_rows, seconds, crosswalk)


@dataclass(frozen=True)
class PublishRun:
    """One checked batch published: its records, the audit rows and the write of ``deid_instances``."""

    records: list[DeidRecord]
    audit: pa.Table
    written: WriteResult


def run_publish(settings: Settings, batch: str, key: bytes) -> PublishRun:
    """Move the checked staging of ``batch`` into the PHI-free zone and write ``deid_instances`` and ``deid_audit``:
    the objects first, then the commit that lists them, then an earlier publication's files pruned."""
    pull(settings, Path(settings.deid_staging) / batch)
    records = publish_batch(Path(settings.deid_staging), Path(settings.deid), batch)
    instances, audit = published_tables(batch, records, profile_from_settings(settings), key_fingerprint(key))
    push(settings, Path(settings.deid) / batch)
    written = tables.DEID_INSTANCES.write(settings, instances, match={"batch": batch})
    tables.DEID_AUDIT.write(settings, audit, match={"batch": batch})
    prune(settings, Path(settings.deid) / batch)  # an earlier publication's files, and the staged copies
    prune(settings, Path(settings.deid_staging) / batch)
    return PublishRun(records, audit, written)
