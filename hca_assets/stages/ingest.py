"""Ingest one claimed batch: inspect every file (in parallel), resolve duplicates, quarantine the rest.

:func:`ingest_batch` returns Arrow tables for ``raw_instances`` and ``quarantine``; :func:`run_ingest` is the
stage: it reads what other batches hold, runs it and writes both tables (what the ``raw_dicom`` asset calls).
Quarantined files are copied (named by content hash) under the quarantine zone, so a re-run finds
the same state and the batch folder stays as it was claimed; a file over the size limit is kept as its
hash and a PHI-free header excerpt instead. Each file is inspected under :class:`~hca_assets.config.Limits`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from hca_assets._infra.files import atomic_write
from hca_assets._infra.parallel import ItemFailed, Progress, ordered_map
from hca_assets._infra.storage import pull, push
from hca_assets.config import DEFAULT_LIMITS, Limits, Settings
from hca_assets.dicom.enum import QuarantineReason
from hca_assets.dicom.io import InstanceInfo, InvalidInstance, header_excerpt, inspect_file, sha256_file
from hca_assets.lake import registry as tables
from hca_assets.lake.delta import WriteResult
from hca_assets.lake.registry import INGEST_STAGE
from hca_assets.lake.schemas import QUARANTINE, RAW_INSTANCES
from hca_assets.sources.claims import Batch, load_batch

__all__ = [
    "IngestOutcome",
    "IngestRun",
    "ingest_batch",
    "inspect_many",
    "keep_file",
    "lost_reason",
    "quarantine_row",
    "quarantine_table",
    "run_ingest",
    "safe_sha256",
]

STAGE = INGEST_STAGE  # quarantine.stage of what this stage sets aside


@dataclass(frozen=True)
class IngestOutcome:
    instances: pa.Table
    quarantine: pa.Table
    received: int

    @property
    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.quarantine.column("reason").to_pylist():
            counts[r] = counts.get(r, 0) + 1
        return dict(sorted(counts.items()))


@dataclass(frozen=True)
class _Rejected:
    sha256: str | None
    reason: QuarantineReason
    message: str


def _inspect_one(args: tuple[str, bytes, Limits]) -> InstanceInfo | _Rejected:
    path, key, limits = args
    try:
        return inspect_file(Path(path), key, limits)
    except InvalidInstance as exc:
        return _Rejected(safe_sha256(Path(path)), exc.reason, exc.message)
    except Exception as exc:  # noqa: BLE001 - a bug or an exotic file must not stop the batch
        return _Rejected(safe_sha256(Path(path)), QuarantineReason.INTERNAL_ERROR, f"unexpected {type(exc).__name__}")


def safe_sha256(path: Path) -> str | None:
    """SHA-256 of a file, or None when it cannot be read."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def inspect_many(
    paths: list[Path], key: bytes, *, limits: Limits = DEFAULT_LIMITS, workers: int = 1, progress: Progress | None = None
) -> Iterator[InstanceInfo | _Rejected]:
    """Inspect files in order, with ``workers`` processes; calls ``progress(done, total)``. A file whose
    inspection overruns ``limits.file_timeout_seconds`` (or kills its worker) is rejected, not waited for."""
    results = ordered_map(_inspect_one, [(str(p), key, limits) for p in paths], workers=workers, progress=progress,
                          min_parallel=8, timeout=limits.timeout)
    for path, result in zip(paths, results, strict=True):
        yield _lost(path, result, limits) if isinstance(result, ItemFailed) else result


def lost_reason(failed: ItemFailed) -> QuarantineReason:
    """The quarantine reason of an item whose worker was stopped at the timeout or died (every stage's)."""
    return QuarantineReason.TIMEOUT if failed.timed_out else QuarantineReason.WORKER_DIED


def _lost(path: Path, failed: ItemFailed, limits: Limits) -> _Rejected:
    """The rejection of a file whose inspection was stopped at the timeout or whose worker died."""
    reason = lost_reason(failed)
    try:  # hashed here only if small enough: hashing a huge file may be what overran
        sha = safe_sha256(path) if path.stat().st_size <= limits.max_file_bytes else None
    except OSError:
        sha = None
    return _Rejected(sha, reason, failed.message)


def ingest_batch(
    batch: Batch,
    *,
    key: bytes,
    quarantine_root: Path,
    known: Mapping[str, str],
    workers: int = 1,
    progress: Progress | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> IngestOutcome:
    """Validate every file of ``batch``; ``known`` maps SOP Instance UIDs ingested by other batches to their sha256."""
    now = datetime.now(UTC)
    seen: dict[str, str] = dict(known)
    rows: list[dict[str, object]] = []
    rejected: list[dict[str, object]] = []
    paths = [batch.files_dir / rel for rel in batch.files]
    inspected = inspect_many(paths, key, limits=limits, workers=workers, progress=progress)
    for rel, result in zip(batch.files, inspected, strict=True):
        if isinstance(result, InstanceInfo):
            previous = seen.get(result.sop_instance_uid)
            if previous is None:
                seen[result.sop_instance_uid] = result.sha256
                rows.append({"batch": batch.key, "path": rel, **asdict(result), "ingested_at": now})
                continue
            rejection = (
                _Rejected(result.sha256, QuarantineReason.DUPLICATE_INSTANCE, "identical copy of an instance already ingested")
                if previous == result.sha256
                else _Rejected(
                    result.sha256,
                    QuarantineReason.SOP_UID_CONFLICT,
                    "SOP Instance UID already ingested with different content",
                )
            )
        else:
            rejection = result
        kept_as = keep_file(batch.files_dir / rel, quarantine_root, batch.key, rejection.sha256, len(rejected),
                            max_copy_bytes=limits.max_file_bytes)
        rejected.append(quarantine_row(batch.key, STAGE, rejection.sha256, rejection.reason, rejection.message, kept_as, now))
    for items, reason, message, kept in (
        (batch.unreadable, QuarantineReason.UNREADABLE, "directory cannot be listed: permission denied",
         "left in landing zone (unreadable directory {i})"),
        (batch.symlinks, QuarantineReason.SYMLINK_REFUSED, "symbolic link: never followed, its target was not read",
         "{batch}/refused-link-{i}"),
        (batch.specials, QuarantineReason.NOT_REGULAR_FILE, "FIFO, socket or device node: moved aside unopened",
         "{batch}/refused-special-{i}"),
        (batch.hidden, QuarantineReason.HIDDEN_NAME, "dot-name (hidden file or folder): never claimed",
         "left in landing zone (hidden name {i})"),
    ):
        rejected += [quarantine_row(batch.key, STAGE, None, reason, message, kept.format(batch=batch.key, i=i), now)
                     for i, _ in enumerate(items)]
    return IngestOutcome(
        instances=pa.Table.from_pylist(rows, schema=RAW_INSTANCES),
        quarantine=quarantine_table(rejected),
        received=batch.received,
    )


def quarantine_row(batch: str, stage: str, sha256: str | None, reason: str, message: str, kept_as: str,
                   now: datetime) -> dict[str, object]:
    """One row of the ``quarantine`` table (every stage builds its rows here). ``message`` must be PHI-free."""
    return {"batch": batch, "stage": stage, "sha256": sha256, "reason": str(reason), "message": message,
            "kept_as": kept_as, "quarantined_at": now}


def quarantine_table(rows: list[dict[str, object]]) -> pa.Table:
    """One stage's quarantine rows of one batch as a table, each numbered (``item``): two identical copies
    received in one batch are two rows, and (batch, stage, item) identifies a row."""
    return pa.Table.from_pylist([{**r, "item": i} for i, r in enumerate(rows)], schema=QUARANTINE)


def keep_file(src: Path, root: Path, batch: str, sha256: str | None, index: int = 0, *,
              max_copy_bytes: int | None = None) -> str:
    """Copy a rejected file into the quarantine zone under a PHI-free name; idempotent. A file larger than
    ``max_copy_bytes`` is kept as its hash and a PHI-free header excerpt (JSON), not a copy."""
    if sha256 is None:  # unreadable: it stays, untouched, in the restricted batch folder
        return f"{batch}/left-in-batch-{index}"
    huge = max_copy_bytes is not None and src.stat().st_size > max_copy_bytes
    name = f"{batch}/{sha256}.header.json" if huge else f"{batch}/{sha256}.dcm"
    dst = root / name
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        if huge:
            atomic_write(dst, lambda tmp: tmp.write_text(json.dumps({"sha256": sha256, **header_excerpt(src)}, indent=1)))
        else:
            atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))
    return name


@dataclass(frozen=True)
class IngestRun:
    """One ingest batch run: its outcome, the counts around it and the tables written."""

    batch: Batch
    outcome: IngestOutcome
    known: int  # instances other batches already hold
    seconds: float
    written: WriteResult
    quarantined: WriteResult


def run_ingest(settings: Settings, batch_key: str, key: bytes, progress: Progress | None = None) -> IngestRun:
    """Ingest the claimed batch ``batch_key``: its files pulled (an object-store root: another machine claimed it),
    inspected against every other batch's instances, quarantined files and rows pushed before the commit."""
    pull(settings, Path(settings.raw_batches) / batch_key)
    batch = load_batch(Path(settings.raw_batches), batch_key)
    others = tables.RAW_INSTANCES.read(settings, columns=["batch", "sop_instance_uid", "sha256"]).to_pylist()
    known = {r["sop_instance_uid"]: r["sha256"] for r in others if r["batch"] != batch.key}
    start = time.perf_counter()
    outcome = ingest_batch(batch, key=key, quarantine_root=Path(settings.quarantine), known=known,
                           workers=settings.workers, progress=progress, limits=settings.limits)
    seconds = time.perf_counter() - start
    push(settings, batch.path, Path(settings.quarantine) / batch.key)  # files reach the store before the rows naming them
    written = tables.RAW_INSTANCES.write(settings, outcome.instances, match={"batch": batch.key})
    quarantined = tables.QUARANTINE.write(settings, outcome.quarantine, match={"batch": batch.key, "stage": STAGE})
    return IngestRun(batch, outcome, len(known), seconds, written, quarantined)
