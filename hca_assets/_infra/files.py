"""Atomic file writes: a file is written under a private temporary name beside its target, then renamed over it (or
linked into place only where none exists), so a reader or a run killed halfway sees the old file or the new one
whole, never a part. The one helper every writer of a file others read uses."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "temp_path", "write_private"]


def temp_path(target: Path) -> Path:
    """A hidden temporary name beside ``target``, private to this process and call (same folder: the rename stays
    atomic)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write(target: Path, write: Callable[[Path], object], *, replace: bool = True) -> bool:
    """``write(tmp)`` the new content, then rename it over ``target``; with ``replace=False`` link it into place only
    if ``target`` does not exist (concurrent creators: the first wins). True when this call's content is in place."""
    tmp = temp_path(target)
    try:
        write(tmp)
        if replace:
            os.replace(tmp, target)
            return True
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` owner-only (0600) and fsync it: for keys, pins and received instances, whose bytes must survive
    a power cut (a peer deletes its copy once told "stored") and no other user may read."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
