"""A picture of retrieval for the UI: a few query images, each followed by its nearest neighbours from other
patients, as thumbnails of the rendered (de-identified) PNGs, outlined green where the class matches, red where not."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["neighbour_sheet"]

TILE = 112
CAPTION = 14
GOOD, BAD, QUERY = (40, 170, 60), (210, 50, 40), (70, 110, 220)


def _tile(path: Path, label: str, colour: tuple[int, int, int]) -> Image.Image:
    tile = Image.new("RGB", (TILE, TILE + CAPTION), "white")
    with Image.open(path) as image:
        thumb = image.convert("RGB")
        thumb.thumbnail((TILE - 6, TILE - 6))
    tile.paste(thumb, ((TILE - thumb.width) // 2, (TILE - thumb.height) // 2))
    draw = ImageDraw.Draw(tile)
    draw.rectangle([1, 1, TILE - 2, TILE - 2], outline=colour, width=3)
    draw.text((3, TILE), label[:18], fill=(0, 0, 0))
    return tile


def neighbour_sheet(vectors: np.ndarray, labels: Sequence[str], patients: Sequence[str],
                    path_of: Callable[[int], Path | None], *, queries: int = 3, k: int = 5) -> bytes | None:
    """PNG with one row per query (the first image of up to ``queries`` classes, in label order): the query, then
    its ``k`` most similar images of other patients (cosine on L2-normalised ``vectors``). ``path_of(i)`` is image
    ``i``'s PNG, or None when it cannot be shown (asked only for the images the sheet considers). None without two
    patients."""
    if len(set(patients)) < 2:
        return None
    firsts: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label not in firsts and path_of(i) is not None:
            firsts[label] = i
    chosen = [firsts[label] for label in sorted(firsts)][:queries]
    sims = vectors[chosen] @ vectors.T
    rows = []
    for q, row in zip(chosen, sims, strict=True):
        shown = ((j, path_of(j)) for j in np.argsort(-row, kind="stable") if patients[j] != patients[q])
        others = list(itertools.islice(((j, p) for j, p in shown if p is not None), k))
        rows.append([_tile(path_of(q), f"query {labels[q]}", QUERY)] +  # type: ignore[arg-type]  # chosen: has a path
                    [_tile(p, f"{row[j]:.2f} {labels[j]}", GOOD if labels[j] == labels[q] else BAD) for j, p in others])
    sheet = Image.new("RGB", (TILE * (k + 1), (TILE + CAPTION) * len(rows)), "white")
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            sheet.paste(tile, (c * TILE, r * (TILE + CAPTION)))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
