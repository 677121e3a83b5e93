"""The current segmentations over all batches scored against the synthetic ground truth and the user's reference
masks (what the ``segmentation_eval`` asset calls)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from hca_assets._infra.storage import pull
from hca_assets.config import Settings
from hca_assets.evaluation.segmentation import Score, segmentation_rows
from hca_assets.evaluation.segmentation_truth import evaluate_segmentations
from hca_assets.lake import registry as tables
from hca_assets.lake.delta import WriteResult

__all__ = ["SEGMENTATION_TARGET", "SegmentationEvalRun", "run_segmentation_eval"]

SEGMENTATION_TARGET = "segmentation"  # evaluations.target of these rows (retrieval_eval owns the run's others)


@dataclass(frozen=True)
class SegmentationEvalRun:
    """One evaluation: scores per (series, structure), what was skipped and why, the rows and their write."""

    scores: list[tuple[str, Score]]
    skipped: list[tuple[str, str, str]]  # (series, structure, PHI-free reason)
    table: pa.Table
    written: WriteResult
    seconds: float


def run_segmentation_eval(settings: Settings, version: str, run_id: str) -> SegmentationEvalRun:
    """Dice, IoU and HD95 per structure of segmenter ``version``'s masks, written as this run's segmentation rows."""
    rows = tables.SEGMENTATIONS.read(settings, where={"code_version": version}).to_pylist()
    start = time.perf_counter()
    pull(settings, Path(settings.truth_file).parent, settings.segmentations, settings.deid)
    out = evaluate_segmentations(
        rows, tables.DEID_INSTANCES.read(settings).to_pylist(),
        tables.DEID_CROSSWALK.read(settings, where={"kind": "instance"}).to_pylist(),
        seg_root=Path(settings.segmentations), deid_root=Path(settings.deid),
        truth_dir=Path(settings.truth_file).parent,
        reference_dir=Path(settings.seg_reference_dir) if settings.seg_reference_dir else None)
    table = segmentation_rows([s for _, s in out.scores], version, run_id)
    written = tables.EVALUATIONS.write(settings, table, match={"run_id": run_id, "target": SEGMENTATION_TARGET})
    return SegmentationEvalRun(out.scores, out.skipped, table, written, time.perf_counter() - start)
