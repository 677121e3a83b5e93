"""The analyst's catalog per batch: ``series`` (promoted de-identified attributes and slice geometry QA) and
``studies`` (aggregated from the series), both PHI-free Delta tables."""

from collections import Counter

import dagster as dg

from hca_assets.assets import _metadata as md
from hca_assets.orchestration.automation import REPROCESS
from hca_assets.orchestration.partitions import ingest_batches
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.stages.catalog import run_series, run_studies

CATALOG_VERSION = "catalog-1"


@dg.asset(deps=["deid_dicom"], partitions_def=ingest_batches, group_name="catalog", kinds={"python", "deltalake"},
          code_version=CATALOG_VERSION, automation_condition=REPROCESS,
          description="One row per series of the batch: modality, body part, manufacturer, shifted dates, spacing, "
                      "instance counts and slice geometry QA, from the published headers (no pixels read).")
def series(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    run = run_series(storage.settings(), context.partition_key)
    issues = Counter(i for row in run.table.column("geometry_issues").to_pylist() for i in row)
    return dg.MaterializeResult(metadata={
        **md.written(run.written),
        "modalities": md.md_counts(Counter(run.table.column("modality").to_pylist()), ("modality", "series")),
        "geometry_issues": md.md_counts(issues, ("issue", "series")),
    })


@dg.asset(deps=[series], partitions_def=ingest_batches, group_name="catalog", kinds={"python", "deltalake"},
          code_version=CATALOG_VERSION, automation_condition=REPROCESS,
          description="One row per study of the batch, aggregated from its series.")
def studies(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    run = run_studies(storage.settings(), context.partition_key)
    return dg.MaterializeResult(metadata={**md.written(run.written),
                                          "patients": len(set(run.table.column("patient_pseudonym").to_pylist()))})
