"""The search group, over all batches: the FAISS indexes, their retrieval evaluation, zero-shot classification by
text prompts and the retrieval adapter."""

import time
from collections.abc import Iterator

import dagster as dg

from hca_assets.assets import _metadata as md
from hca_assets.checks.search import EVAL_CHECKS, INDEX_CHECKS, eval_checks, index_checks
from hca_assets.evaluation.zero_shot import class_prompt
from hca_assets.models import embedder_code_version, get_embedder
from hca_assets.orchestration.automation import EAGER_AFTER_CHECKS
from hca_assets.orchestration.resources import EmbeddingEndpoint, SettingsResource
from hca_assets.stages.adapter import overall, run_adapter
from hca_assets.stages.search import run_index, run_retrieval_eval
from hca_assets.stages.zero_shot import run_zero_shot


@dg.asset(deps=["embeddings"], group_name="search", kinds={"faiss"}, check_specs=INDEX_CHECKS,
          automation_condition=EAGER_AFTER_CHECKS,
          description="Exact FAISS indexes (image, series and study level) per embedding code_version; image and series "
                      "indexes grow incrementally.")
def faiss_index(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    version = embedder_code_version(settings)
    run = run_index(settings, version, context.run.run_id)
    for level, m in run.manifests.items():
        context.log.info(f"{level} index: {m['count']} vectors ({m['mode']})")
    return dg.MaterializeResult(
        metadata={**md.written(run.written), "code_version": version,
                  **{f"{lvl}_ntotal": m["count"] for lvl, m in run.manifests.items()}},
        check_results=index_checks(settings, version),
    )


@dg.asset(deps=[faiss_index, "labels"], group_name="search", kinds={"python", "deltalake"}, check_specs=EVAL_CHECKS,
          automation_condition=EAGER_AFTER_CHECKS,
          description="Leave-one-out kNN retrieval metrics (no same-patient/series neighbours), image, series and study "
                      "level.")
def retrieval_eval(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    version = embedder_code_version(settings)
    run = run_retrieval_eval(settings, version, context.run.run_id)
    overall_rows = [r for r in run.table.to_pylist() if r["label"] == "overall" and r["level"] == "image"]
    lines = ["| target | metric | value |", "|---|---|---:|"] + [
        f"| {r['target']} | {r['metric']} | {r['value']:.3f} |" for r in overall_rows]
    return dg.MaterializeResult(
        metadata={**md.written(run.written, rows=run.table.num_rows), "image_level": dg.MetadataValue.md("\n".join(lines)),
                  "code_version": version,
                  "neighbours": md.md_png(run.neighbours, "queries and their 5 nearest other-patient images")},
        check_results=eval_checks(settings, context.run.run_id),
    )


@dg.asset(deps=["embeddings", "labels"], group_name="search", kinds={"python", "deltalake"}, output_required=False,
          description="Zero-shot class of every labelled image: nearest class prompt ('<modality> <anatomy>') in the "
                      "backend's text space, softmax at its scaling factor; accuracy per class into evaluations "
                      "(target zero_shot). Skipped for backends without text embeddings.")
def zero_shot_eval(context: dg.AssetExecutionContext, storage: SettingsResource,
                   embedding_endpoint: EmbeddingEndpoint) -> Iterator[dg.MaterializeResult]:
    settings = storage.settings()
    embedder = get_embedder(settings, url=embedding_endpoint.url, key=embedding_endpoint.key)
    if not embedder.supports_text or not hasattr(embedder, "scaling_factor"):
        context.log.info(f"zero-shot skipped: the {embedder.name!r} backend embeds no text (MedImageInsight does: "
                         "HCA_EMBEDDER=azure)")
        return
    version = embedder_code_version(settings)
    run = run_zero_shot(settings, embedder, version, context.run.run_id)
    lines = ["| class | prompt | accuracy |", "|---|---|---:|"] + [
        f"| {r['label']} | {class_prompt(r['label']) if r['label'] != 'overall' else ''} | {r['value']:.3f} |"
        for r in run.table.to_pylist() if r["metric"] == "accuracy"]
    yield dg.MaterializeResult(metadata={**md.written(run.written), "code_version": version,
                                         "scaling_factor": run.scaling_factor,
                                         "accuracy": dg.MetadataValue.md("\n".join(lines))})


@dg.asset(deps=["embeddings", "labels", "feedback"], group_name="search", kinds={"python", "faiss"},
          automation_condition=EAGER_AFTER_CHECKS,
          description="A small MLP (Linear → GELU → LayerNorm → Linear) trained on frozen image embeddings with a "
                      "supervised contrastive loss on class labels (reviewers' corrections applied), patients split into "
                      "train and held out; a versioned adapter file, the adapted vectors' FAISS index and held-out "
                      "evaluations of base and adapted vectors (targets class_label_heldout, lesion_heldout).")
def retrieval_adapter(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    start = time.perf_counter()
    out = run_adapter(storage.settings(), context.run.run_id)
    if out.skipped:
        context.log.warning(f"no adapter trained: {out.skipped}")
        return dg.MaterializeResult(metadata={"skipped": out.skipped})
    lines = ["| target | vectors | P@1 | P@5 |", "|---|---|---:|---:|"] + [
        f"| {target} | {name} | {p1:.3f} | {p5:.3f} |" for target, name, p1, p5 in overall(out.metrics)]
    return dg.MaterializeResult(metadata={
        "code_version": out.version, "adapter_file": out.file, "sha256": out.sha256, "train_images": out.train_images,
        "train_patients": out.train_patients, "heldout_patients": out.heldout_patients,
        "corrected_labels": out.corrected, "train_seconds": round(out.seconds, 2),
        "loss_first_last": f"{out.losses[0]:.3f} → {out.losses[-1]:.3f}", "evaluation_rows": out.evaluations.num_rows,
        md.SECONDS: round(time.perf_counter() - start, 3), "heldout_retrieval": dg.MetadataValue.md("\n".join(lines))})
