"""The Dagster instance's home folder: inside the data folder, with telemetry off (no Dagster import: `make ui` and
the in-process runner prepare it before Dagster starts)."""

from __future__ import annotations

import os
from pathlib import Path

from hca_assets._infra.files import atomic_write
from hca_assets.config import Settings

__all__ = ["dagster_home"]


def dagster_home(settings: Settings) -> Path:
    """``$DAGSTER_HOME``, else ``<data>/dagster_home``, made ready: its ``dagster.yaml`` (written if absent) turns
    telemetry off, or Dagster would also write a user id into ``~/.dagster`` (outside the data folder)."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        atomic_write(config, lambda tmp: tmp.write_text("telemetry:\n  enabled: false\n"), replace=False)
    return home
