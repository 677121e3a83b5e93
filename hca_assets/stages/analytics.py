"""The warehouse a dbt build writes: built into a copy that replaces the published file only when every model and
test passed (readers never see a half-built or failing warehouse, nor hold a lock dbt needs)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hca_assets._infra.storage import push
from hca_assets.config import Settings

__all__ = ["WarehouseBuild", "warehouse_build"]


@dataclass(frozen=True)
class WarehouseBuild:
    """Where one build writes: the DuckDB file, and dbt's target and logs (``<data>/dbt/<run id>``)."""

    warehouse: Path
    artefacts: Path

    def dbt_vars(self, settings: Settings) -> dict[str, str]:
        """The ``--vars`` the dbt project reads: the data folder and this build's warehouse."""
        return {"hca_data_dir": settings.data_dir, "hca_warehouse": str(self.warehouse)}


@contextlib.contextmanager
def warehouse_build(settings: Settings, run_id: str) -> Iterator[WarehouseBuild]:
    """A build of run ``run_id``: a copy of the published warehouse (a subset of the models rebuilds into the
    others), published and pushed if the block ends without an exception; dbt's artefacts are removed then, kept
    for reading when it failed."""
    published = Path(settings.warehouse)
    building = published.with_name(f".{published.name}.{run_id}")
    artefacts = Path(settings.dbt_runs, run_id)
    published.parent.mkdir(parents=True, exist_ok=True)
    if published.exists():
        shutil.copyfile(published, building)
    try:
        yield WarehouseBuild(building, artefacts)
        os.replace(building, published)
        push(settings, published)
        shutil.rmtree(artefacts, ignore_errors=True)
    finally:
        building.unlink(missing_ok=True)
        building.with_name(building.name + ".wal").unlink(missing_ok=True)
