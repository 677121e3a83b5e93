"""The evaluation group, over all batches: segmentations against the synthetic truth and user reference masks, and
the reviewers' verdicts from the feedback drop folder."""

from collections import defaultdict

import dagster as dg
import numpy as np

from hca_assets.assets import _metadata as md
from hca_assets.checks.evaluation import SEG_EVAL_CHECKS, segmentation_eval_checks
from hca_assets.evaluation.segmentation import Score
from hca_assets.orchestration.automation import EAGER_AFTER_CHECKS
from hca_assets.orchestration.code_versions import DEFAULTS
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.segmentation.backends import segmenter_code_version
from hca_assets.stages.feedback import ingest_feedback
from hca_assets.stages.segmentation_eval import run_segmentation_eval


@dg.asset(deps=["segmentations"], group_name="evaluation", kinds={"python", "deltalake"}, code_version=DEFAULTS["segmentation_eval"],
          check_specs=SEG_EVAL_CHECKS,
          automation_condition=EAGER_AFTER_CHECKS,
          description="Dice, IoU and HD95 (mm) per structure of the current segmentations against the synthetic "
                      "ground truth and the reference masks in HCA_SEG_REFERENCE_DIR; Delta evaluations.")
def segmentation_eval(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    storage.code_version(context)  # the loaded definition's version is this segmenter's
    version = segmenter_code_version(settings)
    run = run_segmentation_eval(settings, version, context.run.run_id)
    for series, structure, reason in run.skipped:
        context.log.warning(f"series {series}, {structure}: not evaluated: {reason}")
    return dg.MaterializeResult(
        metadata={**md.written(run.written), "code_version": version, "cases": len(run.scores),
                  "skipped": len(run.skipped), md.SECONDS: round(run.seconds, 3),
                  "per_structure": dg.MetadataValue.md(_table([s for _, s in run.scores]))},
        check_results=segmentation_eval_checks(settings, run.scores),
    )


@dg.asset(deps=["deid_dicom", "segmentations"], group_name="evaluation", kinds={"python", "deltalake"},
          automation_condition=dg.AutomationCondition.eager(),
          description="Reviewer verdicts from the CSV drop folder <data>/feedback/ into Delta feedback (a file with an "
                      "unknown id, not UTF-8 or not well-formed is refused whole, alone), and the accuracy on reviewed items into evaluations (target reviewed).")
def feedback(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    out = ingest_feedback(storage.settings(), context.run.run_id)
    for label, reason in out.refused.items():
        context.log.warning(f"feedback file {label} refused whole: {reason}")
    context.log.info(f"feedback: {len(out.taken)} file(s) taken ({sum(out.taken.values())} verdicts), "
                     f"{len(out.refused)} refused")
    lines = ["| kind (level) | code_version | reviewed | accuracy |", "|---|---|---:|---:|"] + [
        f"| {r['level']} | {r['code_version']} | {r['queries']} | {r['value']:.3f} |" for r in out.evaluations.to_pylist()]
    return dg.MaterializeResult(metadata={
        "files_taken": len(out.taken), "files_refused": len(out.refused), "verdicts_taken": sum(out.taken.values()),
        "reviewed_accuracy": dg.MetadataValue.md("\n".join(lines))})


def _table(scores: list[Score]) -> str:
    groups: dict[tuple[str, str, str], list[Score]] = defaultdict(list)
    for s in scores:
        groups[(s.level, s.structure, s.reference)].append(s)
    lines = ["| level | structure | reference | cases | Dice | IoU | HD95 mm |", "|---|---|---|---:|---:|---:|---:|"]
    for (level, structure, reference), group in sorted(groups.items()):
        hds = [s.hd95_mm for s in group if s.hd95_mm is not None]
        hd = f"{np.mean(hds):.2f}" if hds else "–"
        lines.append(f"| {level} | {structure} | {reference} | {len(group)} | {np.mean([s.dice for s in group]):.3f} | "
                     f"{np.mean([s.iou for s in group]):.3f} | {hd} |")
    return "\n".join(lines)
