"""Jobs are asset selections."""

import dagster as dg

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest"),
    description="Ingest one landing batch (one dynamic partition).",
)
