"""Blocking check for segmentation_eval: mean Dice on the synthetic ground-truth sample above a floor."""

from collections.abc import Sequence

import dagster as dg

from hca_assets.config import Settings
from hca_assets.evaluation.segmentation import Score
from hca_assets.evaluation.segmentation_truth import present_dice

DICE_FLOOR = "dice_above_floor"

SEG_EVAL_CHECKS = [
    dg.AssetCheckSpec(DICE_FLOOR, asset="segmentation_eval", blocking=True,
                      description="mean Dice over the structures present in the synthetic ground truth "
                                  "≥ HCA_SEG_MIN_DICE (when ground truth exists)"),
]


def segmentation_eval_checks(settings: Settings, scores: Sequence[tuple[str, Score]]) -> list[dg.AssetCheckResult]:
    per_structure = present_dice(scores)
    if not per_structure:
        return [dg.AssetCheckResult(check_name=DICE_FLOOR, passed=True,
                                    metadata={"note": "no synthetic ground truth: nothing to evaluate"})]
    mean = sum(per_structure.values()) / len(per_structure)
    worst = min(per_structure, key=per_structure.__getitem__)
    return [dg.AssetCheckResult(check_name=DICE_FLOOR, passed=mean >= settings.seg_min_dice,
                                metadata={"mean_dice": round(mean, 4), "floor": settings.seg_min_dice,
                                          "structures": len(per_structure), "lowest": worst,
                                          "lowest_dice": round(per_structure[worst], 4)})]
