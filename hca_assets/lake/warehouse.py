"""DuckDB over the lake: every Delta table registered as a view (deltalake → Arrow, works offline)."""

from __future__ import annotations

from pathlib import Path

import duckdb
from deltalake import DeltaTable

from hca_assets.config import Settings, is_uri, join

__all__ = ["connect", "discover_tables"]


def discover_tables(root: str) -> dict[str, str]:
    """Delta tables directly under ``root`` (local): name → uri."""
    if is_uri(root):
        raise NotImplementedError("table discovery on object stores: list tables explicitly")
    base = Path(root)
    if not base.is_dir():
        return {}
    return {p.name: str(p) for p in sorted(base.iterdir()) if (p / "_delta_log").is_dir()}


def connect(settings: Settings, *, restricted: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per PHI-free table (and per restricted table if asked)."""
    con = duckdb.connect()
    tables = discover_tables(settings.lake)
    if restricted:
        tables |= discover_tables(join(settings.restricted, "tables"))
    for name, uri in tables.items():
        con.register(f"_delta_{name}", DeltaTable(uri).to_pyarrow_dataset())
        con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_delta_{name}"')
    return con
