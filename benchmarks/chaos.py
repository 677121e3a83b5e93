"""Chaos and load figures (issue 9), the "chaos" part of ``make bench`` (``python -m benchmarks.run chaos``):
``bench_chaos`` measures them and returns the section's lines for benchmarks/RESULTS.md.

Same harness and invariants as ``hca_assets_tests/sources/test_claims_chaos.py``, at a larger scale.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

from hca_assets.config import Settings
from hca_assets.synthetic import GeneratorOptions, generate
from hca_assets_tests.chaos import (
    check_ledger,
    check_published,
    claim_stress,
    ingests_and_sensor_at_once,
    kill_during,
    run_hca,
    runs,
)

SECTION = "## Chaos and load (issue 9)"
STUDY = GeneratorOptions(patients=1, seed=7, ct_slices=12, ct_size=64, cxr_size=128, mr_slices=8, mr_size=64)
STAGES = {"ingest": "inspected: ", "de-identification": "de-identified: ", "rendering": "rendered: "}


def _settings(root: Path) -> Settings:
    return Settings(data_dir=str(root / "data"), settle_seconds=0.0, workers=1)


def bench_chaos(work: Path) -> list[str]:
    """Run the three chaos scenarios under ``work``; every invariant is asserted, the figures returned."""
    os.environ.setdefault("HCA_DEID_KEY", "benchmark-key-0123456789")
    started = time.perf_counter()
    stress = claim_stress(work / "claims", claimers=4, rounds=5, files_per_round=1000, seed=0)
    generate(work / "study" / "dicom", work / "study" / "truth", STUDY)
    generate(work / "study2" / "dicom", work / "study2" / "truth", dataclasses.replace(STUDY, seed=8))
    files = sum(1 for p in (work / "study" / "dicom").rglob("*") if p.is_file())
    kills = []
    for stage, marker in STAGES.items():
        settings = _settings(work / f"kill-{stage}")
        shutil.copytree(work / "study" / "dicom", Path(settings.landing))
        killed, to_kill = kill_during(settings, marker)
        assert killed, stage
        check_published(settings)
        start = time.perf_counter()
        rerun = run_hca(settings, "ingest")
        assert rerun.returncode == 0 and "resumed after run" in rerun.stdout, rerun.stderr[-2000:]
        totals = check_ledger(settings, files)
        assert not [r for r in runs(settings) if r.status.value in ("STARTED", "STARTING", "NOT_STARTED", "QUEUED")]
        kills.append((stage, to_kill, time.perf_counter() - start, totals))
    settings = _settings(work / "concurrent")
    codes, concurrent_s = ingests_and_sensor_at_once(settings, work / "study" / "dicom", work / "study2" / "dicom")
    final = run_hca(settings, "ingest")
    assert final.returncode == 0, final.stderr[-2000:]
    both = check_ledger(settings, 2 * files)
    batch_runs = [r for r in runs(settings) if "dagster/partition" in r.tags]
    by_sensor = sum("dagster/sensor_name" in r.tags for r in batch_runs)
    lines = [
        SECTION,
        "",
        f"Measured by `python -m benchmarks.run chaos` ({time.perf_counter() - started:.0f} s in all, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end: times are wall-clock); the same scenarios,",
        "smaller, run in CI as `hca_assets_tests/sources/test_claims_chaos.py`. Every invariant below is asserted, not just timed.",
        "",
        f"**Concurrent claimers killed at random points**: {stress.claimers} claimer processes × {stress.rounds} rounds "
        f"× {stress.files // stress.rounds} files ({stress.files} in all); {stress.kills} SIGKILLs from outside at random "
        f"times + {stress.self_kills} inside a claim (at a random rename); {stress.cut_claims} claims cut short and "
        f"committed by a recovery; {stress.batches} batches; {stress.seconds:.1f} s. After every round: files landed = "
        "files in committed manifests + files still in landing, none twice, none in a batch folder outside its "
        "manifest, no claim left uncommitted.",
        "",
        f"**`hca ingest` killed (SIGKILL) during a stage, then run again** (one synthetic patient, {files} files):",
        "",
        "| killed during | s until the kill | rerun s | received | ingested | published | rendered | quarantined |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {stage} | {to_kill:.1f} | {rerun_s:.1f} | {t['received']} | {t['ingested']} | {t['published']} | "
          f"{t['rendered']} | {t['quarantined']} |" for stage, to_kill, rerun_s, t in kills],
        "",
        "Each rerun resumed the batch (the dead run marked FAILURE, tag `hca/abandoned`), exit code 0; ledger: "
        "received = ingested + quarantined, ingested = published + quarantined, published = rendered + quarantined, "
        "no SOP Instance UID twice, published and rendered files = their tables, no run left in progress.",
        "",
        f"**Two `hca ingest` and the landing sensor at once**, a second patient landing meanwhile ({2 * files} files): "
        f"exit codes sensor/ingest/ingest = {'/'.join(map(str, codes))} (3 = a batch was running elsewhere), "
        f"{concurrent_s:.1f} s; {len(batch_runs)} batch runs, {by_sensor} by the sensor and "
        f"{len(batch_runs) - by_sensor} by `hca ingest`, each batch run once; then `hca ingest` exit 0; ledger "
        f"holds ({both['published']} published, {both['quarantined']} quarantined).",
        "",
    ]
    return lines
