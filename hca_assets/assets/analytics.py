"""The dbt models (staging, marts) as Dagster assets downstream of the assets that write the Delta tables.

Each dbt source (a lake table) takes the asset key of the asset that writes it, so the lineage runs from
ingest to the marts; a table written by several assets (``quarantine``, ``evaluations``) makes its staging
model depend on every one of them. ``dbt build`` runs into a copy of the warehouse published only when every
model and test passed (:mod:`hca_assets.stages.analytics`).
"""


import json
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from hca_assets.lake.registry import lake_tables
from hca_assets.orchestration.dbt_project import DBT_EXECUTABLE, dbt_project, ensure_manifest
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.stages.analytics import warehouse_build

__all__ = ["GROUP", "PRODUCERS", "LakeTranslator", "analytics", "dbt_resource"]

GROUP = "analytics"

# lake table -> the assets writing it (the first is the dbt source's asset key); () = written outside an asset,
# shown as its own source asset lake/<table>
PRODUCERS: dict[str, tuple[str, ...]] = {t.name: tuple(dict.fromkeys(w.asset for w in t.writers)) for t in lake_tables()}


class LakeTranslator(DagsterDbtTranslator):
    """Sources → the keys of the assets writing their tables; models → ``analytics/<name>`` in group analytics."""

    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True))

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source":
            return spec.replace_attributes(key=_producer_keys(props["name"])[0])
        extra = [key for upstream in props.get("depends_on", {}).get("nodes", []) if upstream.startswith("source.")
                 for key in _producer_keys(manifest["sources"][upstream]["name"])[1:]]
        return spec.merge_attributes(deps=extra) if extra else spec

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        return dg.AssetKey([GROUP, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return GROUP


def _producer_keys(table: str) -> list[dg.AssetKey]:
    if table not in PRODUCERS:
        raise KeyError(f"dbt source {table!r} is not a lake table of hca_assets.lake.registry")
    return [dg.AssetKey(name) for name in PRODUCERS[table]] or [dg.AssetKey(["lake", table])]


@dbt_assets(manifest=ensure_manifest(), project=dbt_project, dagster_dbt_translator=LakeTranslator(), name=GROUP)
def analytics(context: dg.AssetExecutionContext, dbt: DbtCliResource, storage: SettingsResource) -> Iterator[Any]:
    """``dbt build`` (models and their tests) over the lake of ``storage``, published only when it passes; dbt's
    target and logs go under the data folder (kept there when the build fails), never into the package."""
    settings = storage.settings()
    with warehouse_build(settings, context.run.run_id) as build:
        yield from dbt.cli(["build", "--vars", json.dumps(build.dbt_vars(settings))], context=context,
                           target_path=build.artefacts).stream()


def dbt_resource() -> DbtCliResource:
    """The dbt CLI resource for :data:`analytics` (the venv's dbt, the project's profiles)."""
    return DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)
