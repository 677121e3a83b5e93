"""The retrieval adapter (a small MLP on frozen embeddings) and the reviewer feedback drop folder (all batches)."""

import time

import dagster as dg

from hca_assets.assets import _metadata as md
from hca_assets.assets.search import embeddings, labels
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.stages.adapter import ingest_feedback, overall, run_adapter


@dg.asset(deps=["deid_dicom", "segmentations"], group_name="evaluation", kinds={"python", "deltalake"},
          automation_condition=dg.AutomationCondition.eager(),
          description="Reviewer verdicts from the CSV drop folder <data>/feedback/ into Delta feedback (a file with an "
                      "unknown id, not UTF-8 or not well-formed is refused whole, alone), and the accuracy on reviewed items into evaluations (target reviewed).")
def feedback(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    out = ingest_feedback(settings, context.run.run_id)
    for label, reason in out.refused.items():
        context.log.warning(f"feedback file {label} refused whole: {reason}")
    context.log.info(f"feedback: {len(out.taken)} file(s) taken ({sum(out.taken.values())} verdicts), "
                     f"{len(out.refused)} refused")
    lines = ["| kind (level) | code_version | reviewed | accuracy |", "|---|---|---:|---:|"] + [
        f"| {r['level']} | {r['code_version']} | {r['queries']} | {r['value']:.3f} |" for r in out.evaluations.to_pylist()]
    return dg.MaterializeResult(metadata={
        "files_taken": len(out.taken), "files_refused": len(out.refused), "verdicts_taken": sum(out.taken.values()),
        "reviewed_accuracy": dg.MetadataValue.md("\n".join(lines))})


@dg.asset(deps=[embeddings, labels, feedback], group_name="search", kinds={"python", "faiss"},
          automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
          description="A small MLP (Linear → GELU → LayerNorm → Linear) trained on frozen image embeddings with a "
                      "supervised contrastive loss on class labels (reviewers' corrections applied), patients split into "
                      "train and held out; a versioned adapter file, the adapted vectors' FAISS index and held-out "
                      "evaluations of base and adapted vectors (targets class_label_heldout, lesion_heldout).")
def retrieval_adapter(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    start = time.perf_counter()
    out = run_adapter(settings, context.run.run_id)
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
