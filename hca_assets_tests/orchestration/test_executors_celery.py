"""HCA_EXECUTOR=celery: a batch's steps run on a Celery worker (started here, as deploy/celery-worker.yaml
says) through a real Redis broker, and the batch is published as under the default executor."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from hca_assets.config import Settings
from hca_assets.definitions import build_defs
from hca_assets.lake import read_table
from hca_assets.orchestration.dagster_home import dagster_home
from hca_assets.orchestration.executors import CELERY_EXECUTOR_CONFIG
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.sources.claims import claim
from hca_assets_tests.services import redis_server, stop_group

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
STEPS = [dg.AssetKey(k) for k in ("raw_dicom", "deid_staged", "deid_dicom")]


def ingest_job() -> dg.JobDefinition:
    """The deployment's ingest job as a worker loads it: settings (executor included) from the environment."""
    return build_defs().resolve_job_def("ingest_job")


def test_batch_steps_on_celery_worker(settings: Settings, small_study: tuple[Path, Path], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    worker_config = yaml.safe_load((DEPLOY / "celery-worker.yaml").read_text())["execution"]["config"]
    assert worker_config == CELERY_EXECUTOR_CONFIG  # worker and executor read the same variables
    shutil.copytree(small_study[0], settings.landing)
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = dagster_home(settings)  # its dagster.yaml turns telemetry off: nothing written into ~/.dagster
    user_home = tmp_path / "home"  # where the run, the worker and Dagster must write nothing
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    with redis_server() as url:
        env = {"HCA_EXECUTOR": "celery", "HCA_DATA_DIR": settings.data_dir, "HCA_WORKERS": "1",
               "HCA_CELERY_BROKER": f"{url}/0", "HCA_CELERY_BACKEND": f"{url}/1", "DAGSTER_HOME": str(home)}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                 "-y", str(DEPLOY / "celery-worker.yaml"), "-l", "info", "--", "--pool=solo"],
                env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=Path(__file__).resolve().parents[2])
        try:
            deadline = time.monotonic() + 60
            while b"ready." not in log.read_bytes():
                assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.5)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
                job = dg.reconstructable(ingest_job).get_subset(asset_selection=set(STEPS))
                with dg.execute_job(job, instance, tags={"dagster/partition": batch.key}) as result:
                    assert result.success, log.read_text()[-2000:]
                    starts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
        finally:
            stop_group(worker)
    assert {"raw_dicom", "deid_staged", "deid_dicom"} <= {e.step_key for e in starts}  # and their GX checks
    assert {e.pid for e in starts}.isdisjoint({os.getpid(), None})  # the steps ran in the worker's process
    assert log.read_text().count("succeeded in") == len(starts)  # one Celery task per step
    published = read_table(settings.table_uri("deid_instances")).to_pylist()
    assert published and {r["batch"] for r in published} == {batch.key}
    assert not list(user_home.rglob("*")), [str(p.relative_to(user_home)) for p in user_home.rglob("*")]
