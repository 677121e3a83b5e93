"""The analyst's catalog per batch: ``series`` (promoted de-identified attributes and slice geometry QA) and
``studies`` (aggregated from the series), both PHI-free Delta tables."""

from collections import Counter
from pathlib import Path

import dagster as dg

from hca_assets._infra.storage import pull
from hca_assets.assets import _metadata as md
from hca_assets.lake import registry as tables
from hca_assets.orchestration.automation import REPROCESS
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.stages.catalog import series_table, studies_table

CATALOG_VERSION = "catalog-1"


@dg.asset(deps=["deid_dicom"], partitions_def=ingest_batches, group_name="catalog", kinds={"python", "deltalake"},
          code_version=CATALOG_VERSION, automation_condition=REPROCESS,
          description="One row per series of the batch: modality, body part, manufacturer, shifted dates, spacing, "
                      "instance counts and slice geometry QA, from the published headers (no pixels read).")
def series(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    key = context.partition_key
    instances = tables.DEID_INSTANCES.read(settings, where={"batch": key}).to_pylist()
    pull(settings, Path(settings.deid) / key)
    table = series_table(key, instances, Path(settings.deid))
    written = tables.SERIES.write(settings, table, match={"batch": key})
    issues = Counter(i for row in table.column("geometry_issues").to_pylist() for i in row)
    return dg.MaterializeResult(metadata={
        **md.written(written),
        "modalities": md.md_counts(Counter(table.column("modality").to_pylist()), ("modality", "series")),
        "geometry_issues": md.md_counts(issues, ("issue", "series")),
    })


@dg.asset(deps=[series], partitions_def=ingest_batches, group_name="catalog", kinds={"python", "deltalake"},
          code_version=CATALOG_VERSION, automation_condition=REPROCESS,
          description="One row per study of the batch, aggregated from its series.")
def studies(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    key = context.partition_key
    table = studies_table(key, tables.SERIES.read(settings, where={"batch": key}).to_pylist())
    written = tables.STUDIES.write(settings, table, match={"batch": key})
    return dg.MaterializeResult(metadata={**md.written(written),
                                          "patients": len(set(table.column("patient_pseudonym").to_pylist()))})
