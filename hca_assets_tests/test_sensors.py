"""The landing sensor: claims, registers partitions, requests runs once, recovers interrupted claims."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

from hca_assets.config import Settings
from hca_assets.landing import MANIFEST
from hca_assets.partitions import INGEST_BATCHES
from hca_assets.resources import HcaStorage
from hca_assets.sensors import landing_sensor


def tick(instance: dg.DagsterInstance, settings: Settings) -> dg.SensorResult | dg.SkipReason:
    ctx = dg.build_sensor_context(instance=instance, resources={"storage": HcaStorage.from_settings(settings)})
    result = landing_sensor(ctx)
    if isinstance(result, dg.SensorResult):  # apply what the daemon would apply
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(INGEST_BATCHES, list(request.partition_keys))
    return result


def test_new_files_make_one_batch_and_one_run(settings: Settings, small_study: tuple[Path, Path]) -> None:
    shutil.copytree(small_study[0], Path(settings.landing))
    with dg.instance_for_test() as instance:
        assert isinstance(tick(instance, Settings(data_dir=settings.data_dir, settle_seconds=3600)), dg.SkipReason)
        result = tick(instance, settings)
        assert isinstance(result, dg.SensorResult)
        (run,) = result.run_requests or []
        assert run.partition_key == run.run_key
        assert instance.get_dynamic_partitions(INGEST_BATCHES) == [run.partition_key]
        assert isinstance(tick(instance, settings), dg.SkipReason)  # nothing new: no second run


def test_interrupted_claim_and_unregistered_batch_are_picked_up(settings: Settings, small_study: tuple[Path, Path]) -> None:
    raw = Path(settings.raw_batches)
    staging = raw / ".claiming-b20260101T000000000000-abcdef" / "files"
    shutil.copytree(small_study[0], staging)  # a claim that died before its commit
    committed = raw / "b20250101T000000000000-000000"
    (committed / "files").mkdir(parents=True)
    (committed / MANIFEST).write_text('{"key": "b20250101T000000000000-000000", "files": [], "unreadable": []}')
    with dg.instance_for_test() as instance:
        result = tick(instance, settings)
        assert isinstance(result, dg.SensorResult)
        keys = sorted(r.partition_key for r in result.run_requests or [])
        assert keys == ["b20250101T000000000000-000000", "b20260101T000000000000-abcdef"]
        assert (raw / "b20260101T000000000000-abcdef" / MANIFEST).is_file()
        assert isinstance(tick(instance, settings), dg.SkipReason)
