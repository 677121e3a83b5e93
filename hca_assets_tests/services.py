"""Throwaway servers for the deployment tests: a Postgres cluster and a Redis server, on loopback, in a
temporary folder, on a free port, stopped (and their folder removed) when the block ends."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
        time.sleep(0.1)


def _postgres_bin(name: str) -> str:
    """A Postgres server program from the Debian package (not on PATH there: /usr/lib/postgresql/<v>/bin)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    if not found[-1]:
        raise FileNotFoundError(f"{name}: install the Debian package postgresql (make install)")
    return found[-1]


@contextlib.contextmanager
def postgres_cluster(user: str = "dagster") -> Iterator[dict[str, str]]:
    """A fresh Postgres cluster (trust auth on loopback; as the ``postgres`` user when run as root, since
    the server refuses root); yields the DAGSTER_PG_* variables deploy/dagster.yaml reads."""
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="hca-pg-"))
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run([*as_postgres, _postgres_bin("initdb"), "-D", str(data), "-U", user, "--auth=trust",
                    "--no-sync"], check=True, capture_output=True)
    ctl = [*as_postgres, _postgres_bin("pg_ctl"), "-D", str(data), "-l", str(root / "log")]
    subprocess.run([*ctl, "-w", "-o", f"-p {port} -h 127.0.0.1 -k {root} -F", "start"], check=True,
                   capture_output=True)
    try:
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_DB": "postgres",
               "DAGSTER_PG_USER": user, "DAGSTER_PG_PASSWORD": "unused-trust-auth"}
    finally:
        subprocess.run([*ctl, "-m", "immediate", "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A Redis server (Debian ``redis-server``) on loopback, no persistence; yields its ``redis://`` URL."""
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    port, root = free_port(), tempfile.mkdtemp(prefix="hca-redis-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the process group ``proc`` leads (started with ``start_new_session``), SIGKILL what is left
    after ``timeout``: a CLI that spawns the real server (dagster-celery → celery) leaves nothing behind."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    with contextlib.suppress(ProcessLookupError):
        while time.monotonic() < deadline:
            os.killpg(proc.pid, 0)
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
