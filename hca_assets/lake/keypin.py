"""The key pin: which key a data folder's lake was built with, so that another key never splits patients.

The pin is a small restricted JSON record (0600) of the key's fingerprint, written before the first row
of the first batch. A run with another key is refused (:class:`~hca_assets._infra.keys.KeyRefused`) before it
writes anything. :func:`rotate_key` is the one deliberate way to change it: the old fingerprint is kept
as retired, and from then on de-identification takes the pseudonyms and date offsets of everything
already seen from the restricted crosswalk (:func:`kept_pseudonyms`), so nobody gets a second pseudonym.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc

from hca_assets._infra.files import atomic_write, write_private
from hca_assets._infra.keys import KEY_ENV, KeyRefused, checked_key, key_fingerprint, load_key
from hca_assets._infra.storage import pull_file, push
from hca_assets.config import Settings
from hca_assets.config.secrets import secret as secret_from_env
from hca_assets.lake import registry as tables

__all__ = ["KeptPseudonyms", "KeyPin", "kept_pseudonyms", "lake_key", "read_pin", "rotate_key"]


@dataclass(frozen=True)
class KeyPin:
    """The fingerprint in force and those retired by explicit rotations (oldest first)."""

    fingerprint: str
    pinned_at: str
    retired: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeptPseudonyms:
    """Pseudonyms and date offsets fixed by the crosswalk (originals as keys); empty unless a key was retired."""

    uids: Mapping[str, str] = field(default_factory=dict)
    patients: Mapping[str, str] = field(default_factory=dict)
    date_offsets: Mapping[str, int] = field(default_factory=dict)


def read_pin(path: Path) -> KeyPin | None:
    """The pin at ``path``, or None if the lake has none yet."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return KeyPin(record["fingerprint"], record["pinned_at"], tuple(record.get("retired", ())))


def _write_pin(path: Path, pin: KeyPin, *, replace: bool) -> KeyPin:
    """Write ``pin`` whole (0600, fsynced), atomically; a first pin (``replace=False``) never overwrites one that a
    concurrent process wrote first — the pin in force is returned either way."""
    record = {"fingerprint": pin.fingerprint, "pinned_at": pin.pinned_at, "retired": list(pin.retired)}
    if atomic_write(path, lambda tmp: write_private(tmp, json.dumps(record).encode()), replace=replace):
        return pin
    found = read_pin(path)
    assert found is not None
    return found


def _audited_pin(settings: Settings) -> KeyPin | None:
    """For a lake written before pins existed: the latest key ``deid_audit`` recorded (earlier ones retired)."""
    if not tables.DEID_AUDIT.exists(settings):
        return None
    audit = tables.DEID_AUDIT.read(settings, columns=["key_fingerprint", "audited_at"]).to_pylist()
    latest = {r["key_fingerprint"]: r["audited_at"] for r in sorted(audit, key=lambda r: r["audited_at"])}
    order = sorted(latest, key=latest.__getitem__)
    return KeyPin(order[-1], _now(), tuple(order[:-1])) if order else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _refusal(pin: KeyPin, fingerprint: str) -> KeyRefused:
    how = "restore that key" if fingerprint not in pin.retired else "that key was retired by `hca rekey`; use the current one"
    return KeyRefused(f"this data folder's lake was built with key {pin.fingerprint}, but the configured key is "
                      f"{fingerprint}: {how} ({KEY_ENV} or restricted/hca.key), or change it deliberately with `hca rekey`")


def lake_key(settings: Settings, secret: str | None = None, *, pin: bool = True) -> bytes:
    """The key for the lake under ``settings``: ``secret``, else ``HCA_DEID_KEY``, else the key file.

    Raises :class:`KeyRefused` unless it is the key the lake is pinned to. The first use pins it when
    ``pin`` (stages do, before their first row); a read-only use (``pin=False``) only compares. No key file
    is created for a lake that is already pinned: a lost key is reported, not silently replaced.
    """
    settings.ensure_restricted()
    pull_file(settings, settings.key_pin)  # object-store root: the pin (and key file) other machines wrote
    pull_file(settings, settings.key_file)
    path = Path(settings.key_pin)
    pinned = read_pin(path)
    current = pinned or _audited_pin(settings)
    if secret:
        key = checked_key(secret.encode(), KEY_ENV)
    elif current is not None and not secret_from_env(KEY_ENV) and not Path(settings.key_file).exists():
        raise KeyRefused(f"this data folder's lake was built with key {current.fingerprint}, but no {KEY_ENV} is set "
                         "and restricted/hca.key is missing: restore that key")
    else:
        key = load_key(settings.key_file)
    fingerprint = key_fingerprint(key)
    if pin and pinned is None:  # _write_pin returns the pin in force if another process pinned meanwhile
        current = _write_pin(path, current or KeyPin(fingerprint, _now()), replace=False)
    if current is not None and current.fingerprint != fingerprint:
        raise _refusal(current, fingerprint)
    if pinned is None:
        push(settings, settings.key_pin, settings.key_file)
    return key


def rotate_key(settings: Settings) -> tuple[str | None, str]:
    """Pin the configured key (``HCA_DEID_KEY``, else the key file, created if missing), retiring the
    pinned one. Returns (old fingerprint or None, new fingerprint); a no-op if the key is already pinned."""
    settings.ensure_restricted()
    pull_file(settings, settings.key_pin)
    path = Path(settings.key_pin)
    pinned = read_pin(path)
    current = pinned or _audited_pin(settings)
    fingerprint = key_fingerprint(load_key(settings.key_file))
    if current is None:
        fingerprint = _write_pin(path, KeyPin(fingerprint, _now()), replace=False).fingerprint
    elif current.fingerprint != fingerprint:
        retired = tuple(f for f in (*current.retired, current.fingerprint) if f != fingerprint)
        _write_pin(path, KeyPin(fingerprint, _now(), retired), replace=True)
    push(settings, settings.key_pin, settings.key_file)
    return (current.fingerprint if current else None), fingerprint


def kept_pseudonyms(settings: Settings) -> KeptPseudonyms:
    """After a rotation, every patient, study, series and instance the crosswalk holds keeps the pseudonym
    (and patients the date offset) first given to it; before any rotation, nothing is fixed (the key decides).

    Reads the whole restricted crosswalk: memory grows with the instances de-identified so far.
    """
    pin = read_pin(Path(settings.key_pin))
    if pin is None or not pin.retired or not tables.DEID_CROSSWALK.exists(settings):
        return KeptPseudonyms()
    rows = tables.DEID_CROSSWALK.read(settings)
    rows = rows.take(pc.sort_indices(rows, sort_keys=[("batch", "descending")]))  # earliest batch written last: wins
    uids: dict[str, str] = {}
    patients: dict[str, str] = {}
    offsets: dict[str, int] = {}
    for kind, original, pseudonym, days in zip(*(rows.column(c).to_pylist() for c in
                                                 ("kind", "original", "pseudonym", "date_offset_days")), strict=True):
        if kind == "patient":
            patients[original.strip()] = pseudonym
            if days:  # 0 / null: a profile that kept dates, no offset was chosen
                offsets[original.strip()] = days
        else:
            uids[original.strip().rstrip("\x00")] = pseudonym
    return KeptPseudonyms(uids, patients, offsets)
