"""dbt-duckdb's ``delta`` plugin, read the way the rest of the package reads Delta (profiles: ``module:
hca_assets.lake.dbt_delta, alias: delta``).

Differences from the stock plugin: a table not written yet (``audit_log`` before the first restricted query, a
stage that has not run) is an empty table of its registry schema instead of an error; only the columns the
source's ``load_columns`` meta lists are copied (vectors stay in the lake); the warehouse's folder is created
(inside an existing data folder); and local tables are opened on Arrow's native file system
(:func:`~hca_assets.lake.delta.open_dataset`), which avoids deltalake's exit-time abort.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from dbt.adapters.duckdb.plugins import delta
from dbt.adapters.duckdb.utils import SourceConfig

from hca_assets.lake.delta import read_table
from hca_assets.lake.registry import spec

__all__ = ["Plugin"]


class Plugin(delta.Plugin):
    """Loads a registry table (source meta ``hca_table``, ``delta_table_path``, ``load_columns``) as Arrow."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        """Create the warehouse file's folder (DuckDB creates the file, not its folder) inside an existing data
        folder; never the data folder itself (``hca demo --fresh`` deletes only a folder it created)."""
        path = getattr(self.creds, "path", None)
        if path and path != ":memory:" and "://" not in path:
            folder = Path(path).parent
            if not folder.parent.is_dir():
                raise FileNotFoundError(f"no data folder {folder.parent} (relative to {Path.cwd()}): run `make demo`, "
                                        "or set HCA_DATA_DIR to the data folder's absolute path")
            folder.mkdir(exist_ok=True)

    def load(self, source_config: SourceConfig) -> pa.Table:
        table = spec(source_config["hca_table"])
        path = source_config["delta_table_path"]
        columns = list(source_config.get("load_columns") or table.schema.names)
        return read_table(path, schema=table.schema, columns=columns)

    def default_materialization(self) -> Any:
        return "table"
