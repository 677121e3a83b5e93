"""Cross-process locks that survive crashes, and whether a recorded process is still alive.

A lock is ``fcntl.flock`` on a lock file: the kernel releases it when its holder exits, however it dies
(``kill -9``, OOM), so a dead holder never blocks anyone. Lock files are created once and never deleted
(deleting one would let two processes lock two different files of the same name). Local file systems only.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["FileLock", "is_held", "process_alive"]


class FileLock:
    """An exclusive lock on ``path``; two instances conflict even inside one process (one open file each)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock (waiting for it when ``blocking``); False if it is held elsewhere and not blocking."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this FileLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Drop the lock (closing the file releases it)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def is_held(path: Path) -> bool:
    """True if some live process holds the lock on ``path`` right now (creates nothing: no file, no lock)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing also drops the probe's own lock
    return False


def _proc_stat(pid: int) -> tuple[str, float] | None:
    """State letter and start time (Unix seconds) of process ``pid`` from ``/proc`` (Linux); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # fields 3… (the name in parentheses may hold spaces)
    return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def process_alive(pid: int, *, started_by: float | None = None) -> bool:
    """True if process ``pid`` runs (a zombie does not) and, when ``started_by`` is given, had already started
    by then: a process started later is another one that reused the pid (e.g. after a machine restart)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:  # no /proc (macOS): existence is all we know
        return True
    state, started = stat
    return state not in ("Z", "X") and (started_by is None or started <= started_by + 1.0)  # start times are in ticks
