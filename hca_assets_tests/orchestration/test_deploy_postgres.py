"""deploy/dagster.yaml against a real Postgres: a batch's run, its events, partitions and the pools' slots
live in the database, and a second instance (another process in production) reads them back."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from dagster._core.run_coordinator import QueuedRunCoordinator

from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.ingest import raw_dicom
from hca_assets.config import Settings
from hca_assets.models.endpoint import MI2_POOL, MIP_POOL
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import PseudonymKey, SettingsResource
from hca_assets.sources.claims import claim
from hca_assets_tests.services import postgres_cluster

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_batch_on_postgres_instance(settings: Settings, small_study: tuple[Path, Path], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(small_study[0], settings.landing)
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    resources = {"storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey()}
    with postgres_cluster() as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
            result = dg.materialize([raw_dicom, deid_staged, deid_dicom], instance=instance,
                                    partition_key=batch.key, resources=resources)
            assert result.success
            assert isinstance(instance.run_coordinator, QueuedRunCoordinator)  # the daemon launches queued runs
            limits = instance.get_concurrency_config()
            assert limits.pool_config.default_pool_limit == 2
            assert {lim["key"] for lim in limits.run_queue_config.tag_concurrency_limits} == {
                "dagster/partition", "hca/priority"}
        with dg.DagsterInstance.from_config(str(home)) as reader:  # another process: sees what the first wrote
            run = reader.get_run_by_id(result.run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
            assert run.tags["dagster/partition"] == batch.key
            for key in ("raw_dicom", "deid_staged", "deid_dicom"):
                assert reader.get_latest_materialization_event(dg.AssetKey(key)) is not None
            assert batch.key in reader.get_dynamic_partitions(INGEST_BATCHES)
            for pool in (MIP_POOL, MI2_POOL):  # the endpoints' pools take dagster.yaml's default limit
                info = reader.event_log_storage.get_concurrency_info(pool)
                assert info.limit == 2 and info.using_default_limit
        with psycopg2.connect(host=env["DAGSTER_PG_HOST"], port=int(env["DAGSTER_PG_PORT"]),
                              dbname=env["DAGSTER_PG_DB"], user=env["DAGSTER_PG_USER"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
                        (result.run_id, "ASSET_MATERIALIZATION"))
            assert cur.fetchone()[0] == 3  # type: ignore[index]
