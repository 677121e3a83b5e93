"""The ``hca`` command: one module per sub-command; each calls the same stages as the assets."""

from hca_assets.cli import (  # noqa: F401 - each module registers its command on `main`
    backfill,
    deid,
    demo,
    feedback,
    generate,
    ingest,
    listen,
    rekey,
    search,
    segment,
    sql,
)
from hca_assets.cli._common import DEMO_MARKER, _settings, main
from hca_assets.cli.demo import _demo_data_dir
from hca_assets.cli.sql import run_sql

__all__ = ["DEMO_MARKER", "_demo_data_dir", "_settings", "main", "run_sql"]
