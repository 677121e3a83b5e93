"""``hca sql``: one bounded SQL statement over the lake's tables."""

from __future__ import annotations

import click

from hca_assets.cli._common import UserError, _settings, main
from hca_assets.config import Settings


@main.command("sql")
@click.argument("query")
@click.option("--restricted", is_flag=True, help="Also register PHI-bearing tables (restricted zone).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def sql_cmd(query: str, restricted: bool, fmt: str) -> None:
    """Run one SQL statement, QUERY, in a sandboxed DuckDB over every lake Delta table (views named after the
    tables; no file, network, extension or setting access), bounded in time, memory and rows (HCA_SQL_TIMEOUT_SECONDS,
    HCA_SQL_MEMORY_MB, HCA_SQL_MAX_ROWS). With --restricted, the access is logged in audit_log."""
    from hca_assets._infra.parallel import warm_up

    warm_up(("hca_assets.lake.warehouse", "hca_assets.lake.render"))  # the statement's process forks from it
    from hca_assets.lake.warehouse import QueryRefused, bounded_query  # meanwhile: both import DuckDB

    settings = _settings()
    try:
        click.echo(bounded_query(settings, query, restricted=restricted, fmt=fmt), nl=False)
    except QueryRefused as exc:
        raise UserError(str(exc)) from exc


def run_sql(settings: Settings, query: str, *, restricted: bool, fmt: str, command: str = "sql") -> str:
    """Execute ``query`` (one query) and render the result as a text table, CSV or JSON lines."""
    from hca_assets.lake.render import render
    from hca_assets.lake.warehouse import QueryRefused, query_rows

    try:
        columns, rows = query_rows(settings, query, restricted=restricted, command=command)
    except QueryRefused as exc:
        raise UserError(str(exc)) from exc
    return render(columns, rows, fmt)
