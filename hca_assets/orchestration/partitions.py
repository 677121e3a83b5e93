"""Partitions: one dynamic partition per ingest batch."""

import dagster as dg

INGEST_BATCHES = "ingest_batches"
ingest_batches = dg.DynamicPartitionsDefinition(name=INGEST_BATCHES)
