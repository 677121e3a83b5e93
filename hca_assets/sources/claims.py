"""Claiming files from the landing zone into ingest batches: atomic, never twice, never lost.

Protocol: ready files are moved one by one (``os.rename``, atomic on one filesystem) into
``raw/.claiming-<batch>/files/``; then the batch manifest is written and the folder is renamed to
``raw/<batch>/`` — the commit point. A file is therefore always in exactly one place. One claimer at a
time: claims and :func:`recover` run under ``raw/.claim.lock`` (``flock``, released by the kernel when its
holder dies), so a ``.claiming-*`` folder seen under the lock belongs to a claimer that died or gave up,
and :func:`recover` commits it (or drops it when it holds nothing).

Never claimed, reported once (each in the manifest of the batch that first met it, so that it reaches the
quarantine table): directories that cannot be listed (they stay where they are; once readable, their files
are claimed like any others) and dot-names — hidden files and folders, which are also how uploaders such
as rsync write in progress — which stay in the landing zone. Symbolic links are never followed: the link
itself is moved into the batch's ``refused/`` folder and recorded, so its target is never read; so are FIFOs,
sockets and device nodes (a rename never opens them). Folders a claim empties are removed by it (a folder
named after a patient does not outlive its files), as are empty folders older than the settle time.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hca_assets._infra.files import atomic_write
from hca_assets._infra.locks import FileLock

__all__ = ["MANIFEST", "Batch", "claim", "claim_lock", "committed_batches", "load_batch", "mark_requested", "recover",
           "requested_at", "run_lock"]

MANIFEST = "_batch.json"
_STAGING_PREFIX = ".claiming-"
_PENDING = "_claim.json"  # what a claim in progress found besides files (so that a recovery keeps it)
_REFUSED = "refused"
_CLAIM_LOCK = ".claim.lock"
_RUN_LOCK = ".run.lock"
_REQUESTED = ".requested"
_IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")


@dataclass(frozen=True)
class Batch:
    """A committed ingest batch: its key, folder, files (relative to ``files/``), and the landing-relative
    paths of what it reports without ingesting: unlistable directories, refused symlinks and special files
    (FIFOs, sockets, devices), hidden names."""

    key: str
    path: Path
    files: tuple[str, ...]
    unreadable: tuple[str, ...]
    symlinks: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    specials: tuple[str, ...] = ()

    @property
    def files_dir(self) -> Path:
        return self.path / "files"

    @property
    def received(self) -> int:
        return len(self.files) + len(self.unreadable) + len(self.symlinks) + len(self.hidden) + len(self.specials)


@dataclass
class _Scan:
    files: list[Path] = field(default_factory=list)
    links: list[Path] = field(default_factory=list)  # and special files: moved aside unopened, like links
    hidden: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)


def new_batch_key(now: datetime | None = None) -> str:
    """Sortable, unique batch key: ``b<UTC timestamp>-<random>``."""
    now = now or datetime.now(UTC)
    return f"b{now:%Y%m%dT%H%M%S%f}-{secrets.token_hex(3)}"


def claim_lock(raw_root: Path) -> FileLock:
    """The lock that makes claimers take turns (one per raw root)."""
    return FileLock(raw_root / _CLAIM_LOCK)


def run_lock(raw_root: Path, key: str) -> FileLock:
    """The lock a process holds while it runs batch ``key`` itself (``hca ingest``)."""
    return FileLock(raw_root / key / _RUN_LOCK)


def mark_requested(raw_root: Path, key: str) -> None:
    """Record that a run of batch ``key`` was requested from the Dagster daemon (the landing sensor)."""
    (raw_root / key / _REQUESTED).write_text(datetime.now(UTC).isoformat())


def requested_at(raw_root: Path, key: str) -> float | None:
    """When a run of batch ``key`` was last requested from the daemon (Unix seconds), if ever."""
    try:
        return (raw_root / key / _REQUESTED).stat().st_mtime
    except FileNotFoundError:
        return None


def _scan(root: Path) -> _Scan:
    """Regular files under ``root`` (sorted), symlinks (never followed), dot-names (not descended into) and
    directories that could not be listed."""
    scan = _Scan()

    def onerror(err: OSError) -> None:
        if err.filename and Path(err.filename) != root:
            scan.unreadable.append(Path(err.filename))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        here = Path(dirpath)
        descend = []
        for name in sorted(dirnames):
            path = here / name
            if path.is_symlink():
                scan.links.append(path)
            elif name.startswith("."):
                scan.hidden.append(path)
            else:
                descend.append(name)
        dirnames[:] = descend
        for name in filenames:
            path = here / name
            (scan.links if _special(path) else scan.hidden if name.startswith(".") else scan.files).append(path)
    for found in (scan.files, scan.links, scan.hidden, scan.unreadable):
        found.sort()
    return scan


def _special(path: Path) -> bool:
    """A symbolic link, FIFO, socket or device node: never opened (a FIFO would block its reader)."""
    try:
        return not stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _settled(path: Path, cutoff: float) -> bool:
    try:
        return path.lstat().st_mtime <= cutoff
    except FileNotFoundError:
        return False


def _ready(path: Path, cutoff: float) -> bool:
    return not path.name.endswith(_IN_PROGRESS_SUFFIXES) and _settled(path, cutoff) and path.is_file()


def _held(lock: FileLock | None, raw_root: Path) -> FileLock | None:
    """A fresh claim lock to take, or None if the caller already holds it (``lock``)."""
    if lock is None:
        return claim_lock(raw_root)
    if not (lock.held and lock.path == raw_root / _CLAIM_LOCK):
        raise RuntimeError("the claim lock passed in is not held")
    return None


def claim(landing: Path, raw_root: Path, *, settle_seconds: float = 2.0, now: float | None = None,
          lock: FileLock | None = None) -> Batch | None:
    """Move every settled file of ``landing`` into a new committed batch; None when nothing is ready.

    Files modified within ``settle_seconds`` (still being written) and ``*.part``-style names are left for a
    later claim; settled symlinks are moved aside unread; new unlistable directories and dot-names are
    recorded. Takes the claim lock unless ``lock`` is it, already held by the caller.
    """
    if not landing.is_dir():
        return None
    own = _held(lock, raw_root)
    if own is None:
        return _claim(landing, raw_root, settle_seconds, now)
    with own:
        return _claim(landing, raw_root, settle_seconds, now)


def _claim(landing: Path, raw_root: Path, settle_seconds: float, now: float | None) -> Batch | None:
    cutoff = (now if now is not None else time.time()) - settle_seconds
    scan = _scan(landing)
    files = [f for f in scan.files if _ready(f, cutoff)]
    links = [f for f in scan.links if _settled(f, cutoff)]
    reported = _reported(raw_root) if scan.unreadable or scan.hidden else set()  # every manifest: only when needed
    pending = {
        "unreadable": [{"path": str(d.relative_to(landing)), "signature": sig} for d in scan.unreadable
                       if (sig := _signature(d)) and sig not in reported],
        "hidden": [{"path": str(h.relative_to(landing)), "signature": sig} for h in scan.hidden
                   if _settled(h, cutoff) and (sig := _signature(h)) and sig not in reported],
    }
    if not files and not links and not pending["unreadable"] and not pending["hidden"]:
        _prune_empty_dirs(landing, cutoff, emptied=set())
        return None
    key = new_batch_key()
    staging = raw_root / f"{_STAGING_PREFIX}{key}"
    (staging / "files").mkdir(parents=True)
    atomic_write(staging / _PENDING, lambda tmp: tmp.write_text(json.dumps(pending)))  # a claimer killed mid-write must not leave half a file
    for sources, into in ((links, staging / _REFUSED), (files, staging / "files")):
        for src in sources:
            dst = into / src.relative_to(landing)
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(src, dst)
            except (FileNotFoundError, PermissionError):
                continue  # gone, or not ours to move: left in place, not lost
    _prune_empty_dirs(landing, cutoff, emptied={src.parent for src in (*files, *links)})
    return _commit(staging, raw_root / key)


def _signature(path: Path) -> str | None:
    """Identity of an item reported but left in place (device, inode, change time: a re-created one counts anew)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return f"{st.st_dev}:{st.st_ino}:{st.st_ctime_ns}"


def _reported(raw_root: Path) -> set[str]:
    """Signatures of unlistable directories and hidden names already recorded by a committed batch."""
    if not raw_root.is_dir():
        return set()
    manifests = [json.loads(m.read_text()) for p in raw_root.iterdir() if (m := p / MANIFEST).is_file()]
    return {item["signature"] for m in manifests for kind in ("unreadable", "hidden") for item in m.get(kind, [])}


def recover(raw_root: Path, *, lock: FileLock | None = None) -> list[Batch]:
    """Commit claims that a crash interrupted (dropping empty ones); returns the batches it committed.

    Takes the claim lock unless ``lock`` is it, already held by the caller: under it, no live claimer is
    writing any ``.claiming-*`` folder.
    """
    if not raw_root.is_dir():
        return []
    own = _held(lock, raw_root)
    if own is None:
        return _recover(raw_root)
    with own:
        return _recover(raw_root)


def _recover(raw_root: Path) -> list[Batch]:
    batches = []
    for staging in sorted(raw_root.glob(f"{_STAGING_PREFIX}*")):
        final = raw_root / staging.name.removeprefix(_STAGING_PREFIX)
        if staging.is_dir() and (batch := _commit(staging, final, recovered=True)):
            batches.append(batch)
    return batches


def _commit(staging: Path, final: Path, *, recovered: bool = False) -> Batch | None:
    """Write the manifest of a claim and rename it to its final name; drop a claim that holds nothing.
    ``recovered``: committed by :func:`recover` after its claimer died (noted in the manifest)."""
    files_dir, refused = staging / "files", staging / _REFUSED
    swapped = _scan(files_dir).links  # replaced by a symlink between the check and the move: refused too
    for link in swapped:
        dst = refused / link.relative_to(files_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(link, dst)
    pending_file = staging / _PENDING
    pending = json.loads(pending_file.read_text()) if pending_file.is_file() else {}
    manifest = {
        "key": final.name,
        "committed_at": datetime.now(UTC).isoformat(),
        "files": [str(f.relative_to(files_dir)) for f in _scan(files_dir).files],
        "unreadable": pending.get("unreadable", []),
        "symlinks": [str(f.relative_to(refused)) for f in _scan(refused).links if f.is_symlink()],
        "specials": [str(f.relative_to(refused)) for f in _scan(refused).links if not f.is_symlink()],
        "hidden": pending.get("hidden", []),
        "recovered": recovered,
    }
    if not any(manifest[k] for k in ("files", "unreadable", "symlinks", "specials", "hidden")):
        shutil.rmtree(staging)
        return None
    atomic_write(staging / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))
    pending_file.unlink(missing_ok=True)  # its content is in the manifest now
    os.rename(staging, final)
    return load_batch(final.parent, final.name)


def _prune_empty_dirs(landing: Path, cutoff: float, emptied: set[Path]) -> None:
    """Remove empty folders under ``landing``: those this claim emptied (and their parents it left empty) at
    once, others once unchanged since ``cutoff`` (an uploader may just have made one to write into)."""
    ours = {parent for p in emptied for parent in (p, *p.parents) if parent.is_relative_to(landing)}
    for dirpath, dirnames, filenames in os.walk(landing, topdown=False, onerror=lambda e: None):
        p = Path(dirpath)
        if p == landing or any((p / name).exists() for name in (*dirnames, *filenames)):
            continue
        try:
            if p in ours or p.stat().st_mtime <= cutoff:
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
    return Batch(key=key, path=path, files=tuple(m["files"]), unreadable=tuple(u["path"] for u in m["unreadable"]),
                 symlinks=tuple(m.get("symlinks", [])), hidden=tuple(h["path"] for h in m.get("hidden", [])),
                 specials=tuple(m.get("specials", [])))
