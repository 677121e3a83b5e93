"""Chaos and load (issue 9): concurrent claimers killed at random points, ``hca ingest`` killed during each
stage and run again, two ``hca ingest`` and the landing sensor at once — nothing lost, nothing twice,
nothing half-published, no run left STARTED. Real processes, real SIGKILL, tmp folders only."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from hca_assets.config import Settings
from hca_assets.landing import committed_batches
from hca_assets.sensors import ABANDONED_TAG
from hca_assets.synthetic import generate
from hca_assets_tests.chaos import (
    check_ledger,
    check_published,
    claim_stress,
    env,
    hca_env,
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
    assert result.self_kills > 0 and result.cut_claims >= result.self_kills  # every claim cut short was recovered


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


SENSOR = """
import sys, time
import dagster as dg
from hca_assets.config import Settings
from hca_assets.definitions import build_defs
from hca_assets.partitions import INGEST_BATCHES
from hca_assets.pipeline import open_instance
from hca_assets.resources import HcaStorage
from hca_assets.sensors import landing_sensor

settings = Settings.from_env()
instance = open_instance(settings)
job = build_defs(settings).resolve_job_def("ingest_job")
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:  # what the daemon does with each tick: partitions first, then the runs
    context = dg.build_sensor_context(instance=instance, resources={"storage": HcaStorage.from_settings(settings)})
    result = landing_sensor(context)
    if isinstance(result, dg.SensorResult):
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(INGEST_BATCHES, list(request.partition_keys))
        for run in result.run_requests or []:
            job.execute_in_process(instance=instance, partition_key=run.partition_key, raise_on_error=False,
                                   tags={"dagster/run_key": run.run_key, "dagster/sensor_name": "landing_sensor"})
            print(run.partition_key, flush=True)
    time.sleep(0.2)
"""


@pytest.fixture(scope="module")
def second_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("second_study")
    generate(root / "dicom", root / "truth", dataclasses.replace(SMALL, seed=8))
    return root / "dicom"


def test_two_ingests_and_the_sensor_at_once(settings: Settings, small_study: tuple[Path, Path], second_study: Path) -> None:
    landing = Path(settings.landing)
    shutil.copytree(small_study[0], landing / "first")
    child_env = env(**hca_env(settings), HCA_HANDOFF_SECONDS="600")
    hca = [sys.executable, "-c", "from hca_assets.cli import main; main()", "ingest"]
    procs = [subprocess.Popen([sys.executable, "-c", SENSOR, "25"], env=child_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)]
    procs += [subprocess.Popen(hca, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    shutil.copytree(second_study, Path(settings.data_dir) / "upload")  # then lands whole while they claim and run
    os.rename(Path(settings.data_dir) / "upload", landing / "second")
    outputs = [p.communicate(timeout=240) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes[0] == 0, outputs[0][1][-2000:]
    assert all(c in (0, 3) for c in codes[1:]), [o[1][-2000:] for o in outputs[1:]]  # 3: a batch ran elsewhere
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
