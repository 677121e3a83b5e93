"""The lake: the table registry, Delta table schemas, idempotent writers, DuckDB access — no Dagster here.

Names are loaded on first use (PEP 562): a worker that only needs ``lake.schemas`` does not pay for
deltalake, pyarrow.dataset and pandas, which ``delta`` and ``warehouse`` pull in (~0.3 s at start-up).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "WriteResult": "delta", "read_table": "delta", "table_exists": "delta", "write_partition": "delta",
    "QUARANTINE": "schemas", "RAW_INSTANCES": "schemas", "TABLES": "registry", "spec": "registry",
    "QueryRefused": "warehouse", "connect": "warehouse", "discover_tables": "warehouse", "run_query": "warehouse",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
