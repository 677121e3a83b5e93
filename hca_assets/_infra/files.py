"""Atomic file writes: a file is written under a private temporary name beside its target, then renamed over it,
so a reader (or a run killed halfway) sees the old file or the new one whole, never a part."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "temp_path"]


def temp_path(target: Path) -> Path:
    """The hidden, per-process temporary name beside ``target`` (same folder: the rename stays atomic)."""
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def atomic_write(target: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` the new content, then rename it over ``target``; returns ``target``."""
    tmp = temp_path(target)
    write(tmp)
    os.replace(tmp, target)
    return target
