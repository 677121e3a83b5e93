"""Blocking checks for images, embeddings, the FAISS index and the retrieval evaluation."""

from pathlib import Path

import dagster as dg
import numpy as np
from PIL import Image

from hca_assets.config import Settings
from hca_assets.dicom.pixels import IMAGE_SIZE
from hca_assets.lake import registry as tables
from hca_assets.models.base import vectors_of
from hca_assets.search.index import (
    MIN_RECALL,
    IndexFiles,
    exact_index,
    keyed_vectors,
    load_index,
    recall_at_10,
    self_recall,
)
from hca_assets.stages.images import check_volume_affine

IMAGE_CHECKS = [
    dg.AssetCheckSpec("few_constant_images", asset="images", blocking=False,
                      description="constant images (their stored values are: an automatic window shows any that vary) "
                                  "are at most HCA_MAX_CONSTANT_FRACTION of the batch; a warning — they are kept out of "
                                  "the embeddings and index, and the rest of the batch goes on"),
    dg.AssetCheckSpec("image_shapes", asset="images", blocking=True,
                      description=f"every PNG is {IMAGE_SIZE}×{IMAGE_SIZE}; published = rendered + quarantined instances"),
    dg.AssetCheckSpec("nifti_affine_matches_dicom", asset="images", blocking=True,
                      description="each NIfTI affine places every slice within 0.01 mm of its DICOM position"),
]
EMBEDDING_CHECKS = [
    dg.AssetCheckSpec("vectors_valid", asset="embeddings", blocking=True,
                      description="model dimension, finite values, unit norm, one row per image, no duplicate keys"),
]
INDEX_CHECKS = [
    dg.AssetCheckSpec("index_matches_embeddings", asset="faiss_index", blocking=True,
                      description="ntotal equals the embedding rows of this version; ≥ 99 % of sampled rows find themselves; "
                                  "an approximate (IVF) index keeps recall@10 ≥ 0.95 against exact search"),
]
EVAL_CHECKS = [
    dg.AssetCheckSpec("retrieval_above_floor", asset="retrieval_eval", blocking=True,
                      description="image-level class P@5 overall ≥ HCA_EVAL_MIN_P5 (when labelled data exist)"),
]


def image_checks(settings: Settings, batch: str, *, failed: int) -> list[dg.AssetCheckResult]:
    rows = tables.IMAGES.read(settings, where={"batch": batch}).to_pylist()
    instances = tables.DEID_INSTANCES.read(settings, where={"batch": batch}).to_pylist()
    constant = sum(r["constant"] for r in rows)
    sizes = [Image.open(Path(settings.images) / r["path"]).size for r in rows]
    wrong = sum(size != (IMAGE_SIZE, IMAGE_SIZE) for size in sizes)
    rendered = len({r["sop_instance_uid"] for r in rows})
    errors = []
    for v in tables.VOLUMES.read(settings, where={"batch": batch}).to_pylist():
        members = [Path(settings.deid) / i["path"] for i in instances if i["series_instance_uid"] == v["series_instance_uid"]]
        errors.append(check_volume_affine(Path(settings.images) / v["path"], members))
    worst = max(errors, default=0.0)
    return [
        dg.AssetCheckResult(check_name="few_constant_images", severity=dg.AssetCheckSeverity.WARN,
                            passed=constant <= settings.max_constant_fraction * max(1, len(rows)),
                            metadata={"constant": constant, "images": len(rows)}),
        dg.AssetCheckResult(check_name="image_shapes", passed=wrong == 0 and rendered + failed == len(instances),
                            metadata={"wrong_size": wrong, "rendered_instances": rendered, "failed": failed,
                                      "published": len(instances)}),
        dg.AssetCheckResult(check_name="nifti_affine_matches_dicom", passed=worst <= 0.01,
                            metadata={"volumes": len(errors), "max_error_mm": round(worst, 6)}),
    ]


def embedding_checks(settings: Settings, batch: str, version: str, *, expected: int, dim: int) -> list[dg.AssetCheckResult]:
    table = tables.EMBEDDINGS.read(settings, where={"batch": batch, "code_version": version})
    vectors = vectors_of(table)
    keys = list(zip(table.column("sop_instance_uid").to_pylist(), table.column("frame").to_pylist(), strict=True))
    finite = bool(np.isfinite(vectors).all()) if vectors.size else True
    norms_ok = bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)) if vectors.size else True
    shape_ok = vectors.shape[1] == dim if vectors.size else True
    return [dg.AssetCheckResult(
        check_name="vectors_valid",
        passed=finite and norms_ok and shape_ok and len(set(keys)) == len(keys) == expected,
        metadata={"rows": len(keys), "expected": expected, "dim": int(vectors.shape[1]) if vectors.size else 0,
                  "finite": finite, "unit_norm": norms_ok, "unique": len(set(keys)) == len(keys)},
    )]


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
