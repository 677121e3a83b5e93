"""``hca backfill``: an asset backfill in the Dagster instance, as the UI's Materialize → partitions dialog creates
it; the daemon runs it (one run per batch) and the UI lists it under Overview → Backfills."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.utils import make_new_backfill_id
from dagster._time import get_current_timestamp

from hca_assets.lake.registry import DEID_INSTANCES
from hca_assets.orchestration.partitions import INGEST_BATCHES

__all__ = ["BackfillRefused", "Launched", "launch_backfill"]


class BackfillRefused(ValueError):
    """An unknown asset or batch, or options that do not fit the asset; one PHI-free line."""


@dataclass(frozen=True)
class Launched:
    backfill_id: str
    asset: str
    batches: list[str]  # empty for an unpartitioned asset


def launch_backfill(instance: dg.DagsterInstance, defs: dg.Definitions, asset: str, *, batches: Sequence[str] = (),
                    all_batches: bool = False) -> Launched:
    """Create a backfill of ``asset`` for ``batches`` (or every registered batch) in ``instance``."""
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey.from_user_string(asset)
    if not graph.has(key) or not graph.get(key).is_materializable:
        known = sorted(k.to_user_string() for k in graph.materializable_asset_keys)
        raise BackfillRefused(f"unknown asset {asset!r} (known: {', '.join(known)})")
    chosen: list[str] = []
    if graph.get(key).partitions_def is None:
        if batches or all_batches:
            raise BackfillRefused(f"{asset} is not partitioned by batch: give no --batch / --all-batches")
    else:
        if all_batches == bool(batches):
            raise BackfillRefused(f"{asset} is partitioned by batch: give --all-batches or --batch B (not both)")
        registered = instance.get_dynamic_partitions(INGEST_BATCHES)
        chosen = sorted(registered) if all_batches else list(dict.fromkeys(batches))
        unknown = [b for b in chosen if b not in registered]
        if unknown:
            raise BackfillRefused(f"unknown batch {unknown[0]!r} ({len(registered)} registered; list them in the UI "
                                  f"or with `hca sql \"select distinct batch from {DEID_INSTANCES.name}\"`)")
        if not chosen:
            raise BackfillRefused("no ingest batch is registered yet: nothing to backfill")
    backfill_id = make_new_backfill_id()
    instance.add_backfill(PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id, asset_graph=graph, partition_names=chosen or None, asset_selection=[key],
        backfill_timestamp=get_current_timestamp(), tags={"hca/launched_by": "hca backfill"},
        dynamic_partitions_store=instance, all_partitions=False, title=f"hca backfill {asset}",
        description=f"{asset}: {len(chosen) or 'unpartitioned'} batch(es), from `hca backfill`", run_config=None))
    return Launched(backfill_id, asset, chosen)
