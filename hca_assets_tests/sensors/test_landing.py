"""The landing sensor: claims, registers partitions, requests runs once, recovers interrupted claims, and\nre-requests batches whose run died (never those whose run failed on its own)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEvent, JobFailureData, RunFailureReason
from dagster._core.storage.tags import PARTITION_NAME_TAG

from hca_assets._infra.locks import FileLock
from hca_assets.config import Settings
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.sensors.landing import ABANDONED_TAG, LOCK_TAG, BatchState, batch_statuses, landing_sensor
from hca_assets.sources.claims import MANIFEST, mark_requested


def tick(instance: dg.DagsterInstance, settings: Settings) -> dg.SensorResult | dg.SkipReason:
    ctx = dg.build_sensor_context(instance=instance, resources={"storage": SettingsResource.from_settings(settings)})
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


def committed_batch(settings: Settings, key: str) -> None:
    (Path(settings.raw_batches) / key / "files").mkdir(parents=True)
    (Path(settings.raw_batches) / key / MANIFEST).write_text(json.dumps({"key": key, "files": [], "unreadable": []}))


def started_run(instance: dg.DagsterInstance, key: str, *, tags: dict[str, str] | None = None,
                pid: int | None = None) -> str:
    """A run of batch ``key`` left STARTED, as a killed process leaves it (RUN_START written by ``pid``)."""
    run = instance.add_run(dg.DagsterRun(job_name="ingest_job", tags={PARTITION_NAME_TAG: key, **(tags or {})}))
    instance.report_dagster_event(DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name="ingest_job", pid=pid),
                                  run_id=run.run_id)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]
    return run.run_id


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


KEY = "b20250101T000000000000-000000"


def test_a_run_whose_process_died_is_marked_failed_and_its_batch_requested_again(settings: Settings) -> None:
    committed_batch(settings, KEY)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [KEY])
        lock = FileLock(Path(settings.raw_batches) / KEY / ".run.lock")
        cli_run = started_run(instance, KEY, tags={LOCK_TAG: str(lock.path)}, pid=os.getpid())
        with lock:  # its `hca ingest` process is alive: nothing to do
            assert isinstance(tick(instance, settings), dg.SkipReason)
            assert instance.get_run_by_id(cli_run).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]
        result = tick(instance, settings)  # the lock is free: its process died
        assert isinstance(result, dg.SensorResult)
        dead = instance.get_run_by_id(cli_run)
        assert dead is not None and dead.status == dg.DagsterRunStatus.FAILURE and ABANDONED_TAG in dead.tags
        (request,) = result.run_requests or []
        assert request.partition_key == KEY and request.run_key == f"{KEY}:after-{cli_run}"
        assert isinstance(tick(instance, settings), dg.SkipReason)  # requested once; the daemon runs it


def test_daemon_runs_are_alive_while_their_worker_is(settings: Settings) -> None:
    committed_batch(settings, KEY)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [KEY])
        alive = started_run(instance, KEY, pid=os.getpid())
        assert isinstance(tick(instance, settings), dg.SkipReason)
        instance.report_run_failed(instance.get_run_by_id(alive))  # type: ignore[arg-type]
        assert isinstance(tick(instance, settings), dg.SkipReason)  # failed on its own: left for a person
        dead = started_run(instance, KEY, pid=dead_pid())
        result = tick(instance, settings)
        assert isinstance(result, dg.SensorResult) and [r.partition_key for r in result.run_requests or []] == [KEY]
        assert ABANDONED_TAG in instance.get_run_by_id(dead).tags  # type: ignore[union-attr]
        assert ABANDONED_TAG not in instance.get_run_by_id(alive).tags  # type: ignore[union-attr]


def test_batch_states(settings: Settings) -> None:
    keys = [f"b2025010{i}T000000000000-000000" for i in range(1, 7)]
    for key in keys:
        committed_batch(settings, key)
    raw = Path(settings.raw_batches)
    interrupted = JobFailureData(None, RunFailureReason.UNEXPECTED_TERMINATION)  # what Dagster records for Ctrl-C
    with dg.instance_for_test() as instance:
        ok = started_run(instance, keys[0], pid=os.getpid())
        instance.report_dagster_event(DagsterEvent(dg.DagsterEventType.RUN_SUCCESS.value, job_name="ingest_job"), run_id=ok)
        failed = started_run(instance, keys[1], pid=os.getpid())
        instance.report_run_failed(instance.get_run_by_id(failed))  # type: ignore[arg-type]
        started_run(instance, keys[2], pid=os.getpid())
        mark_requested(raw, keys[3])
        stopped = started_run(instance, keys[4], pid=os.getpid())
        instance.report_run_failed(instance.get_run_by_id(stopped), job_failure_data=interrupted)  # type: ignore[arg-type]
        for _ in range(3):  # a batch whose runs keep dying (out of memory?) is not resumed for ever
            instance.report_run_failed(instance.get_run_by_id(started_run(instance, keys[5], pid=os.getpid())),  # type: ignore[arg-type]
                                       job_failure_data=interrupted)

        def states(**kwargs: float) -> dict[str, BatchState]:
            return {s.key: s.state for s in batch_statuses(instance, raw, handoff_seconds=60, max_resumes=2, **kwargs)}

        assert states() == {keys[0]: BatchState.DONE, keys[1]: BatchState.FAILED, keys[2]: BatchState.RUNNING,
                            keys[3]: BatchState.REQUESTED, keys[4]: BatchState.NEEDS_RUN, keys[5]: BatchState.FAILED}
        assert states(now=time.time() + 120)[keys[3]] == BatchState.NEEDS_RUN  # the daemon never ran it: `hca ingest` may
