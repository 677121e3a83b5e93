"""Benchmark part ``dicomweb`` (issue 13 item 6): instances/s the DICOMweb poller pulls from a real Orthanc into the
landing zone, against Orthanc's own rates on the same files in the same run: its ZIP archive of each study
(``/studies/{id}/archive``) and DCMTK ``storescu`` → Orthanc (C-STORE ingest)."""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from pathlib import Path

import requests

from benchmarks.timing import REPEATS, best_of
from hca_assets.config import Settings
from hca_assets.sources.dicomweb import Credentials, DicomwebPoller
from hca_assets.synthetic import GeneratorOptions, generate
from hca_assets_tests.services import orthanc

KEY = b"benchmark-key-0123456789"


def bench_dicomweb(work: Path) -> list[str]:
    options = GeneratorOptions(patients=3, seed=0)
    generate(work / "dicom", work / "truth", options)
    files = sorted(p for p in (work / "dicom").rglob("*") if p.is_file())
    mib = sum(p.stat().st_size for p in files) / 2**20
    os.environ["TCP_NODELAY"] = "1"  # Debian's DCMTK (storescu, Orthanc) keeps Nagle on otherwise: ~80 ms per instance
    with orthanc() as pacs:
        start = time.perf_counter()
        subprocess.run(["storescu", "-aet", "HCA", "-aec", str(pacs["aet"]), "+sd", "+r", "-q", "127.0.0.1",
                        str(pacs["dicom_port"]), str(work / "dicom")], check=True, capture_output=True)
        store_s = time.perf_counter() - start
        session = requests.Session()
        session.auth = (str(pacs["user"]), str(pacs["password"]))
        studies = session.get(f"{pacs['url']}/studies", timeout=30).json()
        held = sum(len(session.get(f"{pacs['url']}/studies/{s}/instances", timeout=30).json()) for s in studies)
        assert held == len(files), f"Orthanc holds {held} of {len(files)} instances"

        def archive() -> None:
            for s in studies:
                session.get(f"{pacs['url']}/studies/{s}/archive", timeout=300).raise_for_status()

        archive_s = best_of(archive)
        uids = [session.get(f"{pacs['url']}/studies/{s}", timeout=30).json()["MainDicomTags"]["StudyInstanceUID"]
                for s in studies]

        def wado() -> None:  # the server's delivery ceiling: the same WADO-RS responses, read and dropped
            for uid in uids:
                with session.get(f"{pacs['dicomweb']}/studies/{uid}", stream=True, timeout=300,
                                 headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}) as r:
                    r.raise_for_status()
                    for _ in r.iter_content(1 << 20):
                        pass

        wado_s = best_of(wado)
        pulled: list[int] = []
        runs = itertools.count()

        def poll() -> None:
            settings = Settings(data_dir=str(work / f"poll{next(runs)}"))  # a fresh landing zone each time
            poller = DicomwebPoller(settings, str(pacs["dicomweb"]), Credentials(str(pacs["user"]), str(pacs["password"])), KEY)
            poller.poll()
            pulled.append(poller.stats.instances_retrieved)

        poll_s = best_of(poll)
    assert set(pulled) == {len(files)}, f"the poller pulled {pulled} instances, expected {len(files)}"
    n = len(files)
    rate = n / poll_s
    return [
        "## DICOMweb pull (issue 13: poller vs Orthanc's own rates, same files, same run)",
        "",
        f"{n} synthetic instances in {len(studies)} studies ({options.patients} patients, {mib:.0f} MiB: CT 512², CR/DX "
        f"1024², MR 256², US) held by a real Orthanc on loopback (Debian orthanc + orthanc-dicomweb, basic auth, "
        f"no storage compression). Best of {REPEATS}.",
        "",
        "| path | seconds | instances/s | MiB/s |",
        "|---|---:|---:|---:|",
        f"| **poller**: QIDO-RS + streamed WADO-RS per study → incoming → release into landing + `study_arrivals` rows "
        f"| {poll_s:.2f} | **{rate:.0f}** | {mib / poll_s:.0f} |",
        f"| WADO-RS responses alone (same GETs, bytes read and dropped: the server's ceiling) | {wado_s:.2f} | "
        f"{n / wado_s:.0f} | {mib / wado_s:.0f} |",
        f"| Orthanc `/studies/{{id}}/archive` (its own ZIP of each study) | {archive_s:.2f} | {n / archive_s:.0f} | "
        f"{mib / archive_s:.0f} |",
        f"| `storescu` → Orthanc (C-STORE ingest, once: into an empty Orthanc) | {store_s:.2f} | {n / store_s:.0f} | "
        f"{mib / store_s:.0f} |",
        "",
        f"The poller pulls at {wado_s / poll_s:.2f}× the rate Orthanc serves WADO-RS (its parsing, atomic writes, "
        f"release and Delta rows cost the rest), {archive_s / poll_s:.1f}× Orthanc's archive rate (a ZIP it deflates) and "
        f"{store_s / poll_s:.1f}× its C-STORE ingest rate (Orthanc writes and indexes each instance).",
        "",
    ]

