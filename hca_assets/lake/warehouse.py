"""DuckDB over the lake, sandboxed: every Delta table a view (deltalake → Arrow, works offline), and nothing else.

After the views are registered the connection loses file-system and network access, extension loading and
installation, and any change of configuration — so a query can read the registered views and no other byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake.exceptions import DeltaError

from hca_assets.config import Settings, is_uri, join
from hca_assets.lake.delta import open_dataset
from hca_assets.lake.schemas import RESTRICTED

__all__ = ["QueryRefused", "connect", "discover_tables", "record_restricted_access", "run_query"]

SANDBOX = (
    # no file or URL read or written (read_*, COPY, ATTACH, EXPORT, INSTALL), and no Python variable as a table
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET lock_configuration = true",  # last: no SET / RESET / PRAGMA can undo the lines above
)


class QueryRefused(ValueError):
    """A query that is not exactly one statement, or that DuckDB rejected; the message is one line."""


def discover_tables(root: str) -> dict[str, str]:
    """Delta tables directly under ``root`` (local): name → uri."""
    if is_uri(root):
        raise NotImplementedError("table discovery on object stores: list tables explicitly")
    base = Path(root)
    if not base.is_dir():
        return {}
    return {p.name: str(p) for p in sorted(base.iterdir()) if (p / "_delta_log").is_dir()}


def connect(settings: Settings, *, restricted: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory, sandboxed DuckDB with a view per PHI-free table (and per restricted table if asked)."""
    return _connect(discover_tables(settings.lake) | _restricted_tables(settings, restricted))


def run_query(settings: Settings, query: str, *, restricted: bool = False, command: str = "sql") -> pa.Table:
    """Run one SQL statement over the lake's views; with ``restricted``, record the access first.

    Raises :class:`QueryRefused` (one line) for anything but exactly one statement, or a DuckDB error.
    """
    hidden = _restricted_tables(settings, restricted)
    con = _connect(discover_tables(settings.lake) | hidden)
    try:
        statements = con.extract_statements(query)
        if len(statements) != 1:
            raise QueryRefused(f"give exactly one SQL statement per call (got {len(statements)})")
        if restricted:
            record_restricted_access(settings, command=command, query=query, tables=hidden)
        relation = con.sql(statements[0].query)
        return pa.table({}) if relation is None else relation.to_arrow_table()
    except duckdb.CatalogException as exc:
        hidden = sorted(t for t in RESTRICTED if t in query and not restricted)
        hint = f" ({', '.join(hidden)} is restricted: pass --restricted)" if hidden else ""
        raise QueryRefused(f"{_first_line(exc)}{hint}") from None
    except duckdb.Error as exc:
        raise QueryRefused(_first_line(exc)) from None
    finally:
        con.close()


def record_restricted_access(settings: Settings, *, command: str, query: str, tables: Iterable[str]) -> None:
    """Append one PHI-free row to the lake's ``audit_log``: when, who, which command, the query's sha256
    (never its text) and the restricted tables it could read."""
    from hca_assets.lake.audit import RESTRICTED_READ, AuditEvent, AuditUnavailable, record

    event = AuditEvent(RESTRICTED_READ, command, restricted=True, query_sha256=hashlib.sha256(query.encode()).hexdigest(),
                       restricted_tables=sorted(tables))
    try:
        record(settings, event)
    except AuditUnavailable as exc:  # no access is granted unless it is recorded
        raise QueryRefused(f"the restricted access could not be recorded: {exc}") from None


def _restricted_tables(settings: Settings, restricted: bool) -> dict[str, str]:
    return discover_tables(join(settings.restricted, "tables")) if restricted else {}


def _connect(tables: dict[str, str]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name, uri in tables.items():
        try:
            dataset = open_dataset(uri)
        except (DeltaError, OSError) as exc:
            raise QueryRefused(f"Delta table {name} cannot be read ({_first_line(exc)}): repair or move it") from None
        con.register(f"_delta_{name}", dataset)
        con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_delta_{name}"')
    for statement in SANDBOX:
        con.execute(statement)
    return con


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
