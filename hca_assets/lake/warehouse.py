"""DuckDB over the lake, sandboxed: every Delta table a view, and nothing else.

After the views are registered the connection loses file-system and network access, extension loading and
installation, and any change of configuration — so a query can read the registered views and no other byte.

Two ways to a view, both lazy (no table is copied before a query reads it): :func:`connect` registers each table's
Arrow dataset (deltalake → pyarrow); :func:`run_query` and :func:`query_rows` (``hca sql``) let DuckDB read the
Parquet files the Delta log lists as active, natively — the connection may open exactly those files, and only a
query (SELECT, EXPLAIN) runs, so nothing is written. That path imports neither pyarrow nor pandas, and opens only
the tables the query names: a whole ``hca sql`` process over a million rows takes a fraction of a second.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from hca_assets._infra.storage import pull_file
from hca_assets.config import Settings, is_uri
from hca_assets.lake import registry

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = ["FILTER_VIEW", "QueryRefused", "bounded_query", "connect", "discover_tables", "query_rows",
           "record_restricted_access", "run_query", "select_ids"]

QUERY_TYPES = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)  # what run_query runs: reads only
FILTER_VIEW = "indexed"  # select_ids: the view of the candidate rows a condition filters
_T = TypeVar("_T")

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
    """Delta tables directly under a local ``root``: name → uri (on object stores the registry names them all)."""
    if is_uri(root):
        return {}
    base = Path(root)
    if not base.is_dir():
        return {}
    return {p.name: str(p) for p in sorted(base.iterdir()) if (p / "_delta_log").is_dir()}


def connect(settings: Settings, *, restricted: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory, sandboxed DuckDB with a view per PHI-free table (and per restricted table if asked), each
    over the table's Arrow dataset, and the marts: any statement may run on it, and none reaches a file."""
    tables = _tables(settings, _restricted_found(settings, restricted))
    con = duckdb.connect()
    for name, uri in tables.items():
        _arrow_view(con, name, uri)
    _attach_marts(con, settings, taken=set(tables))
    _lock(con, allowed=[])
    return con


def run_query(settings: Settings, query: str, *, restricted: bool = False, command: str = "sql") -> pa.Table:
    """Run one query (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) over the lake's views and the marts and return its
    result as Arrow; with ``restricted``, record the access first.

    Raises :class:`QueryRefused` (one line) for anything but exactly one query, or a DuckDB error.
    """
    import pyarrow as pa

    def fetch(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
        relation = con.sql(sql)
        return pa.table({}) if relation is None else relation.to_arrow_table()

    return _run(settings, query, restricted=restricted, command=command, fetch=fetch)


def query_rows(settings: Settings, query: str, *, restricted: bool = False,
               command: str = "sql") -> tuple[list[str], list[tuple[Any, ...]]]:
    """:func:`run_query` as (column names, rows of Python values), without importing pyarrow (``hca sql``);
    a result over ``settings.sql_max_rows`` rows is refused, not fetched."""

    def fetch(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        cursor = con.execute(sql)
        rows = cursor.fetchmany(settings.sql_max_rows + 1)
        if len(rows) > settings.sql_max_rows:
            raise QueryRefused(f"the result has more than {settings.sql_max_rows} rows (HCA_SQL_MAX_ROWS): "
                               "add a LIMIT or aggregate")
        return [d[0] for d in cursor.description or ()], rows

    return _run(settings, query, restricted=restricted, command=command, fetch=fetch)


def bounded_query(settings: Settings, query: str, *, restricted: bool, fmt: str, command: str = "sql") -> str:
    """:func:`query_rows` rendered as ``fmt``, in a worker process bounded in time (``sql_timeout_seconds``,
    then killed: DuckDB does not look at an interrupt while it builds one huge value) and in address space
    (``sql_memory_mb`` beyond the interpreter's own; DuckDB's memory limit is three quarters of it, nothing
    spilled to disk)."""
    from hca_assets._infra.parallel import ItemFailed, ordered_map

    (out,) = ordered_map(_rendered, [(settings, query, restricted, fmt, command)], timeout=settings.sql_timeout_seconds,
                         initializer=_bound_memory, initargs=(settings.sql_memory_mb << 20,))
    if isinstance(out, ItemFailed):
        raise QueryRefused(f"stopped after {settings.sql_timeout_seconds:g} s (HCA_SQL_TIMEOUT_SECONDS)" if out.timed_out
                           else f"the query's process died (exit code {out.exitcode}): out of memory? "
                                f"({settings.sql_memory_mb} MB, HCA_SQL_MEMORY_MB)")
    return out


def _rendered(job: tuple[Settings, str, bool, str, str]) -> str:
    from hca_assets.lake.render import render

    settings, query, restricted, fmt, command = job
    try:
        return render(*query_rows(settings, query, restricted=restricted, command=command), fmt)
    except MemoryError:
        raise QueryRefused(f"ran out of memory ({settings.sql_memory_mb} MB, HCA_SQL_MEMORY_MB)") from None


def _bound_memory(budget: int) -> None:
    """Let this process allocate at most ``budget`` bytes beyond what it holds now (the interpreter and libraries)."""
    import resource

    data = next(int(line.split()[1]) << 10 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmData:"))  # private writable memory: what allocations grow (reservations do not)
    resource.setrlimit(resource.RLIMIT_DATA, (data + budget, resource.getrlimit(resource.RLIMIT_DATA)[1]))


def _run(settings: Settings, query: str, *, restricted: bool, command: str,
         fetch: Callable[[duckdb.DuckDBPyConnection, str], _T]) -> _T:
    hidden = _restricted_found(settings, restricted)
    tables = _tables(settings, hidden)
    con = duckdb.connect()
    try:
        statements = con.extract_statements(query)
        if len(statements) != 1:
            raise QueryRefused(f"give exactly one SQL statement per call (got {len(statements)})")
        kind = _explained_type(con, statements[0])
        if kind not in QUERY_TYPES:
            raise QueryRefused(f"only a query runs here (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN), not {kind.name}")
        con.execute(f"SET memory_limit = '{settings.sql_memory_mb * 3 // 4}MB'")
        con.execute("SET temp_directory = ''")  # nothing spills into the working directory
        con.execute("SET enable_progress_bar = false")  # a long query's bar would garble the one-line answer
        marts = _attach_marts(con, settings, taken=set(tables))
        _lock(con, allowed=_views(con, _referenced(tables, query, marts)))
        if hidden is not None:  # the restricted tables written so far: what the query could read
            record_restricted_access(settings, command=command, query=query, tables=hidden)
        return fetch(con, statements[0].query)
    except duckdb.Error as exc:
        raise _refusal(exc, query, None if restricted else ": pass --restricted") from None
    finally:
        con.close()


_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(?:ANALYZE\s+|\([^)]*\)\s*)?", re.IGNORECASE)


def _explained_type(con: duckdb.DuckDBPyConnection, statement: Any) -> duckdb.StatementType:
    """The type of the statement an EXPLAIN (ANALYZE) wraps — EXPLAIN ANALYZE runs it — else the statement's own."""
    if statement.type != duckdb.StatementType.EXPLAIN:
        return statement.type
    inner = con.extract_statements(_EXPLAIN.sub("", statement.query, count=1))
    return inner[0].type if len(inner) == 1 else duckdb.StatementType.INVALID


def select_ids(settings: Settings, candidates: pa.Table, where: str) -> np.ndarray:
    """The ``id`` of each row of ``candidates`` (the view ``indexed``) for which the SQL condition ``where`` holds.

    The condition is parsed as one expression, never spliced into a statement, and evaluated in the sandbox: it may
    read the PHI-free tables and marts it names (subqueries), no restricted table and no file. Raises
    :class:`QueryRefused` (one line) for anything but one condition, or a DuckDB error.
    """
    tables = {name: uri for name, uri in _tables(settings, None).items() if name != FILTER_VIEW}
    con = duckdb.connect()
    try:
        statements = con.extract_statements(f"SELECT id FROM {FILTER_VIEW} WHERE {where}")
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise QueryRefused(f"give one SQL condition, not {len(statements)} statements")
        marts = _attach_marts(con, settings, taken=set(tables) | {FILTER_VIEW})
        allowed = _views(con, _referenced(tables, where, marts, every_if_none=False))
        con.register("_candidates", candidates)
        con.execute(f'CREATE VIEW "{FILTER_VIEW}" AS SELECT * FROM "_candidates"')
        _lock(con, allowed=allowed)
        return con.table(FILTER_VIEW).filter(where).project("id").fetchnumpy()["id"]
    except duckdb.Error as exc:
        raise _refusal(exc, where, ": a filter reads PHI-free tables only") from None
    finally:
        con.close()


def _refusal(exc: duckdb.Error, query: str, restricted_hint: str | None) -> QueryRefused:
    """DuckDB's error in one line; naming the restricted tables the query mentions (then ``restricted_hint``) when
    it failed on a missing table."""
    named = sorted(t for t in registry.restricted_names() if t in query)
    if isinstance(exc, duckdb.CatalogException) and named and restricted_hint is not None:
        return QueryRefused(f"{_first_line(exc)} ({', '.join(named)} is restricted{restricted_hint})")
    return QueryRefused(_first_line(exc))


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


def _restricted_found(settings: Settings, restricted: bool) -> dict[str, str] | None:
    """The restricted zone's tables written so far (listed once per query), or None without ``restricted``."""
    return discover_tables(settings.restricted_tables) if restricted else None


def _tables(settings: Settings, restricted_found: dict[str, str] | None) -> dict[str, str]:
    """Name → uri of every table a view is made for: each registered PHI-free table (written or not), any other
    Delta table found in the lake, and the restricted zone's tables when ``restricted_found`` lists them."""
    specs = [t for t in registry.TABLES.values() if restricted_found is not None or not t.restricted]
    return {t.name: t.uri(settings) for t in specs} | discover_tables(settings.lake) | (restricted_found or {})


def _referenced(tables: dict[str, str], query: str, marts: list[str], *, every_if_none: bool = True) -> dict[str, str]:
    """The tables ``query`` names (as a word, any case); when it names none and no mart either (SHOW TABLES,
    information_schema), all of them unless not ``every_if_none``. Opening a table costs its Delta log: a query
    pays only for what it reads."""
    words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query)}
    named = {name: uri for name, uri in tables.items() if name.lower() in words}
    return named if named or words & {m.lower() for m in marts} or not every_if_none else tables


def _views(con: duckdb.DuckDBPyConnection, tables: dict[str, str]) -> list[str]:
    """A view per table (native where it can be, else over Arrow); returns the Parquet files the native ones read."""
    allowed: list[str] = []
    for name, uri in tables.items():
        files = _native_view(con, name, uri)
        if files is None:
            _arrow_view(con, name, uri)
        allowed += files or []
    return allowed


def _native_view(con: duckdb.DuckDBPyConnection, name: str, uri: str) -> list[str] | None:
    """Make ``name`` a view reading the table's active Parquet files natively; returns those files, or None when
    the Arrow dataset must read the table instead (object store, no file yet, reader features such as deletion
    vectors, or partition folders that do not spell the partition values)."""
    if is_uri(uri) or not Path(uri, "_delta_log").is_dir():
        return None
    try:
        table = DeltaTable(uri)  # local (above): no storage options; deltalake alone does not load pyarrow
        if table.protocol().min_reader_version > 1:
            return None
        partitions = table.metadata().partition_columns
        adds = table.get_add_actions(flatten=True)
    except (DeltaError, OSError) as exc:
        raise QueryRefused(f"Delta table {name} cannot be read ({_first_line(exc)}): repair or move it") from None
    paths = [str(p) for p in adds.column("path").to_pylist()]
    values = [adds.column(f"partition.{c}").to_pylist() for c in partitions]
    folders = ["".join(f"{c}={v[i]}/" for c, v in zip(partitions, values, strict=True)) for i in range(len(paths))]
    if not paths or any(not p.startswith(f) for p, f in zip(paths, folders, strict=True)):
        return None
    files = [str(Path(uri, p).resolve()) for p in paths]
    hive = (f"hive_partitioning = true, hive_types = {{{', '.join(f'{_literal(c)}: VARCHAR' for c in partitions)}}}"
            if partitions else "hive_partitioning = false")
    con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{", ".join(_literal(f) for f in files)}], '
                f"union_by_name = true, {hive})")
    return files


def _arrow_view(con: duckdb.DuckDBPyConnection, name: str, uri: str) -> None:
    """Make ``name`` a view over the table's Arrow dataset (an empty table of the registered schema if none)."""
    from hca_assets.lake.delta import open_dataset, table_exists

    try:
        data: object = open_dataset(uri) if table_exists(uri) else registry.spec(name).schema.empty_table()
    except (DeltaError, OSError) as exc:
        raise QueryRefused(f"Delta table {name} cannot be read ({_first_line(exc)}): repair or move it") from None
    con.register(f"_delta_{name}", data)
    con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_delta_{name}"')


def _lock(con: duckdb.DuckDBPyConnection, *, allowed: list[str]) -> None:
    """Apply the sandbox; the ``allowed`` files (the native views' Parquet files) stay readable."""
    con.execute("SET TimeZone = 'UTC'")
    if allowed:
        con.execute(f"SET allowed_paths = [{', '.join(_literal(f) for f in allowed)}]")
    for statement in SANDBOX:
        con.execute(statement)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _attach_marts(con: duckdb.DuckDBPyConnection, settings: Settings, *, taken: set[str]) -> list[str]:
    """Attach dbt's warehouse file read-only as ``analytics`` (once built; brought from an object-store root if this
    machine has none) and make each mart a view by its name; returns the marts' names."""
    warehouse = settings.warehouse
    pull_file(settings, warehouse)
    if is_uri(warehouse) or not Path(warehouse).is_file():
        return []
    try:
        con.execute(f"ATTACH {_literal(warehouse)} AS analytics (READ_ONLY)")
    except duckdb.Error as exc:
        raise QueryRefused(f"the dbt warehouse {warehouse} cannot be read ({_first_line(exc)})") from None
    marts = con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'analytics' AND schema_name = 'marts'"
                        " ORDER BY 1").fetchall()
    for (name,) in marts:
        if name not in taken:
            con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM analytics.marts."{name}"')
    return [name for (name,) in marts]


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
