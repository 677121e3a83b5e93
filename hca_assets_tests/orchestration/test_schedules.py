"""Schedules (nightly evaluation, weekly full backfill over dynamic batches, Delta maintenance) and `hca backfill`
creating a real Dagster backfill."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable, write_deltalake

from hca_assets.cli import main
from hca_assets.config import Settings
from hca_assets.definitions import defs
from hca_assets.lake.delta import read_table
from hca_assets.lake.maintenance import MIN_RETENTION_HOURS, maintain_table
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.orchestration.schedules import (
    BACKFILL_TAG,
    maintenance_job,
    nightly_evaluation,
    weekly_full_backfill,
)

SATURDAY = datetime(2026, 11, 28, 4, tzinfo=UTC)


def test_nightly_evaluation_requests_the_evaluations() -> None:
    with dg.instance_for_test() as instance:
        data = nightly_evaluation.evaluate_tick(dg.build_schedule_context(instance=instance,
                                                                          scheduled_execution_time=SATURDAY))
    assert len(data.run_requests) == 1 and nightly_evaluation.job_name == "evaluation_job"
    assert nightly_evaluation.cron_schedule == "0 2 * * *"
    selection = nightly_evaluation.job.selection.resolve(  # type: ignore[union-attr]
        dg.Definitions(assets=[dg.AssetSpec("retrieval_eval"), dg.AssetSpec("segmentation_eval"), dg.AssetSpec("x")])
        .resolve_asset_graph())
    assert {k.to_user_string() for k in selection} == {"retrieval_eval", "segmentation_eval"}


def test_weekly_full_backfill_requests_every_dynamic_batch_once_per_week() -> None:
    with dg.instance_for_test() as instance:
        empty = weekly_full_backfill(dg.build_schedule_context(instance=instance, scheduled_execution_time=SATURDAY))
        assert isinstance(empty, dg.SkipReason)
        instance.add_dynamic_partitions(INGEST_BATCHES, ["b2", "b1", "b3"])
        repository = defs.get_repository_def()  # resolves the batches' partitions against the code location's jobs
        week = weekly_full_backfill.evaluate_tick(dg.build_schedule_context(
            instance=instance, scheduled_execution_time=SATURDAY, repository_def=repository))
        later = weekly_full_backfill.evaluate_tick(dg.build_schedule_context(
            instance=instance, scheduled_execution_time=SATURDAY + timedelta(days=7), repository_def=repository))
    assert [r.partition_key for r in week.run_requests] == ["b1", "b2", "b3"]
    assert {r.tags[BACKFILL_TAG] for r in week.run_requests} == {"weekly-2026-W48"}
    assert len({r.run_key for r in week.run_requests} | {r.run_key for r in later.run_requests}) == 6


def _backdate_tombstones(uri: str, version: int, days: float) -> None:
    """Pretend the files removed by commit ``version`` were removed ``days`` ago (what a week of waiting does)."""
    log = Path(uri) / "_delta_log" / f"{version:020d}.json"
    then = int((datetime.now(UTC) - timedelta(days=days)).timestamp() * 1000)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    for action in lines:
        if "remove" in action:
            action["remove"]["deletionTimestamp"] = then
    log.write_text("".join(json.dumps(a) + "\n" for a in lines))


def test_maintenance_compacts_and_vacuums_only_beyond_the_retention(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    for i in range(6):  # six appends: six small files
        write_deltalake(uri, pa.table({"batch": ["b"], "n": [i]}), mode="append")
    before = sorted(DeltaTable(uri).to_pyarrow_table().column("n").to_pylist())
    old_version = DeltaTable(uri).version()
    first = maintain_table("t", uri, MIN_RETENTION_HOURS)
    assert first.files_compacted == 6 and first.files_added == 1 and first.files_vacuumed == 0
    assert sorted(DeltaTable(uri, version=old_version).to_pyarrow_table().column("n").to_pylist()) == before  # still there
    _backdate_tombstones(uri, first.version, days=8)
    second = maintain_table("t", uri, MIN_RETENTION_HOURS)
    assert second.files_vacuumed == 6
    assert sorted(DeltaTable(uri).to_pyarrow_table().column("n").to_pylist()) == before  # the latest version reads
    assert len(list(Path(uri).glob("*.parquet"))) == 1
    with pytest.raises(ValueError, match="168"):
        maintain_table("t", uri, 24)
    with pytest.raises(ValueError, match="vacuum_retention_hours"):
        Settings(data_dir=str(tmp_path), vacuum_retention_hours=24)


def test_maintenance_job_runs_over_the_lake(settings: Settings) -> None:
    uri = settings.table_uri("labels")
    rows = [{"batch": "b", "sop_instance_uid": f"1.{i}", "series_instance_uid": "1", "patient_pseudonym": "P",
             "class_label": "ct", "body_region": "abdomen", "lesion_present": False, "lesion_type": None,
             "study_has_lesion": False, "source": "synthetic_truth"} for i in range(3)]
    for i in range(len(rows)):  # three appends: three small files
        write_deltalake(uri, pa.Table.from_pylist(rows[i:i + 1]), mode="append")
    result = maintenance_job.execute_in_process(resources={"storage": SettingsResource.from_settings(settings)})
    assert result.success
    output = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT)
    metadata = output.step_output_data.metadata
    assert metadata["tables"].value == 1 and "| labels | 3 | 3 | 1 | 0 |" in metadata["maintenance"].value
    assert read_table(uri).num_rows == 3


def test_hca_backfill_creates_a_real_backfill(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    env = {"HCA_DATA_DIR": settings.data_dir, "DAGSTER_HOME": str(home)}
    from hca_assets.in_process import open_instance

    instance = open_instance(settings)
    instance.add_dynamic_partitions(INGEST_BATCHES, ["b1", "b2"])
    runner = CliRunner()
    ok = runner.invoke(main, ["backfill", "embeddings", "--all-batches"], env=env)
    assert ok.exit_code == 0, ok.output
    one = runner.invoke(main, ["backfill", "images", "--batch", "b2"], env=env)
    assert one.exit_code == 0, one.output
    for args, message in ((["backfill", "nope", "--all-batches"], "unknown asset 'nope'"),
                          (["backfill", "embeddings", "--batch", "b9"], "unknown batch 'b9'"),
                          (["backfill", "embeddings"], "--all-batches or --batch"),
                          (["backfill", "faiss_index", "--batch", "b1"], "not partitioned")):
        refused = runner.invoke(main, args, env=env)
        assert refused.exit_code == 2 and message in refused.output and len(refused.output.strip().splitlines()) == 1
    backfills = {b.title: b for b in instance.get_backfills()}
    assert set(backfills) == {"hca backfill embeddings", "hca backfill images"}
    listed = {title: sorted(b.asset_backfill_data.target_subset.get_partitions_subset(
        dg.AssetKey(title.split()[-1])).get_partition_keys()) for title, b in backfills.items()}
    assert listed == {"hca backfill embeddings": ["b1", "b2"], "hca backfill images": ["b2"]}
    assert all(b.status.value == "REQUESTED" for b in backfills.values())  # the daemon picks them up
    audit = [r for r in read_table(settings.table_uri("audit_log")).to_pylist() if r["command"] == "backfill"]
    assert sorted(r["outcome"] for r in audit) == ["error"] * 4 + ["ok"] * 2
    assert sorted(r["assets"][0] for r in audit if r["outcome"] == "ok") == ["embeddings", "images"]
