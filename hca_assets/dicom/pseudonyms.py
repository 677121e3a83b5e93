"""Keyed pseudonyms: UIDs, patient IDs/names and per-patient date offsets, from one secret.

Same key + same original → same pseudonym in every file, batch and run; another key → unrelated
pseudonyms. External old→new mappings (CSV ``id_old,id_new``, or the crosswalk after a key rotation)
and fixed per-patient date offsets take precedence over the HMAC.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hca_assets.dicom.uids import uid_from_digest

__all__ = ["MAX_DATE_SHIFT_DAYS", "Pseudonymizer", "load_mapping"]

MAX_DATE_SHIFT_DAYS = 3650


def load_mapping(path: Path) -> dict[str, str]:
    """Read a CSV with header ``id_old,id_new``; raises ``ValueError`` naming the line on bad input."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or [f.strip() for f in reader.fieldnames[:2]] != ["id_old", "id_new"]:
            raise ValueError(f"{path}: the first line must be the header 'id_old,id_new'")  # never echo it: it may be an ID
        mapping: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            old, new = (row.get("id_old") or "").strip(), (row.get("id_new") or "").strip()
            if not old or not new:
                raise ValueError(f"{path}:{line}: both id_old and id_new must be non-empty")
            if old in mapping and mapping[old] != new:
                raise ValueError(f"{path}:{line}: id_old mapped twice to different values")
            mapping[old] = new
    return mapping


@dataclass(frozen=True)
class Pseudonymizer:
    """Deterministic keyed replacements for identifiers."""

    key: bytes
    uid_map: Mapping[str, str] = field(default_factory=dict)
    patient_map: Mapping[str, str] = field(default_factory=dict)
    date_offsets: Mapping[str, int] = field(default_factory=dict)  # original patient ID → days

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise ValueError(f"`key` must be at least 16 bytes, got {len(self.key)}")
        bad = [new for new in self.uid_map.values() if len(new) > 64 or not all(c.isdigit() or c == "." for c in new)]
        if bad:
            raise ValueError(f"uid mapping has {len(bad)} replacement(s) that are not valid UIDs (digits and dots, ≤ 64)")
        wrong = sum(1 for days in self.date_offsets.values() if not -MAX_DATE_SHIFT_DAYS <= days <= -1)
        if wrong:
            raise ValueError(f"date offset mapping has {wrong} offset(s) outside -{MAX_DATE_SHIFT_DAYS}..-1 days")

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self.key, f"{purpose}\x1f{value}".encode(), hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """``2.25.<int>`` from HMAC(key, original); the external mapping wins."""
        original = original.strip().rstrip("\x00")
        return self.uid_map.get(original) or uid_from_digest(self._digest("uid", original))

    def patient_id(self, original: str) -> str:
        original = original.strip()
        return self.patient_map.get(original) or f"PSN{self._digest('patient', original).hex()[:16].upper()}"

    def patient_name(self, original_id: str) -> str:
        """A name derived from the pseudonymous ID (so one patient keeps one name)."""
        return f"PSEUDONYM^{self.patient_id(original_id)}"

    def date_offset_days(self, original_patient_id: str) -> int:
        """Per-patient shift into the past, 1..3650 days; the same for every date of that patient."""
        original = original_patient_id.strip()
        if original in self.date_offsets:
            return self.date_offsets[original]
        n = int.from_bytes(self._digest("date-offset", original)[:8], "big")
        return -(1 + n % MAX_DATE_SHIFT_DAYS)
