"""Infrastructure under every layer: worker pools, atomic files, locks, the object-store layer, the pseudonymisation key (no Dagster)."""
