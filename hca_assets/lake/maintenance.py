"""Delta maintenance: compact small files, then vacuum files no version of the last ``retention`` hours needs.

Safe for readers: compaction commits a new version with the same rows (the old files stay, tombstoned), and vacuum
deletes only files that no version younger than the retention references — never a file of the latest version —
with Delta's own retention check on. Retention below 7 days is refused: a reader or a writer that started from an
older version must still find its files. A table another writer commits to meanwhile is skipped until next time.
"""

from __future__ import annotations

from dataclasses import dataclass

from deltalake.exceptions import CommitFailedError

from hca_assets.config import Settings
from hca_assets.lake.delta import delta_table
from hca_assets.lake.registry import TABLES

__all__ = ["MIN_RETENTION_HOURS", "Maintained", "maintain_lake", "maintain_table"]

MIN_RETENTION_HOURS = 168


@dataclass(frozen=True)
class Maintained:
    table: str
    version: int  # after maintenance
    files_compacted: int  # small files replaced by compaction
    files_added: int
    files_vacuumed: int  # deleted: referenced only by versions older than the retention
    skipped: str = ""  # why nothing was done (another writer committed meanwhile)


def maintain_table(name: str, uri: str, retention_hours: float) -> Maintained:
    """Compact and vacuum one Delta table; ``retention_hours`` ≥ :data:`MIN_RETENTION_HOURS`."""
    if retention_hours < MIN_RETENTION_HOURS:
        raise ValueError(f"vacuum retention must be >= {MIN_RETENTION_HOURS} hours, got {retention_hours}")
    try:
        metrics = delta_table(uri).optimize.compact()
    except CommitFailedError:
        return Maintained(name, delta_table(uri).version(), 0, 0, 0, skipped="another writer committed: next time")
    table = delta_table(uri)
    deleted = table.vacuum(retention_hours=int(retention_hours), dry_run=False, enforce_retention_duration=True)
    return Maintained(name, table.version(), int(metrics.get("numFilesRemoved", 0)), int(metrics.get("numFilesAdded", 0)),
                      len(deleted))


def maintain_lake(settings: Settings) -> list[Maintained]:
    """Maintain every registered table that exists (lake and restricted zones)."""
    out = []
    for spec in TABLES.values():
        if spec.exists(settings):
            out.append(maintain_table(spec.name, spec.uri(settings), settings.vacuum_retention_hours))
    return out
