"""Idempotent Delta writes (overwrite one partition by predicate) and reads via deltalake → Arrow."""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from hca_assets.lake.schemas import PARTITION_COLUMN

__all__ = ["WriteResult", "read_table", "table_exists", "write_partition"]


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
    match: Mapping[str, str],
    schema: pa.Schema,
    partition_by: tuple[str, ...] = (PARTITION_COLUMN,),
    attempts: int = 5,
) -> WriteResult:
    """Replace the rows where every ``column = value`` of ``match`` holds with ``data`` (may be empty).

    ``match`` names the slice this writer owns (e.g. one batch of one stage); every row of ``data``
    must belong to it. Re-running with the same data leaves the table's content unchanged; commit
    conflicts with writers of other slices are retried with backoff.
    """
    table = data.select(schema.names).cast(schema)
    for column, value in match.items():
        if "'" in value:
            raise ValueError(f"`match[{column!r}]` must not contain quotes, got {value!r}")
        stray = [v for v in table.column(column).unique().to_pylist() if v != value]
        if stray:
            raise ValueError(f"rows with {column}={stray!r} passed to a write that owns {column}={value!r}")
    predicate = " AND ".join(f"{column} = '{value}'" for column, value in match.items())
    for attempt in range(attempts):
        try:
            write_deltalake(uri, table, mode="overwrite", partition_by=list(partition_by) or None, predicate=predicate)
            break
        except CommitFailedError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    return WriteResult(table_uri=uri, delta_version=DeltaTable(uri).version(), row_count=table.num_rows)


def read_table(uri: str, *, schema: pa.Schema | None = None, where: Mapping[str, str] | None = None) -> pa.Table:
    """The table as Arrow, optionally only rows matching every ``column = value`` of ``where``.

    A table that does not exist yet reads as empty when its ``schema`` is given.
    """
    if not table_exists(uri):
        if schema is None:
            raise FileNotFoundError(f"no Delta table at {uri}")
        return schema.empty_table()
    dataset = DeltaTable(uri).to_pyarrow_dataset()
    if not where:
        return dataset.to_table()
    condition = functools.reduce(operator.and_, (pads.field(c) == v for c, v in where.items()))
    return dataset.to_table(filter=condition)


def table_schema(uri: str) -> pa.Schema | None:
    """The Arrow schema of the Delta table at ``uri``; None if there is no table."""
    if not table_exists(uri):
        return None
    return DeltaTable(uri).to_pyarrow_dataset().schema
