"""Atomic file writes: a file is written under a private temporary name beside its target, then renamed over it (or
linked into place only where none exists), so a reader or a run killed halfway sees the old file or the new one
whole, never a part. The one helper every writer of a file others read uses."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "temp_path"]


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
