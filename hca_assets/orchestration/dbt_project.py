"""The dbt project at the checkout's ``dbt/`` as Dagster sees it (no ``@dbt_assets`` here: ``dagster-dbt project
prepare-and-package --file hca_assets/orchestration/dbt_project.py`` imports this module to write the manifest).

``make test``/``make demo`` prepare the manifest explicitly; a fresh clone (or a changed project) imported any other
way — ``dagster dev`` included, whatever its PATH — parses here first with the venv's dbt, so the definitions always
load and match dbt/.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from hca_assets._infra.locks import FileLock

__all__ = ["DBT_DIR", "DBT_EXECUTABLE", "dbt_project", "ensure_manifest"]

DBT_DIR = Path(__file__).resolve().parents[2] / "dbt"
# the dbt next to this interpreter (the venv's, through hca-dbt: it dies with the run that started it), so that a
# caller's PATH does not matter
_BESIDE = Path(sys.executable).with_name("hca-dbt")
DBT_EXECUTABLE = str(_BESIDE) if _BESIDE.exists() else (shutil.which("hca-dbt") or shutil.which("dbt") or "dbt")

dbt_project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)


def ensure_manifest() -> Path:
    """The manifest's path, parsing the project first if it has none or a file of the project is newer (one
    process at a time): the assets never describe other models and tests than ``dbt build`` runs."""
    if _stale():
        with FileLock(Path(dbt_project.project_dir, dbt_project.target_path, ".parse.lock")):
            if _stale():
                DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE).cli(
                    ["parse", "--quiet"], target_path=dbt_project.target_path).wait()
    return dbt_project.manifest_path


def _stale() -> bool:
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        return True
    sources = [p for folder in ("models", "tests", "macros") for p in (DBT_DIR / folder).rglob("*") if p.is_file()]
    newest = max(p.stat().st_mtime for p in [*sources, DBT_DIR / "dbt_project.yml", DBT_DIR / "profiles.yml"])
    return newest > manifest.stat().st_mtime
