from pathlib import Path

import pyarrow as pa
import pytest

from hca_assets.lake.delta import read_table, table_schema, write_partition

SCHEMA = pa.schema([pa.field("batch", pa.string(), nullable=False), pa.field("stage", pa.string()), pa.field("n", pa.int64())])


def rows(batch: str, stage: str, ns: list[int]) -> pa.Table:
    return pa.Table.from_pylist([{"batch": batch, "stage": stage, "n": n} for n in ns], schema=SCHEMA)


def test_overwrite_is_idempotent_and_scoped(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    write_partition(uri, rows("b1", "s", [1, 2, 3]), match={"batch": "b1"}, schema=SCHEMA)
    write_partition(uri, rows("b2", "s", [4]), match={"batch": "b2"}, schema=SCHEMA)
    for _ in range(2):
        result = write_partition(uri, rows("b1", "s", [1, 2, 3]), match={"batch": "b1"}, schema=SCHEMA)
    assert result.row_count == 3
    assert sorted(read_table(uri).column("n").to_pylist()) == [1, 2, 3, 4]
    assert read_table(uri, where={"batch": "b2"}).column("n").to_pylist() == [4]
    assert table_schema(uri).names == SCHEMA.names


def test_empty_write_clears_only_its_slice(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    write_partition(uri, rows("b1", "x", [1]), match={"batch": "b1", "stage": "x"}, schema=SCHEMA)
    write_partition(uri, rows("b1", "y", [2]), match={"batch": "b1", "stage": "y"}, schema=SCHEMA)
    write_partition(uri, SCHEMA.empty_table(), match={"batch": "b1", "stage": "x"}, schema=SCHEMA)
    assert read_table(uri).to_pylist() == [{"batch": "b1", "stage": "y", "n": 2}]


def test_rows_outside_the_slice_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="owns batch='b1'"):
        write_partition(str(tmp_path / "t"), rows("b2", "s", [1]), match={"batch": "b1"}, schema=SCHEMA)
    with pytest.raises(ValueError, match="quotes"):
        write_partition(str(tmp_path / "t"), rows("b'", "s", [1]), match={"batch": "b'"}, schema=SCHEMA)


def test_missing_table_reads_empty_with_schema(tmp_path: Path) -> None:
    assert read_table(str(tmp_path / "none"), schema=SCHEMA).num_rows == 0
    with pytest.raises(FileNotFoundError):
        read_table(str(tmp_path / "none"))
