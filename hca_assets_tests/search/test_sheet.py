"""The neighbour sheet retrieval_eval shows: one row per query class, the query then its k nearest images of other
patients, outlined green for the same class and red otherwise."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from hca_assets.search.sheet import BAD, CAPTION, GOOD, QUERY, TILE, neighbour_sheet


def test_rows_are_queries_and_borders_tell_right_from_wrong(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = ["a"] * 4 + ["b"] * 4
    patients = ["p1", "p2", "p3", "p4"] * 2
    centres = {"a": rng.normal(size=8), "b": rng.normal(size=8)}
    vectors = np.stack([centres[label] + 0.01 * rng.normal(size=8) for label in labels])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((40, 60), 30 * i, np.uint8)).save(paths[-1])
    png = neighbour_sheet(vectors, labels, patients, paths.__getitem__, queries=2, k=4)
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert sheet.shape == (2 * (TILE + CAPTION), 5 * TILE, 3)
    border = [tuple(int(v) for v in sheet[r * (TILE + CAPTION) + 2, c * TILE + TILE // 2]) for r in range(2) for c in range(5)]
    # each query (p1) has 3 other-patient images of its class, then the nearest of the other class
    assert border == [QUERY, GOOD, GOOD, GOOD, BAD] * 2
    assert neighbour_sheet(vectors, labels, ["p1"] * 8, paths.__getitem__) is None  # one patient: no other-patient one
    # an image the working copy lacks is passed over: the next nearest takes its place
    missing = {2}
    png = neighbour_sheet(vectors, labels, patients, lambda i: None if i in missing else paths[i], queries=2, k=4)
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    border = [tuple(int(v) for v in sheet[r * (TILE + CAPTION) + 2, c * TILE + TILE // 2]) for r in range(2) for c in range(5)]
    assert border == [QUERY, GOOD, GOOD, BAD, BAD, QUERY, GOOD, GOOD, GOOD, BAD]  # image 2 (class a) is missing
