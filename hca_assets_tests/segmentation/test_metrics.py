"""Dice / IoU / HD95 on hand-made masks, and the evaluations rows they become."""

import math

import numpy as np
import pyarrow as pa
import pytest

from hca_assets.evaluation.segmentation import dice, hd95, iou, score, segmentation_rows
from hca_assets.lake.schemas import EVALUATIONS


def _box(shape: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return m


def test_overlap_metrics_on_shifted_boxes() -> None:
    a = _box((20, 20), (0, 0), (10, 10))  # 100 px
    b = _box((20, 20), (0, 5), (10, 15))  # 100 px, 50 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert iou(a, b) == pytest.approx(50 / 150)
    assert dice(a, a) == iou(a, a) == 1.0 and hd95(a, a, (1.0, 1.0)) == 0.0


def test_hd95_is_in_mm_and_follows_anisotropic_spacing() -> None:
    a = _box((10, 10, 30), (2, 2, 5), (8, 8, 10))
    b = _box((10, 10, 30), (2, 2, 8), (8, 8, 13))  # shifted 3 voxels along axis 2
    assert hd95(a, b, (1.0, 1.0, 1.0)) == pytest.approx(3.0)
    assert hd95(a, b, (0.5, 0.5, 2.5)) == pytest.approx(7.5)
    shifted_in_plane = _box((10, 10, 30), (4, 2, 5), (10, 8, 10))
    assert hd95(a, shifted_in_plane, (0.5, 0.5, 2.5)) == pytest.approx(1.0)


def test_empty_mask_conventions() -> None:
    empty = np.zeros((8, 8), dtype=bool)
    full = _box((8, 8), (2, 2), (5, 5))
    assert (dice(empty, empty), iou(empty, empty), hd95(empty, empty, (1, 1))) == (1.0, 1.0, 0.0)
    assert (dice(full, empty), iou(empty, full)) == (0.0, 0.0)
    assert hd95(full, empty, (1, 1)) is None and hd95(empty, full, (1, 1)) is None
    with pytest.raises(ValueError):
        dice(full, np.zeros((8, 9), dtype=bool))


def test_rows_have_the_evaluations_schema_and_skip_undefined_hd95() -> None:
    a = _box((10, 10, 10), (0, 0, 0), (4, 4, 4))
    empty = np.zeros_like(a)
    scores = [score(a, a, (1, 1, 1), "liver"), score(a, empty, (1, 1, 1), "liver"),
              score(a[..., 0], a[..., 0], (0.7, 0.7), "heart")]
    table = segmentation_rows(scores, "local@classical-1", "run-1")
    assert table.schema.equals(EVALUATIONS)
    rows = {(r["level"], r["label"], r["metric"]): r for r in table.to_pylist()}
    assert {r["target"] for r in rows.values()} == {"segmentation"}
    assert rows[("series", "liver", "dice")]["value"] == pytest.approx(0.5)
    assert rows[("series", "liver", "dice_min")]["value"] == 0.0
    assert rows[("series", "liver", "dice")]["queries"] == 2
    assert rows[("series", "liver", "hd95_mm")]["queries"] == 1 and rows[("series", "liver", "hd95_mm")]["value"] == 0.0
    assert rows[("image", "heart", "dice")]["value"] == 1.0
    assert all(not math.isnan(v) for v in table.column("value").to_pylist())
    assert segmentation_rows([], "v", "r").num_rows == 0 and isinstance(segmentation_rows([], "v", "r"), pa.Table)
