"""A contact sheet of mask overlays for the UI: per series, the axial slice with the most segmented voxels."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

__all__ = ["overlay_sheet"]

TILE = 256
COLOURS = [(230, 60, 60), (60, 200, 90), (70, 120, 240), (240, 200, 40), (200, 80, 220), (40, 210, 210), (250, 140, 40)]


def overlay_sheet(series: Iterable[tuple[Path, list[Path]]], *, limit: int = 6, columns: int = 3) -> bytes | None:
    """PNG with one tile per series (volume NIfTI, its mask NIfTIs): the slice with the most mask voxels,
    greyscale stretched, each structure tinted in its own colour; None when no mask has a voxel."""
    tiles = []
    for volume_path, mask_paths in series:
        masks = [np.asarray(nib.load(p).dataobj, dtype=bool) for p in mask_paths]
        if not masks or not any(m.any() for m in masks):
            continue
        k = int(np.argmax(sum(m.sum(axis=(0, 1)) for m in masks)))
        grey = np.asarray(nib.load(volume_path).dataobj[:, :, k], dtype=np.float32)
        lo, hi = np.percentile(grey, (1, 99))
        rgb = np.repeat((np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1) * 255)[..., None], 3, axis=-1)
        for n, m in enumerate(masks):
            rgb[m[:, :, k]] = 0.45 * rgb[m[:, :, k]] + 0.55 * np.array(COLOURS[n % len(COLOURS)])
        image = Image.fromarray(np.flipud(rgb.astype(np.uint8).transpose(1, 0, 2)))  # (x, y) RAS → rows anterior-up
        image.thumbnail((TILE, TILE))
        tiles.append(image)
        if len(tiles) == limit:
            break
    if not tiles:
        return None
    sheet = Image.new("RGB", (min(columns, len(tiles)) * TILE, -(-len(tiles) // columns) * TILE))
    for n, tile in enumerate(tiles):
        sheet.paste(tile, ((n % columns) * TILE, (n // columns) * TILE))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
