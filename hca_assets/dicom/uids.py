"""UIDs derived from digests: ``2.25.<128-bit integer>`` (PS3.5 B.2), deterministic and ≤ 64 characters."""

from __future__ import annotations

import hashlib

__all__ = ["uid_from_digest", "uid_from_parts"]


def uid_from_digest(digest: bytes) -> str:
    """A ``2.25`` UID from the first 16 bytes of a digest (≤ 44 characters)."""
    if len(digest) < 16:
        raise ValueError(f"`digest` must have at least 16 bytes, got {len(digest)}")
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def uid_from_parts(*parts: str) -> str:
    """A deterministic UID for unkeyed, non-secret inputs (e.g. synthetic data)."""
    return uid_from_digest(hashlib.sha256("\x1f".join(parts).encode()).digest())
