"""Draw the asset lineage of the code location as docs/img/lineage.png (the README's picture), from the
definitions themselves: one box per asset, coloured by group, in columns by depth. Run: `make docs`."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import dagster as dg
from PIL import Image, ImageDraw, ImageFont

from hca_assets.definitions import build_defs

COLOURS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac",
           "#eeca3b", "#88d27a", "#8cd3f5"]
BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 240, 30, 50, 14, 24


def main(out: Path) -> None:
    graph = build_defs().resolve_asset_graph()
    keys = sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    parents = {k: [p for p in graph.get(k).parent_keys if p in keys] for k in keys}
    depth: dict[dg.AssetKey, int] = {}

    def level(k: dg.AssetKey) -> int:
        if k not in depth:
            depth[k] = 1 + max((level(p) for p in parents[k]), default=-1)
        return depth[k]

    columns: dict[int, list] = defaultdict(list)
    for k in keys:
        columns[level(k)].append(k)
    groups = sorted({graph.get(k).group_name or "default" for k in keys})
    colour = {g: COLOURS[i % len(COLOURS)] for i, g in enumerate(groups)}
    rows = max(len(c) for c in columns.values())
    width = PAD * 2 + len(columns) * BOX_W + (len(columns) - 1) * GAP_X
    height = PAD * 3 + rows * (BOX_H + GAP_Y) + 24
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(14)
    where = {}
    for c, members in sorted(columns.items()):
        members.sort(key=lambda k: (graph.get(k).group_name or "", k.to_user_string()))
        top = PAD + (rows - len(members)) * (BOX_H + GAP_Y) // 2
        for r, k in enumerate(members):
            x, y = PAD + c * (BOX_W + GAP_X), top + r * (BOX_H + GAP_Y)
            where[k] = (x, y)
    for k, (x, y) in where.items():
        for p in parents[k]:
            px, py = where[p]
            draw.line([(px + BOX_W, py + BOX_H // 2), (x, y + BOX_H // 2)], fill="#999999", width=1)
    for k, (x, y) in where.items():
        fill = colour[graph.get(k).group_name or "default"]
        draw.rounded_rectangle([x, y, x + BOX_W, y + BOX_H], radius=6, fill=fill)
        draw.text((x + 8, y + 7), k.to_user_string()[:30], fill="white", font=font)
    x = PAD
    for g in groups:  # the legend: one swatch per group
        draw.rectangle([x, height - PAD - 14, x + 14, height - PAD], fill=colour[g])
        draw.text((x + 18, height - PAD - 14), g, fill="black", font=font)
        x += 30 + int(draw.textlength(g, font=font))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/img/lineage.png"))
