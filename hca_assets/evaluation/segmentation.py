"""Segmentation metrics against reference masks — Dice, IoU, HD95 in mm (spacing-aware) — and their rows
in the ``evaluations`` table (``target='segmentation'``, ``label=<structure>``).

Empty-mask conventions: both masks empty → Dice 1, IoU 1, HD95 0 (agreement that nothing is there);
exactly one empty → Dice 0, IoU 0, HD95 None (no surface to measure from: undefined, not infinite), and
such cases do not enter the mean HD95 row (its ``queries`` counts the cases that do).
A row's ``aggregation`` names what the masks were scored against: ``synthetic_truth`` (the generator's masks) or
``reference`` (masks a user supplies).
HD95 is the larger of the two directed 95th-percentile surface distances (as medpy's ``hd95``), surfaces being
the mask voxels with a face neighbour outside the mask, distances between voxel centres in mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from scipy import ndimage as ndi

from hca_assets.lake.schemas import EVALUATIONS

__all__ = ["Score", "dice", "hd95", "iou", "score", "segmentation_rows"]


def _check(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if pred.shape != truth.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {truth.shape}")
    return pred.astype(bool), truth.astype(bool)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|A∩B| / (|A|+|B|); 1.0 when both are empty."""
    a, b = _check(pred, truth)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """|A∩B| / |A∪B|; 1.0 when both are empty."""
    a, b = _check(pred, truth)
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndi.binary_erosion(mask, ndi.generate_binary_structure(mask.ndim, 1), border_value=0)


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The mask's bounding box grown by one voxel (clipped to the array), so its surface stays inside."""
    nonzero = np.nonzero(mask)
    return tuple(slice(max(int(idx.min()) - 1, 0), int(idx.max()) + 2) for idx in nonzero)


def hd95(pred: np.ndarray, truth: np.ndarray, spacing_mm: Sequence[float]) -> float | None:
    """95th-percentile symmetric Hausdorff distance in mm; 0.0 if both empty, None if exactly one is."""
    a, b = _check(pred, truth)
    if len(spacing_mm) != a.ndim:
        raise ValueError(f"{a.ndim}D masks need {a.ndim} spacings, got {len(spacing_mm)}")
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return None
    box = _bounding_box(a | b)  # every surface voxel is inside: distances within it are exact, and far cheaper
    sa, sb = _surface(a[box]), _surface(b[box])
    to_b = ndi.distance_transform_edt(~sb, sampling=spacing_mm)[sa]
    to_a = ndi.distance_transform_edt(~sa, sampling=spacing_mm)[sb]
    return float(max(np.percentile(to_b, 95), np.percentile(to_a, 95)))


@dataclass(frozen=True)
class Score:
    """One structure in one case (a series, or an image for planar masks)."""

    structure: str
    level: str  # series | image
    dice: float
    iou: float
    hd95_mm: float | None
    reference: str = "synthetic_truth"  # synthetic_truth | reference
    truth_present: bool = True  # the reference mask is not empty


def score(pred: np.ndarray, truth: np.ndarray, spacing_mm: Sequence[float], structure: str,
          reference: str = "synthetic_truth") -> Score:
    """All metrics of one predicted mask against its reference; 3D masks score a series, 2D an image."""
    return Score(structure, "series" if pred.ndim == 3 else "image", dice(pred, truth), iou(pred, truth),
                 hd95(pred, truth, spacing_mm), reference, bool(np.any(truth)))


def segmentation_rows(scores: Sequence[Score], code_version: str, run_id: str) -> pa.Table:
    """Per level, structure and reference: mean and minimum Dice, mean IoU, mean HD95 (defined cases only)."""
    now = datetime.now(UTC)
    groups: dict[tuple[str, str, str], list[Score]] = {}
    for s in scores:
        groups.setdefault((s.level, s.structure, s.reference), []).append(s)
    rows = []
    for (level, structure, reference), group in sorted(groups.items()):
        hds = [s.hd95_mm for s in group if s.hd95_mm is not None]
        values = [("dice", float(np.mean([s.dice for s in group])), len(group)),
                  ("dice_min", float(min(s.dice for s in group)), len(group)),
                  ("iou", float(np.mean([s.iou for s in group])), len(group))]
        if hds:
            values.append(("hd95_mm", float(np.mean(hds)), len(hds)))
        rows += [{"run_id": run_id, "metric": metric, "value": value, "level": level, "target": "segmentation",
                  "label": structure, "aggregation": reference, "queries": n, "code_version": code_version,
                  "evaluated_at": now} for metric, value, n in values]
    return pa.Table.from_pylist(rows, schema=EVALUATIONS)
