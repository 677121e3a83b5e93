"""The dbt project at the checkout's ``dbt/`` as Dagster sees it (no ``@dbt_assets`` here: ``dagster-dbt project
prepare-and-package --file hca_assets/dbt_project.py`` imports this module to write the manifest).

``make test``/``make demo`` prepare the manifest explicitly; ``dagster dev`` re-parses on every load; a fresh clone
imported any other way parses once here, so the definitions always load.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from hca_assets.locks import FileLock

__all__ = ["DBT_DIR", "DBT_EXECUTABLE", "dbt_project", "ensure_manifest"]

DBT_DIR = Path(__file__).resolve().parent.parent / "dbt"
# the dbt next to this interpreter (the venv's), so that a caller's PATH does not matter
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt")) if Path(sys.executable).with_name("dbt").exists() else (
    shutil.which("dbt") or "dbt")

dbt_project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)
dbt_project.prepare_if_dev()


def ensure_manifest() -> Path:
    """The manifest's path, parsing the project first if it has none (one process at a time)."""
    if not dbt_project.manifest_path.exists():
        with FileLock(DBT_DIR / ".parse.lock"):
            if not dbt_project.manifest_path.exists():
                DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE).cli(
                    ["parse", "--quiet"], target_path=dbt_project.target_path).wait()
    return dbt_project.manifest_path
