"""Segmentation evaluation over all batches: stored masks against the synthetic truth and user reference masks."""

import time
from collections import defaultdict
from pathlib import Path

import dagster as dg
import numpy as np

from hca_assets._infra.storage import pull
from hca_assets.assets import _metadata as md
from hca_assets.assets.segmentation import segmentations
from hca_assets.checks.evaluation import SEG_EVAL_CHECKS, segmentation_eval_checks
from hca_assets.evaluation.segmentation import Score, segmentation_rows
from hca_assets.evaluation.segmentation_truth import evaluate_segmentations
from hca_assets.lake import registry as tables
from hca_assets.orchestration.code_versions import DEFAULTS
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.segmentation.backends import segmenter_code_version


@dg.asset(deps=[segmentations], group_name="evaluation", kinds={"python", "deltalake"}, code_version=DEFAULTS["segmentation_eval"],
          check_specs=SEG_EVAL_CHECKS,
          automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
          description="Dice, IoU and HD95 (mm) per structure of the current segmentations against the synthetic "
                      "ground truth and the reference masks in HCA_SEG_REFERENCE_DIR; Delta evaluations.")
def segmentation_eval(context: dg.AssetExecutionContext, storage: SettingsResource) -> dg.MaterializeResult:
    settings = storage.settings()
    storage.code_version(context)  # the loaded definition's version is this segmenter's
    version = segmenter_code_version(settings)
    rows = tables.SEGMENTATIONS.read(settings, where={"code_version": version}).to_pylist()
    start = time.perf_counter()
    pull(settings, Path(settings.truth_file).parent, settings.segmentations, settings.deid)
    out = evaluate_segmentations(
        rows, tables.DEID_INSTANCES.read(settings).to_pylist(),
        tables.DEID_CROSSWALK.read(settings, where={"kind": "instance"}).to_pylist(),
        seg_root=Path(settings.segmentations), deid_root=Path(settings.deid),
        truth_dir=Path(settings.truth_file).parent,
        reference_dir=Path(settings.seg_reference_dir) if settings.seg_reference_dir else None)
    table = segmentation_rows([s for _, s in out.scores], version, context.run.run_id)
    written = tables.EVALUATIONS.write(settings, table, match={"run_id": context.run.run_id, "target": "segmentation"})
    # retrieval_eval owns this run's other targets
    for series, structure, reason in out.skipped:
        context.log.warning(f"series {series}, {structure}: not evaluated: {reason}")
    return dg.MaterializeResult(
        metadata={**md.written(written), "code_version": version, "cases": len(out.scores),
                  "skipped": len(out.skipped), md.SECONDS: round(time.perf_counter() - start, 3),
                  "per_structure": dg.MetadataValue.md(_table([s for _, s in out.scores]))},
        check_results=segmentation_eval_checks(settings, out.scores),
    )


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
