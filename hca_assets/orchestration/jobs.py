"""Jobs are asset selections."""

import dagster as dg

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest", "deid", "catalog", "images", "embeddings", "segmentation"),
    description="Ingest, de-identify, catalogue (series, studies), render, embed and segment one landing batch "
                "(one dynamic partition).",
)

index_job = dg.define_asset_job(
    "index_job",
    selection=dg.AssetSelection.groups("search", "evaluation", "analytics"),
    description="Rebuild or extend the FAISS indexes, evaluate retrieval and segmentation over all batches, then "
                "build the dbt marts (group analytics) over the lake.",
)
