"""One batch runner per pipeline stage: what each asset and CLI command calls, owning its table reads and writes (no Dagster)."""
