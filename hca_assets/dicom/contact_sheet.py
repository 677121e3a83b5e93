"""A contact sheet of redacted frames for a reviewer: de-identified pixels only, blanked regions outlined, and
a frame drawn round the tiles the learned net read (the screen alone did not decide them)."""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable
from pathlib import Path

import pydicom
from PIL import Image, ImageDraw

from hca_assets.dicom.burned_in import Box, display_frames, viewer_pixels

__all__ = ["contact_sheet"]

TILE = 192  # pixels per tile side
OUTLINE = (255, 64, 64)
NET_FRAME = (64, 160, 255)


def contact_sheet(items: Iterable[tuple[Path, list[tuple[int, Box]], Collection[int]]], *, limit: int = 12,
                  columns: int = 4) -> bytes | None:
    """PNG of up to ``limit`` redacted frames, each read back from its de-identified file (never an original),
    with the blacked-out boxes outlined and the frames the net read framed; None when nothing was redacted."""
    tiles = []
    for path, regions, net_frames in items:
        if not regions:
            continue
        frames = sorted({i for i, _ in regions})
        grey = display_frames(*viewer_pixels(pydicom.dcmread(path)))
        for frame in frames[: max(1, limit - len(tiles))]:
            image = Image.fromarray(grey[frame]).convert("RGB")
            scale = TILE / max(image.size)
            image.thumbnail((TILE, TILE))
            draw = ImageDraw.Draw(image)  # outlines drawn after scaling down, so they stay crisp and exact
            for i, (x0, y0, x1, y1) in regions:
                if i == frame:
                    draw.rectangle((int(x0 * scale), int(y0 * scale), int(x1 * scale), int(y1 * scale)), outline=OUTLINE)
            if frame in net_frames:
                draw.rectangle((0, 0, image.width - 1, image.height - 1), outline=NET_FRAME, width=2)
            tiles.append(image)
        if len(tiles) >= limit:
            break
    if not tiles:
        return None
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (min(columns, len(tiles)) * TILE, rows * TILE))
    for n, tile in enumerate(tiles):
        sheet.paste(tile, ((n % columns) * TILE + (TILE - tile.width) // 2, (n // columns) * TILE + (TILE - tile.height) // 2))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()

