"""The PHI-free audit log: an old table is migrated, every CLI action and every run outcome is recorded (actor,
time, command or job, partition, counts), and a failed run calls the alert webhook."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import dagster as dg
import pyarrow as pa
import pytest
from click.testing import CliRunner
from deltalake import write_deltalake

from hca_assets.cli import main
from hca_assets.config import Settings
from hca_assets.lake.audit import actor
from hca_assets.lake.delta import read_table
from hca_assets.lake.schemas import AUDIT_LOG
from hca_assets.lake.warehouse import record_restricted_access
from hca_assets.orchestration.resources import AlertWebhook, SettingsResource
from hca_assets.sensors.run_status import run_failure_audit, run_success_audit

# audit_log as `hca sql --restricted` wrote it before this change (a demo lake from before)
OLD_AUDIT_LOG = pa.schema([
    pa.field("accessed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("user_name", pa.string(), nullable=False),
    pa.field("command", pa.string(), nullable=False),
    pa.field("query_sha256", pa.string(), nullable=False),
    pa.field("restricted_tables", pa.list_(pa.string()), nullable=False),
])
SECRET = "Doe^John 1970-01-01"  # stands for PHI in a failing step's exception message


def _rows(settings: Settings) -> list[dict]:
    return read_table(settings.table_uri("audit_log")).to_pylist()


def test_an_old_audit_log_is_migrated_and_keeps_its_rows(settings: Settings) -> None:
    from datetime import UTC, datetime

    old = pa.Table.from_pylist([{"accessed_at": datetime(2026, 1, 2, tzinfo=UTC), "user_name": "alice", "command": "sql",
                                 "query_sha256": "ab" * 32, "restricted_tables": ["raw_instances"]}], schema=OLD_AUDIT_LOG)
    write_deltalake(settings.table_uri("audit_log"), old)
    record_restricted_access(settings, command="sql", query="select * from deid_crosswalk", tables=["deid_crosswalk"])
    rows = sorted(_rows(settings), key=lambda r: r["accessed_at"])
    assert read_table(settings.table_uri("audit_log")).schema.names == AUDIT_LOG.names
    assert (rows[0]["user_name"], rows[0]["event"], rows[0]["restricted"], rows[0]["query_sha256"]) == (
        "alice", "restricted_read", True, "ab" * 32)
    assert rows[1]["event"] == "restricted_read" and rows[1]["user_name"] == actor()
    assert len({r["event_id"] for r in rows}) == 2
    result = CliRunner().invoke(main, ["sql", "select event, count(*) as n from audit_log group by 1 order by 1",
                                       "--format", "json"], env={"HCA_DATA_DIR": settings.data_dir})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[0]) == {"event": "restricted_read", "n": 2}


def test_every_cli_action_is_recorded_without_phi(settings: Settings, small_study: tuple[Path, Path],
                                                  phi_strings: list[str], tmp_path: Path) -> None:
    env = {"HCA_DATA_DIR": settings.data_dir, "HCA_WORKERS": "1"}
    runner = CliRunner()
    some = tmp_path / "in"
    shutil.copytree(small_study[0] / min(p.name for p in small_study[0].iterdir()), some)
    query = "select 1 as secret_query_text"  # restricted views need no table here: the read is what is audited
    steps = [(["sql", "select 42 as secret_query_text"], 0), (["sql", query, "--restricted"], 0),
             (["search", "--text", "liver"], 2), (["deid", str(some), str(tmp_path / "out")], 0)]
    for args, code in steps:
        result = runner.invoke(main, args, env=env)
        assert result.exit_code == code, (args, result.output)
    rows = sorted(_rows(settings), key=lambda r: r["accessed_at"])
    cli = [(r["command"], r["outcome"], r["restricted"]) for r in rows if r["event"] == "cli"]
    assert cli == [("sql", "ok", False), ("sql", "ok", True), ("search", "error", False), ("deid", "ok", False)]
    reads = [r for r in rows if r["event"] == "restricted_read"]
    assert len(reads) == 1 and reads[0]["restricted"] and len(reads[0]["query_sha256"]) == 64
    assert all(r["user_name"] == actor() and r["accessed_at"] for r in rows)
    deid = next(r for r in rows if r["command"] == "deid")
    counts = {c["name"]: c["value"] for c in deid["counts"]}
    assert counts["written"] == counts["inputs"] > 0 and counts["rejected"] == 0
    dump = json.dumps(rows, default=str)
    assert "secret_query_text" not in dump and str(tmp_path) not in dump and "restricted/" not in dump
    assert not [s for s in phi_strings if s in dump]


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        _Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


batches = dg.DynamicPartitionsDefinition(name="audit_batches")


@dg.asset(partitions_def=batches)
def counted() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"dagster/row_count": 7})


@dg.asset(partitions_def=batches, deps=[counted])
def breaks() -> None:
    raise ValueError(f"cannot read {SECRET}")


def test_run_outcomes_are_recorded_and_a_failure_calls_the_webhook(settings: Settings) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/alert"
    resources = {"storage": SettingsResource.from_settings(settings), "alert_webhook": AlertWebhook(url=url)}
    try:
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("audit_batches", ["b1"])
            ok = dg.materialize([counted], instance=instance, partition_key="b1")
            bad = dg.materialize([counted, breaks], instance=instance, partition_key="b1", raise_on_error=False)
            assert ok.success and not bad.success
            success_event = next(e for e in ok.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS)
            failure_event = next(e for e in bad.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
            run_success_audit(dg.build_run_status_sensor_context(
                sensor_name="run_success_audit", dagster_event=success_event, dagster_instance=instance,
                dagster_run=ok.dagster_run, resources=resources))
            run_failure_audit(dg.build_run_status_sensor_context(
                sensor_name="run_failure_audit", dagster_event=failure_event, dagster_instance=instance,
                dagster_run=bad.dagster_run, resources=resources).for_run_failure())
    finally:
        server.shutdown()
    rows = {r["outcome"]: r for r in _rows(settings) if r["event"] == "run"}
    assert set(rows) == {"success", "failure"}
    assert rows["success"]["run_id"] == ok.run_id and rows["success"]["partition"] == "b1"
    assert rows["success"]["assets"] == ["counted"] and rows["success"]["user_name"] == actor()
    assert {c["name"]: c["value"] for c in rows["success"]["counts"]}["counted_rows"] == 7
    failed = {c["name"]: c["value"] for c in rows["failure"]["counts"]}
    assert rows["failure"]["run_id"] == bad.run_id and failed["failed_steps"] == 1 and failed["counted_rows"] == 7
    assert len(_Hook.received) == 1
    alert = _Hook.received[0]
    assert alert["run_id"] == bad.run_id and alert["partition"] == "b1" and alert["failed_steps"] == ["breaks"]
    assert alert["errors"] == ["ValueError"]
    assert SECRET not in json.dumps(alert) and SECRET not in json.dumps(_rows(settings), default=str)


def test_a_failure_without_webhook_only_logs(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    from hca_assets.sensors.alerts import notify

    logged: list[str] = []
    assert notify({"event": "run_failed", "run_id": "r1"}, "", logged.append) is False
    assert logged and "r1" in logged[0]
    assert notify({"run_id": "r2"}, "http://127.0.0.1:9/none", logged.append, timeout=2) is False  # refused: logged
    assert "alert webhook failed" in logged[-1]
