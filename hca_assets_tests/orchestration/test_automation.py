"""Declarative automation: the index and the evaluation follow new embeddings, but only past their checks."""

from __future__ import annotations

import dagster as dg

from hca_assets.assets.search import faiss_index, retrieval_eval
from hca_assets.definitions import build_defs
from hca_assets.orchestration.partitions import INGEST_BATCHES, ingest_batches


def materialize_embeddings(instance: dg.DagsterInstance, *, checks_pass: bool) -> None:
    """A stand-in with the real key and blocking check, so the events are what the real asset emits."""

    checks = ("vectors_valid", "great_expectations")

    @dg.asset(key="embeddings", partitions_def=ingest_batches,
              check_specs=[dg.AssetCheckSpec(name, asset="embeddings", blocking=True) for name in checks])
    def stand_in() -> dg.MaterializeResult:
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(check_name=name, passed=checks_pass)
                                                   for name in checks])

    dg.materialize([stand_in], instance=instance, partition_key="b1", raise_on_error=False)


def test_index_follows_checked_embeddings_and_not_failed_ones() -> None:
    defs = build_defs()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, ["b1"])
        start = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert start.get_num_requested(faiss_index.key) == 0  # nothing materialized yet: nothing to do

        materialize_embeddings(instance, checks_pass=False)
        blocked = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=start.cursor)
        assert blocked.get_num_requested(faiss_index.key) == 0  # a failed blocking check holds the index back

        materialize_embeddings(instance, checks_pass=True)
        later = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=blocked.cursor)
        assert later.get_num_requested(faiss_index.key) == 1
        assert later.get_num_requested(retrieval_eval.key) == 0  # it waits for the index itself
