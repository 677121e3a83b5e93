"""Idempotent Delta writes (overwrite one partition by predicate) and reads via deltalake → Arrow."""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from hca_assets._infra.storage import delta_options
from hca_assets.config import is_uri
from hca_assets.lake.schemas import PARTITION_COLUMN

__all__ = ["WriteResult", "delta_table", "open_dataset", "read_table", "table_exists", "write_partition"]


@dataclass(frozen=True)
class WriteResult:
    table_uri: str
    delta_version: int
    row_count: int


def table_exists(uri: str) -> bool:
    return DeltaTable.is_deltatable(uri, storage_options=delta_options(uri))


def delta_table(uri: str) -> DeltaTable:
    """The Delta table at ``uri`` (local or object store: credentials and retries from :mod:`hca_assets._infra.storage`)."""
    return DeltaTable(uri, storage_options=delta_options(uri))


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
            write_deltalake(uri, table, mode="overwrite", partition_by=list(partition_by) or None, predicate=predicate,
                            schema_mode="merge", storage_options=delta_options(uri))  # a column the schema gained is added (null in older rows)
            break
        except CommitFailedError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    return WriteResult(table_uri=uri, delta_version=delta_table(uri).version(), row_count=table.num_rows)


def open_dataset(uri: str) -> pads.Dataset:
    """The Delta table as an Arrow dataset; local tables on Arrow's native file system.

    deltalake's default is a Python-implemented file system whose last reference, dropped on an Arrow
    I/O thread during interpreter exit, aborts the process ("terminate called without an active exception").
    """
    if is_uri(uri):
        return delta_table(uri).to_pyarrow_dataset()
    local = str(Path(uri.removeprefix("file://")).resolve())
    return DeltaTable(local).to_pyarrow_dataset(filesystem=pafs.SubTreeFileSystem(local, pafs.LocalFileSystem()))


def read_table(uri: str, *, schema: pa.Schema | None = None, where: Mapping[str, str] | None = None,
               columns: Sequence[str] | None = None) -> pa.Table:
    """The table as Arrow, optionally only rows matching every ``column = value`` of ``where`` and only ``columns``.

    A table that does not exist yet reads as empty when its ``schema`` is given.
    """
    if not table_exists(uri):
        if schema is None:
            raise FileNotFoundError(f"no Delta table at {uri}")
        empty = schema.empty_table()
        return empty.select(list(columns)) if columns is not None else empty
    condition = functools.reduce(operator.and_, (pads.field(c) == v for c, v in where.items())) if where else None
    return open_dataset(uri).to_table(columns=list(columns) if columns is not None else None, filter=condition)


def table_schema(uri: str) -> pa.Schema | None:
    """The Arrow schema of the Delta table at ``uri``; None if there is no table."""
    if not table_exists(uri):
        return None
    return open_dataset(uri).schema
