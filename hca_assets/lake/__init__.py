"""The lake: Delta table schemas, idempotent writers, DuckDB access — no Dagster here."""

from hca_assets.lake.delta import WriteResult, read_table, table_exists, write_partition
from hca_assets.lake.schemas import QUARANTINE, RAW_INSTANCES, RESTRICTED, SCHEMAS
from hca_assets.lake.warehouse import QueryRefused, connect, discover_tables, run_query

__all__ = [
    "QUARANTINE",
    "RAW_INSTANCES",
    "RESTRICTED",
    "SCHEMAS",
    "QueryRefused",
    "WriteResult",
    "connect",
    "discover_tables",
    "read_table",
    "run_query",
    "table_exists",
    "write_partition",
]
