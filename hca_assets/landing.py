"""Claiming files from the landing zone into ingest batches: atomic, never twice, never lost.

Protocol: ready files are moved one by one (``os.rename``, atomic on one filesystem) into
``raw/.claiming-<batch>/files/``; then the batch manifest is written and the folder is renamed to
``raw/<batch>/`` — the commit point. A file is therefore always in exactly one place. A claim cut short
by a crash leaves a ``.claiming-*`` folder that :func:`recover` commits on the next call. Directories
that cannot be listed stay where they are (moving a directory needs write permission on it) and are
recorded once, in the manifest of the batch that first met them, so that they reach the quarantine
table; once readable, their files are claimed like any others.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["MANIFEST", "Batch", "claim", "committed_batches", "load_batch", "recover"]

MANIFEST = "_batch.json"
_STAGING_PREFIX = ".claiming-"
_UNREADABLE = "_unreadable.json"
_IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")


@dataclass(frozen=True)
class Batch:
    """A committed ingest batch: its key, folder, files (relative to ``files/``) and the landing-relative
    paths of directories that could not be listed."""

    key: str
    path: Path
    files: tuple[str, ...]
    unreadable: tuple[str, ...]

    @property
    def files_dir(self) -> Path:
        return self.path / "files"

    @property
    def received(self) -> int:
        return len(self.files) + len(self.unreadable)


def new_batch_key(now: datetime | None = None) -> str:
    """Sortable, unique batch key: ``b<UTC timestamp>-<random>``."""
    now = now or datetime.now(UTC)
    return f"b{now:%Y%m%dT%H%M%S%f}-{secrets.token_hex(3)}"


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """Regular files under ``root`` (sorted) and the directories that could not be listed."""
    unreadable: list[Path] = []

    def onerror(err: OSError) -> None:
        if err.filename and Path(err.filename) != root:
            unreadable.append(Path(err.filename))

    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath, f) for f in filenames)
    return sorted(files), sorted(unreadable)


def _ready(path: Path, cutoff: float) -> bool:
    if path.name.startswith(".") or path.name.endswith(_IN_PROGRESS_SUFFIXES):
        return False
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    return st.st_mtime <= cutoff and os.path.isfile(path) and not os.path.islink(path)


def claim(landing: Path, raw_root: Path, *, settle_seconds: float = 2.0, now: float | None = None) -> Batch | None:
    """Move every settled file of ``landing`` into a new committed batch; None when nothing is ready.

    Files modified within ``settle_seconds`` (still being written), hidden files and ``*.part``-style
    names are left for a later claim. Unreadable directories not reported before are recorded.
    """
    if not landing.is_dir():
        return None
    cutoff = (now if now is not None else time.time()) - settle_seconds
    files, unreadable = _walk(landing)
    files = [f for f in files if _ready(f, cutoff)]
    reported = _reported_unreadable(raw_root)
    new_unreadable = [
        {"path": str(d.relative_to(landing)), "signature": sig}
        for d in unreadable
        if (sig := _signature(d)) not in reported
    ]
    if not files and not new_unreadable:
        return None
    key = new_batch_key()
    staging = raw_root / f"{_STAGING_PREFIX}{key}"
    (staging / "files").mkdir(parents=True)
    (staging / _UNREADABLE).write_text(json.dumps(new_unreadable))
    for src in files:
        dst = staging / "files" / src.relative_to(landing)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(src, dst)
        except (FileNotFoundError, PermissionError):
            continue  # taken by a concurrent claimer, or not ours to move: left in place, not lost
    _prune_empty_dirs(landing, cutoff)
    return _commit(staging, raw_root / key)


def _signature(path: Path) -> str:
    """Identity of a directory that cannot be listed (inode + change time: a re-created one counts anew)."""
    st = path.lstat()
    return f"{st.st_dev}:{st.st_ino}:{st.st_ctime_ns}"


def _reported_unreadable(raw_root: Path) -> set[str]:
    if not raw_root.is_dir():
        return set()
    manifests = [p / MANIFEST for p in raw_root.iterdir() if (p / MANIFEST).is_file()]
    pending = [p / _UNREADABLE for p in raw_root.glob(f"{_STAGING_PREFIX}*") if (p / _UNREADABLE).is_file()]
    seen = {u["signature"] for m in manifests for u in json.loads(m.read_text())["unreadable"]}
    return seen | {u["signature"] for f in pending for u in json.loads(f.read_text())}


def recover(raw_root: Path) -> list[Batch]:
    """Commit claims that a crash interrupted; returns the batches it committed."""
    if not raw_root.is_dir():
        return []
    return [
        _commit(p, raw_root / p.name.removeprefix(_STAGING_PREFIX))
        for p in sorted(raw_root.glob(f"{_STAGING_PREFIX}*"))
        if p.is_dir()
    ]


def _commit(staging: Path, final: Path) -> Batch:
    files, _ = _walk(staging / "files")
    unreadable_file = staging / _UNREADABLE
    manifest = {
        "key": final.name,
        "committed_at": datetime.now(UTC).isoformat(),
        "files": [str(f.relative_to(staging / "files")) for f in files],
        "unreadable": json.loads(unreadable_file.read_text()) if unreadable_file.is_file() else [],
    }
    tmp = staging / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, staging / MANIFEST)
    os.rename(staging, final)
    return load_batch(final.parent, final.name)


def _prune_empty_dirs(landing: Path, cutoff: float) -> None:
    for dirpath, dirnames, filenames in os.walk(landing, topdown=False, onerror=lambda e: None):
        p = Path(dirpath)
        if p != landing and not dirnames and not filenames:
            try:
                if p.stat().st_mtime <= cutoff:
                    p.rmdir()
            except OSError:
                pass


def committed_batches(raw_root: Path) -> list[str]:
    """Keys of committed batches, oldest first."""
    if not raw_root.is_dir():
        return []
    return sorted(p.name for p in raw_root.iterdir() if (p / MANIFEST).is_file())


def load_batch(raw_root: Path, key: str) -> Batch:
    """Read a committed batch's manifest."""
    path = raw_root / key
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"batch {key!r} is not committed under {raw_root}")
    m = json.loads(manifest_path.read_text())
    return Batch(key=key, path=path, files=tuple(m["files"]), unreadable=tuple(u["path"] for u in m["unreadable"]))
