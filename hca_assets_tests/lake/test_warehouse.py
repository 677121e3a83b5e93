"""`hca sql`'s DuckDB: the views answer; files, network, extensions and settings are out of reach; restricted
views only when asked, and every such access is in the PHI-free audit log."""

from __future__ import annotations

import getpass
import hashlib
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from hca_assets.config import Settings
from hca_assets.lake import QueryRefused, connect, read_table, run_query, write_partition
from hca_assets.lake.delta import open_dataset
from hca_assets.lake.schemas import DEID_CROSSWALK, QUARANTINE
from hca_assets.lake.warehouse import record_restricted_access

SECRET_NAME = "DOE^JANE^SECRET"
KEY_TEXT = "key-file-contents-0123456789"
SANDBOX_REFUSAL = r"disabled by configuration|disabled through configuration|configuration has been locked"


@pytest.fixture
def mixed_zones(tmp_path: Path) -> Settings:
    """Two PHI-free quarantine rows in lake/, one crosswalk row (PHI) in restricted/tables, a key file."""
    settings = Settings(data_dir=str(tmp_path / "data"))
    now = datetime.now(UTC)
    rows = [{"batch": "b1", "stage": "raw_dicom", "item": i, "sha256": f"{i}" * 64, "reason": "not_dicom", "message": "m",
             "kept_as": f"b1/{i}", "quarantined_at": now} for i in range(2)]
    write_partition(settings.table_uri("quarantine"), pa.Table.from_pylist(rows, schema=QUARANTINE),
                    match={"batch": "b1", "stage": "raw_dicom"}, schema=QUARANTINE)
    crosswalk = [{"batch": "b1", "kind": "patient", "original": SECRET_NAME, "pseudonym": "PSN1", "date_offset_days": -5}]
    write_partition(settings.table_uri("deid_crosswalk", restricted=True),
                    pa.Table.from_pylist(crosswalk, schema=DEID_CROSSWALK), match={"batch": "b1"}, schema=DEID_CROSSWALK)
    Path(settings.key_file).write_text(KEY_TEXT)
    return settings


def escapes(settings: Settings, tmp_path: Path) -> list[str]:
    key, crosswalk = settings.key_file, settings.table_uri("deid_crosswalk", restricted=True)
    return [
        f"SELECT * FROM read_text('{key}')",
        f"SELECT * FROM read_blob('{key}')",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM read_parquet('{crosswalk}/**/*.parquet')",
        f"SELECT * FROM glob('{settings.restricted}/*')",
        f"SELECT * FROM read_json_auto('{settings.restricted}/pin.json')",
        "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
        f"COPY (SELECT 1 AS x) TO '{settings.lake}/copied.csv'",
        f"COPY (SELECT 1 AS x) TO '{settings.lake}/quarantine/_delta_log/00000000000000000009.json'",
        f"ATTACH '{tmp_path}/attached.duckdb' AS other",
        f"EXPORT DATABASE '{tmp_path}/exported'",
        "INSTALL delta",
        "LOAD delta",
        "SET threads = 1",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "SET lock_configuration = false",
        "PRAGMA threads = 1",
        f"SET temp_directory = '{tmp_path}/spill'",
    ]


def test_the_unsandboxed_control_reads_what_the_sandbox_refuses(mixed_zones: Settings) -> None:
    """Without the sandbox the same SQL reads the key and the crosswalk: the refusals below are the sandbox's."""
    plain = duckdb.connect()
    assert plain.execute(f"SELECT content FROM read_text('{mixed_zones.key_file}')").fetchall() == [(KEY_TEXT,)]
    crosswalk = mixed_zones.table_uri("deid_crosswalk", restricted=True)
    assert plain.execute(f"SELECT original FROM read_parquet('{crosswalk}/**/*.parquet')").fetchall() == [(SECRET_NAME,)]


def test_views_answer_and_every_escape_is_refused(mixed_zones: Settings, tmp_path: Path) -> None:
    con = connect(mixed_zones)
    assert con.execute("SELECT count(*) FROM quarantine").fetchall() == [(2,)]
    for statement in escapes(mixed_zones, tmp_path):
        with pytest.raises(duckdb.Error, match=SANDBOX_REFUSAL):
            con.execute(statement)
    assert con.execute("SELECT current_setting('enable_external_access')").fetchall() == [(False,)]
    assert con.execute("SELECT count(*) FROM quarantine").fetchall() == [(2,)]  # the views still answer
    assert not (Path(mixed_zones.lake) / "copied.csv").exists() and not (tmp_path / "attached.duckdb").exists()
    assert not (tmp_path / "exported").exists()
    assert not (Path(mixed_zones.lake) / "quarantine" / "_delta_log" / "00000000000000000009.json").exists()
    assert read_table(mixed_zones.table_uri("quarantine")).num_rows == 2  # the table is intact


def test_python_variables_are_not_tables(mixed_zones: Settings) -> None:
    """DuckDB's Python client would resolve an unknown name to a variable of the calling frame; with external
    access off it does not."""
    secret_frame = pa.table({"original": [SECRET_NAME]})
    assert duckdb.connect().execute("SELECT original FROM secret_frame").fetchall() == [(SECRET_NAME,)]  # the control
    with pytest.raises(duckdb.CatalogException):
        connect(mixed_zones).execute("SELECT original FROM secret_frame").fetchall()
    with pytest.raises(QueryRefused, match="secret_frame does not exist"):
        run_query(mixed_zones, "SELECT original FROM secret_frame")
    del secret_frame


def test_restricted_views_only_with_the_flag_and_each_access_audited(mixed_zones: Settings) -> None:
    query = f"SELECT kind, count(*) AS n FROM deid_crosswalk WHERE original <> '{SECRET_NAME}' GROUP BY 1"
    with pytest.raises(QueryRefused, match=r"deid_crosswalk is restricted: pass --restricted"):
        run_query(mixed_zones, query)
    assert run_query(mixed_zones, "SELECT count(*) AS n FROM quarantine").to_pylist() == [{"n": 2}]
    audit_uri = mixed_zones.table_uri("audit_log")
    assert not Path(audit_uri).exists()  # no restricted access yet, nothing logged

    assert run_query(mixed_zones, query, restricted=True).num_rows == 0
    assert run_query(mixed_zones, "SELECT count(*) AS n FROM deid_crosswalk", restricted=True, command="demo").to_pylist() == [{"n": 1}]
    rows = sorted(read_table(audit_uri).to_pylist(), key=lambda r: r["accessed_at"])
    assert [(r["command"], r["restricted_tables"]) for r in rows] == [("sql", ["deid_crosswalk"]), ("demo", ["deid_crosswalk"])]
    assert rows[0]["query_sha256"] == hashlib.sha256(query.encode()).hexdigest()
    assert {r["user_name"] for r in rows} == {getpass.getuser()}
    assert all(abs((datetime.now(UTC) - r["accessed_at"]).total_seconds()) < 120 for r in rows)
    assert SECRET_NAME not in json.dumps(rows, default=str) and "deid_crosswalk WHERE" not in json.dumps(rows, default=str)
    assert audit_uri.startswith(mixed_zones.lake)  # PHI-free, so analysts see who looked
    assert run_query(mixed_zones, "SELECT count(*) AS n FROM audit_log").to_pylist() == [{"n": 2}]


def test_one_statement_per_call_and_one_line_errors(mixed_zones: Settings) -> None:
    for query in ("SELECT 1; SELECT 2", "", " ; "):
        with pytest.raises(QueryRefused, match="exactly one SQL statement"):
            run_query(mixed_zones, query, restricted=True)
    assert not Path(mixed_zones.table_uri("audit_log")).exists()  # refused before anything ran: nothing to log
    with pytest.raises(QueryRefused) as err:
        run_query(mixed_zones, "SELEC nonsense FROM\n quarantine")
    assert "\n" not in str(err.value) and str(err.value).startswith("Parser Error")
    assert run_query(mixed_zones, "SELECT 1 AS x;").to_pylist() == [{"x": 1}]  # a trailing semicolon is one statement
    for statement in ("SET VARIABLE x = 1", "CALL pragma_version()", "PRAGMA show_tables"):
        with pytest.raises(QueryRefused, match="only a query runs here"):
            run_query(mixed_zones, statement)


def test_concurrent_audit_appends_all_land(mixed_zones: Settings) -> None:
    errors: list[BaseException] = []

    def append(i: int) -> None:
        try:
            record_restricted_access(mixed_zones, command="sql", query=f"q{i}", tables=["deid_crosswalk"])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    hashes = sorted(r["query_sha256"] for r in read_table(mixed_zones.table_uri("audit_log")).to_pylist())
    assert hashes == sorted(hashlib.sha256(f"q{i}".encode()).hexdigest() for i in range(4))


def test_local_tables_are_read_through_arrows_native_file_system(mixed_zones: Settings) -> None:
    """deltalake's default Python file system, released on an Arrow thread at interpreter exit, aborted
    `hca search` ("terminate called without an active exception"); local tables must not use it."""
    dataset = open_dataset(mixed_zones.table_uri("quarantine"))
    assert not isinstance(dataset.filesystem, pafs.PyFileSystem)
    assert dataset.to_table().num_rows == 2 and set(dataset.to_table().column("batch").to_pylist()) == {"b1"}


def test_a_broken_table_is_one_line_naming_it(mixed_zones: Settings) -> None:
    log = Path(mixed_zones.table_uri("quarantine"), "_delta_log")
    (log / f"{len(list(log.glob('*.json'))):020d}.json").write_text("not json\n")
    with pytest.raises(QueryRefused, match=r"^Delta table quarantine cannot be read \(.*\): repair or move it$") as err:
        run_query(mixed_zones, "SELECT 1")
    assert "\n" not in str(err.value)
