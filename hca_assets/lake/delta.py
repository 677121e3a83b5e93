"""Idempotent Delta writes (overwrite one partition by predicate) and reads via deltalake → Arrow."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from hca_assets.lake.schemas import PARTITION_COLUMN

__all__ = ["WriteResult", "write_partition", "read_table", "table_exists"]


@dataclass(frozen=True)
class WriteResult:
    table_uri: str
    delta_version: int
    row_count: int


def table_exists(uri: str) -> bool:
    return DeltaTable.is_deltatable(uri)


def write_partition(
    uri: str,
    data: pa.Table,
    *,
    key: str,
    schema: pa.Schema,
    column: str = PARTITION_COLUMN,
    attempts: int = 5,
) -> WriteResult:
    """Replace partition ``column = key`` of the table with ``data`` (which may be empty).

    Re-running with the same data leaves the table's content unchanged; concurrent writers of other
    partitions are retried on commit conflicts.
    """
    table = data.select(schema.names).cast(schema)
    bad = [v for v in table.column(column).unique().to_pylist() if v != key]
    if bad:
        raise ValueError(f"rows for partition {bad!r} passed to write_partition(key={key!r})")
    if "'" in key:
        raise ValueError(f"partition key must not contain quotes, got {key!r}")
    for attempt in range(attempts):
        try:
            write_deltalake(
                uri,
                table,
                mode="overwrite",
                partition_by=[column],
                predicate=f"{column} = '{key}'",
                schema_mode=None,
            )
            break
        except CommitFailedError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    dt = DeltaTable(uri)
    return WriteResult(table_uri=uri, delta_version=dt.version(), row_count=table.num_rows)


def read_table(uri: str, *, schema: pa.Schema | None = None, where: tuple[str, str] | None = None) -> pa.Table:
    """The table as Arrow (optionally rows with ``column == value``); an empty table if it does not exist."""
    if not table_exists(uri):
        if schema is None:
            raise FileNotFoundError(f"no Delta table at {uri}")
        return schema.empty_table()
    dataset = DeltaTable(uri).to_pyarrow_dataset()
    if where is None:
        return dataset.to_table()
    import pyarrow.dataset as pads

    column, value = where
    return dataset.to_table(filter=pads.field(column) == value)
