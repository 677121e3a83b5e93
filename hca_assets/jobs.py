"""Jobs are asset selections."""

import dagster as dg

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest", "deid"),
    description="Ingest and de-identify one landing batch (one dynamic partition).",
)
