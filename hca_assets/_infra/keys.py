"""The installation secret used for keyed pseudonyms (patient keys, UIDs, IDs, date offsets)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import warnings
from pathlib import Path

from hca_assets._infra.files import atomic_write, write_private
from hca_assets.config.secrets import DEID_KEY, secret

__all__ = ["KEY_ENV", "MIN_KEY_LENGTH", "KeyRefused", "checked_key", "key_fingerprint", "keyed_digest", "load_key"]

KEY_ENV = DEID_KEY
MIN_KEY_LENGTH = 16


class KeyRefused(ValueError):
    """The configured key cannot be used (too short, missing, or not the lake's); the message is one PHI-free line."""


def checked_key(key: bytes, source: str) -> bytes:
    """``key`` if it is long enough to be a secret; raises :class:`KeyRefused` naming ``source`` otherwise."""
    if len(key) < MIN_KEY_LENGTH:
        raise KeyRefused(f"{source} must be at least {MIN_KEY_LENGTH} characters, got {len(key)}")
    return key


def load_key(key_file: str, *, create: bool = True) -> bytes:
    """The secret from ``HCA_DEID_KEY``, else from ``key_file`` (created 0600 with a warning if absent).

    Processes that create the file at the same time all end with the one key that was written first.
    """
    from_env = secret(KEY_ENV)
    if from_env:
        return checked_key(from_env.encode(), KEY_ENV)
    path = Path(key_file)
    if not path.exists():
        if not create:
            raise KeyRefused(f"no {KEY_ENV} set and no key file at {path}")
        if _create_key_file(path):
            warnings.warn(
                f"{KEY_ENV} is not set: created a random key in {path} (mode 0600). Back it up: pseudonyms "
                "made with it cannot be reproduced without it.",
                UserWarning,
                stacklevel=2,
            )
    return checked_key(path.read_bytes().strip(), f"the key in {path}")


def _create_key_file(path: Path) -> bool:
    """Write a random key (0600, fsynced) to ``path`` unless it exists; True if this call wrote it. Linked into place
    whole (:func:`~hca_assets._infra.files.atomic_write` without replacing): of racing creators exactly one wins and
    nobody reads a partial key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: write_private(tmp, secrets.token_hex(32).encode()), replace=False)


def keyed_digest(key: bytes, *parts: str) -> str:
    """Hex HMAC-SHA256 of the parts (joined with an unambiguous separator)."""
    message = "\x1f".join(parts).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def key_fingerprint(key: bytes) -> str:
    """A short, non-reversible identifier of the key, safe for audit tables."""
    return hashlib.sha256(b"hca-key-fingerprint\x00" + key).hexdigest()[:16]
