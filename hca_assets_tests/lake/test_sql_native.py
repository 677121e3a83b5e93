"""`hca sql`'s native path: views read exactly the active Parquet files of the tables a query names, the answer
equals the Arrow-dataset path's, nothing but a query runs, and the process imports neither pyarrow nor pandas."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from hca_assets.config import Settings
from hca_assets.lake import registry
from hca_assets.lake.warehouse import QueryRefused, connect, query_rows, run_query

GROUP_BY = "SELECT batch, reason, count(*) AS n, max(item) AS last FROM quarantine GROUP BY ALL ORDER BY ALL"


def _quarantine(settings: Settings, batch: str, n: int, reason: str) -> None:
    rows = [{"batch": batch, "stage": "raw_dicom", "item": i, "sha256": None, "reason": reason, "message": "m",
             "kept_as": f"{batch}/{i}", "quarantined_at": datetime(2026, 1, 1, tzinfo=UTC)} for i in range(n)]
    registry.QUARANTINE.write(settings, pa.Table.from_pylist(rows, schema=registry.QUARANTINE.schema),
                              match={"batch": batch, "stage": "raw_dicom"})


@pytest.fixture
def quarantine_lake(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=str(tmp_path / "data"))
    _quarantine(settings, "b1", 3, "not_dicom")
    _quarantine(settings, "b1", 2, "truncated")  # replaces b1: its first file stays on disk, no longer active
    _quarantine(settings, "b2", 4, "empty_file")
    _quarantine(settings, "odd batch/ü", 1, "not_dicom")  # escaped in its folder name: read through Arrow instead
    return settings


def test_native_answer_equals_the_arrow_path_and_ignores_replaced_files(quarantine_lake: Settings) -> None:
    columns, rows = query_rows(quarantine_lake, GROUP_BY)
    assert rows == [("b1", "truncated", 2, 1), ("b2", "empty_file", 4, 3), ("odd batch/ü", "not_dicom", 1, 0)]
    assert run_query(quarantine_lake, GROUP_BY).to_pylist() == [dict(zip(columns, r, strict=True)) for r in rows]
    assert connect(quarantine_lake).execute(GROUP_BY).fetchall() == rows
    on_disk = list(Path(registry.QUARANTINE.uri(quarantine_lake)).rglob("*.parquet"))
    assert len(on_disk) > 3  # the replaced file is still there, and no query saw it


def test_only_a_query_runs_and_only_active_files_are_readable(quarantine_lake: Settings) -> None:
    uri = Path(registry.QUARANTINE.uri(quarantine_lake))
    active = next((uri / "batch=b2").glob("*.parquet"))
    before = active.read_bytes()
    for statement in (f"COPY (SELECT 1 AS x) TO '{active}' (FORMAT parquet, USE_TMP_FILE false)",
                      f"ATTACH '{uri}/x.duckdb' AS x", "INSTALL delta"):
        with pytest.raises(QueryRefused, match="only a query runs here"):
            query_rows(quarantine_lake, statement)
    assert active.read_bytes() == before
    stale = next(p for p in (uri / "batch=b1").glob("*.parquet") if p.stat().st_size and p.name not in
                 {Path(f).name for f in _active(quarantine_lake)})
    for escape in (f"SELECT * FROM read_parquet('{stale}')", f"SELECT * FROM read_parquet('{uri}/**/*.parquet')",
                   f"SELECT * FROM read_text('{uri}/_delta_log/00000000000000000000.json')"):
        with pytest.raises(QueryRefused, match=r"disabled by configuration|Permission"):
            query_rows(quarantine_lake, f"{escape} -- quarantine")


def _active(settings: Settings) -> list[str]:
    from deltalake import DeltaTable

    return DeltaTable(registry.QUARANTINE.uri(settings)).file_uris()


def test_a_registered_table_not_written_yet_is_an_empty_typed_view(quarantine_lake: Settings) -> None:
    columns, rows = query_rows(quarantine_lake, "SELECT * FROM series")
    assert columns == registry.SERIES.schema.names and rows == []


def test_a_query_opens_only_the_tables_it_names(quarantine_lake: Settings) -> None:
    broken = Path(quarantine_lake.lake) / "broken"
    (broken / "_delta_log").mkdir(parents=True)
    (broken / "_delta_log" / "00000000000000000000.json").write_text("not a delta log")
    assert query_rows(quarantine_lake, "SELECT count(*) FROM quarantine")[1] == [(7,)]
    with pytest.raises(QueryRefused, match="Delta table broken cannot be read"):
        query_rows(quarantine_lake, "SHOW TABLES")  # names no table: every view is made, and the broken one cannot be


def test_hca_sql_imports_neither_pyarrow_nor_pandas(tmp_path: Path) -> None:
    quarantine_lake = Settings(data_dir=str(tmp_path / "data"))
    _quarantine(quarantine_lake, "b1", 2, "truncated")
    _quarantine(quarantine_lake, "b2", 4, "empty_file")
    probe = ("import sys; from hca_assets.cli import run_sql; from hca_assets.config import Settings; "
             f"out = run_sql(Settings(data_dir={quarantine_lake.data_dir!r}), {GROUP_BY!r}, restricted=False, fmt='csv'); "
             "print(out); print(sorted(m for m in ('pyarrow', 'pandas', 'polars', 'pydicom') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True,
                          env={**os.environ, "HCA_DATA_DIR": quarantine_lake.data_dir})
    assert done.stdout.splitlines()[:2] == ["batch,reason,n,last", "b1,truncated,2,1"]
    assert done.stdout.splitlines()[-1] == "[]"
