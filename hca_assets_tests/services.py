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
    deadline = time.monotonic() + timeout
    with contextlib.suppress(subprocess.TimeoutExpired):  # a leader slow to exit is killed below, not waited for
        proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        while time.monotonic() < deadline:
            os.killpg(proc.pid, 0)
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


AZURITE = Path(__file__).resolve().parents[1] / ".tools" / "node_modules" / ".bin" / "azurite-blob"  # `make install`
# Azurite's published development account (learn.microsoft.com "Use the Azurite emulator"): not a secret
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_connection(port: int, key: str = AZURITE_KEY) -> str:
    """A connection string for the development account on 127.0.0.1:``port`` (Azurite, or a proxy before it)."""
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};")


@contextlib.contextmanager
def azurite(container: str = "hca") -> Iterator[int]:
    """Azurite's blob service (npm ``azurite``) on loopback with a temporary folder and ``container`` created,
    as a user would create it; yields its port."""
    if not AZURITE.exists():
        raise FileNotFoundError(f"{AZURITE}: run `make install` (npm install azurite)")
    port, root = free_port(), tempfile.mkdtemp(prefix="hca-azurite-")
    proc = subprocess.Popen([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", root,
                             "--silent", "--skipApiVersionCheck", "--loose"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port)
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(azurite_connection(port)).create_container(container)
        yield port
    finally:
        stop_group(proc, timeout=10)
        shutil.rmtree(root, ignore_errors=True)


class FaultProxy:
    """An HTTP proxy on loopback before ``upstream_port`` that answers ``status`` (503, 429, …) instead of
    forwarding, for the next ``fail_next`` requests (-1: every request) whose path holds ``fail_only`` (writes,
    when it is set); ``requests`` counts what it saw, ``failed`` what it refused."""

    def __init__(self, upstream_port: int) -> None:
        import http.client
        import http.server
        import threading

        proxy = self
        self.status, self.fail_next, self.requests, self.failed, self.fail_only = 503, 0, 0, 0, ""

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                del self.headers["Transfer-Encoding"]
                self.headers["Content-Length"] = str(sum(map(len, chunks)))
                return b"".join(chunks)

            def _any(self) -> None:
                body = self._body()
                proxy.requests += 1
                chosen = not proxy.fail_only or (self.command == "PUT" and proxy.fail_only in self.path)
                if proxy.fail_next and chosen:
                    proxy.fail_next -= 1 if proxy.fail_next > 0 else 0
                    proxy.failed += 1
                    self.send_response(proxy.status)
                    self.send_header("Connection", "close")
                    self.close_connection = True
                    self.send_header("Content-Length", "0")
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                try:  # the headers as signed (Shared Key signs Content-Length, Content-Type, x-ms-*)
                    upstream.request(self.command, self.path, body=body or None,
                                     headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                    answer = upstream.getresponse()
                    status, headers, data = answer.status, answer.headers, answer.read()
                finally:
                    upstream.close()
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Connection", "close")  # one request per connection: no keep-alive races
                self.close_connection = True
                head = self.command == "HEAD"  # its Content-Length is the object's size, with no body
                self.send_header("Content-Length", headers.get("Content-Length", "0") if head else str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 256  # the default backlog of 5 drops connections when 16 uploads start at once

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


ORTHANC_PLUGINS = Path("/usr/share/orthanc/plugins")  # Debian orthanc + orthanc-dicomweb


@contextlib.contextmanager
def orthanc(*, user: str = "hca", password: str = "orthanc-test-password", aet: str = "ORTHANC",
            modalities: dict[str, list[object]] | None = None) -> Iterator[dict[str, object]]:
    """A real Orthanc (Debian ``orthanc`` with the ``orthanc-dicomweb`` plugin) on loopback, with a temporary config
    and storage folder, HTTP basic auth (``user``/``password``) and a DICOM port; ``modalities`` are Orthanc's
    ``DicomModalities`` (name → [AET, host, port]) it may C-STORE to. Yields ``url`` (REST root), ``dicomweb``
    (its DICOMweb root), ``dicom_port``, ``aet``, ``user``, ``password``; stopped and removed when the block ends."""
    exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(exe).exists():
        raise FileNotFoundError("Orthanc: install the Debian packages orthanc orthanc-dicomweb (make install)")
    root = Path(tempfile.mkdtemp(prefix="hca-orthanc-"))
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "hca-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
        "HttpPort": http_port, "HttpBindAddress": "127.0.0.1", "DicomPort": dicom_port, "DicomAet": aet,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {user: password},
        "DicomCheckCalledAet": False, "DicomModalities": modalities or {}, "StableAge": 1,
        "Plugins": [str(ORTHANC_PLUGINS / "libOrthancDicomWeb.so")],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "StudiesMetadata": "Full"},
        "ConcurrentJobs": 2, "HttpThreadsCount": 8, "StorageCompression": False, "LogExportedResources": False,
    }
    (root / "orthanc.json").write_text(__import__("json").dumps(config))
    log = (root / "orthanc.log").open("wb")
    proc = subprocess.Popen([exe, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for_port(http_port)
        wait_for_port(dicom_port)
        yield {"url": f"http://127.0.0.1:{http_port}", "dicomweb": f"http://127.0.0.1:{http_port}/dicom-web",
               "dicom_port": dicom_port, "aet": aet, "user": user, "password": password, "log": root / "orthanc.log"}
    finally:
        stop_group(proc, timeout=20)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
