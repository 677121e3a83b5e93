"""The installation secret used for keyed pseudonyms (patient keys now, de-identification later)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import warnings
from pathlib import Path

__all__ = ["KEY_ENV", "key_fingerprint", "keyed_digest", "load_key"]

KEY_ENV = "HCA_DEID_KEY"


def load_key(key_file: str, *, create: bool = True) -> bytes:
    """The secret from ``HCA_DEID_KEY``, else from ``key_file`` (created 0600 with a warning if absent)."""
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        if len(from_env) < 16:
            raise ValueError(f"{KEY_ENV} must be at least 16 characters, got {len(from_env)}")
        return from_env.encode()
    path = Path(key_file)
    if path.exists():
        return path.read_bytes().strip()
    if not create:
        raise FileNotFoundError(f"no {KEY_ENV} set and no key file at {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_hex(32).encode())
    warnings.warn(
        f"{KEY_ENV} is not set: created a random key in {path} (mode 0600). Back it up: pseudonyms "
        "made with it cannot be reproduced without it.",
        UserWarning,
        stacklevel=2,
    )
    return path.read_bytes().strip()


def keyed_digest(key: bytes, *parts: str) -> str:
    """Hex HMAC-SHA256 of the parts (joined with an unambiguous separator)."""
    message = "\x1f".join(parts).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def key_fingerprint(key: bytes) -> str:
    """A short, non-reversible identifier of the key, safe for audit tables."""
    return hashlib.sha256(b"hca-key-fingerprint\x00" + key).hexdigest()[:16]
