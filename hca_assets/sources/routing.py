"""Priority routing: which level (STAT > Urgent > Routine > Research) a batch runs at, from ``HCA_PRIORITY_RULES``.

Rules are a comma-separated list of ``LEVEL:source=value``; sources:

- ``folder``: the first sub-folder of the landing zone a batch file arrived in (``folder=stat`` matches
  ``landing/stat/...``; exact, case-sensitive);
- ``priority``: RequestedProcedurePriority (0040,1003) in a file's header (STAT, HIGH, ROUTINE, MEDIUM, LOW);
- ``ae``: the sending AE title. Folder batches have none, so such a rule is accepted but matches nothing
  until a C-STORE source hands its calling AE title to :func:`batch_priority`.

The highest level any file of the batch matches wins; a batch that matches no rule is Routine. With no rule
configured nothing is routed (callers then add no tags).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hca_assets.config.priority_rules import DEFAULT_LEVEL, LEVELS, Rule, parse_rules
from hca_assets.sources.claims import Batch

if TYPE_CHECKING:
    from hca_assets.config import Settings

__all__ = ["DEFAULT_LEVEL", "LEVELS", "Rule", "batch_priority", "parse_rules"]


def _header_priority(path: Path) -> str | None:
    """RequestedProcedurePriority of one file, read without its pixels; None if absent or not readable DICOM
    (ingest quarantines such files; here they only carry no priority)."""
    from hca_assets.dicom.io import (
        read_header,  # here, not at import: `hca sql` and the config do not pay for pydicom
    )

    ds = read_header(path, ["RequestedProcedurePriority"])  # raw data sets too, as ingest reads them
    if ds is None:
        return None
    value = str(ds.get("RequestedProcedurePriority") or "").strip().upper()
    return value or None


def _file_level(name: str, path: Path, rules: tuple[Rule, ...], calling_ae: str | None, top: int) -> int:
    """One file's Dagster priority: the highest rule it matches (its header read only if that can raise it),
    else Routine's."""
    parts = Path(name).parts
    folder = parts[0] if len(parts) > 1 else None
    ae = calling_ae.strip() if calling_ae is not None else None
    matched = [LEVELS[r.level] for r in rules if (r.source, r.value) in (("folder", folder), ("ae", ae))]
    header = [r for r in rules if r.source == "priority" and LEVELS[r.level] > max(matched, default=-1)]
    if header and max(matched, default=-1) < top and (value := _header_priority(path)) is not None:
        matched += [LEVELS[r.level] for r in header if r.value == value]
    return max(matched, default=LEVELS[DEFAULT_LEVEL])


def batch_priority(batch: Batch, settings: Settings, *, calling_ae: str | None = None) -> tuple[str, int]:
    """The batch's level and Dagster priority: the highest level among its files (a file that matches no rule
    is Routine; so is a batch without files)."""
    rules = parse_rules(settings.priority_rules)
    top = max(LEVELS[r.level] for r in rules) if rules else LEVELS[DEFAULT_LEVEL]
    best = -1  # no file yet
    for name in batch.files:
        best = max(best, _file_level(name, batch.files_dir / name, rules, calling_ae, top))
        if best >= top:
            break
    number = best if best >= 0 else LEVELS[DEFAULT_LEVEL]
    return next(level for level, n in LEVELS.items() if n == number), number
