"""Assets: thin Dagster wrappers over the functional core, one module per stage."""
