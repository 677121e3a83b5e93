"""`python -m benchmarks.run cstore`: instances/s DCMTK ``storescu`` pushes into ``hca listen`` against ``storescu`` into
a real Orthanc (Debian ``orthanc``) on the same files in the same run (issue 13 item 6; goal ≥ 0.8× Orthanc)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from hca_assets.synthetic import GeneratorOptions, generate
from hca_assets_tests.services import free_port, orthanc, wait_for_port

OPTIONS = GeneratorOptions(patients=3, seed=0)  # full-size synthetic studies: CT 512², CR/DX, MR, US cine
GOAL = 0.8


def _storescu(port: int, called: str, corpus: Path) -> float:
    """Seconds ``storescu`` takes to send every file of ``corpus`` (one association, as a modality does)."""
    start = time.perf_counter()
    subprocess.run(["storescu", "-aet", "BENCH", "-aec", called, "+sd", "+r", "127.0.0.1", str(port), str(corpus)],
                   check=True, capture_output=True, env=_dcmtk_env(nodelay=True))
    return time.perf_counter() - start


def _into_listener(work: Path, corpus: Path, files: int) -> float:
    """Send ``corpus`` to a fresh `hca listen`; check it stored every file."""
    port, data = free_port(), work / "listener"
    shutil.rmtree(data, ignore_errors=True)
    env = {**os.environ, "HCA_DATA_DIR": str(data), "HCA_CSTORE_STABLE_SECONDS": "1",
           "HCA_DEID_KEY": "benchmark-key-0123456789"}
    proc = subprocess.Popen([sys.executable, "-c", "from hca_assets.cli import main; main()", "listen", "--port",
                             str(port), "--host", "127.0.0.1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port)
        seconds = _storescu(port, "HCA", corpus)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
    stored = int(re.search(r"(\d+) instances stored", out).group(1))  # type: ignore[union-attr]
    if stored != files:
        raise RuntimeError(f"hca listen stored {stored} of {files} instances")
    return seconds


def _dcmtk_env(*, nodelay: bool) -> dict[str, str]:
    """The environment of a DCMTK program: Debian's DCMTK leaves Nagle's algorithm on unless ``TCP_NODELAY=1``,
    which with delayed ACKs costs ~80 ms per instance on loopback."""
    env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
    return {**env, "TCP_NODELAY": "1"} if nodelay else env


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is ``env`` inside the block (Orthanc inherits it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _into_orthanc(corpus: Path, files: int, *, nodelay: bool = True) -> float:
    """Send ``corpus`` to a fresh Orthanc (a second copy of an instance would be ignored, not stored)."""
    with _environ(_dcmtk_env(nodelay=nodelay)), orthanc() as pacs:
        seconds = _storescu(int(pacs["dicom_port"]), str(pacs["aet"]), corpus)  # type: ignore[call-overload]
        auth = base64.b64encode(f"{pacs['user']}:{pacs['password']}".encode()).decode()
        request = urllib.request.Request(f"{pacs['url']}/statistics", headers={"Authorization": f"Basic {auth}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            stored = int(json.load(answer)["CountInstances"])
    if stored != files:
        raise RuntimeError(f"Orthanc stored {stored} of {files} instances")
    return seconds


def bench_cstore(work: Path, repeats: int) -> list[str]:
    """Best-of-``repeats`` instances/s of both receivers, alternated so the machine's load falls on each alike."""
    shutil.rmtree(work, ignore_errors=True)
    corpus = work / "corpus"
    generate(corpus, work / "truth", OPTIONS)
    files = sum(1 for p in corpus.rglob("*") if p.is_file())
    megabytes = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file()) / 2**20
    best: dict[str, float] = {}
    runs: dict[str, Callable[[], float]] = {"listener": lambda: _into_listener(work, corpus, files),
                                            "orthanc": lambda: _into_orthanc(corpus, files)}
    for _ in range(repeats):
        for name, run in runs.items():
            best[name] = min(best.get(name, float("inf")), run())
    best["orthanc_nagle"] = _into_orthanc(corpus, files, nodelay=False)  # once: Debian's default is that slow
    rate = {name: files / seconds for name, seconds in best.items()}
    ratio = rate["listener"] / rate["orthanc"]
    return [
        "## C-STORE listener (issue 13: `hca listen` against Orthanc, same files, same run)",
        "",
        f"DCMTK `storescu +sd +r` sends {files} synthetic instances ({megabytes:.0f} MB: CT 512², CR/DX, MR, US cine; "
        f"{OPTIONS.patients} patients) in one association to each receiver on loopback, best of {repeats}:",
        "",
        "| receiver | seconds | instances/s | MB/s |",
        "|---|---|---|---|",
        f"| `hca listen` (pynetdicom; each instance written, fsynced and renamed before its status) | "
        f"{best['listener']:.2f} | {rate['listener']:.0f} | {megabytes / best['listener']:.0f} |",
        f"| Orthanc {_orthanc_version()} (Debian, SQLite index, no compression; `TCP_NODELAY=1`) | "
        f"{best['orthanc']:.2f} | {rate['orthanc']:.0f} | {megabytes / best['orthanc']:.0f} |",
        f"| the same Orthanc as Debian starts it (Nagle on; one run) | {best['orthanc_nagle']:.2f} | "
        f"{rate['orthanc_nagle']:.0f} | {megabytes / best['orthanc_nagle']:.0f} |",
        "",
        f"**Listener / Orthanc (`TCP_NODELAY=1`): {ratio:.2f}×** (goal ≥ {GOAL}×: "
        f"{'met' if ratio >= GOAL else 'NOT met'}). storescu runs with `TCP_NODELAY=1` for both. The listener releases "
        "each study into the landing zone `HCA_CSTORE_STABLE_SECONDS` after its association ends (not timed).",
        "",
    ]


def _orthanc_version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "orthanc"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"
