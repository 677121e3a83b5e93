"""The table registry is the one place of a table's facts: every schema has its table, keys and partition columns
exist, call sites name tables only through it, and reads, writes and schema growth work on real Delta tables."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

import hca_assets
from hca_assets.config import Settings
from hca_assets.lake import registry, schemas
from hca_assets.lake.warehouse import query_rows


def test_every_schema_has_one_table_and_its_columns() -> None:
    defined = {name for name in schemas.__all__ if isinstance(getattr(schemas, name), pa.Schema)}
    assert {t.name.upper() for t in registry.TABLES.values()} == defined
    for t in registry.TABLES.values():
        assert set(t.keys) | set(t.partition_by) <= set(t.schema.names), t.name
        assert registry.spec(t.name) is t and getattr(registry, t.name.upper()) is t
    assert registry.restricted_names() == {"raw_instances", "deid_crosswalk"}
    assert {t.name for t in registry.lake_tables()} >= {"series", "studies", "index_builds", "runs"}
    with pytest.raises(KeyError, match="no table 'nope'"):
        registry.spec("nope")


def test_no_call_site_spells_a_table_name() -> None:
    """Outside the lake package, tables are named by registry constants: no table_uri("…"), read_table or
    write_partition with a schema of their own."""
    root = Path(hca_assets.__file__).parent
    spelled = re.compile(r"table_uri\(\s*[\"']|(?<![.\w])read_table\(|(?<![.\w])write_partition\(")
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.parent.name != "lake" and spelled.search(p.read_text())]
    assert offenders == []
    assert spelled.search('x = settings.table_uri("images")') and not spelled.search("pq.read_table(path)")


def test_read_write_columns_and_a_grown_schema(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"))
    q = registry.QUARANTINE
    assert q.read(settings).schema == q.schema and not q.exists(settings)  # not written yet: empty, typed
    now = datetime.now(UTC)
    old = pa.table({"batch": ["b0"], "stage": ["raw_dicom"], "sha256": ["0" * 64], "reason": ["not_dicom"],
                    "message": ["m"], "kept_as": ["b0/x"], "quarantined_at": pa.array([now], pa.timestamp("us", "UTC"))})
    write_deltalake(q.uri(settings), old, partition_by=["batch"])  # a table written before `item` existed
    rows = [{"batch": "b1", "stage": "raw_dicom", "item": i, "sha256": None, "reason": "empty_file", "message": "m",
             "kept_as": f"b1/{i}", "quarantined_at": now} for i in range(2)]
    written = q.write(settings, pa.Table.from_pylist(rows, schema=q.schema), match={"batch": "b1", "stage": "raw_dicom"})
    assert (written.row_count, written.table_uri) == (2, q.uri(settings)) and written.delta_version == 1
    assert q.read(settings, where={"batch": "b1"}, columns=["item"]).to_pylist() == [{"item": 0}, {"item": 1}]
    assert sorted(r["item"] is None for r in q.read(settings).to_pylist()) == [False, False, True]  # old row: null
    columns, result = query_rows(settings, "SELECT batch, count(item) AS items, count(*) AS n FROM quarantine "
                                           "GROUP BY 1 ORDER BY 1")
    assert columns == ["batch", "items", "n"] and result == [("b0", 0, 1), ("b1", 2, 2)]
