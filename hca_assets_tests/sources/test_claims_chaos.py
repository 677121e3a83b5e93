"""Chaos and load (issue 9): concurrent claimers killed at random points, ``hca ingest`` killed during each
stage and run again, two ``hca ingest`` and the landing sensor at once — nothing lost, nothing twice,
nothing half-published, no run left STARTED. Real processes, real SIGKILL, tmp folders only."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from hca_assets.config import Settings
from hca_assets.sensors.landing import ABANDONED_TAG
from hca_assets.sources.claims import committed_batches
from hca_assets.synthetic import generate
from hca_assets_tests.chaos import (
    check_ledger,
    check_published,
    claim_stress,
    env,
    ingests_and_sensor_at_once,
    kill_during,
    run_hca,
    runs,
)
from hca_assets_tests.conftest import SMALL

IN_PROGRESS = {dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED}


def test_concurrent_claimers_killed_at_random_points_lose_nothing(tmp_path: Path) -> None:
    """3 claimers × 3 rounds × 600 files; after every round (inside ``claim_stress``): landed = committed +
    still in landing, none twice, no file outside its manifest, no claim left half-done."""
    result = claim_stress(tmp_path, claimers=3, rounds=3, files_per_round=600, seed=1)
    assert result.files == 1800 and result.batches > 3
    # the first claim of every round dies inside (its claimer kills itself within 80 renames of 300 files),
    # and every claim cut short is committed by a recovery (manifest "recovered": true)
    assert result.self_kills >= result.rounds and result.cut_claims >= result.rounds


def test_ingest_killed_in_each_stage_resumes_and_keeps_the_ledger(settings: Settings, small_study: tuple[Path, Path]) -> None:
    shutil.copytree(small_study[0], Path(settings.landing))
    landed = sum(1 for p in Path(settings.landing).rglob("*") if p.is_file())
    for marker in ("inspected: ", "de-identified: ", "rendered: "):  # each run resumes the batch the last one left
        killed, _ = kill_during(settings, marker)
        assert killed, f"the run never reached the log line {marker!r}: the killed batch was not resumed"
        check_published(settings)  # at the moment of the kill: no de-identified file outside its table
        (key,) = committed_batches(Path(settings.raw_batches))
        if marker != "rendered: ":
            assert not (Path(settings.deid) / key).exists()
    rerun = run_hca(settings, "ingest")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"batch {key}: run" in rerun.stdout and "resumed after run" in rerun.stdout
    totals = check_ledger(settings, landed)
    assert totals["published"] > 0 and not (Path(settings.deid_staging) / key).exists()
    all_runs = runs(settings)
    assert not [r for r in all_runs if r.status in IN_PROGRESS]
    abandoned = [r for r in all_runs if ABANDONED_TAG in r.tags]
    assert len(abandoned) == 3 and all(r.status == dg.DagsterRunStatus.FAILURE for r in abandoned)
    batch_runs = [r for r in all_runs if r.tags.get("dagster/partition") == key]
    assert [r.status for r in batch_runs].count(dg.DagsterRunStatus.SUCCESS) == 1
    again = run_hca(settings, "ingest")
    assert again.returncode == 0 and "nothing to ingest" in again.stdout


@pytest.fixture(scope="module")
def second_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("second_study")
    generate(root / "dicom", root / "truth", dataclasses.replace(SMALL, seed=8))
    return root / "dicom"


def test_two_ingests_and_the_sensor_at_once(settings: Settings, small_study: tuple[Path, Path], second_study: Path) -> None:
    """Two ``hca ingest`` and the sensor (run as the daemon runs it) while a second study lands: every batch
    runs exactly once, the ledger holds, and the exit codes say what happened."""
    codes, _ = ingests_and_sensor_at_once(settings, small_study[0], second_study)
    assert codes[0] == 0 and all(c in (0, 3) for c in codes[1:]), codes  # 3: a batch was running elsewhere
    final = run_hca(settings, "ingest")
    assert final.returncode == 0, final.stderr[-2000:]
    landed = sum(1 for p in list(small_study[0].rglob("*")) + list(second_study.rglob("*")) if p.is_file())
    check_ledger(settings, landed)
    keys = committed_batches(Path(settings.raw_batches))
    all_runs = runs(settings)
    assert not [r for r in all_runs if r.status in IN_PROGRESS]
    for key in keys:  # each batch ran once: no two processes ran the same batch
        statuses = [r.status for r in all_runs if r.tags.get("dagster/partition") == key]
        assert statuses == [dg.DagsterRunStatus.SUCCESS], (key, statuses)


def test_processes_opening_a_new_instance_at_once_all_succeed(tmp_path: Path) -> None:
    """The first open creates the instance's SQLite storage; without turns, a second creator crashed with
    ``table secondary_indexes already exists``."""
    code = ("from hca_assets.config import Settings\nfrom hca_assets.in_process import open_instance\n"
            "print(len(open_instance(Settings.from_env()).get_runs()))")
    child = {k: v for k, v in env(HCA_DATA_DIR=str(tmp_path / "data")).items() if k != "DAGSTER_HOME"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=child, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 3, [err[-500:] for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["0"] * 3
