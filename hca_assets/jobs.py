"""Jobs are asset selections."""

import dagster as dg

from hca_assets.partitions import ingest_batches

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest"),
    partitions_def=ingest_batches,
    description="Ingest one landing batch (one dynamic partition).",
)
