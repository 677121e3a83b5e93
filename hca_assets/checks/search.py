"""Blocking checks of the search group: the FAISS index matches its embeddings, retrieval stays above its floor."""

from pathlib import Path

import dagster as dg
import numpy as np

from hca_assets.config import Settings
from hca_assets.lake import registry as tables
from hca_assets.search.index import (
    MIN_RECALL,
    IndexFiles,
    exact_index,
    keyed_vectors,
    load_index,
    recall_at_10,
    self_recall,
)

INDEX_CHECKS = [
    dg.AssetCheckSpec("index_matches_embeddings", asset="faiss_index", blocking=True,
                      description="ntotal equals the embedding rows of this version; ≥ 99 % of sampled rows find themselves; "
                                  "an approximate (IVF) index keeps recall@10 ≥ 0.95 against exact search"),
]
EVAL_CHECKS = [
    dg.AssetCheckSpec("retrieval_above_floor", asset="retrieval_eval", blocking=True,
                      description="image-level class P@5 overall ≥ HCA_EVAL_MIN_P5 (when labelled data exist)"),
]



def index_checks(settings: Settings, version: str) -> list[dg.AssetCheckResult]:
    files = IndexFiles.for_version(Path(settings.indexes), version, "image")
    keys, vectors = keyed_vectors(tables.EMBEDDINGS.read(settings, where={"code_version": version}), "image", version)
    if not files.manifest.exists():
        return [dg.AssetCheckResult(check_name="index_matches_embeddings", passed=keys.num_rows == 0,
                                    metadata={"rows": keys.num_rows})]
    index, _, manifest = load_index(files)
    ids = keys.column("id").to_numpy()
    recall = self_recall(index, vectors, ids) if len(ids) else 0.0
    metadata: dict[str, object] = {"ntotal": int(index.ntotal), "rows": keys.num_rows, "self_recall": recall,
                                   "type": str(manifest["type"])}
    passed = index.ntotal == keys.num_rows and recall >= 0.99
    if manifest.get("approximate"):
        rng = np.random.default_rng(1)
        queries = vectors[rng.choice(len(ids), size=min(200, len(ids)), replace=False)]
        measured = recall_at_10(index, exact_index(vectors, ids), queries)
        metadata["recall_at_10_vs_exact"] = measured
        passed = passed and measured >= MIN_RECALL
    return [dg.AssetCheckResult(check_name="index_matches_embeddings", passed=passed, metadata=metadata)]


def eval_checks(settings: Settings, run_id: str) -> list[dg.AssetCheckResult]:
    rows = tables.EVALUATIONS.read(settings, where={"run_id": run_id}).to_pylist()
    p5 = [r["value"] for r in rows if r["level"] == "image" and r["target"] == "class_label" and r["label"] == "overall"
          and r["metric"] == "P@5"]
    if not p5:
        return [dg.AssetCheckResult(check_name="retrieval_above_floor", passed=True,
                                    metadata={"note": "no labelled data: nothing to evaluate"})]
    return [dg.AssetCheckResult(check_name="retrieval_above_floor", passed=p5[0] >= settings.eval_min_p5,
                                metadata={"P@5": round(p5[0], 4), "floor": settings.eval_min_p5})]
